//! Boot: sorted order, jittered gaps, accounts without creds left in `needs_qr`.

use std::time::{Duration, SystemTime};

use wa_sim::harness::{Supervisor, Volume};

use super::STATE_DEADLINE;

/// Spawning a process and recording its time costs a little on top of the drawn gap; on a
/// loaded 2-core CI machine, allow this much.
const SPAWN_SLACK: Duration = Duration::from_millis(300);

#[test]
fn five_accounts_with_creds_boot_in_sorted_order_with_gaps_inside_the_jitter_bounds() {
    let volume = Volume::new();
    for id in ["e-5", "a-1", "c-3", "b_2", "d-4"] {
        volume.add_account(id, true);
    }
    volume.add_account("z-no-creds", false);
    let sup = Supervisor::start(
        &volume.sessions(),
        &[("BOOT_JITTER_MIN_MS", "50"), ("BOOT_JITTER_MAX_MS", "150")],
    );

    let dashboard = sup.wait_dashboard("five workers started", STATE_DEADLINE, |d| {
        d["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|x| x["startedAt"].is_string()).count() == 5)
    });
    let mut started: Vec<(SystemTime, String)> = dashboard["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| {
            let at = a["startedAt"].as_str()?;
            Some((
                humantime::parse_rfc3339(at).expect("iso time"),
                a["accountId"].as_str()?.to_owned(),
            ))
        })
        .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        order,
        ["a-1", "b_2", "c-3", "d-4", "e-5"],
        "boot order is byte order"
    );

    for pair in started.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0).expect("ordered");
        assert!(
            gap >= Duration::from_millis(50) && gap < Duration::from_millis(150) + SPAWN_SLACK,
            "gap {gap:?} between {} and {}",
            pair[0].1,
            pair[1].1
        );
    }
    let drawn: Vec<u64> = sup
        .events("boot: starting account")
        .iter()
        .filter_map(|e| e["gap_ms"].as_u64())
        .collect();
    assert_eq!(drawn.len(), 5, "one boot event per account");
    assert_eq!(drawn[0], 0, "no gap before the first");
    for gap in &drawn[1..] {
        assert!(
            (50..150).contains(gap),
            "drawn gap {gap} ms outside [50, 150)"
        );
    }

    let idle = sup.account("z-no-creds");
    assert_eq!(idle["status"], "needs_qr");
    assert_eq!(idle["reason"], "not_paired");
    assert!(
        idle["pid"].is_null(),
        "accounts without creds are not started at boot"
    );
}

#[test]
fn with_zero_jitter_forty_accounts_spawn_back_to_back_in_sorted_order() {
    let volume = Volume::new();
    let mut ids: Vec<String> = (0..40).map(|i| format!("z-{:02}", (i * 17) % 40)).collect();
    for id in &ids {
        volume.add_account(id, true);
    }
    let sup = Supervisor::start(
        &volume.sessions(),
        &[("BOOT_JITTER_MIN_MS", "0"), ("BOOT_JITTER_MAX_MS", "0")],
    );
    sup.wait_event("boot: every stored account started", STATE_DEADLINE);
    let spawned = wa_sim::harness::wait_until("forty workers spawned", STATE_DEADLINE, || {
        let spawned: Vec<String> = sup
            .events("worker spawned")
            .iter()
            .filter_map(|e| e["account"].as_str().map(str::to_owned))
            .collect();
        if spawned.len() == 40 {
            Ok(spawned)
        } else {
            Err(format!("{} spawned", spawned.len()))
        }
    });
    ids.sort();
    assert_eq!(spawned, ids, "spawned in byte order, each once");
    let boots = sup.events("boot: starting account");
    assert_eq!(boots.len(), 40);
    assert!(
        boots.iter().all(|e| e["gap_ms"] == 0),
        "no gap drawn with BOOT_JITTER_MAX_MS=0"
    );
}
