//! Webhook URLs: `http` or `https`, with a host, without credentials or a fragment; checked when
//! they come in (config, API, a stored file) so delivery never meets a bad one.

use std::fmt;

use hyper::Uri;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A valid webhook target URL.
#[derive(Clone, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct WebhookUrl(String);

/// Why a URL was refused.
#[derive(Debug, Eq, PartialEq, thiserror::Error)]
pub enum UrlError {
    /// Longer than the cap.
    #[error("webhook url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    /// Not a URL at all.
    #[error("webhook url does not parse as a url")]
    Unparsable,
    /// A scheme other than http or https.
    #[error("webhook url must start with http:// or https://")]
    Scheme,
    /// No host after the scheme.
    #[error("webhook url has no host")]
    NoHost,
    /// `user:password@` in the URL: it would end up in logs; use the signature instead.
    #[error("webhook url must not carry user:password@ credentials")]
    Credentials,
    /// A `#fragment`, which is never sent.
    #[error("webhook url must not have a #fragment")]
    Fragment,
}

impl WebhookUrl {
    /// Checks `raw` (surrounding blanks trimmed).
    ///
    /// # Errors
    /// The [`UrlError`] that says what is wrong.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        if raw.contains('#') {
            return Err(UrlError::Fragment);
        }
        let uri: Uri = raw.parse().map_err(|_| UrlError::Unparsable)?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(UrlError::Scheme),
        }
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        if authority.host().is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(WebhookUrl(raw.to_owned()))
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed form, for the client.
    pub fn uri(&self) -> Uri {
        // Checked by `parse`, the only constructor.
        self.0.parse().unwrap_or_default()
    }

    /// Host and port only: what logs show (a path or query may carry a receiver's token).
    pub fn redacted(&self) -> String {
        let uri = self.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        match uri.authority() {
            Some(a) => format!("{scheme}://{a}"),
            None => scheme.to_owned(),
        }
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted())
    }
}

impl fmt::Display for WebhookUrl {
    /// Shows [`WebhookUrl::redacted`], so a URL in a log line never carries its path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        WebhookUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Reads an optional URL from a stored file, dropping (with a warning) one that no longer
/// passes the checks, so a hand-edited `account.json` never makes its account unloadable.
///
/// # Errors
/// Only when the value is neither null nor a string.
pub fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<WebhookUrl>, D::Error> {
    let raw = Option::<String>::deserialize(deserializer)?;
    Ok(raw.and_then(|raw| match WebhookUrl::parse(&raw) {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a stored webhook url");
            None
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_with_a_host() {
        for ok in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/",
            "https://hooks.example.com:8443/a/b?token=x",
            "  http://[::1]:9000/x  ",
        ] {
            let url = WebhookUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(url.as_str(), ok.trim());
        }
    }

    #[test]
    fn refuses_other_schemes_missing_hosts_credentials_and_fragments() {
        let cases = [
            ("ftp://example.com/", UrlError::Scheme),
            ("example.com/hook", UrlError::Unparsable),
            ("/hook", UrlError::Scheme),
            ("", UrlError::Unparsable),
            ("https://", UrlError::Unparsable),
            ("not a url", UrlError::Unparsable),
            ("https://user:pw@example.com/", UrlError::Credentials),
            ("https://example.com/#frag", UrlError::Fragment),
        ];
        for (raw, want) in cases {
            assert_eq!(WebhookUrl::parse(raw).err(), Some(want), "{raw:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebhookUrl::parse(&long).err(), Some(UrlError::TooLong));
    }

    #[test]
    fn logs_show_only_scheme_host_and_port() {
        let url = WebhookUrl::parse("https://h.example:8443/p/secret?token=t").expect("valid");
        assert_eq!(url.to_string(), "https://h.example:8443");
        assert!(!format!("{url:?}").contains("token"));
        let json = serde_json::to_string(&url).expect("json");
        let back: WebhookUrl = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, url);
        assert!(serde_json::from_str::<WebhookUrl>("\"ftp://x\"").is_err());
    }
}
