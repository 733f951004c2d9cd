//! `creds.json`: one account's keys and identity, owned by its worker alone.
//!
//! The file is written atomically with mode 0600 the moment anything in it changes; a file that
//! cannot be read or parsed is renamed `creds.json.corrupt-<ts>` and never deleted.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::{rename_durable, write_atomic};
use super::secret::{Blob, Bytes, Secret};
use crate::wa::xeddsa;

/// The current format version of `creds.json`.
pub const CREDS_VERSION: u32 = 1;

const CREDS_FILE: &str = "creds.json";
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
    /// One-time prekeys uploaded to the server and not yet known to be used.
    #[serde(default)]
    pub prekeys: Vec<PreKey>,
    /// The id the next generated one-time prekey gets.
    #[serde(default = "first_prekey_id")]
    pub next_prekey_id: u32,
}

fn first_prekey_id() -> u32 {
    1
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
            prekeys: Vec::new(),
            next_prekey_id: first_prekey_id(),
        }
    }

    /// Generates `count` one-time prekeys, keeps them, and returns them.
    pub fn generate_prekeys(&mut self, count: u32) -> Vec<PreKey> {
        let fresh: Vec<PreKey> = (0..count)
            .map(|i| PreKey {
                id: (self.next_prekey_id + i) & 0x00FF_FFFF,
                key_pair: KeyPair::generate(),
            })
            .collect();
        self.next_prekey_id = (self.next_prekey_id + count) & 0x00FF_FFFF;
        self.prekeys.extend(fresh.iter().cloned());
        fresh
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
    /// The file could not be read or parsed; it was renamed to `kept_as`.
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

    /// Loads the credentials; a corrupt or unreadable file is kept aside.
    ///
    /// # Errors
    /// Only when a corrupt file cannot even be renamed aside.
    pub fn load(&self) -> io::Result<Loaded> {
        let path = self.path();
        let problem = match std::fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => format!("unreadable: {e}"),
            Ok(bytes) => match serde_json::from_slice::<Creds>(&bytes) {
                Ok(creds) if creds.version == CREDS_VERSION => {
                    return Ok(Loaded::Creds(Box::new(creds)))
                }
                Ok(creds) => format!("unknown format version {}", creds.version),
                Err(e) => format!("not valid creds json: {e}"),
            },
        };
        let kept_as = self.aside("corrupt")?;
        Ok(Loaded::Corrupt { kept_as, problem })
    }

    /// Writes `creds` durably (temp file, fsync, rename, fsync dir), mode 0600.
    ///
    /// # Errors
    /// Any I/O error; the previous file is then intact.
    pub fn save(&self, creds: &Creds) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(creds).map_err(io::Error::other)?;
        write_atomic(&self.path(), &bytes, CREDS_MODE)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURE: &str = include_str!("../../tests/data/creds-v1.json");

    #[test]
    fn frozen_v1_fixture_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("creds.json"), FIXTURE).expect("write fixture");
        let Loaded::Creds(creds) = CredsStore::new(dir.path()).load().expect("load") else {
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
        let Loaded::Creds(back) = store.load().expect("load") else {
            panic!("must load");
        };
        assert_eq!(*back, creds);
    }

    #[test]
    fn generated_creds_carry_a_valid_signed_prekey_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut creds = Creds::generate();
        let mut msg = vec![DJB_KEY_TYPE];
        msg.extend_from_slice(&creds.signed_prekey.key_pair.public.0);
        assert!(xeddsa::verify(
            &creds.identity_key.public.0,
            &msg,
            &creds.signed_prekey.signature.0
        ));
        assert!(!creds.is_paired());
        let keys = creds.generate_prekeys(3);
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(creds.next_prekey_id, 4);
        let store = CredsStore::new(dir.path());
        store.save(&creds).expect("save");
        let Loaded::Creds(back) = store.load().expect("load") else {
            panic!("must load");
        };
        assert_eq!(*back, creds);
    }

    #[test]
    fn corrupt_file_is_kept_aside_not_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("creds.json"), b"{ not json").expect("write");
        let store = CredsStore::new(dir.path());
        let Loaded::Corrupt { kept_as, .. } = store.load().expect("load") else {
            panic!("must be corrupt");
        };
        assert_eq!(fs::read(&kept_as).expect("kept"), b"{ not json");
        assert!(kept_as
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("creds.json.corrupt-")));
        assert!(matches!(store.load().expect("load"), Loaded::Missing));
    }

    #[test]
    fn unreadable_path_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("creds.json")).expect("a directory where the file goes");
        let store = CredsStore::new(dir.path());
        assert!(matches!(
            store.load().expect("load"),
            Loaded::Corrupt { .. }
        ));
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
