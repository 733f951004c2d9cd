//! `creds.json`: one account's keys and identity, owned by its worker alone.
//!
//! The file is written atomically with mode 0600, compact, the moment anything in it changes,
//! and never when nothing did; a file that cannot be read or parsed is renamed
//! `creds.json.corrupt-<ts>` and never deleted.
//!
//! One-time prekeys and their id counter live in the [`KeyStore`], not here. A v1 file written
//! before that still carries a `prekeys` array and `next_prekey_id`: [`CredsStore::load`] moves
//! them into the key store durably first, then rewrites `creds.json` without them. A crash in
//! between repeats the move on the next load (it is idempotent).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::rename_durable;
use super::secret::{Blob, Bytes, Secret};
use super::signal::KeyStore;
use crate::wa::xeddsa;

/// The current format version of `creds.json`.
pub const CREDS_VERSION: u32 = 1;

const CREDS_FILE: &str = volume::layout::CREDS_FILE;
const CREDS_MODE: u32 = 0o600;

/// An X25519 key pair.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct KeyPair {
    /// The public key.
    pub public: Bytes<32>,
    /// The private key.
    pub private: Secret<Bytes<32>>,
}

/// The signed prekey: a key pair signed by the identity key.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct SignedPreKey {
    /// Its id.
    pub key_id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key over `0x05 || public`.
    pub signature: Bytes<64>,
}

/// Who this device is, once paired.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Me {
    /// The device JID, e.g. `40712345678:3@s.whatsapp.net`.
    pub jid: String,
    /// The device's LID, when the server gave one.
    #[serde(default)]
    pub lid: Option<String>,
    /// The account's display name.
    #[serde(default)]
    pub push_name: Option<String>,
}

/// Everything one account needs to log in again. Format version [`CREDS_VERSION`].
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Creds {
    /// Format version.
    pub version: u32,
    /// The Noise static key presented to WhatsApp.
    pub noise_key: KeyPair,
    /// The Signal identity key.
    pub identity_key: KeyPair,
    /// The current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// The Signal registration id.
    pub registration_id: u32,
    /// The secret shared with the phone through the QR code.
    pub adv_secret: Secret<Bytes<32>>,
    /// Set once paired.
    #[serde(default)]
    pub me: Option<Me>,
    /// The signed device identity (`ADVSignedDeviceIdentity` bytes), set once paired.
    #[serde(default)]
    pub account: Option<Blob>,
    /// The edge routing info the server sent last, for the next connect.
    #[serde(default)]
    pub routing_info: Option<Blob>,
    /// The phone's identity key (the `accountSignatureKey` of pairing), once paired.
    #[serde(default)]
    pub account_key: Option<Bytes<32>>,
    /// The phone's platform (`android`, `iphone`, `smba`, ...), once paired.
    #[serde(default)]
    pub platform: Option<String>,
}

/// What a v1 `creds.json` carried before the [`KeyStore`] took the one-time prekeys over.
#[derive(Deserialize)]
struct V1PreKeys {
    /// One-time prekeys uploaded to the server and not yet known to be used.
    #[serde(default)]
    prekeys: Option<Vec<PreKey>>,
    /// The id the next generated one-time prekey got.
    #[serde(default)]
    next_prekey_id: Option<u32>,
}

/// A one-time Signal prekey.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct PreKey {
    /// Its id (24 bits on the wire).
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
}

impl KeyPair {
    /// A fresh X25519 key pair.
    pub fn generate() -> Self {
        let private = xeddsa::generate_private();
        KeyPair {
            public: Bytes(xeddsa::public_key(&private)),
            private: Secret::new(Bytes(private)),
        }
    }
}

/// The Signal "DJB" key type byte that prefixes a public key in signed messages.
pub const DJB_KEY_TYPE: u8 = 0x05;

impl Creds {
    /// Fresh credentials for a device that has never paired: the noise key, the identity key,
    /// signed prekey 1 (XEdDSA over `0x05 || public`), a registration id and the adv secret
    /// (wa-protocol.md §4.4; the registration id spans 32 bits as in whatsmeow).
    pub fn generate() -> Self {
        let identity_key = KeyPair::generate();
        let prekey = KeyPair::generate();
        let mut signed = vec![DJB_KEY_TYPE];
        signed.extend_from_slice(&prekey.public.0);
        let signature = xeddsa::sign(&identity_key.private.expose().0, &signed);
        Creds {
            version: CREDS_VERSION,
            noise_key: KeyPair::generate(),
            identity_key,
            signed_prekey: SignedPreKey {
                key_id: 1,
                key_pair: prekey,
                signature: Bytes(signature),
            },
            registration_id: rand::random(),
            adv_secret: Secret::new(Bytes(rand::random())),
            me: None,
            account: None,
            routing_info: None,
            account_key: None,
            platform: None,
        }
    }

