//! The last known view of every account: written by the fleet task (which hears the workers'
//! snapshots over IPC), read by the HTTP handlers, which never wait on a worker.

use std::collections::BTreeMap;
use std::sync::RwLock;

use ipc_protocol::{
    AccountId, Direction, MessageRecord, Reason, UnixMillis, WorkerState, WorkerStatus,
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

/// Every account's view, sorted by id. Every change of an account's status, reason or QR is
/// published on [`Cache::events`] as it is written.
#[derive(Debug, Default)]
pub struct Cache {
    accounts: RwLock<BTreeMap<AccountId, AccountView>>,
    /// The events these changes produce.
    pub events: EventBus,
    /// The fleet's handshake budget: dials in flight, accounts waiting, dials per minute.
    pub budget: crate::fleet::budget::Gauges,
}

impl Cache {
    /// Inserts or replaces an account's view.
    pub fn insert(&self, view: AccountView) {
        let id = view.account.id.clone();
        let old = self.write().insert(id.clone(), view.clone());
        self.publish_changes(&id, old.as_ref().map(|v| &v.state), &view.state);
    }

    /// Removes an account.
    pub fn remove(&self, id: &AccountId) {
        self.write().remove(id);
    }

    /// Applies `f` to the account's view, if there is one.
    pub fn update(&self, id: &AccountId, f: impl FnOnce(&mut AccountView)) {
        let changed = {
            let mut accounts = self.write();
            let Some(view) = accounts.get_mut(id) else {
                return;
            };
            let before = view.state.clone();
            f(view);
            (before, view.state.clone())
        };
        self.publish_changes(id, Some(&changed.0), &changed.1);
    }

    /// A message arrived (`message.received`) or one of ours moved on (`message.status`).
    pub fn message(&self, id: &AccountId, record: &MessageRecord) {
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
        self.read().get(id).cloned()
    }

    /// Whether the account exists.
    pub fn contains(&self, id: &AccountId) -> bool {
        self.read().contains_key(id)
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// Every view, sorted by id.
    pub fn all(&self) -> Vec<AccountView> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<AccountId, AccountView>> {
        self.accounts.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<AccountId, AccountView>> {
        self.accounts.write().unwrap_or_else(|p| p.into_inner())
    }
}
