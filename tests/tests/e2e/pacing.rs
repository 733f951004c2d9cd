//! Pacing the fleet: the handshake budget against a mass drop, and the reconnect backoff against a
//! server that ends every login at once (issue 8, item 2). Dial times come from the sim's side
//! (`GET /dials`); the numbers are printed for the closing note.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wa_sim::harness::fleet::{add_and_scan, connections, start_against, wait_status};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::STATE_DEADLINE;

/// The budget the mass-drop test runs with (the defaults).
const RATE: u64 = 5;
const BURST: u64 = 5;
const CONCURRENCY: &str = "8";
/// Dials granted apart that a loaded 2-core machine may deliver to the sim in the same second.
const SCHEDULING_SLACK: u64 = 3;

/// One row of the sim's `GET /dials`.
#[derive(Clone, Debug)]
struct Dial {
    conn: u64,
    accepted: u64,
    jid: Option<String>,
    logged_in: Option<u64>,
}

fn dials(sim: &Sim) -> Vec<Dial> {
    sim.get("/dials")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| Dial {
            conn: d["conn_id"].as_u64().expect("conn_id"),
            accepted: d["accepted_at_ms"].as_u64().expect("accepted_at_ms"),
            jid: d["jid"].as_str().map(str::to_owned),
            logged_in: d["logged_in_at_ms"].as_u64(),
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn phone(i: usize) -> String {
    format!("1555300{i:04}")
}

/// Pairs `n` accounts at once (one thread each); returns (id, device JID) once all are connected.
fn pair(sup: &Supervisor, sim: &Sim, n: usize) -> Vec<(String, String)> {
    let accounts: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    let id = format!("pace-{i:02}");
                    let jid = add_and_scan(sup, sim, &id, &phone(i), Duration::from_secs(60));
                    (id, jid)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("pairing thread"))
            .collect()
    });
    for (id, _) in &accounts {
        wait_status(sup, id, "connected", Duration::from_secs(60));
    }
    accounts
}

