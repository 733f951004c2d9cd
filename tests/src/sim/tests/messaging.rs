//! The relay between clients (wa-messaging.md §6, §7, §8, §10): device lists, prekey bundles,
//! 1:1 and group fan-out with server acks, receipts and the offline queue, driven by clients
//! written here over real sockets. The `<enc>` payloads are opaque bytes: the simulator must
//! hand them over untouched.

use super::*;
use crate::sim::relay::phash;

const PHONE_A: &str = "15550001111";
const PHONE_B: &str = "15550002222";

/// A paired companion of an account.
pub(super) struct Member {
    pub(super) companion: Companion,
    pub(super) jid: Jid,
    /// The LID device JID pair-success gave it.
    pub(super) lid: Jid,
}

pub(super) async fn member(sim: &Sim, phone: &str) -> Member {
    let companion = Companion::generate();
    let (jid, lid) = pair_as(sim, &companion, phone).await;
    Member {
        companion,
        jid,
        lid,
    }
}

/// Logs in and sends `<active/>`; returns the connection and the queued stanzas it got
/// between the preview and the end marker, after checking both.
pub(super) async fn online(sim: &Sim, member: &Member) -> (NodeIo, Vec<Node>) {
    let mut io = login(sim, &member.companion, &member.jid).await;
    let queued = go_active(&mut io).await;
    (io, queued)
}

async fn go_active(io: &mut NodeIo) -> Vec<Node> {
    io.write(&iq("act", "passive", "set", vec![Node::new("active")]))
        .await
        .expect("active");
    let result = expect_node(io, "active result").await;
    assert_eq!(result.attr_str("type").as_deref(), Some("result"));
    let preview = expect_node(io, "offline preview").await;
    let preview = preview
        .child("offline_preview")
        .unwrap_or_else(|| panic!("offline_preview first, got {preview}"))
        .clone();
    let mut queued = Vec::new();
    loop {
        let node = expect_node(io, "queued stanza or end marker").await;
        if let Some(end) = node.child("offline") {
            assert_eq!(end.attr_str("count"), preview.attr_str("count"));
            break;
        }
        assert_eq!(node.attr_str("offline").as_deref(), Some("1"), "{node}");
        queued.push(node);
    }
    let count = |tag: &str| queued.iter().filter(|n| n.tag == tag).count().to_string();
    assert_eq!(
        preview.attr_str("count"),
        Some(queued.len().to_string().into())
    );
    assert_eq!(preview.attr_str("message"), Some(count("message").into()));
    assert_eq!(preview.attr_str("receipt"), Some(count("receipt").into()));
    queued
}

pub(super) fn lid_of(sim: &Sim, phone: &str) -> String {
    sim.shared
        .registry()
        .account(phone)
        .map(|a| a.lid.clone())
        .expect("account")
}

fn jid(text: &str) -> Jid {
    text.parse().expect("jid")
}

pub(super) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attr_str(key).map(|v| v.into_owned())
}

/// Uploads one-time prekeys `ids` (public keys `[id; 32]`) and the registration id.
async fn upload(io: &mut NodeIo, member: &Member, ids: std::ops::RangeInclusive<u32>) {
    let companion = &member.companion;
    let skey_public = xeddsa::public_key(&companion.skey);
    let signature = xeddsa::sign(&companion.identity, &[&[5u8][..], &skey_public].concat());
    let keys = ids
        .map(|id| {
            Node::new("key").children(vec![
                Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(vec![id as u8; 32]),
            ])
        })
        .collect();
    let request = iq(
        "up",
        "encrypt",
        "set",
        vec![
            Node::new("registration").bytes(companion.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(companion.identity_public().to_vec()),
            Node::new("list").children(keys),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(skey_public.to_vec()),
                Node::new("signature").bytes(signature.to_vec()),
            ]),
        ],
    );
    io.write(&request).await.expect("upload");
    let answer = expect_node(io, "upload result").await;
    assert_eq!(
        answer.attr_str("type").as_deref(),
        Some("result"),
        "{answer}"
    );
}

fn enc(kind: &str, payload: &[u8]) -> Node {
    Node::new("enc")
        .attr("v", "2")
        .attr("type", kind)
        .bytes(payload.to_vec())
}

fn to(device: Jid, enc: Node) -> Node {
    Node::new("to").jid_attr("jid", device).children(vec![enc])
}

