//! Message ids in the form the reference clients use: `3EB0` and 18 uppercase hex digits
//! (wa-messaging.md §6.7). Receivers treat ids as opaque; only uniqueness matters.

use sha2::{Digest, Sha256};

/// A fresh random id.
pub fn random_id() -> String {
    format_id(&rand::random::<[u8; 9]>())
}

/// The id of a message sent with the client's idempotency key `key` on `account`: the same key
/// always names the same message, so a repeated request finds the first instead of sending
/// twice.
pub fn id_for_key(account: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"wafleet message id\0")
        .chain_update(account.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    format_id(&digest[..9])
}

fn format_id(bytes: &[u8]) -> String {
    let mut id = String::with_capacity(22);
    id.push_str("3EB0");
    for b in bytes {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_reference_shape_and_keys_are_stable_per_account() {
        let id = random_id();
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("3EB0"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_ne!(random_id(), id);
        assert_eq!(id_for_key("a", "k1"), id_for_key("a", "k1"));
        assert_ne!(id_for_key("a", "k1"), id_for_key("b", "k1"));
        assert_ne!(id_for_key("a", "k1"), id_for_key("a", "k2"));
        assert_eq!(id_for_key("a", "k1").len(), 22);
    }
}
