//! IQ conventions (wa-protocol.md §8.3) and the keepalive answer (§8.4, §10.6).
//!
//! 1. A client IQ carries `id`, `type` (`get`/`set`), `xmlns` and `to=s.whatsapp.net`.
//! 2. The answer is `<iq from=s.whatsapp.net id=<same> type=result …>` or
//!    `<iq from=s.whatsapp.net id=<same> type=error><error code text/></iq>`.
//! 3. `w:p` pings (with or without a `<ping/>` child) get a result carrying `t`.

use worker::wa::binary::{Jid, Node};

use super::registry::unix_now;

/// `<iq from=s.whatsapp.net id=<id of request> type=result/>`.
pub(crate) fn result(request: &Node) -> Node {
    Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr(
            "id",
            request.attr_str("id").unwrap_or_default().into_owned(),
        )
        .attr("type", "result")
}

/// `<iq from=s.whatsapp.net id type=error><error code text/></iq>`.
pub(crate) fn error(request: &Node, code: u16, text: &str) -> Node {
    Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr(
            "id",
            request.attr_str("id").unwrap_or_default().into_owned(),
        )
        .attr("type", "error")
        .children(vec![Node::new("error")
            .attr("code", code.to_string())
            .attr("text", text)])
}

/// The answer to an IQ the simulator does not implement: error 501, so the client does not wait
/// for its IQ timeout (§10.5).
pub(crate) fn not_implemented(request: &Node) -> Node {
    error(request, 501, "feature-not-implemented")
}

/// The answer to IQs every session handles the same way: `w:p` pings.
pub(crate) fn answer_common(request: &Node) -> Option<Node> {
    let ping = request.attr_str("xmlns").as_deref() == Some("w:p")
        && request.attr_str("type").as_deref() == Some("get");
    ping.then(|| pong(request, unix_now()))
}

/// `<iq from=s.whatsapp.net id type=result t=<now>/>` (§8.4).
pub(crate) fn pong(request: &Node, now_unix: u64) -> Node {
    result(request).attr("t", now_unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::{decode, encode};

    #[test]
    fn answers_the_vector_ping_byte_for_byte() {
        // wa-protocol.md §11.2.1 client_frame0_plain, §11.2.3 ping_result.
        let ping = decode(&hex::decode("00f8091908ff831b2a1f1657042911fa0003").expect("hex"))
            .expect("node");
        assert!(answer_common(&ping).is_some());
        assert_eq!(
            hex::encode(encode(&pong(&ping, 1_700_000_030))),
            "00f8091906fa000308ff831b2a1f04141aff051700000030"
        );
    }

    #[test]
    fn other_iqs_get_error_501() {
        let request = Node::new("iq")
            .attr("id", "7")
            .attr("xmlns", "usync")
            .attr("type", "get");
        assert!(answer_common(&request).is_none());
        let answer = not_implemented(&request);
        assert_eq!(answer.attr_str("type").as_deref(), Some("error"));
        assert_eq!(
            answer
                .child("error")
                .and_then(|e| e.attr_str("code"))
                .as_deref(),
            Some("501")
        );
    }
}
