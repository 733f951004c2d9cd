//! The simulator's "account database" and its table of live connections (wa-protocol.md §10.2).
//!
//! ```text
//!  Registry
//!   ├─ accounts   phone → Account (identity key pair = the ADV account key, LID, rawID)
//!   │               └─ devices  id → Device (noise key, Signal keys, prekeys, outbox, state)
//!   ├─ lids       LID user → phone (every account is reachable by PN and by LID)
//!   ├─ peers      phone → PhonePeer (device 0 as a Signal peer: keys, sessions, inbox)
//!   ├─ phone_queue  stanzas relayed to some device 0, waiting for `peer::drain`
//!   ├─ groups     group id → Group (subject, addressing mode, member phones)
//!   ├─ conns      ConnId → ConnEntry (state, device JID once logged in, command channel,
//!   │                                 the registration while pairing)
//!   ├─ waiters    message id → who waits for its ack (POST /message)
//!   └─ stats, config
//! ```
//!
//! Everything sits behind one mutex, held for short, synchronous steps only: the protocol
//! handlers (`pairing`, `login`, `phone`, `delivery`, `directory`, `relay`, `groups`) take
//! `&mut Registry` and return what to write; connection tasks do the IO after the lock is
//! released.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use worker::wa::binary::jid::{DEFAULT_USER_SERVER, HIDDEN_USER_SERVER};
use worker::wa::binary::{Jid, Node};
use worker::wa::xeddsa;

use super::connection::Command;
use super::faults::Fault;
use super::pairing::{RefSchedule, RegistrationKeys};
use super::peer::PhonePeer;
use super::phone::PendingPair;

/// A connection's number, unique for the simulator's lifetime.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// WebSocket open; the Noise handshake has not finished.
    Handshake,
    /// A registration session: refs sent, waiting for a scan or the pair-device-sign reply.
    Pairing,
    /// `<success>` sent; the device is online.
    LoggedIn,
    /// The simulator decided to end it (fault, replaced, pairing done); the socket is closing.
    Closing,
}

/// Counters a test reads to prove what did or did not happen.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Stats {
    /// Handshakes whose ClientPayload carried `devicePairingData`.
    pub registrations: u64,
    /// `<success>` sent.
    pub logins: u64,
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Pairings completed (device signature verified).
    pub pairings: u64,
    /// `<failure>` sent instead of `<success>`.
    pub login_failures: u64,
    /// Client `<message>` stanzas accepted (server ack without error).
    pub messages_accepted: u64,
    /// `<message>` copies handed to recipient devices (one per device).
    pub messages_relayed: u64,
    /// `<receipt>` copies handed to devices (one per device).
    pub receipts_relayed: u64,
    /// `usync` queries answered.
    pub usync_queries: u64,
    /// Prekey bundles handed out (one per device in an `encrypt` key fetch).
    pub bundle_fetches: u64,
    /// One-time prekeys consumed by bundle fetches.
    pub prekeys_consumed: u64,
    /// `<ack>`s from clients for stanzas the simulator delivered.
    pub client_acks: u64,
    /// Queued stanzas dropped because a device's outbox was full.
    pub outbox_overflows: u64,
    /// Companion devices removed at a client's `<remove-companion-device/>` request.
    pub companions_removed: u64,
    /// `/flood` stanzas written to clients.
    pub flood_sent: u64,
    /// Acks of `/flood` stanzas.
    pub flood_acked: u64,
    /// Noise IK handshakes accepted (a paired device resuming, wa-protocol.md §2.6).
    pub ik_logins: u64,
    /// Noise IK attempts refused and answered with XXfallback.
    pub ik_fallbacks: u64,
    /// Connections silenced (`/silence`, or `/config` `silent`).
    pub silenced: u64,
    /// Client keepalive pings (`w:p`) answered on logged-in connections.
    pub client_pings: u64,
    /// `GET /sw.js` served (clients reading the current version).
    pub sw_js_served: u64,
    /// TLS handshakes completed (`--tls`).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or timed out (a client not trusting the CA, say).
    pub tls_failures: u64,
}

