//! The decoder (wa-protocol.md §5.2–§5.8). It reads what any of the three clients writes, and
//! treats its input as hostile: every length is checked against the bytes left before anything
//! is allocated, nesting is capped, and no input panics.
//!
//! It is as lenient as whatsmeow where a stanza is still readable, so that the session can
//! acknowledge it rather than drop it and have the server deliver it again at every login:
//! - text that is not UTF-8 is kept: an attribute value as [`AttrValue::Bytes`], content as
//!   bytes (it always is); a tag, key or JID part, which must be text, gets U+FFFD for each bad
//!   sequence (whatsmeow keeps Go strings of any bytes; Baileys does the same replacement);
//! - bytes after the top-level node are counted and left, as Baileys leaves them (whatsmeow and
//!   whatsapp-rust drop such a frame).

use std::collections::HashMap;
use std::io::Read;

use flate2::read::ZlibDecoder;

use super::jid::{Jid, DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER};
use super::node::{AttrValue, Content, Node};
use super::tag;
use super::token;

/// The deepest nesting accepted; the top-level node is level 0.
pub const MAX_DEPTH: usize = 64;
/// The largest inflated frame accepted (the cap whatsapp-rust uses, §5.2).
pub const MAX_INFLATED_LEN: usize = 16 << 20;

/// The most list items reserved ahead of reading them: a declared count is only a claim, and
/// 64 nested levels each reserving 65 535 nodes would cost hundreds of megabytes.
const PREALLOCATE_MAX: usize = 64;

/// Bytes that are not one well-formed node.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("node bytes end unexpectedly")]
    UnexpectedEnd,
    /// A byte that starts no value here.
    #[error("invalid tag byte {0:#04x}")]
    InvalidTag(u8),
    /// A node does not start with a list header.
    #[error("node starts with {0:#04x} instead of a list header")]
    NotAList(u8),
    /// A node's list header holds no items.
    #[error("node has an empty list header")]
    EmptyNode,
    /// A node's tag is the empty string.
    #[error("node has an empty tag")]
    EmptyTag,
    /// A list or JID where a tag, key or JID part must be a string.
    #[error("expected a string, found tag byte {0:#04x}")]
    NotAString(u8),
    /// A nibble-packed string holds 12, 13, 14, or a filler before its end.
    #[error("invalid nibble {0} in a packed string")]
    InvalidNibble(u8),
    /// A packed string flagged odd that holds no byte.
    #[error("packed string is flagged odd but empty")]
    InvalidPackedLength,
    /// Nodes nest deeper than [`MAX_DEPTH`].
    #[error("nodes nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A compressed frame inflates beyond [`MAX_INFLATED_LEN`].
    #[error("compressed frame inflates beyond {MAX_INFLATED_LEN} bytes")]
    TooLarge,
    /// A compressed frame is not a valid zlib stream.
    #[error("compressed frame is not a valid zlib stream")]
    Zlib(#[source] std::io::Error),
}

/// Decodes the node at the start of `bytes`; also returns how many bytes follow it.
pub(super) fn read_node_first(bytes: &[u8]) -> Result<(Node, usize), DecodeError> {
    let mut cursor = Cursor::new(bytes);
    let node = cursor.read_node(0)?;
    Ok((node, cursor.remaining()))
}

/// Inflates a compressed frame body, refusing to grow past [`MAX_INFLATED_LEN`].
pub(super) fn inflate(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut inflated = Vec::new();
    let limit = MAX_INFLATED_LEN as u64 + 1;
    ZlibDecoder::new(data)
        .take(limit)
        .read_to_end(&mut inflated)
        .map_err(DecodeError::Zlib)?;
    if inflated.len() > MAX_INFLATED_LEN {
        return Err(DecodeError::TooLarge);
    }
    Ok(inflated)
}

/// A read position over node bytes.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
}

