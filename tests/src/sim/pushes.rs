//! What a real server pushes to a logged-in device besides messages, and what the device
//! answers (wa-protocol.md §8.4, §8.7, §9; wa-messaging.md §9.1, §10), for the tests of issue 8:
//!
//! ```text
//! POST /push {"jid","kind"[,"count"][,"from"][,"video"]} → {"ok":true,"id"}
//!   kind: ping            <iq from=s.whatsapp.net id type=get xmlns=urn:xmpp:ping/>
//!         ping_child      <iq from=s.whatsapp.net id type=get xmlns=w:p><ping/></iq>
//!         dirty           <ib><dirty type=account_sync timestamp/></ib>
//!         encrypt_count   <notification type=encrypt><count value=<count, default 0>/></notification>
//!         server_sync | devices | account_sync | picture | status   <notification type=<kind>>…
//!         call_offer | call_terminate   <call from=<from>><offer|terminate call-id …/></call>
//!         non_utf8        a server_sync notification whose id is not UTF-8
//!         trailing_bytes  a server_sync notification followed by three bytes in its frame
//! GET /pushes?jid=<device> → {"stanzas":[{"id","kind","tag","acks":[{"class","type","to",
//!                             "participant","error","exact_id"}]}],"unacked":["id"…],
//!                             "pings":[{"id","answered"}],"cleans":[{"type","timestamp"}],
//!                             "offline_batches":["100"…],"uploads":N,"acks":{"<id>":n}}
//! ```
//!
//! 1. `/push` writes the stanza to the device's live connection and records it (with the exact
//!    bytes of its id) as waiting for an ack, if its kind needs one (not pings or `<ib>`).
//! 2. Every `<ack>` the device sends is counted by id ([`on_ack`]), pushed or not; one for a
//!    pushed stanza is recorded in full, with whether its id matched byte for byte.
//! 3. The device's answers are recorded: the result of a ping ([`on_answer`]), the clean IQ
//!    ([`clean`], answered `result`), `<ib><offline_batch/>` ([`on_ib`]), prekey uploads
//!    ([`on_upload`]).
//! 4. `unacked` lists pushed stanzas that got no ack; together with the device's outbox (queued
//!    stanzas nobody confirmed) it is what a server would deliver again at the next login.

use std::collections::BTreeMap;

use serde::Serialize;
use worker::wa::binary::{self, AttrValue, Jid, Node};

use super::registry::{unix_now, ConnId, Registry};

/// The namespace of the clean IQ.
pub(crate) const DIRTY_XMLNS: &str = "urn:xmpp:whatsapp:dirty";

/// Acks counted by id, at most (the oldest ids are forgotten beyond it).
const MAX_COUNTED: usize = 4096;

/// What the device answered to pushes, per device (`user:device@server`).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    devices: BTreeMap<String, DeviceLedger>,
}

#[derive(Debug, Default)]
struct DeviceLedger {
    stanzas: Vec<Pushed>,
    pings: Vec<PingView>,
    cleans: Vec<CleanView>,
    offline_batches: Vec<String>,
    uploads: u64,
    acks: BTreeMap<String, u64>,
}

/// A pushed stanza and the acks it got.
#[derive(Debug)]
struct Pushed {
    id: AttrValue,
    kind: String,
    tag: String,
    acks: Vec<AckView>,
}

/// One ack, as the device sent it.
#[derive(Clone, Debug, Serialize)]
pub struct AckView {
    class: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    to: Option<String>,
    participant: Option<String>,
    error: Option<String>,
    /// The id matched the pushed one byte for byte.
    exact_id: bool,
}

#[derive(Clone, Debug, Serialize)]
struct PingView {
    id: String,
    answered: bool,
}

#[derive(Clone, Debug, Serialize)]
struct CleanView {
    #[serde(rename = "type")]
    kind: Option<String>,
    timestamp: Option<String>,
}

#[derive(Debug, Serialize)]
struct StanzaView {
    id: String,
    kind: String,
    tag: String,
    acks: Vec<AckView>,
}

