//! The admin port under load: a flood of half-open connections cannot take the descriptors
//! the workers need, slow clients are cut off, and an event stream is not.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use wa_sim::harness::flood::{open_fds, raise_fd_limit, HalfOpen};
use wa_sim::harness::http;
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{wait_until, Supervisor, Volume};

use super::{alive, all_linked, pids, STATE_DEADLINE};

/// The supervisor's open-file limit (soft and hard) in the flood test. This test process and
/// the supervisor would otherwise share one limit (20,000 here), and every connection costs
/// the client a descriptor as well, so the client would run out first; with 4096 the flood
/// outnumbers the supervisor's descriptors several times over, as 20,000 connections did in
/// production.
const SUPERVISOR_FD_LIMIT: u64 = 4096;
/// The flood the issue describes.
const FLOOD_SIZE: usize = 20_000;
/// Descriptors the flood leaves to the rest of this test process: the other tests run in
/// parallel threads and need theirs.
const CLIENT_MARGIN: usize = 2_000;
/// The header timeout in the flood test: far longer than the test waits for the respawn, so
/// only the connection cap, not a timeout closing the flood's connections, can keep
/// descriptors free for the worker.
const LONG_HEADER_TIMEOUT_MS: &str = "120000";
/// "Within a few seconds" of the flood's end.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(5);

/// A request that stops in the middle of its request line and never goes on.
const HALF_REQUEST: &[u8] = b"GET /health HT";

#[test]
fn a_flood_of_half_open_connections_cannot_stop_workers_respawning_or_health_answering() {
    // The flood is as big as this process may open, up to the 20,000, less a margin
    // for the tests running beside it: about 17,900 under a 20,000 hard limit.
    let limit = usize::try_from(raise_fd_limit()).unwrap_or(usize::MAX);
    let size = limit
        .saturating_sub(open_fds() + CLIENT_MARGIN)
        .min(FLOOD_SIZE);
    let needed = 2 * SUPERVISOR_FD_LIMIT as usize;
    assert!(
        size >= needed,
        "this process may open {limit} descriptors, leaving {size} for the flood; it needs \
         {needed} to outnumber the supervisor's (raise the hard limit: ulimit -Hn)"
    );

    let volume = Volume::new();
    for id in ["flood-a", "flood-b"] {
        volume.add_account(id, true);
    }
    let sup = Supervisor::start_with_fd_limit(
        &volume.sessions(),
        &[
            ("RESTART_BACKOFF_BASE_MS", "100"),
            ("HTTP_HEADER_TIMEOUT_MS", LONG_HEADER_TIMEOUT_MS),
            // Workers keep reconnecting (to a refused port) however long the flood lasts.
            ("MAX_RECONNECT_ATTEMPTS", "1000000"),
        ],
        SUPERVISOR_FD_LIMIT,
    );
    let before =
        pids(&sup.wait_dashboard("two linked workers", STATE_DEADLINE, |d| all_linked(d, 2)));
    let cap = sup.events("http connection cap")[0]["cap"]
        .as_u64()
        .expect("the cap is logged at start") as usize;
    assert!(
        cap < size && (cap as u64) < SUPERVISOR_FD_LIMIT / 2,
        "cap {cap} for a limit of {SUPERVISOR_FD_LIMIT}"
    );

    let flooding = Instant::now();
    let flood = HalfOpen::open(sup.addr(), size, HALF_REQUEST);
    let flood_took = flooding.elapsed();
    assert!(
        flood.len() as u64 > SUPERVISOR_FD_LIMIT,
        "only {} of {size} connections opened, too few to outnumber the supervisor's \
         descriptors; first error: {:?}",
        flood.len(),
        flood.first_error
    );

    // While every connection is open and the server holds as many as it allows: one more
    // is told to come back later at once, instead of hanging...
    let busy = http::request(sup.addr(), "GET", "/health", &[], None);
    assert!(
        busy.as_ref().is_ok_and(|r| r.status == 503) || busy.is_err(),
        "over the cap: {busy:?}"
    );
    // ...and a killed worker comes back.
    let victim = before[0].1.expect("flood-a runs");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill -9 the worker");
    let respawned = wait_until("flood-a respawned during the flood", STATE_DEADLINE, || {
        sup.events("worker spawned")
            .into_iter()
            .filter(|e| e["account"] == "flood-a")
            .filter_map(|e| e["pid"].as_u64())
            .find(|pid| *pid != victim)
            .ok_or_else(|| format!("spawn errors: {:?}", sup.events("cannot spawn worker")))
    });
    assert!(alive(sup.pid()), "the supervisor survived the flood");
    let refusals = sup
        .events("http connection cap reached; refusing new connections")
        .len();
    assert!(
        refusals >= 1,
        "{} connections against a cap of {cap} were refused",
        flood.len()
    );
    assert!(
        refusals * 100 < flood.len(),
        "refusals are logged once per burst, not per connection: {refusals} lines"
    );

    // The flood ends: health answers within seconds, and the API shows the new worker.
    let opened = flood.len();
    flood.close();
    let started = Instant::now();
    wait_until("/health 200 after the flood", RECOVERY_DEADLINE, || {
        let r = http::request(sup.addr(), "GET", "/health", &[], None)
            .map_err(|e| format!("no answer: {e}"))?;
        (r.status == 200)
            .then_some(())
            .ok_or_else(|| format!("{}: {}", r.status, r.text()))
    });
    let recovered = started.elapsed();
    let after = sup.wait_dashboard("the new worker in the API", STATE_DEADLINE, |d| {
        all_linked(d, 2) && pids(d)[0].1 == Some(respawned)
    });
    assert_eq!(pids(&after)[1], before[1], "flood-b untouched");
    eprintln!(
        "flood: {opened} connections opened in {flood_took:?} (cap {cap}, {refusals} refusal \
         bursts), /health 200 {recovered:?} after they closed"
    );
}