/// Settings the control API can change while the simulator runs.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LiveConfig {
    /// Delay before the ServerHello.
    pub handshake_delay: Duration,
    /// Delay before the first stanza after the handshake.
    pub edge_latency: Duration,
    /// Refuse WebSocket upgrades (HTTP 503).
    pub refuse: bool,
    /// Every ref lives this long instead of the protocol's 60 s then 20 s.
    pub ref_timeout: Option<Duration>,
}

/// One row of `GET /sessions`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionView {
    /// The connection.
    pub conn_id: ConnId,
    /// The device JID once logged in; `null` before.
    pub jid: Option<String>,
    /// Where it is.
    pub state: ConnState,
    /// When the WebSocket was accepted, RFC 3339 with milliseconds.
    pub connected_at: String,
    /// The routing info of the client's `ED` pre-intro, as text (`null` without one).
    pub routing_info: Option<String>,
    /// Whether the connection came over TLS (`wss://`).
    pub tls: bool,
}

/// All accounts, devices and live connections.
#[derive(Debug, Default)]
pub struct Registry {
    accounts: HashMap<String, Account>,
    lids: HashMap<String, String>,
    peers: HashMap<String, PhonePeer>,
    /// (phone, stanza) relayed to that account's device 0, oldest first.
    pub(crate) phone_queue: VecDeque<(String, Node)>,
    pub(crate) groups: BTreeMap<String, Group>,
    conns: BTreeMap<ConnId, ConnEntry>,
    waiters: HashMap<String, oneshot::Sender<Confirmation>>,
    /// The counters.
    pub stats: Stats,
    /// The live settings.
    pub config: LiveConfig,
    /// What devices answered to `/push` (`pushes`).
    pub(crate) pushes: super::pushes::Ledger,
    /// The timeline of connections and the after-login knob (`/dials`, `/after-login`).
    pub pacing: super::pacing::Pacing,
    /// Versions, failures played at login, silence (`policy`).
    pub policy: super::policy::Policy,
    next_conn: u64,
    next_id: u64,
    next_group: u64,
}

/// Which namespace a stanza addresses users in (wa-messaging.md §1.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Addressing {
    /// Phone numbers, `…@s.whatsapp.net`.
    Pn,
    /// Linked identities, `…@lid`.
    Lid,
}

impl Addressing {
    /// The namespace of `jid`, if it is a user JID.
    pub(crate) fn of(jid: &Jid) -> Option<Self> {
        match jid.server.as_str() {
            DEFAULT_USER_SERVER => Some(Self::Pn),
            HIDDEN_USER_SERVER => Some(Self::Lid),
            _ => None,
        }
    }

    /// `pn` or `lid`, as in `addressing_mode`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pn => "pn",
            Self::Lid => "lid",
        }
    }
}

/// A group chat the control API created (wa-messaging.md §7.1).
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// The user part of `<id>@g.us`.
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) addressing: Addressing,
    /// Member phones, creator first.
    pub(crate) members: Vec<String>,
    pub(crate) created: u64,
}

/// A phone number with its primary device's keys.
pub(crate) struct Account {
    pub(crate) phone: String,
    pub(crate) lid: String,
    /// The push name the account's devices announced with `<presence name=…>`.
    pub(crate) push_name: Option<String>,
    identity_private: [u8; 32],
    pub(crate) identity_public: [u8; 32],
    pub(crate) raw_id: u32,
    pub(crate) created: u64,
    next_device: u16,
    next_key_index: u32,
    pub(crate) devices: BTreeMap<u16, Device>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("phone", &masked(&self.phone))
            .field("lid", &self.lid)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

/// A companion device of an account.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: u16,
    /// The key index the phone gave it (usync `key-index`).
    pub(crate) key_index: u32,
    pub(crate) state: DeviceState,
    pub(crate) noise_public: [u8; 32],
    pub(crate) keys: RegistrationKeys,
    /// One-time prekeys uploaded, by id.
    pub(crate) prekeys: BTreeMap<u32, [u8; 32]>,
    /// Whether the device ever uploaded prekeys (the digest IQ answers 404 before).
    pub(crate) uploaded: bool,
    /// The `ADVSignedDeviceIdentity` the companion signed.
    pub(crate) signed_identity: Option<Vec<u8>>,
    /// Stanzas delivered or waiting for delivery, kept until confirmed (§10.8).
    pub(crate) outbox: Vec<Node>,
    /// The last [`MAX_RELAYED_LOG`] stanzas handed to the device (`GET /relayed`).
    pub(crate) relayed: VecDeque<RelayedView>,
}

