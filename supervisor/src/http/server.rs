//! The admin API's accept loop: HTTP/1.1 on hyper, with the limits a public port needs.
//!
//! 1. Accept. When accept itself fails for want of descriptors (`EMFILE`, `ENFILE`, ...), back
//!    off briefly and log once until it works again; per-connection errors are skipped.
//! 2. Admit: at the connection cap ([`connection_cap`]) the connection gets a canned 503 and is
//!    closed at once, so a flood can never take the descriptors the workers need. The first
//!    refusal of a burst and its end are logged, never each connection.
//! 3. Serve, each connection in its own task:
//!    - the request head must arrive within the header timeout; hyper restarts that timer when
//!      a keep-alive connection goes idle, so it is also the idle timeout;
//!    - the body must be read and the response head produced within the request timeout (a
//!      408 otherwise); a stream such as `/api/events` has its head out at once and then runs
//!      on, unbounded by it;
//!    - a write that makes no progress for [`WRITE_STALL_TIMEOUT`] ends the connection.
//! 4. On cancel: stop accepting, ask every connection to finish its request and close, and
//!    return when they have.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::connection_cap::{connection_cap, Admission, Gate};
use super::error::ApiError;
use super::security_headers;
use super::write_stall::WriteStall;
use crate::cache::Cache;

/// A connection whose writes make no progress this long is closed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections the kernel queues for the accept loop: a burst of connects (a flood, or a
/// client's retries) is absorbed instead of dropped SYNs costing every client a second.
const LISTEN_BACKLOG: u32 = 1024;
/// Pause after accept fails for want of descriptors, before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// What a connection over the cap gets before it is closed (a single non-blocking write).
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
retry-after: 1\r\n\
x-content-type-options: nosniff\r\n\
content-length: 95\r\n\r\n\
{\"success\":false,\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections\"}}";

/// The admin server's limits.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// The request head (and, on a kept-alive connection, the next one) must arrive within this.
    pub header_timeout: Duration,
    /// The body must be read and the response head produced within this.
    pub request_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (0: from the open-file limit).
    pub max_connections: usize,
    /// The supervisor's open-file limit.
    pub fd_limit: u64,
}

/// The accept loop and its connections.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    accounts: Arc<Cache>,
}

impl HttpServer {
    /// A server for `router` on `listener`; `accounts` sizes the connection cap.
    pub fn new(
        listener: TcpListener,
        router: Router,
        limits: HttpLimits,
        accounts: Arc<Cache>,
    ) -> Self {
        HttpServer {
            listener,
            router,
            limits,
            accounts,
        }
    }

    /// The connection cap with the accounts there are now.
    pub fn cap(&self) -> usize {
        connection_cap(
            self.limits.fd_limit,
            self.accounts.count(),
            self.limits.max_connections,
        )
    }

    /// Accepts and serves until `token` is cancelled, then lets every connection finish its
    /// request and returns once they are closed.
    pub async fn run(self, token: CancellationToken) {
        let connections = TaskTracker::new();
        let open = Arc::new(AtomicUsize::new(0));
        let mut gate = Gate::default();
        let mut accept_failing = false;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    if !accept_failing {
                        warn!(error = %e, "http accept failed; backing off until it works again");
                        accept_failing = true;
                    }
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            if accept_failing {
                info!("http accept works again");
                accept_failing = false;
            }
            let cap = self.cap();
            match gate.admit(open.load(Ordering::Relaxed), cap) {
                Admission::Refuse { burst_started } => {
                    if burst_started {
                        warn!(cap, "http connection cap reached; refusing new connections");
                    }
                    refuse(stream);
                    continue;
                }
                Admission::Serve {
                    burst_ended: Some(refused),
                } => info!(cap, refused, "http connections below the cap again"),
                Admission::Serve { burst_ended: None } => {}
            }
            let slot = Slot::take(&open);
            connections.spawn(serve(
                stream,
                self.router.clone(),
                self.limits,
                token.child_token(),
                slot,
            ));
        }
        drop(self.listener);
        connections.close();
        connections.wait().await;
    }
}

/// Binds `addr` (`host:port`; the first address that binds wins) with a deep backlog.
///
/// # Errors
/// When the name does not resolve or no address can be bound.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "the address resolves to nothing",
        )
    }))
}

/// One open connection, counted while it lives.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::Relaxed);
        Slot(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Tells a connection over the cap to come back later, without waiting for it, and closes it.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY_RESPONSE);
}

async fn serve(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    token: CancellationToken,
    _slot: Slot,
) {
    let io = TokioIo::new(WriteStall::new(stream, WRITE_STALL_TIMEOUT));
    let request_timeout = limits.request_timeout;
    let service = service_fn(move |request: Request<Incoming>| {
        let app = TowerToHyperService::new(router.clone());
        async move {
            let answered = tokio::time::timeout(
                request_timeout,
                hyper::service::Service::call(&app, request),
            )
            .await;
            match answered {
                Ok(response) => response,
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        biased;
        _ = token.cancelled() => None,
        ended = connection.as_mut() => Some(ended),
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        debug!(error = %e, "http connection ended");
    }
}

/// 408 for a request whose body or answer took too long; the connection closes after it.
fn timed_out() -> Response<Body> {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request was not received and answered in time",
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    security_headers::apply(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_declares_its_exact_length() {
        let text = std::str::from_utf8(BUSY_RESPONSE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
