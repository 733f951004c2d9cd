//! The encoder: nodes (wa-protocol.md §5.4), strings (§5.5, §5.6) and JIDs (§5.8). Where the
//! reference clients differ it writes what two of the three write:
//!
//! - empty attribute values are written, and `""` is `FC 00` (Baileys, whatsapp-rust; whatsmeow
//!   skips them and packs `""` as `FF 00`);
//! - a JID without a device is a `JID_PAIR` on every server, `hosted`, `hosted.lid`, `msgr` and
//!   `interop` included (Baileys, whatsapp-rust; whatsmeow writes `AD_JID` for hosted and
//!   `FB_JID`/`INTEROP_JID` for the last two, which Baileys 7.0.0-rc.9 cannot read);
//! - a device on `msgr` or `interop`, or an interop integrator, is kept in `FB_JID` or
//!   `INTEROP_JID` (whatsmeow): the `AD_JID` Baileys and whatsapp-rust write there names no
//!   server and reads back as `s.whatsapp.net`;
//! - only typed JIDs get JID tags (whatsmeow; the other two also parse strings holding `@`).

use super::jid::{
    Jid, DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER, INTEROP_SERVER,
    MESSENGER_SERVER,
};
use super::node::{AttrValue, Content, Node};
use super::tag;
use super::token::{self, Token};

/// Appends `node` to `out` (§5.4).
///
/// # Panics
/// If a list header overflows 16 bits (more than 65 535 children, or more than 32 766
/// attributes) or a byte string exceeds 4 GiB; no stanza comes near either.
pub(super) fn write_node(node: &Node, out: &mut Vec<u8>) {
    let has_content = !matches!(node.content, Content::None);
    let size = 1 + 2 * node.attrs.len() + usize::from(has_content);
    write_list_start(size, out);
    write_string(&node.tag, out);
    for (key, value) in &node.attrs {
        write_string(key, out);
        match value {
            AttrValue::Str(s) => write_string(s, out),
            AttrValue::Jid(jid) => write_jid(jid, out),
            AttrValue::Bytes(bytes) => write_bytes(bytes, out),
        }
    }
    match &node.content {
        Content::None => {}
        Content::Bytes(bytes) => write_bytes(bytes, out),
        Content::Str(text) => write_string(text, out),
        Content::Nodes(children) => {
            write_list_start(children.len(), out);
            for child in children {
                write_node(child, out);
            }
        }
    }
}

fn write_list_start(size: usize, out: &mut Vec<u8>) {
    match size {
        0 => out.push(tag::LIST_EMPTY),
        1..=0xFF => out.extend_from_slice(&[tag::LIST_8, size as u8]),
        _ => {
            let size =
                u16::try_from(size).expect("more than 65 535 list items is a documented panic");
            out.push(tag::LIST_16);
            out.extend_from_slice(&size.to_be_bytes());
        }
    }
}

/// The first applicable form of §5.5; `""` is an empty `BINARY_8`, as Baileys and
/// whatsapp-rust send it.
fn write_string(s: &str, out: &mut Vec<u8>) {
    match token::index_of(s) {
        Some(Token::Single(index)) => out.push(index),
        Some(Token::Double(dict, index)) => {
            out.extend_from_slice(&[tag::DICTIONARY_0 + dict, index])
        }
        None if s.is_empty() => out.extend_from_slice(&[tag::BINARY_8, 0]),
        None if s.len() <= tag::PACKED_MAX && s.bytes().all(|c| nibble(c).is_some()) => {
            write_packed(tag::NIBBLE_8, s, nibble, out);
        }
        None if s.len() <= tag::PACKED_MAX && s.bytes().all(|c| hex(c).is_some()) => {
            write_packed(tag::HEX_8, s, hex, out);
        }
        None => write_bytes(s.as_bytes(), out),
    }
}

/// Two characters a byte, high nibble first; an odd length ends in the filler 15 and sets the
/// top bit of the length byte (§5.6). The caller has checked every character against `pack`.
fn write_packed(tag: u8, s: &str, pack: fn(u8) -> Option<u8>, out: &mut Vec<u8>) {
    let value = |c: u8| pack(c).unwrap_or(tag::PACKED_FILLER);
    let len = s.len().div_ceil(2);
    let odd = if s.len() % 2 == 1 { 0x80 } else { 0 };
    out.extend_from_slice(&[tag, len as u8 | odd]);
    for pair in s.as_bytes().chunks(2) {
        let high = value(pair[0]);
        let low = pair.get(1).map_or(tag::PACKED_FILLER, |&c| value(c));
        out.push(high << 4 | low);
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'-' => Some(10),
        b'.' => Some(11),
        _ => None,
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `BINARY_8`, `BINARY_20` or `BINARY_32`, the smallest that fits (§5.4).
fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    let len = bytes.len();
    if len < 1 << 8 {
        out.extend_from_slice(&[tag::BINARY_8, len as u8]);
    } else if len < 1 << 20 {
        out.extend_from_slice(&[
            tag::BINARY_20,
            (len >> 16) as u8 & 0x0F,
            (len >> 8) as u8,
            len as u8,
        ]);
    } else {
        let len = u32::try_from(len).expect("a byte string over 4 GiB is a documented panic");
        out.push(tag::BINARY_32);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// The JID form (§5.8, the choices in this file's header). An agent byte that names no known
/// domain rides in an `AD_JID` so the decoder gives it back; devices above 255 do not fit
/// `AD_JID` and are truncated, as whatsmeow does.
fn write_jid(jid: &Jid, out: &mut Vec<u8>) {
    let server = jid.server.as_str();
    let raw_agent = (!matches!(jid.agent, 0 | 1 | 128 | 129)).then_some(jid.agent);
    let ad_domain = match server {
        DEFAULT_USER_SERVER if jid.device > 0 || raw_agent.is_some() => {
            Some(raw_agent.unwrap_or(0))
        }
        HIDDEN_USER_SERVER if jid.device > 0 => Some(1),
        HOSTED_SERVER if jid.device > 0 => Some(128),
        HOSTED_LID_SERVER if jid.device > 0 => Some(129),
        _ => None,
    };
    if let Some(domain) = ad_domain {
        out.extend_from_slice(&[tag::AD_JID, domain, (jid.device & 0xFF) as u8]);
        write_string(&jid.user, out);
    } else if server == MESSENGER_SERVER && jid.device > 0 {
        out.push(tag::FB_JID);
        write_string(&jid.user, out);
        out.extend_from_slice(&jid.device.to_be_bytes());
        write_string(server, out);
    } else if server == INTEROP_SERVER && (jid.device > 0 || jid.integrator > 0) {
        out.push(tag::INTEROP_JID);
        write_string(&jid.user, out);
        out.extend_from_slice(&jid.device.to_be_bytes());
        out.extend_from_slice(&jid.integrator.to_be_bytes());
        write_string(server, out);
    } else {
        out.push(tag::JID_PAIR);
        if jid.user.is_empty() {
            out.push(tag::LIST_EMPTY);
        } else {
            write_string(&jid.user, out);
        }
        write_string(server, out);
    }
}