/// How many handed-out stanzas `GET /relayed` remembers per device.
pub(crate) const MAX_RELAYED_LOG: usize = 200;

/// One row of `GET /relayed`: a stanza handed to a device, without its ciphertext.
#[derive(Clone, Debug, Serialize)]
pub struct RelayedView {
    /// `message`, `receipt`, …
    pub tag: String,
    /// The stanza id.
    pub id: String,
    /// The `from` attribute.
    pub from: String,
    /// The `type` attribute, if any.
    pub r#type: Option<String>,
    /// The `participant` attribute, if any.
    pub participant: Option<String>,
    /// The `type` of each `<enc>` child, in order.
    pub encs: Vec<String>,
    /// Still waiting for the device's confirmation (filled in when read).
    pub pending: bool,
}

impl RelayedView {
    /// The view of `stanza`.
    pub(crate) fn of(stanza: &Node) -> Self {
        let attr = |k: &str| stanza.attr_str(k).map(|v| v.into_owned());
        Self {
            tag: stanza.tag.clone(),
            id: attr("id").unwrap_or_default(),
            from: attr("from").unwrap_or_default(),
            r#type: attr("type"),
            participant: attr("participant"),
            encs: stanza
                .children_by_tag("enc")
                .map(|e| e.attr_str("type").unwrap_or_default().into_owned())
                .collect(),
            pending: true,
        }
    }
}

/// A device's standing (§10.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum DeviceState {
    /// pair-success sent; the device signature has not arrived.
    Pending,
    /// Paired: it may log in with its noise key.
    Paired,
    /// Unlinked; logins get `<failure reason="401"/>`.
    Removed,
}

/// A live connection as the rest of the simulator sees it.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) state: ConnState,
    pub(crate) jid: Option<Jid>,
    pub(crate) connected_at: SystemTime,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) registration: Option<Registration>,
    /// Sent `<active/>` (§8.2): queued stanzas flow.
    pub(crate) active: bool,
    /// The routing info of the client's `ED` pre-intro (§1.2).
    pub(crate) routing_info: Option<Vec<u8>>,
    /// The WebSocket runs over TLS.
    pub(crate) tls: bool,
}

/// A registration session's state (§10.3).
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) noise_public: [u8; 32],
    pub(crate) keys: RegistrationKeys,
    pub(crate) pair_device_id: String,
    pub(crate) refs: RefSchedule,
    pub(crate) pending: Option<PendingPair>,
    /// A pairing code's hello (`link_code.rs`).
    pub(crate) link_code: Option<super::link_code::CodeRegistration>,
}

/// How a delivered stanza was confirmed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Confirmation {
    /// `ack` or `receipt`.
    pub(crate) by: &'static str,
    /// The `error` attribute of a negative ack.
    pub(crate) error: Option<String>,
}

/// Why a login was answered with `<failure reason="401"/>`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum LoginRefused {
    #[error("no account has this number")]
    UnknownAccount,
    #[error("the account has no such device")]
    UnknownDevice,
    #[error("the device never finished pairing")]
    NotPaired,
    #[error("the device was removed")]
    Removed,
    #[error("the noise key is not the one that paired")]
    WrongNoiseKey,
}

