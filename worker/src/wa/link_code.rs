//! The cryptography of pairing with a phone-number code (wa-protocol.md §7), for both ends:
//! the companion (the worker) and the primary (wa-sim's phone).
//!
//! ```text
//! code      = 5 random bytes in the alphabet 123456789ABCDEFGHJKLMNPQRSTVWXYZ (8 characters)
//! wrap      = salt(32) || iv(16) || AES-256-CTR(PBKDF2-HMAC-SHA256(code, salt, 2^17), iv, pub)
//! s_eph     = X25519(own ephemeral, peer ephemeral)
//! bundle    = companion identity(32) || primary identity(32) || r(32)
//! wrapped   = salt(32) || nonce(12) || AES-256-GCM(HKDF(s_eph, salt, "link_code_pairing_key_bundle_encryption_key"), nonce, bundle)
//! adv secret = HKDF(s_eph || X25519(identity, peer identity) || r, no salt, "adv_secret")
//! ```

use aes::cipher::BlockEncrypt;
use aes::Aes256;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::xeddsa;

/// The 32 characters of a code: Crockford's base32 without `0`, `I`, `O`, `U`.
pub const CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
/// Characters in a code.
pub const CODE_LEN: usize = 8;
/// PBKDF2 iterations of the wrapping key (2 << 16).
pub const PBKDF2_ITERATIONS: u32 = 131_072;
/// `salt || iv || ciphertext` of a wrapped ephemeral key.
pub const WRAPPED_KEY_LEN: usize = 32 + 16 + 32;
/// `salt || nonce || ciphertext || tag` of the wrapped key bundle.
pub const WRAPPED_BUNDLE_LEN: usize = 32 + 12 + 96 + 16;
/// The HKDF info of the bundle's key.
const BUNDLE_KEY_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// The HKDF info of the adv secret.
const ADV_SECRET_INFO: &[u8] = b"adv_secret";

/// Why a link-code value was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum LinkCodeError {
    /// A wrapped key is not 80 bytes.
    #[error("wrapped key is not {WRAPPED_KEY_LEN} bytes")]
    WrappedKeyLength,
    /// The wrapped bundle is not 156 bytes.
    #[error("wrapped key bundle is not {WRAPPED_BUNDLE_LEN} bytes")]
    BundleLength,
    /// The bundle does not decrypt: the two ends did not derive the same key (a wrong code).
    #[error("key bundle does not decrypt (wrong code)")]
    BundleDecrypt,
}

/// `bytes` in the code alphabet, 5 bits per character, most significant first.
pub fn encode_code(bytes: [u8; 5]) -> String {
    let value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (0..CODE_LEN)
        .rev()
        .map(|i| char::from(CODE_ALPHABET[((value >> (i * 5)) & 0x1f) as usize]))
        .collect()
}

/// A fresh random code.
pub fn random_code() -> String {
    encode_code(rand::random())
}

/// A code as a person types it (`abcd-efgh`, spaces, lower case) in its 8-character form, or
/// `None` when it is not one.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// The code as the public clients show it: `ABCD-EFGH`.
pub fn display_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(head), Some(tail)) if code.len() == CODE_LEN => format!("{head}-{tail}"),
        _ => code.to_owned(),
    }
}

/// PBKDF2-HMAC-SHA256 of `code` and `salt`, one 32-byte block (RFC 8018 §5.2).
pub fn derive_key(code: &str, salt: &[u8; 32]) -> [u8; 32] {
    pbkdf2_sha256(code.as_bytes(), salt, PBKDF2_ITERATIONS)
}

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The first 32-byte block of PBKDF2-HMAC-SHA256. The 2^17 iterations each hash a 32-byte
/// value under the HMAC's inner then outer key: both keyed states are computed once, and each
/// iteration is two compressions of one padded block (`U || 80 00… || bit length 768`), so a
/// debug build derives a key in a fraction of a second too.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    use sha2::digest::generic_array::GenericArray;
    use sha2::Digest as _;

    let mut key = [0u8; 64];
    if password.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let keyed = |pad: u8| {
        let mut state = SHA256_IV;
        let block = GenericArray::clone_from_slice(&key.map(|b| b ^ pad));
        sha2::compress256(&mut state, &[block]);
        state
    };
    let (inner, outer) = (keyed(0x36), keyed(0x5c));
    // U1 = HMAC(password, salt || INT(1)).
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(password).expect("HMAC takes keys of any length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    // One block: the 32-byte message, the 0x80 terminator, zeros, and the length in bits of
    // the keyed block plus the message (64 + 32 bytes = 768 bits).
    let mut block = GenericArray::default();
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    let mut hash = |start: [u32; 8], message: &[u8; 32]| -> [u8; 32] {
        block[..32].copy_from_slice(message);
        let mut state = start;
        sha2::compress256(&mut state, std::slice::from_ref(&block));
        let mut digest = [0u8; 32];
        for (chunk, word) in digest.chunks_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    };
    for _ in 1..iterations {
        let inner_digest = hash(inner, &u);
        u = hash(outer, &inner_digest);
        out.iter_mut().zip(u).for_each(|(o, b)| *o ^= b);
    }
    out
}

