//! The node model: a tag, attributes and content (wa-protocol.md §5.1), with builders for
//! stanzas we send and readers for stanzas we receive.

use std::borrow::Cow;
use std::fmt;

use super::jid::Jid;

/// One stanza or element of one.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Node {
    /// The element name; never empty on the wire.
    pub tag: String,
    /// Attributes in the order the encoder writes them. Keys are unique: the builders replace an
    /// existing key, and the decoder keeps the last of repeated keys. Empty string values are
    /// written too, as Baileys and whatsapp-rust write them (§5.1).
    pub attrs: Vec<(String, AttrValue)>,
    /// What the element holds.
    pub content: Content,
}

/// An attribute value: text, or an address that travels in a JID form (§5.7, §5.8).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum AttrValue {
    /// Any string (tokens, packed numbers and raw UTF-8 all decode to this).
    Str(String),
    /// A typed address (`JID_PAIR`, `AD_JID`, `FB_JID` or `INTEROP_JID`).
    Jid(Jid),
    /// Raw bytes that are not UTF-8: whatsmeow keeps such a value as it came, and so does the
    /// decoder, so that an ack copying it names the stanza exactly. Written back as `BINARY_*`.
    Bytes(Vec<u8>),
}

/// What a node holds (§5.4).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub enum Content {
    /// Nothing: the node is self-closing.
    #[default]
    None,
    /// Raw bytes (`BINARY_*` on the wire). Raw text content also decodes to this, as in
    /// whatsmeow: the wire does not tell the two apart (§5.7).
    Bytes(Vec<u8>),
    /// A string sent as a token or packed value (or as raw UTF-8 when encoding).
    Str(String),
    /// Child nodes.
    Nodes(Vec<Node>),
}

impl Node {
    /// A node with this tag, no attributes and no content.
    pub fn new(tag: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            ..Self::default()
        }
    }

    /// Sets a string attribute, replacing any value already under `key`.
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key.into(), AttrValue::Str(value.into()));
        self
    }

    /// Sets a JID attribute, replacing any value already under `key`.
    #[must_use]
    pub fn jid_attr(mut self, key: impl Into<String>, jid: Jid) -> Self {
        self.set_attr(key.into(), AttrValue::Jid(jid));
        self
    }

    /// Makes `children` the content.
    #[must_use]
    pub fn children(mut self, children: Vec<Node>) -> Self {
        self.content = Content::Nodes(children);
        self
    }

    /// Makes `bytes` the content.
    #[must_use]
    pub fn bytes(mut self, bytes: Vec<u8>) -> Self {
        self.content = Content::Bytes(bytes);
        self
    }

    /// Makes `text` the content.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.content = Content::Str(text.into());
        self
    }

    /// Stores `value` under `key`: in place when the key exists, appended otherwise.
    pub fn set_attr(&mut self, key: String, value: AttrValue) {
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((key, value)),
        }
    }

    /// The value under `key`.
    pub fn get_attr(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value under `key` as text; a JID gives its `Display` form.
    pub fn attr_str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get_attr(key).map(AttrValue::as_str)
    }

    /// The value under `key` if it is a JID (a string that looks like one is not).
    pub fn attr_jid(&self, key: &str) -> Option<&Jid> {
        self.get_attr(key).and_then(AttrValue::as_jid)
    }

    /// The first child with this tag.
    pub fn child(&self, tag: &str) -> Option<&Node> {
        self.children_slice().iter().find(|c| c.tag == tag)
    }

    /// Every child with this tag, in order.
    pub fn children_by_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children_slice().iter().filter(move |c| c.tag == tag)
    }

    /// The child nodes; empty when the content is not a list.
    pub fn children_slice(&self) -> &[Node] {
        match &self.content {
            Content::Nodes(nodes) => nodes,
            _ => &[],
        }
    }

    /// The content as bytes: raw bytes, or the UTF-8 of a string.
    pub fn content_bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Bytes(bytes) => Some(bytes),
            Content::Str(text) => Some(text.as_bytes()),
            Content::None | Content::Nodes(_) => None,
        }
    }
}