/// What a successful login needs for `<success>`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct LoginGrant {
    pub(crate) jid: Jid,
    pub(crate) lid: Jid,
    pub(crate) created: u64,
}

impl Registry {
    /// An empty registry with these settings.
    pub fn new(config: LiveConfig) -> Self {
        Self {
            config,
            next_id: 1000,
            ..Self::default()
        }
    }

    /// A fresh id for a server-originated IQ or message.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers a new WebSocket connection.
    pub(crate) fn open_conn(
        &mut self,
        commands: mpsc::UnboundedSender<Command>,
        tls: bool,
    ) -> ConnId {
        self.next_conn += 1;
        self.stats.connections += 1;
        let id = ConnId(self.next_conn);
        self.pacing.accepted(id, super::pacing::unix_ms());
        self.conns.insert(
            id,
            ConnEntry {
                state: ConnState::Handshake,
                jid: None,
                connected_at: SystemTime::now(),
                commands,
                registration: None,
                active: false,
                routing_info: None,
                tls,
            },
        );
        id
    }

    /// Records the routing info a connection presented in its pre-intro.
    pub(crate) fn set_routing_info(&mut self, id: ConnId, info: Vec<u8>) {
        if let Some(entry) = self.conns.get_mut(&id) {
            entry.routing_info = Some(info);
        }
    }

    /// Forgets a connection; a pairing it left half done is undone.
    pub(crate) fn close_conn(&mut self, id: ConnId) {
        let Some(entry) = self.conns.remove(&id) else {
            return;
        };
        if let Some(pending) = entry.registration.and_then(|r| r.pending) {
            let jid = Jid::device(pending.phone, DEFAULT_USER_SERVER, pending.device_id);
            self.drop_pending_device(&jid);
        }
    }

    /// The connection, if live.
    pub(crate) fn conn(&self, id: ConnId) -> Option<&ConnEntry> {
        self.conns.get(&id)
    }

    /// The connection, if live.
    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut ConnEntry> {
        self.conns.get_mut(&id)
    }

