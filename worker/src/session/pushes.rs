//! What the server pushes on a live connection besides messages and receipts, and what a real
//! client answers (wa-protocol.md §8.2, §8.4, §8.7, §9.2; wa-messaging.md §9.1, §10):
//!
//! | Push | Answer | Who answers so |
//! |---|---|---|
//! | `<iq type=get xmlns=urn:xmpp:ping>` (or a `<ping/>` child) | `<iq to=<from> type=result id/>` | whatsapp-rust, WhatsApp Web |
//! | `<ib><offline_preview …/>` | `<ib><offline_batch count="100"/></ib>` | Baileys (whatsapp-rust asks 200 at a time; whatsmeow nothing) |
//! | `<ib><offline count=N/>` | nothing: the backlog is delivered (logged) | all three |
//! | `<ib><dirty type timestamp/>` | `<iq xmlns=urn:xmpp:whatsapp:dirty type=set><clean type timestamp/></iq>` | whatsapp-rust (whatsmeow ignores it) |
//! | `<call>` | its ack, and a `call.received` report for what a person would care about | all three ack; report: Baileys, whatsmeow, whatsapp-rust emit an event |
//!
//! Acks of calls, notifications and receipts follow [`super::receive::ack_for`].

use ipc_protocol::{CallEvent, UnixMillis};
use tracing::{debug, info};

use super::actions::{Actions, Report};
use super::receive::acked;
use super::request::Purpose;
use super::stage::Ctx;
use crate::wa::binary::Node;

/// The batch size asked for when the server previews the offline backlog (Baileys').
pub(crate) const OFFLINE_BATCH: &str = "100";
/// The namespace of the dirty-bits IQ.
pub(crate) const DIRTY_XMLNS: &str = "urn:xmpp:whatsapp:dirty";
/// The namespace of the server's ping.
const PING_XMLNS: &str = "urn:xmpp:ping";

/// The `<call>` children reported: the ones that tell a person something. Signalling details
/// (`transport`, `relaylatency`, `enc_rekey`, …) are acked without a report.
const REPORTED_CALL_KINDS: [&str; 6] = [
    "offer",
    "offer_notice",
    "preaccept",
    "accept",
    "reject",
    "terminate",
];

/// Whether `iq` is the server's ping: a `get` with `xmlns="urn:xmpp:ping"` or a `<ping/>` child
/// (whatsapp-rust's test; our own keepalive pings go out as `w:p` and come back as `result`).
pub(crate) fn is_server_ping(iq: &Node) -> bool {
    iq.attr_str("type").as_deref() == Some("get")
        && (iq.attr_str("xmlns").as_deref() == Some(PING_XMLNS) || iq.child("ping").is_some())
}

/// The server's ping: answered with [`pong`].
pub(crate) fn on_server_ping(_ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    debug!("server ping answered");
    Actions::send(pong(iq))
}

/// `<iq to=<the ping's from> type="result" id=<its id>/>`; `id` only if it had one.
pub(crate) fn pong(iq: &Node) -> Node {
    let mut pong = Node::new("iq");
    if let Some(from) = iq.get_attr("from") {
        pong.set_attr("to".into(), from.clone());
    }
    pong = pong.attr("type", "result");
    if let Some(id) = iq.get_attr("id") {
        pong.set_attr("id".into(), id.clone());
    }
    pong
}

/// `<ib><offline_preview count message notification receipt …/>`: ask for the backlog.
pub(crate) fn on_offline_preview(_ctx: &mut Ctx<'_>, preview: &Node) -> Actions {
    info!(
        count = %preview.attr_str("count").unwrap_or_default(),
        message = %preview.attr_str("message").unwrap_or_default(),
        notification = %preview.attr_str("notification").unwrap_or_default(),
        receipt = %preview.attr_str("receipt").unwrap_or_default(),
        "offline backlog previewed; asking for it"
    );
    Actions::send(Node::new("ib").children(vec![
        Node::new("offline_batch").attr("count", OFFLINE_BATCH),
    ]))
}

/// `<ib><offline count=N/>`: the backlog is delivered; later stanzas are live. Nothing here waits
/// for it (prekey refills and identity changes are handled as they come), so it is only logged.
pub(crate) fn on_offline_end(_ctx: &mut Ctx<'_>, end: &Node) -> Actions {
    info!(count = %end.attr_str("count").unwrap_or_default(), "offline backlog delivered");
    Actions::none()
}