#[test]
fn slow_clients_are_cut_off_but_an_event_stream_runs_on() {
    let volume = Volume::new();
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("HTTP_HEADER_TIMEOUT_MS", "300"),
            ("HTTP_REQUEST_TIMEOUT_MS", "300"),
        ],
    );
    let mut events = sup.events_stream("", &[]);
    assert_eq!(events.status, 200);

    // A request line that never ends is closed after the header timeout, unanswered.
    let mut half = TcpStream::connect(sup.addr()).expect("connect");
    half.write_all(HALF_REQUEST).expect("write");
    let answer = read_until_closed(&mut half, "a half-sent request");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A kept-alive connection that goes quiet after its answer is closed too.
    let mut idle = TcpStream::connect(sup.addr()).expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let answer = read_until_closed(&mut idle, "an idle kept-alive connection");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A body that never arrives gets 408, and nothing happens.
    let mut slow = TcpStream::connect(sup.addr()).expect("connect");
    let head = format!(
        "POST /api/whatsapp/add-account HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":\"slow\","
    );
    slow.write_all(head.as_bytes()).expect("write");
    let answer = String::from_utf8_lossy(&read_until_closed(&mut slow, "a slow body")).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let list = sup.call("GET", "/api/whatsapp/accounts", None).json();
    assert_eq!(
        list["accounts"],
        json!([]),
        "the slow request added nothing"
    );

    // The stream was opened before all of that, so it is older than both timeouts: it still
    // delivers.
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "After", "accountId": "after"}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let event = events.wait_for("the new account's status", STATE_DEADLINE, |e| {
        e.event.as_deref() == Some("account.status")
    });
    assert_eq!(event.json()["accountId"], "after");
}

/// Reads until the server closes the connection; panics if it is still open after a while.
fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    stream
        .set_read_timeout(Some(STATE_DEADLINE))
        .expect("read timeout");
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => got,
        Err(e) => panic!(
            "{what}: the server did not close the connection ({e}); read {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}
