//! What a worker keeps on the volume: its credentials, written atomically, its Signal keys and
//! messaging state ([`signal::KeyStore`], loaded on demand), and its lock.
//!
//! `atomic` and `lock` are shared with the supervisor, which writes `account.json` and holds
//! `.supervisor.lock` the same way.

pub mod atomic;
pub mod creds;
pub mod devices;
pub mod groups;
pub mod lock;
pub mod messages;
pub mod secret;
pub mod signal;
pub mod trouble;
