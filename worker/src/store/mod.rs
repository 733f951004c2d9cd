//! What a worker keeps on the volume: its credentials, written atomically, its Signal keys and
//! messaging state ([`signal::KeyStore`], loaded on demand), and its lock.
//!
//! Atomic writes, locks, secrets, storage trouble and the directory layout come from the
//! `volume` crate, which the supervisor shares; they are re-exported here.

pub mod creds;
pub mod devices;
pub mod groups;
pub mod messages;
pub mod signal;

pub use volume::{atomic, layout, lock, secret, trouble};
