//! The import over a real Baileys folder: `tests/data/baileys_auth/shop` was written by Baileys
//! 7.0.0-rc.9 (libsignal 6.0.0) paired through wa-sim, after a 1:1 exchange with a contact and
//! a group exchange (a few of its 811 prekeys kept). The sim made every key; no real account.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use worker::signal::{SenderKeyRecord, SessionRecord};
use worker::store::creds::Loaded;
use worker::store::signal::Address;

use super::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/baileys_auth");
const CONTACT_LID: &str = "105376663196007";
const OWN_LID: &str = "110621229111856";
const GROUP: &str = "120363000000000001@g.us";

/// A copy of the fixture parent (`baileys_auth/shop`) in a fresh folder.
fn source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(Path::new(FIXTURE), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Names, contents, modes and mtimes of everything under `dir`.
fn hash_tree(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut entries = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("list") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("meta");
            let name = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            let mut facts =
                format!("{}:{}:{}|", meta.mode(), meta.mtime(), meta.mtime_nsec()).into_bytes();
            if meta.is_dir() {
                out.insert(name, facts);
                walk(root, &path, out);
            } else {
                facts.extend(fs::read(&path).expect("read"));
                out.insert(name, facts);
            }
        }
    }
    walk(dir, dir, &mut entries);
    let mut h = Sha256::new();
    for (name, facts) in &entries {
        h.update(name.as_bytes());
        h.update(facts);
    }
    hex::encode(h.finalize())
}

fn baileys_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

fn b64_of(value: &serde_json::Value) -> Vec<u8> {
    let text = value
        .get("data")
        .and_then(|d| d.as_str())
        .or(value.as_str())
        .expect("base64");
    STANDARD.decode(text).expect("base64")
}

fn imported(report: &Report) -> &Imported {
    match &report.outcomes[..] {
        [Outcome::Imported(a)] => a,
        other => panic!("one import expected: {other:?}"),
    }
}

fn refusal(report: &Report) -> &str {
    match &report.outcomes[..] {
        [Outcome::Refused { reason, .. }] => reason,
        other => panic!("one refusal expected: {other:?}"),
    }
}

