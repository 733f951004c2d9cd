//! The sim's phones as Signal peers (`peer`): contacts and account phones send with
//! `POST /send`, decrypt what reaches device 0, answer receipts and retries. The companion
//! here is a real Signal peer too, built on the worker's Signal layer over a real socket.

use prost::Message as _;
use worker::signal::{
    pad, unpad, KeyPair, LocalIdentity, PreKeyBundle, PreKeyLookup, PreKeySignalMessage,
    PrivateKey, PublicKey, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord,
    SessionRecord, SignalMessage,
};
use worker::wa::e2e::Message as WaMessage;
use worker::wa::e2e::SenderKeyDistribution;

use super::messaging::{attr, lid_of, member, online};
use super::*;
use crate::sim::peer::MAX_RETRIES;

const PHONE_A: &str = "15550001111";
const CONTACT: &str = "15550009999";
const OTHER: &str = "15550008888";

/// The companion's side of Signal: its registration keys, no one-time prekeys.
struct Keys {
    identity: LocalIdentity,
    signed: KeyPair,
}

impl PreKeyLookup for Keys {
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == 1).then(|| self.signed.clone())
    }

    fn pre_key(&self, _: u32) -> Option<KeyPair> {
        None
    }
}

fn keys(companion: &Companion) -> Keys {
    Keys {
        identity: LocalIdentity {
            key_pair: KeyPair::from_private(PrivateKey::from_bytes(companion.identity)),
            registration_id: companion.registration_id,
        },
        signed: KeyPair::from_private(PrivateKey::from_bytes(companion.skey)),
    }
}

/// Decrypts the single pairwise `<enc>` of `stanza` into its text.
fn open(keys: &Keys, session: &mut SessionRecord, stanza: &Node) -> WaMessage {
    let enc = stanza
        .children_by_tag("enc")
        .find(|e| attr(e, "type").as_deref() != Some("skmsg"))
        .unwrap_or_else(|| panic!("a pairwise enc in {stanza}"));
    let bytes = enc.content_bytes().expect("enc bytes");
    let mut rng = rand::thread_rng();
    let padded = match attr(enc, "type").as_deref() {
        Some("pkmsg") => {
            let message = PreKeySignalMessage::parse(bytes).expect("pkmsg");
            session
                .decrypt_pre_key(&keys.identity, &message, keys, &mut rng)
                .expect("decrypt pkmsg")
                .plaintext
        }
        _ => session
            .decrypt(&SignalMessage::parse(bytes).expect("msg"), &mut rng)
            .expect("decrypt msg"),
    };
    WaMessage::decode(unpad(&padded).expect("padding")).expect("message")
}

fn seal(session: &mut SessionRecord, text: &str) -> Node {
    let payload = WaMessage::from_text(text).encode_to_vec();
    let message = session
        .encrypt(&pad(&payload, &mut rand::thread_rng()))
        .expect("encrypt");
    Node::new("enc")
        .attr("v", "2")
        .attr("type", message.enc_type())
        .bytes(message.as_bytes().to_vec())
}

fn direct(id: &str, to: Jid, enc: Node) -> Node {
    Node::new("message")
        .attr("id", id)
        .attr("type", "text")
        .jid_attr("to", to.clone())
        .children(vec![Node::new("participants").children(vec![Node::new(
            "to",
        )
        .jid_attr("jid", to)
        .children(vec![enc])])])
}