fn message(id: &str, chat: Jid, children: Vec<Node>) -> Node {
    Node::new("message")
        .attr("id", id)
        .attr("type", "text")
        .jid_attr("to", chat)
        .children(children)
}

fn payloads(node: &Node) -> Vec<(String, Vec<u8>)> {
    node.children_by_tag("enc")
        .map(|e| {
            (
                attr(e, "type").unwrap_or_default(),
                e.content_bytes().unwrap_or_default().to_vec(),
            )
        })
        .collect()
}

#[tokio::test]
async fn usync_lists_paired_companions_and_lids_and_strangers_get_empty_lists() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let b1 = member(&sim, PHONE_B).await;
    let b2 = member(&sim, PHONE_B).await;
    let (mut io, _) = online(&sim, &a).await;
    let lid_b = lid_of(&sim, PHONE_B);
    // One LID per account: pair-success, <success> and usync agree.
    assert_eq!(
        (b1.lid.user.as_str(), b1.lid.device),
        (lid_b.as_str(), b1.jid.device)
    );
    assert_eq!(b2.lid.user, lid_b);
    let mut io_b = connect(&sim, &b2.companion.noise, &login_payload(&b2.jid)).await;
    let success = expect_node(&mut io_b, "success").await;
    assert_eq!(success.attr_jid("lid"), Some(&b2.lid));
    let query = iq(
        "u1",
        "usync",
        "get",
        vec![Node::new("usync")
            .attr("sid", "s1")
            .attr("mode", "query")
            .attr("context", "message")
            .children(vec![
                Node::new("query").children(vec![
                    Node::new("devices").attr("version", "2"),
                    Node::new("lid"),
                ]),
                Node::new("list").children(vec![
                    Node::new("user").jid_attr("jid", Jid::new(PHONE_B, DEFAULT_USER_SERVER)),
                    Node::new("user").jid_attr("jid", Jid::new(lid_b.as_str(), "lid")),
                    Node::new("user").jid_attr("jid", Jid::new("15559999999", DEFAULT_USER_SERVER)),
                ]),
            ])],
    );
    io.write(&query).await.expect("usync");
    let answer = expect_node(&mut io, "usync result").await;
    let usync = answer.child("usync").expect("usync");
    assert_eq!(attr(usync, "sid").as_deref(), Some("s1"));
    let users: Vec<&Node> = usync
        .child("list")
        .expect("list")
        .children_by_tag("user")
        .collect();
    assert_eq!(users.len(), 3);
    let devices = |user: &Node| -> Vec<(String, Option<String>)> {
        user.child("devices")
            .and_then(|d| d.child("device-list"))
            .expect("device-list")
            .children_by_tag("device")
            .map(|d| (attr(d, "id").unwrap_or_default(), attr(d, "key-index")))
            .collect()
    };
    let expected = vec![
        ("0".to_owned(), None),
        (b1.jid.device.to_string(), Some("1".to_owned())),
        (b2.jid.device.to_string(), Some("2".to_owned())),
    ];
    assert_eq!(
        devices(users[0]),
        expected,
        "the phone, then the companions"
    );
    assert!(users[0]
        .child("devices")
        .and_then(|d| d.child("key-index-list"))
        .and_then(Node::content_bytes)
        .is_some_and(|b| !b.is_empty()));
    assert_eq!(
        users[0]
            .child("lid")
            .and_then(|l| l.attr_jid("val"))
            .map(ToString::to_string),
        Some(format!("{lid_b}@lid"))
    );
    assert_eq!(devices(users[1]), expected, "the same account by LID");
    assert!(users[1].child("lid").is_none(), "no LID for a LID");
    assert!(devices(users[2]).is_empty(), "a stranger has no devices");
    assert!(users[2].child("lid").is_none());
    assert!(users[2]
        .child("devices")
        .and_then(|d| d.child("error"))
        .is_none());
    assert_eq!(sim.stats().usync_queries, 1);
    shut_down(sim, token, vec![io, io_b]).await;
}

