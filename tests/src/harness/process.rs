//! The real `supervisor` binary under test: started on loopback with an ephemeral port, its JSON
//! log captured, and every process it (or its workers) started killed by pid when the test ends.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::http::{self, Response};
use super::wait::wait_until;

/// The admin token every test supervisor uses.
pub const TOKEN: &str = "test-admin-token";

/// How long a supervisor may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The target directory's binary `name` (built by `cargo build --workspace --bins`).
///
/// # Panics
/// When the binary has not been built.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, a proof binary from target/<profile>/.
    let parent = exe.parent().expect("target/<profile>/…");
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().expect("target/<profile>/deps/<test>")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A WebSocket URL on loopback where nothing listens: every dial is refused at once.
///
/// # Panics
/// When no loopback port can be bound.
pub fn refused_ws_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("ws://127.0.0.1:{port}/ws/chat")
}

/// A running supervisor.
#[derive(Debug)]
pub struct Supervisor {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    seen_workers: Mutex<BTreeSet<u32>>,
    exited: Option<ExitStatus>,
}

/// The environment every test supervisor gets; `extra` entries override it.
fn base_env(sessions: &Path) -> Vec<(String, String)> {
    [
        ("SESSIONS_PATH", sessions.display().to_string()),
        ("PORT", "0".into()),
        ("BIND_ADDR", "127.0.0.1".into()),
        ("ADMIN_TOKEN", TOKEN.into()),
        ("LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
        ("WA_WS_URL", refused_ws_url()),
        // Never the real WhatsApp Web: a test that wants a version refresh points it at wa-sim.
        ("WA_VERSION_URL", String::new()),
        ("RECONNECT_BASE_MS", "100".into()),
        ("RECONNECT_MAX_MS", "400".into()),
        ("BOOT_JITTER_MIN_MS", "50".into()),
        ("BOOT_JITTER_MAX_MS", "150".into()),
        ("SHUTDOWN_TIMEOUT_MS", "5000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Supervisor {
    /// Starts a supervisor on `sessions` and waits until it listens.
    ///
    /// # Panics
    /// When it exits or does not listen in time (its log is printed).
    pub fn start(sessions: &Path, extra: &[(&str, &str)]) -> Supervisor {
        match Self::try_start(sessions, extra) {
            Ok(s) => s,
            Err(e) => panic!("supervisor did not start: {e:#}"),
        }
    }

    /// Starts a supervisor and waits until it listens, or until it exits.
    ///
    /// # Errors
    /// When it exits first (with its status and log) or does not listen in time.
    pub fn try_start(sessions: &Path, extra: &[(&str, &str)]) -> anyhow::Result<Supervisor> {
        Self::try_start_limited(sessions, extra, None)
    }

    /// Starts a supervisor whose open-file limit (soft and hard) is `fd_limit`, as on a host
    /// that allows fewer descriptors than a client can open; waits until it listens.
    ///
    /// # Panics
    /// When it exits or does not listen in time (its log is printed).
    pub fn start_with_fd_limit(
        sessions: &Path,
        extra: &[(&str, &str)],
        fd_limit: u64,
    ) -> Supervisor {
        match Self::try_start_limited(sessions, extra, Some(fd_limit)) {
            Ok(s) => s,
            Err(e) => panic!("supervisor did not start: {e:#}"),
        }
    }

    fn try_start_limited(
        sessions: &Path,
        extra: &[(&str, &str)],
        fd_limit: Option<u64>,
    ) -> anyhow::Result<Supervisor> {
        let mut child = spawn(sessions, extra, fd_limit)?;
        let log = capture(&mut child);
        let started = Instant::now();
        loop {
            if let Some(addr) = listening_addr(&log) {
                return Ok(Supervisor {
                    child,
                    addr,
                    log,
                    seen_workers: Mutex::new(BTreeSet::new()),
                    exited: None,
                });
            }
            if let Some(status) = child.try_wait()? {
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "supervisor exited with {status}; log:\n{}",
                    lines(&log).join("\n")
                );
            }
            if started.elapsed() > START_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "supervisor did not listen in time; log:\n{}",
                    lines(&log).join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a supervisor that is expected to fail at start; returns its exit status and log.
    ///
    /// # Panics
    /// When it does not exit within the deadline.
    pub fn run_to_exit(sessions: &Path, extra: &[(&str, &str)]) -> (ExitStatus, String) {
        let mut child = spawn(sessions, extra, None).expect("spawn supervisor");
        let log = capture(&mut child);
        let status = wait_for_exit(&mut child, START_DEADLINE);
        std::thread::sleep(Duration::from_millis(50));
        (status, lines(&log).join("\n"))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its own origin, as a browser on its pages would send it: `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `method path` with the admin token.
    ///
    /// # Panics
    /// On I/O errors.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let auth = format!("Bearer {TOKEN}");
        self.call_with(method, path, &[("Authorization", &auth)], body)
    }

    /// Sends `method path` with `headers`, and `Content-Type: application/json` when there is
    /// a body and `headers` name no content type.
    ///
    /// # Panics
    /// On I/O errors.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        let mut all = headers.to_vec();
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            all.push(("Content-Type", "application/json"));
        }
        http::request(self.addr, method, path, &all, body.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Submits the login form with `token`, as a browser on the login page would (our own
    /// `Origin` unless `extra` names one, a form body), plus `extra` headers.
    ///
    /// # Panics
    /// On I/O errors.
    pub fn login(&self, token: &str, extra: &[(&str, &str)]) -> Response {
        let origin = self.origin();
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("origin")) {
            headers.push(("Origin", origin.as_str()));
        }
        headers.extend_from_slice(extra);
        let body = format!("token={}&next=%2F", form_encode(token));
        self.call_with("POST", "/login", &headers, Some(&body))
    }

    /// Logs in with the admin token; returns the `Cookie` header value that carries the session.
    ///
    /// # Panics
    /// When the login does not answer 303 with a session cookie.
    pub fn browser_session(&self) -> String {
        let r = self.login(TOKEN, &[]);
        assert_eq!(r.status, 303, "login: {}", r.text());
        r.session_cookie()
            .map(|value| format!("{}={value}", http::SESSION_COOKIE))
            .unwrap_or_else(|| panic!("no session cookie in {:?}", r.headers))
    }

    /// Opens `GET /api/events{query}` with the admin token and `extra` headers.
    ///
    /// # Panics
    /// On I/O errors.
    pub fn events_stream(
        &self,
        query: &str,
        extra: &[(&str, &str)],
    ) -> crate::harness::sse::EventStream {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        crate::harness::sse::EventStream::open(self.addr, &format!("/api/events{query}"), &headers)
            .unwrap_or_else(|e| panic!("GET /api/events failed: {e}"))
    }

    /// `GET /api/status/dashboard`, remembering every worker pid it shows.
    ///
    /// # Panics
    /// When the dashboard does not answer 200.
    pub fn dashboard(&self) -> Value {
        let r = self.call("GET", "/api/status/dashboard", None);
        assert_eq!(r.status, 200, "dashboard: {}", r.text());
        let body = r.json();
        if let Some(accounts) = body["accounts"].as_array() {
            let mut seen = self.seen_workers.lock().expect("lock");
            seen.extend(
                accounts
                    .iter()
                    .filter_map(|a| a["pid"].as_u64())
                    .map(|p| p as u32),
            );
        }
        body
    }

    /// One account from the dashboard.
    ///
    /// # Panics
    /// When the account is not there.
    pub fn account(&self, id: &str) -> Value {
        self.dashboard()["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["accountId"] == id).cloned())
            .unwrap_or_else(|| panic!("account {id} not in the dashboard"))
    }

    /// The messages `account` received, as its messages API lists them (newest first, up to
    /// 500).
    ///
    /// # Panics
    /// On I/O errors or an answer that is not JSON.
    pub fn received(&self, account: &str) -> Vec<Value> {
        let list = self
            .call(
                "GET",
                &format!("/api/whatsapp/accounts/{account}/messages?direction=in&limit=500"),
                None,
            )
            .json();
        list["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `account` lists the received message `id`; returns it.
    ///
    /// # Panics
    /// When it does not within `deadline` (the message names `what`).
    pub fn wait_received(&self, account: &str, id: &str, what: &str, deadline: Duration) -> Value {
        wait_until(what, deadline, || {
            let list = self.received(account);
            list.iter()
                .find(|m| m["id"] == id)
                .cloned()
                .ok_or_else(|| format!("{} received, {id} not among them", list.len()))
        })
    }

    /// Waits until the dashboard satisfies `check` (which explains itself on failure).
    pub fn wait_dashboard(
        &self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        wait_until(what, deadline, || {
            let d = self.dashboard();
            if check(&d) {
                Ok(d)
            } else {
                Err(d.to_string())
            }
        })
    }

    /// Sends `signal` to the supervisor.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal the supervisor");
    }

    /// Waits for the supervisor to exit.
    ///
    /// # Panics
    /// When it is still running after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let status = wait_for_exit(&mut self.child, deadline);
        self.exited = Some(status);
        status
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        lines(&self.log)
    }

    /// The JSON log events so far whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        json_events(&self.log)
            .filter(|v| v["message"].as_str().is_some_and(|m| m == message))
            .collect()
    }

    /// Waits for a JSON log event whose message starts with `prefix`.
    pub fn wait_event(&self, prefix: &str, deadline: Duration) -> Value {
        wait_until(&format!("log event {prefix:?}"), deadline, || {
            json_events(&self.log)
                .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
                .ok_or_else(|| "not yet".to_string())
        })
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // Ask first, so the supervisor stops its workers; then make sure.
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in self
            .seen_workers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
        {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- supervisor log ----\n{}\n---- end ----",
                self.log().join("\n")
            );
        }
    }
}

fn spawn(sessions: &Path, extra: &[(&str, &str)], fd_limit: Option<u64>) -> anyhow::Result<Child> {
    let mut cmd = match fd_limit {
        // The shell lowers both limits and execs the supervisor in its place (same pid).
        Some(limit) => {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\""))
                .arg(binary("supervisor"));
            sh
        }
        None => Command::new(binary("supervisor")),
    };
    // Nothing from the test runner's environment may redirect the supervisor.
    cmd.env_remove("RAILWAY_VOLUME_MOUNT_PATH")
        .env_remove("WORKER_BIN")
        .env_remove("WA_TLS_CA_FILE")
        .envs(base_env(sessions))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().context("spawn supervisor")
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Collects stdout and stderr lines in the background.
fn capture(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let out = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let err = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [out, err].into_iter().flatten() {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().expect("log lock").push(line);
            }
        });
    }
    log
}

fn lines(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

fn listening_addr(log: &Arc<Mutex<Vec<String>>>) -> Option<SocketAddr> {
    json_events(log)
        .find(|v| v["message"] == "http listening")
        .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
        .or_else(|| {
            // LOG_FORMAT=pretty: `… http listening addr=127.0.0.1:4321`.
            lines(log)
                .iter()
                .filter(|l| l.contains("http listening"))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .and_then(|a| a.parse().ok())
                })
        })
}

/// The log lines that are JSON events (the token banner and panics are not).
fn json_events(log: &Arc<Mutex<Vec<String>>>) -> impl Iterator<Item = Value> {
    lines(log)
        .into_iter()
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
}

/// Waits for `child` to exit under `deadline`.
fn wait_for_exit(child: &mut Child, deadline: Duration) -> ExitStatus {
    wait_until("the supervisor to exit", deadline, || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    })
}
