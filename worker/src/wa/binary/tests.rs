//! Golden vectors from wa-protocol.md §11.1.2, §11.1.4, §11.2.1 and §11.2.3, encoder choices,
//! hostile input, and round-trip properties.

use std::collections::HashSet;
use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use proptest::prelude::*;

use super::decode::Cursor;
use super::jid::{
    DEFAULT_USER_SERVER, GROUP_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER,
    INTEROP_SERVER, MESSENGER_SERVER, NEWSLETTER_SERVER,
};
use super::token::{self, Token, DOUBLE_BYTE, SINGLE_BYTE};
use super::*;

// §11.2.2: the `<device-identity>` payloads carried by the pairing vectors.
const ADV_SIGNED_DEVICE_IDENTITY_HMAC: &str = "0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800";
const REPLY_ADV_SIGNED_DEVICE_IDENTITY: &str = "0a100887ad4b1080e2cfaa061801200028001a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c22403898acbd75b30d41fdd30acedca5afe7ae338bd12f3495e78269c50c1e2c72543b10b22fbca207518ea3a876222da73fb4273486eeaaf04e790fe91dcce7c407";

fn bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("test vectors are valid hex")
}

/// Decodes `frame` to exactly `expected`, and encodes `expected` back to exactly `frame`.
fn assert_golden(frame_hex: &str, expected: &Node) -> Node {
    let frame = bytes(frame_hex);
    let decoded = decode(&frame).expect("golden frame decodes");
    assert_eq!(&decoded, expected, "decoded {decoded}");
    assert_eq!(
        hex::encode(encode(expected)),
        frame_hex,
        "re-encoding {expected}"
    );
    decoded
}

fn server() -> Jid {
    Jid::server_jid()
}

fn pn(user: &str, device: u16) -> Jid {
    Jid::device(user, DEFAULT_USER_SERVER, device)
}

fn lid(user: &str, device: u16) -> Jid {
    Jid::device(user, HIDDEN_USER_SERVER, device)
}

fn newsletter() -> Jid {
    Jid::new("120363000000000000", NEWSLETTER_SERVER)
}

// ---- golden vectors: §11.1.2 ----

#[test]
fn decodes_the_real_success_node_without_a_flags_byte() {
    let raw = bytes("f80f4c1aff0517520218905cee043dfc0366726376f7012aff88100000000000001f4becb43cff051752020041ece6fc2c643559623557784c2b6b35554b5148564936627546524751456a30475a413565767a3862365632786b64773d");
    let node = decode_node(&raw).expect("real success decodes");
    assert_eq!(node.tag, "success");
    assert_eq!(node.attr_str("t").as_deref(), Some("1752021890"));
    assert_eq!(node.attr_str("props").as_deref(), Some("27"));
    assert_eq!(node.attr_str("location").as_deref(), Some("frc"));
    assert_eq!(node.attr_jid("lid"), Some(&lid("100000000000001", 42)));
    assert_eq!(
        node.attr_str("lid").as_deref(),
        Some("100000000000001:42@lid")
    );
    assert_eq!(node.attr_str("abprops").as_deref(), Some("10"));
    assert_eq!(node.attr_str("creation").as_deref(), Some("1752020041"));
    assert_eq!(
        node.attr_str("companion_enc_static").as_deref(),
        Some("d5Yb5WxL+k5UKQHVI6buFRGQEj0GZA5evz8b6V2xkdw=")
    );
    assert_eq!(node.content, Content::None);
}

#[test]
fn encodes_the_real_success_node_byte_for_byte() {
    let raw = "f80f4c1aff0517520218905cee043dfc0366726376f7012aff88100000000000001f4becb43cff051752020041ece6fc2c643559623557784c2b6b35554b5148564936627546524751456a30475a413565767a3862365632786b64773d";
    let node = Node::new("success")
        .attr("t", "1752021890")
        .attr("props", "27")
        .attr("location", "frc")
        .jid_attr("lid", lid("100000000000001", 42))
        .attr("abprops", "10")
        .attr("creation", "1752020041")
        .attr(
            "companion_enc_static",
            "d5Yb5WxL+k5UKQHVI6buFRGQEj0GZA5evz8b6V2xkdw=",
        );
    let mut out = Vec::new();
    encode_node(&node, &mut out);
    assert_eq!(hex::encode(&out), raw);
    assert_eq!(decode_node(&out).expect("decodes"), node);
}

// ---- golden vectors: §11.2.1 ----

#[test]
fn round_trips_the_mock_servers_first_frame() {
    let node = Node::new("success")
        .attr("t", "1700000000")
        .attr("props", "27")
        .jid_attr("lid", lid("100000000000001", 2));
    let decoded = assert_golden(
        "00f8074c1aff0517000000005cee0476f70102ff88100000000000001f",
        &node,
    );
    assert_eq!(
        decoded.attr_str("lid").as_deref(),
        Some("100000000000001:2@lid")
    );
}

#[test]
fn round_trips_the_clients_first_frame() {
    let node = Node::new("iq")
        .attr("id", "1.2-1")
        .attr("xmlns", "w:p")
        .attr("type", "get")
        .jid_attr("to", server());
    let decoded = assert_golden("00f8091908ff831b2a1f1657042911fa0003", &node);
    assert_eq!(decoded.attr_jid("to"), Some(&server()));
}

// ---- golden vectors: §11.2.3 ----

#[test]
fn round_trips_pair_device_iq_with_binary_refs() {
    let node = Node::new("iq")
        .jid_attr("from", server())
        .attr("type", "set")
        .attr("id", "1001")
        .attr("xmlns", "md")
        .children(vec![Node::new("pair-device").children(vec![
            Node::new("ref").bytes(b"2@ref-number-1".to_vec()),
            Node::new("ref").bytes(b"2@ref-number-2".to_vec()),
        ])]);
    let decoded = assert_golden("00f80a1906fa0003045a08ff02100116fc026d64f801f802edeef802f802ed50fc0e32407265662d6e756d6265722d31f802ed50fc0e32407265662d6e756d6265722d32", &node);
    assert_eq!(decoded.attr_jid("from"), Some(&server()));
    let refs: Vec<_> = decoded
        .child("pair-device")
        .expect("pair-device child")
        .children_by_tag("ref")
        .map(|r| r.content_bytes().expect("ref bytes"))
        .collect();
    assert_eq!(refs, [&b"2@ref-number-1"[..], &b"2@ref-number-2"[..]]);
}