/// `<ib><dirty type timestamp/>`: the server marks a kind of state for a resync; the clean IQ
/// clears the mark, as whatsapp-rust sends it (`to` the server, `timestamp` only if given). We
/// keep no state of those kinds (groups, app state, …), so there is nothing to fetch first.
pub(crate) fn on_dirty(ctx: &mut Ctx<'_>, dirty: &Node) -> Actions {
    let Some(kind) = dirty.attr_str("type").map(|t| t.into_owned()) else {
        debug!("dirty without a type ignored");
        return Actions::none();
    };
    let mut clean = Node::new("clean").attr("type", kind.clone());
    if let Some(timestamp) = dirty.get_attr("timestamp") {
        clean.set_attr("timestamp".into(), timestamp.clone());
    }
    info!(kind, "dirty bit cleaned");
    Actions::send(
        ctx.requests
            .iq(Purpose::CleanDirty, DIRTY_XMLNS, "set", vec![clean]),
    )
}

/// `<call>`: reported when it says something a person would care about, then acked (the report
/// goes out first: a crash in between reports it again rather than never).
pub(crate) fn on_call(_ctx: &mut Ctx<'_>, call: &Node) -> Actions {
    let actions = match call_event(call) {
        Some(event) => {
            info!(kind = %event.kind, offline = event.offline, "call");
            Actions::none().and_report(Report::Call(event))
        }
        None => Actions::none(),
    };
    actions.merge(acked(call))
}

/// The event a `<call>` stanza makes, if its first child is one of [`REPORTED_CALL_KINDS`]:
/// `<call from id t [offline]><offer call-id call-creator>[<video/>]…</offer></call>`.
pub(crate) fn call_event(call: &Node) -> Option<CallEvent> {
    let info = call.children_slice().first()?;
    if !REPORTED_CALL_KINDS.contains(&info.tag.as_str()) {
        debug!(kind = %info.tag, "call signalling acked without a report");
        return None;
    }
    let call_id = info.attr_str("call-id")?.into_owned();
    let caller = info
        .attr_jid("call-creator")
        .or_else(|| info.attr_jid("from"))
        .or_else(|| call.attr_jid("from"))?;
    let at = call
        .attr_str("t")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or_else(UnixMillis::now, |s| UnixMillis(s.saturating_mul(1000)));
    Some(CallEvent {
        call_id,
        from: caller.to_non_ad().to_string(),
        kind: info.tag.clone(),
        video: info.child("video").is_some(),
        at,
        offline: call.get_attr("offline").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::binary::{encode, Jid};

    #[test]
    fn a_server_ping_gets_a_result_addressed_back() {
        // wa-protocol.md §8.4: both shapes, with and without an id.
        let ping = Node::new("iq")
            .jid_attr("from", Jid::server_jid())
            .attr("id", "p1")
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping");
        assert!(is_server_ping(&ping));
        let child = Node::new("iq")
            .attr("type", "get")
            .attr("xmlns", "w:p")
            .children(vec![Node::new("ping")]);
        assert!(is_server_ping(&child));
        let answer = Node::new("iq").attr("type", "result").attr("id", "p1");
        assert!(!is_server_ping(&answer), "an answer is no ping");
        let pong = pong(&ping);
        // <iq to=s.whatsapp.net type=result id=p1/>
        assert_eq!(hex::encode(encode(&pong)), "00f8071911fa0003041408fc027031");
        assert_eq!(pong.attr_jid("to"), Some(&Jid::server_jid()));
        assert_eq!(pong.attr_str("id").as_deref(), Some("p1"));
    }

    #[test]
    fn a_call_offer_is_reported_once_and_signalling_is_not() {
        let caller = Jid::device("15550001111", "s.whatsapp.net", 7);
        let call = |child: Node| {
            Node::new("call")
                .jid_attr("from", caller.clone())
                .attr("id", "C1")
                .attr("t", "1700000000")
                .children(vec![child])
        };
        let offer = call(
            Node::new("offer")
                .attr("call-id", "CALL1")
                .jid_attr("call-creator", caller.clone())
                .children(vec![Node::new("audio"), Node::new("video")]),
        );
        let event = call_event(&offer).expect("an offer is reported");
        assert_eq!(
            event,
            CallEvent {
                call_id: "CALL1".into(),
                from: "15550001111@s.whatsapp.net".into(),
                kind: "offer".into(),
                video: true,
                at: UnixMillis(1_700_000_000_000),
                offline: false,
            }
        );
        let transport = call(Node::new("transport").attr("call-id", "CALL1"));
        assert_eq!(call_event(&transport), None);
        let terminate = call(Node::new("terminate").attr("call-id", "CALL1")).attr("offline", "1");
        let event = call_event(&terminate).expect("reported");
        assert_eq!(
            (event.kind.as_str(), event.offline, event.video),
            ("terminate", true, false)
        );
    }
}
