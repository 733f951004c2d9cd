//! The binary node decoder, as the transport calls it on every decrypted frame.
//!
//! Modes (first byte):
//! - 0: a frame plaintext, flags byte first: `binary::decode` (inflates when the flags say so);
//! - 1: node bytes without flags: `binary::decode_node` (bytes after the node are ignored, and
//!   text that is not UTF-8 is kept as bytes, so the stanza can still be acknowledged);
//! - 2: node bytes, compressed here, then decoded as a compressed frame, so the mutations
//!   reach the node decoder through the zlib path (mode 0 breaks the zlib stream itself).
//!
//! A decoded node is then used the way the session uses one: rendered for the log, its
//! attributes read as text and as JIDs, its string values parsed as JIDs, and encoded again.

use flate2::{Compress, Compression, FlushCompress};
use worker::wa::binary::{self, AttrValue, Content, Jid, Node, FLAG_COMPRESSED};

use crate::{mode, with_mode, Target};

const MODES: u8 = 3;

/// Frames of wa-protocol.md §11 (the binary tests' golden vectors), node bytes only.
const GOLDEN: [&str; 8] = [
    "f80f4c1aff0517520218905cee043dfc0366726376f7012aff88100000000000001f4becb43cff051752020041ece6fc2c643559623557784c2b6b35554b5148564936627546524751456a30475a413565767a3862365632786b64773d",
    "f8074c1aff0517000000005cee0476f70102ff88100000000000001f",
    "f8091908ff831b2a1f1657042911fa0003",
    "f80a1906fa0003045a08ff02100116fc026d64f801f802edeef802f802ed50fc0e32407265662d6e756d6265722d31f802ed50fc0e32407265662d6e756d6265722d32",
    "f8049d708df801f803ec0e04fc0e6465766963655f72656d6f766564",
    "f80c1306faff09120363000000000000fc0a6e6577736c657474657208fb08abcdef0123456789fc097365727665725f6964ec331aff0517000001000438f801f802fc09706c61696e74657874fc070a0568656c6c6f",
    "f8071b151308fb08abcdef012345678911faff09120363000000000000fc0a6e6577736c6574746572",
    "f80a1908ff831b2a2f16ec18045a11fa0003f801f801ec01",
];

/// Tag bytes and tokens the decoder branches on.
const DICTIONARY: &[&[u8]] = &[
    &[0x00],
    &[0xF8, 0x01],
    &[0xF8, 0x03],
    &[0xF9, 0x01, 0x00],
    &[0xF9, 0xFF, 0xFF],
    &[0xFA, 0x00, 0x03],
    &[0xF7, 0x00, 0x02],
    &[0xF7, 0x01, 0xFF],
    &[0xF7, 0x80, 0x00],
    &[0xF6, 0x00, 0x01],
    &[0xF5, 0x00, 0x01, 0x00, 0x02],
    &[0xFB, 0x81],
    &[0xFB, 0x80],
    &[0xFF, 0x82, 0x12],
    &[0xFF, 0x81, 0xC0],
    &[0xFC, 0x00],
    &[0xFC, 0xFF],
    &[0xFD, 0x0F, 0xFF, 0xFF],
    &[0xFD, 0x00, 0x01, 0x00],
    &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF],
    &[0xFE, 0x00, 0x00, 0x00, 0x04],
    &[0xEC, 0x00],
    &[0xEF, 0xFF],
    &[0x78, 0x9C],
];

/// The decoder and its callers' use of a node.
#[derive(Debug)]
pub struct Binary {
    nodes: Vec<Vec<u8>>,
    /// One compressor, reset per input: a fresh one costs more than the decoding.
    zlib: Compress,
}

impl Binary {
    pub fn new() -> Self {
        let mut nodes: Vec<Vec<u8>> = GOLDEN.iter().filter_map(|h| hex::decode(h).ok()).collect();
        for node in sample_nodes() {
            let mut bytes = Vec::new();
            binary::encode_node(&node, &mut bytes);
            nodes.push(bytes);
        }
        Self {
            nodes,
            zlib: Compress::new(Compression::fast(), true),
        }
    }

    /// `02 | zlib(node bytes)`, a compressed frame plaintext (§5.2).
    fn compressed_frame(&mut self, node_bytes: &[u8]) -> Vec<u8> {
        self.zlib.reset();
        let mut out = Vec::with_capacity(node_bytes.len() + 64);
        out.push(FLAG_COMPRESSED);
        loop {
            // Compressing into a Vec with spare room cannot fail; a full Vec just grows.
            let status = self.zlib.compress_vec(
                node_bytes_left(&self.zlib, node_bytes),
                &mut out,
                FlushCompress::Finish,
            );
            match status {
                Ok(flate2::Status::StreamEnd) | Err(_) => return out,
                Ok(_) => out.reserve(out.capacity().max(64)),
            }
        }
    }
}

/// What the compressor has not consumed yet.
fn node_bytes_left<'a>(zlib: &Compress, node_bytes: &'a [u8]) -> &'a [u8] {
    let read = usize::try_from(zlib.total_in()).unwrap_or(usize::MAX);
    node_bytes.get(read..).unwrap_or_default()
}