#[tokio::test]
async fn bundles_consume_one_prekey_per_fetch_and_unknown_devices_get_406() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let b = member(&sim, PHONE_B).await;
    let (mut io_b, _) = online(&sim, &b).await;
    upload(&mut io_b, &b, 1..=2).await;
    let (mut io_a, _) = online(&sim, &a).await;
    let lid_b = Jid::device(lid_of(&sim, PHONE_B).as_str(), "lid", b.jid.device);
    let mut handed = Vec::new();
    for (n, target) in [b.jid.clone(), lid_b.clone(), b.jid.clone()]
        .into_iter()
        .enumerate()
    {
        let request = iq(
            &format!("k{n}"),
            "encrypt",
            "get",
            vec![Node::new("key").children(vec![
                Node::new("user").jid_attr("jid", target.clone()),
                Node::new("user").jid_attr("jid", Jid::device(PHONE_B, DEFAULT_USER_SERVER, 9)),
            ])],
        );
        io_a.write(&request).await.expect("fetch");
        let answer = expect_node(&mut io_a, "bundles").await;
        let users: Vec<&Node> = answer
            .child("list")
            .expect("list")
            .children_by_tag("user")
            .collect();
        assert_eq!(users[0].attr_jid("jid"), Some(&target));
        let bundle = users[0];
        assert_eq!(
            bundle.child("registration").and_then(Node::content_bytes),
            Some(&b.companion.registration_id.to_be_bytes()[..])
        );
        assert_eq!(
            bundle.child("identity").and_then(Node::content_bytes),
            Some(&b.companion.identity_public()[..])
        );
        assert_eq!(
            bundle
                .child("skey")
                .and_then(|s| s.child("value"))
                .and_then(Node::content_bytes),
            Some(&xeddsa::public_key(&b.companion.skey)[..])
        );
        handed.push(
            bundle
                .child("key")
                .and_then(|k| k.child("id"))
                .and_then(Node::content_bytes)
                .map(<[u8]>::to_vec),
        );
        assert_eq!(
            users[1]
                .child("error")
                .and_then(|e| e.attr_str("code"))
                .as_deref(),
            Some("406"),
            "no device 9"
        );
    }
    assert_eq!(
        handed,
        vec![Some(vec![0, 0, 1]), Some(vec![0, 0, 2]), None],
        "each one-time prekey once, then bundles without <key>"
    );
    let stats = sim.stats();
    assert_eq!((stats.bundle_fetches, stats.prekeys_consumed), (3, 2));
    shut_down(sim, token, vec![io_a, io_b]).await;
}

