//! The supervisor's end of the worker links: a socket in a private runtime directory, one task
//! per link.

mod link;
mod listener;

pub use listener::{IpcListener, RuntimeDir};