/// A string or byte value: anything but a list or a JID.
enum Text<'a> {
    Str(String),
    Bytes(&'a [u8]),
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.bytes.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let [byte] = self.take_array()?;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.take_array().map(u16::from_be_bytes)
    }

    /// A `BINARY_20` length: 3 bytes, of which the low 20 bits count.
    pub(super) fn u20(&mut self) -> Result<usize, DecodeError> {
        let [high, mid, low] = self.take_array()?;
        Ok(usize::from(high & 0x0F) << 16 | usize::from(mid) << 8 | usize::from(low))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.take_array().map(u32::from_be_bytes)
    }

    /// One node (§5.4) at nesting level `depth`.
    fn read_node(&mut self, depth: usize) -> Result<Node, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let header = self.u8()?;
        let size = self
            .list_size(header)?
            .ok_or(DecodeError::NotAList(header))?;
        if size == 0 {
            return Err(DecodeError::EmptyNode);
        }
        let tag = self.read_string()?;
        if tag.is_empty() {
            return Err(DecodeError::EmptyTag);
        }
        let attr_count = (size - 1) / 2;
        let mut pairs = Vec::with_capacity(attr_count.min(PREALLOCATE_MAX));
        for _ in 0..attr_count {
            let key = self.read_string()?;
            let value = self.read_attr_value()?;
            pairs.push((key, value));
        }
        let content = if size % 2 == 0 {
            self.read_content(depth)?
        } else {
            Content::None
        };
        Ok(Node {
            tag,
            attrs: dedup_attrs(pairs),
            content,
        })
    }

    /// The item count of a list header, or `None` when `header` starts no list.
    fn list_size(&mut self, header: u8) -> Result<Option<usize>, DecodeError> {
        Ok(match header {
            tag::LIST_EMPTY => Some(0),
            tag::LIST_8 => Some(usize::from(self.u8()?)),
            tag::LIST_16 => Some(usize::from(self.u16()?)),
            _ => None,
        })
    }

    /// Content: a child list, bytes, or a string; a JID becomes its text (§5.7).
    fn read_content(&mut self, depth: usize) -> Result<Content, DecodeError> {
        let header = self.u8()?;
        if let Some(count) = self.list_size(header)? {
            let mut children = Vec::with_capacity(count.min(PREALLOCATE_MAX));
            for _ in 0..count {
                children.push(self.read_node(depth + 1)?);
            }
            return Ok(Content::Nodes(children));
        }
        if let Some(jid) = self.read_jid(header)? {
            return Ok(Content::Str(jid.to_string()));
        }
        Ok(match self.read_text(header)? {
            Text::Str(s) => Content::Str(s),
            Text::Bytes(bytes) => Content::Bytes(bytes.to_vec()),
        })
    }

    /// A string (`BINARY_*` as UTF-8) or a JID.
    fn read_attr_value(&mut self) -> Result<AttrValue, DecodeError> {
        let header = self.u8()?;
        if let Some(jid) = self.read_jid(header)? {
            return Ok(AttrValue::Jid(jid));
        }
        Ok(match self.read_text(header)? {
            Text::Str(s) => AttrValue::Str(s),
            Text::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => AttrValue::Str(text.to_owned()),
                Err(_) => AttrValue::Bytes(bytes.to_vec()),
            },
        })
    }

    /// A tag, key or JID part: any string form, `BINARY_*` as (lossy) UTF-8, `00` as `""`.
    /// JIDs are refused before anything nested is read, so JID parts cannot recurse.
    fn read_string(&mut self) -> Result<String, DecodeError> {
        let header = self.u8()?;
        match self.read_text(header)? {
            Text::Str(s) => Ok(s),
            Text::Bytes(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    /// The value `header` starts, unless it is a list or a JID (§5.3).
    fn read_text(&mut self, header: u8) -> Result<Text<'a>, DecodeError> {
        let token = |s: Option<&str>| {
            s.map(|s| Text::Str(s.to_owned()))
                .ok_or(DecodeError::InvalidTag(header))
        };
        match header {
            tag::LIST_EMPTY => Ok(Text::Str(String::new())),
            1..tag::DICTIONARY_0 => token(token::single(header)),
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let index = self.u8()?;
                token(token::double(header - tag::DICTIONARY_0, index))
            }
            tag::NIBBLE_8 | tag::HEX_8 => self.read_packed(header).map(Text::Str),
            tag::BINARY_8 => {
                let len = self.u8()?;
                self.take(usize::from(len)).map(Text::Bytes)
            }
            tag::BINARY_20 => {
                let len = self.u20()?;
                self.take(len).map(Text::Bytes)
            }
            tag::BINARY_32 => {
                let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::UnexpectedEnd)?;
                self.take(len).map(Text::Bytes)
            }
            tag::LIST_8
            | tag::LIST_16
            | tag::JID_PAIR
            | tag::AD_JID
            | tag::FB_JID
            | tag::INTEROP_JID => Err(DecodeError::NotAString(header)),
            _ => Err(DecodeError::InvalidTag(header)),
        }
    }

    /// The JID `header` starts (§5.8), or `None` when it starts something else.
    fn read_jid(&mut self, header: u8) -> Result<Option<Jid>, DecodeError> {
        Ok(Some(match header {
            tag::JID_PAIR => {
                let user = self.read_string()?;
                let server = self.read_string()?;
                Jid::new(user, server)
            }
            tag::AD_JID => self.read_ad_jid()?,
            tag::FB_JID => {
                let user = self.read_string()?;
                let device = self.u16()?;
                let server = self.read_string()?;
                Jid::device(user, server, device)
            }
            tag::INTEROP_JID => {
                let user = self.read_string()?;
                let device = self.u16()?;
                let integrator = self.u16()?;
                let server = self.read_string()?;
                Jid {
                    integrator,
                    ..Jid::device(user, server, device)
                }
            }
            _ => return Ok(None),
        }))
    }

    /// `AD_JID`: domain, device, user; a domain naming no server is kept as the agent (§5.8).
    fn read_ad_jid(&mut self) -> Result<Jid, DecodeError> {
        let [domain, device] = self.take_array()?;
        let user = self.read_string()?;
        let (server, agent) = match domain {
            0 => (DEFAULT_USER_SERVER, 0),
            1 => (HIDDEN_USER_SERVER, 0),
            128 => (HOSTED_SERVER, 0),
            129 => (HOSTED_LID_SERVER, 0),
            other => (DEFAULT_USER_SERVER, other),
        };
        Ok(Jid {
            agent,
            ..Jid::device(user, server, u16::from(device))
        })
    }

    /// `NIBBLE_8` or `HEX_8` (§5.6): a length byte whose top bit marks a dropped last nibble.
    fn read_packed(&mut self, header: u8) -> Result<String, DecodeError> {
        let start = self.u8()?;
        let odd = start & 0x80 != 0;
        let packed = self.take(usize::from(start & 0x7F))?;
        if odd && packed.is_empty() {
            return Err(DecodeError::InvalidPackedLength);
        }
        let count = packed.len() * 2 - usize::from(odd);
        let mut text = String::with_capacity(count);
        for value in packed.iter().flat_map(|&b| [b >> 4, b & 0x0F]).take(count) {
            text.push(match header {
                tag::HEX_8 => unpack_hex(value),
                _ => unpack_nibble(value)?,
            });
        }
        if odd && header == tag::NIBBLE_8 {
            // The filler is dropped unread, but 12–14 are refused wherever they stand.
            let filler = packed.last().map_or(tag::PACKED_FILLER, |b| b & 0x0F);
            if matches!(filler, 12..=14) {
                return Err(DecodeError::InvalidNibble(filler));
            }
        }
        Ok(text)
    }
}

