//! The link between the supervisor and one worker: its messages, framing and version.
//!
//! ```text
//!  worker                                   supervisor
//!    │ connect to the socket named by --ipc     │
//!    │ ── Hello { account_id, pid, version } ─▶ │ checks pid + account against the child it spawned
//!    │ ── State(WorkerState) ─────────────────▶ │ on every change: a full snapshot, never a delta
//!    │ ── Heartbeat { last_frame_at } ────────▶ │ every 15 s (liveness watchdog: 60 s)
//!    │ ◀──────────── Ping / RequestQr / Logout  │ admin commands
//!    │ ◀──────── Send { request, message } ──── │ queue a text (API POST …/messages)
//!    │ ── SendAnswer { request, outcome } ────▶ │ once durable in the outbox (then 202), or why not
//!    │ ◀──────── Query { request, query } ───── │ a message by id, or a page of a direction
//!    │ ── QueryAnswer { request, answer } ────▶ │
//!    │ ── Message(MessageRecord) ─────────────▶ │ a message arrived, or one of ours moved on
//!    │                                          │ (already durable; becomes an event)
//!    │ ── Call(CallEvent) ────────────────────▶ │ a call rang or changed (becomes an event)
//!    │ ◀──────────────── Confirm { ids } ────── │ incoming ones now durable for the webhooks;
//!    │                                          │ unconfirmed ones are reported again at start
//!    │ ── DialRequest { seq } ────────────────▶ │ before every dial: the fleet's handshake
//!    │ ◀──────────── DialGranted { seq } ────── │ budget grants permits in request order
//!    │ ── DialDone { seq, outcome } ──────────▶ │ handshake over (or withdrawn): permit back
//!    │ ◀── RequestPairingCode { request, phone } │ pairing by phone-number code (API)
//!    │ ── PairingCodeAnswer { request, outcome }▶ │ the code once WhatsApp took the hello, or why not
//!    │ ◀──────────────────────────── Shutdown   │ (or SIGTERM, or EOF on the link)
//!    │ ── Flushed ────────────────────────────▶ │ creds proven durable
//!    │ ── Goodbye { reason } ─────────────────▶ │ last words, then the worker exits
//! ```
//!
//! Every message travels as one frame: a `u32` big-endian length, then that many bytes of JSON
//! ([`codec`]). A length above [`MAX_FRAME_LEN`] is refused before anything is allocated. The
//! first frame a worker sends is `Hello`; its `version` must equal [`PROTOCOL_VERSION`].

pub mod codec;
pub mod error;
pub mod message;
pub mod messaging;

pub use codec::{encode, FrameDecoder, FrameReader, FrameWriter, MAX_FRAME_LEN};
pub use error::FrameError;
pub use message::{
    AccountId, CallEvent, DialOutcome, InvalidAccountId, PairingCodeOutcome, PairingCodeRefusal,
    Reason, ToSupervisor, ToWorker, UnixMillis, WorkerState, WorkerStatus,
};
pub use messaging::{
    Direction, MessageQuery, MessageRecord, MessageStatus, OutgoingText, QueryAnswer, SendOutcome,
    SendRefusal,
};

/// Version of this protocol; a worker whose Hello carries another one is refused. 4 added
/// `RequestPairingCode` and `PairingCodeAnswer`.
pub const PROTOCOL_VERSION: u32 = 4;