/// The most dials in any window of one second.
fn busiest_second(times: &[u64]) -> usize {
    times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1000).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_mass_drop_of_thirty_accounts_reconnects_at_the_budgets_rate() {
    let volume = Volume::new();
    let sim = Sim::start(&[]);
    let sup = start_against(
        &volume,
        &sim,
        &[
            ("HANDSHAKE_CONCURRENCY", CONCURRENCY),
            ("HANDSHAKE_RATE", "5"),
            // The production backoff: every account redials about a second after the drop.
            ("RECONNECT_BASE_MS", "1000"),
            ("RECONNECT_MAX_MS", "30000"),
            ("RUST_LOG", "info,supervisor::fleet=debug"),
        ],
    );
    let accounts = pair(&sup, &sim, 30);
    let before = connections(&sim);
    assert_eq!(before.len(), 30, "{before:?}");
    let attempts: Vec<u64> = sup.dashboard()["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["reconnectAttempts"].as_u64().unwrap_or(0))
        .collect();
    println!("attempt counters before the drop: {attempts:?}");

    // Every worker is done with its login's work (it writes 812 prekeys before it uploads
    // them), so the timeline measures the budget, not a busy disk.
    wait_until(
        "every worker uploaded its prekeys",
        Duration::from_secs(120),
        || {
            let n = sup.events("uploading prekeys").len();
            if n >= 30 {
                Ok(())
            } else {
                Err(format!("{n}/30"))
            }
        },
    );
    // The server drops every socket at once.
    let dropped_at = unix_ms();
    let (status, body) = sim.post("/drop-all", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dropped"], 30, "{body}");
    // Some accounts wait for a permit meanwhile, and the API says so.
    let mut saw_waiting = false;
    let after = wait_until("all 30 logged in again", Duration::from_secs(60), || {
        if !saw_waiting {
            let d = sup.dashboard();
            saw_waiting = d["handshakes"]["waiting"].as_u64() > Some(0)
                || d["accounts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["dialQueuedSince"].is_string()));
        }
        let now = connections(&sim);
        let fresh = now
            .iter()
            .filter(|(jid, conn)| before.get(*jid).is_some_and(|old| old != *conn))
            .count();
        if fresh == 30 {
            Ok(now)
        } else {
            Err(format!("{fresh}/30 back"))
        }
    });
    for (id, _) in &accounts {
        wait_status(&sup, id, "connected", STATE_DEADLINE);
    }

    let redials: Vec<Dial> = dials(&sim)
        .into_iter()
        .filter(|d| d.accepted >= dropped_at)
        .collect();
    let times: Vec<u64> = redials.iter().map(|d| d.accepted).collect();
    let first = *times.iter().min().expect("dials after the drop");
    let all_back = redials
        .iter()
        .filter(|d| after.values().any(|c| *c == d.conn))
        .filter_map(|d| d.logged_in)
        .max()
        .expect("logins after the drop");
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &times {
        *per_second.entry((t - dropped_at) / 1000).or_default() += 1;
    }
    let busiest = busiest_second(&times);
    let logged_at = |message: &str| -> Vec<u64> {
        sup.events(message)
            .iter()
            .filter_map(|e| {
                let at = humantime::parse_rfc3339(e["timestamp"].as_str()?).ok()?;
                Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
            })
            .filter(|t| *t >= dropped_at)
            .collect()
    };
    let noticed = logged_at("connection failed; will retry");
    let asked = logged_at("dial permit asked for");
    let granted = logged_at("dial permit granted");
    println!(
        "  workers saw the drop (ms): {:?}",
        noticed.iter().map(|t| t - dropped_at).collect::<Vec<_>>()
    );
    println!(
        "  permits asked for (ms): {:?}",
        asked.iter().map(|t| t - dropped_at).collect::<Vec<_>>()
    );
    println!(
        "  permits granted by the supervisor after the drop (ms): {:?}",
        granted.iter().map(|t| t - dropped_at).collect::<Vec<_>>()
    );
    println!(
        "  dials seen by the sim after the drop (ms): {:?}",
        times.iter().map(|t| t - dropped_at).collect::<Vec<_>>()
    );
    println!("mass drop of 30 accounts (HANDSHAKE_RATE=5, HANDSHAKE_CONCURRENCY=8):");
    println!(
        "  dials after the drop: {} (first {} ms after the drop)",
        times.len(),
        first - dropped_at
    );
    for (second, n) in &per_second {
        println!("  second {second}: {n} dials");
    }
    println!("  busiest one-second window: {busiest} dials");
    let mut granted_per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &granted {
        *granted_per_second
            .entry((t - dropped_at) / 1000)
            .or_default() += 1;
    }
    println!("  permits per second after the drop: {granted_per_second:?}");
    println!(
        "  all 30 connected again {} ms after the drop",
        all_back - dropped_at
    );
    let per_account: BTreeSet<&str> = redials.iter().filter_map(|d| d.jid.as_deref()).collect();
    assert_eq!(per_account.len(), 30, "every account logged in again");
    // The budget's own decisions keep the bound exactly.
    let busiest_granted = busiest_second(&granted);
    println!("  busiest one-second window of permits: {busiest_granted}");
    assert!(
        granted.len() >= 30,
        "a permit for every redial: {}",
        granted.len()
    );
    assert!(
        busiest_granted as u64 <= RATE + BURST,
        "{busiest_granted} permits in one second; the budget allows {RATE}/s plus a burst of {BURST}"
    );
    // The sim sees the same, give or take the workers' scheduling on a loaded machine: a few
    // dials granted apart may reach it together.
    assert!(
        busiest as u64 <= RATE + BURST + SCHEDULING_SLACK,
        "{busiest} dials in one second at the sim; the budget allows {RATE}/s plus a burst of \
         {BURST}"
    );
    assert!(
        times.iter().filter(|t| **t < first + 1000).count() < 30,
        "the 30 accounts no longer all dial within one second"
    );
    assert!(
        saw_waiting,
        "accounts were seen waiting for a permit in the API"
    );

    let metrics = sup.call("GET", "/metrics", None).text();
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert!(gauge("wafleet_dials_per_minute") >= 30, "{metrics}");
    assert!(
        gauge("wafleet_dials_granted_total") >= 30 + 60,
        "pairings dial twice each"
    );
    assert_eq!(gauge("wafleet_dials_waiting"), 0);
    assert_eq!(gauge("wafleet_dial_permits_reclaimed_total"), 0);
    let budget = &sup.dashboard()["handshakes"];
    assert_eq!(budget["waiting"], 0, "{budget}");
    assert!(budget["dialsPerMinute"].as_u64() >= Some(30), "{budget}");
}

/// Pairs one account against a sim that, from then on, ends every login with `fault`; returns
/// the gaps between each login and the next dial, from the sim's side, once `n` are seen.
fn login_loop_gaps(fault: Value, base_ms: &str, n: usize) -> (Vec<u64>, Supervisor, Sim) {
    let volume = Volume::new();
    let sim = Sim::start(&[]);
    let sup = start_against(
        &volume,
        &sim,
        &[
            ("RECONNECT_BASE_MS", base_ms),
            ("RECONNECT_MAX_MS", "30000"),
        ],
    );
    let jid = add_and_scan(&sup, &sim, "loop", &phone(90), STATE_DEADLINE);
    wait_status(&sup, "loop", "connected", STATE_DEADLINE);
    let (status, body) = sim.post("/after-login", &fault);
    assert_eq!(status, 200, "{body}");
    let (status, body) = sim.post("/drop", &json!({ "jid": jid }));
    assert_eq!(status, 200, "{body}");
    let gaps = wait_until(
        &format!("{n} logins ended by the server"),
        Duration::from_secs(60),
        || {
            let rows: Vec<Dial> = dials(&sim);
            let gaps: Vec<u64> = rows
                .windows(2)
                .filter_map(|w| Some(w[1].accepted.saturating_sub(w[0].logged_in?)))
                .collect();
            // The first gap runs from the login after pairing to the first dial after the
            // drop; the loop's own gaps follow it.
            let looped: Vec<u64> = gaps.into_iter().skip(1).collect();
            if looped.len() >= n {
                Ok(looped[..n].to_vec())
            } else {
                Err(format!("{} gaps so far: {looped:?}", looped.len()))
            }
        },
    );
    (gaps, sup, sim)
}

#[test]
fn a_server_that_ends_every_login_sees_the_delays_grow() {
    let (gaps, sup, _sim) = login_loop_gaps(json!({ "fault": "end" }), "100", 5);
    println!("login-then-end loop (RECONNECT_BASE_MS=100): delays between a login and the next dial: {gaps:?} ms");
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0], "the delays grow: {gaps:?}");
    }
    // The drop was attempt 1 (100 ms); the n-th login ended is attempt n + 1: 100·2^n ±20 %.
    for (i, gap) in gaps.iter().enumerate() {
        let nominal = 100u64 << (i + 1);
        assert!(
            *gap >= nominal * 8 / 10 && *gap <= nominal * 12 / 10 + 500,
            "gap {i} is {gap} ms; expected about {nominal} ms: {gaps:?}"
        );
    }
    let account = sup.account("loop");
    assert!(
        account["reconnectAttempts"].as_u64() >= Some(5),
        "the counter is not reset by <success>: {account}"
    );
}