#[test]
fn round_trips_pair_device_ack() {
    let node = Node::new("iq")
        .jid_attr("to", server())
        .attr("id", "1001")
        .attr("type", "result");
    assert_golden("00f8071911fa000308ff0210010414", &node);
}

#[test]
fn round_trips_pair_success_iq_with_ad_jids() {
    let node = Node::new("iq")
        .jid_attr("from", server())
        .attr("type", "set")
        .attr("id", "1002")
        .attr("xmlns", "md")
        .attr("t", "1700000000")
        .children(vec![Node::new("pair-success").children(vec![
            Node::new("device-identity").bytes(bytes(ADV_SIGNED_DEVICE_IDENTITY_HMAC)),
            Node::new("platform").attr("name", "android"),
            Node::new("device")
                .jid_attr("jid", pn("15551234567", 2))
                .jid_attr("lid", lid("100000000000001", 2)),
        ])]);
    let decoded = assert_golden("00f80c1906fa0003045a08ff02100216fc026d641aff051700000000f801f802fc0c706169722d73756363657373f803f802e6fc9c0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800f8034a89e4f8053b0cf70002ff8615551234567f76f70102ff88100000000000001f", &node);
    let success = decoded.child("pair-success").expect("pair-success child");
    let device = success.child("device").expect("device child");
    assert_eq!(
        device.attr_str("jid").as_deref(),
        Some("15551234567:2@s.whatsapp.net")
    );
    assert_eq!(
        device.attr_str("lid").as_deref(),
        Some("100000000000001:2@lid")
    );
    assert_eq!(
        success
            .child("platform")
            .and_then(|p| p.attr_str("name"))
            .as_deref(),
        Some("android")
    );
    assert_eq!(
        success
            .child("device-identity")
            .and_then(Node::content_bytes),
        Some(&bytes(ADV_SIGNED_DEVICE_IDENTITY_HMAC)[..])
    );
}

#[test]
fn round_trips_pair_device_sign_reply() {
    let node = Node::new("iq")
        .jid_attr("to", server())
        .attr("type", "result")
        .attr("id", "1002")
        .children(vec![Node::new("pair-device-sign").children(vec![
            Node::new("device-identity")
                .attr("key-index", "1")
                .bytes(bytes(REPLY_ADV_SIGNED_DEVICE_IDENTITY)),
        ])]);
    assert_golden("00f8081911fa0003041408ff021002f801f802fc10706169722d6465766963652d7369676ef801f804e65055fc960a100887ad4b1080e2cfaa061801200028001a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c22403898acbd75b30d41fdd30acedca5afe7ae338bd12f3495e78269c50c1e2c72543b10b22fbca207518ea3a876222da73fb4273486eeaaf04e790fe91dcce7c407", &node);
}

#[test]
fn round_trips_stream_error_515() {
    let node = Node::new("stream:error").attr("code", "515");
    assert_golden("00f8039d70ff82515f", &node);
}

#[test]
fn round_trips_stream_error_401_device_removed() {
    let node = Node::new("stream:error")
        .attr("code", "401")
        .children(vec![Node::new("conflict").attr("type", "device_removed")]);
    let decoded = assert_golden(
        "00f8049d708df801f803ec0e04fc0e6465766963655f72656d6f766564",
        &node,
    );
    let conflict = decoded.child("conflict").expect("conflict child");
    assert_eq!(conflict.attr_str("type").as_deref(), Some("device_removed"));
}

#[test]
fn round_trips_stream_error_conflict_replaced() {
    let node =
        Node::new("stream:error").children(vec![Node::new("conflict").attr("type", "replaced")]);
    assert_golden("00f8029df801f803ec0e04ec11", &node);
}

#[test]
fn round_trips_xmlstreamend() {
    assert_golden("00f80102", &Node::new("xmlstreamend"));
}

#[test]
fn round_trips_failure_401() {
    let node = Node::new("failure")
        .attr("reason", "401")
        .attr("location", "frc");
    assert_golden("00f805ee3cec2e8d3dfc03667263", &node);
}

#[test]
fn round_trips_ping_result() {
    let node = Node::new("iq")
        .jid_attr("from", server())
        .attr("id", "1.2-1")
        .attr("type", "result")
        .attr("t", "1700000030");
    assert_golden("00f8091906fa000308ff831b2a1f04141aff051700000030", &node);
}

#[test]
fn round_trips_active_iq() {
    let node = Node::new("iq")
        .attr("id", "1.2-2")
        .attr("xmlns", "passive")
        .attr("type", "set")
        .jid_attr("to", server())
        .children(vec![Node::new("active")]);
    assert_golden("00f80a1908ff831b2a2f16ec18045a11fa0003f801f801ec01", &node);
}

#[test]
fn round_trips_prekey_count_iq_and_result() {
    let request = Node::new("iq")
        .attr("id", "1.2-3")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .jid_attr("to", server())
        .children(vec![Node::new("count")]);
    assert_golden("00f80a1908ff831b2a3f16cb042911fa0003f801f80141", &request);
    let result = Node::new("iq")
        .jid_attr("from", server())
        .attr("id", "1.2-3")
        .attr("type", "result")
        .children(vec![Node::new("count").attr("value", "0")]);
    let decoded = assert_golden("00f8081906fa000308ff831b2a3f0414f801f803416c2d", &result);
    let count = decoded.child("count").and_then(|c| c.attr_str("value"));
    assert_eq!(count.as_deref(), Some("0"));
}

