//! A webhook receiver for end-to-end tests: a std `TcpListener` on loopback in its own thread,
//! recording every request and answering the scripted statuses in turn, then 200.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::wait::wait_until;

/// Largest request accepted.
const MAX_REQUEST: usize = 1 << 20;

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method and path, e.g. `POST /hook`.
    pub request_line: String,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is json")
    }

    /// Whether `X-Wafleet-Signature` is `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
    /// checked here independently of the supervisor's code.
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some(sig) = self.header("x-wafleet-signature") else {
            return false;
        };
        let mut t = None;
        let mut v1 = None;
        for part in sig.split(',') {
            match part.split_once('=') {
                Some(("t", v)) => t = Some(v),
                Some(("v1", v)) => v1 = Some(v),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let Ok(expected) = hex::decode(v1) else {
            return false;
        };
        mac.verify_slice(&expected).is_ok()
    }
}

/// A running receiver; stops on Drop.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts on `127.0.0.1:0`; the first answers are `statuses`, then 200.
    ///
    /// # Panics
    /// When loopback cannot be bound.
    pub fn start(statuses: &[u16]) -> Receiver {
        Self::on(
            TcpListener::bind("127.0.0.1:0").expect("bind receiver"),
            statuses,
        )
    }

    /// Starts on a given loopback port (to come back where a supervisor was told to send).
    ///
    /// # Panics
    /// When the port cannot be bound.
    pub fn start_on(port: u16, statuses: &[u16]) -> Receiver {
        Self::on(
            TcpListener::bind(("127.0.0.1", port)).expect("bind receiver port"),
            statuses,
        )
    }

    fn on(listener: TcpListener, statuses: &[u16]) -> Receiver {
        let addr = listener.local_addr().expect("receiver addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = statuses.to_vec();
        let (log, stopping) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let Ok(Some(received)) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().expect("receiver log").push(received);
                let status = script.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        Receiver {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL to give the supervisor.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().expect("receiver log").clone()
    }

    /// Waits until at least `n` requests came in; returns them all.
    ///
    /// # Panics
    /// When fewer came in by the deadline.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Received> {
        wait_until(&format!("{n} webhook requests"), deadline, || {
            let seen = self.received();
            if seen.len() >= n {
                Ok(seen)
            } else {
                Err(format!("{} so far", seen.len()))
            }
        })
    }

    /// Waits until a request satisfies `check`; returns it.
    ///
    /// # Panics
    /// When none did by the deadline.
    pub fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        check: impl Fn(&Received) -> bool,
    ) -> Received {
        wait_until(what, deadline, || {
            let seen = self.received();
            seen.iter().find(|r| check(r)).cloned().ok_or_else(|| {
                let bodies: Vec<_> = seen
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect();
                format!("{bodies:?}")
            })
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> io::Result<Option<Received>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_REQUEST {
            return Ok(None);
        }
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if raw.len() - (end + 4) < len {
            continue;
        }
        return Ok(Some(Received {
            request_line,
            headers,
            body: raw[end + 4..end + 4 + len].to_vec(),
        }));
    }
}