    /// Whether this device has completed pairing.
    pub fn is_paired(&self) -> bool {
        self.me.is_some()
    }

    /// The account's phone number (the user part of the JID), once paired.
    pub fn phone(&self) -> Option<&str> {
        let jid = &self.me.as_ref()?.jid;
        let user = jid.split('@').next()?;
        Some(user.split(':').next().unwrap_or(user))
    }
}

/// What [`CredsStore::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No `creds.json`: this account has never registered.
    Missing,
    /// Valid credentials.
    Creds(Box<Creds>),
    /// The file is of a newer format version than this build knows; it was left untouched.
    NewerVersion {
        /// The version it carries.
        version: u32,
    },
    /// The file is sealed and `SESSIONS_KEY` is missing or does not open it; left untouched.
    Sealed {
        /// Which, and what to do.
        problem: String,
    },
    /// The file could not be parsed; it was renamed to `kept_as`.
    Corrupt {
        /// Where the bad file now lives.
        kept_as: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
}

/// The creds file of one account directory.
#[derive(Clone, Debug)]
pub struct CredsStore {
    dir: PathBuf,
}

impl CredsStore {
    /// The store of the account directory `dir`.
    pub fn new(dir: &Path) -> Self {
        CredsStore {
            dir: dir.to_owned(),
        }
    }

