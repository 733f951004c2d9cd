//! Helpers for end-to-end tests that run the real binaries on loopback.

pub mod fleet;
pub mod flood;
pub mod http;
pub mod process;
pub mod procfs;
pub mod receiver;
pub mod sim;
pub mod sse;
pub mod volume;
pub mod wait;

pub use process::Supervisor;
pub use receiver::Receiver;
pub use sim::Sim;
pub use volume::Volume;
pub use wait::wait_until;
