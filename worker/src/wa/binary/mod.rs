//! The binary node codec ("WABinary", wa-protocol.md §5): stanzas as [`Node`]s, IO-free.
//!
//! ```text
//!            encode                                      transport (wa::noise)
//! Node ──────────────────▶ 00 | node bytes ─────────────────▶ encrypted frame
//! Node ◀──────────────── flags | data ◀───────────────────── decrypted frame
//!            decode        flags & 0x02: data is a zlib stream of the node bytes (§5.2)
//!
//! node bytes := LIST_START(1 + 2·attrs + content?) tag { key value }* [content]   (§5.4)
//! ```
//!
//! Files: `node.rs` the model, `jid.rs` addresses, `token.rs` the dictionaries, `tag.rs` the tag
//! bytes, `encode.rs` and `decode.rs` the two directions. Where the clients differ the encoder
//! does what two of the three do (§5.5, `encode.rs`); the decoder accepts every form, and is
//! as lenient as whatsmeow with text that is not UTF-8 (`decode.rs`).

mod decode;
mod encode;
pub mod jid;
mod node;
mod tag;
pub mod token;

pub use decode::{DecodeError, MAX_DEPTH, MAX_INFLATED_LEN};
pub use jid::{Jid, JidParseError};
pub use node::{AttrValue, Content, Node};

/// The flags bit that marks a zlib-compressed frame body (§5.2).
pub const FLAG_COMPRESSED: u8 = 0x02;

/// A frame plaintext: the flags byte `0x00` (never compressed) and then `node`.
///
/// # Panics
/// As [`encode_node`].
pub fn encode(node: &Node) -> Vec<u8> {
    let mut out = vec![0];
    encode_node(node, &mut out);
    out
}

/// A decoded frame: its node, and how many bytes followed the node (ignored; see
/// [`decode_frame`]).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Decoded {
    /// The stanza.
    pub node: Node,
    /// Bytes after the node; 0 in a well-formed frame.
    pub trailing: usize,
}

/// Decodes a frame plaintext: the flags byte, then one node, inflated first when the flags say
/// so (§5.2; other flag bits are ignored). Bytes after the node do not reject it: they are
/// counted in [`Decoded::trailing`] for the caller to log (Baileys ignores them; whatsmeow and
/// whatsapp-rust drop the frame, which leaves the stanza unacknowledged, to be redelivered at
/// every login).
///
/// # Errors
/// [`DecodeError::UnexpectedEnd`] on an empty input, [`DecodeError::Zlib`] or
/// [`DecodeError::TooLarge`] for a bad or oversized compressed body, and anything
/// [`decode_node`] returns.
pub fn decode_frame(plaintext: &[u8]) -> Result<Decoded, DecodeError> {
    let (&flags, data) = plaintext.split_first().ok_or(DecodeError::UnexpectedEnd)?;
    let (node, trailing) = if flags & FLAG_COMPRESSED != 0 {
        decode::read_node_first(&decode::inflate(data)?)?
    } else {
        decode::read_node_first(data)?
    };
    Ok(Decoded { node, trailing })
}

/// [`decode_frame`]'s node alone.
///
/// # Errors
/// As [`decode_frame`].
pub fn decode(plaintext: &[u8]) -> Result<Node, DecodeError> {
    decode_frame(plaintext).map(|d| d.node)
}

/// Appends the encoding of `node` to `out`, without a flags byte.
///
/// # Panics
/// If a list header overflows 16 bits (more than 65 535 children, or more than 32 766
/// non-empty attributes) or a byte string exceeds 4 GiB; no stanza comes near either.
pub fn encode_node(node: &Node, out: &mut Vec<u8>) {
    encode::write_node(node, out);
}

/// Decodes the node at the start of `bytes`, which hold no flags byte; bytes after it are
/// ignored, as in [`decode_frame`].
///
/// # Errors
/// A [`DecodeError`] when the bytes do not start with a well-formed node, including
/// [`DecodeError::TooDeep`] when it nests deeper than [`MAX_DEPTH`].
pub fn decode_node(bytes: &[u8]) -> Result<Node, DecodeError> {
    decode::read_node_first(bytes).map(|(node, _)| node)
}

#[cfg(test)]
mod tests;
