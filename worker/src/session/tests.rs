//! The whole session over in-memory connections, under paused time: the test plays the server
//! (answering dials, pushing stanzas, reading what the session sends) and the supervisor
//! (reading reports, sending commands).

use std::time::Duration;

use clap::Parser;
use ipc_protocol::{Reason, ToSupervisor, ToWorker, WorkerState, WorkerStatus};
use prost::Message as _;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pair::tests::{vector_creds, PAIR_SUCCESS};
use super::socket::memory::{self, DialRequest, ServerEnd};
use super::socket::Dialer;
use super::{Session, SessionError};
use crate::config::WorkerArgs;
use crate::store::creds::{Creds, CredsStore, Loaded};
use crate::wa::binary::{decode, Jid, Node};
use crate::wa::proto::ClientPayload;

/// Longer than anything a step may take in virtual time.
const STEP: Duration = Duration::from_secs(600);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

/// A running session and both of its peers.
struct Harness {
    dir: TempDir,
    dials: mpsc::UnboundedReceiver<DialRequest>,
    reports: mpsc::UnboundedReceiver<ToSupervisor>,
    commands: mpsc::UnboundedSender<ToWorker>,
    token: CancellationToken,
    task: JoinHandle<Result<(), SessionError>>,
    last: WorkerState,
}

impl Harness {
    /// Starts a session on an account directory holding `creds` (none: never registered).
    fn start(creds: Option<&Creds>) -> Self {
        Self::start_with(creds, false)
    }

    /// Starts a session whose dials wait for the test's `DialGranted`.
    fn start_paced(creds: Option<&Creds>) -> Self {
        Self::start_with(creds, true)
    }

    fn start_with(creds: Option<&Creds>, paced: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cli = Cli::try_parse_from([
            "worker",
            "--account",
            "acct",
            "--sessions",
            dir.path().to_str().expect("utf-8 path"),
        ])
        .expect("flags");
        let account_dir = cli.args.account_dir();
        std::fs::create_dir_all(&account_dir).expect("account dir");
        if let Some(creds) = creds {
            CredsStore::new(&account_dir).save(creds).expect("save");
        }
        let (link, reports) = if paced {
            crate::ipc::for_test_paced()
        } else {
            crate::ipc::for_test()
        };
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (dialer, dials) = memory::dials();
        let mut session = Session::new(&cli.args, link, command_rx);
        session.dialer = Dialer::Memory(dialer);
        let token = CancellationToken::new();
        let task = tokio::spawn(session.run(token.clone()));
        Harness {
            dir,
            dials,
            reports,
            commands,
            token,
            task,
            last: WorkerState::default(),
        }
    }

    fn creds(&self) -> Option<Creds> {
        let dir = self.dir.path().join("acct");
        match CredsStore::new(&dir)
            .load(&crate::store::signal::KeyStore::new(&dir))
            .expect("load")
        {
            Loaded::Creds(c) => Some(*c),
            _ => None,
        }
    }

    async fn next_dial(&mut self) -> DialRequest {
        tokio::time::timeout(STEP, self.dials.recv())
            .await
            .expect("a dial in time")
            .expect("dial queue open")
    }

    /// Waits for the first snapshot that satisfies `want`.
    async fn state_where(
        &mut self,
        what: &str,
        want: impl Fn(&WorkerState) -> bool,
    ) -> WorkerState {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let report = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .unwrap_or_else(|_| panic!("no state {what}; last seen {:?}", self.last))
                .expect("link open");
            if let ToSupervisor::State(state) = report {
                self.last = state.clone();
                if want(&state) {
                    return state;
                }
            }
        }
    }

    /// Waits for the first report that is not a state snapshot nor a heartbeat, keeping the
    /// snapshots seen on the way.
    async fn next_report(&mut self) -> ToSupervisor {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let report = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .unwrap_or_else(|_| panic!("no report; last state {:?}", self.last))
                .expect("link open");
            match report {
                ToSupervisor::State(state) => self.last = state,
                ToSupervisor::Heartbeat { .. } => {}
                other => return other,
            }
        }
    }

    async fn status(&mut self, status: WorkerStatus) -> WorkerState {
        self.state_where(&status.to_string(), |s| s.status == status)
            .await
    }

    /// Dials, accepts, sends `<success>`, and answers the login IQs (prekeys well stocked).
    async fn online(&mut self) -> ServerEnd {
        let mut server = self.next_dial().await.accept();
        server.push(Node::new("success").attr("t", "1700000000"));
        self.status(WorkerStatus::Connected).await;
        let active = sent(&mut server, "iq").await;
        assert_eq!(active.attr_str("xmlns").as_deref(), Some("passive"));
        let count = sent(&mut server, "iq").await;
        assert_eq!(count.attr_str("xmlns").as_deref(), Some("encrypt"));
        server.push(result(&count).children(vec![Node::new("count").attr("value", "100")]));
        server
    }

    async fn stop(self) -> Vec<ToSupervisor> {
        self.token.cancel();
        let outcome = tokio::time::timeout(STEP, self.task)
            .await
            .expect("stops in time")
            .expect("no panic");
        assert!(outcome.is_ok(), "{outcome:?}");
        let mut rest = self.reports;
        let mut tail = Vec::new();
        while let Ok(m) = rest.try_recv() {
            tail.push(m);
        }
        tail
    }
}

/// The next node the session sent, which must be a `tag`.
async fn sent(server: &mut ServerEnd, tag: &str) -> Node {
    let node = tokio::time::timeout(STEP, server.next())
        .await
        .unwrap_or_else(|_| panic!("no <{tag}> sent in time"))
        .unwrap_or_else(|| panic!("connection closed before a <{tag}>"));
    assert_eq!(node.tag, tag, "{node}");
    node
}