/// `GET /pushes`.
#[derive(Debug, Serialize)]
pub struct LedgerView {
    stanzas: Vec<StanzaView>,
    unacked: Vec<String>,
    pings: Vec<PingView>,
    cleans: Vec<CleanView>,
    offline_batches: Vec<String>,
    uploads: u64,
    acks: BTreeMap<String, u64>,
}

/// A kind `/push` does not know.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown push kind {0:?}")]
pub struct UnknownKind(pub String);

/// What `/push` writes: a node, or a frame plaintext for the kinds no encoder writes.
#[derive(Debug)]
pub(crate) enum Push {
    /// A stanza.
    Node(Node),
    /// A frame plaintext (flags byte first).
    Raw(Vec<u8>),
}

/// The options of `/push`.
#[derive(Debug, Default)]
pub(crate) struct PushOptions {
    /// `encrypt_count`'s value.
    pub(crate) count: Option<u64>,
    /// The caller or notifying user (a phone number or JID); a fixed number by default.
    pub(crate) from: Option<Jid>,
    /// `call_offer`: a video call.
    pub(crate) video: bool,
}

/// The user that notifications and calls come from unless the body names one.
const DEFAULT_FROM: &str = "15550000042";

/// Step 1: builds the stanza of `kind` for `device`, records it, and returns it with its id.
///
/// # Errors
/// [`UnknownKind`].
pub(crate) fn build(
    registry: &mut Registry,
    device: &Jid,
    kind: &str,
    options: &PushOptions,
) -> Result<(String, Push), UnknownKind> {
    let n = registry.next_id();
    let id = format!("push-{n}");
    let t = unix_now().to_string();
    let user = options
        .from
        .clone()
        .unwrap_or_else(|| Jid::new(DEFAULT_FROM, binary::jid::DEFAULT_USER_SERVER));
    let notification = |kind: &str, from: Jid, child: Node| {
        Node::new("notification")
            .jid_attr("from", from)
            .attr("id", id.clone())
            .attr("type", kind)
            .attr("t", t.clone())
            .children(vec![child])
    };
    let call = |child: Node| {
        Node::new("call")
            .jid_attr("from", user.clone())
            .attr("id", id.clone())
            .attr("t", t.clone())
            .children(vec![child])
    };
    let call_id = format!("CALL{n}");
    let push = match kind {
        "ping" => Node::new("iq")
            .jid_attr("from", Jid::server_jid())
            .attr("id", id.clone())
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping"),
        "ping_child" => Node::new("iq")
            .jid_attr("from", Jid::server_jid())
            .attr("id", id.clone())
            .attr("type", "get")
            .attr("xmlns", "w:p")
            .children(vec![Node::new("ping")]),
        "dirty" => Node::new("ib").children(vec![Node::new("dirty")
            .attr("type", "account_sync")
            .attr("timestamp", t.clone())]),
        "encrypt_count" => notification(
            "encrypt",
            Jid::server_jid(),
            Node::new("count").attr("value", options.count.unwrap_or(0).to_string()),
        ),
        "server_sync" | "non_utf8" | "trailing_bytes" => notification(
            "server_sync",
            Jid::server_jid(),
            Node::new("collection")
                .attr("name", "regular_high")
                .attr("version", n.to_string()),
        ),
        "devices" => notification(
            "devices",
            user.to_non_ad(),
            Node::new("add")
                .attr("device_hash", "2:sim")
                .children(vec![Node::new("device").jid_attr(
                    "jid",
                    Jid::device(user.user.clone(), user.server.clone(), 9),
                )]),
        ),
        "account_sync" => notification(
            "account_sync",
            device.to_non_ad(),
            Node::new("devices")
                .attr("dhash", "2:sim")
                .children(vec![Node::new("device").jid_attr("jid", device.to_non_ad())]),
        ),
        "picture" => notification(
            "picture",
            user.to_non_ad(),
            Node::new("set")
                .jid_attr("jid", user.to_non_ad())
                .attr("id", n.to_string()),
        ),
        "status" => notification(
            "status",
            user.to_non_ad(),
            Node::new("set").bytes(b"at the gym".to_vec()),
        ),
        "call_offer" => {
            let mut media = vec![Node::new("audio").attr("enc", "opus").attr("rate", "16000")];
            if options.video {
                media.push(Node::new("video").attr("enc", "vp8"));
            }
            call(
                Node::new("offer")
                    .attr("call-id", call_id)
                    .jid_attr("call-creator", user.clone())
                    .children(media),
            )
        }
        "call_terminate" => call(
            Node::new("terminate")
                .attr("call-id", call_id)
                .jid_attr("call-creator", user.clone())
                .attr("reason", "timeout"),
        ),
        other => return Err(UnknownKind(other.to_owned())),
    };
    let mut node = push;
    if kind == "non_utf8" {
        // 0xFF never occurs in UTF-8: a decoder that insists on it drops the stanza.
        let mut raw = vec![0xFF];
        raw.extend_from_slice(id.as_bytes());
        node.set_attr("id".into(), AttrValue::Bytes(raw));
    }
    let ledger = registry.pushes.device(device);
    match node.tag.as_str() {
        "iq" => ledger.pings.push(PingView {
            id: id.clone(),
            answered: false,
        }),
        "ib" => {}
        _ => ledger.stanzas.push(Pushed {
            id: node
                .get_attr("id")
                .cloned()
                .unwrap_or_else(|| AttrValue::Str(id.clone())),
            kind: kind.to_owned(),
            tag: node.tag.clone(),
            acks: Vec::new(),
        }),
    }
    let push = if kind == "trailing_bytes" {
        let mut plaintext = binary::encode(&node);
        plaintext.extend_from_slice(&[0x00, 0x01, 0x02]);
        Push::Raw(plaintext)
    } else {
        Push::Node(node)
    };
    Ok((id, push))
}

