//! Configuration: every key is an environment variable and a `--flag` (architecture.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The supervisor's configuration.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the admin API (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address the admin API listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    pub bind_addr: String,
    /// Most HTTP connections open at once; 0 sizes the cap from the open-file limit. Never
    /// more than the descriptors the workers leave.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 0)]
    pub http_max_connections: usize,
    /// A client must send its request headers within this, and a kept-alive connection its
    /// next request; the connection is closed otherwise.
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub http_header_timeout_ms: u64,
    /// A request's body must be read and its answer begun within this (408 otherwise); event
    /// streams then run on.
    #[arg(
        long,
        env = "HTTP_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub http_request_timeout_ms: u64,
    /// Where account directories live. Wins over RAILWAY_VOLUME_MOUNT_PATH.
    #[arg(long, env = "SESSIONS_PATH")]
    pub sessions_path: Option<PathBuf>,
    /// Set by Railway when a volume is mounted; sessions then go to `<mount>/sessions`.
    #[arg(long, env = "RAILWAY_VOLUME_MOUNT_PATH")]
    pub railway_volume_mount_path: Option<PathBuf>,
    /// Admin token for every route but /health. Generated and stored on first boot when unset.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Shortest gap between two worker spawns at boot.
    #[arg(long, env = "BOOT_JITTER_MIN_MS", default_value_t = 2000)]
    pub boot_jitter_min_ms: u64,
    /// Gaps at boot stay below this.
    #[arg(long, env = "BOOT_JITTER_MAX_MS", default_value_t = 4000)]
    pub boot_jitter_max_ms: u64,
    /// Most handshakes in flight at once across the fleet (dial, Noise, until `<success>`).
    #[arg(long, env = "HANDSHAKE_CONCURRENCY", default_value_t = 8)]
    pub handshake_concurrency: u32,
    /// Most new dials a second across the fleet (a token bucket holding the rate rounded up).
    #[arg(long, env = "HANDSHAKE_RATE", default_value_t = 5.0)]
    pub handshake_rate: f64,
    /// A dial permit a worker never gives back is reclaimed after this; above the worker's 20 s
    /// handshake deadline.
    #[arg(
        long,
        env = "HANDSHAKE_PERMIT_TIMEOUT_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub handshake_permit_timeout_ms: u64,
    /// How long workers get to flush and exit on shutdown before they are killed.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 8000)]
    pub shutdown_timeout_ms: u64,
    /// Where WhatsApp Web publishes its current version, read at start and after a 405 (client
    /// outdated) so that a version bump needs no redeploy; empty turns it off.
    #[arg(long, env = "WA_VERSION_URL", default_value = crate::wa_version::DEFAULT_VERSION_URL)]
    pub wa_version_url: String,
    /// Passed to every worker: the WhatsApp URL and the reconnect policy.
    #[command(flatten)]
    pub connection: worker::ConnectionArgs,
    /// Program to run as the worker instead of this binary's `worker` subcommand.
    #[arg(long, env = "WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// `pretty` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. `info,worker=debug`.
    #[arg(long = "rust-log", env = "RUST_LOG")]
    pub rust_log: Option<String>,
    /// A worker silent this long (no heartbeat, no state) is hung: killed and restarted.
    #[arg(
        long,
        env = "HEARTBEAT_TIMEOUT_MS",
        default_value_t = 60_000,
        hide = true
    )]
    pub heartbeat_timeout_ms: u64,
    /// First restart delay of a crashed worker; it doubles up to 60 s.
    #[arg(
        long,
        env = "RESTART_BACKOFF_BASE_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub restart_backoff_base_ms: u64,
    /// Seals every account's creds and Signal keys at rest with AES-256-GCM (32 bytes, as 64 hex
    /// characters or base64). Off when unset; `supervisor sessions encrypt|decrypt` migrates.
    #[arg(long, env = "SESSIONS_KEY", hide_env_values = true)]
    pub sessions_key: Option<String>,
    /// Webhook delivery: WEBHOOK_URL, WEBHOOK_SECRET, WEBHOOK_MAX_AGE_MS, WEBHOOK_TIMEOUT_MS.
    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
}

/// The longest restart delay of a crashed worker (the restart policy's cap).
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The most handshakes in flight `HANDSHAKE_CONCURRENCY` allows.
pub const MAX_HANDSHAKE_CONCURRENCY: u32 = 1000;
/// The slowest `HANDSHAKE_RATE`: one dial every 1000 s.
pub const MIN_HANDSHAKE_RATE: f64 = 0.001;
/// The fastest `HANDSHAKE_RATE`.
pub const MAX_HANDSHAKE_RATE: f64 = 1000.0;
/// The worker's deadline for a dial plus the Noise handshake.
pub const HANDSHAKE_DEADLINE_MS: u64 = 20_000;

