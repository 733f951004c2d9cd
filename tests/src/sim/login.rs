//! The login session: a connection whose ClientPayload carried `username` + `device`
//! (wa-protocol.md §4.5, §8, §10.5, §10.6).
//!
//! 1. The registry checks the device: known, paired, not removed, and the handshake's noise key
//!    is the one that paired. Otherwise `<failure reason="401" location="mock"/>` and close.
//! 2. `<success t lid props abprops location creation/>`; an older live connection of the same
//!    device gets `<stream:error><conflict type="replaced"/></stream:error>` (`Registry::login`).
//! 3. IQs: `w:p` ping → result with `t`; `encrypt` `<count/>` → `<count value=N/>`; `encrypt`
//!    set (upload) → store, result; `encrypt` `<digest/>` → the key bundle digest;
//!    `passive` `<active/>`/`<passive/>` → result; `md` `<remove-companion-device/>` → device
//!    removed, result; `usync` get → device lists and LIDs, `encrypt` get `<key>` → prekey
//!    bundles (`directory`); `w:g2` get → group metadata (`groups`); app-state sync, props,
//!    A/B props, blocklist, privacy, dirty clean → a fresh account's answers (`account`);
//!    anything else → error 501.
//! 4. On `<active/>`: `<ib><offline_preview count message receipt notification …/></ib>`, the
//!    device's outbox (each stanza `offline` marked), then `<ib><offline count=N/></ib>`
//!    (wa-messaging.md §10). The client's `<ib><offline_batch/></ib>` needs no answer.
//!    A device's answers to server pushes (ping results, the clean IQ, `offline_batch`, prekey
//!    uploads, every ack) are recorded for `/pushes` (`pushes`).
//! 5. `<ack>`/`<receipt>` confirm delivered stanzas (`delivery`); a client `<message>` or
//!    `<receipt>` is relayed to its recipients and acked (`relay`); `<presence name>` records
//!    the account's push name; other `<ib>`, `<presence>`, `<chatstate>` are ignored.

use tracing::{debug, info, warn};
use worker::wa::binary::{Jid, Node};

use super::account;
use super::connection::Command;
use super::delivery;
use super::digest;
use super::faults::Fault;
use super::iq;
use super::pairing::verify_skey;
use super::registry::{same_device, unix_now, ConnId, LoginGrant, Registry};
use super::session::Step;
use super::{directory, groups, pushes, relay};

/// `<ib><edge_routing><routing_info>…` (§8.7): what a real edge sends after login so the client
/// names it in its next connection's `ED` pre-intro. The bytes are opaque to clients; the
/// simulator uses readable text that names the connection that handed them out.
pub(crate) fn edge_routing(conn: super::registry::ConnId) -> Node {
    Node::new("ib").children(vec![Node::new("edge_routing")
        .children(vec![
            Node::new("routing_info").bytes(format!("sim-edge-{}", conn.0).into_bytes())
        ])])
}

/// `<failure reason=N location="mock"/>` (§8.6).
pub(crate) fn failure(reason: &str) -> Node {
    Node::new("failure")
        .attr("reason", reason)
        .attr("location", "mock")
}

/// `<success/>` (§8.1): `t` and the own LID are what clients read.
pub(crate) fn success(grant: &LoginGrant, now_unix: u64) -> Node {
    Node::new("success")
        .attr("t", now_unix.to_string())
        .attr("props", "27")
        .attr("location", "mock")
        .jid_attr("lid", grant.lid.clone())
        .attr("abprops", "10")
        .attr("creation", grant.created.to_string())
}

/// Handles one stanza of a logged-in connection (steps 3–5).
pub(crate) fn on_node(registry: &mut Registry, conn: ConnId, node: &Node) -> Step {
    match node.tag.as_str() {
        "iq" => on_iq(registry, conn, node),
        "ack" => {
            pushes::on_ack(registry, conn, node);
            delivery::on_confirmation(registry, conn, node);
            Step::default()
        }
        "ib" => {
            pushes::on_ib(registry, conn, node);
            Step::default()
        }
        "receipt" => {
            delivery::on_confirmation(registry, conn, node);
            Step::send(relay::on_receipt(registry, conn, node, unix_now()))
        }
        "message" => Step::send(relay::on_message(registry, conn, node, unix_now())),
        "presence" => {
            record_push_name(registry, conn, node);
            Step::default()
        }
        _ => Step::default(),
    }
}

