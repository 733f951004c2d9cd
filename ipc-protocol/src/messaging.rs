//! The messages an account sends and receives, as the link carries them: what the operator asks
//! to send, what the worker records, and the queries the supervisor forwards.

use serde::{Deserialize, Serialize};

use crate::message::UnixMillis;

/// Which way a message went.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received by the account.
    In,
    /// Sent by the account (through the API, or from the phone and copied to us).
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Durable in the outbox, not yet accepted by the server.
    Queued,
    /// The server acknowledged it (one tick).
    Sent,
    /// A recipient device received it (two ticks).
    Delivered,
    /// A recipient read it.
    Read,
    /// It will not be sent; `error` says why.
    Failed,
    /// An incoming message, recorded.
    Received,
}

impl MessageStatus {
    /// How far along a status is; a status never moves back (a late delivery receipt after
    /// a read receipt changes nothing).
    pub fn rank(self) -> u8 {
        match self {
            MessageStatus::Queued => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Failed => 4,
            MessageStatus::Received => 5,
        }
    }
}

/// One message as the operator sees it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct MessageRecord {
    /// The WhatsApp message id.
    pub id: String,
    /// In or out.
    pub direction: Direction,
    /// The chat: the contact's JID (no device) or the group's.
    pub chat: String,
    /// Who wrote it: the sender's JID for incoming messages, none for ours.
    #[serde(default)]
    pub sender: Option<String>,
    /// The sender's push name, when the server gave one.
    #[serde(default)]
    pub push_name: Option<String>,
    /// `text`, or the kind of content that is not text (`image`, `reaction`, `poll`, ...).
    pub kind: String,
    /// The text, for text messages.
    #[serde(default)]
    pub text: Option<String>,
    /// Where it stands.
    pub status: MessageStatus,
    /// When it was written: the sender's time for incoming, the queueing time for ours.
    pub timestamp: UnixMillis,
    /// When the server accepted it.
    #[serde(default)]
    pub sent_at: Option<UnixMillis>,
    /// When the first recipient device received it.
    #[serde(default)]
    pub delivered_at: Option<UnixMillis>,
    /// When a recipient first read it.
    #[serde(default)]
    pub read_at: Option<UnixMillis>,
    /// Why it failed, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// Its position in the account's list of this direction: grows with each message.
    pub cursor: u64,
}

/// A text the operator asked to send.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct OutgoingText {
    /// The message id to use (derived from the client's idempotency key when it gave one).
    pub id: String,
    /// The recipient: a user JID (`<digits>@s.whatsapp.net`, `<lid>@lid`) or a group
    /// (`<id>@g.us`).
    pub to: String,
    /// The text.
    pub text: String,
}

/// Why a send was not queued.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum SendRefusal {
    /// The account has never been paired (or was logged out).
    NotPaired,
    /// The outbox holds its limit of queued messages.
    OutboxFull {
        /// The limit.
        limit: u32,
    },
    /// The recipient is not a JID the worker can send to.
    InvalidRecipient(String),
    /// The message could not be made durable; nothing was queued.
    Storage(String),
}

/// What became of a send request.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SendOutcome {
    /// Durable in the outbox (or already there, for a repeated idempotency key).
    Accepted {
        /// The message as recorded.
        message: Box<MessageRecord>,
    },
    /// Not queued.
    Refused {
        /// Why.
        refusal: SendRefusal,
    },
}

/// A question about the account's messages.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum MessageQuery {
    /// One message by id.
    Get {
        /// The message id.
        id: String,
    },
    /// A page of one direction, oldest first.
    List {
        /// Which direction.
        direction: Direction,
        /// Only messages after this cursor.
        after: Option<u64>,
        /// At most this many.
        limit: u32,
    },
}

/// The answer to a [`MessageQuery`].
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum QueryAnswer {
    /// The message, if the account has it.
    One {
        /// It.
        message: Option<Box<MessageRecord>>,
    },
    /// A page.
    Page {
        /// Oldest first.
        messages: Vec<MessageRecord>,
        /// The cursor for the next page, when there may be more.
        next: Option<u64>,
    },
    /// The store could not be read.
    Failed {
        /// Why, for people.
        error: String,
    },
}