#[test]
fn the_account_keeps_its_identity_sessions_prekeys_sender_keys_and_lid_map() {
    let src = source();
    let sessions = tempfile::tempdir().expect("tempdir");
    let before = hash_tree(src.path());
    let report = import_baileys(sessions.path(), src.path(), None).expect("import");
    assert_eq!(hash_tree(src.path()), before, "the source is never written");
    let done = imported(&report);
    assert_eq!(done.id.as_str(), "shop");
    assert_eq!(done.phone, "15550001111");
    assert_eq!(
        (
            done.sessions,
            done.identities,
            done.prekeys,
            done.sender_keys,
            done.lid_mappings
        ),
        (3, 3, 3, 2, 2)
    );
    let skipped: Vec<(&str, usize)> = done
        .skipped
        .iter()
        .map(|s| (s.what.as_str(), s.count))
        .collect();
    assert_eq!(skipped, [("device-list", 4), ("sender-key-memory", 1)]);

    let theirs = baileys_json(&src.path().join("shop/creds.json"));
    let dir = sessions.path().join("shop");
    let keys = KeyStore::new(&dir);
    let Loaded::Creds(creds) = CredsStore::new(&dir).load(&keys).expect("load") else {
        panic!("creds must load");
    };
    assert_eq!(
        creds.noise_key.public.0.to_vec(),
        b64_of(&theirs["noiseKey"]["public"])
    );
    assert_eq!(
        creds.identity_key.private.expose().0.to_vec(),
        b64_of(&theirs["signedIdentityKey"]["private"])
    );
    assert_eq!(
        creds.signed_prekey.signature.0.to_vec(),
        b64_of(&theirs["signedPreKey"]["signature"])
    );
    assert_eq!(creds.signed_prekey.key_id, 1);
    assert_eq!(creds.registration_id, 14);
    assert_eq!(
        creds.adv_secret.expose().0.to_vec(),
        b64_of(&theirs["advSecretKey"])
    );
    let me = creds.me.as_ref().expect("paired");
    assert_eq!(me.jid, "15550001111:1@s.whatsapp.net");
    assert_eq!(me.lid.as_deref(), Some("110621229111856:1@lid"));
    assert_eq!(
        creds.account_key.as_ref().map(|k| k.0.to_vec()),
        Some(b64_of(&theirs["account"]["accountSignatureKey"]))
    );
    assert_eq!(creds.platform.as_deref(), Some("android"));
    assert_eq!(
        creds.routing_info.as_ref().map(|b| b.0.clone()),
        Some(b"sim-edge-2".to_vec())
    );
    let account = worker::wa::proto::AdvSignedDeviceIdentity {
        details: Some(b64_of(&theirs["account"]["details"])),
        account_signature_key: Some(b64_of(&theirs["account"]["accountSignatureKey"])),
        account_signature: Some(b64_of(&theirs["account"]["accountSignature"])),
        device_signature: Some(b64_of(&theirs["account"]["deviceSignature"])),
    };
    assert_eq!(
        creds.account.as_ref().map(|b| b.0.clone()),
        Some(prost::Message::encode_to_vec(&account))
    );

    let registry = Registry::new(sessions.path()).load_all().expect("registry");
    assert_eq!(registry.len(), 1);
    assert_eq!(registry[0].phone.as_deref(), Some("+15550001111"));
    assert!(registry[0].enabled);

    // The contact's session: the open (initiator) state current, the closed one archived.
    let contact = Address::new(format!("{CONTACT_LID}_1"), 0).expect("address");
    let record = SessionRecord::from_bytes(&keys.session(&contact).expect("read").expect("there"))
        .expect("loads");
    assert!(record.has_current_session());
    assert_eq!(record.archived_count(), 1);
    let theirs_session = baileys_json(
        &src.path()
            .join(format!("shop/session-{CONTACT_LID}_1.0.json")),
    );
    let open = theirs_session["_sessions"]
        .as_object()
        .expect("sessions")
        .values()
        .find(|e| e["indexInfo"]["closed"] == -1)
        .expect("an open state");
    let remote = b64_of(&open["indexInfo"]["remoteIdentityKey"]);
    assert_eq!(
        record.remote_identity().map(|k| k.as_bytes().to_vec()),
        Some(remote[1..].to_vec())
    );
    let current = record.current().expect("current");
    assert_eq!(current.remote_registration_id(), 1973);
    assert_eq!(
        current.base_key().as_bytes().to_vec(),
        b64_of(&open["indexInfo"]["baseKey"])[1..].to_vec()
    );
    assert!(!current.has_pending_pre_key());
    assert_eq!(
        keys.identity(&contact)
            .expect("identity")
            .map(|k| k.to_vec()),
        Some(remote[1..].to_vec())
    );

    // Prekeys, and the next id after Baileys' own counter.
    let theirs_prekey = baileys_json(&src.path().join("shop/pre-key-812.json"));
    let pair = keys.prekey(812).expect("read").expect("imported");
    assert_eq!(
        pair.private.expose().0.to_vec(),
        b64_of(&theirs_prekey["private"])
    );
    assert!(
        keys.prekey(1).expect("read").is_none(),
        "consumed in Baileys"
    );
    assert_eq!(keys.next_prekey_id().expect("counter"), 813);

    // Sender keys: the contact's (no private half) and our own (with it).
    let theirs_key = keys
        .sender_key(GROUP, &contact)
        .expect("read")
        .expect("contact's key");
    let theirs_key = SenderKeyRecord::from_bytes(&theirs_key).expect("loads");
    assert_eq!(
        theirs_key.current().map(|s| (s.key_id(), s.iteration())),
        Some((26862022, 1))
    );
    let own = Address::new(format!("{OWN_LID}_1"), 1).expect("address");
    let own_key =
        SenderKeyRecord::from_bytes(&keys.sender_key(GROUP, &own).expect("read").expect("own"))
            .expect("loads");
    assert!(
        own_key.distribution_message().is_ok(),
        "our own key can still sign"
    );

    assert_eq!(
        keys.lid_for_pn("15550009999").expect("map").as_deref(),
        Some(CONTACT_LID)
    );
    assert_eq!(
        keys.pn_for_lid(OWN_LID).expect("map").as_deref(),
        Some("15550001111")
    );

    let text = summary(&report, sessions.path(), false);
    assert!(
        text.contains("imported shop (+155****11): 3 sessions"),
        "{text}"
    );
    assert!(!text.contains("15550001111"), "the phone is masked: {text}");
}

#[test]
fn one_folder_takes_its_id_from_the_flag_or_its_name() {
    let src = source();
    let sessions = tempfile::tempdir().expect("tempdir");
    let folder = src.path().join("shop");
    let report = import_baileys(sessions.path(), &folder, Some("moved")).expect("import");
    assert_eq!(imported(&report).id.as_str(), "moved");
    let report = import_baileys(sessions.path(), &folder, None).expect("import");
    assert_eq!(imported(&report).id.as_str(), "shop");
    fs::rename(&folder, src.path().join("Not An Id")).expect("rename");
    let report =
        import_baileys(sessions.path(), &src.path().join("Not An Id"), None).expect("import");
    assert!(
        refusal(&report).contains("pass --account"),
        "{}",
        refusal(&report)
    );
}