impl Ledger {
    fn device(&mut self, device: &Jid) -> &mut DeviceLedger {
        self.devices.entry(device.to_string()).or_default()
    }

    /// Pushed stanzas that got no ack yet, on every device (`/stats`: `pushes_unacked`).
    pub(crate) fn unacked(&self) -> usize {
        self.devices
            .values()
            .flat_map(|d| &d.stanzas)
            .filter(|p| p.acks.is_empty())
            .count()
    }

    /// `GET /pushes` for `device`; `None` when nothing was pushed to it or acked by it.
    pub(crate) fn view(&self, device: &Jid) -> Option<LedgerView> {
        let ledger = self.devices.get(&device.to_string())?;
        Some(LedgerView {
            stanzas: ledger
                .stanzas
                .iter()
                .map(|p| StanzaView {
                    id: p.id.as_str().into_owned(),
                    kind: p.kind.clone(),
                    tag: p.tag.clone(),
                    acks: p.acks.clone(),
                })
                .collect(),
            unacked: ledger
                .stanzas
                .iter()
                .filter(|p| p.acks.is_empty())
                .map(|p| p.id.as_str().into_owned())
                .collect(),
            pings: ledger.pings.clone(),
            cleans: ledger.cleans.clone(),
            offline_batches: ledger.offline_batches.clone(),
            uploads: ledger.uploads,
            acks: ledger.acks.clone(),
        })
    }
}

/// The device of a logged-in connection.
fn device_of(registry: &Registry, conn: ConnId) -> Option<Jid> {
    registry.conn(conn).and_then(|c| c.jid.clone())
}

