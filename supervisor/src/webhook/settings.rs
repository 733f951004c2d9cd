//! The webhook keys of the configuration (each an environment variable and a `--flag`).

use std::convert::Infallible;
use std::time::Duration;

use clap::Args;
use volume::secret::Secret;

use super::backoff::Backoff;
use super::url::WebhookUrl;

/// Webhook configuration.
#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Every event is POSTed here (http or https). Accounts may add their own URL through the API.
    #[arg(long, env = "WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of X-Wafleet-Signature. Generated into $SESSIONS/webhook-secret when unset.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub webhook_secret: Option<Secret<String>>,
    /// A delivery still failing this long after its event is given up.
    #[arg(long, env = "WEBHOOK_MAX_AGE_MS", default_value_t = 24 * 60 * 60 * 1000)]
    pub webhook_max_age_ms: u64,
    /// Deadline of one delivery attempt (connect, TLS, request, response head).
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// First retry delay of a failing target; it doubles up to WEBHOOK_BACKOFF_MAX_MS.
    #[arg(
        long,
        env = "WEBHOOK_BACKOFF_BASE_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub webhook_backoff_base_ms: u64,
    /// Longest retry delay of a failing target.
    #[arg(
        long,
        env = "WEBHOOK_BACKOFF_MAX_MS",
        default_value_t = 600_000,
        hide = true
    )]
    pub webhook_backoff_max_ms: u64,
    /// Most deliveries kept pending on disk; past it the oldest account events go first.
    #[arg(
        long,
        env = "WEBHOOK_MAX_PENDING",
        default_value_t = 100_000,
        hide = true
    )]
    pub webhook_max_pending: usize,
}

fn secret(raw: &str) -> Result<Secret<String>, Infallible> {
    Ok(Secret::new(raw.to_owned()))
}

impl WebhookArgs {
    /// Checks the URL and the ranges.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.global_url()?;
        if self.webhook_timeout_ms == 0 {
            return Err("WEBHOOK_TIMEOUT_MS must be positive".into());
        }
        if self.webhook_max_age_ms == 0 {
            return Err("WEBHOOK_MAX_AGE_MS must be positive".into());
        }
        if self.webhook_backoff_base_ms == 0
            || self.webhook_backoff_base_ms > self.webhook_backoff_max_ms
        {
            return Err(format!(
                "WEBHOOK_BACKOFF_BASE_MS ({}) must be positive and at most WEBHOOK_BACKOFF_MAX_MS ({})",
                self.webhook_backoff_base_ms, self.webhook_backoff_max_ms
            ));
        }
        if self.webhook_timeout_ms > self.webhook_max_age_ms {
            return Err(format!(
                "WEBHOOK_TIMEOUT_MS ({}) must not exceed WEBHOOK_MAX_AGE_MS ({}): one attempt \
                 cannot outlast the delivery",
                self.webhook_timeout_ms, self.webhook_max_age_ms
            ));
        }
        if self.webhook_max_pending == 0 {
            return Err("WEBHOOK_MAX_PENDING must be positive".into());
        }
        Ok(())
    }

    /// The global URL; a blank value means none.
    ///
    /// # Errors
    /// A message naming `WEBHOOK_URL` and what is wrong with it.
    pub fn global_url(&self) -> Result<Option<WebhookUrl>, String> {
        match self.webhook_url.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => WebhookUrl::parse(raw).map(Some).map_err(|e| {
                format!("WEBHOOK_URL is invalid: {e} (e.g. https://example.com/hooks/wafleet)")
            }),
        }
    }

    /// The retry schedule.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.webhook_backoff_base_ms),
            max: Duration::from_millis(self.webhook_backoff_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: WebhookArgs,
    }

    fn parse(argv: &[&str]) -> WebhookArgs {
        let mut all = vec!["supervisor"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).expect("flags parse").args
    }

    #[test]
    fn defaults_are_a_day_and_ten_seconds() {
        if std::env::vars().any(|(k, _)| k.starts_with("WEBHOOK_")) {
            return;
        }
        let args = parse(&[]);
        assert_eq!(args.webhook_max_age_ms, 86_400_000);
        assert_eq!(args.webhook_timeout_ms, 10_000);
        assert_eq!(args.global_url(), Ok(None));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn a_bad_url_or_range_is_refused_with_the_key_named() {
        let bad = parse(&["--webhook-url", "ftp://example.com"]);
        let err = bad.validate().expect_err("ftp");
        assert!(err.contains("WEBHOOK_URL"), "{err}");
        let no_host = parse(&["--webhook-url", "https://"]);
        assert!(no_host.validate().is_err());
        let good = parse(&["--webhook-url", "https://example.com/h"]);
        assert!(good.validate().is_ok());
        let zero = parse(&["--webhook-timeout-ms", "0"]);
        assert!(zero
            .validate()
            .expect_err("zero")
            .contains("WEBHOOK_TIMEOUT_MS"));
        let secret = parse(&["--webhook-secret", "s3cret"]);
        assert!(
            !format!("{secret:?}").contains("s3cret"),
            "secret stays out of Debug"
        );
    }
}
