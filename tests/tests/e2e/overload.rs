//! A server that floods one worker (issue 7, item 9): 10,000 stanzas a second, each needing an
//! ack. The worker reads one frame at a time and writes each ack before it reads on, so TCP
//! pushes back on the server and nothing piles up in the worker: its private memory stays
//! within a fixed bound of where it started, and it acks every stanza.

use std::time::{Duration, Instant};

use serde_json::json;
use wa_sim::harness::{wait_until, Sim, Volume};

use super::whatsapp::{pair, start};

const STANZAS: u64 = 20_000;
const PER_SECOND: u64 = 10_000;
/// The bound on the worker's private memory growth during the flood.
const BOUND_KIB: u64 = 2048;

/// `Pss_Anon` of `pid` in KiB (its private, anonymous memory).
fn pss_anon_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss_Anon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_flooded_worker_acks_everything_within_a_fixed_memory_bound() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "flooded", "15550008001");
    let pid = sup.account("flooded")["pid"].as_u64().expect("pid") as u32;
    // Let the login settle (prekey upload done) before the baseline.
    wait_until("prekeys uploaded", Duration::from_secs(20), || {
        let n = sup.events("uploading prekeys").len();
        if n > 0 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let before = pss_anon_kib(pid);
    let (status, body) = sim.post(
        "/flood",
        &json!({"jid": jid, "count": STANZAS, "per_second": PER_SECOND}),
    );
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let mut peak = before;
    wait_until("every flood stanza acked", Duration::from_secs(60), || {
        peak = peak.max(pss_anon_kib(pid));
        let acked = sim.stats()["flood_acked"].as_u64().unwrap_or(0);
        if acked >= STANZAS {
            Ok(())
        } else {
            Err(format!("{acked} acked"))
        }
    });
    let elapsed = started.elapsed();
    let after = pss_anon_kib(pid);
    eprintln!(
        "flood: stanzas={STANZAS} per_second={PER_SECOND} elapsed_ms={} worker_pss_anon_kib before={before} peak={peak} after={after}",
        elapsed.as_millis()
    );
    assert!(before > 0, "smaps_rollup readable");
    assert!(
        peak <= before + BOUND_KIB,
        "peak {peak} KiB is more than {BOUND_KIB} KiB above {before} KiB"
    );
    assert_eq!(
        sup.account("flooded")["pid"].as_u64(),
        Some(u64::from(pid)),
        "no crash"
    );
    assert_eq!(sup.account("flooded")["status"], "connected");
}
