//! End-to-end tests: the real `supervisor` (and its re-executed workers) on a temp volume, with
//! ephemeral ports on loopback. Every wait is for a state under a deadline.
//!
//! Build the binaries first: `cargo build --workspace --bins && cargo test --workspace`.

mod e2e {
    mod api;
    mod bad_input;
    mod boot;
    mod browser;
    mod cli;
    mod companion;
    mod events;
    mod flood;
    mod healthcheck;
    mod ipc;
    mod leftovers;
    mod logs;
    mod messages;
    mod metrics;
    mod online;
    mod openapi;
    mod overload;
    mod pacing;
    mod pairing_code;
    mod phones;
    mod readme;
    mod remote_link;
    mod restart;
    mod sealed;
    mod secrets;
    mod shutdown;
    mod sim_policy;
    mod storage;
    mod tls;
    mod webhook;
    mod whatsapp;

    use std::time::Duration;

    /// Generous deadline for states that arrive within a second on an idle machine.
    pub const STATE_DEADLINE: Duration = Duration::from_secs(20);

    /// Whether `pid` is a live (not zombie) process.
    pub fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    /// Waits until none of `pids` is a live process.
    pub fn wait_gone(what: &str, pids: &[u32], deadline: Duration) {
        wa_sim::harness::wait_until(what, deadline, || {
            let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still alive: {left:?}"))
            }
        });
    }

    /// The pids of the running workers in a dashboard.
    pub fn worker_pids(dashboard: &serde_json::Value) -> Vec<u32> {
        pids(dashboard)
            .into_iter()
            .filter_map(|(_, p)| p.map(|p| p as u32))
            .collect()
    }

    /// Every account's pid in a dashboard, by id.
    pub fn pids(dashboard: &serde_json::Value) -> Vec<(String, Option<u64>)> {
        dashboard["accounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["accountId"].as_str().unwrap_or_default().to_owned(),
                            x["pid"].as_u64(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether every account in the dashboard has a running, linked worker (it has reported a
    /// state of its own: `reconnecting`, or `disconnected`, against the refused socket).
    pub fn all_linked(dashboard: &serde_json::Value, n: usize) -> bool {
        dashboard["accounts"].as_array().is_some_and(|a| {
            a.len() == n
                && a.iter().all(|x| {
                    // A failed attempt reported over IPC proves the link; after
                    // MAX_RECONNECT_ATTEMPTS of them a slow machine shows `disconnected`.
                    x["pid"].is_u64()
                        && (x["status"] == "reconnecting" || x["status"] == "disconnected")
                        && x["reconnectAttempts"].as_u64() >= Some(1)
                })
        })
    }
}
