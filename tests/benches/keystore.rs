//! Write times of the worker's key store, printed (never asserted): an 812-key one-time prekey
//! generation, one prekey removal (what a pkmsg costs), one session write and one
//! session-plus-prekey consume, next to what one creds.json save cost when it still carried
//! the 812 prekeys (pretty JSON, as before the key store).
//!
//! `cargo bench -p wa-sim --bench keystore` (set `BENCH_DIR` to measure on another volume).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use worker::store::atomic::write_atomic;
use worker::store::creds::{Creds, KeyPair, PreKey};
use worker::store::signal::{Address, KeyStore};

const ROUNDS: usize = 15;

fn main() -> anyhow::Result<()> {
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base)?;
    let keys = KeyStore::new(dir.path());
    let addr = Address::new("100000000000001_1", 12)?;

    let mut generate = Vec::new();
    let mut keygen = Vec::new();
    let mut remove = Vec::new();
    let mut session = Vec::new();
    let mut consume = Vec::new();
    let mut old_save = Vec::new();
    for round in 0..ROUNDS {
        let t = Instant::now();
        let fresh: Vec<PreKey> = (0..812)
            .map(|id| PreKey {
                id,
                key_pair: KeyPair::generate(),
            })
            .collect();
        keygen.push(t.elapsed());

        let t = Instant::now();
        let ids = keys.generate_prekeys(812)?;
        generate.push(t.elapsed());

        let t = Instant::now();
        keys.remove_prekey(ids[round].id)?;
        remove.push(t.elapsed());

        let t = Instant::now();
        keys.store_session(&addr, &[7u8; 1200])?;
        session.push(t.elapsed());

        let t = Instant::now();
        keys.store_session_consuming_prekey(&addr, &[8u8; 1200], ids[round + 1].id)?;
        consume.push(t.elapsed());

        let mut creds = serde_json::to_value(Creds::generate())?;
        creds["prekeys"] = serde_json::to_value(&fresh)?;
        creds["next_prekey_id"] = 813.into();
        let t = Instant::now();
        let bytes = serde_json::to_vec_pretty(&creds)?;
        write_atomic(&dir.path().join("creds.json"), &bytes, 0o600)?;
        old_save.push(t.elapsed());
    }
    println!(
        "key store write times over {ROUNDS} rounds, in {}:",
        dir.path().display()
    );
    report("812 x25519 key pairs, generated only (no I/O)", keygen);
    report(
        "generate_prekeys(812): keys + counter + one batch file",
        generate,
    );
    report("remove_prekey (batch of 812 rewritten)", remove);
    report("store_session (1200 bytes)", session);
    report("store_session_consuming_prekey", consume);
    report("old: save creds.json with 812 prekeys (pretty)", old_save);
    Ok(())
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what:<56} median {:>7.2} ms  min {:>7.2} ms  max {:>7.2} ms",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
