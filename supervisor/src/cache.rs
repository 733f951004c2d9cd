//! The last known view of every account: written by the fleet task (which hears the workers'
//! snapshots over IPC), read by the HTTP handlers, which never wait on a worker.

use std::collections::{btree_map, BTreeMap};
use std::sync::RwLock;

use ipc_protocol::{
    AccountId, Direction, MessageRecord, MessageStatus, Reason, UnixMillis, WorkerState,
    WorkerStatus,
};

use crate::events::{self, EventBus, EventKind};
use crate::registry::Account;

/// What the API knows of one account.
#[derive(Clone, Debug)]
pub struct AccountView {
    /// The registry entry.
    pub account: Account,
    /// The worker's last snapshot, or the supervisor's own view when no worker runs.
    pub state: WorkerState,
    /// The worker's pid while one runs.
    pub pid: Option<u32>,
    /// When the current worker was spawned.
    pub started_at: Option<UnixMillis>,
    /// Times the worker process was restarted after an unexpected exit.
    pub restarts: u32,
    /// Whether the account has been `connected` since it was last paired (or since the
    /// supervisor started): the next `connected` after a loss is a reconnect.
    connected_before: bool,
    /// What the supervisor counted of the account since it started (for `/metrics`).
    pub activity: Activity,
}

/// An account's activity as the supervisor saw it since it started: counters that a worker's
/// restart does not reset.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Activity {
    /// Incoming messages the workers reported.
    pub received: u64,
    /// Outgoing messages the server acknowledged (`sent`).
    pub sent: u64,
    /// Outgoing messages that will not be sent (`failed`).
    pub send_failed: u64,
    /// When the account last became `connected`.
    pub connected_at: Option<UnixMillis>,
}

impl AccountView {
    /// A view for an account with no worker: `needs_qr` without creds, `stopped` with them.
    pub fn idle(account: Account, has_creds: bool) -> Self {
        let mut last_error = None;
        let (status, reason) = if let Some(since) = account.conflict_since {
            last_error = Some(conflict_text(since));
            (WorkerStatus::Conflict, Some(Reason::Replaced))
        } else if has_creds {
            (WorkerStatus::Stopped, None)
        } else {
            (WorkerStatus::NeedsQr, Some(Reason::NotPaired))
        };
        AccountView {
            account,
            state: WorkerState {
                status,
                reason,
                last_error,
                ..WorkerState::default()
            },
            pid: None,
            started_at: None,
            restarts: 0,
            connected_before: false,
            activity: Activity::default(),
        }
    }

    /// Counts reconnects as an operator means them, into `state.reconnect_count`: the account
    /// was `connected`, lost it (a dropped socket, a stream error, a crashed or restarted
    /// worker) and is `connected` again. The supervisor keeps the count, so a worker restart
    /// does not reset it; the registration's own restart after a scan (stream error 515) is not
    /// one, since the account had not been connected yet; and a new pairing (`needs_qr`) starts
    /// over from 0. Called on every change of the view, with the state before it.
    fn count_reconnects(&mut self, before: &WorkerState) {
        let count = before.reconnect_count;
        self.state.reconnect_count = match self.state.status {
            WorkerStatus::NeedsQr => {
                self.connected_before = false;
                0
            }
            WorkerStatus::Connected if before.status != WorkerStatus::Connected => {
                let was = std::mem::replace(&mut self.connected_before, true);
                if was {
                    count.saturating_add(1)
                } else {
                    count
                }
            }
            _ => count,
        };
    }
}

/// What an account held after a conflict says: who to ask, since when.
pub fn conflict_text(since: UnixMillis) -> String {
    format!(
        "another client took this account over (stream conflict: replaced) at {}; it stays \
         stopped so the two do not take it from each other: restart it to take it back",
        crate::http::iso(since)
    )
}

/// How many accounts there are, per status, with a worker running, and whose worker cannot
/// write to the volume. Kept beside the views under the same lock and changed with them, so
/// `/health` answers without walking (or copying) every account.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Tally {
    by_status: [usize; WorkerStatus::ALL.len()],
    /// Accounts in all.
    pub total: usize,
    /// Accounts whose worker process runs.
    pub running: usize,
    /// Accounts whose worker reports that its writes to the volume fail.
    pub storage_failing: usize,
}

impl Tally {
    /// Accounts in `status`.
    pub fn status(&self, status: WorkerStatus) -> usize {
        self.by_status.get(status as usize).copied().unwrap_or(0)
    }