#[tokio::test]
async fn relays_direct_messages_with_alternates_and_acks_with_phash() {
    let (sim, token) = start(SimConfig::default()).await;
    let a1 = member(&sim, PHONE_A).await;
    let a2 = member(&sim, PHONE_A).await;
    let b = member(&sim, PHONE_B).await;
    let (mut io_a, _) = online(&sim, &a1).await;
    let (mut io_b, _) = online(&sim, &b).await;
    let lid_a = lid_of(&sim, PHONE_A);
    let lid_b = lid_of(&sim, PHONE_B);

    // The push name A announces rides along as `notify`.
    io_a.write(&Node::new("presence").attr("name", "Alice"))
        .await
        .expect("presence");
    // PN-addressed, to B's companion and to A's other device (a DSM).
    let stanza = message(
        "M1",
        Jid::new(PHONE_B, DEFAULT_USER_SERVER),
        vec![
            Node::new("participants").children(vec![
                to(b.jid.clone(), enc("pkmsg", b"for B")),
                to(a2.jid.clone(), enc("msg", b"for A2")),
            ]),
            Node::new("device-identity").bytes(b"identity".to_vec()),
        ],
    );
    io_a.write(&stanza).await.expect("send");
    let ack = expect_node(&mut io_a, "server ack").await;
    assert_eq!(ack.tag, "ack");
    assert_eq!(attr(&ack, "class").as_deref(), Some("message"));
    assert_eq!(attr(&ack, "id").as_deref(), Some("M1"));
    assert_eq!(
        attr(&ack, "from"),
        Some(format!("{PHONE_B}@s.whatsapp.net"))
    );
    assert!(attr(&ack, "t").is_some() && attr(&ack, "error").is_none());
    let phone = |p: &str| Jid::device(p, DEFAULT_USER_SERVER, 0);
    assert_eq!(
        attr(&ack, "phash"),
        Some(phash([
            phone(PHONE_B),
            b.jid.clone(),
            phone(PHONE_A),
            a2.jid.clone()
        ]))
    );

    let got = expect_node(&mut io_b, "relayed message").await;
    assert_eq!(got.attr_jid("from"), Some(&a1.jid));
    assert_eq!(attr(&got, "id").as_deref(), Some("M1"));
    assert_eq!(attr(&got, "type").as_deref(), Some("text"));
    assert_eq!(attr(&got, "notify").as_deref(), Some("Alice"));
    assert_eq!(attr(&got, "sender_lid"), Some(format!("{lid_a}@lid")));
    assert!(attr(&got, "t").is_some() && attr(&got, "recipient").is_none());
    assert_eq!(
        payloads(&got),
        vec![("pkmsg".to_owned(), b"for B".to_vec())]
    );
    assert_eq!(
        got.child("device-identity").and_then(Node::content_bytes),
        Some(&b"identity"[..]),
        "a pkmsg travels with the sender's device identity"
    );
    let dsm = sim
        .shared
        .registry()
        .device_mut(&a2.jid)
        .and_then(|d| d.outbox.first().cloned())
        .expect("queued for the offline own device");
    assert_eq!(
        attr(&dsm, "recipient"),
        Some(format!("{PHONE_B}@s.whatsapp.net"))
    );
    assert_eq!(payloads(&dsm), vec![("msg".to_owned(), b"for A2".to_vec())]);
    assert!(dsm.child("device-identity").is_none());

    // LID-addressed: from is A's LID device, the alternate is A's phone number.
    let lid_device_b = Jid::device(lid_b.as_str(), "lid", b.jid.device);
    io_a.write(&message(
        "M2",
        Jid::new(lid_b.as_str(), "lid"),
        vec![Node::new("participants").children(vec![to(lid_device_b, enc("msg", b"two"))])],
    ))
    .await
    .expect("send");
    let ack = expect_node(&mut io_a, "second ack").await;
    assert_eq!(attr(&ack, "from"), Some(format!("{lid_b}@lid")));
    let got = expect_node(&mut io_b, "LID-addressed message").await;
    assert_eq!(
        got.attr_jid("from").map(ToString::to_string),
        Some(format!("{lid_a}:{}@lid", a1.jid.device))
    );
    assert_eq!(
        attr(&got, "sender_pn"),
        Some(format!("{PHONE_A}@s.whatsapp.net"))
    );

    // A retry resend: no <participants>, the enc goes to the device `to` names; no phash.
    io_a.write(&message(
        "M1",
        b.jid.clone(),
        vec![Node::new("enc")
            .attr("v", "2")
            .attr("type", "msg")
            .attr("count", "1")
            .bytes(b"again".to_vec())],
    ))
    .await
    .expect("resend");
    let ack = expect_node(&mut io_a, "resend ack").await;
    assert!(
        attr(&ack, "error").is_none() && attr(&ack, "phash").is_none(),
        "{ack}"
    );
    let got = expect_node(&mut io_b, "resent message").await;
    assert_eq!(got.attr_jid("from"), Some(&a1.jid));
    assert_eq!(payloads(&got), vec![("msg".to_owned(), b"again".to_vec())]);
    assert_eq!(
        got.child("enc")
            .and_then(|e| e.attr_str("count"))
            .as_deref(),
        Some("1")
    );

    // Refusals.
    let refusals = [
        (
            message(
                "R1",
                Jid::new("15559999999", DEFAULT_USER_SERVER),
                vec![enc("msg", b"x")],
            ),
            "404",
        ),
        (
            message(
                "R2",
                Jid::new(PHONE_B, DEFAULT_USER_SERVER),
                vec![Node::new("participants").children(vec![to(
                    Jid::device(lid_b.as_str(), "lid", b.jid.device),
                    enc("msg", b"x"),
                )])],
            ),
            "400",
        ),
        (
            message("R3", Jid::new(PHONE_B, DEFAULT_USER_SERVER), vec![]),
            "479",
        ),
    ];
    for (stanza, code) in refusals {
        io_a.write(&stanza).await.expect("send");
        let ack = expect_node(&mut io_a, "refusal").await;
        assert_eq!(attr(&ack, "error").as_deref(), Some(code), "{ack}");
    }
    let stats = sim.stats();
    assert_eq!((stats.messages_accepted, stats.messages_relayed), (3, 4));
    shut_down(sim, token, vec![io_a, io_b]).await;
}

