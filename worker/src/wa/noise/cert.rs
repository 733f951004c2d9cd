//! The server certificate chain: root → intermediate → leaf, with whatsmeow's full checks
//! (wa-protocol.md §3.3): both XEdDSA signatures, the serials, both validity windows, and the
//! leaf key bound to the server's Noise static key. There is no switch that skips any of it.

use prost::Message;
use subtle::ConstantTimeEq;

use crate::wa::proto::{CertChain, CertDetails, NoiseCertificate};
use crate::wa::xeddsa;

/// WhatsApp's root public key (§3.2); `WA_TRUST_ROOT` replaces it (the simulator's own root).
pub const WA_ROOT_KEY: [u8; 32] = [
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
    0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
];

/// The issuer serial every intermediate certificate carries (the root's).
pub const ROOT_SERIAL: u32 = 0;

/// What the chain must verify against.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TrustPolicy {
    /// The trusted root public key.
    pub root: [u8; 32],
    /// The current time, unix seconds, for the validity windows.
    pub now_unix: u64,
}

/// Which certificate of the chain.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Which {
    /// Signed by the root.
    Intermediate,
    /// Signed by the intermediate; carries the server's static key.
    Leaf,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::Intermediate => "intermediate",
            Which::Leaf => "leaf",
        })
    }
}

/// Why the server's certificate chain was refused. Every message names the certificate.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CertError {
    /// A certificate, its details or its signature is missing or malformed.
    #[error("server certificate chain is malformed: {0}")]
    Malformed(String),
    /// A signature does not verify.
    #[error("server {0} certificate signature does not verify under its issuer (untrusted certificate root?)")]
    Signature(Which),
    /// An issuer serial does not match its issuer.
    #[error("server {which} certificate names issuer serial {found}, expected {expected}")]
    Issuer {
        /// The certificate.
        which: Which,
        /// The serial it names.
        found: u32,
        /// The serial it should name.
        expected: u32,
    },
    /// A certificate is outside its validity window.
    #[error(
        "server {which} certificate is not valid now (valid {not_before}..{not_after}, now {now})"
    )]
    Expired {
        /// The certificate.
        which: Which,
        /// Start of validity, unix seconds.
        not_before: u64,
        /// End of validity, unix seconds.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// The leaf certifies another key than the one the server used in the handshake.
    #[error("server leaf certificate does not certify the server's static key")]
    KeyMismatch,
}

/// Verifies the serialized `CertChain` for the server static key `server_static`.
///
/// # Errors
/// The first check that fails, as a [`CertError`].
pub fn verify_chain(
    chain: &[u8],
    server_static: &[u8; 32],
    policy: &TrustPolicy,
) -> Result<(), CertError> {
    let chain = CertChain::decode(chain)
        .map_err(|e| CertError::Malformed(format!("not a CertChain: {e}")))?;
    let intermediate = signed_details(
        chain.intermediate.as_ref(),
        Which::Intermediate,
        &policy.root,
    )?;
    if intermediate.issuer_serial.unwrap_or(0) != ROOT_SERIAL {
        return Err(CertError::Issuer {
            which: Which::Intermediate,
            found: intermediate.issuer_serial.unwrap_or(0),
            expected: ROOT_SERIAL,
        });
    }
    check_validity(&intermediate, Which::Intermediate, policy.now_unix)?;
    let intermediate_key = key32(&intermediate, Which::Intermediate)?;

    let leaf = signed_details(chain.leaf.as_ref(), Which::Leaf, &intermediate_key)?;
    let expected = intermediate.serial.unwrap_or(0);
    if leaf.issuer_serial.unwrap_or(0) != expected {
        return Err(CertError::Issuer {
            which: Which::Leaf,
            found: leaf.issuer_serial.unwrap_or(0),
            expected,
        });
    }
    check_validity(&leaf, Which::Leaf, policy.now_unix)?;
    let leaf_key = key32(&leaf, Which::Leaf)?;
    if !bool::from(leaf_key.ct_eq(server_static)) {
        return Err(CertError::KeyMismatch);
    }
    Ok(())
}

/// Checks the certificate's signature under `issuer_key`, then parses its details.
fn signed_details(
    cert: Option<&NoiseCertificate>,
    which: Which,
    issuer_key: &[u8; 32],
) -> Result<CertDetails, CertError> {
    let malformed = |what: &str| CertError::Malformed(format!("{which} certificate {what}"));
    let cert = cert.ok_or_else(|| malformed("is missing"))?;
    let details = cert
        .details
        .as_deref()
        .ok_or_else(|| malformed("has no details"))?;
    let signature: &[u8; 64] = cert
        .signature
        .as_deref()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed("signature is not 64 bytes"))?;
    if !xeddsa::verify(issuer_key, details, signature) {
        return Err(CertError::Signature(which));
    }
    CertDetails::decode(details).map_err(|e| malformed(&format!("details do not parse: {e}")))
}

fn check_validity(details: &CertDetails, which: Which, now: u64) -> Result<(), CertError> {
    let not_before = details.not_before.unwrap_or(0);
    let not_after = details.not_after.unwrap_or(0);
    if now < not_before || now > not_after {
        return Err(CertError::Expired {
            which,
            not_before,
            not_after,
            now,
        });
    }
    Ok(())
}