#[test]
fn round_trips_newsletter_message_with_plaintext_bytes() {
    let node = Node::new("message")
        .jid_attr("from", newsletter())
        .attr("id", "ABCDEF0123456789")
        .attr("server_id", "100")
        .attr("t", "1700000100")
        .attr("type", "text")
        .children(vec![Node::new("plaintext").bytes(bytes("0a0568656c6c6f"))]);
    let decoded = assert_golden("00f80c1306faff09120363000000000000fc0a6e6577736c657474657208fb08abcdef0123456789fc097365727665725f6964ec331aff0517000001000438f801f802fc09706c61696e74657874fc070a0568656c6c6f", &node);
    assert_eq!(
        decoded.attr_str("from").as_deref(),
        Some("120363000000000000@newsletter")
    );
}

#[test]
fn round_trips_ack_message() {
    let node = Node::new("ack")
        .attr("class", "message")
        .attr("id", "ABCDEF0123456789")
        .jid_attr("to", newsletter());
    assert_golden(
        "00f8071b151308fb08abcdef012345678911faff09120363000000000000fc0a6e6577736c6574746572",
        &node,
    );
}

#[test]
fn round_trips_delivery_receipt() {
    let node = Node::new("receipt")
        .attr("id", "3EB0ABCDEF")
        .jid_attr("to", pn("15550001111", 0));
    let decoded = assert_golden("00f8050708fb053eb0abcdef11faff8615550001111f03", &node);
    assert_eq!(
        decoded.attr_str("to").as_deref(),
        Some("15550001111@s.whatsapp.net")
    );
}

// ---- small decoder vectors: §11.1.4 ----

/// `<t>` (token 0x1A) holding the value `value_hex`.
fn decode_content(value_hex: &str) -> Result<Content, DecodeError> {
    decode_node(&bytes(&format!("f8021a{value_hex}"))).map(|n| n.content)
}

#[test]
fn unpacks_hex_8() {
    let content = decode_content("fb03abcdef").expect("hex decodes");
    assert_eq!(content, Content::Str("ABCDEF".into()));
}

#[test]
fn unpacks_nibble_8_with_odd_length() {
    let content = decode_content("ff82123f").expect("nibble decodes");
    assert_eq!(content, Content::Str("123".into()));
}

#[test]
fn unpacks_an_empty_nibble_string() {
    assert_eq!(
        decode_content("ff00").expect("decodes"),
        Content::Str(String::new())
    );
}

#[test]
fn rejects_nibbles_12_13_and_14() {
    for (body, nibble) in [("01c0", 12), ("01d0", 13), ("01e0", 14)] {
        let err = decode_content(&format!("ff{body}")).expect_err("invalid nibble");
        assert!(
            matches!(err, DecodeError::InvalidNibble(n) if n == nibble),
            "{err}"
        );
    }
}

#[test]
fn rejects_a_filler_nibble_before_the_end() {
    let err = decode_content("ff02f123").expect_err("filler in the middle");
    assert!(matches!(err, DecodeError::InvalidNibble(15)), "{err}");
}

#[test]
fn rejects_an_odd_packed_string_without_bytes() {
    let err = decode_content("ff80").expect_err("odd and empty");
    assert!(matches!(err, DecodeError::InvalidPackedLength), "{err}");
}

#[test]
fn reads_20_bit_lengths() {
    for (len_hex, len) in [
        ("000000", 0),
        ("000100", 256),
        ("010000", 65536),
        ("0fffff", 1_048_575),
    ] {
        assert_eq!(Cursor::new(&bytes(len_hex)).u20().expect("3 bytes"), len);
    }
    assert_eq!(
        Cursor::new(&bytes("f00001")).u20().expect("3 bytes"),
        1,
        "top nibble ignored"
    );
    let mut node = bytes("f8021afd000100");
    node.extend(std::iter::repeat_n(7, 256));
    assert_eq!(
        decode_node(&node).expect("binary_20 decodes").content,
        Content::Bytes(vec![7; 256])
    );
}

#[test]
fn reads_a_node_followed_by_three_bytes_and_counts_them() {
    // Baileys reads the first node and leaves the rest; whatsmeow and whatsapp-rust drop the
    // frame, and with it the stanza's ack. The node is kept, the bytes counted.
    let node = Node::new("notification")
        .jid_attr("from", server())
        .attr("id", "x1")
        .attr("type", "server_sync");
    let mut frame = encode(&node);
    frame.extend_from_slice(&[1, 2, 3]);
    let decoded = decode_frame(&frame).expect("a node with trailing bytes decodes");
    assert_eq!(
        decoded,
        Decoded {
            node: node.clone(),
            trailing: 3
        }
    );
    assert_eq!(decode(&frame).expect("decodes"), node);
    assert_eq!(decode_node(&frame[1..]).expect("decodes"), node);
    assert_eq!(decode_frame(&encode(&node)).expect("decodes").trailing, 0);
}

// ---- token tables ----

#[test]
fn token_tables_have_the_documented_shape_and_no_duplicates() {
    assert_eq!(SINGLE_BYTE.len(), 236);
    assert_eq!(SINGLE_BYTE[0], "");
    assert_eq!(DOUBLE_BYTE.len(), 4);
    assert!(DOUBLE_BYTE.iter().all(|d| d.len() == 256));
    let all: Vec<&str> = SINGLE_BYTE[1..]
        .iter()
        .chain(DOUBLE_BYTE.iter().flatten())
        .copied()
        .collect();
    assert_eq!(all.len(), 235 + 4 * 256);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "duplicate token"
    );
    assert!(all.iter().all(|t| !t.is_empty()));
    assert_eq!(token::DICT_VERSION, 3);
}