impl Config {
    /// `WA_VERSION_URL`, parsed; `None` when empty (refreshes off).
    ///
    /// # Errors
    /// A message naming the bad URL.
    pub fn version_url(&self) -> Result<Option<crate::webhook::url::WebhookUrl>, String> {
        let raw = self.wa_version_url.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        crate::webhook::url::WebhookUrl::parse(raw)
            .map(Some)
            .map_err(|e| format!("WA_VERSION_URL {raw:?} is not a usable http(s) URL: {e}"))
    }

    /// The fleet's handshake budget these settings describe.
    pub fn budget(&self) -> crate::fleet::budget::BudgetConfig {
        crate::fleet::budget::BudgetConfig {
            concurrency: self.handshake_concurrency,
            rate: self.handshake_rate,
            hold: Duration::from_millis(self.handshake_permit_timeout_ms),
        }
    }

    /// Checks relations between keys that clap cannot.
    ///
    /// # Errors
    /// A message naming the keys at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.version_url()?;
        if self.boot_jitter_min_ms > self.boot_jitter_max_ms {
            return Err(format!(
                "BOOT_JITTER_MIN_MS ({}) must not exceed BOOT_JITTER_MAX_MS ({})",
                self.boot_jitter_min_ms, self.boot_jitter_max_ms
            ));
        }
        let c = &self.connection;
        if c.reconnect_base_ms == 0 || c.reconnect_base_ms > c.reconnect_max_ms {
            return Err(format!(
                "RECONNECT_BASE_MS ({}) must be positive and at most RECONNECT_MAX_MS ({})",
                c.reconnect_base_ms, c.reconnect_max_ms
            ));
        }
        let interval = c.heartbeat_interval_ms;
        if interval < 100 {
            return Err(format!(
                "HEARTBEAT_INTERVAL_MS ({interval}) must be at least 100"
            ));
        }
        if self.heartbeat_timeout_ms < 2 * interval {
            return Err(format!(
                "HEARTBEAT_TIMEOUT_MS ({}) must be at least twice the workers' heartbeat interval \
                 ({interval} ms, HEARTBEAT_INTERVAL_MS), or healthy workers are killed as hung: \
                 use {} or more",
                self.heartbeat_timeout_ms,
                2 * interval
            ));
        }
        if self.restart_backoff_base_ms == 0
            || self.restart_backoff_base_ms > RESTART_BACKOFF_MAX.as_millis() as u64
        {
            return Err(format!(
                "RESTART_BACKOFF_BASE_MS ({}) must be positive and at most the longest restart \
                 delay ({} ms)",
                self.restart_backoff_base_ms,
                RESTART_BACKOFF_MAX.as_millis()
            ));
        }
        if self.shutdown_timeout_ms < 100 {
            return Err(format!(
                "SHUTDOWN_TIMEOUT_MS ({}) must be at least 100: workers need time to flush",
                self.shutdown_timeout_ms
            ));
        }
        if self.handshake_concurrency == 0 || self.handshake_concurrency > MAX_HANDSHAKE_CONCURRENCY
        {
            return Err(format!(
                "HANDSHAKE_CONCURRENCY ({}) must be between 1 and {MAX_HANDSHAKE_CONCURRENCY}",
                self.handshake_concurrency
            ));
        }
        let rate = self.handshake_rate;
        if !(rate.is_finite() && (MIN_HANDSHAKE_RATE..=MAX_HANDSHAKE_RATE).contains(&rate)) {
            return Err(format!(
                "HANDSHAKE_RATE ({rate}) must be a number of dials a second between \
                 {MIN_HANDSHAKE_RATE} and {MAX_HANDSHAKE_RATE}"
            ));
        }
        if self.handshake_permit_timeout_ms <= HANDSHAKE_DEADLINE_MS {
            return Err(format!(
                "HANDSHAKE_PERMIT_TIMEOUT_MS ({}) must exceed the workers' {HANDSHAKE_DEADLINE_MS} ms \
                 handshake deadline, or permits are reclaimed from handshakes still running",
                self.handshake_permit_timeout_ms
            ));
        }
        if c.backoff_reset_after_ms == 0 {
            return Err(
                "BACKOFF_RESET_AFTER_MS must be positive: a connection must stay up a while \
                 before the reconnect backoff starts over"
                    .into(),
            );
        }
        if c.max_reconnect_attempts == 0 {
            return Err("MAX_RECONNECT_ATTEMPTS must be at least 1".into());
        }
        if self.http_header_timeout_ms == 0 || self.http_request_timeout_ms == 0 {
            return Err(
                "HTTP_HEADER_TIMEOUT_MS and HTTP_REQUEST_TIMEOUT_MS must be positive".into(),
            );
        }
        if let Some(key) = &self.sessions_key {
            volume::seal::SessionsKey::parse(key).map_err(|e| e.to_string())?;
        }
        // Every worker reads it again; a file that is wrong now stops the start, not the fleet.
        c.tls_ca_certs()?;
        self.webhook.validate()?;
        Ok(())
    }

    /// The shutdown deadline.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn check(args: &[&str]) -> Result<(), String> {
        let mut argv = vec!["supervisor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .config
            .validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        check(&[]).expect("defaults");
    }

    #[test]
    fn a_heartbeat_timeout_shorter_than_two_reports_is_refused_with_the_numbers() {
        let e = check(&["--heartbeat-timeout-ms", "3000"]).expect_err("3 s < 2 x 30 s");
        assert!(
            e.contains("HEARTBEAT_TIMEOUT_MS (3000)") && e.contains("60000"),
            "{e}"
        );
        check(&["--heartbeat-timeout-ms", "59999"]).expect_err("just under two reports");
        check(&["--heartbeat-timeout-ms", "60000"]).expect("exactly two reports");
        check(&[
            "--heartbeat-timeout-ms",
            "1000",
            "--heartbeat-interval-ms",
            "400",
        ])
        .expect("a shorter interval allows a shorter timeout");
        assert!(check(&["--heartbeat-interval-ms", "10"]).is_err());
    }

    #[test]
    fn an_unusable_tls_ca_file_stops_the_start_naming_the_variable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("ca.pem");
        let missing = missing.to_str().expect("utf-8");
        let e = check(&["--wa-tls-ca-file", missing]).expect_err("no such file");
        assert!(
            e.starts_with("WA_TLS_CA_FILE ") && e.contains(missing),
            "{e}"
        );
        std::fs::write(missing, "").expect("write");
        let e = check(&["--wa-tls-ca-file", missing]).expect_err("no certificate");
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn a_malformed_sessions_key_stops_the_start_with_a_clear_message() {
        let e = check(&["--sessions-key", "not-a-key"]).expect_err("malformed");
        assert!(e.contains("SESSIONS_KEY must be 32 bytes"), "{e}");
        assert!(!e.contains("not-a-key"), "the value is never echoed");
        check(&["--sessions-key", &"0f".repeat(32)]).expect("hex");
    }

    #[test]
    fn the_handshake_budget_is_checked_with_the_numbers_in_the_message() {
        let e = check(&["--handshake-concurrency", "0"]).expect_err("no dial could go");
        assert!(e.contains("HANDSHAKE_CONCURRENCY (0)"), "{e}");
        assert!(check(&["--handshake-concurrency", "1001"]).is_err());
        for bad in ["0", "-1", "NaN", "inf", "1000.5"] {
            let e = check(&[&format!("--handshake-rate={bad}")]).expect_err(bad);
            assert!(e.contains("HANDSHAKE_RATE"), "{e}");
        }
        let e = check(&["--handshake-permit-timeout-ms", "20000"]).expect_err("not above 20 s");
        assert!(e.contains("HANDSHAKE_PERMIT_TIMEOUT_MS (20000)"), "{e}");
        check(&[
            "--handshake-concurrency",
            "1",
            "--handshake-rate",
            "0.5",
            "--handshake-permit-timeout-ms",
            "20001",
        ])
        .expect("small but valid");
        check(&["--handshake-concurrency", "64", "--handshake-rate", "50"]).expect("large fleet");
    }

    #[test]
    fn every_other_timing_is_checked_against_what_it_depends_on() {
        for bad in [
            &[
                "--boot-jitter-min-ms",
                "5000",
                "--boot-jitter-max-ms",
                "4000",
            ][..],
            &["--reconnect-base-ms", "0"],
            &[
                "--reconnect-base-ms",
                "40000",
                "--reconnect-max-ms",
                "30000",
            ],
            &["--restart-backoff-base-ms", "0"],
            &["--restart-backoff-base-ms", "60001"],
            &["--shutdown-timeout-ms", "10"],
            &["--max-reconnect-attempts", "0"],
            &["--backoff-reset-after-ms", "0"],
        ] {
            assert!(check(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