    /// Counts `view` in.
    fn add(&mut self, view: &AccountView) {
        self.change(view, true);
    }

    /// Counts `view` out.
    fn sub(&mut self, view: &AccountView) {
        self.change(view, false);
    }

    fn change(&mut self, view: &AccountView, add: bool) {
        let bump = |n: &mut usize| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        if let Some(n) = self.by_status.get_mut(view.state.status as usize) {
            bump(n);
        }
        bump(&mut self.total);
        if view.pid.is_some() {
            bump(&mut self.running);
        }
        if writes_fail(view.state.reason.as_ref()) {
            bump(&mut self.storage_failing);
        }
    }
}

/// Whether `reason` says the account's worker cannot write to the volume.
pub fn writes_fail(reason: Option<&Reason>) -> bool {
    matches!(
        reason,
        Some(Reason::StorageFull | Reason::StorageReadonly | Reason::StorageError)
    )
}

/// The events one change of a view produces, their data built from the view as it was written.
#[derive(Debug, Default)]
struct Changes {
    /// `account.status`, when the status or reason changed.
    status: Option<serde_json::Value>,
    /// `account.qr`, when the QR did.
    qr: Option<serde_json::Value>,
}

impl Changes {
    /// What changed from `before` (none for a new account) to `after`.
    fn between(before: Option<&WorkerState>, after: &AccountView) -> Changes {
        let now = &after.state;
        let status_changed =
            before.is_none_or(|b| b.status != now.status || b.reason != now.reason);
        let qr_changed = match before {
            Some(b) => b.qr != now.qr,
            None => now.qr.is_some(),
        };
        Changes {
            status: status_changed.then(|| events::status_data(after)),
            qr: qr_changed.then(|| events::qr_data(now)),
        }
    }
}

/// The views and their [`Tally`], changed together.
#[derive(Debug, Default)]
struct Accounts {
    views: BTreeMap<AccountId, AccountView>,
    tally: Tally,
}

/// Every account's view, sorted by id. Every change of an account's status, reason or QR is
/// published on [`Cache::events`] as it is written.
#[derive(Debug, Default)]
pub struct Cache {
    accounts: RwLock<Accounts>,
    /// The events these changes produce.
    pub events: EventBus,
    /// The fleet's handshake budget: dials in flight, accounts waiting, dials per minute.
    pub budget: crate::fleet::budget::Gauges,
}

impl Cache {
    /// Inserts or replaces an account's view.
    pub fn insert(&self, view: AccountView) {
        let id = view.account.id.clone();
        let changes = Changes::between(None, &view);
        {
            let mut accounts = self.write();
            accounts.tally.add(&view);
            if let Some(old) = accounts.views.insert(id.clone(), view) {
                accounts.tally.sub(&old);
            }
        }
        self.publish(&id, changes);
    }

    /// Removes an account.
    pub fn remove(&self, id: &AccountId) {
        let mut accounts = self.write();
        if let Some(old) = accounts.views.remove(id) {
            accounts.tally.sub(&old);
        }
    }

    /// Applies `f` to the account's view, if there is one.
    pub fn update(&self, id: &AccountId, f: impl FnOnce(&mut AccountView)) {
        let changes = {
            let mut guard = self.write();
            let accounts = &mut *guard;
            let Some(view) = accounts.views.get_mut(id) else {
                return;
            };
            accounts.tally.sub(view);
            let before = view.state.clone();
            f(view);
            view.count_reconnects(&before);
            accounts.tally.add(view);
            if view.state.status == WorkerStatus::Connected
                && before.status != WorkerStatus::Connected
            {
                view.activity.connected_at = Some(UnixMillis::now());
            }
            Changes::between(Some(&before), view)
        };
        self.publish(id, changes);
    }

    /// A message arrived (`message.received`) or one of ours moved on (`message.status`).
    pub fn message(&self, id: &AccountId, record: &MessageRecord) {
        if let Some(view) = self.write().views.get_mut(id) {
            let counter = match (record.direction, record.status) {
                (Direction::In, _) => Some(&mut view.activity.received),
                (Direction::Out, MessageStatus::Sent) => Some(&mut view.activity.sent),
                (Direction::Out, MessageStatus::Failed) => Some(&mut view.activity.send_failed),
                (Direction::Out, _) => None,
            };
            if let Some(n) = counter {
                *n = n.saturating_add(1);
            }
        }
        let kind = match record.direction {
            Direction::In => EventKind::MessageReceived,
            Direction::Out => EventKind::MessageStatus,
        };
        self.events
            .publish(kind, id, crate::http::message_json(record));
    }

