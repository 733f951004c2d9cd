//! One worker process: spawn it, signal it, and report its exit to the fleet.
//!
//! The child is owned by a small task that awaits its exit; signals go through that task, so a
//! signal is only ever sent to a pid that has not been reaped yet (no pid-reuse races).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use ipc_protocol::AccountId;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::mpsc;
use tracing::debug;

use super::FleetMsg;
use crate::config::Config;

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    /// `WORKER_BIN`, or `None` to re-execute this binary with its `worker` subcommand.
    pub worker_bin: Option<PathBuf>,
    /// The sessions directory.
    pub sessions: PathBuf,
    /// The IPC socket path.
    pub ipc: PathBuf,
    /// Environment passed to every worker.
    pub env: Vec<(String, String)>,
}

impl SpawnSpec {
    /// The spec for `config`.
    pub fn new(config: &Config, sessions: &Path, ipc: &Path) -> Self {
        let mut env = config.connection.to_env();
        env.push(("LOG_FORMAT".into(), config.log_format.clone()));
        if let Some(filter) = &config.rust_log {
            env.push(("RUST_LOG".into(), filter.clone()));
        }
        if let Some(key) = &config.sessions_key {
            env.push(("SESSIONS_KEY".into(), key.clone()));
        }
        SpawnSpec {
            worker_bin: config.worker_bin.clone(),
            sessions: sessions.to_owned(),
            ipc: ipc.to_owned(),
            env,
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct ChildHandle {
    /// Its pid.
    pub pid: u32,
    signals: mpsc::UnboundedSender<Signal>,
}

impl ChildHandle {
    /// Sends `signal` to the worker, if it has not exited yet.
    pub fn signal(&self, signal: Signal) {
        let _ = self.signals.send(signal);
    }
}

/// Spawns the worker for `id`; its exit arrives as [`FleetMsg::Exited`].
///
/// Call this from the fleet task only: the worker's parent-death signal follows the thread that
/// forked it, and the fleet runs on the supervisor's long-lived main thread.
///
/// # Errors
/// The I/O error of the spawn.
pub fn spawn(
    spec: &SpawnSpec,
    id: &AccountId,
    account_env: &[(String, String)],
    fleet: mpsc::UnboundedSender<FleetMsg>,
) -> io::Result<ChildHandle> {
    let mut cmd = match &spec.worker_bin {
        Some(bin) => Command::new(bin),
        None => {
            // /proc/self/exe still runs this binary even when a deploy replaced the file.
            let mut cmd = Command::new("/proc/self/exe");
            cmd.arg("worker");
            cmd
        }
    };
    cmd.arg("--account")
        .arg(id.as_str())
        .arg("--sessions")
        .arg(&spec.sessions)
        .arg("--ipc")
        .arg(&spec.ipc)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(account_env.iter().map(|(k, v)| (k, v)))
        .env_remove("ADMIN_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("spawned worker has no pid"))?;
    let (signals, mut signal_rx) = mpsc::unbounded_channel::<Signal>();
    let id = id.clone();
    tokio::spawn(async move {
        let status: io::Result<ExitStatus> = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(sig) = signal_rx.recv() => {
                    // Not reaped yet: `wait` has not returned, so the pid is still ours.
                    if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig) {
                        debug!(pid, error = %e, "signal failed");
                    }
                }
            }
        };
        let _ = fleet.send(FleetMsg::Exited { id, pid, status });
    });
    Ok(ChildHandle { pid, signals })
}
