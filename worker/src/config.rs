//! The worker's flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ipc_protocol::AccountId;

/// WhatsApp Web's WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// How one worker is started: `supervisor worker --account <id> --sessions <dir> --ipc <socket>`.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// The account this worker runs.
    #[arg(long)]
    pub account: AccountId,
    /// The sessions directory; the account's files live in `<sessions>/<account>/`.
    #[arg(long)]
    pub sessions: PathBuf,
    /// The supervisor's IPC socket. Without it the worker runs alone and only logs its state.
    #[arg(long)]
    pub ipc: Option<PathBuf>,
    /// The pid of the supervisor that spawned this worker; the worker exits if it is gone.
    #[arg(long, hide = true)]
    pub parent_pid: Option<i32>,
    /// How to reach WhatsApp.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
}

/// How a worker reaches WhatsApp. The supervisor flattens the same flags into its own
/// configuration and hands them to every worker it spawns, so both share one set of defaults.
#[derive(Args, Clone, Debug)]
pub struct ConnectionArgs {
    /// WhatsApp Web socket URL.
    #[arg(long, env = "WA_WS_URL", default_value = DEFAULT_WS_URL)]
    pub wa_ws_url: String,
    /// First reconnect delay; it doubles per failed attempt.
    #[arg(long, env = "RECONNECT_BASE_MS", default_value_t = 1000)]
    pub reconnect_base_ms: u64,
    /// Longest reconnect delay.
    #[arg(long, env = "RECONNECT_MAX_MS", default_value_t = 30000)]
    pub reconnect_max_ms: u64,
    /// Failed attempts before the status becomes `disconnected` (then one try every 5 minutes).
    #[arg(long, env = "MAX_RECONNECT_ATTEMPTS", default_value_t = 10)]
    pub max_reconnect_attempts: u32,
}

impl ConnectionArgs {
    /// The same flags as environment variables, for a spawned worker.
    pub fn to_env(&self) -> Vec<(String, String)> {
        vec![
            ("WA_WS_URL".into(), self.wa_ws_url.clone()),
            (
                "RECONNECT_BASE_MS".into(),
                self.reconnect_base_ms.to_string(),
            ),
            ("RECONNECT_MAX_MS".into(), self.reconnect_max_ms.to_string()),
            (
                "MAX_RECONNECT_ATTEMPTS".into(),
                self.max_reconnect_attempts.to_string(),
            ),
        ]
    }
}

impl WorkerArgs {
    /// The account's directory on the volume.
    pub fn account_dir(&self) -> PathBuf {
        self.sessions.join(self.account.as_str())
    }

    /// The reconnect policy these flags describe.
    pub(crate) fn backoff(&self) -> crate::session::reconnect::Backoff {
        let c = &self.connection;
        crate::session::reconnect::Backoff {
            base: Duration::from_millis(c.reconnect_base_ms.max(1)),
            max: Duration::from_millis(c.reconnect_max_ms.max(c.reconnect_base_ms).max(1)),
            max_attempts: c.max_reconnect_attempts,
        }
    }
}