#[test]
fn frequent_tokens_map_to_the_documented_bytes() {
    let singles = [
        ("iq", 0x19),
        ("id", 0x08),
        ("type", 0x04),
        ("xmlns", 0x16),
        ("to", 0x11),
        ("from", 0x06),
        ("s.whatsapp.net", 0x03),
        ("get", 0x29),
        ("set", 0x5A),
        ("result", 0x14),
        ("w:p", 0x57),
        ("ping", 0x56),
        ("success", 0x4C),
        ("t", 0x1A),
        ("lid", 0x76),
        ("stream:error", 0x9D),
        ("code", 0x70),
        ("xmlstreamend", 0x02),
        ("ack", 0x1B),
        ("class", 0x15),
        ("message", 0x13),
        ("receipt", 0x07),
        ("notification", 0x09),
        ("call", 0x64),
        ("participant", 0x05),
        ("recipient", 0x94),
        ("device", 0x3B),
        ("jid", 0x0C),
        ("platform", 0x4A),
        ("device-identity", 0xE6),
        ("key-index", 0x50),
        ("count", 0x41),
        ("value", 0x6C),
        ("encrypt", 0xCB),
        ("offline", 0x12),
        ("offline_preview", 0x4E),
        ("edge_routing", 0x28),
        ("routing_info", 0x27),
        ("urn:xmpp:ping", 0x2B),
        ("true", 0x9B),
        ("0", 0x2D),
        ("1", 0x55),
    ];
    for (s, byte) in singles {
        assert_eq!(token::index_of(s), Some(Token::Single(byte)), "{s}");
        assert_eq!(token::single(byte), Some(s));
    }
    let doubles = [
        ("active", 0, 0x01),
        ("passive", 0, 0x18),
        ("conflict", 0, 0x0E),
        ("replaced", 0, 0x11),
        ("false", 0, 0x0F),
        ("retry", 0, 0x0B),
        ("skey", 0, 0x2D),
        ("sender", 0, 0x25),
        ("ref", 1, 0x50),
        ("pair-device", 1, 0xEE),
        ("peer_msg", 1, 0x1B),
        ("dirty", 1, 0x01),
        ("biz", 2, 0x54),
        ("failure", 2, 0x3C),
    ];
    for (s, dict, index) in doubles {
        assert_eq!(token::index_of(s), Some(Token::Double(dict, index)), "{s}");
        assert_eq!(token::double(dict, index), Some(s));
    }
    for s in [
        "md",
        "pair-success",
        "pair-device-sign",
        "device_removed",
        "link_code_companion_reg",
        "unified_session",
        "digest",
        "plaintext",
        "newsletter",
        "",
    ] {
        assert_eq!(token::index_of(s), None, "{s:?} is not a token");
    }
}

// ---- encoder choices ----

#[test]
fn encodes_an_empty_string_as_an_empty_binary_8() {
    // Baileys (since 7.0.0) and whatsapp-rust: FC 00; whatsmeow: FF 00.
    let node = Node::new("t").text("");
    assert_eq!(hex::encode(encode(&node)), "00f8021afc00");
}

#[test]
fn encodes_a_string_with_an_at_sign_as_raw_bytes() {
    let node = Node::new("t").attr("to", "123@s.whatsapp.net");
    let frame = encode(&node);
    assert_eq!(&frame[..6], &[0x00, 0xF8, 0x03, 0x1A, 0x11, 0xFC]);
    assert_eq!(decode(&frame).expect("decodes"), node);
}

#[test]
fn writes_empty_attribute_values() {
    // Baileys 7.0.0-rc.9's encoder on {tag:"receipt", attrs:{id:"ABC1", type:""}}: it writes
    // "" as 00; Baileys' current encoder and whatsapp-rust write FC 00, as wafleet does.
    // whatsmeow leaves such an attribute out.
    const BAILEYS_RC9: &str = "00f8050708fb02abc10400";
    let node = Node::new("receipt").attr("id", "ABC1").attr("type", "");
    let from_baileys = decode(&bytes(BAILEYS_RC9)).expect("decodes");
    assert_eq!(from_baileys, node);
    assert_eq!(hex::encode(encode(&node)), "00f8050708fb02abc104fc00");
    assert_eq!(decode(&encode(&node)).expect("decodes"), node);
    let iq = Node::new("iq").attr("id", "").attr("type", "get");
    assert_eq!(hex::encode(encode(&iq)), "00f8051908fc000429");
}

/// Frames Baileys 7.0.0-rc.9's own encoder wrote (tests/interop's copy, run once) for
/// `{tag:"message", attrs:{to:<jid>, id:"ABC1"}}`: wafleet writes the same bytes for the typed
/// JID, and reads them back to it.
#[test]
fn encodes_jids_byte_for_byte_as_baileys() {
    let message = |jid: Jid| Node::new("message").jid_attr("to", jid).attr("id", "ABC1");
    let cases = [
        (
            Jid::new("100012345678901", MESSENGER_SERVER),
            "00f8051311faff88100012345678901fcc08fb02abc1",
        ),
        (
            Jid::new("5551234", INTEROP_SERVER),
            "00f8051311faff845551234ffc07696e7465726f7008fb02abc1",
        ),
        (
            Jid::new("15551234567", HOSTED_SERVER),
            "00f8051311faff8615551234567ffc06686f7374656408fb02abc1",
        ),
        (
            Jid::new("100000000000001", HOSTED_LID_SERVER),
            "00f8051311faff88100000000000001ffc0a686f737465642e6c696408fb02abc1",
        ),
        (
            Jid::device("15551234567", HOSTED_SERVER, 3),
            "00f8051311f78003ff8615551234567f08fb02abc1",
        ),
        (
            pn("15551234567", 0),
            "00f8051311faff8615551234567f0308fb02abc1",
        ),
    ];
    for (jid, baileys) in cases {
        let node = message(jid.clone());
        assert_eq!(hex::encode(encode(&node)), baileys, "{jid}");
        assert_eq!(decode(&bytes(baileys)).expect("decodes"), node, "{jid}");
    }
}