#[tokio::test]
async fn relays_receipts_to_the_senders_devices_and_confirms_the_message() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let b = member(&sim, PHONE_B).await;
    let (mut io_a, _) = online(&sim, &a).await;
    let (mut io_b, _) = online(&sim, &b).await;
    io_a.write(&message(
        "M1",
        Jid::new(PHONE_B, DEFAULT_USER_SERVER),
        vec![Node::new("participants").children(vec![to(b.jid.clone(), enc("pkmsg", b"x"))])],
    ))
    .await
    .expect("send");
    expect_node(&mut io_a, "server ack").await;
    expect_node(&mut io_b, "message").await;
    let pending = |sim: &Sim| {
        sim.shared
            .registry()
            .device_mut(&b.jid)
            .map_or(0, |d| d.outbox.len())
    };
    assert_eq!(pending(&sim), 1);

    // A retry receipt goes to the sending device with its children and confirms nothing.
    let retry = Node::new("receipt")
        .attr("id", "M1")
        .attr("type", "retry")
        .jid_attr("to", a.jid.clone())
        .children(vec![
            Node::new("retry").attr("count", "1").attr("id", "M1"),
            Node::new("registration").bytes(vec![0, 0, 0, 7]),
        ]);
    io_b.write(&retry).await.expect("retry");
    let ack = expect_node(&mut io_b, "receipt ack").await;
    assert_eq!(
        (attr(&ack, "class"), attr(&ack, "id"), attr(&ack, "type")),
        (
            Some("receipt".to_owned()),
            Some("M1".to_owned()),
            Some("retry".to_owned())
        )
    );
    assert_eq!(ack.attr_jid("from"), Some(&a.jid));
    let got = expect_node(&mut io_a, "retry receipt").await;
    assert_eq!(got.tag, "receipt");
    assert_eq!(got.attr_jid("from"), Some(&b.jid));
    assert_eq!(attr(&got, "type").as_deref(), Some("retry"));
    assert!(got.child("retry").is_some() && got.child("registration").is_some());
    assert_eq!(pending(&sim), 1, "a retry receipt confirms nothing");

    // A delivery receipt confirms the message and reaches A.
    io_b.write(
        &Node::new("receipt")
            .attr("id", "M1")
            .attr("type", "inactive")
            .jid_attr("to", a.jid.clone()),
    )
    .await
    .expect("receipt");
    expect_node(&mut io_b, "receipt ack").await;
    let got = expect_node(&mut io_a, "delivery receipt").await;
    assert_eq!(got.attr_jid("from"), Some(&b.jid));
    assert_eq!(attr(&got, "id").as_deref(), Some("M1"));
    assert_eq!(attr(&got, "type").as_deref(), Some("inactive"));
    assert!(attr(&got, "t").is_some());
    assert_eq!(pending(&sim), 0, "the receipt confirmed the message");

    // A's ack of the receipt empties A's outbox too.
    io_a.write(
        &Node::new("ack")
            .attr("class", "receipt")
            .attr("id", "M1")
            .attr("type", "inactive")
            .jid_attr("to", b.jid.clone()),
    )
    .await
    .expect("ack");
    wait_for("A's outbox to empty", || {
        let left = sim
            .shared
            .registry()
            .device_mut(&a.jid)
            .map_or(0, |d| d.outbox.len());
        // The retry receipt is still unconfirmed; only the acked one left.
        (left == 1).then_some(()).ok_or(format!("{left} left"))
    })
    .await;
    // The retry receipt to A's companion; the delivery receipt to it and to A's phone.
    assert_eq!(sim.stats().receipts_relayed, 3);
    shut_down(sim, token, vec![io_a, io_b]).await;
}