    /// A call rang or changed (`call.received`).
    pub fn call(&self, id: &AccountId, call: &ipc_protocol::CallEvent) {
        self.events
            .publish(EventKind::CallReceived, id, events::call_data(call));
    }

    /// Publishes what [`Changes::between`] found, after the lock is released.
    fn publish(&self, id: &AccountId, changes: Changes) {
        if let Some(data) = changes.status {
            self.events.publish(EventKind::AccountStatus, id, data);
        }
        if let Some(data) = changes.qr {
            self.events.publish(EventKind::AccountQr, id, data);
        }
    }

    /// One account's view.
    pub fn get(&self, id: &AccountId) -> Option<AccountView> {
        self.read().views.get(id).cloned()
    }

    /// What `f` reads from one account's view, without copying the view.
    pub fn read_one<R>(&self, id: &AccountId, f: impl FnOnce(&AccountView) -> R) -> Option<R> {
        self.read().views.get(id).map(f)
    }

    /// Whether the account exists.
    pub fn contains(&self, id: &AccountId) -> bool {
        self.read().views.contains_key(id)
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        self.read().tally.total
    }

    /// The counts per status, of running workers and of failing writes, as of now.
    pub fn tally(&self) -> Tally {
        self.read().tally
    }

    /// Every view, sorted by id.
    pub fn all(&self) -> Vec<AccountView> {
        self.read().views.values().cloned().collect()
    }

    /// What `f` makes of every view (sorted by id) and their tally, read under the lock
    /// without copying a view. `f` must not call back into the cache.
    pub fn read_all<R>(
        &self,
        f: impl FnOnce(btree_map::Values<'_, AccountId, AccountView>, &Tally) -> R,
    ) -> R {
        let accounts = self.read();
        f(accounts.views.values(), &accounts.tally)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Accounts> {
        self.accounts.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Accounts> {
        self.accounts.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Account {
        Account {
            id: AccountId::parse(id).expect("valid id"),
            name: id.to_owned(),
            phone: None,
            created_at: UnixMillis(0),
            enabled: true,
            webhook_url: None,
            browser: None,
            conflict_since: None,
        }
    }

    /// The tally as a walk over every view would count it.
    fn recount(cache: &Cache) -> Tally {
        let mut tally = Tally::default();
        for view in cache.all() {
            tally.add(&view);
        }
        tally
    }

    /// The events published so far, as `(type, data)`.
    fn published(cache: &Cache) -> Vec<(&'static str, serde_json::Value)> {
        cache
            .events
            .subscribe(Some(0))
            .backlog
            .iter()
            .map(|e| (e.kind.as_str(), e.data.clone()))
            .collect()
    }

    #[test]
    fn a_status_event_carries_what_the_dashboard_shows_of_the_account() {
        let cache = Cache::default();
        cache.insert(AccountView::idle(account("shop"), false));
        let id = AccountId::parse("shop").expect("valid id");
        let events = published(&cache);
        assert_eq!(events.len(), 1, "{events:?}");
        let (kind, data) = &events[0];
        assert_eq!(*kind, "account.status");
        assert_eq!(data["name"], "shop");
        assert_eq!(data["status"], "needs_qr");
        assert_eq!(data["needsQR"], true);

        cache.update(&id, |v| {
            v.state.status = WorkerStatus::Reconnecting;
            v.state.reason = Some(Reason::Network);
            v.state.last_error = Some("connection refused".into());
            v.state.next_retry_at = Some(UnixMillis(1_700_000_009_000));
            v.state.last_event_at = Some(UnixMillis(1_700_000_008_000));
            v.state.reconnect_attempts = 2;
            // The worker's own count is replaced by the supervisor's (none yet).
            v.state.reconnect_count = 5;
        });
        let events = published(&cache);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].1,
            serde_json::json!({
                "status": "reconnecting",
                "reason": "network",
                "error": "connection refused",
                "nextRetryAt": 1_700_000_009_000u64,
                "phone": null,
                "name": "shop",
                "reconnectCount": 0,
                "reconnectAttempts": 2,
                "lastSeen": 1_700_000_008_000u64,
                "needsQR": false,
                "dialQueuedSince": null,
            })
        );

        // Activity alone is not an event; a QR is its own.
        cache.update(&id, |v| v.state.last_event_at = Some(UnixMillis(1)));
        assert_eq!(published(&cache).len(), 2);
        cache.update(&id, |v| v.state.qr = Some("2@ref".into()));
        let events = published(&cache);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2].0, "account.qr");
        assert_eq!(events[2].1["qr"], "2@ref");
    }

