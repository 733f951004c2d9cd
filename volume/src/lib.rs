//! The sessions volume, as the supervisor and the workers share it.
//!
//! - [`atomic`]: durable writes (temp file, fsync, rename, fsync dir) and the cleanup of what
//!   interrupted ones leave behind;
//! - [`lock`]: exclusive `flock` locks held for a process's life;
//! - [`secret`]: key material that never reaches a log, and its base64 serde forms;
//! - [`seal`]: optional encryption at rest of the keys (`SESSIONS_KEY`);
//! - [`trouble`]: what a failed write says about the volume (full, read-only), and its probe;
//! - [`layout`]: where everything lives, and who owns it.
//!
//! No crate but this one names the files of the volume: the supervisor writes `account.json`
//! and its own root files, each worker the rest of its account directory, and neither touches
//! the other's.

pub mod atomic;
pub mod layout;
pub mod lock;
pub mod seal;
pub mod secret;
pub mod trouble;
