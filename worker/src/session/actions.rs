//! What a handler decided: the stanzas to send, the changes to make durable, what to report,
//! and whether the connection ends. Handlers only decide; [`super::Session::apply`] carries the
//! decision out, always in the same order:
//!
//! 1. persist (durable before anyone hears of it: a crash after this point loses nothing),
//! 2. report to the supervisor,
//! 3. send the stanzas,
//! 4. end the connection.

use std::time::Duration;

use ipc_protocol::{Reason, WorkerStatus};

use super::events::Disconnect;
use ipc_protocol::MessageRecord;

use super::retry::RetryReceipt;
use crate::store::creds::Creds;
use crate::store::groups::GroupMemory;
use crate::store::signal::Address;
use crate::wa::binary::{Jid, Node};

/// A handler's decision.
#[derive(Debug, Default)]
pub(crate) struct Actions {
    /// Changes to make durable first.
    pub(crate) persist: Vec<Persist>,
    /// What the supervisor hears, after the changes are durable.
    pub(crate) report: Vec<Report>,
    /// Stanzas to write, in order.
    pub(crate) send: Vec<Node>,
    /// End the connection afterwards.
    pub(crate) end: Option<Disconnect>,
}

/// A change that must be durable before the stanzas that depend on it go out.
#[derive(Debug)]
pub(crate) enum Persist {
    /// Replace the credentials with these, and save them.
    Creds(Box<Creds>),
    /// Our LID, as `<success>` named it.
    OwnLid(String),
    /// Generate this many one-time prekeys, durably, then upload them.
    UploadPrekeys(u32),
    /// The edge routing info for the next connect.
    RoutingInfo(Vec<u8>),
    /// A PN↔LID pair learned from traffic (user parts).
    LidMapping {
        /// The phone number.
        pn: String,
        /// The LID.
        lid: String,
    },
    /// A Signal session that changed; then the one-time prekey it consumed goes, and the
    /// peer identity it carried (trust on first use) is kept.
    Session {
        /// The peer device.
        address: Address,
        /// The record's bytes.
        record: Vec<u8>,
        /// The one-time prekey to forget once the record is durable.
        consumed_prekey: Option<u32>,
        /// A new or changed identity of the peer.
        identity: Option<[u8; 32]>,
    },
    /// A sender key record that changed.
    SenderKey {
        /// The group JID.
        group: String,
        /// The sender device.
        sender: Address,
        /// The record's bytes.
        record: Vec<u8>,
    },
    /// What we remember of a group's members and key holders.
    GroupMemory {
        /// The group JID.
        group: String,
        /// The memory.
        memory: GroupMemory,
    },
    /// A user's device list (and LID), from usync, for the cache.
    DeviceList {
        /// The user (bare).
        user: Jid,
        /// Its devices.
        devices: Vec<Jid>,
        /// Its LID, when given.
        lid: Option<Jid>,
    },
    /// Drop every session and the identity of a user (it reinstalled).
    ForgetUser {
        /// The user.
        user: Jid,
    },
    /// Drop a user's cached device list.
    ForgetDevices {
        /// The user (any device of it).
        user: Jid,
    },
    /// A message to record (a cursor of 0 is assigned); once durable it is reported.
    Message(MessageRecord),
    /// A retry receipt with our keys in it: a fresh one-time prekey is made durable first,
    /// then the receipt follows.
    RetryReceiptWithKeys(RetryReceipt),
}

/// Something the supervisor should hear.
#[derive(Debug, Eq, PartialEq)]
pub(crate) enum Report {
    /// A new status.
    Status(WorkerStatus, Option<Reason>),
    /// A QR ref to show until `expires_in` has passed (status `needs_qr`).
    Qr {
        /// The QR string.
        qr: String,
        /// Its remaining lifetime.
        expires_in: Duration,
    },
    /// Pairing succeeded: the JID and phone come from the (already saved) creds.
    Paired,
    /// Logged in: retries and errors are over.
    Connected,
    /// A message arrived.
    MessageSeen,
    /// A message could not be decrypted.
    DecryptFailed,
    /// A call rang or changed.
    Call(ipc_protocol::CallEvent),
    /// The answer to a pairing code request.
    PairingCode {
        /// The supervisor's request.
        request: u64,
        /// The code, or why not.
        outcome: ipc_protocol::PairingCodeOutcome,
    },
}

impl Actions {
    /// No decision at all.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Send one stanza.
    pub(crate) fn send(node: Node) -> Self {
        Self::none().and_send(node)
    }

    /// End the connection.
    pub(crate) fn end(disconnect: Disconnect) -> Self {
        Actions {
            end: Some(disconnect),
            ..Self::default()
        }
    }

    /// Also send `node`, after what is already queued.
    pub(crate) fn and_send(mut self, node: Node) -> Self {
        self.send.push(node);
        self
    }

    /// Also persist `change`.
    pub(crate) fn and_persist(mut self, change: Persist) -> Self {
        self.persist.push(change);
        self
    }

    /// This decision, then everything `then` decided (ends: the first one wins).
    pub(crate) fn merge(mut self, then: Actions) -> Self {
        self.persist.extend(then.persist);
        self.report.extend(then.report);
        self.send.extend(then.send);
        self.end = self.end.or(then.end);
        self
    }

    /// Also report `report`.
    pub(crate) fn and_report(mut self, report: Report) -> Self {
        self.report.push(report);
        self
    }
}