async fn inbox(sim: &Sim, who: &str) -> Value {
    let (status, body) = control(sim, "GET", &format!("/inbox?jid={who}"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The next `<message>` or `<receipt>` (acks skipped).
async fn expect_stanza(io: &mut NodeIo, tag: &str) -> Node {
    loop {
        let node = expect_node(io, tag).await;
        if node.tag == tag {
            return node;
        }
        assert_eq!(node.tag, "ack", "expected {tag}, got {node}");
    }
}

#[tokio::test]
async fn a_contact_and_a_phone_talk_and_share_a_group_inside_the_sim() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;

    // The contact writes first: a new account with only its phone.
    let (status, sent) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": CONTACT, "to": PHONE_A, "text": "hi from the contact"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let first = sent["id"].as_str().expect("id").to_owned();
    let got = inbox(&sim, PHONE_A).await;
    let message = &got["messages"][0];
    assert_eq!(message["id"], first.as_str());
    assert_eq!(message["kind"], "text");
    assert_eq!(message["text"], "hi from the contact");
    assert_eq!(message["from"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(message["chat"], format!("{CONTACT}@s.whatsapp.net"));
    let receipts = inbox(&sim, CONTACT).await["receipts"].clone();
    assert_eq!(receipts[0]["id"], first.as_str());
    assert_eq!(receipts[0]["type"], "delivered");
    assert_eq!(receipts[0]["from"], format!("{PHONE_A}@s.whatsapp.net"));
    assert_eq!(
        sim.stats().prekeys_consumed,
        1,
        "A's phone's prekey; A's companion uploaded none"
    );

    // A's phone answers by LID over the session the contact started; then the contact again.
    let lid_contact = lid_of(&sim, CONTACT);
    let (status, _) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": PHONE_A, "to": format!("{lid_contact}@lid"), "text": "hi back"}),
    )
    .await;
    assert_eq!(status, 200);
    let fetches = sim.stats().bundle_fetches;
    let (status, _) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": CONTACT, "to": PHONE_A, "text": "again"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.stats().bundle_fetches, fetches, "sessions are reused");
    let contact = inbox(&sim, CONTACT).await;
    assert_eq!(contact["messages"][0]["text"], "hi back");
    assert_eq!(
        contact["messages"][0]["from"],
        format!("{}@lid", lid_of(&sim, PHONE_A))
    );
    assert_eq!(inbox(&sim, PHONE_A).await["messages"][1]["text"], "again");
    // A's companion got a DSM of its phone's reply.
    let relayed = sim.shared.registry().relayed(&a.jid).expect("device");
    assert!(
        relayed
            .iter()
            .any(|v| v.from == format!("{PHONE_A}@s.whatsapp.net")
                || v.from == format!("{}@lid", lid_of(&sim, PHONE_A))),
        "{relayed:?}"
    );

    // A read receipt.
    let (status, body) = control(
        &sim,
        "POST",
        "/read",
        json!({"phone": PHONE_A, "id": first}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let receipts = inbox(&sim, CONTACT).await["receipts"].clone();
    assert!(receipts
        .as_array()
        .expect("receipts")
        .iter()
        .any(|r| r["id"] == first.as_str() && r["type"] == "read"));

    // A group: the contact's sender key reaches A's phone and companion once.
    let (status, group) = control(
        &sim,
        "POST",
        "/group",
        json!({"subject": "g", "participants": [CONTACT, PHONE_A]}),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    let group = group["jid"].as_str().expect("jid").to_owned();
    for text in ["group one", "group two"] {
        let (status, body) = control(
            &sim,
            "POST",
            "/send",
            json!({"from": CONTACT, "to": group, "text": text}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let messages = inbox(&sim, PHONE_A).await["messages"].clone();
    let texts: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["chat"] == group.as_str())
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["group one", "group two"]);
    let encs: Vec<Vec<String>> = sim
        .shared
        .registry()
        .relayed(&a.jid)
        .expect("device")
        .into_iter()
        .filter(|v| v.from == group)
        .map(|v| v.encs)
        .collect();
    assert_eq!(encs, [vec!["pkmsg", "skmsg"], vec!["skmsg"]]);

    // Refusals.
    for (body, code) in [
        (json!({"from": "12ab", "to": PHONE_A, "text": "x"}), 400),
        (json!({"from": CONTACT, "to": "1@lid", "text": "x"}), 404),
        (json!({"from": CONTACT, "to": CONTACT, "text": "x"}), 400),
        (json!({"from": OTHER, "to": group, "text": "x"}), 403),
        (
            json!({"from": CONTACT, "to": "120363999@g.us", "text": "x"}),
            404,
        ),
    ] {
        let (status, answer) = control(&sim, "POST", "/send", body.clone()).await;
        assert_eq!(status, code, "{body} → {answer}");
        assert!(answer["error"].is_string());
    }
    let (status, _) = control(&sim, "GET", "/inbox?jid=1@lid", json!({})).await;
    assert_eq!(status, 404);
    shut_down(sim, token, vec![]).await;
}

#[tokio::test]
async fn a_companion_and_a_contact_exchange_receipts_and_recover_with_retries() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let (mut io, _) = online(&sim, &a).await;
    let keys = keys(&a.companion);
    let mut session = SessionRecord::new();
    let contact = Jid::new(CONTACT, DEFAULT_USER_SERVER);

    // The contact's pkmsg reaches the companion, which decrypts it.
    let (status, sent) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": CONTACT, "to": PHONE_A, "text": "hello companion"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let first = sent["id"].as_str().expect("id").to_owned();
    let got = expect_stanza(&mut io, "message").await;
    assert_eq!(got.attr_jid("from"), Some(&contact));
    assert_eq!(attr(&got, "id"), Some(first.clone()));
    let message = open(&keys, &mut session, &got);
    assert_eq!(message.conversation.as_deref(), Some("hello companion"));

    // The reply (a msg) is decrypted by the contact's phone, which sends a delivery receipt.
    io.write(&direct("R1", contact.clone(), seal(&mut session, "reply")))
        .await
        .expect("send");
    let receipt = expect_stanza(&mut io, "receipt").await;
    assert_eq!(receipt.attr_jid("from"), Some(&contact));
    assert_eq!(attr(&receipt, "id").as_deref(), Some("R1"));
    assert_eq!(attr(&receipt, "type"), None, "a delivery receipt");
    let messages = inbox(&sim, CONTACT).await["messages"].clone();
    assert_eq!(messages[0]["text"], "reply");
    assert_eq!(messages[0]["from"], a.jid.to_string());

    // Garbage gets a retry receipt with fresh keys; a new session from them succeeds.
    let garbage = Node::new("enc")
        .attr("v", "2")
        .attr("type", "msg")
        .bytes(vec![0x33, 1, 2, 3]);
    io.write(&direct("R2", contact.clone(), garbage))
        .await
        .expect("send");
    let retry = expect_stanza(&mut io, "receipt").await;
    assert_eq!(attr(&retry, "type").as_deref(), Some("retry"));
    assert_eq!(attr(&retry, "id").as_deref(), Some("R2"));
    let count = retry.child("retry").and_then(|r| attr(r, "count"));
    assert_eq!(count.as_deref(), Some("1"));
    let bytes = |n: Option<&Node>| n.and_then(Node::content_bytes).expect("bytes").to_vec();
    let k = retry.child("keys").expect("keys");
    let key = |b: Vec<u8>| PublicKey::from_bytes(b.try_into().expect("32 bytes"));
    let id3 = |b: Vec<u8>| u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let one_time = k.child("key").expect("key");
    let skey = k.child("skey").expect("skey");
    let bundle = PreKeyBundle {
        registration_id: u32::from_be_bytes(
            bytes(retry.child("registration")).try_into().expect("4"),
        ),
        identity_key: key(bytes(k.child("identity"))),
        signed_pre_key_id: id3(bytes(skey.child("id"))),
        signed_pre_key: key(bytes(skey.child("value"))),
        signed_pre_key_signature: bytes(skey.child("signature")).try_into().expect("64"),
        pre_key: Some((
            id3(bytes(one_time.child("id"))),
            key(bytes(one_time.child("value"))),
        )),
    };
    let mut fresh = SessionRecord::new();
    fresh
        .process_bundle(&keys.identity, &bundle, &mut rand::thread_rng())
        .expect("bundle");
    let resend = Node::new("message")
        .attr("id", "R2")
        .attr("type", "text")
        .jid_attr("to", contact.clone())
        .children(vec![seal(&mut fresh, "resent").attr("count", "1")]);
    io.write(&resend).await.expect("resend");
    let receipt = expect_stanza(&mut io, "receipt").await;
    assert_eq!(attr(&receipt, "id").as_deref(), Some("R2"));
    assert_eq!(attr(&receipt, "type"), None);
    let messages = inbox(&sim, CONTACT).await["messages"].clone();
    assert_eq!(messages[1]["kind"], "undecryptable");
    assert!(messages[1]["error"].is_string());
    assert_eq!(messages[2]["text"], "resent");

    // A retry receipt for the contact's own message gets a resend for this device.
    io.write(
        &Node::new("receipt")
            .attr("id", first.clone())
            .attr("type", "retry")
            .jid_attr("to", contact.clone())
            .children(vec![Node::new("retry")
                .attr("count", "1")
                .attr("id", first.clone())
                .attr("v", "1")]),
    )
    .await
    .expect("retry");
    let again = expect_stanza(&mut io, "message").await;
    assert_eq!(attr(&again, "id"), Some(first.clone()));
    let enc = again.child("enc").expect("enc");
    assert_eq!(attr(enc, "count").as_deref(), Some("1"));
    let message = open(&keys, &mut fresh, &again);
    assert_eq!(message.conversation.as_deref(), Some("hello companion"));

    // A stanza that never decrypts gets MAX_RETRIES retry receipts, then only acks.
    for _ in 0..=MAX_RETRIES {
        let garbage = Node::new("enc")
            .attr("v", "2")
            .attr("type", "msg")
            .bytes(vec![0x33, 9]);
        io.write(&direct("R3", contact.clone(), garbage))
            .await
            .expect("send");
        // The phone has answered (a retry receipt, or nothing) before the server acks it.
        loop {
            let node = expect_node(&mut io, "server ack").await;
            if node.tag == "ack" {
                break;
            }
            assert_eq!(attr(&node, "type").as_deref(), Some("retry"), "{node}");
        }
    }
    let retries: Vec<_> = sim
        .shared
        .registry()
        .relayed(&a.jid)
        .expect("device")
        .into_iter()
        .filter(|v| v.id == "R3" && v.r#type.as_deref() == Some("retry"))
        .collect();
    assert_eq!(retries.len(), MAX_RETRIES as usize);
    let failures = inbox(&sim, CONTACT).await["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["id"] == "R3" && m["kind"] == "undecryptable")
        .count();
    assert_eq!(failures, MAX_RETRIES as usize + 1);
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn group_texts_flow_between_a_contact_and_a_companion_with_sender_keys() {
    let (sim, token) = start(SimConfig::default()).await;
    let a = member(&sim, PHONE_A).await;
    let (mut io, _) = online(&sim, &a).await;
    let keys = keys(&a.companion);
    let mut session = SessionRecord::new();
    // The contact exists once it has written.
    let (status, _) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": CONTACT, "to": PHONE_A, "text": "hi"}),
    )
    .await;
    assert_eq!(status, 200);
    let hi = open(
        &keys,
        &mut session,
        &expect_stanza(&mut io, "message").await,
    );
    assert_eq!(hi.conversation.as_deref(), Some("hi"));
    let (status, group) = control(
        &sim,
        "POST",
        "/group",
        json!({"subject": "g", "participants": [PHONE_A, CONTACT]}),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    let group = group["jid"].as_str().expect("jid").to_owned();

    // The contact's SKDM (pairwise) and skmsg reach the companion.
    let (status, body) = control(
        &sim,
        "POST",
        "/send",
        json!({"from": CONTACT, "to": group, "text": "to the group"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = expect_stanza(&mut io, "message").await;
    assert_eq!(attr(&got, "from").as_deref(), Some(group.as_str()));
    let participant = got.attr_jid("participant").cloned().expect("participant");
    assert_eq!(participant.device, 0);
    let skdm = open(&keys, &mut session, &got);
    let skdm = skdm
        .sender_key_distribution()
        .and_then(|d| d.axolotl_sender_key_distribution_message.as_deref())
        .expect("an SKDM");
    let mut theirs = SenderKeyRecord::new();
    theirs.process_distribution(&SenderKeyDistributionMessage::parse(skdm).expect("skdm"));
    let skmsg = got
        .children_by_tag("enc")
        .find(|e| attr(e, "type").as_deref() == Some("skmsg"))
        .and_then(Node::content_bytes)
        .expect("skmsg");
    let padded = theirs
        .decrypt(&SenderKeyMessage::parse(skmsg).expect("parse"))
        .expect("decrypt");
    let text = WaMessage::decode(unpad(&padded).expect("padding")).expect("message");
    assert_eq!(text.conversation.as_deref(), Some("to the group"));

    // The companion answers with its own sender key: SKDM to the contact's phone, then skmsg.
    let mut own = SenderKeyRecord::create_own(&mut rand::thread_rng());
    let distribution = WaMessage {
        sender_key_distribution_message: Some(SenderKeyDistribution {
            group_id: Some(group.clone()),
            axolotl_sender_key_distribution_message: Some(
                own.distribution_message()
                    .expect("skdm")
                    .as_bytes()
                    .to_vec(),
            ),
        }),
        ..WaMessage::default()
    }
    .encode_to_vec();
    let pairwise = session
        .encrypt(&pad(&distribution, &mut rand::thread_rng()))
        .expect("encrypt");
    let payload = WaMessage::from_text("group reply").encode_to_vec();
    let skmsg = own
        .encrypt(
            &pad(&payload, &mut rand::thread_rng()),
            &mut rand::thread_rng(),
        )
        .expect("skmsg");
    let stanza = Node::new("message")
        .attr("id", "G1")
        .attr("type", "text")
        .attr("to", group.clone())
        .attr("addressing_mode", "lid")
        .children(vec![
            Node::new("participants").children(vec![Node::new("to")
                .jid_attr("jid", participant.clone())
                .children(vec![Node::new("enc")
                    .attr("v", "2")
                    .attr("type", pairwise.enc_type())
                    .bytes(pairwise.as_bytes().to_vec())])]),
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .bytes(skmsg.as_bytes().to_vec()),
        ]);
    io.write(&stanza).await.expect("send");
    // The contact's phone confirms with a group receipt naming itself.
    let receipt = loop {
        let node = expect_stanza(&mut io, "receipt").await;
        if node.attr_jid("participant") == Some(&participant) {
            break node;
        }
    };
    assert_eq!(attr(&receipt, "from").as_deref(), Some(group.as_str()));
    assert_eq!(attr(&receipt, "type"), None);
    let messages = inbox(&sim, CONTACT).await["messages"].clone();
    let row = &messages[0];
    assert_eq!(row["text"], "group reply");
    assert_eq!(row["chat"], group.as_str());
    assert_eq!(row["from"], a.lid.to_string());
    shut_down(sim, token, vec![io]).await;
}