fn unpack_nibble(value: u8) -> Result<char, DecodeError> {
    match value {
        0..=9 => Ok(char::from(b'0' + value)),
        10 => Ok('-'),
        11 => Ok('.'),
        _ => Err(DecodeError::InvalidNibble(value)),
    }
}

fn unpack_hex(value: u8) -> char {
    match value {
        0..=9 => char::from(b'0' + value),
        _ => char::from(b'A' + (value & 0x0F) - 10),
    }
}

/// Attribute counts up to this are de-duplicated by comparing keys pairwise, with no allocation:
/// a stanza has a handful of attributes, and a map per node cost more than the rest of the
/// decode together.
const LINEAR_DEDUP_MAX: usize = 16;

/// Repeated keys keep the position of the first and the value of the last, as a map would.
/// Compacts `pairs` in place; only more than [`LINEAR_DEDUP_MAX`] attributes (hostile or odd
/// input) pay for a map, so that no input costs quadratic time.
fn dedup_attrs(mut pairs: Vec<(String, AttrValue)>) -> Vec<(String, AttrValue)> {
    if pairs.len() > LINEAR_DEDUP_MAX {
        return dedup_attrs_hashed(pairs);
    }
    let mut kept = 0;
    for i in 0..pairs.len() {
        match pairs[..kept].iter().position(|(key, _)| *key == pairs[i].0) {
            Some(first) => take_value(&mut pairs, first, i),
            None => {
                pairs.swap(kept, i);
                kept += 1;
            }
        }
    }
    pairs.truncate(kept);
    pairs
}

/// [`dedup_attrs`] through a map from each key to its first index; the keys are borrowed.
fn dedup_attrs_hashed(mut pairs: Vec<(String, AttrValue)>) -> Vec<(String, AttrValue)> {
    let mut first_of: Vec<usize> = {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(pairs.len());
        pairs
            .iter()
            .enumerate()
            .map(|(i, (key, _))| *seen.entry(key.as_str()).or_insert(i))
            .collect()
    };
    let mut kept = 0;
    for i in 0..pairs.len() {
        let first = first_of[i];
        if first == i {
            // From here on, a first occurrence's entry holds where it was moved to.
            first_of[i] = kept;
            pairs.swap(kept, i);
            kept += 1;
        } else {
            take_value(&mut pairs, first_of[first], i);
        }
    }
    pairs.truncate(kept);
    pairs
}

/// Moves the value at `from` into the kept pair at `to` (`to < from`); what is left at `from`
/// is dropped with the tail.
fn take_value(pairs: &mut [(String, AttrValue)], to: usize, from: usize) {
    let (kept, rest) = pairs.split_at_mut(from);
    std::mem::swap(&mut kept[to].1, &mut rest[0].1);
}
