//! `supervisor healthcheck`: asks a running supervisor's `GET /health` and exits 0 when it
//! answers that the service is up, so a container image needs no curl (Dockerfile
//! `HEALTHCHECK CMD ["supervisor","healthcheck"]`).
//!
//! A plain HTTP/1.0 GET over a std TCP socket, under one deadline for the connect, the request
//! and the answer. Up means a 2xx whose JSON body, when it has an `ok` field, says `true`.
//! Anything else is one line on stderr and exit code 1: nothing listening, a timeout, a non-2xx
//! status, or a body that says the service is not ok.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;

/// The most of an answer that is read (`/health` answers a few hundred bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// `supervisor healthcheck`'s arguments.
#[derive(Args, Clone, Debug)]
pub struct HealthcheckArgs {
    /// The port the service listens on; the check goes to loopback.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// The address the service listens on: a specific one is asked there, 0.0.0.0 and :: on
    /// loopback.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    pub bind_addr: String,
    /// The URL to ask instead (`http://host:port/health`; plain HTTP only).
    #[arg(long)]
    pub url: Option<String>,
    /// The whole check must end within this.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Where a check goes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Target {
    /// `host:port` as given (for the `Host` header and the messages).
    pub authority: String,
    /// The path and query.
    pub path: String,
}

impl HealthcheckArgs {
    /// The target these arguments name.
    ///
    /// # Errors
    /// A message when `--url` is not a plain `http://` URL.
    pub fn target(&self) -> Result<Target, String> {
        if let Some(url) = &self.url {
            return Target::parse(url);
        }
        let ip = match self.bind_addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ok(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Ok(ip) => ip,
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        Ok(Target {
            authority: SocketAddr::new(ip, self.port).to_string(),
            path: "/health".into(),
        })
    }
}

impl Target {
    /// Parses `http://host[:port][/path]` (port 80 when absent, path `/health` when absent).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {url:?}: only http:// URLs can be checked"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/health"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("--url {url:?}: no usable host"));
        }
        // `host:port`, or `[v6]:port`.
        let has_port = match authority.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            path: path.to_owned(),
        })
    }
}

/// What the service answered, when it answered.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// Runs the check.
///
/// # Errors
/// Why the service is not up, in one line; `Ok` holds the line that says it is.
pub fn check(args: &HealthcheckArgs) -> Result<String, String> {
    let target = args.target()?;
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms.max(1));
    let answer = get(&target, deadline)?;
    verdict(&target, &answer)
}

/// Whether `answer` says the service is up: the line to print either way.
///
/// # Errors
/// The reason it is not up.
pub fn verdict(target: &Target, answer: &Answer) -> Result<String, String> {
    let at = &target.authority;
    let json = serde_json::from_str::<serde_json::Value>(&answer.body).ok();
    let said = json
        .as_ref()
        .and_then(|j| j.get("status"))
        .and_then(|s| s.as_str())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    if !(200..300).contains(&answer.status) {
        let reason = json
            .as_ref()
            .and_then(|j| j.get("reason"))
            .and_then(|r| r.as_str())
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        return Err(format!(
            "unhealthy: {at} answered {}{said}{reason}",
            answer.status
        ));
    }
    match json.as_ref().and_then(|j| j.get("ok")) {
        None | Some(serde_json::Value::Bool(true)) => {
            Ok(format!("healthy: {at} answered {}{said}", answer.status))
        }
        Some(other) => Err(format!(
            "unhealthy: {at} answered {} but ok is {other}{said}",
            answer.status
        )),
    }
}

/// `GET target` before `deadline`.
///
/// # Errors
/// One line: nothing listening, a timeout, a malformed answer.
pub fn get(target: &Target, deadline: Instant) -> Result<Answer, String> {
    let at = &target.authority;
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("timeout: no answer from {at} within the deadline ({what})"))
    };
    let addrs: Vec<SocketAddr> = at
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {at}: {e}"))?
        .collect();
    let mut last = format!("cannot resolve {at}: no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left("connect")?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!("nothing listening on {addr} (connection refused)");
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("timeout: {addr} did not accept the connection in time");
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {at}\r\nUser-Agent: supervisor-healthcheck\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        target.path
    );
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("timeout: no answer from {at} within the deadline")
        } else {
            format!("connection to {at} failed: {e}")
        }
    };
    stream
        .set_write_timeout(Some(left("request")?))
        .map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut limited = (&mut stream).take(MAX_ANSWER);
    loop {
        limited
            .get_mut()
            .set_read_timeout(Some(left("answer")?))
            .map_err(io)?;
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    parse_answer(&raw).ok_or_else(|| {
        let head = String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned();
        format!("{at} did not answer HTTP: {head:?}")
    })
}