/// AES-256-CTR over `data` in place: the whole 16-byte `iv` is the first counter block,
/// incremented as a 128-bit big-endian number.
fn aes_ctr(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let cipher = Aes256::new(key.into());
    let mut counter = u128::from_be_bytes(*iv);
    for chunk in data.chunks_mut(16) {
        let mut block = counter.to_be_bytes().into();
        cipher.encrypt_block(&mut block);
        chunk
            .iter_mut()
            .zip(block.iter())
            .for_each(|(d, k)| *d ^= k);
        counter = counter.wrapping_add(1);
    }
}

/// Wraps an ephemeral public key under `code` with the given salt and iv.
pub fn wrap_with(code: &str, public: &[u8; 32], salt: [u8; 32], iv: [u8; 16]) -> [u8; 80] {
    let mut ct = *public;
    aes_ctr(&derive_key(code, &salt), &iv, &mut ct);
    let mut out = [0u8; WRAPPED_KEY_LEN];
    out[..32].copy_from_slice(&salt);
    out[32..48].copy_from_slice(&iv);
    out[48..].copy_from_slice(&ct);
    out
}

/// Wraps an ephemeral public key under `code` with a fresh salt and iv.
pub fn wrap(code: &str, public: &[u8; 32]) -> [u8; 80] {
    wrap_with(code, public, rand::random(), rand::random())
}

/// Unwraps a key wrapped under `code`. A wrong code gives another key, not an error: the
/// mismatch shows when the bundle does not decrypt.
///
/// # Errors
/// [`LinkCodeError::WrappedKeyLength`].
pub fn unwrap(code: &str, wrapped: &[u8]) -> Result<[u8; 32], LinkCodeError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(LinkCodeError::WrappedKeyLength);
    }
    let salt: [u8; 32] = wrapped[..32].try_into().expect("32 bytes");
    let iv: [u8; 16] = wrapped[32..48].try_into().expect("16 bytes");
    let mut public: [u8; 32] = wrapped[48..].try_into().expect("32 bytes");
    aes_ctr(&derive_key(code, &salt), &iv, &mut public);
    Ok(public)
}

/// The bundle's AES-GCM key.
fn bundle_key(s_eph: &[u8; 32], salt: &[u8]) -> Aes256Gcm {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), s_eph)
        .expand(BUNDLE_KEY_INFO, &mut key)
        .expect("32 bytes is a valid HKDF length");
    Aes256Gcm::new(&key.into())
}

/// The adv secret both ends derive.
pub fn adv_secret(s_eph: &[u8; 32], s_id: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, &[&s_eph[..], s_id, r].concat())
        .expand(ADV_SECRET_INFO, &mut out)
        .expect("32 bytes is a valid HKDF length");
    out
}

/// What the companion sends in `companion_finish`, and the secret it keeps.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CompanionFinish {
    /// `link_code_pairing_wrapped_key_bundle` (156 bytes).
    pub wrapped_bundle: Vec<u8>,
    /// The adv secret that replaces the random one: the HMAC key of `pair-success`.
    pub adv_secret: [u8; 32],
}

/// The randomness of one `companion_finish`, apart for tests.
#[derive(Clone, Copy, Debug)]
pub struct FinishRandom {
    /// HKDF salt of the bundle key.
    pub salt: [u8; 32],
    /// AES-GCM nonce.
    pub nonce: [u8; 12],
    /// `r`, the bundle's third part and the adv secret's last input.
    pub r: [u8; 32],
}

impl FinishRandom {
    /// Fresh randomness.
    pub fn fresh() -> Self {
        FinishRandom {
            salt: rand::random(),
            nonce: rand::random(),
            r: rand::random(),
        }
    }
}

