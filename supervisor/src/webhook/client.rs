//! A small HTTP/1.1 client for webhook POSTs: one connection per attempt, plain TCP for `http`,
//! rustls (ring, webpki roots) for `https`, one deadline over connect, TLS, request and the
//! response head. Redirects are not followed: a 3xx is a failure like any other non-2xx.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::url::WebhookUrl;

/// Why an attempt got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The URL's host cannot be a TLS server name.
    #[error("webhook host is not a valid server name")]
    ServerName,
    /// A header value could not be built.
    #[error("cannot build the webhook request")]
    Request(#[source] hyper::http::Error),
    /// TCP connect failed (refused, unreachable, DNS).
    #[error("cannot connect to the webhook receiver")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed (certificate, protocol).
    #[error("tls handshake with the webhook receiver failed")]
    Tls(#[source] io::Error),
    /// The HTTP exchange failed.
    #[error("http exchange with the webhook receiver failed")]
    Http(#[source] hyper::Error),
    /// The answer's body could not be read, or was too long.
    #[error("cannot read the answer's body: {0}")]
    Body(String),
    /// No answer within the deadline.
    #[error("the webhook receiver did not answer within {0:?}")]
    Timeout(Duration),
}

/// Sends webhook POSTs.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client whose attempts each end after `timeout`, trusting the webpki roots.
    pub fn new(timeout: Duration) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            user_agent: HeaderValue::from_static(concat!("wafleet/", env!("CARGO_PKG_VERSION"))),
        }
    }

    /// POSTs `body` as JSON to `url` with the extra `headers`; returns the answer's status.
    ///
    /// # Errors
    /// [`SendError`] when no status came back in time.
    pub async fn post(
        &self,
        url: &WebhookUrl,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<StatusCode, SendError> {
        match tokio::time::timeout(self.timeout, self.exchange(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &WebhookUrl,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<StatusCode, SendError> {
        let Target {
            https,
            authority,
            host,
            port,
            path,
        } = Target::of(url);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, self.user_agent.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(SendError::Request)?;

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(SendError::Connect)?;
        let _ = tcp.set_nodelay(true);
        if https {
            let name = ServerName::try_from(host).map_err(|_| SendError::ServerName)?;
            let tls = self.tls.connect(name, tcp).await.map_err(SendError::Tls)?;
            roundtrip(TokioIo::new(tls), request).await
        } else {
            roundtrip(TokioIo::new(tcp), request).await
        }
    }
}

impl Client {
    /// GETs `url` with `user_agent`; returns the status and at most `max` bytes of the body
    /// (a longer body is an error).
    ///
    /// # Errors
    /// [`SendError`] when no whole answer came back in time.
    pub async fn get(
        &self,
        url: &WebhookUrl,
        user_agent: &'static str,
        max: usize,
    ) -> Result<(StatusCode, Bytes), SendError> {
        let fetch = async {
            let Target {
                https,
                authority,
                host,
                port,
                path,
            } = Target::of(url);
            let request = Request::builder()
                .method(Method::GET)
                .uri(path)
                .header(HOST, authority)
                .header(USER_AGENT, user_agent)
                .body(Full::new(Bytes::new()))
                .map_err(SendError::Request)?;
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(SendError::Connect)?;
            if https {
                let name = ServerName::try_from(host).map_err(|_| SendError::ServerName)?;
                let tls = self.tls.connect(name, tcp).await.map_err(SendError::Tls)?;
                roundtrip_body(TokioIo::new(tls), request, max).await
            } else {
                roundtrip_body(TokioIo::new(tcp), request, max).await
            }
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }
}

/// Where a URL's request goes.
struct Target {
    https: bool,
    authority: String,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn of(url: &WebhookUrl) -> Target {
        let uri = url.uri();
        let https = uri.scheme_str() == Some("https");
        Target {
            https,
            authority: uri
                .authority()
                .map(|a| a.as_str())
                .unwrap_or_default()
                .to_owned(),
            host: uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        }
    }
}

/// One request on a fresh connection, reading the answer's body up to `max` bytes.
async fn roundtrip_body<T>(
    io: T,
    request: Request<Full<Bytes>>,
    max: usize,
) -> Result<(StatusCode, Bytes), SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Limited};
    let (mut sender, conn) = http1::handshake(io).await.map_err(SendError::Http)?;
    // The connection is driven on its own while the body is read; it ends with the body.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let answer = sender
            .send_request(request)
            .await
            .map_err(SendError::Http)?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), max)
            .collect()
            .await
            .map_err(|e| SendError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

/// One request on a fresh connection; the connection is dropped once the status is in.
async fn roundtrip<T>(io: T, request: Request<Full<Bytes>>) -> Result<StatusCode, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(io).await.map_err(SendError::Http)?;
    let mut conn = std::pin::pin!(conn);
    let mut answer = std::pin::pin!(sender.send_request(request));
    tokio::select! {
        biased;
        answer = &mut answer => answer.map(|r| r.status()).map_err(SendError::Http),
        ended = &mut conn => match ended {
            Err(e) => Err(SendError::Http(e)),
            // The connection may end right after handing over the answer (`Connection: close`);
            // without one, the request future fails on its own.
            Ok(()) => answer.await.map(|r| r.status()).map_err(SendError::Http),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Accepts one connection, reads the request head and body, answers `status`; returns
    /// what it read.
    async fn serve_once(listener: TcpListener, status: &'static str) -> String {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.read(&mut buf).await.expect("read");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        sock.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&seen).to_string()
    }

    /// Answers one request with `body`, after reading its head.
    async fn answer_once(listener: TcpListener, body: &'static str) -> String {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = sock.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&seen).to_string()
    }

    #[tokio::test]
    async fn gets_a_page_as_a_browser_and_refuses_one_over_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(answer_once(listener, "\"client_revision\":42"));
        let url = WebhookUrl::parse(&format!("http://{addr}/sw.js")).expect("url");
        let client = Client::new(Duration::from_secs(5));
        let (status, body) = client
            .get(&url, "Mozilla/5.0 test", 1024)
            .await
            .expect("get");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"\"client_revision\":42");
        let seen = server.await.expect("server");
        assert!(seen.starts_with("GET /sw.js HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("user-agent: mozilla/5.0 test"),
            "{seen}"
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(answer_once(listener, "0123456789"));
        let url = WebhookUrl::parse(&format!("http://{addr}/")).expect("url");
        assert!(matches!(
            client.get(&url, "x", 4).await,
            Err(SendError::Body(_))
        ));
    }

    #[tokio::test]
    async fn posts_json_with_the_headers_and_returns_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_once(listener, "503 Service Unavailable"));
        let url = WebhookUrl::parse(&format!("http://{addr}/hook?x=1")).expect("url");
        let client = Client::new(Duration::from_secs(5));
        let status = client
            .post(
                &url,
                &[(
                    HeaderName::from_static("x-wafleet-event-id"),
                    HeaderValue::from_static("42"),
                )],
                Bytes::from_static(br#"{"id":42}"#),
            )
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let seen = server.await.expect("server").to_ascii_lowercase();
        assert!(seen.starts_with("post /hook?x=1 http/1.1\r\n"), "{seen}");
        assert!(
            seen.contains("content-type: application/json\r\n"),
            "{seen}"
        );
        assert!(seen.contains("x-wafleet-event-id: 42\r\n"), "{seen}");
        assert!(seen.contains("user-agent: wafleet/"), "{seen}");
        assert!(seen.contains(&format!("host: {addr}\r\n")), "{seen}");
        assert!(seen.ends_with(r#"{"id":42}"#), "{seen}");
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_silent_receiver_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = WebhookUrl::parse(&format!("http://{addr}/")).expect("url");
        let client = Client::new(Duration::from_secs(5));
        let refused = client.post(&url, &[], Bytes::new()).await;
        assert!(matches!(refused, Err(SendError::Connect(_))), "{refused:?}");

        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = WebhookUrl::parse(&format!("http://{}/", silent.local_addr().expect("addr")))
            .expect("url");
        let quick = Client::new(Duration::from_millis(200));
        let timed_out = quick.post(&url, &[], Bytes::new()).await;
        assert!(
            matches!(timed_out, Err(SendError::Timeout(_))),
            "{timed_out:?}"
        );
    }

    #[tokio::test]
    async fn https_urls_go_through_tls_and_an_untrusted_peer_fails_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Not a TLS server: answers the ClientHello with plain HTTP.
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 5];
            sock.read_exact(&mut hello).await.expect("client hello");
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            hello
        });
        let url = WebhookUrl::parse(&format!("https://localhost:{}/", addr.port())).expect("url");
        let client = Client::new(Duration::from_secs(5));
        let result = client.post(&url, &[], Bytes::new()).await;
        assert!(matches!(result, Err(SendError::Tls(_))), "{result:?}");
        let hello = server.await.expect("server");
        assert_eq!(
            hello[0], 0x16,
            "a TLS handshake record was sent, not plain HTTP"
        );
    }
}
