//! The socket's framing: a 3-byte big-endian length before every payload, and the intro the
//! client sends once per connection before its first frame (wa-protocol.md §1.2, §1.3).
//!
//! ```text
//! client's first message: [ED 00 01 L2 L1 L0 routing_info]  57 41 06 03  LEN3 ClientHello
//! every other message:    LEN3 payload  (several per WebSocket message, or split across them)
//! ```

/// `"WA"`, the magic `6` and the token dictionary version `3`; also the Noise prologue.
pub const INTRO: [u8; 4] = [b'W', b'A', 6, 3];
/// The edge-routing pre-intro's fixed start: `"ED"`, `0`, `1`.
pub const ROUTING_PREFIX: [u8; 4] = [b'E', b'D', 0, 1];
/// The largest payload a 3-byte length can carry.
pub const MAX_PAYLOAD_LEN: usize = (1 << 24) - 1;

/// A payload too large for the 3-byte length prefix.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("frame payload of {0} bytes exceeds the 3-byte length prefix")]
pub struct FrameTooLarge(pub usize);

/// The bytes a client sends before its first frame: the `ED` routing pre-intro when it holds
/// routing info from a previous connection (§1.2; routing info over 2^24 − 1 bytes is dropped),
/// then [`INTRO`].
pub fn client_intro(routing_info: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(INTRO.len() + routing_info.map_or(0, |r| r.len() + 7));
    if let Some(info) = routing_info.filter(|r| r.len() <= MAX_PAYLOAD_LEN) {
        out.extend_from_slice(&ROUTING_PREFIX);
        out.extend_from_slice(&len3(info.len()));
        out.extend_from_slice(info);
    }
    out.extend_from_slice(&INTRO);
    out
}

/// Appends `payload` with its 3-byte length to `out`.
///
/// # Errors
/// [`FrameTooLarge`] when the payload does not fit the prefix.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(FrameTooLarge(payload.len()));
    }
    out.extend_from_slice(&len3(payload.len()));
    out.extend_from_slice(payload);
    Ok(())
}

fn len3(len: usize) -> [u8; 3] {
    [(len >> 16) as u8, (len >> 8) as u8, len as u8]
}

/// Splits a byte stream into frame payloads, whatever the WebSocket message boundaries.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete payload, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let pending = &self.buf[self.start..];
        let header = pending.get(..3)?;
        let len =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        let payload = pending.get(3..3 + len)?.to_vec();
        self.start += 3 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(payload)
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// What a server finds at the start of a client's first message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Intro {
    /// Not enough bytes yet.
    Incomplete,
    /// A valid intro of `len` bytes, with the routing info if an `ED` pre-intro came first.
    Complete {
        /// Bytes the intro (and pre-intro) take.
        len: usize,
        /// The routing info of the pre-intro.
        routing_info: Option<Vec<u8>>,
    },
    /// Neither `ED…` nor `WA 06 03`: not a WhatsApp client.
    Invalid,
}

/// Parses the intro a client sends (server side: the simulator).
pub fn parse_client_intro(bytes: &[u8]) -> Intro {
    let (routing_info, rest, skipped) = if bytes.starts_with(&ROUTING_PREFIX[..2]) {
        let Some(head) = bytes.get(..7) else {
            return Intro::Incomplete;
        };
        if head[..4] != ROUTING_PREFIX {
            return Intro::Invalid;
        }
        let len = (usize::from(head[4]) << 16) | (usize::from(head[5]) << 8) | usize::from(head[6]);
        let Some(info) = bytes.get(7..7 + len) else {
            return Intro::Incomplete;
        };
        (Some(info.to_vec()), &bytes[7 + len..], 7 + len)
    } else {
        (None, bytes, 0)
    };
    match rest.get(..4) {
        None if INTRO.starts_with(rest) => Intro::Incomplete,
        Some(head) if head == INTRO => Intro::Complete {
            len: skipped + 4,
            routing_info,
        },
        _ => Intro::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn frames_carry_a_three_byte_length() {
        // wa-protocol.md §11.1.4
        let mut out = Vec::new();
        encode(&h("0102030405"), &mut out).expect("fits");
        assert_eq!(out, h("0000050102030405"));
        assert_eq!(
            encode(&vec![0u8; MAX_PAYLOAD_LEN + 1], &mut Vec::new()),
            Err(FrameTooLarge(1 << 24))
        );
    }

    #[test]
    fn decoder_handles_split_and_joined_frames() {
        let mut d = FrameDecoder::new();
        d.push(&h("0000050102"));
        assert_eq!(d.next_frame(), None);
        d.push(&h("030405"));
        assert_eq!(d.next_frame(), Some(h("0102030405")));
        d.push(&h("000002aabb000003ccddee"));
        assert_eq!(d.next_frame(), Some(h("aabb")));
        assert_eq!(d.next_frame(), Some(h("ccddee")));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.buffered(), 0);
        d.push(&h("00"));
        d.push(&h("0001"));
        d.push(&h("ff"));
        assert_eq!(d.next_frame(), Some(h("ff")));
    }

    #[test]
    fn intro_carries_the_routing_pre_intro_when_there_is_routing_info() {
        assert_eq!(client_intro(None), h("57410603"));
        assert_eq!(
            client_intro(Some(&h("010203"))),
            h("4544000100000301020357410603")
        );
        assert_eq!(client_intro(Some(&[])), h("4544000100000057410603"));
    }

    #[test]
    fn server_parses_both_intro_forms() {
        assert_eq!(
            parse_client_intro(&h("57410603000024")),
            Intro::Complete {
                len: 4,
                routing_info: None
            }
        );
        assert_eq!(
            parse_client_intro(&h("454400010000030102035741060300")),
            Intro::Complete {
                len: 14,
                routing_info: Some(h("010203"))
            }
        );
        assert_eq!(parse_client_intro(&h("5741")), Intro::Incomplete);
        assert_eq!(parse_client_intro(&h("45440001000003")), Intro::Incomplete);
        assert_eq!(parse_client_intro(&h("47455420")), Intro::Invalid);
    }
}
