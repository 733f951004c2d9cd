//! `wa-sim`: the test harness and end-to-end tests of the fleet. The WhatsApp server simulator
//! joins this crate with the protocol (issue 3).
//!
//! ```text
//!  harness::volume    a temp sessions directory with accounts (and frozen creds) in it
//!  harness::process   the real `supervisor` binary: start, read its JSON log, kill by pid on drop
//!  harness::http      a small blocking HTTP/1.1 client for the admin API
//!  harness::wait      wait for a state under a deadline; fail with the last state seen
//! ```

pub mod harness;
