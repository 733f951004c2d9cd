//! XEdDSA: Ed25519-style signatures made and checked with Curve25519 (X25519) keys, the
//! libsignal "curve25519 signature" every WhatsApp client uses (wa-protocol.md §3.4).
//!
//! Also the two X25519 primitives the rest of `wa` needs: [`public_key`] and [`dh`].

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// A 64-byte XEdDSA signature: `R || S`, with the signer's Edwards sign bit in the top bit.
pub type Signature = [u8; 64];

/// The X25519 public key of `private` (clamped as X25519 clamps): the same bytes as
/// `x25519(private, 9)`, computed as a fixed-base multiplication on the Edwards curve with the
/// precomputed basepoint table, then mapped to the Montgomery u-coordinate; about a third of
/// the time of the variable-base ladder.
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// X25519 Diffie-Hellman of `private` with `public`.
pub fn dh(private: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*private, *public)
}

/// A fresh, clamped X25519 private key.
pub fn generate_private() -> [u8; 32] {
    clamp(rand::random())
}

/// Clamps a private key the X25519 way (`k[0] &= 248; k[31] &= 127; k[31] |= 64`).
pub fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

/// Signs `msg` with the X25519 private key `private`, using 64 random bytes.
pub fn sign(private: &[u8; 32], msg: &[u8]) -> Signature {
    let mut z = [0u8; 64];
    z[..32].copy_from_slice(&rand::random::<[u8; 32]>());
    z[32..].copy_from_slice(&rand::random::<[u8; 32]>());
    sign_with_nonce(private, msg, &z)
}

/// Signs `msg` with `private` and the given 64 nonce bytes `z` (deterministic; for test vectors).
pub fn sign_with_nonce(private: &[u8; 32], msg: &[u8], z: &[u8; 64]) -> Signature {
    let a_bytes = clamp(*private);
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let big_a = (&a * ED25519_BASEPOINT_TABLE).compress().to_bytes();
    let sign_bit = big_a[31] & 0x80;

    let mut prefix = [0xFFu8; 32];
    prefix[0] = 0xFE;
    let r = wide_scalar(
        Sha512::new()
            .chain_update(prefix)
            .chain_update(a_bytes)
            .chain_update(msg)
            .chain_update(z),
    );
    let big_r = (&r * ED25519_BASEPOINT_TABLE).compress().to_bytes();
    let k = wide_scalar(
        Sha512::new()
            .chain_update(big_r)
            .chain_update(big_a)
            .chain_update(msg),
    );
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig[63] = (sig[63] & 0x7F) | sign_bit;
    sig
}

/// A SHA-512 digest reduced modulo the group order.
fn wide_scalar(hasher: Sha512) -> Scalar {
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&hasher.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Checks `sig` over `msg` under the X25519 public key `public`.
pub fn verify(public: &[u8; 32], msg: &[u8], sig: &Signature) -> bool {
    let mut u = *public;
    u[31] &= 0x7F;
    let sign = (sig[63] & 0x80) >> 7;
    let Some(big_a) = MontgomeryPoint(u).to_edwards(sign) else {
        return false;
    };
    let big_a_bytes = big_a.compress().to_bytes();
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    s_bytes[31] &= 0x7F;
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let k = wide_scalar(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(big_a_bytes)
            .chain_update(msg),
    );
    // R' = S·B − k·A must be R.
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-big_a, &s);
    check.compress().to_bytes() == r_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    fn h64(s: &str) -> [u8; 64] {
        hex::decode(s).expect("hex").try_into().expect("64 bytes")
    }

    const WA_ROOT: &str = "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b";

    #[test]
    fn verifies_the_real_whatsapp_certificate_chain() {
        // wa-protocol.md §11.1.3
        let inter_details = hex::decode("080310001a201c51a9ac303994c6c8d0b92ea1878a533476599cc599fbea35997d9aa90cce62208091aebe0628ffdeb7dc06").expect("hex");
        let inter_sig = h64("270f294648539fed4870e25054dd4e95983aba29189c2ba6c8eeda7055555f753740f5ec192ab64c26c26d6ade6d20b9f774aee37120a6b20395f53c66058507");
        assert!(verify(&h32(WA_ROOT), &inter_details, &inter_sig));
        let leaf_details = hex::decode("08c90210031a205854d333d8e13975abd6597bbaddd49d6935ced25c93a44bd3ade508f2bec33020d08f87bf0628d0c99fc406").expect("hex");
        let leaf_sig = h64("19cbee71b63bb8048af269f3aa7c13c62a1fd89ac4ef2509d1d78d68267f40393b49a9cc38db05e35a6c5bf3ba6172a4c5325f25f363338cf8f3535a4cd95205");
        let inter_key = h32("1c51a9ac303994c6c8d0b92ea1878a533476599cc599fbea35997d9aa90cce62");
        assert!(verify(&inter_key, &leaf_details, &leaf_sig));
        assert!(!verify(&inter_key, &inter_details, &inter_sig), "wrong key");
        let mut tampered = leaf_details.clone();
        tampered[3] ^= 1;
        assert!(
            !verify(&inter_key, &tampered, &leaf_sig),
            "tampered message"
        );
    }

    #[test]
    fn reproduces_the_derived_signature_with_a_zero_nonce() {
        // wa-protocol.md §11.2.1: the mock root signs the intermediate with Z = 0.
        let root_priv = h32("f0ca752be14545fee53d45b350098b48e21ead306e051e17346532b4eb78f473");
        assert_eq!(
            hex::encode(public_key(&root_priv)),
            "f8e7fca6abdf4bed0de8df8a1e6ca1640fd9a0159b555273a7318d04873eb71e"
        );
        let details = hex::decode("080110001a202217b50631f081c7107f98087681e70544162cd90a636c0132ac0420005c120d2080e2cfaa062880ae99a40f").expect("hex");
        let sig = sign_with_nonce(&root_priv, &details, &[0u8; 64]);
        assert_eq!(hex::encode(sig), "ed3814fd0fd3059b707ca31834963f5436e88765aa9a0e8accea5b187f8e0728c92b05fb5b0373e0a8926ecea3f5a25997d9b73d491851f859e9d1866328438a");
    }

    #[test]
    fn public_keys_are_the_x25519_ladder_on_the_basepoint() {
        // RFC 7748 §6.1.
        let alice = h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = h32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        assert_eq!(
            hex::encode(public_key(&alice)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(public_key(&bob)),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        );
        assert_eq!(
            hex::encode(dh(&alice, &public_key(&bob))),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        // Raw and clamped keys, the extremes included: both clamp the same way.
        let ladder = |k: &[u8; 32]| x25519_dalek::x25519(*k, x25519_dalek::X25519_BASEPOINT_BYTES);
        let mut keys = vec![[0u8; 32], [0xFF; 32], [1u8; 32], alice, bob];
        keys.extend((0..500).map(|_| rand::random::<[u8; 32]>()));
        keys.extend((0..500).map(|_| generate_private()));
        for k in keys {
            assert_eq!(public_key(&k), ladder(&k), "{}", hex::encode(k));
        }
    }

    #[test]
    fn random_signatures_verify_and_bind_key_and_message() {
        for _ in 0..16 {
            let private = generate_private();
            let public = public_key(&private);
            let sig = sign(&private, b"hello");
            assert!(verify(&public, b"hello", &sig));
            assert!(!verify(&public, b"hellp", &sig));
            assert!(!verify(&public_key(&generate_private()), b"hello", &sig));
        }
    }
}