    /// Every live connection.
    pub(crate) fn conns_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut ConnEntry)> {
        self.conns.iter_mut().map(|(id, c)| (*id, c))
    }

    /// Sets a connection's state.
    pub(crate) fn set_state(&mut self, id: ConnId, state: ConnState) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = state;
        }
    }

    /// The live, logged-in connection of the device `jid`.
    pub(crate) fn logged_in(&self, jid: &Jid) -> Option<(ConnId, &ConnEntry)> {
        self.conns.iter().find_map(|(id, c)| {
            (c.state == ConnState::LoggedIn && c.jid.as_ref().is_some_and(|j| same_device(j, jid)))
                .then_some((*id, c))
        })
    }

    /// `GET /sessions`.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.conns
            .iter()
            .map(|(id, c)| SessionView {
                conn_id: *id,
                jid: c
                    .jid
                    .as_ref()
                    .filter(|_| c.state != ConnState::Pairing)
                    .map(ToString::to_string),
                state: c.state,
                connected_at: humantime::format_rfc3339_millis(c.connected_at).to_string(),
                routing_info: c
                    .routing_info
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(r).into_owned()),
                tls: c.tls,
            })
            .collect()
    }

    /// The companions linked to `phone`'s account, as its Linked devices list shows them.
    pub fn linked_devices(&self, phone: &str) -> Option<Vec<serde_json::Value>> {
        let account = self.accounts.get(phone)?;
        Some(
            account
                .devices
                .values()
                .filter(|d| d.id != 0)
                .map(|d| {
                    serde_json::json!({
                        "device": d.id,
                        "state": format!("{:?}", d.state),
                        "companion": d.keys.companion,
                    })
                })
                .collect(),
        )
    }

    /// The account of `phone`, created with fresh keys if new.
    pub(crate) fn account_or_create(&mut self, phone: &str, now_unix: u64) -> &mut Account {
        if !self.accounts.contains_key(phone) {
            let lid = loop {
                let candidate = format!("1{:014}", rand::random::<u64>() % 100_000_000_000_000);
                if self.accounts.values().all(|a| a.lid != candidate) {
                    break candidate;
                }
            };
            let identity_private = xeddsa::generate_private();
            self.lids.insert(lid.clone(), phone.to_owned());
            self.peers
                .insert(phone.to_owned(), PhonePeer::new(&identity_private));
            self.accounts.insert(
                phone.to_owned(),
                Account {
                    phone: phone.to_owned(),
                    lid,
                    push_name: None,
                    identity_public: xeddsa::public_key(&identity_private),
                    identity_private,
                    raw_id: rand::random::<u32>() >> 1,
                    created: now_unix,
                    next_device: 1,
                    next_key_index: 1,
                    devices: BTreeMap::new(),
                },
            );
        }
        self.accounts
            .get_mut(phone)
            .expect("inserted above when missing")
    }

    /// The device `jid` (`phone:device@s.whatsapp.net` or `lid:device@lid`).
    pub(crate) fn device_mut(&mut self, jid: &Jid) -> Option<&mut Device> {
        let phone = self.phone_of(jid)?.to_owned();
        self.accounts.get_mut(&phone)?.devices.get_mut(&jid.device)
    }

    /// The phone number of the account `jid` names, by PN or by LID.
    pub(crate) fn phone_of(&self, jid: &Jid) -> Option<&str> {
        match Addressing::of(jid)? {
            Addressing::Pn => self
                .accounts
                .get_key_value(&jid.user)
                .map(|(k, _)| k.as_str()),
            Addressing::Lid => self.lids.get(&jid.user).map(String::as_str),
        }
    }

    /// The account `jid` names, by PN or by LID.
    pub(crate) fn account_of(&self, jid: &Jid) -> Option<&Account> {
        let phone = self.phone_of(jid)?;
        self.accounts.get(phone)
    }

    /// The account of `phone`.
    pub(crate) fn account(&self, phone: &str) -> Option<&Account> {
        self.accounts.get(phone)
    }

    /// The account of `phone`.
    pub(crate) fn account_mut(&mut self, phone: &str) -> Option<&mut Account> {
        self.accounts.get_mut(phone)
    }

    /// The phone (device 0) of `phone` as a Signal peer.
    pub(crate) fn peer_mut(&mut self, phone: &str) -> Option<&mut PhonePeer> {
        self.peers.get_mut(phone)
    }

    /// The phone (device 0) of `phone` as a Signal peer.
    pub(crate) fn peer(&self, phone: &str) -> Option<&PhonePeer> {
        self.peers.get(phone)
    }

    /// Takes the phone's peer out while it works on other accounts; give it back with
    /// [`Self::put_peer`].
    pub(crate) fn take_peer(&mut self, phone: &str) -> Option<PhonePeer> {
        self.peers.remove(phone)
    }

    /// Gives back what [`Self::take_peer`] took.
    pub(crate) fn put_peer(&mut self, phone: &str, peer: PhonePeer) {
        self.peers.insert(phone.to_owned(), peer);
    }

    /// A fresh group id (`120363…`, 18 digits).
    pub(crate) fn next_group_id(&mut self) -> String {
        self.next_group += 1;
        format!("120363{:012}", self.next_group)
    }

    /// The device logged in on connection `id`.
    pub(crate) fn device_of_conn(&mut self, id: ConnId) -> Option<&mut Device> {
        let jid = self.conns.get(&id)?.jid.clone()?;
        self.device_mut(&jid)
    }

    /// Forgets the device `jid` if it never finished pairing.
    pub(crate) fn drop_pending_device(&mut self, jid: &Jid) {
        if let Some(account) = self.accounts.get_mut(&jid.user) {
            if account
                .devices
                .get(&jid.device)
                .is_some_and(|d| d.state == DeviceState::Pending)
            {
                account.devices.remove(&jid.device);
            }
        }
    }

    /// Checks a login (§10.5): the device exists, is paired, and proved the noise key that
    /// paired. On success the connection is logged in and any other live connection of the same
    /// device is told to go (`conflict replaced`).
    pub(crate) fn login(
        &mut self,
        id: ConnId,
        username: u64,
        device: u32,
        noise_public: &[u8; 32],
    ) -> Result<LoginGrant, LoginRefused> {
        let phone = username.to_string();
        let grant = self.check_login(&phone, device, noise_public);
        let grant = match grant {
            Ok(grant) => grant,
            Err(refused) => {
                self.stats.login_failures += 1;
                return Err(refused);
            }
        };
        for (other, entry) in self.conns.iter_mut() {
            let same = entry
                .jid
                .as_ref()
                .is_some_and(|j| same_device(j, &grant.jid));
            if *other != id && same && entry.state == ConnState::LoggedIn {
                entry.state = ConnState::Closing;
                let _ = entry.commands.send(Command::Fault {
                    fault: Fault::Conflict,
                    done: None,
                });
            }
        }
        if let Some(entry) = self.conns.get_mut(&id) {
            entry.state = ConnState::LoggedIn;
            entry.jid = Some(grant.jid.clone());
            entry.active = false;
        }
        self.stats.logins += 1;
        Ok(grant)
    }

    /// Whether `device` of `phone` may log in with `noise_public`, without logging it in.
    pub(crate) fn check_login(
        &self,
        phone: &str,
        device: u32,
        noise_public: &[u8; 32],
    ) -> Result<LoginGrant, LoginRefused> {
        let account = self
            .accounts
            .get(phone)
            .ok_or(LoginRefused::UnknownAccount)?;
        let record = u16::try_from(device)
            .ok()
            .and_then(|d| account.devices.get(&d))
            .ok_or(LoginRefused::UnknownDevice)?;
        match record.state {
            DeviceState::Pending => return Err(LoginRefused::NotPaired),
            DeviceState::Removed => return Err(LoginRefused::Removed),
            DeviceState::Paired => {}
        }
        if record.noise_public != *noise_public {
            return Err(LoginRefused::WrongNoiseKey);
        }
        Ok(LoginGrant {
            jid: Jid::device(phone, DEFAULT_USER_SERVER, record.id),
            lid: Jid::device(account.lid.as_str(), "lid", record.id),
            created: account.created,
        })
    }

    /// Marks the device `jid` removed (§8.7a, §10.7 logout). Returns whether it existed and was
    /// not removed already.
    pub(crate) fn remove_device(&mut self, jid: &Jid) -> bool {
        match self.device_mut(jid) {
            Some(device) if device.state != DeviceState::Removed => {
                device.state = DeviceState::Removed;
                true
            }
            _ => false,
        }
    }

    /// `GET /relayed`: what was handed to the device `jid`, oldest first.
    pub fn relayed(&mut self, jid: &Jid) -> Option<Vec<RelayedView>> {
        let device = self.device_mut(jid)?;
        let views = device
            .relayed
            .iter()
            .cloned()
            .map(|mut view| {
                view.pending = device.outbox.iter().any(|n| {
                    n.tag == view.tag && n.attr_str("id").as_deref() == Some(view.id.as_str())
                });
                view
            })
            .collect();
        Some(views)
    }

    /// Registers someone waiting for the confirmation of message `id`.
    pub(crate) fn wait_for(&mut self, id: String) -> oneshot::Receiver<Confirmation> {
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(id, tx);
        rx
    }

    /// Stops waiting for message `id` (the waiter gave up).
    pub(crate) fn forget_waiter(&mut self, id: &str) {
        self.waiters.remove(id);
    }

    /// Tells whoever waits for message `id` how it was confirmed.
    pub(crate) fn confirm(&mut self, id: &str, confirmation: Confirmation) {
        if let Some(waiter) = self.waiters.remove(id) {
            let _ = waiter.send(confirmation);
        }
    }
}

