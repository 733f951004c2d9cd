//! Messages per second through one account, end to end, printed (never asserted): the release
//! `supervisor` and `wa-sim` on loopback, one paired account and one contact that is a real
//! Signal peer (the sim's phone).
//!
//! - sent: N `POST …/messages` to the contact, timed until the contact has decrypted all N;
//! - received: N texts from the contact (`POST /send` at the sim), timed until the API lists
//!   all N as received (each decrypted, stored, receipted and acked by the worker).
//!
//! `cargo build --release --workspace --bins && cargo bench -p wa-sim --bench messages`
//! (`BENCH_MESSAGES` sets N, default 100).

use std::time::Duration;

use serde_json::json;
use wa_sim::harness::fleet::{message_run, MessageRun};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

const ACCOUNT: &str = "bench";
const ACCOUNT_PHONE: &str = "15550009100";
const CONTACT: &str = "15550009200";
const DEADLINE: Duration = Duration::from_secs(300);

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("WA_WS_URL", sim.ws_url.as_str()),
            ("WA_TRUST_ROOT", sim.root_public_key.as_str()),
            ("BOOT_JITTER_MIN_MS", "0"),
            ("BOOT_JITTER_MAX_MS", "0"),
            ("RUST_LOG", "warn,supervisor=info"),
        ],
    );
    let added = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "Bench", "accountId": ACCOUNT}).to_string()),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let qr = wait_until("a QR", DEADLINE, || {
        let j = sup
            .call(
                "GET",
                &format!("/api/whatsapp/qr/{ACCOUNT}?format=json"),
                None,
            )
            .json();
        j["qr"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| j.to_string())
    });
    sim.scan(&qr, ACCOUNT_PHONE);
    wait_until("connected", DEADLINE, || {
        let a = sup.account(ACCOUNT);
        (a["status"] == "connected")
            .then_some(())
            .ok_or_else(|| a.to_string())
    });
    let MessageRun {
        accepted,
        sent,
        handed,
        received,
    } = message_run(&sup, &sim, ACCOUNT, ACCOUNT_PHONE, CONTACT, n, DEADLINE);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("messages through one account, {n} each way (release binaries, loopback):");
    println!(
        "  sent:     {:>7.1} msg/s end to end ({:.2} s; the API accepted all {n} in {:.2} s, {:.1}/s)",
        rate(sent),
        sent.as_secs_f64(),
        accepted.as_secs_f64(),
        rate(accepted)
    );
    println!(
        "  received: {:>7.1} msg/s end to end ({:.2} s; the sim handed them over in {:.2} s)",
        rate(received),
        received.as_secs_f64(),
        handed.as_secs_f64()
    );
}
