//! `GET /metrics`: Prometheus text (exposition format 0.0.4). Every family has its `# HELP` and
//! `# TYPE` lines, counters end in `_total`, timestamps are Unix seconds, memory is in bytes, and
//! every label value is escaped.
//!
//! The per-worker memory comes from each worker's `/proc/<pid>/smaps_rollup` (`Rss`, `Pss`,
//! `Pss_Anon`). Reading it makes the kernel walk the process's mappings, so at a thousand
//! workers it is read at most once every [`MEMORY_TTL`], off the async threads; a scrape in
//! between shows the last sample.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ipc_protocol::{UnixMillis, WorkerStatus};
use tracing::debug;

use super::AppState;

/// How long a sample of the workers' memory is served before it is read again.
pub const MEMORY_TTL: Duration = Duration::from_secs(10);

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "service", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text (gzip when asked)", content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let pids: Vec<u32> = state
        .cache
        .read_all(|views, _| views.filter_map(|v| v.pid).collect());
    let memory = sampler().sample(pids).await;
    let now = UnixMillis::now();

    let mut out = String::new();
    // Written under the cache's read lock from the views themselves (no copy of each), with
    // the counts its running tally already keeps.
    state
        .cache
        .read_all(|views, tally| render_accounts(&mut out, views, tally, &memory));
    family(
        &mut out,
        "wafleet_workers_running",
        "gauge",
        "Worker processes alive.",
    );
    let _ = writeln!(
        out,
        "wafleet_workers_running {}",
        state.cache.tally().running
    );
    family(
        &mut out,
        "wafleet_sessions_dir_writable",
        "gauge",
        "1 when the sessions directory is writable.",
    );
    let _ = writeln!(
        out,
        "wafleet_sessions_dir_writable {}",
        u8::from(state.health.writable())
    );
    family(
        &mut out,
        "wafleet_build_info",
        "gauge",
        "Always 1; the labels say which build runs.",
    );
    let _ = writeln!(
        out,
        "wafleet_build_info{{version=\"{}\",ipc_protocol=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION")),
        ipc_protocol::PROTOCOL_VERSION,
    );
    family(
        &mut out,
        "wafleet_wa_version_info",
        "gauge",
        "Always 1; the label is the WhatsApp Web version the workers announce.",
    );
    let _ = writeln!(
        out,
        "wafleet_wa_version_info{{version=\"{}\"}} 1",
        escape(&state.versions.current().version.to_string()),
    );
    let uptime = state.started.elapsed();
    family(
        &mut out,
        "wafleet_start_time_seconds",
        "gauge",
        "When the supervisor started, Unix seconds.",
    );
    let started = now.0.saturating_sub(uptime.as_millis() as u64);
    let _ = writeln!(
        out,
        "wafleet_start_time_seconds {}",
        seconds(UnixMillis(started))
    );
    family(
        &mut out,
        "wafleet_uptime_seconds",
        "gauge",
        "Seconds since the supervisor started.",
    );
    let _ = writeln!(out, "wafleet_uptime_seconds {}", uptime.as_secs());
    render_budget(&mut out, &state);
    state.webhooks.render_metrics(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The families with one series per account (and the per-status and per-reason counts).
fn render_accounts<'a>(
    out: &mut String,
    views: impl Iterator<Item = &'a crate::cache::AccountView> + Clone,
    tally: &crate::cache::Tally,
    memory: &HashMap<u32, Memory>,
) {
    out.reserve(1024 + tally.total * 1536);
    family(
        out,
        "wafleet_account_status",
        "gauge",
        "1 for the account's current status, 0 for the others.",
    );
    for v in views.clone() {
        let account = escape(v.account.id.as_str());
        for status in WorkerStatus::ALL {
            let on = u8::from(v.state.status == status);
            let _ = writeln!(
                out,
                "wafleet_account_status{{account=\"{account}\",status=\"{status}\"}} {on}"
            );
        }
    }
    family(out, "wafleet_accounts", "gauge", "Accounts per status.");
    for status in WorkerStatus::ALL {
        let n = tally.status(status);
        let _ = writeln!(out, "wafleet_accounts{{status=\"{status}\"}} {n}");
    }
    family(
        out,
        "wafleet_accounts_by_reason",
        "gauge",
        "Accounts per status reason.",
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for v in views.clone() {
        if let Some(r) = &v.state.reason {
            *reasons.entry(r.as_string()).or_default() += 1;
        }
    }
    for (reason, n) in reasons {
        let _ = writeln!(
            out,
            "wafleet_accounts_by_reason{{reason=\"{}\"}} {n}",
            escape(&reason)
        );
    }

    type Read = fn(&crate::cache::AccountView) -> Option<String>;
    let per_account: [(&str, &str, &str, Read); 10] = [
        (
            "wafleet_account_reconnects_total",
            "counter",
            "Reconnections made by the account's current worker.",
            |v| Some(v.state.reconnect_count.to_string()),
        ),
        (
            "wafleet_decrypt_failures_total",
            "counter",
            "Incoming messages the account's current worker could not decrypt.",
            |v| Some(v.state.decrypt_failures.to_string()),
        ),
        (
            "wafleet_worker_restarts_total",
            "counter",
            "Worker processes restarted after an unexpected exit.",
            |v| Some(v.restarts.to_string()),
        ),
        (
            "wafleet_messages_received_total",
            "counter",
            "Incoming messages the account's workers reported since the supervisor started.",
            |v| Some(v.activity.received.to_string()),
        ),
        (
            "wafleet_messages_sent_total",
            "counter",
            "Outgoing messages the server acknowledged since the supervisor started.",
            |v| Some(v.activity.sent.to_string()),
        ),
        (
            "wafleet_messages_send_failed_total",
            "counter",
            "Outgoing messages given up as failed since the supervisor started.",
            |v| Some(v.activity.send_failed.to_string()),
        ),
        (
            "wafleet_account_last_connected_timestamp_seconds",
            "gauge",
            "When the account last became connected, Unix seconds (absent until it has).",
            |v| v.activity.connected_at.map(seconds),
        ),
        (
            "wafleet_account_last_message_timestamp_seconds",
            "gauge",
            "When the account's last message arrived, Unix seconds (absent until one has).",
            |v| v.state.last_message_at.map(seconds),
        ),
        (
            "wafleet_account_last_event_timestamp_seconds",
            "gauge",
            "When anything last happened on the account, Unix seconds (absent until then).",
            |v| v.state.last_event_at.map(seconds),
        ),
        (
            "wafleet_worker_started_timestamp_seconds",
            "gauge",
            "When the account's current worker was spawned, Unix seconds (absent while none runs).",
            |v| v.pid.and(v.started_at).map(seconds),
        ),
    ];
    for (name, kind, help, read) in per_account {
        family(out, name, kind, help);
        for v in views.clone() {
            if let Some(value) = read(v) {
                let account = escape(v.account.id.as_str());
                let _ = writeln!(out, "{name}{{account=\"{account}\"}} {value}");
            }
        }
    }

    type Field = fn(&Memory) -> u64;
    let kinds: [(&str, &str, Field); 3] = [
        (
            "wafleet_worker_memory_pss_bytes",
            "The worker process's proportional set size: its private pages plus its share of \
             the pages it shares with the others (Pss of /proc/PID/smaps_rollup).",
            |m| m.pss,
        ),
        (
            "wafleet_worker_memory_pss_anon_bytes",
            "The anonymous part of the worker's proportional set size: heap and stacks \
             (Pss_Anon).",
            |m| m.pss_anon,
        ),
        (
            "wafleet_worker_memory_rss_bytes",
            "The worker process's resident set size, shared pages counted in full (Rss).",
            |m| m.rss,
        ),
    ];
    for (name, help, field) in kinds {
        family(out, name, "gauge", help);
        for v in views.clone() {
            if let Some(m) = v.pid.and_then(|pid| memory.get(&pid)) {
                let account = escape(v.account.id.as_str());
                let _ = writeln!(out, "{name}{{account=\"{account}\"}} {}", field(m));
            }
        }
    }
}

/// The fleet's handshake budget.
fn render_budget(out: &mut String, state: &AppState) {
    let budget = state.cache.budget.get();
    for (name, kind, help, value) in [
        (
            "wafleet_dials_in_flight",
            "gauge",
            "Handshakes holding a permit of the fleet's budget.",
            budget.in_flight,
        ),
        (
            "wafleet_dials_waiting",
            "gauge",
            "Accounts waiting for a dial permit.",
            budget.waiting,
        ),
        (
            "wafleet_dials_per_minute",
            "gauge",
            "Dial permits granted in the last 60 seconds.",
            budget.dials_last_minute,
        ),
        (
            "wafleet_dials_granted_total",
            "counter",
            "Dial permits granted since the supervisor started.",
            budget.granted_total,
        ),
        (
            "wafleet_dial_permits_reclaimed_total",
            "counter",
            "Dial permits taken back after their deadline because the worker never gave them back.",
            budget.reclaimed_total,
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Writes a family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Unix seconds with milliseconds.
fn seconds(at: UnixMillis) -> String {
    format!("{}.{:03}", at.0 / 1000, at.0 % 1000)
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a HELP text: backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// One process's memory, in bytes.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Memory {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Pss_Anon` (0 on kernels before 5.10, which do not report it).
    pub pss_anon: u64,
}

impl Memory {
    /// Parses `/proc/PID/smaps_rollup`; `None` without a `Pss` line.
    pub fn parse(text: &str) -> Option<Memory> {
        let mut memory = Memory::default();
        let mut pss = false;
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let kib = || {
                rest.trim()
                    .strip_suffix("kB")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .map(|n| n * 1024)
            };
            match key {
                "Rss" => memory.rss = kib()?,
                "Pss" => {
                    memory.pss = kib()?;
                    pss = true;
                }
                "Pss_Anon" => memory.pss_anon = kib()?,
                _ => {}
            }
        }
        pss.then_some(memory)
    }

    /// Reads process `pid`'s.
    fn of(pid: u32) -> Option<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        Memory::parse(&text)
    }
}

/// The last sample of the workers' memory, by pid.
#[derive(Debug, Default)]
struct Sampler {
    last: tokio::sync::Mutex<Option<(Instant, HashMap<u32, Memory>)>>,
}

/// The process's one sampler (one supervisor a process; a pid names one process).
fn sampler() -> &'static Sampler {
    static SAMPLER: OnceLock<Sampler> = OnceLock::new();
    SAMPLER.get_or_init(Sampler::default)
}

impl Sampler {
    /// The memory of `pids`: the last sample while it is younger than [`MEMORY_TTL`], else a
    /// new one read on a blocking thread. Scrapes that arrive while one reads wait for it.
    async fn sample(&self, pids: Vec<u32>) -> HashMap<u32, Memory> {
        let mut last = self.last.lock().await;
        if let Some((at, sample)) = &*last {
            if at.elapsed() < MEMORY_TTL {
                return sample.clone();
            }
        }
        let started = Instant::now();
        let workers = pids.len();
        let read = tokio::task::spawn_blocking(move || {
            pids.into_iter()
                .filter_map(|pid| Memory::of(pid).map(|m| (pid, m)))
                .collect::<HashMap<_, _>>()
        })
        .await
        .unwrap_or_default();
        debug!(
            workers,
            elapsed_us = started.elapsed().as_micros() as u64,
            "worker memory sampled"
        );
        *last = Some((Instant::now(), read.clone()));
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_rollup_gives_rss_pss_and_pss_anon_in_bytes() {
        let text = "55ea1c93a000-7fff2dc1a000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                1640 kB\nPss:                 223 kB\n\
                    Pss_Dirty:           116 kB\nPss_Anon:            116 kB\n\
                    Pss_File:            107 kB\n";
        assert_eq!(
            Memory::parse(text),
            Some(Memory {
                rss: 1640 * 1024,
                pss: 223 * 1024,
                pss_anon: 116 * 1024
            })
        );
        assert_eq!(Memory::parse("Rss: 4 kB\n"), None, "no Pss: no sample");
    }

    #[test]
    fn this_process_has_a_memory() {
        let me = Memory::of(std::process::id()).expect("our own smaps_rollup");
        assert!(me.pss > 0 && me.rss >= me.pss, "{me:?}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(seconds(UnixMillis(1_796_311_047_194)), "1796311047.194");
        assert_eq!(seconds(UnixMillis(5)), "0.005");
    }
}