#[test]
fn reads_an_explicit_device_0_and_writes_it_back_without_one() {
    // Baileys encodes the string "15551234567:0@s.whatsapp.net" as AD_JID with device 0.
    // Decoded, it is device 0 in all three clients (Baileys renders it without ":0"), and all
    // three echo it (an ack's `to`) as a JID_PAIR; so does wafleet, whose JIDs are typed.
    const BAILEYS_DEVICE_0: &str = "00f8051311f70000ff8615551234567f08fb02abc1";
    let node = decode(&bytes(BAILEYS_DEVICE_0)).expect("decodes");
    assert_eq!(node.attr_jid("to"), Some(&pn("15551234567", 0)));
    assert_eq!(
        hex::encode(encode(&node)),
        "00f8051311faff8615551234567f0308fb02abc1"
    );
    assert_eq!(
        "15551234567:0@s.whatsapp.net".parse::<Jid>(),
        Ok(pn("15551234567", 0))
    );
}

#[test]
fn keeps_attribute_values_that_are_not_utf8_as_bytes() {
    // <notification id=[ff fe 41] type="server_sync"/>: whatsmeow keeps the bytes, and so the
    // ack copies them exactly; tags and keys get U+FFFD instead.
    let frame = bytes("00f8050908fc03fffe4104eccb");
    let node = decode(&frame).expect("decodes");
    assert_eq!(
        node.get_attr("id"),
        Some(&AttrValue::Bytes(vec![0xFF, 0xFE, 0x41]))
    );
    assert_eq!(node.attr_str("id").as_deref(), Some("\u{FFFD}\u{FFFD}A"));
    assert_eq!(node.attr_str("type").as_deref(), Some("server_sync"));
    assert_eq!(encode(&node), frame, "written back byte for byte");
    let odd_tag = decode_node(&bytes("f801fc01ff")).expect("decodes");
    assert_eq!(odd_tag.tag, "\u{FFFD}");
    let odd_key = decode_node(&bytes("f8031afc02c3280c")).expect("decodes");
    assert_eq!(odd_key.attr_str("\u{FFFD}(").as_deref(), Some("jid"));
    let odd_content = decode_node(&bytes("f8021afc02c328")).expect("decodes");
    assert_eq!(odd_content.content, Content::Bytes(vec![0xC3, 0x28]));
}

#[test]
fn prefers_nibbles_over_hex_and_hex_over_raw() {
    let cases = [
        ("0123456789-.", "ff06"),
        ("0A", "fb01"),
        ("abc1", "fc04"),
        ("ABCDEFG", "fc07"),
    ];
    for (text, prefix) in cases {
        let frame = hex::encode(encode(&Node::new("t").text(text)));
        assert!(
            frame.starts_with(&format!("00f8021a{prefix}")),
            "{text}: {frame}"
        );
    }
    let long = "1".repeat(127);
    assert!(hex::encode(encode(&Node::new("t").text(long))).starts_with("00f8021affc0"));
    let too_long = "1".repeat(128);
    assert!(hex::encode(encode(&Node::new("t").text(too_long))).starts_with("00f8021afc80"));
}

#[test]
fn picks_the_smallest_binary_length_form() {
    for (len, prefix) in [
        (0, "fc00"),
        (255, "fcff"),
        (256, "fd000100"),
        ((1 << 20) - 1, "fd0fffff"),
        (1 << 20, "fe00100000"),
    ] {
        let node = Node::new("t").bytes(vec![0xAB; len]);
        let frame = encode(&node);
        assert!(
            hex::encode(&frame).starts_with(&format!("00f8021a{prefix}")),
            "{len}"
        );
        assert_eq!(decode(&frame).expect("decodes"), node, "{len}");
    }
}

#[test]
fn uses_list_16_for_long_lists() {
    let node = Node::new("t").children(vec![Node::new("t"); 256]);
    let frame = encode(&node);
    assert_eq!(hex::encode(&frame[..7]), "00f8021af90100");
    assert_eq!(decode(&frame).expect("decodes"), node);

    let mut wide = Node::new("t");
    for i in 0..128 {
        wide = wide.attr(format!("k{i}"), "v");
    }
    let frame = encode(&wide);
    assert_eq!(hex::encode(&frame[..4]), "00f90101", "1 + 2 × 128 items");
    assert_eq!(decode(&frame).expect("decodes"), wide);
}

#[test]
fn encodes_an_empty_child_list_as_list_empty() {
    let node = Node::new("t").children(Vec::new());
    assert_eq!(hex::encode(encode(&node)), "00f8021a00");
    assert_eq!(decode(&encode(&node)).expect("decodes"), node);
}

#[test]
fn chooses_the_jid_form_by_server() {
    let cases = [
        (server(), "fa0003"),
        (pn("1", 0), "fa5503"),
        (pn("1", 3), "f7000355"),
        (lid("1", 0), "fa5576"),
        (lid("1", 3), "f7010355"),
        (Jid::new("1", HOSTED_SERVER), "fa55fc06686f73746564"),
        (Jid::device("1", HOSTED_SERVER, 2), "f7800255"),
        (Jid::new("1", MESSENGER_SERVER), "fa55cc"),
        (Jid::new("1", INTEROP_SERVER), "fa55fc07696e7465726f70"),
        (Jid::device("1", HOSTED_LID_SERVER, 4), "f7810455"),
        (Jid::device("1", MESSENGER_SERVER, 0x0102), "f6550102cc"),
        (
            Jid {
                integrator: 0x0304,
                ..Jid::device("1", INTEROP_SERVER, 0x0102)
            },
            "f55501020304fc07696e7465726f70",
        ),
        (Jid::new("1", GROUP_SERVER), "fa551c"),
        (
            Jid {
                agent: 7,
                ..pn("1", 3)
            },
            "f7070355",
        ),
    ];
    for (jid, value_hex) in cases {
        let node = Node::new("t").jid_attr("jid", jid.clone());
        assert_eq!(
            hex::encode(encode(&node)),
            format!("00f8031a0c{value_hex}"),
            "{jid}"
        );
        assert_eq!(
            decode(&encode(&node)).expect("decodes").attr_jid("jid"),
            Some(&jid)
        );
    }
}

