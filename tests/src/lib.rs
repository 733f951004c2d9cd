//! `wa-sim`: the WhatsApp server simulator, the test harness and the end-to-end tests of the
//! fleet.
//!
//! ```text
//!  sim                 WhatsApp's edge and the scanning phone on loopback: Noise XX with its own
//!                      root certificate, QR pairing, login, keepalive, prekeys, message delivery,
//!                      fault injection, and an HTTP control API (binary: src/bin/wa-sim.rs)
//!  harness::volume    a temp sessions directory with accounts (and frozen creds) in it
//!  harness::process   the real `supervisor` binary: start, read its JSON log, kill by pid on drop
//!  harness::http      a small blocking HTTP/1.1 client for the admin API
//!  harness::wait      wait for a state under a deadline; fail with the last state seen
//! ```

pub mod harness;
pub mod sim;