    /// The account directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `creds.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(CREDS_FILE)
    }

    /// Loads the credentials. A file that does not parse is corrupt: it is kept aside. A file
    /// of a newer format version than this build knows (a rollback) is left untouched. A v1
    /// file that still carries one-time prekeys has them moved into `keys` first, then is
    /// rewritten without them; any other file is only read.
    ///
    /// # Errors
    /// A file that cannot be read (it is left as it is), a corrupt file that cannot even be
    /// renamed aside, or prekeys that cannot be moved (the file is then left as it was).
    pub fn load(&self, keys: &KeyStore) -> io::Result<Loaded> {
        let path = self.path();
        let bytes = match volume::seal::read(&path) {
            Ok(None) => return Ok(Loaded::Missing),
            Ok(Some(bytes)) => bytes,
            Err(e) if volume::seal::is_seal_error(&e) => {
                return Ok(Loaded::Sealed {
                    problem: e.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let problem = match serde_json::from_slice::<Versioned>(&bytes) {
            Ok(Versioned { version }) if version > CREDS_VERSION => {
                return Ok(Loaded::NewerVersion { version })
            }
            Ok(Versioned { version }) if version < CREDS_VERSION => {
                format!("unknown format version {version}")
            }
            Ok(_) => match parse(&bytes) {
                Ok((creds, v1)) => {
                    if v1.prekeys.is_some() || v1.next_prekey_id.is_some() {
                        self.move_prekeys_out(&creds, v1, keys)?;
                    }
                    return Ok(Loaded::Creds(Box::new(creds)));
                }
                Err(e) => format!("not valid creds json: {e}"),
            },
            Err(e) => format!("not valid creds json: {e}"),
        };
        let kept_as = self.aside("corrupt")?;
        Ok(Loaded::Corrupt { kept_as, problem })
    }

    /// Writes `creds` durably (temp file, fsync, rename, fsync dir), compact, mode 0600.
    ///
    /// # Errors
    /// Any I/O error; the previous file is then intact.
    pub fn save(&self, creds: &Creds) -> io::Result<()> {
        let bytes = serde_json::to_vec(creds).map_err(io::Error::other)?;
        volume::seal::write(&self.path(), &bytes, CREDS_MODE)
    }

    /// Whether `creds.json` is there. Every save is durable when it returns (file and folder
    /// fsynced), so a file that is there needs neither a rewrite nor another fsync at shutdown.
    pub fn is_on_disk(&self) -> bool {
        self.path().is_file()
    }

    /// The v1 migration: prekeys into the key store (durable), then `creds.json` without them.
    fn move_prekeys_out(&self, creds: &Creds, v1: V1PreKeys, keys: &KeyStore) -> io::Result<()> {
        let prekeys = v1.prekeys.unwrap_or_default();
        keys.import_legacy_prekeys(&prekeys, v1.next_prekey_id.unwrap_or(1))
            .map_err(io::Error::other)?;
        self.save(creds)?;
        tracing::info!(
            count = prekeys.len(),
            "one-time prekeys moved from creds.json to the key store"
        );
        Ok(())
    }

    /// Moves `creds.json` aside as `creds.json.<label>-<ts>` (after a logout, say), durably.
    ///
    /// # Errors
    /// Any I/O error from the rename.
    pub fn archive(&self, label: &str) -> io::Result<Option<PathBuf>> {
        if !self.path().exists() {
            return Ok(None);
        }
        self.aside(label).map(Some)
    }

    fn aside(&self, label: &str) -> io::Result<PathBuf> {
        let ts = ipc_protocol::UnixMillis::now().0;
        let to = self.dir.join(format!("{CREDS_FILE}.{label}-{ts}"));
        rename_durable(&self.path(), &to)?;
        Ok(to)
    }
}

/// Only the format version, read before anything else.
#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

/// The credentials in `bytes`, and what a v1 file carried besides.
fn parse(bytes: &[u8]) -> serde_json::Result<(Creds, V1PreKeys)> {
    Ok((
        serde_json::from_slice(bytes)?,
        serde_json::from_slice(bytes)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURE: &str = include_str!("../../tests/data/creds-v1.json");
    /// A v1 file as the worker wrote it before the key store: pretty, with `prekeys` and
    /// `next_prekey_id`. Frozen: it must load forever.
    const FIXTURE_WITH_PREKEYS: &str = include_str!("../../tests/data/creds-v1-with-prekeys.json");

    fn keys(dir: &Path) -> KeyStore {
        KeyStore::new(dir)
    }

    #[test]
    fn frozen_v1_fixture_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("creds.json"), FIXTURE).expect("write fixture");
        let Loaded::Creds(creds) = CredsStore::new(dir.path())
            .load(&keys(dir.path()))
            .expect("load")
        else {
            panic!("fixture must load");
        };
        assert_eq!(creds.registration_id, 12345);
        assert_eq!(creds.signed_prekey.key_id, 1);
        assert_eq!(creds.phone(), Some("40712345678"));
        assert!(creds.is_paired());
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds: Creds = serde_json::from_str(FIXTURE).expect("fixture parses");
        let store = CredsStore::new(dir.path());
        store.save(&creds).expect("save");
        let mode = fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let Loaded::Creds(back) = store.load(&keys(dir.path())).expect("load") else {
            panic!("must load");
        };
        assert_eq!(*back, creds);
    }

    #[test]
    fn generated_creds_carry_a_valid_signed_prekey_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = Creds::generate();
        let mut msg = vec![DJB_KEY_TYPE];
        msg.extend_from_slice(&creds.signed_prekey.key_pair.public.0);
        assert!(xeddsa::verify(
            &creds.identity_key.public.0,
            &msg,
            &creds.signed_prekey.signature.0
        ));
        assert!(!creds.is_paired());
        let store = CredsStore::new(dir.path());
        store.save(&creds).expect("save");
        let Loaded::Creds(back) = store.load(&keys(dir.path())).expect("load") else {
            panic!("must load");
        };
        assert_eq!(*back, creds);
    }

    #[test]
    fn corrupt_file_is_kept_aside_not_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("creds.json"), b"{ not json").expect("write");
        let store = CredsStore::new(dir.path());
        let Loaded::Corrupt { kept_as, .. } = store.load(&keys(dir.path())).expect("load") else {
            panic!("must be corrupt");
        };
        assert_eq!(fs::read(&kept_as).expect("kept"), b"{ not json");
        assert!(kept_as
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("creds.json.corrupt-")));
        assert!(matches!(
            store.load(&keys(dir.path())).expect("load"),
            Loaded::Missing
        ));
    }

    #[test]
    fn an_unreadable_file_is_an_error_and_is_left_where_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("creds.json")).expect("a directory where the file goes");
        let store = CredsStore::new(dir.path());
        assert!(store.load(&keys(dir.path())).is_err());
        assert!(store.path().is_dir(), "not renamed");
    }

    #[test]
    fn a_newer_format_version_is_left_untouched_even_when_its_shape_is_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredsStore::new(dir.path());
        let newer = br#"{"version":2,"noise":{"some":"new shape"},"extra":[1,2,3]}"#;
        fs::write(store.path(), newer).expect("write");
        let before = fs::metadata(store.path())
            .expect("meta")
            .modified()
            .expect("mtime");
        assert!(matches!(
            store.load(&keys(dir.path())).expect("load"),
            Loaded::NewerVersion { version: 2 }
        ));
        assert_eq!(fs::read(store.path()).expect("read"), newer);
        let after = fs::metadata(store.path())
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(before, after);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("creds"))
            .collect();
        assert_eq!(names, ["creds.json"], "nothing renamed or added");
    }

    #[test]
    fn an_older_or_missing_version_or_bad_json_is_corrupt() {
        for bad in [
            &br#"{"version":0}"#[..],
            br#"{"noise_key":1}"#,
            b"{not json",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = CredsStore::new(dir.path());
            fs::write(store.path(), bad).expect("write");
            assert!(matches!(
                store.load(&keys(dir.path())).expect("load"),
                Loaded::Corrupt { .. }
            ));
        }
    }

    #[test]
    fn a_v1_file_with_prekeys_moves_them_to_the_key_store_then_drops_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredsStore::new(dir.path());
        fs::write(store.path(), FIXTURE_WITH_PREKEYS).expect("write fixture");
        let keys = keys(dir.path());
        let Loaded::Creds(creds) = store.load(&keys).expect("load") else {
            panic!("the old format must load");
        };
        assert_eq!(creds.registration_id, 12345);
        assert_eq!(creds.platform.as_deref(), Some("android"));
        let old: serde_json::Value = serde_json::from_str(FIXTURE_WITH_PREKEYS).expect("json");
        for (i, id) in [1u32, 2, 3].into_iter().enumerate() {
            let pair = keys.prekey(id).expect("read").expect("moved");
            let private = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                pair.private.expose().0,
            );
            assert_eq!(old["prekeys"][i]["key_pair"]["private"], private.as_str());
            assert_eq!(xeddsa::public_key(&pair.private.expose().0), pair.public.0);
        }
        assert_eq!(keys.next_prekey_id().expect("counter"), 4);
        let text = fs::read_to_string(store.path()).expect("rewritten");
        assert!(
            !text.contains("prekeys") && !text.contains("next_prekey_id"),
            "{text}"
        );
        assert!(!text.contains('\n'), "compact: {text}");
        let Loaded::Creds(again) = store.load(&keys).expect("load") else {
            panic!("the rewritten file must load");
        };
        assert_eq!(again, creds);
        assert_eq!(keys.generate_prekeys(1).expect("generate")[0].id, 4);
    }

    #[test]
    fn a_crash_before_the_rewrite_repeats_the_move_harmlessly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredsStore::new(dir.path());
        let keys = keys(dir.path());
        let old: Creds = serde_json::from_str(FIXTURE_WITH_PREKEYS).expect("fixture parses");
        let v1: V1PreKeys = serde_json::from_str(FIXTURE_WITH_PREKEYS).expect("v1 part parses");
        // The first half of the migration, then the process dies before creds.json changes.
        keys.import_legacy_prekeys(&v1.prekeys.expect("prekeys"), 4)
            .expect("import");
        fs::write(store.path(), FIXTURE_WITH_PREKEYS).expect("still the old file");
        let Loaded::Creds(creds) = store.load(&keys).expect("load") else {
            panic!("must load");
        };
        assert_eq!(*creds, old);
        for id in 1..=3 {
            assert!(keys.prekey(id).expect("read").is_some());
        }
        assert_eq!(keys.generate_prekeys(1).expect("generate")[0].id, 4);
    }

    #[test]
    fn loading_a_current_file_rewrites_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredsStore::new(dir.path());
        store.save(&Creds::generate()).expect("save");
        for fixture in [None, Some(FIXTURE)] {
            if let Some(text) = fixture {
                fs::write(store.path(), text).expect("an old file without prekeys");
            }
            let before = fs::metadata(store.path()).expect("meta");
            let Loaded::Creds(_) = store.load(&keys(dir.path())).expect("load") else {
                panic!("must load");
            };
            assert!(store.is_on_disk());
            let after = fs::metadata(store.path()).expect("meta");
            assert_eq!(
                (after.ino(), after.mtime_nsec(), after.mtime()),
                (before.ino(), before.mtime_nsec(), before.mtime()),
                "not rewritten"
            );
        }
        assert!(
            !dir.path().join("signal").exists(),
            "no key store for nothing"
        );
        fs::remove_file(store.path()).expect("remove");
        assert!(!store.is_on_disk(), "a missing file is missing");
    }

    #[test]
    fn saved_creds_are_compact_and_carry_no_prekeys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredsStore::new(dir.path());
        store.save(&Creds::generate()).expect("save");
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(
            !text.contains('\n') && !text.contains("prekeys\""),
            "{text}"
        );
        assert!(text.len() < 1500, "{} bytes", text.len());
    }

    #[test]
    fn debug_output_carries_no_private_key() {
        let creds: Creds = serde_json::from_str(FIXTURE).expect("fixture parses");
        let private = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            creds.noise_key.private.expose().0,
        );
        assert!(!format!("{creds:?}").contains(&private));
    }
}