#[tokio::test]
async fn queues_for_offline_devices_and_replays_unconfirmed_stanzas_at_each_login() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let b = member(&sim, PHONE_B).await;
    let (mut io_a, _) = online(&sim, &a).await;
    for id in ["Q1", "Q2"] {
        io_a.write(&message(
            id,
            Jid::new(PHONE_B, DEFAULT_USER_SERVER),
            vec![Node::new("participants")
                .children(vec![to(b.jid.clone(), enc("msg", id.as_bytes()))])],
        ))
        .await
        .expect("send");
        let ack = expect_node(&mut io_a, "server ack").await;
        assert!(attr(&ack, "error").is_none(), "{ack}");
    }
    // A read receipt from A for something B sent earlier: a receipt in B's queue.
    io_a.write(
        &Node::new("receipt")
            .attr("id", "EARLIER")
            .attr("type", "read")
            .jid_attr("to", b.jid.clone()),
    )
    .await
    .expect("receipt");
    expect_node(&mut io_a, "receipt ack").await;

    // First login: preview, three offline stanzas in order, end marker.
    let (mut io_b, queued) = online(&sim, &b).await;
    let ids: Vec<_> = queued
        .iter()
        .map(|n| (n.tag.clone(), attr(n, "id").unwrap_or_default()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("message".to_owned(), "Q1".to_owned()),
            ("message".to_owned(), "Q2".to_owned()),
            ("receipt".to_owned(), "EARLIER".to_owned())
        ]
    );
    // The client's offline_batch is an <ib>: no answer (the next node is the ping's).
    io_b.write(&Node::new("ib").children(vec![Node::new("offline_batch").attr("count", "100")]))
        .await
        .expect("offline_batch");
    io_b.write(&iq("p1", "w:p", "get", vec![Node::new("ping")]))
        .await
        .expect("ping");
    assert_eq!(
        attr(&expect_node(&mut io_b, "ping result").await, "id").as_deref(),
        Some("p1")
    );
    // Confirm Q1 with a receipt and the receipt with an ack; leave Q2 unconfirmed.
    io_b.write(
        &Node::new("receipt")
            .attr("id", "Q1")
            .jid_attr("to", a.jid.clone()),
    )
    .await
    .expect("receipt");
    expect_node(&mut io_b, "receipt ack").await;
    io_b.write(
        &Node::new("ack")
            .attr("class", "receipt")
            .attr("id", "EARLIER")
            .attr("type", "read")
            .jid_attr("to", a.jid.clone()),
    )
    .await
    .expect("ack");
    io_b.write(&iq("p2", "w:p", "get", vec![Node::new("ping")]))
        .await
        .expect("ping");
    expect_node(&mut io_b, "ping result").await;
    drop(io_b);
    wait_for("B to be offline", || {
        let live = sim.sessions().len();
        (live == 1).then_some(()).ok_or(format!("{live} live"))
    })
    .await;

    // Second login: only the unconfirmed message again.
    let (io_b, queued) = online(&sim, &b).await;
    assert_eq!(
        queued.iter().map(|n| attr(n, "id")).collect::<Vec<_>>(),
        vec![Some("Q2".to_owned())]
    );
    assert_eq!(
        payloads(&queued[0]),
        vec![("msg".to_owned(), b"Q2".to_vec())]
    );
    // A got the delivery receipt for Q1 meanwhile.
    let receipt = expect_node(&mut io_a, "delivery receipt").await;
    assert_eq!(attr(&receipt, "id").as_deref(), Some("Q1"));
    assert!(sim.stats().client_acks >= 1);
    shut_down(sim, token, vec![io_a, io_b]).await;
}