impl Account {
    /// The paired companions. Device 0, the phone, is no [`Device`]: see
    /// [`Self::signal_devices`].
    pub(crate) fn companions(&self) -> impl Iterator<Item = &Device> {
        self.devices
            .values()
            .filter(|d| d.state == DeviceState::Paired)
    }

    /// Every device messages go to: the phone (0, a Signal peer in `peer`) and the paired
    /// companions.
    pub(crate) fn signal_devices(&self) -> Vec<u16> {
        std::iter::once(0)
            .chain(self.companions().map(|d| d.id))
            .collect()
    }

    /// Whether device `id` is the phone or a paired companion.
    pub(crate) fn has_signal_device(&self, id: u16) -> bool {
        id == 0 || self.has_companion(id)
    }

    /// Whether device `id` is a paired companion.
    pub(crate) fn has_companion(&self, id: u16) -> bool {
        self.devices
            .get(&id)
            .is_some_and(|d| d.state == DeviceState::Paired)
    }

    /// Device `device` of this account in namespace `addressing`.
    pub(crate) fn jid(&self, addressing: Addressing, device: u16) -> Jid {
        match addressing {
            Addressing::Pn => Jid::device(self.phone.as_str(), DEFAULT_USER_SERVER, device),
            Addressing::Lid => Jid::device(self.lid.as_str(), HIDDEN_USER_SERVER, device),
        }
    }