#[test]
fn the_parent_form_imports_each_folder_or_the_one_asked_for() {
    let src = source();
    copy_dir(&src.path().join("shop"), &src.path().join("cafe"));
    fs::create_dir(src.path().join("not-an-account")).expect("a folder without creds");
    let sessions = tempfile::tempdir().expect("tempdir");
    let report = import_baileys(sessions.path(), src.path(), Some("cafe")).expect("import");
    assert_eq!(imported(&report).id.as_str(), "cafe");
    let report = import_baileys(sessions.path(), src.path(), None).expect("import");
    let ids: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Imported(a) => format!("+{}", a.id),
            Outcome::Refused { id, .. } => format!("-{id}"),
        })
        .collect();
    assert_eq!(ids, ["-cafe", "+shop"]);
    assert!(report.any_refused());
    assert!(import_baileys(sessions.path(), src.path(), Some("nope")).is_err());
}

#[test]
fn an_existing_account_is_refused_and_left_as_it_was() {
    let src = source();
    let sessions = tempfile::tempdir().expect("tempdir");
    import_baileys(sessions.path(), src.path(), None).expect("import");
    let before = hash_tree(sessions.path());
    let report = import_baileys(sessions.path(), src.path(), None).expect("import");
    assert!(
        refusal(&report).contains("already exists"),
        "{}",
        refusal(&report)
    );
    assert_eq!(hash_tree(sessions.path()), before);
}

#[test]
fn an_unpaired_folder_is_refused_and_nothing_is_written() {
    let src = source();
    let creds = src.path().join("shop/creds.json");
    let mut value = baileys_json(&creds);
    value.as_object_mut().expect("object").remove("me");
    fs::write(&creds, serde_json::to_vec(&value).expect("json")).expect("write");
    let sessions = tempfile::tempdir().expect("tempdir");
    let report = import_baileys(sessions.path(), src.path(), None).expect("import");
    assert!(
        refusal(&report).contains("not paired"),
        "{}",
        refusal(&report)
    );
    assert_eq!(fs::read_dir(sessions.path()).expect("list").count(), 0);
}

#[test]
fn a_malformed_file_is_named_and_nothing_is_written() {
    for (file, content) in [
        (
            format!("session-{CONTACT_LID}_1.0.json"),
            &b"{\"_sessions\": {\"x\": 1}}"[..],
        ),
        ("pre-key-2.json".to_owned(), b"{\"private\": \"AAAA\"}"),
        ("creds.json".to_owned(), b"{ not json"),
        (
            format!("sender-key-{GROUP}--{CONTACT_LID}_1--0.json"),
            b"{\"type\":\"Buffer\",\"data\":\"bm90IGpzb24=\"}",
        ),
    ] {
        let src = source();
        fs::write(src.path().join("shop").join(&file), content).expect("damage");
        let sessions = tempfile::tempdir().expect("tempdir");
        let report = import_baileys(sessions.path(), src.path(), None).expect("import");
        assert!(
            refusal(&report).starts_with(&format!("{file}: ")),
            "{}",
            refusal(&report)
        );
        assert_eq!(
            fs::read_dir(sessions.path()).expect("list").count(),
            0,
            "{file}"
        );
    }
}

#[test]
fn a_failure_while_writing_removes_the_new_account_again() {
    let src = source();
    // A group name longer than the key store takes: read fine, refused when written.
    let long = format!("{}@g.us", "1".repeat(80));
    fs::rename(
        src.path()
            .join(format!("shop/sender-key-{GROUP}--{CONTACT_LID}_1--0.json")),
        src.path()
            .join(format!("shop/sender-key-{long}--{CONTACT_LID}_1--0.json")),
    )
    .expect("rename");
    let sessions = tempfile::tempdir().expect("tempdir");
    let report = import_baileys(sessions.path(), src.path(), None).expect("import");
    assert!(
        refusal(&report).ends_with("nothing kept"),
        "{}",
        refusal(&report)
    );
    assert!(!sessions.path().join("shop").exists());
}

#[test]
fn boot_finds_the_seed_accounts_not_imported_yet() {
    let volume = tempfile::tempdir().expect("tempdir");
    let sessions = volume.path().join("sessions");
    fs::create_dir(&sessions).expect("sessions");
    copy_dir(Path::new(FIXTURE), &volume.path().join(SEED_AUTH_DIR));
    let dirs = seed_dirs(&sessions, Some(volume.path()));
    assert_eq!(
        dirs,
        [volume.path().join(SEED_AUTH_DIR)],
        "one folder, named once"
    );
    assert_eq!(pending(&dirs[0], &[]), ["shop"]);
    import_baileys(&sessions, &dirs[0], None).expect("import");
    let known = [AccountId::parse("shop").expect("id")];
    assert!(pending(&dirs[0], &known).is_empty());
    assert!(pending(&volume.path().join("missing"), &[]).is_empty());
    assert!(
        pending(&sessions, &known).is_empty(),
        "wafleet's own creds are not Baileys'"
    );
    copy_dir(&dirs[0].join("shop"), &sessions.join("cafe"));
    assert_eq!(
        pending(&sessions, &known),
        ["cafe"],
        "the seed ran on the same folder"
    );
}