fn on_iq(registry: &mut Registry, conn: ConnId, node: &Node) -> Step {
    let kind = node.attr_str("type").unwrap_or_default().into_owned();
    if kind != "get" && kind != "set" {
        debug!(conn_id = %conn, kind, "iq answer");
        pushes::on_answer(registry, conn, node);
        return Step::default();
    }
    if let Some(answer) = iq::answer_common(node) {
        registry.stats.client_pings += 1;
        return Step::send(answer);
    }
    let xmlns = node.attr_str("xmlns").unwrap_or_default().into_owned();
    let first = node.children_slice().first().map(|c| c.tag.as_str());
    match (xmlns.as_str(), kind.as_str(), first) {
        ("encrypt", "get", Some("count")) => Step::send(prekey_count(registry, conn, node)),
        ("encrypt", "get", Some("digest")) => Step::send(key_digest(registry, conn, node)),
        ("encrypt", "set", _) if node.child("list").is_some() => {
            let answer = upload(registry, conn, node);
            if answer.attr_str("type").as_deref() == Some("result") {
                pushes::on_upload(registry, conn);
            }
            Step::send(answer)
        }
        (pushes::DIRTY_XMLNS, "set", Some("clean")) => {
            Step::send(pushes::clean(registry, conn, node))
        }
        ("passive", "set", Some("active")) => go_active(registry, conn, node),
        ("usync", "get", _) => Step::send(directory::usync(registry, node)),
        ("encrypt", "get", Some("key")) => Step::send(directory::bundles(registry, node)),
        ("w:g2", "get", _) => Step::send(groups::query(registry, conn, node)),
        ("passive", "set", Some("passive")) => {
            if let Some(entry) = registry.conn_mut(conn) {
                entry.active = false;
            }
            Step::send(iq::result(node))
        }
        ("md", "set", Some("remove-companion-device")) => {
            Step::send(remove_companion(registry, conn, node))
        }
        _ => match account::answer(node) {
            Some(answer) => Step::send(answer),
            None => {
                debug!(conn_id = %conn, xmlns, kind, "unimplemented iq");
                Step::send(iq::not_implemented(node))
            }
        },
    }
}

/// `<iq type=result><count value=N/></iq>`, N = prekeys stored for the device.
fn prekey_count(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    let count = registry.device_of_conn(conn).map_or(0, |d| d.prekeys.len());
    iq::result(request).children(vec![Node::new("count").attr("value", count.to_string())])
}

fn key_digest(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    match registry.device_of_conn(conn) {
        Some(device) if device.uploaded => {
            iq::result(request).children(vec![digest::digest_node(device)])
        }
        _ => iq::error(request, 404, "item-not-found"),
    }
}