    /// The ADV account key (the phone's identity key), private half.
    pub(crate) fn identity_private(&self) -> &[u8; 32] {
        &self.identity_private
    }

    /// Allocates the next device id and key index.
    pub(crate) fn allocate_device(&mut self) -> (u16, u32) {
        let device = self.next_device;
        let key_index = self.next_key_index;
        self.next_device = self.next_device.wrapping_add(1).max(1);
        self.next_key_index += 1;
        (device, key_index)
    }
}

/// Whether two JIDs name the same device (user, server, device).
pub(crate) fn same_device(a: &Jid, b: &Jid) -> bool {
    a.user == b.user && a.server == b.server && a.device == b.device
}

/// The JID in attribute `key`, typed on the wire or written as text.
pub(crate) fn jid_in(node: &Node, key: &str) -> Option<Jid> {
    node.attr_jid(key)
        .cloned()
        .or_else(|| node.attr_str(key).and_then(|s| s.parse::<Jid>().ok()))
}

/// A phone number for logs: all but the last two digits hidden.
pub(crate) fn masked(phone: &str) -> String {
    let keep = phone.len().saturating_sub(2);
    format!("{}{}", "*".repeat(keep), &phone[keep..])
}

/// The current unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The instant for deadlines (tokio's, so paused-time tests work).
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_two_digits() {
        assert_eq!(masked("15551234567"), "*********67");
        assert_eq!(masked("7"), "7");
    }

    #[test]
    fn allocates_device_ids_and_key_indexes_in_order() {
        let mut registry = Registry::new(LiveConfig::default());
        let account = registry.account_or_create("15551234567", 1);
        assert_eq!(account.allocate_device(), (1, 1));
        assert_eq!(account.allocate_device(), (2, 2));
        let lid = account.lid.clone();
        assert_eq!(lid.len(), 15);
        assert_eq!(
            registry.account_or_create("15551234567", 2).lid,
            lid,
            "same account"
        );
    }

    #[test]
    fn an_unknown_number_cannot_log_in() {
        let mut registry = Registry::new(LiveConfig::default());
        let (tx, _rx) = mpsc::unbounded_channel();
        let id = registry.open_conn(tx, false);
        assert_eq!(
            registry.login(id, 15_551_234_567, 1, &[0; 32]),
            Err(LoginRefused::UnknownAccount)
        );
        assert_eq!(registry.stats.login_failures, 1);
        assert_eq!(registry.sessions()[0].state, ConnState::Handshake);
    }
}