impl Target for Binary {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        let mut binary = Binary::new();
        for node in &self.nodes {
            seeds.push(with_mode(0, &with_mode(0, node)));
            seeds.push(with_mode(0, &binary.compressed_frame(node)));
            seeds.push(with_mode(1, node));
            // Bytes after the node: read and ignored.
            seeds.push(with_mode(1, &[node.as_slice(), &[1, 2, 3]].concat()));
            seeds.push(with_mode(2, node));
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let (mode, data) = mode(input, MODES);
        let decoded = match mode {
            0 => binary::decode(data),
            1 => binary::decode_node(data),
            _ => binary::decode(&self.compressed_frame(data)),
        };
        match decoded {
            Ok(node) => {
                use_node(&node);
                true
            }
            Err(e) => {
                let _ = e.to_string();
                false
            }
        }
    }
}

/// What the session does with a received node, short of acting on it.
fn use_node(node: &Node) {
    let _ = node.to_string();
    for (key, value) in &node.attrs {
        let text = node.attr_str(key);
        if let (Some(text), AttrValue::Str(_)) = (text, value) {
            if let Ok(jid) = text.parse::<Jid>() {
                let _ = jid.to_non_ad().to_string();
            }
        }
        let _ = node.attr_jid(key).map(Jid::to_non_ad);
    }
    let _ = node.content_bytes();
    if let Content::Str(text) = &node.content {
        let _ = text.parse::<Jid>();
    }
    let first = node.children_slice().first().map(|c| c.tag.clone());
    if let Some(tag) = first {
        let _ = node.child(&tag);
        let _ = node.children_by_tag(&tag).count();
    }
    let encoded = binary::encode(node);
    let _ = binary::decode(&encoded);
}

fn server() -> Jid {
    Jid::server_jid()
}

/// Stanzas of every shape the decoder reads: each JID form, each string form, each list size.
fn sample_nodes() -> Vec<Node> {
    let jid = |user: &str, server: &str, device: u16| Jid::device(user, server, device);
    let interop = Jid {
        integrator: 7,
        ..jid("12345", "interop", 3)
    };
    let agent = Jid {
        agent: 5,
        ..jid("15551234567", "s.whatsapp.net", 2)
    };
    let many: Vec<Node> = (0..300)
        .map(|i| Node::new("item").attr("n", i.to_string()))
        .collect();
    let long_text = "x".repeat(300);
    vec![
        Node::new("message")
            .jid_attr("from", jid("120363000000000001", "g.us", 0))
            .jid_attr("participant", jid("15551234567", "s.whatsapp.net", 3))
            .attr("id", "3EB05765B9D1119841E331")
            .attr("t", "1764000000")
            .attr("type", "text")
            .attr("notify", "Ana")
            .children(vec![
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", "skmsg")
                    .bytes(vec![0x33; 80]),
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", "pkmsg")
                    .bytes(vec![0x33; 120]),
            ]),
        Node::new("receipt")
            .jid_attr("from", jid("100000000000001", "lid", 4))
            .attr("id", "ABCDEF")
            .attr("type", "read")
            .children(vec![Node::new("list").children(vec![
                Node::new("item").attr("id", "A1"),
                Node::new("item").attr("id", "A2"),
            ])]),
        Node::new("iq")
            .jid_attr("from", server())
            .attr("id", "1.2-9")
            .attr("type", "result")
            .children(vec![Node::new("list").children(vec![Node::new("user")
                .jid_attr("jid", jid("15551234567", "s.whatsapp.net", 0))
                .children(vec![
                    Node::new("registration").bytes(vec![0, 0, 0, 42]),
                    Node::new("identity").bytes(vec![7; 32]),
                    Node::new("skey").children(vec![
                        Node::new("id").bytes(vec![0, 0, 1]),
                        Node::new("value").bytes(vec![9; 32]),
                        Node::new("signature").bytes(vec![1; 64]),
                    ]),
                ])])]),
        Node::new("notification")
            .jid_attr("from", jid("1234", "hosted", 0))
            .jid_attr("to", jid("5678", "hosted.lid", 1))
            .jid_attr("sender", jid("42", "msgr", 9))
            .jid_attr("peer", interop)
            .jid_attr("agent", agent)
            .attr("type", "devices"),
        Node::new("iq")
            .attr("id", "123-456.789")
            .attr("hex", "DEADBEEF0123")
            .attr("empty", "")
            .text("0123456789-."),
        Node::new("ib").children(vec![Node::new("edge_routing")
            .children(vec![Node::new("routing_info").bytes(vec![8, 2, 8, 5])])]),
        Node::new("big").bytes(vec![0xAB; 1000]),
        Node::new("text").text(long_text),
        Node::new("list").children(many),
        Node::new("a").children(vec![Node::new("b").children(vec![
            Node::new("c").children(vec![Node::new("d").text("deep")])
        ])]),
        Node::new("stream:error").children(vec![Node::new("conflict").attr("type", "replaced")]),
        Node::new("x").children(Vec::new()),
        Node::new("jid").text(jid("15551234567", "s.whatsapp.net", 0).to_string()),
        {
            let mut odd = Node::new("notification").attr("type", "server_sync");
            odd.set_attr("id".into(), AttrValue::Bytes(vec![0xFF, 0xFE, b'1']));
            odd
        },
    ]
}
