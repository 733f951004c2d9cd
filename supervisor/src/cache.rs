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
            activity: Activity::default(),
        }
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
        let old = {
            let mut accounts = self.write();
            accounts.tally.add(&view);
            let old = accounts.views.insert(id.clone(), view.clone());
            if let Some(old) = &old {
                accounts.tally.sub(old);
            }
            old
        };
        self.publish_changes(&id, old.as_ref().map(|v| &v.state), &view.state);
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
        let changed = {
            let mut guard = self.write();
            let accounts = &mut *guard;
            let Some(view) = accounts.views.get_mut(id) else {
                return;
            };
            accounts.tally.sub(view);
            let before = view.state.clone();
            f(view);
            accounts.tally.add(view);
            if view.state.status == WorkerStatus::Connected
                && before.status != WorkerStatus::Connected
            {
                view.activity.connected_at = Some(UnixMillis::now());
            }
            (before, view.state.clone())
        };
        self.publish_changes(id, Some(&changed.0), &changed.1);
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

    /// Publishes `account.status` when the status or reason changed, `account.qr` when the QR
    /// did.
    fn publish_changes(&self, id: &AccountId, before: Option<&WorkerState>, after: &WorkerState) {
        let status_changed =
            before.is_none_or(|b| b.status != after.status || b.reason != after.reason);
        if status_changed {
            self.events
                .publish(EventKind::AccountStatus, id, events::status_data(after));
        }
        let qr_changed = match before {
            Some(b) => b.qr != after.qr,
            None => after.qr.is_some(),
        };
        if qr_changed {
            self.events
                .publish(EventKind::AccountQr, id, events::qr_data(after));
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
