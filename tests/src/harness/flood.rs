//! A flood of connections that each send part of a request and then nothing, and the test
//! process's own descriptor budget for it (every connection costs the client a descriptor too).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// How long one connect may take before it counts as failed.
const CONNECT_DEADLINE: Duration = Duration::from_secs(2);
/// The flood gives up after this many connects in a row fail (the server stopped accepting).
const MAX_FAILURES_IN_A_ROW: usize = 20;

/// Raises this process's soft open-file limit to its hard limit; returns the limit now.
///
/// # Panics
/// When the limits cannot be read or set.
pub fn raise_fd_limit() -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the soft open-file limit");
    }
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0
}

/// Descriptors this process has open now.
///
/// # Panics
/// When `/proc/self/fd` cannot be read.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Open connections that each sent `partial` and nothing more.
#[derive(Debug)]
pub struct HalfOpen {
    streams: Vec<TcpStream>,
    /// Connects that failed (refused or timed out).
    pub failed: usize,
    /// The first connect error, if any.
    pub first_error: Option<String>,
}

impl HalfOpen {
    /// Opens up to `n` connections to `addr`, one after the other, writing `partial` on each.
    /// The server may answer or close some at once; they are kept open on this side anyway.
    pub fn open(addr: SocketAddr, n: usize, partial: &[u8]) -> HalfOpen {
        let mut flood = HalfOpen {
            streams: Vec::with_capacity(n),
            failed: 0,
            first_error: None,
        };
        let mut in_a_row = 0;
        for _ in 0..n {
            match TcpStream::connect_timeout(&addr, CONNECT_DEADLINE) {
                Ok(mut stream) => {
                    in_a_row = 0;
                    // A connection the server already closed may refuse the write: still ours.
                    let _ = stream.write(partial);
                    flood.streams.push(stream);
                }
                Err(e) => {
                    flood.failed += 1;
                    in_a_row += 1;
                    flood.first_error.get_or_insert_with(|| e.to_string());
                    if in_a_row >= MAX_FAILURES_IN_A_ROW {
                        break;
                    }
                }
            }
        }
        flood
    }

    /// How many connections are open on this side.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Closes every connection.
    pub fn close(self) {
        drop(self.streams);
    }
}
