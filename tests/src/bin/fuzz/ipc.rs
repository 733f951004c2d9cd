//! The IPC link's frame reader: what the supervisor reads from a worker (`ToSupervisor`) and a
//! worker from the supervisor (`ToWorker`), over an in-memory stream.
//!
//! Mode byte bits: bit 0 picks the direction (`ToSupervisor`, `ToWorker`); bit 1 the reader
//! (`FrameReader` over an `AsyncRead` that hands out short reads, or `FrameDecoder` fed
//! directly); bit 2 what the rest is (a raw stream of length-prefixed frames, or one JSON body
//! framed here with its true length, so the mutations reach serde). The next byte picks the
//! read sizes. Every message decoded is encoded again and must decode to itself.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use ipc_protocol::{encode, FrameDecoder, FrameError, FrameReader, ToSupervisor, ToWorker};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};

use crate::{mode, split_byte, Target};

const MODES: u8 = 8;
/// Frames read from one input at most (a stream of empty frames would go on for a while).
const MAX_FRAMES: usize = 64;

/// The protocol's own examples (ipc-protocol/tests/data), by direction.
const TO_SUPERVISOR: [&str; 9] = [
    include_str!("../../../../ipc-protocol/tests/data/hello.json"),
    include_str!("../../../../ipc-protocol/tests/data/state.json"),
    include_str!("../../../../ipc-protocol/tests/data/heartbeat.json"),
    include_str!("../../../../ipc-protocol/tests/data/flushed.json"),
    include_str!("../../../../ipc-protocol/tests/data/goodbye.json"),
    include_str!("../../../../ipc-protocol/tests/data/send_answer_accepted.json"),
    include_str!("../../../../ipc-protocol/tests/data/send_answer_refused.json"),
    include_str!("../../../../ipc-protocol/tests/data/query_answer_page.json"),
    include_str!("../../../../ipc-protocol/tests/data/message.json"),
];
const TO_WORKER: [&str; 7] = [
    include_str!("../../../../ipc-protocol/tests/data/shutdown.json"),
    include_str!("../../../../ipc-protocol/tests/data/logout.json"),
    include_str!("../../../../ipc-protocol/tests/data/request_qr.json"),
    include_str!("../../../../ipc-protocol/tests/data/ping.json"),
    include_str!("../../../../ipc-protocol/tests/data/send.json"),
    include_str!("../../../../ipc-protocol/tests/data/query_list.json"),
    include_str!("../../../../ipc-protocol/tests/data/confirm.json"),
];

const DICTIONARY: &[&[u8]] = &[
    b"\"type\":",
    b"\"hello\"",
    b"\"state\"",
    b"\"message\"",
    b"\"send\"",
    b"\"query\"",
    b"\"confirm\"",
    b"\"send_answer\"",
    b"\"query_answer\"",
    b"\"account_id\":\"a\"",
    b"\"reason\":\"server_error_65536\"",
    b"\"status\":\"connected\"",
    b"null",
    b"true",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"4294967296",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"[[[[[[[[[[[[[[[[",
    b"{\"a\":",
    b"}",
    b"]",
    b",",
    b"\"",
    b"\\",
    &[0x00, 0x00, 0x00, 0x00],
    &[0x00, 0x10, 0x00, 0x00],
    &[0x00, 0x10, 0x00, 0x01],
    &[0xFF, 0xFF, 0xFF, 0xFF],
];

/// The IPC codec in both directions.
#[derive(Debug)]
pub struct Ipc;

impl Ipc {
    pub fn new() -> Self {
        Self
    }
}

impl Target for Ipc {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for (direction, bodies) in [(0u8, &TO_SUPERVISOR[..]), (1, &TO_WORKER[..])] {
            let mut stream = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                let framed = frame(body.as_bytes());
                for reader in [0u8, 2] {
                    seeds.push([&[direction | reader, i as u8][..], &framed].concat());
                    seeds.push([&[direction | reader | 4, i as u8][..], body.as_bytes()].concat());
                }
                stream.extend_from_slice(&framed);
            }
            seeds.push([&[direction, 3][..], &stream].concat());
            seeds.push([&[direction | 2, 0][..], &stream].concat());
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let (mode, rest) = mode(input, MODES);
        let (cut, data) = split_byte(rest);
        let framed;
        let stream = if mode & 4 != 0 {
            framed = frame(data);
            &framed[..]
        } else {
            data
        };
        match (mode & 1, mode & 2) {
            (0, 0) => read_all::<ToSupervisor>(stream, cut),
            (0, _) => decode_all::<ToSupervisor>(stream, cut),
            (_, 0) => read_all::<ToWorker>(stream, cut),
            _ => decode_all::<ToWorker>(stream, cut),
        }
    }
}

/// A 4-byte big-endian length, then `body` (whatever its length: the reader checks it).
fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    [&len.to_be_bytes()[..], body].concat()
}

/// Reads frames through `FrameReader` until the stream ends or fails; `true` if any decoded.
fn read_all<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    stream: &[u8],
    cut: u8,
) -> bool {
    let mut reader = FrameReader::new(ShortReads {
        data: stream,
        cut: u32::from(cut),
    });
    let mut any = false;
    for _ in 0..MAX_FRAMES {
        match ready(reader.read::<T>()) {
            Ok(Some(message)) => {
                check_round_trip(&message);
                any = true;
            }
            Ok(None) => break,
            Err(FrameError::Json(e)) => {
                let _ = e.to_string();
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    any
}

/// Pushes the stream into a `FrameDecoder` in pieces and takes frames out as they complete.
fn decode_all<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    stream: &[u8],
    cut: u8,
) -> bool {
    let mut decoder = FrameDecoder::new();
    let size = usize::from(cut % 32) + 1;
    let mut any = false;
    let mut frames = 0;
    for chunk in stream.chunks(if cut == 0 { stream.len().max(1) } else { size }) {
        decoder.push(chunk);
        while frames < MAX_FRAMES {
            match decoder.next_frame::<T>() {
                Ok(Some(message)) => {
                    check_round_trip(&message);
                    any = true;
                }
                Ok(None) => break,
                Err(FrameError::Json(_)) => {}
                Err(_) => return any,
            }
            frames += 1;
        }
    }
    any
}

/// A decoded message encodes, and its encoding decodes to it again.
fn check_round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(message: &T) {
    let _ = format!("{message:?}");
    let bytes = encode(message).expect("a decoded message encodes");
    let mut decoder = FrameDecoder::new();
    decoder.push(&bytes);
    let again = decoder
        .next_frame::<T>()
        .expect("an encoded message decodes")
        .expect("a whole frame");
    assert_eq!(
        &again, message,
        "a message changed through encode and decode"
    );
}

/// Polls a future over an in-memory reader to completion; such a reader is always ready.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a read over an in-memory stream stayed pending");
}

/// An in-memory `AsyncRead` that hands out reads of 1 to 64 bytes (all at once for `cut` 0).
struct ShortReads<'a> {
    data: &'a [u8],
    cut: u32,
}

impl AsyncRead for ShortReads<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = if self.cut == 0 {
            usize::MAX
        } else {
            self.cut = self.cut.wrapping_mul(1_103_515_245).wrapping_add(12_345) | 1;
            1 + (self.cut >> 16) as usize % 64
        };
        let take = size.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(take);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}
