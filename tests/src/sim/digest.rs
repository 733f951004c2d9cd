//! The answer to `<iq xmlns="encrypt" type="get"><digest/></iq>` (wa-protocol.md §8.2): the keys
//! the server holds for a device, and a SHA-1 over them that the client compares with its own.
//!
//! ```text
//! <digest><registration/><type/><identity/><skey><id/><value/><signature/></skey>
//!         <list><id/>…</list><hash>SHA-1(identity ‖ skey value ‖ skey signature ‖ prekeys…)</hash>
//! </digest>
//! ```
//!
//! SHA-1 is written out here (FIPS 180-4 §6.1): the workspace has no SHA-1 crate and this is its
//! only use.

use worker::wa::binary::Node;

use super::registry::Device;

/// The `<digest>` element for `device`; prekeys in ascending id order.
pub(crate) fn digest_node(device: &Device) -> Node {
    let keys = &device.keys;
    let mut hashed = Vec::with_capacity(128 + 32 * device.prekeys.len());
    hashed.extend_from_slice(&keys.identity);
    hashed.extend_from_slice(&keys.skey_value);
    hashed.extend_from_slice(&keys.skey_signature);
    for value in device.prekeys.values() {
        hashed.extend_from_slice(value);
    }
    let ids = device
        .prekeys
        .keys()
        .map(|id| Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()))
        .collect();
    Node::new("digest").children(vec![
        Node::new("registration").bytes(keys.registration_id.to_vec()),
        Node::new("type").bytes(vec![5]),
        Node::new("identity").bytes(keys.identity.to_vec()),
        Node::new("skey").children(vec![
            Node::new("id").bytes(keys.skey_id.to_vec()),
            Node::new("value").bytes(keys.skey_value.to_vec()),
            Node::new("signature").bytes(keys.skey_signature.to_vec()),
        ]),
        Node::new("list").children(ids),
        Node::new("hash").bytes(sha1(&hashed).to_vec()),
    ])
}

/// SHA-1 of `data`.
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_fips_examples() {
        // FIPS 180-2 appendix A: "abc", the two-block message, and the empty string.
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex::encode(sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex::encode(sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }
}