/// The companion's stage 3 (§7.5): from its ephemeral and identity private keys, the
/// primary's unwrapped ephemeral and its identity.
pub fn companion_finish(
    ephemeral_private: &[u8; 32],
    identity_private: &[u8; 32],
    primary_ephemeral: &[u8; 32],
    primary_identity: &[u8; 32],
    random: FinishRandom,
) -> CompanionFinish {
    let s_eph = xeddsa::dh(ephemeral_private, primary_ephemeral);
    let bundle = [
        &xeddsa::public_key(identity_private)[..],
        primary_identity,
        &random.r,
    ]
    .concat();
    let sealed = bundle_key(&s_eph, &random.salt)
        .encrypt(&random.nonce.into(), bundle.as_slice())
        .expect("AES-GCM seals any short message");
    let s_id = xeddsa::dh(identity_private, primary_identity);
    CompanionFinish {
        wrapped_bundle: [&random.salt[..], &random.nonce, &sealed].concat(),
        adv_secret: adv_secret(&s_eph, &s_id, &random.r),
    }
}

/// The bundle as the primary opened it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct OpenedBundle {
    /// The companion's identity public key, as it wrote it.
    pub companion_identity: [u8; 32],
    /// The primary's identity public key, as the companion understood it.
    pub primary_identity: [u8; 32],
    /// `r`.
    pub r: [u8; 32],
}

