//! AES-256-CBC with PKCS#7, the message cipher of pairwise and sender-key messages
//! (wa-messaging.md §3.3, §4.2).

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::error::{Result, SignalError};

const BLOCK_LEN: usize = 16;

/// Encrypts `plaintext` (PKCS#7 padded).
pub(crate) fn encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// Decrypts `ciphertext` and strips PKCS#7.
///
/// # Errors
/// [`SignalError::BadCiphertext`] when the length is not a positive multiple of 16 or the
/// padding is wrong.
pub(crate) fn decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK_LEN) {
        return Err(SignalError::BadCiphertext);
    }
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| SignalError::BadCiphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_lengths_and_padding() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        for len in [0usize, 1, 15, 16, 17, 100] {
            let pt = vec![0xabu8; len];
            let ct = encrypt(&key, &iv, &pt);
            assert_eq!(ct.len() % 16, 0);
            assert_eq!(decrypt(&key, &iv, &ct), Ok(pt));
        }
        let ct = encrypt(&key, &iv, b"hello");
        assert_eq!(
            decrypt(&key, &iv, &ct[..15]),
            Err(SignalError::BadCiphertext)
        );
        assert_eq!(decrypt(&key, &iv, &[]), Err(SignalError::BadCiphertext));
        assert_eq!(
            decrypt(&[8u8; 32], &iv, &ct),
            Err(SignalError::BadCiphertext)
        );
    }
}