#[tokio::test]
async fn fans_group_messages_out_to_member_devices_with_their_own_skdm_first() {
    let (sim, token) = start(SimConfig::default()).await;
    let a1 = member(&sim, PHONE_A).await;
    let a2 = member(&sim, PHONE_A).await;
    let b = member(&sim, PHONE_B).await;
    let outsider = member(&sim, "15550003333").await;
    let lid_a = lid_of(&sim, PHONE_A);
    let lid_b = lid_of(&sim, PHONE_B);

    let (status, body) = control(
        &sim,
        "POST",
        "/group",
        json!({"subject": "s", "participants": [PHONE_A, "15559999999"]}),
    )
    .await;
    assert_eq!((status, body["error"].is_string()), (404, true), "{body}");
    let (status, _) = control(
        &sim,
        "POST",
        "/group",
        json!({"subject": "s", "participants": [PHONE_A], "addressing_mode": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = control(
        &sim,
        "POST",
        "/group",
        json!({"subject": "team", "participants": [PHONE_A, PHONE_B], "addressing_mode": "lid"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let group = jid(body["jid"].as_str().expect("jid"));
    assert_eq!(group.server, "g.us");

    let (mut io_a, _) = online(&sim, &a1).await;
    let (mut io_b, _) = online(&sim, &b).await;

    // Metadata: LID participants with their phone numbers, creator first.
    let query = iq(
        "g1",
        "w:g2",
        "get",
        vec![Node::new("query").attr("request", "interactive")],
    )
    .jid_attr("to", group.clone());
    io_a.write(&query).await.expect("metadata");
    let answer = expect_node(&mut io_a, "metadata").await;
    let meta = answer.child("group").unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(attr(meta, "id").as_deref(), Some(group.user.as_str()));
    assert_eq!(attr(meta, "subject").as_deref(), Some("team"));
    assert_eq!(attr(meta, "addressing_mode").as_deref(), Some("lid"));
    let members: Vec<(Option<String>, Option<String>)> = meta
        .children_by_tag("participant")
        .map(|p| (attr(p, "jid"), attr(p, "phone_number")))
        .collect();
    assert_eq!(
        members,
        vec![
            (
                Some(format!("{lid_a}@lid")),
                Some(format!("{PHONE_A}@s.whatsapp.net"))
            ),
            (
                Some(format!("{lid_b}@lid")),
                Some(format!("{PHONE_B}@s.whatsapp.net"))
            ),
        ]
    );

    // A1 sends: B gets its SKDM then the skmsg; A2 (offline) only the skmsg.
    let lid_device_b = Jid::device(lid_b.as_str(), "lid", b.jid.device);
    let stanza = message(
        "G1",
        group.clone(),
        vec![
            Node::new("participants")
                .children(vec![to(lid_device_b.clone(), enc("pkmsg", b"skdm"))]),
            enc("skmsg", b"group text"),
        ],
    )
    .attr("addressing_mode", "lid");
    io_a.write(&stanza).await.expect("send");
    let ack = expect_node(&mut io_a, "server ack").await;
    assert!(attr(&ack, "error").is_none(), "{ack}");
    assert_eq!(ack.attr_jid("from"), Some(&group));
    let lid_device_a2 = Jid::device(lid_a.as_str(), "lid", a2.jid.device);
    let phone = |lid: &str| Jid::device(lid, "lid", 0);
    assert_eq!(
        attr(&ack, "phash"),
        Some(phash([
            phone(&lid_b),
            lid_device_b,
            phone(&lid_a),
            lid_device_a2
        ]))
    );
    let got = expect_node(&mut io_b, "group message").await;
    assert_eq!(got.attr_jid("from"), Some(&group));
    assert_eq!(
        got.attr_jid("participant").map(ToString::to_string),
        Some(format!("{lid_a}:{}@lid", a1.jid.device))
    );
    assert_eq!(attr(&got, "addressing_mode").as_deref(), Some("lid"));
    assert_eq!(
        attr(&got, "participant_pn"),
        Some(format!("{PHONE_A}@s.whatsapp.net"))
    );
    assert_eq!(
        payloads(&got),
        vec![
            ("pkmsg".to_owned(), b"skdm".to_vec()),
            ("skmsg".to_owned(), b"group text".to_vec())
        ]
    );
    let own_copy = sim
        .shared
        .registry()
        .device_mut(&a2.jid)
        .and_then(|d| d.outbox.first().cloned())
        .expect("queued for A2");
    assert_eq!(
        payloads(&own_copy),
        vec![("skmsg".to_owned(), b"group text".to_vec())]
    );

    // The group receipt goes back to A's devices with the group as from.
    io_b.write(
        &Node::new("receipt")
            .attr("id", "G1")
            .jid_attr("to", group.clone())
            .jid_attr(
                "participant",
                got.attr_jid("participant").cloned().expect("p"),
            ),
    )
    .await
    .expect("receipt");
    expect_node(&mut io_b, "receipt ack").await;
    // The phones of A and B could not decrypt the opaque test payloads: their retry receipts
    // come first.
    let receipt = loop {
        let node = expect_node(&mut io_a, "group receipt").await;
        if attr(&node, "type").as_deref() != Some("retry") {
            break node;
        }
    };
    assert_eq!(receipt.attr_jid("from"), Some(&group));
    assert_eq!(
        receipt.attr_jid("participant").map(ToString::to_string),
        Some(format!("{lid_b}:{}@lid", b.jid.device))
    );

    // Someone outside the group is refused.
    let (mut io_out, _) = online(&sim, &outsider).await;
    io_out
        .write(&message("G2", group.clone(), vec![enc("skmsg", b"x")]))
        .await
        .expect("send");
    let ack = expect_node(&mut io_out, "refusal").await;
    assert_eq!(attr(&ack, "error").as_deref(), Some("403"));
    shut_down(sim, token, vec![io_a, io_b, io_out]).await;
}