/// Step 2: an `<ack>` from the device on `conn`.
pub(crate) fn on_ack(registry: &mut Registry, conn: ConnId, ack: &Node) {
    let (Some(device), Some(id)) = (device_of(registry, conn), ack.get_attr("id")) else {
        return;
    };
    let ledger = registry.pushes.device(&device);
    let text = id.as_str().into_owned();
    if !ledger.acks.contains_key(&text) && ledger.acks.len() >= MAX_COUNTED {
        ledger.acks.pop_first();
    }
    *ledger.acks.entry(text.clone()).or_default() += 1;
    let text_of = |key: &str| ack.attr_str(key).map(|v| v.into_owned());
    if let Some(pushed) = ledger
        .stanzas
        .iter_mut()
        .find(|p| p.id.as_str() == text.as_str())
    {
        pushed.acks.push(AckView {
            class: text_of("class"),
            kind: text_of("type"),
            to: text_of("to"),
            participant: text_of("participant"),
            error: text_of("error"),
            exact_id: pushed.id == *id,
        });
    }
}

/// Step 3: an IQ answer (`result` or `error`) from the device: a ping's, if it names one.
pub(crate) fn on_answer(registry: &mut Registry, conn: ConnId, answer: &Node) {
    let (Some(device), Some(id)) = (device_of(registry, conn), answer.attr_str("id")) else {
        return;
    };
    let ledger = registry.pushes.device(&device);
    let ok = answer.attr_str("type").as_deref() == Some("result");
    if let Some(ping) = ledger.pings.iter_mut().find(|p| p.id == id) {
        ping.answered = ok;
    }
}

/// Step 3: `<iq xmlns="urn:xmpp:whatsapp:dirty" type="set"><clean type timestamp/></iq>`:
/// recorded and answered `result`.
pub(crate) fn clean(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    if let Some(device) = device_of(registry, conn) {
        let ledger = registry.pushes.device(&device);
        for clean in request.children_by_tag("clean") {
            ledger.cleans.push(CleanView {
                kind: clean.attr_str("type").map(|v| v.into_owned()),
                timestamp: clean.attr_str("timestamp").map(|v| v.into_owned()),
            });
        }
    }
    super::iq::result(request)
}

/// Step 3: an `<ib>` from the device: `<offline_batch count/>` is recorded.
pub(crate) fn on_ib(registry: &mut Registry, conn: ConnId, ib: &Node) {
    let Some(batch) = ib.child("offline_batch") else {
        return;
    };
    if let Some(device) = device_of(registry, conn) {
        let count = batch.attr_str("count").unwrap_or_default().into_owned();
        registry.pushes.device(&device).offline_batches.push(count);
    }
}

/// Step 3: the device uploaded prekeys (an accepted upload).
pub(crate) fn on_upload(registry: &mut Registry, conn: ConnId) {
    if let Some(device) = device_of(registry, conn) {
        registry.pushes.device(&device).uploads += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::registry::LiveConfig;
    use super::*;

    #[test]
    fn builds_every_kind_and_refuses_others() {
        let mut registry = Registry::new(LiveConfig::default());
        let device = Jid::device("15551234567", binary::jid::DEFAULT_USER_SERVER, 3);
        let options = PushOptions::default();
        for kind in [
            "ping",
            "ping_child",
            "dirty",
            "encrypt_count",
            "server_sync",
            "devices",
            "account_sync",
            "picture",
            "status",
            "call_offer",
            "call_terminate",
            "non_utf8",
        ] {
            let (_, push) = build(&mut registry, &device, kind, &options).expect(kind);
            let Push::Node(node) = push else {
                panic!("{kind} is a node")
            };
            let frame = binary::encode(&node);
            assert_eq!(binary::decode(&frame).expect(kind), node, "{kind}");
        }
        let (_, push) = build(&mut registry, &device, "trailing_bytes", &options).expect("raw");
        let Push::Raw(frame) = push else {
            panic!("trailing_bytes is raw")
        };
        assert_eq!(binary::decode_frame(&frame).expect("decodes").trailing, 3);
        assert_eq!(
            build(&mut registry, &device, "nope", &options).map(|_| ()),
            Err(UnknownKind("nope".into()))
        );
        assert_eq!(registry.pushes.unacked(), 10);
        let view = registry.pushes.view(&device).expect("recorded");
        assert_eq!(view.pings.len(), 2);
        assert_eq!(
            view.unacked.len(),
            10,
            "notifications and calls wait for acks"
        );
    }
}