/// One line for debug logs: `<iq id="1.2-1" to=s.whatsapp.net><ref>[14 bytes]</ref></iq>`.
/// Byte content shows only its length, since it can hold keys.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}", self.tag)?;
        for (key, value) in &self.attrs {
            match value {
                AttrValue::Str(s) => write!(f, " {key}={s:?}")?,
                AttrValue::Jid(jid) => write!(f, " {key}={jid}")?,
                AttrValue::Bytes(bytes) => write!(f, " {key}=[{} bytes]", bytes.len())?,
            }
        }
        match &self.content {
            Content::None => return f.write_str("/>"),
            Content::Bytes(bytes) => write!(f, ">[{} bytes]", bytes.len())?,
            Content::Str(text) => write!(f, ">{text:?}")?,
            Content::Nodes(children) => {
                f.write_str(">")?;
                for child in children {
                    write!(f, "{child}")?;
                }
            }
        }
        write!(f, "</{}>", self.tag)
    }
}

/// A node fit for a log: JIDs masked ([`Jid::masked`]), string attributes that hold people's
/// data (numbers, names) masked, text content replaced by its length.
#[derive(Debug)]
pub struct Redacted<'a>(pub &'a Node);

/// Attributes whose string values are people's names or numbers.
const PERSONAL_ATTRS: [&str; 6] = ["notify", "name", "phone", "jid", "lid", "pn"];

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.0;
        write!(f, "<{}", node.tag)?;
        for (key, value) in &node.attrs {
            match value {
                AttrValue::Jid(jid) => write!(f, " {key}={}", jid.masked())?,
                AttrValue::Str(s)
                    if PERSONAL_ATTRS.contains(&key.as_str()) || looks_like_number(s) =>
                {
                    write!(f, " {key}={:?}", super::jid::mask_digits(s))?
                }
                AttrValue::Str(s) => write!(f, " {key}={s:?}")?,
                AttrValue::Bytes(bytes) => write!(f, " {key}=[{} bytes]", bytes.len())?,
            }
        }
        match &node.content {
            Content::None => return f.write_str("/>"),
            Content::Bytes(bytes) => write!(f, ">[{} bytes]", bytes.len())?,
            Content::Str(text) => write!(f, ">[{} chars]", text.chars().count())?,
            Content::Nodes(children) => {
                f.write_str(">")?;
                for child in children {
                    write!(f, "{}", Redacted(child))?;
                }
            }
        }
        write!(f, "</{}>", node.tag)
    }
}

/// A string of six or more digits (with an optional `@server` or `:device`) is a phone
/// number or an id made of one.
fn looks_like_number(s: &str) -> bool {
    let user = s.split(['@', ':', '.']).next().unwrap_or(s);
    user.len() >= 6 && user.bytes().all(|b| b.is_ascii_digit())
}

impl Node {
    /// This node as it may appear in a log.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

impl AttrValue {
    /// The value as text; a JID gives its `Display` form, bytes that are not UTF-8 their lossy
    /// text (U+FFFD for each bad sequence).
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            AttrValue::Str(s) => Cow::Borrowed(s),
            AttrValue::Jid(jid) => Cow::Owned(jid.to_string()),
            AttrValue::Bytes(bytes) => String::from_utf8_lossy(bytes),
        }
    }

    /// The JID, if the value is one.
    pub fn as_jid(&self) -> Option<&Jid> {
        match self {
            AttrValue::Jid(jid) => Some(jid),
            AttrValue::Str(_) | AttrValue::Bytes(_) => None,
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Jid(jid) => write!(f, "{jid}"),
            AttrValue::Bytes(bytes) => f.write_str(&String::from_utf8_lossy(bytes)),
        }
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_owned())
    }
}

impl From<Jid> for AttrValue {
    fn from(jid: Jid) -> Self {
        AttrValue::Jid(jid)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use crate::wa::binary::jid::Jid;

    #[test]
    fn a_redacted_node_shows_no_number_name_or_text() {
        let node = Node::new("message")
            .jid_attr("from", Jid::device("40712345678", "s.whatsapp.net", 3))
            .attr("notify", "Ana Pop")
            .attr("participant", "40799887766@s.whatsapp.net")
            .attr("id", "3EB0ABCDEF")
            .attr("t", "1700000000")
            .children(vec![Node::new("body").text("hello there")]);
        let shown = node.redacted().to_string();
        for secret in ["40712345678", "Ana Pop", "40799887766", "hello there"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("*********78:3@s.whatsapp.net"), "{shown}");
        assert!(shown.contains("id=\"3EB0ABCDEF\""), "ids stay: {shown}");
        assert!(shown.contains("[11 chars]"), "{shown}");
    }
}