/// Why an upload was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
enum UploadRefused {
    #[error("upload field {0} is missing or has the wrong length")]
    Field(&'static str),
    #[error("upload identity is not the device's identity")]
    Identity,
    #[error("signed prekey signature does not verify")]
    Signature,
}

/// Stores an upload (§8.2 format) after checking it belongs to the device.
fn upload(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    let Some(device) = registry.device_of_conn(conn) else {
        return iq::error(request, 401, "not-authorized");
    };
    let parsed = parse_upload(request, &device.keys.identity);
    match parsed {
        Ok((prekeys, skey)) => {
            let n = prekeys.len();
            device.prekeys.extend(prekeys);
            device.uploaded = true;
            if let Some(registration) = request
                .child("registration")
                .and_then(Node::content_bytes)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            {
                device.keys.registration_id = registration;
            }
            if let Some((id, value, signature)) = skey {
                device.keys.skey_id = id;
                device.keys.skey_value = value;
                device.keys.skey_signature = signature;
            }
            debug!(conn_id = %conn, uploaded = n, total = device.prekeys.len(), "prekeys stored");
            iq::result(request)
        }
        Err(e) => {
            warn!(conn_id = %conn, error = %e, "prekey upload refused");
            iq::error(request, 400, "bad-request")
        }
    }
}

type SignedPrekey = ([u8; 3], [u8; 32], [u8; 64]);
/// The one-time prekeys (id, public key) and the signed prekey of an upload.
type Upload = (Vec<(u32, [u8; 32])>, Option<SignedPrekey>);

fn parse_upload(request: &Node, identity: &[u8; 32]) -> Result<Upload, UploadRefused> {
    fn fixed<const N: usize>(
        node: Option<&Node>,
        name: &'static str,
    ) -> Result<[u8; N], UploadRefused> {
        node.and_then(Node::content_bytes)
            .and_then(|b| b.try_into().ok())
            .ok_or(UploadRefused::Field(name))
    }
    let uploaded: [u8; 32] = fixed(request.child("identity"), "identity")?;
    if uploaded != *identity {
        return Err(UploadRefused::Identity);
    }
    let _registration: [u8; 4] = fixed(request.child("registration"), "registration")?;
    let mut prekeys = Vec::new();
    for key in request
        .child("list")
        .map(|l| l.children_by_tag("key").collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let id: [u8; 3] = fixed(key.child("id"), "key id")?;
        let value: [u8; 32] = fixed(key.child("value"), "key value")?;
        prekeys.push((u32::from_be_bytes([0, id[0], id[1], id[2]]), value));
    }
    let skey = match request.child("skey") {
        None => None,
        Some(skey) => {
            let id: [u8; 3] = fixed(skey.child("id"), "skey id")?;
            let value: [u8; 32] = fixed(skey.child("value"), "skey value")?;
            let signature: [u8; 64] = fixed(skey.child("signature"), "skey signature")?;
            if !verify_skey(identity, &value, &signature) {
                return Err(UploadRefused::Signature);
            }
            Some((id, value, signature))
        }
    };
    Ok((prekeys, skey))
}

/// Step 4: the result, the preview, the outbox, then `<ib><offline count=N/></ib>`.
fn go_active(registry: &mut Registry, conn: ConnId, request: &Node) -> Step {
    if let Some(entry) = registry.conn_mut(conn) {
        entry.active = true;
    }
    let queued: Vec<Node> = registry
        .device_of_conn(conn)
        .map(|d| {
            d.outbox
                .iter()
                .map(|n| n.clone().attr("offline", "1"))
                .collect()
        })
        .unwrap_or_default();
    let count = queued.len();
    let mut send = vec![iq::result(request), offline_preview(&queued)];
    send.extend(queued);
    send.push(
        Node::new("ib").children(vec![Node::new("offline").attr("count", count.to_string())]),
    );
    Step {
        send,
        ..Step::default()
    }
}

/// `<ib><offline_preview count message receipt notification call appdata/></ib>`: what the
/// queue holds, by stanza kind.
fn offline_preview(queued: &[Node]) -> Node {
    let of = |tag: &str| queued.iter().filter(|n| n.tag == tag).count().to_string();
    Node::new("ib").children(vec![Node::new("offline_preview")
        .attr("count", queued.len().to_string())
        .attr("message", of("message"))
        .attr("notification", of("notification"))
        .attr("receipt", of("receipt"))
        .attr("call", of("call"))
        .attr("appdata", "0")])
}

/// `<presence name=…>`: the push name later messages carry as `notify`.
fn record_push_name(registry: &mut Registry, conn: ConnId, presence: &Node) {
    let Some(name) = presence.attr_str("name").map(|n| n.into_owned()) else {
        return;
    };
    let Some(phone) = registry
        .conn(conn)
        .and_then(|c| c.jid.as_ref())
        .map(|j| j.user.clone())
    else {
        return;
    };
    if let Some(account) = registry.account_mut(&phone) {
        account.push_name = Some(name);
    }
}

/// `<remove-companion-device jid reason/>` (§8.7a): removes the named device of the same
/// account (the connection's own when `jid` is absent); another live device is told it was
/// logged out.
fn remove_companion(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    let Some(own) = registry.conn(conn).and_then(|c| c.jid.clone()) else {
        return iq::error(request, 401, "not-authorized");
    };
    let target = request
        .child("remove-companion-device")
        .and_then(|r| {
            r.attr_jid("jid")
                .cloned()
                .or_else(|| r.attr_str("jid").and_then(|s| s.parse::<Jid>().ok()))
        })
        .unwrap_or_else(|| own.clone());
    if target.user != own.user || !registry.remove_device(&target) {
        return iq::error(request, 404, "item-not-found");
    }
    registry.stats.companions_removed += 1;
    info!(conn_id = %conn, device = target.device, "companion removed by request");
    if !same_device(&target, &own) {
        if let Some((_, entry)) = registry.logged_in(&target) {
            let _ = entry.commands.send(Command::Fault {
                fault: Fault::Logout,
                done: None,
            });
        }
    }
    iq::result(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::encode;

    #[test]
    fn failure_matches_the_vector_shape() {
        // wa-protocol.md §11.2.3 failure_401 is the same stanza with location "frc".
        let vector = Node::new("failure")
            .attr("reason", "401")
            .attr("location", "frc");
        assert_eq!(hex::encode(encode(&vector)), "00f805ee3cec2e8d3dfc03667263");
        assert_eq!(failure("401").attrs.len(), 2);
        assert_eq!(failure("401").attr_str("reason").as_deref(), Some("401"));
    }

    #[test]
    fn success_carries_t_and_a_typed_lid() {
        let grant = LoginGrant {
            jid: Jid::device("15551234567", "s.whatsapp.net", 2),
            lid: Jid::device("100000000000001", "lid", 2),
            created: 1_600_000_000,
        };
        let node = success(&grant, 1_700_000_000);
        assert_eq!(node.attr_str("t").as_deref(), Some("1700000000"));
        assert_eq!(
            node.attr_jid("lid").map(ToString::to_string).as_deref(),
            Some("100000000000001:2@lid")
        );
    }

    #[test]
    fn uploads_must_carry_the_device_identity_and_a_valid_signed_prekey() {
        use worker::wa::xeddsa;
        let identity_private = xeddsa::generate_private();
        let identity = xeddsa::public_key(&identity_private);
        let skey = xeddsa::public_key(&xeddsa::generate_private());
        let signature = xeddsa::sign(&identity_private, &[&[5u8][..], &skey].concat());
        let upload = |identity: [u8; 32], signature: [u8; 64]| {
            Node::new("iq").children(vec![
                Node::new("registration").bytes(vec![0, 0, 0, 1]),
                Node::new("type").bytes(vec![5]),
                Node::new("identity").bytes(identity.to_vec()),
                Node::new("list").children(vec![Node::new("key").children(vec![
                    Node::new("id").bytes(vec![0, 1, 2]),
                    Node::new("value").bytes(vec![7; 32]),
                ])]),
                Node::new("skey").children(vec![
                    Node::new("id").bytes(vec![0, 0, 1]),
                    Node::new("value").bytes(skey.to_vec()),
                    Node::new("signature").bytes(signature.to_vec()),
                ]),
            ])
        };
        let (keys, skey_parsed) =
            parse_upload(&upload(identity, signature), &identity).expect("valid");
        assert_eq!(keys, vec![(0x0102, [7; 32])]);
        assert!(skey_parsed.is_some());
        assert_eq!(
            parse_upload(&upload([1; 32], signature), &identity),
            Err(UploadRefused::Identity)
        );
        let mut bad = signature;
        bad[0] ^= 1;
        assert_eq!(
            parse_upload(&upload(identity, bad), &identity),
            Err(UploadRefused::Signature)
        );
    }
}
