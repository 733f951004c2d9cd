//! The socket's framing and the transport's receive path (`transport.rs` `read_node`): bytes
//! as WebSocket messages deliver them, split by `FrameDecoder` into 3-byte-length frames,
//! decrypted by the Noise transport, decoded as nodes.
//!
//! Modes (first byte); the next byte picks how the stream is cut into socket reads:
//! - 0: a received byte stream: frames, each decrypted (almost always refused) and, as before
//!   the handshake, decoded as a node;
//! - 1: a stream of node plaintexts: each frame is encrypted by a real server transport,
//!   framed again, and read back through a client's frame decoder and transport, which must
//!   give the same bytes, then decoded;
//! - 2: what a server reads first (`parse_client_intro`, as wa-sim does), then frames.
//!
//! Checked on every input: the decoder loses no bytes (frames plus what it still buffers is
//! what was pushed), and a frame encrypted by one side decrypts to itself on the other.

use rand::rngs::StdRng;
use rand::SeedableRng;
use worker::wa::binary::{self, Jid, Node};
use worker::wa::frame::{self, FrameDecoder, Intro};
use worker::wa::noise::NoiseTransport;

use crate::handshake::Pki;
use crate::{mode, split_byte, Target};

const MODES: u8 = 3;
const CONTEXT_SEED: u64 = 0x4652_414D_4553;

const DICTIONARY: &[&[u8]] = &[
    &[0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x01],
    &[0x00, 0x00, 0x10],
    &[0xFF, 0xFF, 0xFF],
    &[0x00, 0xFF, 0xFF],
    &[0x01, 0x00, 0x00],
    b"WA\x06\x03",
    b"ED\x00\x01",
    b"ED\x00\x01\x00\x00\x00",
    &[0x00, 0xF8, 0x01],
];

/// Two transports from one real handshake: the server's writes, the client's reads.
#[derive(Debug)]
pub struct Frames {
    /// Reads mode 0's frames: arbitrary bytes, so its counter runs on alone.
    reader: Option<NoiseTransport>,
    /// The two ends of mode 1, kept in step: one encryption, one decryption per frame.
    server: Option<NoiseTransport>,
    client: Option<NoiseTransport>,
    nodes: Vec<Vec<u8>>,
}

impl Frames {
    pub fn new() -> Self {
        let pki = Pki::new(&mut StdRng::seed_from_u64(CONTEXT_SEED));
        let reader = pki.handshake().map(|(client, _, _)| client);
        let (client, server) = pki
            .handshake()
            .map_or((None, None), |(c, s, _)| (Some(c), Some(s)));
        let nodes = [
            Node::new("success")
                .attr("t", "1700000000")
                .jid_attr("lid", Jid::device("100000000000001", "lid", 2)),
            Node::new("iq")
                .attr("id", "1.2-1")
                .attr("type", "result")
                .jid_attr("from", Jid::server_jid()),
            Node::new("message")
                .attr("id", "ABC")
                .children(vec![Node::new("enc").bytes(vec![0x33; 40])]),
            Node::new("xmlstreamend"),
        ]
        .iter()
        .map(binary::encode)
        .collect();
        Self {
            reader,
            server,
            client,
            nodes,
        }
    }
}

impl Target for Frames {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let stream = |frames: &[&[u8]]| {
            let mut out = Vec::new();
            for f in frames {
                // Seeds are far below the 16 MiB limit.
                let _ = frame::encode(f, &mut out);
            }
            out
        };
        let all: Vec<&[u8]> = self.nodes.iter().map(Vec::as_slice).collect();
        let mut seeds = Vec::new();
        for (cut, node) in self.nodes.iter().enumerate() {
            let one = stream(&[node]);
            seeds.push([&[0, cut as u8][..], &one].concat());
            seeds.push([&[1, cut as u8][..], &one].concat());
        }
        seeds.push([&[0, 0][..], &stream(&all)].concat());
        seeds.push([&[1, 3][..], &stream(&all)].concat());
        let hello = stream(&[&[0x12, 0x22, 0x0A, 0x20][..]]);
        seeds.push([&[2, 0][..], &frame::client_intro(None), &hello].concat());
        seeds.push(
            [
                &[2, 5][..],
                &frame::client_intro(Some(&[8, 2, 8, 5])),
                &stream(&all),
            ]
            .concat(),
        );
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let (mode, rest) = mode(input, MODES);
        let (cut, data) = split_byte(rest);
        match mode {
            0 => {
                let frames = read_frames(data, cut);
                let mut any = false;
                for payload in &frames {
                    if let Some(reader) = &mut self.reader {
                        if let Ok(plain) = reader.decrypt(payload) {
                            any |= binary::decode(&plain).is_ok();
                        }
                    }
                    any |= binary::decode(payload).is_ok();
                }
                any
            }
            1 => {
                let (Some(server), Some(client)) = (&mut self.server, &mut self.client) else {
                    return false;
                };
                let mut wire = Vec::new();
                let plaintexts = read_frames(data, 0);
                for plain in &plaintexts {
                    if frame::encode(&server.encrypt(plain), &mut wire).is_err() {
                        return false;
                    }
                }
                let mut any = false;
                let received = read_frames(&wire, cut);
                assert_eq!(received.len(), plaintexts.len(), "frames lost in transit");
                for (ciphertext, sent) in received.iter().zip(&plaintexts) {
                    let plain = client
                        .decrypt(ciphertext)
                        .expect("a frame of our own server decrypts");
                    assert_eq!(&plain, sent, "decrypted frame differs from the sent one");
                    any |= binary::decode(&plain).is_ok();
                }
                any
            }
            _ => match frame::parse_client_intro(data) {
                Intro::Complete { len, routing_info } => {
                    let _ = routing_info.map(|r| r.len());
                    let rest = data.get(len..).unwrap_or_default();
                    read_frames(rest, cut);
                    true
                }
                Intro::Incomplete | Intro::Invalid => false,
            },
        }
    }
}

/// Feeds `data` to a `FrameDecoder` in reads of varying sizes (`cut` picks them; 0 is one
/// read) and returns every frame. Panics if the decoder loses or invents bytes.
fn read_frames(data: &[u8], cut: u8) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut pushed = 0;
    let mut sizes = Cuts::new(cut);
    let mut rest = data;
    while !rest.is_empty() {
        let take = sizes.next_size().min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        decoder.push(chunk);
        pushed += chunk.len();
        rest = tail;
        while let Some(f) = decoder.next_frame() {
            frames.push(f);
        }
        let taken: usize = frames.iter().map(|f| f.len() + 3).sum();
        assert_eq!(
            taken + decoder.buffered(),
            pushed,
            "frame decoder lost bytes"
        );
    }
    frames
}

/// Read sizes from one byte: 0 means everything at once, else a small LCG over 1..=64.
struct Cuts {
    state: u32,
}

impl Cuts {
    fn new(cut: u8) -> Self {
        Self {
            state: u32::from(cut),
        }
    }

    fn next_size(&mut self) -> usize {
        if self.state == 0 {
            return usize::MAX;
        }
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345) | 1;
        1 + (self.state >> 16) as usize % 64
    }
}