#[test]
fn keeps_an_unknown_ad_jid_domain_as_the_agent() {
    let node = decode_node(&bytes("f8031a0cf7070355")).expect("decodes");
    let jid = node.attr_jid("jid").expect("a jid");
    assert_eq!(
        jid,
        &Jid {
            agent: 7,
            ..pn("1", 3)
        }
    );
    assert_eq!(jid.to_string(), "1.7:3@s.whatsapp.net");
}

#[test]
fn decodes_a_jid_as_content_to_its_text() {
    let content = decode_content("f7010255").expect("decodes");
    assert_eq!(content, Content::Str("1:2@lid".into()));
}

#[test]
fn decodes_raw_content_as_bytes_and_raw_attributes_as_strings() {
    let node = decode_node(&bytes("f8031a0cfc026869")).expect("decodes");
    assert_eq!(node.get_attr("jid"), Some(&AttrValue::Str("hi".into())));
    assert_eq!(
        decode_content("fc026869").expect("decodes"),
        Content::Bytes(b"hi".to_vec())
    );
}

#[test]
fn accepts_the_other_clients_forms() {
    // BL/WR: "" as FC 00; a string JID written as JID_PAIR.
    assert_eq!(
        decode_content("fc00").expect("decodes"),
        Content::Bytes(Vec::new())
    );
    let node = decode_node(&bytes("f8031a0cfa5503")).expect("decodes");
    assert_eq!(node.attr_jid("jid"), Some(&pn("1", 0)));
    // 00 as a string is empty, and as content an empty list.
    let node = decode_node(&bytes("f8041a0c0000")).expect("decodes");
    assert_eq!(node.attr_str("jid").as_deref(), Some(""));
    assert_eq!(node.content, Content::Nodes(Vec::new()));
}

#[test]
fn keeps_the_last_value_of_a_repeated_attribute_in_the_first_position() {
    let node = decode_node(&bytes("f8071a0c55042d0c2d")).expect("decodes");
    assert_eq!(
        node.attrs,
        [
            ("jid".to_owned(), AttrValue::Str("0".into())),
            ("type".to_owned(), AttrValue::Str("0".into())),
        ]
    );
}

/// What the decoder makes of repeated keys: the first position, the last value.
fn first_position_last_value(pairs: &[(String, AttrValue)]) -> Vec<(String, AttrValue)> {
    let mut out: Vec<(String, AttrValue)> = Vec::new();
    for (key, value) in pairs {
        match out.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value.clone(),
            None => out.push((key.clone(), value.clone())),
        }
    }
    out
}

#[test]
fn repeated_attributes_keep_first_position_and_last_value_at_every_count() {
    // Up to 16 attributes are checked pairwise, more through a map: both sides of the switch.
    for count in [2, 15, 16, 17, 40, 300] {
        let attrs: Vec<(String, AttrValue)> = (0..count)
            .map(|i| (format!("k{}", i * 7 % 5), AttrValue::Str(i.to_string())))
            .chain([("last".to_owned(), AttrValue::Str("x".into()))])
            .collect();
        let node = Node {
            attrs: attrs.clone(),
            ..Node::new("iq")
        };
        let decoded = decode(&encode(&node)).expect("decodes");
        assert_eq!(decoded.attrs, first_position_last_value(&attrs), "{count}");
        assert_eq!(decoded.attrs.len(), 5.min(count) + 1, "{count}");
    }
    // No repeats: every attribute as it came, in order.
    let distinct: Vec<(String, AttrValue)> = (0..40)
        .map(|i| (format!("k{i}"), AttrValue::Str(i.to_string())))
        .collect();
    let node = Node {
        attrs: distinct.clone(),
        ..Node::new("iq")
    };
    assert_eq!(decode(&encode(&node)).expect("decodes").attrs, distinct);
}

// ---- hostile input ----

#[test]
fn refuses_nesting_deeper_than_the_cap() {
    fn nested(levels: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 1..levels {
            out.extend_from_slice(&[0xF8, 0x02, 0x1A, 0xF8, 0x01]);
        }
        out.extend_from_slice(&[0xF8, 0x01, 0x1A]);
        out
    }
    assert!(decode_node(&nested(MAX_DEPTH + 1)).is_ok());
    let err = decode_node(&nested(MAX_DEPTH + 2)).expect_err("too deep");
    assert!(matches!(err, DecodeError::TooDeep), "{err}");
    assert!(matches!(
        decode_node(&nested(100_000)),
        Err(DecodeError::TooDeep)
    ));
}

#[test]
fn refuses_jids_nested_in_jids_without_recursing() {
    let mut body = bytes("f8031a0c");
    body.extend(std::iter::repeat_n(0xFA, 1_000_000));
    let err = decode_node(&body).expect_err("a jid as a jid part");
    assert!(matches!(err, DecodeError::NotAString(0xFA)), "{err}");
    body[4..7].copy_from_slice(&[0xF7, 0x00, 0x01]);
    let err = decode_node(&body).expect_err("a jid as a jid user");
    assert!(matches!(err, DecodeError::NotAString(0xFA)), "{err}");
}

#[test]
fn checks_lengths_before_allocating() {
    for body in [
        "f8021afeffffffff",
        "f8021afd0fffff",
        "f8021af9ffff",
        "f9ffff1a",
        "f8021aff7f",
    ] {
        let err = decode_node(&bytes(body)).expect_err("truncated");
        assert!(matches!(err, DecodeError::UnexpectedEnd), "{body}: {err}");
    }
}