#[test]
fn a_server_that_asks_for_a_restart_after_every_login_sees_the_delays_grow() {
    let (gaps, _sup, _sim) = login_loop_gaps(json!({ "fault": "restart" }), "100", 4);
    println!("login-then-515 loop (RECONNECT_BASE_MS=100): delays between a login and the next dial: {gaps:?} ms");
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0], "the delays grow: {gaps:?}");
    }
    assert!(
        gaps[0] >= 160,
        "a 515 on a connection that was not stable backs off: {gaps:?}"
    );
}

#[test]
fn the_backoff_starts_over_only_after_a_stable_connection() {
    let volume = Volume::new();
    let sim = Sim::start(&[]);
    let sup = start_against(
        &volume,
        &sim,
        &[
            ("RECONNECT_BASE_MS", "200"),
            ("BACKOFF_RESET_AFTER_MS", "3000"),
        ],
    );
    let jid = add_and_scan(&sup, &sim, "steady", &phone(91), STATE_DEADLINE);
    wait_status(&sup, "steady", "connected", STATE_DEADLINE);

    // Three logins ended at once: the counter climbs past them.
    sim.post("/after-login", &json!({ "fault": "end" }));
    sim.post("/drop", &json!({ "jid": jid }));
    wait_until("three logins ended", STATE_DEADLINE, || {
        let a = sup.account("steady");
        if a["reconnectAttempts"].as_u64() >= Some(3) {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    sim.post("/after-login", &json!({ "fault": null }));
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    wait_status(&sup, "steady", "connected", STATE_DEADLINE);
    let connected = sup.account("steady");
    assert!(
        connected["reconnectAttempts"].as_u64() >= Some(3),
        "logged in, not yet stable: the counter stays: {connected}"
    );
    // Stable for 3 s: the counter starts over.
    wait_until("the counter reset", STATE_DEADLINE, || {
        let a = sup.account("steady");
        if a["reconnectAttempts"] == 0 && a["status"] == "connected" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    // The next drop is attempt 1 again: 200 ms ±20 %, not the 1.6 s or more of attempt 4.
    let dropped_at = unix_ms();
    sim.post("/drop", &json!({ "jid": jid }));
    let redial = wait_until("a dial after the drop", STATE_DEADLINE, || {
        dials(&sim)
            .into_iter()
            .find(|d| d.accepted >= dropped_at)
            .ok_or_else(|| "none yet".to_owned())
    });
    let gap = redial.accepted - dropped_at;
    println!("after a stable connection (BACKOFF_RESET_AFTER_MS=3000, RECONNECT_BASE_MS=200): redial {gap} ms after the drop");
    assert!(
        gap < 800,
        "first attempt's delay, not a grown one: {gap} ms"
    );
    sim.wait_logged_in(&jid, STATE_DEADLINE);
}
