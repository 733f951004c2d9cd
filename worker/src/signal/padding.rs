//! WhatsApp's random padding inside the encrypted payload (wa-messaging.md §5.4): append
//! `n` bytes each equal to `n`, `1 ≤ n ≤ 16`, before encryption; strip them after.

use rand::RngCore;

use super::error::{Result, SignalError};

/// The largest padding length senders use and receivers accept.
pub const MAX_PADDING: u8 = 16;

/// Appends `n` bytes of value `n`, with `n` uniform in `1..=16`.
pub fn pad<R: RngCore>(plaintext: &[u8], rng: &mut R) -> Vec<u8> {
    // 2^32 is a multiple of 16, so the remainder is uniform.
    let n = (rng.next_u32() % u32::from(MAX_PADDING)) as u8 + 1;
    pad_with(plaintext, n)
}

/// Appends `n` bytes of value `n` (`n` clamped to `1..=16`).
pub(crate) fn pad_with(plaintext: &[u8], n: u8) -> Vec<u8> {
    let n = n.clamp(1, MAX_PADDING);
    let mut out = Vec::with_capacity(plaintext.len() + usize::from(n));
    out.extend_from_slice(plaintext);
    out.resize(plaintext.len() + usize::from(n), n);
    out
}

/// Strips the padding: the last byte `n` must be in `1..=16`, and the last `n` bytes must
/// all equal `n`.
///
/// # Errors
/// [`SignalError::BadPadding`] otherwise.
pub fn unpad(padded: &[u8]) -> Result<&[u8]> {
    let &n = padded.last().ok_or(SignalError::BadPadding)?;
    let len = usize::from(n);
    if n == 0 || n > MAX_PADDING || len > padded.len() {
        return Err(SignalError::BadPadding);
    }
    let (body, pad) = padded.split_at(padded.len() - len);
    if pad.iter().any(|&b| b != n) {
        return Err(SignalError::BadPadding);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unpad_checks_length_and_every_byte() {
        assert_eq!(unpad(&[1, 2, 3, 3, 3]), Ok(&[1u8, 2][..]));
        assert_eq!(unpad(&[16; 16]), Ok(&[][..]));
        assert_eq!(unpad(&[]), Err(SignalError::BadPadding));
        assert_eq!(unpad(&[1, 0]), Err(SignalError::BadPadding), "zero");
        assert_eq!(unpad(&[17; 20]), Err(SignalError::BadPadding), "over 16");
        assert_eq!(
            unpad(&[1, 2, 3]),
            Err(SignalError::BadPadding),
            "pad bytes differ"
        );
        assert_eq!(
            unpad(&[3, 3]),
            Err(SignalError::BadPadding),
            "longer than input"
        );
    }

    #[test]
    fn pad_draws_every_length_from_1_to_16() {
        let mut seen = [false; 17];
        let mut rng = rand::thread_rng();
        for _ in 0..2000 {
            let padded = pad(b"x", &mut rng);
            let n = padded.len() - 1;
            assert!((1..=16).contains(&n));
            seen[n] = true;
        }
        assert!(seen[1..].iter().all(|&s| s));
    }

    proptest! {
        #[test]
        fn pad_then_unpad_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..100),
            seed in any::<u64>(),
        ) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let padded = pad(&body, &mut rng);
            prop_assert_eq!(unpad(&padded), Ok(&body[..]));
        }

        #[test]
        fn unpad_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = unpad(&bytes);
        }
    }
}