    #[test]
    fn reconnects_count_returns_to_connected_across_worker_restarts_but_not_pairing() {
        let cache = Cache::default();
        cache.insert(AccountView::idle(account("a"), false));
        let a = AccountId::parse("a").expect("valid id");
        let count = || cache.get(&a).expect("view").state.reconnect_count;
        // What the worker says of its own count is replaced by the supervisor's.
        let report = |status: WorkerStatus, worker_count: u32| {
            cache.update(&a, |v| {
                v.state = WorkerState {
                    status,
                    reconnect_count: worker_count,
                    ..WorkerState::default()
                };
            });
        };
        // A scan, the registration's 515 restart, the login: a fresh pairing, no reconnect.
        report(WorkerStatus::NeedsQr, 0);
        report(WorkerStatus::Connecting, 1);
        report(WorkerStatus::Connected, 1);
        assert_eq!(count(), 0);
        // A dropped socket and back.
        report(WorkerStatus::Reconnecting, 1);
        report(WorkerStatus::Connecting, 2);
        report(WorkerStatus::Connected, 2);
        assert_eq!(count(), 1);
        // A snapshot that changes nothing else counts nothing.
        report(WorkerStatus::Connected, 2);
        assert_eq!(count(), 1);
        // The worker crashes and a new one logs in: its own count starts at 0, ours goes on.
        cache.update(&a, |v| {
            v.pid = None;
            v.state.status = WorkerStatus::Reconnecting;
        });
        report(WorkerStatus::Connecting, 0);
        report(WorkerStatus::Connected, 0);
        assert_eq!(count(), 2);
        // Logged out and paired again: a new device starts over.
        report(WorkerStatus::LoggedOut, 0);
        assert_eq!(count(), 2);
        report(WorkerStatus::NeedsQr, 0);
        report(WorkerStatus::Connected, 0);
        assert_eq!(count(), 0);
    }

    #[test]
    fn status_discriminants_index_the_tally() {
        for (i, status) in WorkerStatus::ALL.into_iter().enumerate() {
            assert_eq!(status as usize, i, "{status}");
        }
    }

    #[test]
    fn the_tally_follows_every_insert_update_and_remove() {
        let cache = Cache::default();
        let ids = ["a", "b", "c", "d"];
        for (i, id) in ids.iter().enumerate() {
            cache.insert(AccountView::idle(account(id), i % 2 == 0));
            assert_eq!(cache.tally(), recount(&cache));
        }
        let a = AccountId::parse("a").expect("valid id");
        let b = AccountId::parse("b").expect("valid id");
        cache.update(&a, |v| {
            v.pid = Some(42);
            v.state.status = WorkerStatus::Connected;
        });
        cache.update(&b, |v| {
            v.pid = Some(43);
            v.state.status = WorkerStatus::Disconnected;
            v.state.reason = Some(Reason::StorageFull);
        });
        let tally = cache.tally();
        assert_eq!(tally, recount(&cache));
        assert_eq!(tally.total, 4);
        assert_eq!(tally.running, 2);
        assert_eq!(tally.storage_failing, 1);
        assert_eq!(tally.status(WorkerStatus::Connected), 1);
        assert_eq!(tally.status(WorkerStatus::Disconnected), 1);
        // c was stored with creds (stopped), d without (needs_qr).
        assert_eq!(tally.status(WorkerStatus::Stopped), 1);
        assert_eq!(tally.status(WorkerStatus::NeedsQr), 1);
        // Replacing a view counts the old one out.
        cache.insert(AccountView::idle(account("b"), true));
        assert_eq!(cache.tally(), recount(&cache));
        assert_eq!(cache.tally().storage_failing, 0);
        cache.remove(&a);
        cache.remove(&AccountId::parse("zz").expect("valid id"));
        assert_eq!(cache.tally(), recount(&cache));
        assert_eq!(cache.count(), 3);
        assert_eq!(cache.tally().running, 0);
    }
}
