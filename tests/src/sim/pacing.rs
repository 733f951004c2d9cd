//! What the tests of the fleet's pacing need from the server's side: when each connection was
//! accepted and which device logged in on it (`GET /dials`), and a server that ends every
//! connection right after its `<success>` (`POST /after-login`).
//!
//! ```text
//! GET  /dials        → [{"conn_id","accepted_at_ms","jid","logged_in_at_ms"}]  oldest first
//! POST /after-login  {"fault": "end"|"drop"|"restart"|"error"|null[, "code"]}   → {"ok":true}
//! POST /drop-all     {}  every logged-in connection's TCP dropped at once → {"ok":true,"dropped":N}
//! ```
//!
//! `accepted_at_ms` and `logged_in_at_ms` are Unix milliseconds; `jid` and `logged_in_at_ms` are
//! `null` until (unless) the connection logs in. The last [`KEPT`] connections are kept.
//! `/after-login` makes every later login end right after `<success>` (and the edge routing
//! `<ib>`) with that fault: `end` writes `<xmlstreamend/>`, `drop` drops the TCP stream,
//! `restart` is `<stream:error code="515"/>`, `error` is `<stream:error code=code/>`; `null`
//! turns it off. `/drop-all` is `/drop` for every logged-in device in one step (under one lock),
//! as when a server drops all its sockets; it returns once every one is closed.

use std::collections::VecDeque;

use serde::Serialize;

use tokio::sync::{mpsc, oneshot};

use super::connection::Command;
use super::faults::Fault;
use super::registry::{ConnId, ConnState, Registry};

/// How many connections the timeline keeps.
pub const KEPT: usize = 100_000;

/// One accepted connection.
#[derive(Clone, Debug, Serialize)]
pub struct DialRecord {
    /// The connection.
    pub conn_id: ConnId,
    /// When the WebSocket was accepted, Unix milliseconds.
    pub accepted_at_ms: u64,
    /// The device that logged in on it, if one did.
    pub jid: Option<String>,
    /// When `<success>` went out, Unix milliseconds.
    pub logged_in_at_ms: Option<u64>,
}

/// The timeline of connections and the after-login knob.
#[derive(Debug, Default)]
pub struct Pacing {
    dials: VecDeque<DialRecord>,
    after_login: Option<Fault>,
}

impl Pacing {
    /// A connection was accepted at `now_ms`.
    pub(crate) fn accepted(&mut self, conn_id: ConnId, now_ms: u64) {
        if self.dials.len() == KEPT {
            self.dials.pop_front();
        }
        self.dials.push_back(DialRecord {
            conn_id,
            accepted_at_ms: now_ms,
            jid: None,
            logged_in_at_ms: None,
        });
    }

    /// Device `jid` logged in on `conn_id` at `now_ms`; returns how the connection must end at
    /// once, if the knob says so.
    pub(crate) fn logged_in(&mut self, conn_id: ConnId, jid: String, now_ms: u64) -> Option<Fault> {
        if let Some(record) = self.dials.iter_mut().rev().find(|d| d.conn_id == conn_id) {
            record.jid = Some(jid);
            record.logged_in_at_ms = Some(now_ms);
        }
        self.after_login
    }

    /// Sets (or clears) the fault that ends every later login.
    pub(crate) fn set_after_login(&mut self, fault: Option<Fault>) {
        self.after_login = fault;
    }

    /// Every kept connection, oldest first.
    pub fn dials(&self) -> Vec<DialRecord> {
        self.dials.iter().cloned().collect()
    }
}

/// Sends [`Fault::Drop`] to every logged-in connection; returns one receiver per connection,
/// told once it is closed.
pub(crate) fn drop_all(registry: &mut Registry) -> Vec<oneshot::Receiver<()>> {
    let live: Vec<mpsc::UnboundedSender<Command>> = registry
        .conns_mut()
        .filter(|(_, c)| c.state == ConnState::LoggedIn)
        .map(|(_, c)| c.commands.clone())
        .collect();
    live.into_iter()
        .filter_map(|commands| {
            let (done, closed) = oneshot::channel();
            commands
                .send(Command::Fault {
                    fault: Fault::Drop,
                    done: Some(done),
                })
                .ok()
                .map(|()| closed)
        })
        .collect()
}

/// The wall clock in Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fault an `/after-login` body names, or `Err` with what is wrong.
pub(crate) fn parse_fault(name: Option<&str>, code: Option<u16>) -> Result<Option<Fault>, String> {
    Ok(match name {
        None => None,
        Some("end") => Some(Fault::End),
        Some("drop") => Some(Fault::Drop),
        Some("restart") => Some(Fault::Restart),
        Some("error") => Some(Fault::Error(
            code.ok_or("fault \"error\" needs a numeric code")?,
        )),
        Some(other) => {
            return Err(format!(
                "unknown fault {other:?}: end, drop, restart, error or null"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_connection_and_its_login_and_keeps_the_knob() {
        let mut p = Pacing::default();
        p.accepted(ConnId(1), 1000);
        p.accepted(ConnId(2), 1100);
        assert_eq!(
            p.logged_in(ConnId(2), "1:2@s.whatsapp.net".into(), 1150),
            None
        );
        p.set_after_login(Some(Fault::End));
        assert_eq!(
            p.logged_in(ConnId(1), "3:4@s.whatsapp.net".into(), 1200),
            Some(Fault::End)
        );
        let dials = p.dials();
        assert_eq!(dials.len(), 2);
        assert_eq!(dials[0].jid.as_deref(), Some("3:4@s.whatsapp.net"));
        assert_eq!(dials[1].logged_in_at_ms, Some(1150));
    }

    #[test]
    fn parses_the_knob() {
        assert_eq!(parse_fault(None, None), Ok(None));
        assert_eq!(parse_fault(Some("end"), None), Ok(Some(Fault::End)));
        assert_eq!(
            parse_fault(Some("error"), Some(503)),
            Ok(Some(Fault::Error(503)))
        );
        assert!(parse_fault(Some("error"), None).is_err());
        assert!(parse_fault(Some("boom"), None).is_err());
    }
}