/// Whether the session closed this connection (within a step).
async fn closed(server: &mut ServerEnd) -> bool {
    loop {
        match tokio::time::timeout(STEP, server.next()).await {
            Ok(None) => return true,
            Ok(Some(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn result(iq: &Node) -> Node {
    Node::new("iq")
        .attr("id", iq.attr_str("id").expect("id").into_owned())
        .attr("type", "result")
        .jid_attr("from", Jid::server_jid())
}

fn pair_device(refs: &[&str]) -> Node {
    Node::new("iq")
        .attr("id", "pd-1")
        .attr("type", "set")
        .jid_attr("from", Jid::server_jid())
        .children(vec![Node::new("pair-device").children(
            refs.iter()
                .map(|r| Node::new("ref").bytes(r.as_bytes().to_vec()))
                .collect(),
        )])
}

/// A paired account's creds, as `accept_pair_success` leaves them.
fn paired_creds() -> Creds {
    let mut creds = vector_creds();
    // The vector identity replaced the generated one: sign the signed prekey again with it.
    let mut signed = vec![crate::store::creds::DJB_KEY_TYPE];
    signed.extend_from_slice(&creds.signed_prekey.key_pair.public.0);
    creds.signed_prekey.signature = crate::store::secret::Bytes(crate::wa::xeddsa::sign(
        &creds.identity_key.private.expose().0,
        &signed,
    ));
    let iq = decode(&hex::decode(PAIR_SUCCESS).expect("hex")).expect("node");
    super::pair::accept_pair_success(&iq, &mut creds).expect("pairs");
    creds
}

#[tokio::test(start_paused = true)]
async fn shows_each_qr_ref_in_turn_then_waits_when_they_run_out() {
    let mut h = Harness::start(None);
    let mut server = h.next_dial().await.accept();
    assert!(
        h.creds().is_some(),
        "keys are durable before the first dial"
    );
    server.push(pair_device(&["ref-1", "ref-2"]));
    let ack = sent(&mut server, "iq").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("pd-1"));
    assert_eq!(ack.attr_str("type").as_deref(), Some("result"));

    let first = h.status(WorkerStatus::NeedsQr).await;
    let qr = first.qr.expect("a qr");
    assert!(qr.contains("#ref-1,"), "{qr}");
    let t1 = tokio::time::Instant::now();
    let second = h
        .state_where("second ref", |s| {
            s.qr.as_deref().is_some_and(|q| q.contains("#ref-2,"))
        })
        .await;
    assert_eq!(t1.elapsed().as_secs(), 60, "the first ref lives 60 s");
    assert!(second.qr_expires_at.is_some());

    let t2 = tokio::time::Instant::now();
    let done = h
        .state_where("qr exhausted", |s| s.reason == Some(Reason::QrExhausted))
        .await;
    assert_eq!(t2.elapsed().as_secs(), 20, "later refs live 20 s");
    assert_eq!(done.status, WorkerStatus::NeedsQr);
    assert!(done.qr.is_none());
    assert!(closed(&mut server).await, "the socket is closed");

    // A new QR request starts a new registration connection.
    h.commands.send(ToWorker::RequestQr).expect("send");
    let again = h.next_dial().await;
    let payload = ClientPayload::decode(&again.dial.payload[..]).expect("payload");
    assert!(payload.username.is_none(), "a registration payload");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn persists_the_pairing_before_replying_then_logs_in_after_the_515() {
    let mut h = Harness::start(Some(&vector_creds()));
    let mut server = h.next_dial().await.accept();
    server.push(pair_device(&["ref-1"]));
    sent(&mut server, "iq").await;
    h.status(WorkerStatus::NeedsQr).await;

    server.push(decode(&hex::decode(PAIR_SUCCESS).expect("hex")).expect("node"));
    let reply = sent(&mut server, "iq").await;
    assert!(reply.child("pair-device-sign").is_some(), "{reply}");
    let stored = h.creds().expect("creds");
    assert!(stored.is_paired(), "durable before the reply went out");
    let state = h
        .state_where("paired", |s| s.jid.is_some() && s.qr.is_none())
        .await;
    assert_eq!(state.phone.as_deref(), Some("15551234567"));

    server.push(Node::new("stream:error").attr("code", "515"));
    assert!(closed(&mut server).await);
    let login = h.next_dial().await;
    let payload = ClientPayload::decode(&login.dial.payload[..]).expect("payload");
    assert_eq!(payload.username, Some(15551234567), "a login payload");
    let mut server = login.accept();
    server.push(Node::new("success").attr("t", "1"));
    let connected = h.status(WorkerStatus::Connected).await;
    assert_eq!(connected.reconnect_attempts, 0);
    sent(&mut server, "iq").await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refuses_a_forged_pair_success_and_keeps_the_creds_unpaired() {
    let mut creds = vector_creds();
    creds.adv_secret = crate::store::secret::Secret::new(crate::store::secret::Bytes([7; 32]));
    let mut h = Harness::start(Some(&creds));
    let mut server = h.next_dial().await.accept();
    server.push(pair_device(&["ref-1"]));
    sent(&mut server, "iq").await;
    server.push(decode(&hex::decode(PAIR_SUCCESS).expect("hex")).expect("node"));
    let reply = sent(&mut server, "iq").await;
    assert_eq!(reply.attr_str("type").as_deref(), Some("error"));
    assert!(!h.creds().expect("creds").is_paired());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stocks_prekeys_durably_before_uploading_them() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.next_dial().await.accept();
    server.push(
        Node::new("success")
            .attr("t", "1")
            .jid_attr("lid", "100000000000009:2@lid".parse().expect("jid")),
    );
    h.status(WorkerStatus::Connected).await;
    sent(&mut server, "iq").await;
    let count = sent(&mut server, "iq").await;
    server.push(result(&count).children(vec![Node::new("count").attr("value", "0")]));
    let upload = sent(&mut server, "iq").await;
    let keys = upload.child("list").expect("list").children_slice().len();
    assert_eq!(keys, 812);
    let first = upload
        .child("list")
        .and_then(|l| l.child("key"))
        .and_then(|k| k.child("id"))
        .and_then(Node::content_bytes)
        .expect("an id");
    let first = u32::from_be_bytes([0, first[0], first[1], first[2]]);
    let keys = crate::store::signal::KeyStore::new(&h.dir.path().join("acct"));
    assert!(
        keys.prekey(first).expect("readable").is_some(),
        "durable before the upload"
    );
    let stored = h.creds().expect("creds");
    assert_eq!(
        stored.me.and_then(|m| m.lid).as_deref(),
        Some("100000000000009:2@lid"),
        "the lid from <success> is kept"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pings_and_reconnects_when_a_ping_goes_unanswered() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    let t0 = tokio::time::Instant::now();
    let ping = sent(&mut server, "iq").await;
    assert_eq!(ping.attr_str("xmlns").as_deref(), Some("w:p"));
    let waited = t0.elapsed().as_secs();
    assert!((20..30).contains(&waited), "pinged after {waited} s");
    server.push(result(&ping));

    let ping = sent(&mut server, "iq").await;
    assert_eq!(ping.attr_str("xmlns").as_deref(), Some("w:p"));
    let unanswered = tokio::time::Instant::now();
    let state = h.status(WorkerStatus::Reconnecting).await;
    assert_eq!(state.reason, Some(Reason::KeepaliveTimeout));
    assert_eq!(unanswered.elapsed().as_secs(), 20);
    assert!(closed(&mut server).await);
    let again = h.next_dial().await;
    assert!(
        unanswered.elapsed() > Duration::from_secs(20),
        "after a backoff"
    );
    again.refuse();
    let state = h.status(WorkerStatus::Reconnecting).await;
    assert_eq!(state.reconnect_attempts, 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn acks_each_stanza_kind_and_reports_message_time() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    let from: Jid = "15550009999@s.whatsapp.net".parse().expect("jid");
    server.push(
        Node::new("message")
            .attr("id", "M1")
            .attr("type", "text")
            .jid_attr("from", from.clone()),
    );
    // Nothing to decrypt: recorded by kind, confirmed with a receipt, then acked.
    let receipt = sent(&mut server, "receipt").await;
    assert_eq!(receipt.attr_str("id").as_deref(), Some("M1"));
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("class").as_deref(), Some("message"));
    assert_eq!(ack.attr_str("id").as_deref(), Some("M1"));
    assert_eq!(ack.attr_jid("to"), Some(&from));
    let own = h.creds().and_then(|c| c.me).expect("paired").jid;
    assert_eq!(
        ack.attr_jid("from").map(ToString::to_string),
        Some(own),
        "message acks name our device, as Baileys and whatsapp-rust do"
    );
    h.state_where("message time", |s| s.last_message_at.is_some())
        .await;
    for (tag, kind) in [
        ("receipt", "read"),
        ("notification", "devices"),
        ("call", "offer"),
    ] {
        server.push(
            Node::new(tag)
                .attr("id", "X1")
                .attr("type", kind)
                .jid_attr("from", from.clone()),
        );
        let ack = sent(&mut server, "ack").await;
        assert_eq!(ack.attr_str("class").as_deref(), Some(tag));
        assert_eq!(ack.attr_str("type").as_deref(), Some(kind));
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn logout_unlinks_the_device_and_archives_the_creds() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    h.commands.send(ToWorker::Logout).expect("send");
    let unlink = sent(&mut server, "iq").await;
    let remove = unlink.child("remove-companion-device").expect("unlink");
    assert_eq!(
        remove.attr_jid("jid").map(ToString::to_string).as_deref(),
        Some("15551234567:2@s.whatsapp.net")
    );
    assert!(h.creds().is_some(), "nothing archived before the answer");
    server.push(result(&unlink));
    let state = h.status(WorkerStatus::LoggedOut).await;
    assert_eq!(state.reason, Some(Reason::LoggedOut));
    assert!(state.phone.is_none());
    assert!(h.creds().is_none(), "creds archived");
    assert!(closed(&mut server).await);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn logout_completes_after_the_deadline_without_an_answer() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    h.commands.send(ToWorker::Logout).expect("send");
    sent(&mut server, "iq").await;
    let t0 = tokio::time::Instant::now();
    h.status(WorkerStatus::LoggedOut).await;
    assert_eq!(t0.elapsed(), super::logout::LOGOUT_DEADLINE);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn conflict_stops_without_reconnecting_and_shutdown_flushes() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    server.push(
        Node::new("stream:error").children(vec![Node::new("conflict").attr("type", "replaced")]),
    );
    let state = h.status(WorkerStatus::Conflict).await;
    assert_eq!(state.reason, Some(Reason::Replaced));
    assert!(closed(&mut server).await);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), h.dials.recv())
            .await
            .is_err(),
        "no dial within an hour"
    );
    let tail = h.stop().await;
    assert!(
        tail.iter().any(|m| matches!(m, ToSupervisor::Flushed)),
        "{tail:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unchanged_creds_are_neither_rewritten_at_login_nor_at_shutdown() {
    use std::os::unix::fs::MetadataExt;
    let mut h = Harness::start(Some(&paired_creds()));
    let path = h.dir.path().join("acct").join("creds.json");
    let written = || {
        let meta = std::fs::metadata(&path).expect("creds.json");
        (meta.ino(), meta.mtime(), meta.mtime_nsec())
    };
    let before = written();
    let _server = h.online().await;
    assert_eq!(
        written(),
        before,
        "a login that changes nothing writes nothing"
    );
    // The account directory outlives the harness.
    let _dir = std::mem::replace(&mut h.dir, tempfile::tempdir().expect("temp dir"));
    let tail = h.stop().await;
    assert!(
        tail.iter().any(|m| matches!(m, ToSupervisor::Flushed)),
        "{tail:?}"
    );
    assert_eq!(written(), before, "nor does the shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_creds_file_gone_while_running_is_saved_again_at_shutdown() {
    let creds = paired_creds();
    let mut h = Harness::start(Some(&creds));
    let _server = h.online().await;
    let path = h.dir.path().join("acct").join("creds.json");
    std::fs::remove_file(&path).expect("remove creds.json");
    let dir = h.dir.path().join("acct");
    // The account directory outlives the harness.
    let _kept = std::mem::replace(&mut h.dir, tempfile::tempdir().expect("temp dir"));
    let tail = h.stop().await;
    assert!(
        tail.iter().any(|m| matches!(m, ToSupervisor::Flushed)),
        "{tail:?}"
    );
    let again = CredsStore::new(&dir)
        .load(&crate::store::signal::KeyStore::new(&dir))
        .expect("load");
    let Loaded::Creds(again) = again else {
        panic!("creds saved again: {again:?}");
    };
    assert_eq!(*again, creds);
}

#[tokio::test(start_paused = true)]
async fn an_idle_online_worker_sends_one_heartbeat_with_each_keepalive_ping() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    while h.reports.try_recv().is_ok() {}
    let mut last = tokio::time::Instant::now();
    for _ in 0..6 {
        let ping = sent(&mut server, "iq").await;
        assert_eq!(ping.attr_str("xmlns").as_deref(), Some("w:p"), "{ping}");
        let gap = last.elapsed();
        last = tokio::time::Instant::now();
        // Let the session finish the wakeup that sent the ping.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut beats = 0;
        while let Ok(report) = h.reports.try_recv() {
            beats += usize::from(matches!(report, ToSupervisor::Heartbeat { .. }));
        }
        assert_eq!(
            beats, 1,
            "one heartbeat, with the ping, {gap:?} after the last"
        );
        server.push(result(&ping));
    }
    h.stop().await;
}

/// A contact's device: a real Signal peer built from the test vectors' primitives.
struct Peer {
    identity: crate::signal::LocalIdentity,
    session: crate::signal::SessionRecord,
}

impl Peer {
    fn new() -> Self {
        Peer {
            identity: crate::signal::LocalIdentity {
                key_pair: crate::signal::KeyPair::generate(&mut rand::rngs::OsRng),
                registration_id: 4242,
            },
            session: crate::signal::SessionRecord::new(),
        }
    }

    /// Starts a session from our creds and one uploaded one-time prekey.
    fn start(&mut self, creds: &Creds, prekey: (u32, [u8; 32])) {
        use crate::signal::{PreKeyBundle, PublicKey};
        let spk = &creds.signed_prekey;
        let bundle = PreKeyBundle {
            registration_id: creds.registration_id,
            identity_key: PublicKey::from_bytes(creds.identity_key.public.0),
            signed_pre_key_id: spk.key_id,
            signed_pre_key: PublicKey::from_bytes(spk.key_pair.public.0),
            signed_pre_key_signature: spk.signature.0,
            pre_key: Some((prekey.0, PublicKey::from_bytes(prekey.1))),
        };
        self.session
            .process_bundle(&self.identity, &bundle, &mut rand::rngs::OsRng)
            .expect("bundle");
    }

    /// `<message>` carrying `text` from this peer's device 0.
    fn message(&mut self, id: &str, text: &str) -> Node {
        let plain = crate::wa::e2e::Message::from_text(text).encode_to_vec();
        let padded = crate::signal::pad(&plain, &mut rand::rngs::OsRng);
        let enc = self.session.encrypt(&padded).expect("encrypt");
        Node::new("message")
            .attr("id", id)
            .attr("t", "1700000100")
            .attr("type", "text")
            .attr("notify", "Ana")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid"))
            .jid_attr("sender_lid", "100000000000077@lid".parse().expect("jid"))
            .children(vec![Node::new("enc")
                .attr("v", "2")
                .attr("type", enc.enc_type())
                .bytes(enc.as_bytes().to_vec())])
    }
}

/// Online with a fresh prekey upload; returns the server end and one uploaded prekey.
async fn online_with_prekeys(h: &mut Harness) -> (ServerEnd, (u32, [u8; 32])) {
    let mut server = h.next_dial().await.accept();
    server.push(Node::new("success").attr("t", "1"));
    h.status(WorkerStatus::Connected).await;
    sent(&mut server, "iq").await;
    let count = sent(&mut server, "iq").await;
    server.push(result(&count).children(vec![Node::new("count").attr("value", "0")]));
    let upload = sent(&mut server, "iq").await;
    let key = upload
        .child("list")
        .and_then(|l| l.child("key"))
        .expect("a key");
    let id = key.child("id").and_then(Node::content_bytes).expect("id");
    let value = key
        .child("value")
        .and_then(Node::content_bytes)
        .expect("value");
    let id = u32::from_be_bytes([0, id[0], id[1], id[2]]);
    (server, (id, value.try_into().expect("32 bytes")))
}

async fn next_message_report(h: &mut Harness) -> ipc_protocol::MessageRecord {
    loop {
        match tokio::time::timeout(STEP, h.reports.recv()).await {
            Ok(Some(ToSupervisor::Message(m))) => return m,
            Ok(Some(_)) => continue,
            _ => panic!("no message report"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn decrypts_records_then_confirms_each_message_and_asks_again_when_one_fails() {
    let creds = paired_creds();
    let mut h = Harness::start(Some(&creds));
    let (mut server, prekey) = online_with_prekeys(&mut h).await;
    let dir = h.dir.path().join("acct");
    let keys = crate::store::signal::KeyStore::new(&dir);
    assert!(keys.prekey(prekey.0).expect("read").is_some());

    let mut peer = Peer::new();
    peer.start(&creds, prekey);
    let first = peer.message("IN-1", "hello wafleet");
    server.push(first.clone());
    let receipt = sent(&mut server, "receipt").await;
    assert_eq!(receipt.attr_str("id").as_deref(), Some("IN-1"));
    assert!(receipt.attr_str("type").is_none(), "a delivery receipt");
    // The receipt goes out only once the message and the session are durable.
    let store = crate::store::messages::MessageStore::open(&dir).expect("store");
    let stored = store
        .get(ipc_protocol::Direction::In, "IN-1")
        .expect("read")
        .expect("recorded before the receipt");
    assert_eq!(stored.text.as_deref(), Some("hello wafleet"));
    assert_eq!(stored.chat, "15550009999@s.whatsapp.net");
    assert_eq!(stored.push_name.as_deref(), Some("Ana"));
    let lid_addr = crate::store::signal::Address::new("100000000000077_1", 0).expect("addr");
    assert!(
        keys.session(&lid_addr).expect("read").is_some(),
        "keyed by the LID"
    );
    assert!(
        keys.prekey(prekey.0).expect("read").is_none(),
        "prekey consumed"
    );
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("class").as_deref(), Some("message"));
    let report = next_message_report(&mut h).await;
    assert_eq!(report.text.as_deref(), Some("hello wafleet"));
    assert!(report.cursor > 0);

    // The same stanza again (a redelivery): confirmed, not recorded twice.
    server.push(first);
    assert_eq!(
        sent(&mut server, "receipt").await.attr_str("id").as_deref(),
        Some("IN-1")
    );
    sent(&mut server, "ack").await;
    // A second message rides the same session; its report is the next one.
    server.push(peer.message("IN-2", "again"));
    sent(&mut server, "receipt").await;
    sent(&mut server, "ack").await;
    assert_eq!(
        next_message_report(&mut h).await.text.as_deref(),
        Some("again")
    );

    // One built on a prekey we never had: a retry receipt, an ack, and a count.
    let mut stranger = Peer::new();
    stranger.start(&creds, (0x00AB_CDEF, [7; 32]));
    let forged = stranger.message("IN-3", "forged");
    server.push(forged);
    let retry = sent(&mut server, "receipt").await;
    assert_eq!(retry.attr_str("type").as_deref(), Some("retry"));
    assert_eq!(
        retry
            .child("retry")
            .and_then(|r| r.attr_str("count"))
            .as_deref(),
        Some("1")
    );
    sent(&mut server, "ack").await;
    let state = h
        .state_where("a decrypt failure counted", |s| s.decrypt_failures == 1)
        .await;
    assert_eq!(
        state.status,
        WorkerStatus::Connected,
        "the worker carries on"
    );
    assert!(store
        .get(ipc_protocol::Direction::In, "IN-3")
        .expect("read")
        .is_none());

    // The contact reinstalls: the server says so, and its session and identity go.
    server.push(
        Node::new("notification")
            .attr("id", "N-ID")
            .attr("type", "encrypt")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid"))
            .children(vec![Node::new("identity")]),
    );
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("N-ID"));
    assert!(
        keys.session(&lid_addr).expect("read").is_none(),
        "session dropped"
    );
    assert!(
        keys.identity(&lid_addr).expect("read").is_none(),
        "identity dropped"
    );
    h.stop().await;
}

/// A contact's phone that publishes a bundle and reads what the worker sends it.
struct Contact {
    identity: crate::signal::LocalIdentity,
    signed: crate::signal::KeyPair,
    one_time: crate::signal::KeyPair,
    session: crate::signal::SessionRecord,
}

impl crate::signal::PreKeyLookup for Contact {
    fn signed_pre_key(&self, id: u32) -> Option<crate::signal::KeyPair> {
        (id == 1).then(|| self.signed.clone())
    }
    fn pre_key(&self, id: u32) -> Option<crate::signal::KeyPair> {
        (id == 77).then(|| self.one_time.clone())
    }
}

impl Contact {
    fn new() -> Self {
        let mut rng = rand::rngs::OsRng;
        Contact {
            identity: crate::signal::LocalIdentity {
                key_pair: crate::signal::KeyPair::generate(&mut rng),
                registration_id: 99,
            },
            signed: crate::signal::KeyPair::generate(&mut rng),
            one_time: crate::signal::KeyPair::generate(&mut rng),
            session: crate::signal::SessionRecord::new(),
        }
    }

    /// The `<user>` of an `encrypt` answer for `jid`.
    fn bundle_user(&self, jid: &str) -> Node {
        let signature = self
            .identity
            .key_pair
            .private
            .sign(&self.signed.public.serialize(), &mut rand::rngs::OsRng);
        Node::new("user")
            .jid_attr("jid", jid.parse().expect("jid"))
            .children(vec![
                Node::new("registration").bytes(99u32.to_be_bytes().to_vec()),
                Node::new("type").bytes(vec![5]),
                Node::new("identity").bytes(self.identity.key_pair.public.as_bytes().to_vec()),
                Node::new("skey").children(vec![
                    Node::new("id").bytes(vec![0, 0, 1]),
                    Node::new("value").bytes(self.signed.public.as_bytes().to_vec()),
                    Node::new("signature").bytes(signature.to_vec()),
                ]),
                Node::new("key").children(vec![
                    Node::new("id").bytes(vec![0, 0, 77]),
                    Node::new("value").bytes(self.one_time.public.as_bytes().to_vec()),
                ]),
            ])
    }

    /// Decrypts the `<enc>` addressed to it; returns the text.
    fn read(&mut self, enc: &Node) -> String {
        let bytes = enc.content_bytes().expect("bytes");
        let padded = if enc.attr_str("type").as_deref() == Some("pkmsg") {
            let msg = crate::signal::PreKeySignalMessage::parse(bytes).expect("pkmsg");
            let identity = self.identity.clone();
            let mut session = std::mem::take(&mut self.session);
            let done = session
                .decrypt_pre_key(&identity, &msg, self, &mut rand::rngs::OsRng)
                .expect("decrypts");
            self.session = session;
            done.plaintext
        } else {
            let msg = crate::signal::SignalMessage::parse(bytes).expect("msg");
            self.session
                .decrypt(&msg, &mut rand::rngs::OsRng)
                .expect("decrypts")
        };
        let plain = crate::signal::unpad(&padded).expect("padding");
        let message = crate::wa::e2e::Message::decode(plain).expect("message");
        message.conversation.expect("text")
    }
}

async fn message_status(
    h: &mut Harness,
    want: ipc_protocol::MessageStatus,
) -> ipc_protocol::MessageRecord {
    loop {
        let m = next_message_report(h).await;
        if m.status == want {
            return m;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn sends_a_queued_text_end_to_end_and_follows_its_receipts() {
    let creds = paired_creds();
    let mut h = Harness::start(Some(&creds));
    let mut server = h.online().await;

    h.commands
        .send(ToWorker::Send {
            request: 1,
            message: ipc_protocol::OutgoingText {
                id: "3EB0SEND1".into(),
                to: "+15550009999".into(),
                text: "hi from wafleet".into(),
            },
        })
        .expect("send");
    // usync for the recipient and our own account.
    let usync = sent(&mut server, "iq").await;
    assert_eq!(usync.attr_str("xmlns").as_deref(), Some("usync"));
    let users: Vec<String> = usync
        .child("usync")
        .and_then(|u| u.child("list"))
        .expect("list")
        .children_by_tag("user")
        .filter_map(|u| u.attr_jid("jid").map(ToString::to_string))
        .collect();
    assert_eq!(
        users,
        ["15550009999@s.whatsapp.net", "15551234567@s.whatsapp.net"]
    );
    let devices = |user: &str, ids: &[&str]| {
        Node::new("user")
            .jid_attr("jid", user.parse().expect("jid"))
            .children(vec![Node::new("devices").children(vec![Node::new(
                "device-list",
            )
            .children(
                ids.iter()
                    .map(|i| {
                        let d = Node::new("device").attr("id", *i);
                        if *i == "0" {
                            d
                        } else {
                            d.attr("key-index", "1")
                        }
                    })
                    .collect(),
            )])])
    };
    server.push(
        result(&usync).children(vec![Node::new("usync").children(vec![Node::new("list")
            .children(vec![
                devices("15550009999@s.whatsapp.net", &["0"]),
                // Our own account: the phone (0) and this device (2): only the phone gets a copy.
                devices("15551234567@s.whatsapp.net", &["0", "2"]),
            ])])]),
    );
    // Bundles for the two devices without a session.
    let fetch = sent(&mut server, "iq").await;
    assert_eq!(fetch.attr_str("xmlns").as_deref(), Some("encrypt"));
    let asked: Vec<String> = fetch
        .child("key")
        .expect("key")
        .children_by_tag("user")
        .filter_map(|u| u.attr_jid("jid").map(ToString::to_string))
        .collect();
    assert_eq!(
        asked,
        ["15550009999@s.whatsapp.net", "15551234567@s.whatsapp.net"]
    );
    let mut contact = Contact::new();
    let mut phone = Contact::new();
    server.push(
        result(&fetch).children(vec![Node::new("list").children(vec![
            contact.bundle_user("15550009999@s.whatsapp.net"),
            phone.bundle_user("15551234567@s.whatsapp.net"),
        ])]),
    );
    let stanza = sent(&mut server, "message").await;
    assert_eq!(stanza.attr_str("id").as_deref(), Some("3EB0SEND1"));
    assert_eq!(
        stanza.attr_jid("to").map(ToString::to_string).as_deref(),
        Some("15550009999@s.whatsapp.net")
    );
    assert!(stanza.child("device-identity").is_some(), "pkmsgs carry it");
    let to = |jid: &str| {
        stanza
            .child("participants")
            .expect("participants")
            .children_by_tag("to")
            .find(|t| t.attr_jid("jid").map(ToString::to_string).as_deref() == Some(jid))
            .and_then(|t| t.child("enc"))
            .cloned()
            .unwrap_or_else(|| panic!("no enc for {jid}"))
    };
    assert_eq!(
        contact.read(&to("15550009999@s.whatsapp.net")),
        "hi from wafleet"
    );
    // Our phone gets the deviceSentMessage copy.
    let copy = to("15551234567@s.whatsapp.net");
    let padded = {
        let msg = crate::signal::PreKeySignalMessage::parse(copy.content_bytes().expect("b"))
            .expect("pkmsg");
        let identity = phone.identity.clone();
        let mut session = std::mem::take(&mut phone.session);
        session
            .decrypt_pre_key(&identity, &msg, &phone, &mut rand::rngs::OsRng)
            .expect("decrypts")
            .plaintext
    };
    let dsm = crate::wa::e2e::Message::decode(crate::signal::unpad(&padded).expect("pad"))
        .expect("message");
    let inner = dsm.device_sent_message.expect("a device-sent copy");
    assert_eq!(
        inner.destination_jid.as_deref(),
        Some("15550009999@s.whatsapp.net")
    );

    // The server's ack: sent.
    server.push(
        Node::new("ack")
            .attr("class", "message")
            .attr("id", "3EB0SEND1")
            .attr("t", "1700000300")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid")),
    );
    let sent_record = message_status(&mut h, ipc_protocol::MessageStatus::Sent).await;
    assert_eq!(
        sent_record.sent_at,
        Some(ipc_protocol::UnixMillis(1_700_000_300_000))
    );
    // A delivery receipt, then a read one.
    for (kind, want) in [
        (None, ipc_protocol::MessageStatus::Delivered),
        (Some("read"), ipc_protocol::MessageStatus::Read),
    ] {
        let mut receipt = Node::new("receipt")
            .attr("id", "3EB0SEND1")
            .attr("t", "1700000400")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid"));
        if let Some(kind) = kind {
            receipt = receipt.attr("type", kind);
        }
        server.push(receipt);
        sent(&mut server, "ack").await;
        message_status(&mut h, want).await;
    }

    // The contact reinstalled and asks again, with its new keys: a resend for that device
    // alone, on a session built from those keys.
    let mut reinstalled = Contact::new();
    let keys = reinstalled.bundle_user("15550009999@s.whatsapp.net");
    let mut retry_children = vec![Node::new("retry")
        .attr("count", "2")
        .attr("id", "3EB0SEND1")
        .attr("v", "1")];
    retry_children.extend(
        keys.children_slice()
            .iter()
            .filter(|c| c.tag == "registration")
            .cloned(),
    );
    retry_children.push(
        Node::new("keys").children(
            keys.children_slice()
                .iter()
                .filter(|c| c.tag != "registration")
                .cloned()
                .collect(),
        ),
    );
    server.push(
        Node::new("receipt")
            .attr("id", "3EB0SEND1")
            .attr("type", "retry")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid"))
            .children(retry_children),
    );
    let resend = sent(&mut server, "message").await;
    assert_eq!(resend.attr_str("device_fanout").as_deref(), Some("false"));
    let enc = resend.child("enc").expect("a bare enc").clone();
    assert_eq!(enc.attr_str("count").as_deref(), Some("2"));
    assert_eq!(reinstalled.read(&enc), "hi from wafleet");
    sent(&mut server, "ack").await;
    contact = reinstalled;

    // The second message reuses the sessions: a msg, no bundle fetch.
    h.commands
        .send(ToWorker::Send {
            request: 2,
            message: ipc_protocol::OutgoingText {
                id: "3EB0SEND2".into(),
                to: "15550009999@s.whatsapp.net".into(),
                text: "second".into(),
            },
        })
        .expect("send");
    let usync = sent(&mut server, "iq").await;
    server.push(
        result(&usync).children(vec![Node::new("usync").children(vec![
            Node::new("list").children(vec![devices("15550009999@s.whatsapp.net", &["0"])])
        ])]),
    );
    let stanza = sent(&mut server, "message").await;
    let enc = stanza
        .child("participants")
        .and_then(|p| p.child("to"))
        .and_then(|t| t.child("enc"))
        .expect("enc")
        .clone();
    assert_eq!(
        enc.attr_str("type").as_deref(),
        Some("pkmsg"),
        "no reply yet: still pkmsg"
    );
    assert_eq!(contact.read(&enc), "second");
    server.push(
        Node::new("ack")
            .attr("class", "message")
            .attr("id", "3EB0SEND2")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid")),
    );

    // The device lists are cached now: the third message goes straight out, no usync.
    h.commands
        .send(ToWorker::Send {
            request: 3,
            message: ipc_protocol::OutgoingText {
                id: "3EB0SEND3".into(),
                to: "15550009999@s.whatsapp.net".into(),
                text: "third".into(),
            },
        })
        .expect("send");
    let stanza = sent(&mut server, "message").await;
    assert_eq!(stanza.attr_str("id").as_deref(), Some("3EB0SEND3"));
    // A devices notification drops the contact's list: the next one asks again.
    server.push(
        Node::new("notification")
            .attr("id", "N1")
            .attr("type", "devices")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid")),
    );
    sent(&mut server, "ack").await;
    server.push(
        Node::new("ack")
            .attr("class", "message")
            .attr("id", "3EB0SEND3")
            .jid_attr("from", "15550009999@s.whatsapp.net".parse().expect("jid")),
    );
    h.commands
        .send(ToWorker::Send {
            request: 4,
            message: ipc_protocol::OutgoingText {
                id: "3EB0SEND4".into(),
                to: "15550009999@s.whatsapp.net".into(),
                text: "fourth".into(),
            },
        })
        .expect("send");
    let usync = sent(&mut server, "iq").await;
    assert_eq!(usync.attr_str("xmlns").as_deref(), Some("usync"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn answers_the_servers_pings_previews_and_dirty_bits() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    // Both ping shapes (wa-protocol.md §8.4), answered to their `from`, with their id.
    for ping in [
        Node::new("iq")
            .jid_attr("from", Jid::server_jid())
            .attr("id", "srv-1")
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping"),
        Node::new("iq")
            .jid_attr("from", Jid::server_jid())
            .attr("id", "srv-2")
            .attr("type", "get")
            .attr("xmlns", "w:p")
            .children(vec![Node::new("ping")]),
    ] {
        server.push(ping.clone());
        let pong = sent(&mut server, "iq").await;
        assert_eq!(pong.attr_str("type").as_deref(), Some("result"));
        assert_eq!(pong.attr_str("id"), ping.attr_str("id"));
        assert_eq!(pong.attr_jid("to"), Some(&Jid::server_jid()));
        assert!(pong.attr_str("xmlns").is_none(), "{pong}");
    }
    // The offline preview asks for a batch; the end marker asks nothing.
    server.push(Node::new("ib").children(vec![Node::new("offline_preview")
        .attr("count", "3")
        .attr("message", "1")
        .attr("notification", "1")
        .attr("receipt", "1")]));
    let batch = sent(&mut server, "ib").await;
    let child = batch.child("offline_batch").expect("offline_batch");
    assert_eq!(child.attr_str("count").as_deref(), Some("100"));
    server.push(Node::new("ib").children(vec![Node::new("offline").attr("count", "3")]));
    // A dirty bit gets the clean IQ, whatsapp-rust's shape.
    server.push(Node::new("ib").children(vec![Node::new("dirty")
        .attr("type", "account_sync")
        .attr("timestamp", "1700000000")]));
    let clean = sent(&mut server, "iq").await;
    assert_eq!(
        clean.attr_str("xmlns").as_deref(),
        Some("urn:xmpp:whatsapp:dirty")
    );
    assert_eq!(clean.attr_str("type").as_deref(), Some("set"));
    assert_eq!(clean.attr_jid("to"), Some(&Jid::server_jid()));
    let c = clean.child("clean").expect("clean");
    assert_eq!(c.attr_str("type").as_deref(), Some("account_sync"));
    assert_eq!(c.attr_str("timestamp").as_deref(), Some("1700000000"));
    server.push(result(&clean));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refills_prekeys_when_the_server_says_it_runs_low() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    let notification = |id: &str, value: &str| {
        Node::new("notification")
            .jid_attr("from", Jid::server_jid())
            .attr("id", id)
            .attr("type", "encrypt")
            .attr("t", "1700000000")
            .children(vec![Node::new("count").attr("value", value)])
    };
    // Plenty left: acked, nothing uploaded.
    server.push(notification("E1", "40"));
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("E1"));
    assert_eq!(ack.attr_str("type").as_deref(), Some("encrypt"));
    // Low: acked, then a first batch (nothing was stocked before) goes up.
    server.push(notification("E2", "2"));
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("E2"));
    let upload = sent(&mut server, "iq").await;
    assert_eq!(upload.attr_str("xmlns").as_deref(), Some("encrypt"));
    assert_eq!(upload.attr_str("type").as_deref(), Some("set"));
    let keys = upload.child("list").expect("list").children_slice().len();
    assert_eq!(keys, 812);
    server.push(result(&upload));
    // Low again: a later batch.
    server.push(notification("E3", "0"));
    sent(&mut server, "ack").await;
    let upload = sent(&mut server, "iq").await;
    let keys = upload.child("list").expect("list").children_slice().len();
    assert_eq!(keys, 50);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn acks_calls_and_reports_each_offer_once() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    let caller: Jid = "15550001234:5@s.whatsapp.net".parse().expect("jid");
    let call = |id: &str, child: Node| {
        Node::new("call")
            .jid_attr("from", caller.clone())
            .attr("id", id)
            .attr("t", "1700000000")
            .children(vec![child])
    };
    server.push(call(
        "C1",
        Node::new("offer")
            .attr("call-id", "CALL-1")
            .jid_attr("call-creator", caller.clone())
            .children(vec![Node::new("audio")]),
    ));
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("class").as_deref(), Some("call"));
    assert_eq!(ack.attr_str("id").as_deref(), Some("C1"));
    assert_eq!(ack.attr_jid("to"), Some(&caller));
    assert!(ack.get_attr("type").is_none(), "no type to copy");
    server.push(call("C2", Node::new("transport").attr("call-id", "CALL-1")));
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("C2"));
    server.push(call("C3", Node::new("terminate").attr("call-id", "CALL-1")));
    sent(&mut server, "ack").await;
    let calls: Vec<_> = h
        .stop()
        .await
        .into_iter()
        .filter_map(|m| match m {
            ToSupervisor::Call(call) => Some((call.kind, call.call_id, call.from)),
            _ => None,
        })
        .collect();
    let caller_bare = "15550001234@s.whatsapp.net".to_owned();
    assert_eq!(
        calls,
        vec![
            ("offer".into(), "CALL-1".into(), caller_bare.clone()),
            ("terminate".into(), "CALL-1".into(), caller_bare),
        ],
        "the offer and the end, not the signalling"
    );
}

#[tokio::test(start_paused = true)]
async fn acks_the_notifications_and_stanzas_a_real_server_pushes() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    let user: Jid = "15550004321@s.whatsapp.net".parse().expect("jid");
    let own: Jid = "15551234567@s.whatsapp.net".parse().expect("jid");
    let notifications = [
        (
            "server_sync",
            Jid::server_jid(),
            Node::new("collection")
                .attr("name", "regular_high")
                .attr("version", "3"),
        ),
        (
            "devices",
            user.clone(),
            Node::new("add").children(vec![Node::new("device")
                .jid_attr("jid", Jid::device("15550004321", "s.whatsapp.net", 4))]),
        ),
        (
            "account_sync",
            own,
            Node::new("devices").attr("dhash", "2:abc"),
        ),
        (
            "picture",
            user.clone(),
            Node::new("set")
                .jid_attr("jid", user.clone())
                .attr("id", "1"),
        ),
        ("status", user.clone(), Node::new("set").text("hello")),
    ];
    for (n, (kind, from, child)) in notifications.into_iter().enumerate() {
        let id = format!("N{n}");
        server.push(
            Node::new("notification")
                .jid_attr("from", from.clone())
                .attr("id", id.clone())
                .attr("type", kind)
                .attr("t", "1700000000")
                .children(vec![child]),
        );
        let ack = sent(&mut server, "ack").await;
        assert_eq!(ack.attr_str("class").as_deref(), Some("notification"));
        assert_eq!(ack.attr_str("id").as_deref(), Some(id.as_str()));
        assert_eq!(ack.attr_str("type").as_deref(), Some(kind));
        assert_eq!(ack.attr_jid("to"), Some(&from));
        assert!(ack.get_attr("participant").is_none());
    }
    // A group notification names its participant: copied.
    let group: Jid = "120363000000000001@g.us".parse().expect("jid");
    server.push(
        Node::new("notification")
            .jid_attr("from", group.clone())
            .jid_attr("participant", user.clone())
            .attr("id", "G1")
            .attr("type", "w:gp2"),
    );
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_jid("participant"), Some(&user));
    // A top-level <status> stanza: class "status".
    server.push(
        Node::new("status")
            .jid_attr("from", user.clone())
            .attr("id", "S1"),
    );
    let ack = sent(&mut server, "ack").await;
    assert_eq!(ack.attr_str("class").as_deref(), Some("status"));
    // An id that is not UTF-8 is echoed byte for byte.
    let mut odd = Node::new("notification")
        .jid_attr("from", Jid::server_jid())
        .attr("type", "server_sync");
    odd.set_attr(
        "id".into(),
        crate::wa::binary::AttrValue::Bytes(vec![0xFF, 0x01]),
    );
    server.push(odd);
    let ack = sent(&mut server, "ack").await;
    assert_eq!(
        ack.get_attr("id"),
        Some(&crate::wa::binary::AttrValue::Bytes(vec![0xFF, 0x01]))
    );
    h.stop().await;
}

/// Plays a well-behaved server for `d`: answers every IQ the session sends (the prekey count
/// well stocked), so keepalive holds.
async fn serve_for(server: &mut ServerEnd, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    while let Ok(Some(node)) = tokio::time::timeout_at(until, server.next()).await {
        if node.tag == "iq" {
            let reply = if node.attr_str("xmlns").as_deref() == Some("encrypt") {
                result(&node).children(vec![Node::new("count").attr("value", "100")])
            } else {
                result(&node)
            };
            server.push(reply);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn dials_only_with_a_permit_and_gives_it_back_at_success_or_failure() {
    use ipc_protocol::DialOutcome;
    let mut h = Harness::start_paced(Some(&paired_creds()));
    let ToSupervisor::DialRequest { seq } = h.next_report().await else {
        panic!("a dial request first")
    };
    let queued = h
        .state_where("queued", |s| s.dial_queued_since.is_some())
        .await;
    assert_eq!(queued.status, WorkerStatus::Connecting);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), h.dials.recv())
            .await
            .is_err(),
        "no dial without a permit"
    );
    // A grant for another request is given back untouched.
    h.commands
        .send(ToWorker::DialGranted { seq: seq + 40 })
        .expect("send");
    assert_eq!(
        h.next_report().await,
        ToSupervisor::DialDone {
            seq: seq + 40,
            outcome: DialOutcome::Withdrawn
        }
    );
    h.commands
        .send(ToWorker::DialGranted { seq })
        .expect("send");
    let server = h.next_dial().await.accept();
    let dialing = h
        .state_where("dialling", |s| s.dial_queued_since.is_none())
        .await;
    assert_eq!(dialing.status, WorkerStatus::Connecting);
    server.push(Node::new("success").attr("t", "1700000000"));
    assert_eq!(
        h.next_report().await,
        ToSupervisor::DialDone {
            seq,
            outcome: DialOutcome::Success
        }
    );

    // The server ends the stream: the next dial asks again, and a refused one gives its permit
    // back as an error.
    server.push(Node::new("xmlstreamend"));
    let ToSupervisor::DialRequest { seq: again } = h.next_report().await else {
        panic!("a new request after the backoff")
    };
    assert_eq!(again, seq + 1);
    h.commands
        .send(ToWorker::DialGranted { seq: again })
        .expect("send");
    h.next_dial().await.refuse();
    assert_eq!(
        h.next_report().await,
        ToSupervisor::DialDone {
            seq: again,
            outcome: DialOutcome::Error
        }
    );
    // A shutdown while waiting withdraws the request.
    let ToSupervisor::DialRequest { seq: third } = h.next_report().await else {
        panic!("a third request")
    };
    let tail = h.stop().await;
    assert!(
        tail.contains(&ToSupervisor::DialDone {
            seq: third,
            outcome: DialOutcome::Withdrawn
        }),
        "{tail:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_counter_survives_short_logins_and_resets_after_a_stable_minute() {
    let mut h = Harness::start(Some(&paired_creds()));
    let mut server = h.online().await;
    // Ended right after the login, three times: the counter climbs.
    for attempt in 1..=3 {
        server.push(Node::new("xmlstreamend"));
        let state = h.status(WorkerStatus::Reconnecting).await;
        assert_eq!(state.reconnect_attempts, attempt, "{state:?}");
        server = h.next_dial().await.accept();
        server.push(Node::new("success").attr("t", "1700000000"));
        let online = h.status(WorkerStatus::Connected).await;
        assert_eq!(online.reconnect_attempts, attempt, "not reset by <success>");
    }
    // Up 59 s is not stable yet.
    serve_for(&mut server, Duration::from_secs(59)).await;
    server.push(Node::new("xmlstreamend"));
    let state = h.status(WorkerStatus::Reconnecting).await;
    assert_eq!(state.reconnect_attempts, 4);
    // A 515 on a connection that is not stable backs off too.
    server = h.next_dial().await.accept();
    server.push(Node::new("success").attr("t", "1700000000"));
    h.status(WorkerStatus::Connected).await;
    server.push(Node::new("stream:error").attr("code", "515"));
    let state = h.status(WorkerStatus::Reconnecting).await;
    assert_eq!(state.reconnect_attempts, 5);
    assert_eq!(state.reason, Some(Reason::ServerError(515)));
    // Up a minute: the counter starts over, and says so while still connected.
    server = h.next_dial().await.accept();
    server.push(Node::new("success").attr("t", "1700000000"));
    let online = h.status(WorkerStatus::Connected).await;
    assert_eq!(online.reconnect_attempts, 5);
    serve_for(&mut server, Duration::from_secs(61)).await;
    let reset = h
        .state_where("counter reset", |s| s.reconnect_attempts == 0)
        .await;
    assert_eq!(reset.status, WorkerStatus::Connected);
    // A 515 now reconnects at once, the counter untouched.
    server.push(Node::new("stream:error").attr("code", "515"));
    let before = tokio::time::Instant::now();
    let _again = h.next_dial().await;
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "no backoff after a stable connection"
    );
    h.stop().await;
}

/// A code asked for before the connection is at the scan is held, goes out once `pair-device`
/// has come, reaches the supervisor once WhatsApp answers, and keeps the connection after the
/// QR refs have run out until the code expires.
#[tokio::test(start_paused = true)]
async fn a_pairing_code_waits_for_the_scan_and_outlives_the_qr_refs() {
    use ipc_protocol::{PairingCodeOutcome, PairingCodeRefusal};
    let mut h = Harness::start(None);
    let mut server = h.next_dial().await.accept();
    h.commands
        .send(ToWorker::RequestPairingCode {
            request: 1,
            phone: "0123".into(),
        })
        .expect("send");
    assert_eq!(
        h.next_report().await,
        ToSupervisor::PairingCodeAnswer {
            request: 1,
            outcome: PairingCodeOutcome::Refused {
                refusal: PairingCodeRefusal::InvalidPhone
            }
        }
    );
    h.commands
        .send(ToWorker::RequestPairingCode {
            request: 2,
            phone: "15551234567".into(),
        })
        .expect("send");
    server.push(pair_device(&["ref-1"]));
    let ack = sent(&mut server, "iq").await;
    assert_eq!(ack.attr_str("id").as_deref(), Some("pd-1"));
    let hello = sent(&mut server, "iq").await;
    let reg = hello.child("link_code_companion_reg").expect("hello");
    assert_eq!(reg.attr_str("stage").as_deref(), Some("companion_hello"));
    server.push(
        result(&hello).children(vec![Node::new("link_code_companion_reg").children(vec![
            Node::new("link_code_pairing_ref").bytes(b"REF".to_vec()),
        ])]),
    );
    let ToSupervisor::PairingCodeAnswer {
        request: 2,
        outcome: PairingCodeOutcome::Code { code },
    } = h.next_report().await
    else {
        panic!("no code");
    };
    assert_eq!(
        crate::wa::link_code::normalize_code(&code).as_deref(),
        Some(code.as_str())
    );
    // The only ref expires after 60 s; the code keeps the connection to 180 s.
    let t0 = tokio::time::Instant::now();
    h.state_where("qr exhausted", |s| s.reason == Some(Reason::QrExhausted))
        .await;
    assert_eq!(t0.elapsed().as_secs(), 180, "the code's lifetime");
    assert!(closed(&mut server).await);
    h.stop().await;
}
