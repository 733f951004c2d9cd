//! The CLI's HTTP client: one request per connection over hyper's HTTP/1.1 client, plain TCP
//! for `http://`, rustls (ring, webpki roots) for `https://`, one deadline over the whole
//! exchange. The token goes only into the `Authorization` header.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::CliError;

/// How long one request may take, connect to last byte.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The largest answer read (a thousand accounts' dashboard is about 400 KiB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// The admin token, never shown: its `Debug` prints a placeholder.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token from its text (trimmed).
    pub fn new(text: &str) -> Token {
        Token(text.trim().to_owned())
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Token, Self::Err> {
        Ok(Token::new(s))
    }
}

/// A running service's API.
pub struct Api {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    /// The URL's path without its trailing `/` (empty for the root).
    prefix: String,
    token: Option<Token>,
    tls: Option<TlsConnector>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("authority", &self.authority)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

/// A status and a body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Errors
    /// [`CliError::Transport`] when it is not JSON.
    pub fn json(&self) -> Result<Value, CliError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CliError::Transport(format!(
                "the service answered {} with a body that is not JSON ({e})",
                self.status
            ))
        })
    }
}

impl Api {
    /// The API at `url` (`http://host:port`, optionally with a path prefix; `https://` is
    /// verified against the webpki roots).
    ///
    /// # Errors
    /// [`CliError::Usage`] for a URL that is not `http(s)://host[:port][/path]`.
    pub fn new(url: &str, token: Option<Token>) -> Result<Api, CliError> {
        let bad = |why: &str| CliError::Usage(format!("--url {url:?}: {why}"));
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|_| bad("not a URL like http://127.0.0.1:8080"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_owned();
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not used: pass --token or ADMIN_TOKEN",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let tls = https.then(tls_connector);
        Ok(Api {
            https,
            host,
            port,
            authority,
            prefix,
            token: token.filter(|t| !t.is_empty()),
            tls,
        })
    }

    /// The service's base URL, for messages (it never holds the token).
    pub fn base(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority,
            self.prefix
        )
    }

    /// Sends `method path` (with `body` as JSON) and returns the answer, whatever its status.
    ///
    /// # Errors
    /// [`CliError::Transport`] when no whole answer came back within the deadline.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CliError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.prefix))
            .header(HOST, &self.authority)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("wafleet-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.0));
        }
        let payload = match body {
            Some(v) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            // Only a token with characters a header cannot carry gets here.
            .map_err(|_| {
                CliError::Usage("the token holds characters a header cannot carry".into())
            })?;
        let exchange = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| self.unreachable(&e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some(tls) => {
                    let name = ServerName::try_from(self.host.clone())
                        .map_err(|_| self.unreachable("the host is not a TLS server name"))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| self.unreachable(&format!("TLS handshake failed: {e}")))?;
                    roundtrip(TokioIo::new(stream), request).await
                }
                None => roundtrip(TokioIo::new(tcp), request).await,
            }
        };
        match tokio::time::timeout(REQUEST_DEADLINE, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(CliError::Transport(format!(
                "{method} {}{path}: no answer within {} s",
                self.base(),
                REQUEST_DEADLINE.as_secs()
            ))),
        }
    }

    /// Sends `method path` and returns the JSON of a 2xx answer.
    ///
    /// # Errors
    /// [`CliError::Api`] with the API's own error for any other status; [`CliError::Transport`]
    /// when no answer came.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let answer = self.call(method, path, body).await?;
        if (200..300).contains(&answer.status) {
            return answer.json();
        }
        Err(api_error(&answer))
    }

    fn unreachable(&self, why: &str) -> CliError {
        CliError::Transport(format!(
            "cannot reach {}: {why} (is the service running? set --url or WAFLEET_URL)",
            self.base()
        ))
    }
}

/// The API's error (`{"success":false,"error":{"code","message"}}`) of a non-2xx answer.
pub fn api_error(answer: &Answer) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_owned)
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => CliError::Api {
            status: answer.status,
            code,
            message,
        },
        _ => {
            let text = String::from_utf8_lossy(&answer.body);
            let text: String = text.trim().chars().take(200).collect();
            CliError::Api {
                status: answer.status,
                code: "http_error".into(),
                message: if text.is_empty() {
                    format!("HTTP {}", answer.status)
                } else {
                    text
                },
            }
        }
    }
}

fn tls_connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => TlsConnector::from(Arc::new(config)),
        // ring's provider supports the default versions; this arm is never taken.
        Err(_) => TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )),
    }
}

/// One request on a fresh connection; reads the whole answer.
async fn roundtrip<T>(io: T, request: Request<Full<Bytes>>) -> Result<Answer, CliError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |e: &dyn fmt::Display| CliError::Transport(format!("HTTP exchange failed: {e}"));
    let (mut sender, conn) = http1::handshake(io).await.map_err(|e| failed(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let answer = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let status = answer.status().as_u16();
        let body = Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        let api = Api::new("http://127.0.0.1:9000/", None).expect("http");
        assert_eq!(api.base(), "http://127.0.0.1:9000");
        assert_eq!((api.host.as_str(), api.port), ("127.0.0.1", 9000));
        let api = Api::new("https://fleet.example.com/wa/", None).expect("https");
        assert_eq!(api.base(), "https://fleet.example.com/wa");
        assert_eq!(api.port, 443);
        let api = Api::new("http://[::1]:8080", None).expect("v6");
        assert_eq!(api.host, "::1");
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://admin:secret@x",
            "http://x/?a=b",
            "",
        ] {
            assert!(Api::new(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let token = Token::new(" s3cret \n");
        assert_eq!(format!("{token:?}"), "Token(***)");
        let api = Api::new("http://127.0.0.1:1", Some(token)).expect("api");
        assert!(!format!("{api:?}").contains("s3cret"));
    }

    #[test]
    fn api_errors_carry_the_api_message() {
        let answer = Answer {
            status: 401,
            body: Bytes::from_static(
                br#"{"success":false,"error":{"code":"unauthorized","message":"missing or wrong admin token"}}"#,
            ),
        };
        let text = api_error(&answer).to_string();
        assert!(text.contains("missing or wrong admin token"), "{text}");
        assert!(text.contains("401"), "{text}");
        let plain = Answer {
            status: 502,
            body: Bytes::from_static(b"bad gateway"),
        };
        assert!(api_error(&plain).to_string().contains("bad gateway"));
    }
}