#[test]
fn names_what_is_wrong_with_malformed_nodes() {
    type Check = fn(&DecodeError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("", |e| matches!(e, DecodeError::UnexpectedEnd)),
        ("1a", |e| matches!(e, DecodeError::NotAList(0x1A))),
        ("00", |e| matches!(e, DecodeError::EmptyNode)),
        ("f80100", |e| matches!(e, DecodeError::EmptyTag)),
        ("f801f0", |e| matches!(e, DecodeError::InvalidTag(0xF0))),
        ("f801f801", |e| matches!(e, DecodeError::NotAString(0xF8))),
    ];
    for (body, expected) in cases {
        let err = decode_node(&bytes(body)).expect_err("malformed");
        assert!(expected(&err), "{body}: {err}");
    }
    let err = decode_node(&bytes("f8031afa5503f801")).expect_err("a jid as a key");
    assert!(matches!(err, DecodeError::NotAString(0xFA)), "{err}");
    assert!(matches!(decode(&[]), Err(DecodeError::UnexpectedEnd)));
}

// ---- compression ----

fn compressed_frame(plain: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(vec![FLAG_COMPRESSED], Compression::fast());
    encoder.write_all(plain).expect("writes to a vec");
    encoder.finish().expect("writes to a vec")
}

#[test]
fn inflates_a_compressed_frame() {
    let node = Node::new("iq")
        .jid_attr("from", server())
        .attr("id", "1.2-1")
        .children(vec![Node::new("ref").bytes(vec![0x55; 300])]);
    let plain = encode(&node);
    assert_eq!(
        decode(&compressed_frame(&plain[1..])).expect("inflates"),
        node
    );
}

#[test]
fn ignores_flag_bits_other_than_compression() {
    let mut frame = encode(&Node::new("xmlstreamend"));
    frame[0] = 0xFD;
    assert_eq!(decode(&frame).expect("decodes"), Node::new("xmlstreamend"));
}

#[test]
fn refuses_a_frame_that_inflates_beyond_the_cap() {
    let err = decode(&compressed_frame(&vec![0; MAX_INFLATED_LEN + 1])).expect_err("too large");
    assert!(matches!(err, DecodeError::TooLarge), "{err}");
}

#[test]
fn reports_a_broken_zlib_stream() {
    let err = decode(&[FLAG_COMPRESSED, 1, 2, 3]).expect_err("not zlib");
    assert!(matches!(err, DecodeError::Zlib(_)), "{err}");
}

// ---- model ----

#[test]
fn displays_a_node_on_one_line_without_its_bytes() {
    let node = Node::new("iq")
        .attr("id", "1.2-1")
        .jid_attr("to", server())
        .children(vec![
            Node::new("ref").bytes(vec![0xDE, 0xAD, 0xBE, 0xEF]),
            Node::new("text").text("hi \"you\""),
            Node::new("active"),
        ]);
    assert_eq!(
        node.to_string(),
        r#"<iq id="1.2-1" to=s.whatsapp.net><ref>[4 bytes]</ref><text>"hi \"you\""</text><active/></iq>"#
    );
}

#[test]
fn builders_replace_an_existing_attribute_in_place() {
    let node = Node::new("iq")
        .attr("id", "1")
        .attr("type", "get")
        .attr("id", "2");
    assert_eq!(node.attrs.len(), 2);
    assert_eq!(node.attrs[0].0, "id");
    assert_eq!(node.attr_str("id").as_deref(), Some("2"));
}

#[test]
fn readers_treat_missing_content_as_empty() {
    let node = Node::new("iq").text("abc");
    assert!(node.children_slice().is_empty());
    assert!(node.child("x").is_none());
    assert_eq!(node.content_bytes(), Some(&b"abc"[..]));
    assert_eq!(Node::new("iq").content_bytes(), None);
    assert_eq!(Node::new("iq").attr_jid("to"), None);
}

#[test]
fn renders_jids_as_whatsmeow_does() {
    assert_eq!(server().to_string(), "s.whatsapp.net");
    assert_eq!(pn("1555", 0).to_string(), "1555@s.whatsapp.net");
    assert_eq!(pn("1555", 2).to_string(), "1555:2@s.whatsapp.net");
    assert_eq!(
        Jid {
            agent: 1,
            ..pn("1555", 0)
        }
        .to_string(),
        "1555.1:0@s.whatsapp.net"
    );
    assert_eq!(Jid::device("", GROUP_SERVER, 3).to_string(), ":3@g.us");
    assert_eq!(
        Jid {
            agent: 9,
            ..lid("1", 2)
        }
        .to_non_ad(),
        lid("1", 0)
    );
}

#[test]
fn parses_the_jid_forms_it_renders() {
    let parse = |s: &str| s.parse::<Jid>();
    assert_eq!(parse("s.whatsapp.net"), Ok(server()));
    assert_eq!(parse("1555@s.whatsapp.net"), Ok(pn("1555", 0)));
    assert_eq!(parse("1555:2@s.whatsapp.net"), Ok(pn("1555", 2)));
    assert_eq!(
        parse("1555.1:3@s.whatsapp.net"),
        Ok(Jid {
            agent: 1,
            ..pn("1555", 3)
        })
    );
    assert_eq!(
        parse("1555.1@s.whatsapp.net"),
        Ok(Jid {
            agent: 1,
            ..pn("1555", 0)
        })
    );
    assert_eq!(parse("a@b@c"), Err(JidParseError::TooManyAts));
    assert_eq!(parse("1.2.3@s"), Err(JidParseError::TooManyDots));
    assert_eq!(parse("1:2:3@s"), Err(JidParseError::TooManyColons));
    assert!(matches!(parse("1.256:0@s"), Err(JidParseError::Agent(_))));
    assert!(matches!(parse("1:x@s"), Err(JidParseError::Device(_))));
}

// ---- properties ----