fn key32(details: &CertDetails, which: Which) -> Result<[u8; 32], CertError> {
    details
        .key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| CertError::Malformed(format!("{which} certificate key is not 32 bytes")))
}

/// Builds and signs a chain: what the simulator presents. `serials` are (intermediate, leaf);
/// both certificates are valid over `validity` (unix seconds).
pub fn issue_chain(
    root_private: &[u8; 32],
    intermediate_private: &[u8; 32],
    server_static_public: &[u8; 32],
    serials: (u32, u32),
    validity: (u64, u64),
) -> Vec<u8> {
    let certificate = |details: CertDetails, signer: &[u8; 32]| {
        let bytes = details.encode_to_vec();
        NoiseCertificate {
            signature: Some(xeddsa::sign(signer, &bytes).to_vec()),
            details: Some(bytes),
        }
    };
    let intermediate = certificate(
        CertDetails {
            serial: Some(serials.0),
            issuer_serial: Some(ROOT_SERIAL),
            key: Some(xeddsa::public_key(intermediate_private).to_vec()),
            not_before: Some(validity.0),
            not_after: Some(validity.1),
        },
        root_private,
    );
    let leaf = certificate(
        CertDetails {
            serial: Some(serials.1),
            issuer_serial: Some(serials.0),
            key: Some(server_static_public.to_vec()),
            not_before: Some(validity.0),
            not_after: Some(validity.1),
        },
        intermediate_private,
    );
    CertChain {
        leaf: Some(leaf),
        intermediate: Some(intermediate),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_CHAIN: &str = "0a770a3308c90210031a205854d333d8e13975abd6597bbaddd49d6935ced25c93a44bd3ade508f2bec33020d08f87bf0628d0c99fc406124019cbee71b63bb8048af269f3aa7c13c62a1fd89ac4ef2509d1d78d68267f40393b49a9cc38db05e35a6c5bf3ba6172a4c5325f25f363338cf8f3535a4cd9520512760a32080310001a201c51a9ac303994c6c8d0b92ea1878a533476599cc599fbea35997d9aa90cce62208091aebe0628ffdeb7dc061240270f294648539fed4870e25054dd4e95983aba29189c2ba6c8eeda7055555f753740f5ec192ab64c26c26d6ade6d20b9f774aee37120a6b20395f53c66058507";
    const REAL_STATIC: &str = "5854d333d8e13975abd6597bbaddd49d6935ced25c93a44bd3ade508f2bec330";

    fn real() -> (Vec<u8>, [u8; 32]) {
        let chain = hex::decode(REAL_CHAIN).expect("hex");
        let key = hex::decode(REAL_STATIC)
            .expect("hex")
            .try_into()
            .expect("32");
        (chain, key)
    }

    #[test]
    fn accepts_the_real_chain_under_whatsapps_root_while_it_was_valid() {
        // wa-protocol.md §11.1.3: the leaf expired in July 2025; check at a fixed instant.
        let (chain, key) = real();
        let policy = TrustPolicy {
            root: WA_ROOT_KEY,
            now_unix: 1_750_000_000,
        };
        assert_eq!(verify_chain(&chain, &key, &policy), Ok(()));
    }

    #[test]
    fn refuses_the_real_chain_for_other_roots_keys_and_times() {
        let (chain, key) = real();
        let ok = TrustPolicy {
            root: WA_ROOT_KEY,
            now_unix: 1_750_000_000,
        };
        let other_root = TrustPolicy {
            root: xeddsa::public_key(&[7u8; 32]),
            ..ok
        };
        assert_eq!(
            verify_chain(&chain, &key, &other_root),
            Err(CertError::Signature(Which::Intermediate))
        );
        assert_eq!(
            verify_chain(&chain, &[1u8; 32], &ok),
            Err(CertError::KeyMismatch)
        );
        let later = TrustPolicy {
            now_unix: 1_760_000_000,
            ..ok
        };
        assert!(matches!(
            verify_chain(&chain, &key, &later),
            Err(CertError::Expired {
                which: Which::Leaf,
                ..
            })
        ));
        assert!(matches!(
            verify_chain(b"\x0a\x01", &key, &ok),
            Err(CertError::Malformed(_))
        ));
    }

    #[test]
    fn an_issued_chain_verifies_under_its_root_only() {
        let root = xeddsa::generate_private();
        let inter = xeddsa::generate_private();
        let server = xeddsa::public_key(&xeddsa::generate_private());
        let chain = issue_chain(
            &root,
            &inter,
            &server,
            (1, 2),
            (1_700_000_000, 4_102_444_800),
        );
        let policy = TrustPolicy {
            root: xeddsa::public_key(&root),
            now_unix: 1_800_000_000,
        };
        assert_eq!(verify_chain(&chain, &server, &policy), Ok(()));
        let message = verify_chain(
            &chain,
            &server,
            &TrustPolicy {
                root: WA_ROOT_KEY,
                ..policy
            },
        )
        .expect_err("foreign root")
        .to_string();
        assert!(message.contains("certificate"), "{message}");
    }
}