/// The primary's side of stage 3: opens the companion's bundle with `s_eph`
/// (`X25519(primary ephemeral, companion ephemeral)`).
///
/// # Errors
/// [`LinkCodeError::BundleLength`], or [`LinkCodeError::BundleDecrypt`] when the ends derived
/// different keys: the code typed on the phone is not the companion's.
pub fn open_bundle(s_eph: &[u8; 32], wrapped: &[u8]) -> Result<OpenedBundle, LinkCodeError> {
    if wrapped.len() != WRAPPED_BUNDLE_LEN {
        return Err(LinkCodeError::BundleLength);
    }
    let (salt, rest) = wrapped.split_at(32);
    let (nonce, sealed) = rest.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
    let plain = bundle_key(s_eph, salt)
        .decrypt(&nonce.into(), sealed)
        .map_err(|_| LinkCodeError::BundleDecrypt)?;
    let part = |i: usize| -> [u8; 32] { plain[i * 32..(i + 1) * 32].try_into().expect("32 bytes") };
    Ok(OpenedBundle {
        companion_identity: part(0),
        primary_identity: part(1),
        r: part(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).expect("hex").try_into().expect("length")
    }

    #[test]
    fn encodes_codes_five_bits_per_character_most_significant_first() {
        // whatsapp-rust's facts: all zero bits and all one bits.
        assert_eq!(encode_code([0; 5]), "11111111");
        assert_eq!(encode_code([0xff; 5]), "ZZZZZZZZ");
        // wa-protocol.md §7.1: 00000 00100 00001 00000 00110 00001 00000 00101.
        assert_eq!(encode_code([1, 2, 3, 4, 5]), "15217216");
        assert_eq!(encode_code([0, 0, 0, 0, 0x1f]), "1111111Z");
        let code = random_code();
        assert_eq!(normalize_code(&code).as_deref(), Some(code.as_str()));
    }

    #[test]
    fn normalizes_what_people_type_and_refuses_the_rest() {
        assert_eq!(normalize_code("abcd-efgh").as_deref(), Some("ABCDEFGH"));
        assert_eq!(normalize_code(" 1531 D316").as_deref(), Some("1531D316"));
        for bad in [
            "ABCD-EFG",
            "ABCDEFGHJ",
            "ABCD0EFG",
            "ABCDIEFG",
            "ABCDOEFG",
            "ABCDUEFG",
        ] {
            assert_eq!(normalize_code(bad), None, "{bad}");
        }
        assert_eq!(display_code("ABCDEFGH"), "ABCD-EFGH");
    }

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vectors() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256, first 32 bytes.
        assert_eq!(
            pbkdf2_sha256(b"passwd", b"salt", 1),
            h::<32>("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
        );
        assert_eq!(
            pbkdf2_sha256(b"Password", b"NaCl", 80_000),
            h::<32>("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56")
        );
        // Node's crypto.pbkdf2Sync for a key longer than the block, hashed first.
        assert_eq!(
            pbkdf2_sha256(&[0x61; 70], b"salt", 3),
            h::<32>("b1bba1b4573a768b5ce1963752fc640faa7f5cef30d139a25483027bf06b661f")
        );
    }

    /// A fixed vector computed independently with Node's crypto (OpenSSL): PBKDF2-HMAC-SHA256
    /// with 131072 iterations, AES-256-CTR, HKDF-SHA256 and AES-256-GCM, for the code
    /// `1531D316`, salt `00..1f`, iv `20..2f`, ephemeral `42 × 32`.
    #[test]
    fn wraps_the_fixed_vector_and_round_trips() {
        let salt: [u8; 32] = std::array::from_fn(|i| i as u8);
        let iv: [u8; 16] = std::array::from_fn(|i| 0x20 + i as u8);
        let wrapped = wrap_with("1531D316", &[0x42; 32], salt, iv);
        assert_eq!(&wrapped[..32], &salt);
        assert_eq!(&wrapped[32..48], &iv);
        assert_eq!(hex::encode(&wrapped[48..]), VECTOR_WRAPPED_CT);
        assert_eq!(unwrap("1531D316", &wrapped), Ok([0x42; 32]));
        assert_ne!(unwrap("1531D317", &wrapped), Ok([0x42; 32]));
        assert_eq!(
            unwrap("1531D316", &wrapped[..79]),
            Err(LinkCodeError::WrappedKeyLength)
        );
        let fresh = wrap("ZZZZZZZZ", &[7; 32]);
        assert_ne!(
            &fresh[..48],
            &wrap("ZZZZZZZZ", &[7; 32])[..48],
            "fresh salt and iv"
        );
        assert_eq!(unwrap("ZZZZZZZZ", &fresh), Ok([7; 32]));
    }

    const VECTOR_WRAPPED_CT: &str =
        "4128e4754358e4590293bb01452091007138502549fe87276c6ccd638e93b4d2";

    #[test]
    fn the_bundle_has_the_documented_layout_and_both_ends_derive_one_adv_secret() {
        let companion_eph = xeddsa::generate_private();
        let companion_identity = xeddsa::generate_private();
        let primary_eph = xeddsa::generate_private();
        let primary_identity = xeddsa::generate_private();
        let random = FinishRandom {
            salt: [1; 32],
            nonce: [2; 12],
            r: [3; 32],
        };
        let finish = companion_finish(
            &companion_eph,
            &companion_identity,
            &xeddsa::public_key(&primary_eph),
            &xeddsa::public_key(&primary_identity),
            random,
        );
        assert_eq!(finish.wrapped_bundle.len(), WRAPPED_BUNDLE_LEN);
        assert_eq!(&finish.wrapped_bundle[..32], &[1; 32]);
        assert_eq!(&finish.wrapped_bundle[32..44], &[2; 12]);
        // The primary's view.
        let s_eph = xeddsa::dh(&primary_eph, &xeddsa::public_key(&companion_eph));
        let opened = open_bundle(&s_eph, &finish.wrapped_bundle).expect("opens");
        assert_eq!(
            opened.companion_identity,
            xeddsa::public_key(&companion_identity)
        );
        assert_eq!(
            opened.primary_identity,
            xeddsa::public_key(&primary_identity)
        );
        assert_eq!(opened.r, [3; 32]);
        let s_id = xeddsa::dh(&primary_identity, &opened.companion_identity);
        assert_eq!(adv_secret(&s_eph, &s_id, &opened.r), finish.adv_secret);
        // Another ephemeral (a wrong code on the phone) does not open it.
        let wrong = xeddsa::dh(
            &xeddsa::generate_private(),
            &xeddsa::public_key(&companion_eph),
        );
        assert_eq!(
            open_bundle(&wrong, &finish.wrapped_bundle),
            Err(LinkCodeError::BundleDecrypt)
        );
        assert_eq!(
            open_bundle(&s_eph, &finish.wrapped_bundle[1..]),
            Err(LinkCodeError::BundleLength)
        );
    }

    /// The same fixed inputs, sealed and derived by Node's crypto.
    #[test]
    fn seals_and_derives_the_fixed_vector() {
        let companion_eph: [u8; 32] = [0x11; 32];
        let companion_identity: [u8; 32] = [0x22; 32];
        let primary_eph: [u8; 32] = [0x33; 32];
        let primary_identity: [u8; 32] = [0x44; 32];
        let finish = companion_finish(
            &companion_eph,
            &companion_identity,
            &xeddsa::public_key(&primary_eph),
            &xeddsa::public_key(&primary_identity),
            FinishRandom {
                salt: [1; 32],
                nonce: [2; 12],
                r: [3; 32],
            },
        );
        assert_eq!(hex::encode(&finish.wrapped_bundle[44..]), VECTOR_SEALED);
        assert_eq!(hex::encode(finish.adv_secret), VECTOR_ADV_SECRET);
    }

    const VECTOR_SEALED: &str = "91e3f7d0584923ac770ebc59ceb2f081bd070deb5358e4b99017435608c7674e245eb83a6ae37b5cfc15e47f6dd84bf085d021294993912f45bf5e342f49945759dc6d07dd381dd861d32b97125a25e17ac6e8283a150ee15811a2334bd423e191d2a90aa5a5bc90c886788bd6498661";
    const VECTOR_ADV_SECRET: &str =
        "8d1b8614aa51d59b34fd66723b967b8d784d595fbc137c3765a7a8507ac17749";
}