/// Strings of every form §5.5 can choose: tokens, packable, and raw of all three lengths.
fn any_string() -> impl Strategy<Value = String> {
    let tokens: Vec<&'static str> = SINGLE_BYTE[1..]
        .iter()
        .chain(DOUBLE_BYTE.iter().flatten())
        .copied()
        .collect();
    prop_oneof![
        3 => prop::sample::select(tokens).prop_map(str::to_owned),
        2 => "[0-9.-]{0,130}",
        2 => "[0-9A-F]{1,130}",
        2 => "[0-9a-fA-F.-]{1,20}",
        2 => "\\PC{0,40}",
        1 => "[a-z@:._-]{250,300}",
    ]
}

/// JIDs the wire can carry exactly (§5.8): `AD_JID` holds a one-byte device, and only
/// `s.whatsapp.net` keeps an agent; other servers travel without device or agent.
fn any_jid() -> impl Strategy<Value = Jid> {
    let user = || prop_oneof!["[0-9]{0,20}", any_string()];
    let agent = prop_oneof![Just(0u8), 2u8..=127, 130u8..=255];
    prop_oneof![
        (user(), 0u16..=255, agent).prop_map(|(u, device, agent)| Jid {
            agent,
            ..Jid::device(u, DEFAULT_USER_SERVER, device)
        }),
        (user(), 0u16..=255).prop_map(|(u, d)| Jid::device(u, HIDDEN_USER_SERVER, d)),
        (user(), 0u16..=255).prop_map(|(u, d)| Jid::device(u, HOSTED_SERVER, d)),
        (user(), 0u16..=255).prop_map(|(u, d)| Jid::device(u, HOSTED_LID_SERVER, d)),
        (user(), any::<u16>()).prop_map(|(u, d)| Jid::device(u, MESSENGER_SERVER, d)),
        (user(), any::<u16>(), any::<u16>()).prop_map(|(u, device, integrator)| Jid {
            integrator,
            ..Jid::device(u, INTEROP_SERVER, device)
        }),
        (
            user(),
            prop_oneof![
                Just(GROUP_SERVER.to_owned()),
                Just(NEWSLETTER_SERVER.to_owned()),
                any_string()
            ]
        )
            .prop_map(|(u, s)| Jid::new(u, s)),
    ]
}

fn any_attr_value() -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        any_string().prop_map(AttrValue::Str),
        any_jid().prop_map(AttrValue::Jid),
        prop::collection::vec(any::<u8>(), 1..40)
            .prop_filter("bytes that are text decode as text", |b| {
                std::str::from_utf8(b).is_err()
            })
            .prop_map(AttrValue::Bytes),
    ]
}

fn any_node() -> impl Strategy<Value = Node> {
    let tag = || any_string().prop_filter("tags are never empty", |s| !s.is_empty());
    let attrs = || prop::collection::vec((any_string(), any_attr_value()), 0..5);
    let leaf_content = prop_oneof![
        Just(Content::None),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Content::Bytes),
        any_string().prop_map(Content::Str),
    ];
    let leaf = (tag(), attrs(), leaf_content).prop_map(build);
    leaf.prop_recursive(3, 24, 4, move |inner| {
        let content = prop::collection::vec(inner, 0..4).prop_map(Content::Nodes);
        (tag(), attrs(), content).prop_map(build)
    })
}

fn build((tag, attrs, content): (String, Vec<(String, AttrValue)>, Content)) -> Node {
    let mut node = Node {
        content,
        ..Node::new(tag)
    };
    for (key, value) in attrs {
        node.set_attr(key, value);
    }
    node
}

/// What the wire keeps of `node`: text that goes out as raw UTF-8 (`""` included) comes back as
/// bytes, since content `BINARY_*` always decodes to bytes (§5.7). Raw means no token and not
/// packable (§5.5), judged here independently of the encoder.
fn as_received(node: &Node) -> Node {
    let packable = |s: &str, alphabet: fn(char) -> bool| {
        (1..=127).contains(&s.len()) && s.chars().all(alphabet)
    };
    let content = match &node.content {
        Content::Str(s)
            if token::index_of(s).is_none()
                && !packable(s, |c| c.is_ascii_digit() || c == '-' || c == '.')
                && !packable(s, |c| c.is_ascii_digit() || ('A'..='F').contains(&c)) =>
        {
            Content::Bytes(s.as_bytes().to_vec())
        }
        Content::Nodes(children) => Content::Nodes(children.iter().map(as_received).collect()),
        other => other.clone(),
    };
    Node {
        content,
        ..node.clone()
    }
}

proptest! {
    #[test]
    fn nodes_round_trip_through_the_wire(node in any_node()) {
        let frame = encode(&node);
        let decoded = decode(&frame).expect("own encoding decodes");
        prop_assert_eq!(&decoded, &as_received(&node));
        prop_assert_eq!(encode(&decoded), frame);
    }

    #[test]
    fn repeated_attributes_decode_as_a_map_would(
        keys in prop::collection::vec(0u8..24, 0..40),
    ) {
        let attrs: Vec<(String, AttrValue)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("k{k}"), AttrValue::Str(i.to_string())))
            .collect();
        let node = Node { attrs: attrs.clone(), ..Node::new("iq") };
        let decoded = decode(&encode(&node)).expect("own encoding decodes");
        prop_assert_eq!(decoded.attrs, first_position_last_value(&attrs));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(input in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode(&input);
        let _ = decode_node(&input);
    }

    #[test]
    fn damaged_encodings_never_panic_the_decoder(
        node in any_node(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut frame = encode(&node);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let _ = decode(&frame);
        frame.truncate(cut.index(frame.len()));
        let _ = decode(&frame);
    }

    #[test]
    fn jids_round_trip_through_their_text(
        user in "[0-9A-Za-z_-]{0,20}",
        server in "[a-z.]{0,15}",
        device in any::<u16>(),
        agent in any::<u8>(),
    ) {
        let jid = Jid { agent, ..Jid::device(user, server, device) };
        prop_assert_eq!(jid.to_string().parse::<Jid>(), Ok(jid));
    }
}