/// Splits a whole HTTP/1.x answer into its status and body.
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let body = String::from_utf8_lossy(&raw[end + 4..]).into_owned();
    Some(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn args(url: &str) -> HealthcheckArgs {
        HealthcheckArgs {
            port: 8080,
            bind_addr: "0.0.0.0".into(),
            url: Some(url.into()),
            timeout_ms: 500,
        }
    }

    /// A server on loopback that answers one connection with `answer` (after reading the
    /// request), or holds it open without a word when `answer` is `None`.
    fn serve_once(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            match answer {
                Some(a) => {
                    let _ = s.write_all(a.as_bytes());
                }
                None => {
                    // Silent until the client gives up and closes.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.read(&mut buf);
                }
            }
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, handle)
    }

    #[test]
    fn a_healthy_answer_is_up_and_the_request_is_a_plain_get() {
        let body = r#"{"ok":true,"status":"healthy","connected":2}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (url, server) = serve_once(Some(answer));
        let line = check(&args(&url)).expect("up");
        assert!(line.starts_with("healthy: 127.0.0.1:"), "{line}");
        assert!(line.ends_with("answered 200 (healthy)"), "{line}");
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /health HTTP/1.0\r\n"), "{request}");
    }

    #[test]
    fn a_503_or_ok_false_is_down_with_the_reason() {
        let (url, _s) = serve_once(Some(
            "HTTP/1.1 503 Service Unavailable\r\n\r\n{\"ok\":false,\"status\":\"unhealthy\",\"reason\":\"storage_full: disk\"}",
        ));
        let e = check(&args(&url)).expect_err("down");
        assert!(
            e.contains("answered 503 (unhealthy): storage_full: disk"),
            "{e}"
        );

        let (url, _s) = serve_once(Some("HTTP/1.1 200 OK\r\n\r\n{\"ok\":false}"));
        let e = check(&args(&url)).expect_err("down");
        assert!(e.contains("ok is false"), "{e}");
    }

    #[test]
    fn a_closed_port_says_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let e = check(&args(&format!("http://{addr}/health"))).expect_err("down");
        assert!(e.starts_with("nothing listening on"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out_within_the_deadline() {
        let (url, _s) = serve_once(None);
        let started = Instant::now();
        let e = check(&args(&url)).expect_err("down");
        assert!(e.starts_with("timeout:"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_non_http_answer_is_named() {
        let (url, _s) = serve_once(Some("SSH-2.0-OpenSSH\r\n"));
        let e = check(&args(&url)).expect_err("down");
        assert!(e.contains("did not answer HTTP"), "{e}");
    }

    #[test]
    fn targets_from_the_port_the_bind_address_or_a_url() {
        let mut a = args("http://10.0.0.5:9000/healthz?x=1");
        assert_eq!(
            a.target(),
            Ok(Target {
                authority: "10.0.0.5:9000".into(),
                path: "/healthz?x=1".into()
            })
        );
        a.url = Some("http://example.test".into());
        assert_eq!(
            a.target().map(|t| (t.authority, t.path)),
            Ok(("example.test:80".into(), "/health".into()))
        );
        a.url = Some("http://[::1]:81/health".into());
        assert_eq!(a.target().map(|t| t.authority), Ok("[::1]:81".into()));
        a.url = Some("http://[::1]/health".into());
        assert_eq!(a.target().map(|t| t.authority), Ok("[::1]:80".into()));
        a.url = Some("https://example.test/health".into());
        assert!(a.target().is_err());
        a.url = None;
        a.port = 9001;
        assert_eq!(a.target().map(|t| t.authority), Ok("127.0.0.1:9001".into()));
        a.bind_addr = "::".into();
        assert_eq!(a.target().map(|t| t.authority), Ok("[::1]:9001".into()));
        a.bind_addr = "10.1.2.3".into();
        assert_eq!(a.target().map(|t| t.authority), Ok("10.1.2.3:9001".into()));
    }
}
