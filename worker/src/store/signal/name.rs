//! File names from names that come from the network (addresses, group JIDs, user parts).
//!
//! Lower-case ASCII letters, digits, `_` and `-` stay as they are; every other byte becomes
//! `%XX` (upper-case hex). The mapping is injective and reversible, and its output never holds
//! `/`, `.`, NUL or an upper-case letter: no name can climb out of its folder, hide as a dot
//! file, clash with the `.`/`+` separators of composite names, or collide with another name on
//! a case-insensitive volume. Names longer than [`MAX_NAME_LEN`] bytes are refused.

use super::{KeyStoreError, Kind, Result};

/// The longest name accepted, in bytes before encoding. Real names are far shorter: a LID
/// address name is 17 bytes, a group JID about 30.
pub(super) const MAX_NAME_LEN: usize = 64;
/// The longest file name we build; keeps room under NAME_MAX (255) for the temp and
/// `.corrupt-<ts>` suffixes added next to it.
const MAX_FILE_NAME_LEN: usize = 200;

/// Refuses a name that is empty or too long.
pub(super) fn check(name: &str, kind: Kind) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(KeyStoreError::InvalidName { kind });
    }
    Ok(())
}

/// The encoded form of `name`.
pub(super) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// The checked, encoded file name of one `name` for `kind`.
pub(super) fn file_name(name: &str, kind: Kind) -> Result<String> {
    check(name, kind)?;
    bounded(encode(name), kind)
}

/// `file` itself, unless it is too long to be stored.
pub(super) fn bounded(file: String, kind: Kind) -> Result<String> {
    if file.len() > MAX_FILE_NAME_LEN {
        return Err(KeyStoreError::InvalidName { kind });
    }
    Ok(file)
}

/// The name an encoded file name stands for; `None` for anything [`encode`] cannot produce.
pub(super) fn decode(file: &str) -> Option<String> {
    let mut out = Vec::with_capacity(file.len());
    let mut bytes = file.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' => {
                out.push(b)
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode(&name) == file).then_some(name)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_stay_inside_one_plain_file_name() {
        for hostile in [
            "../../creds.json",
            "/etc/passwd",
            "a\0b",
            ".",
            "..",
            ".hidden",
            "A",
        ] {
            let file = file_name(hostile, Kind::Session).expect("encodable");
            assert!(!file.contains('/'), "{file}");
            assert!(!file.contains('.'), "{file}");
            assert!(!file.contains('\0'), "{file}");
            assert!(!file.bytes().any(|b| b.is_ascii_uppercase() && b > b'F'));
            assert_eq!(decode(&file).as_deref(), Some(hostile));
        }
        assert_eq!(encode("../x"), "%2E%2E%2Fx");
        assert_eq!(encode("100000000000001_1"), "100000000000001_1");
    }

    #[test]
    fn empty_and_overlong_names_are_refused() {
        assert!(matches!(
            file_name("", Kind::Identity),
            Err(KeyStoreError::InvalidName {
                kind: Kind::Identity
            })
        ));
        assert!(file_name(&"9".repeat(MAX_NAME_LEN), Kind::Session).is_ok());
        assert!(file_name(&"9".repeat(MAX_NAME_LEN + 1), Kind::Session).is_err());
        assert!(file_name(&"/".repeat(MAX_NAME_LEN), Kind::Session).is_ok());
        assert!(bounded("9".repeat(MAX_FILE_NAME_LEN + 1), Kind::SenderKey).is_err());
    }

    #[test]
    fn non_canonical_file_names_decode_to_nothing() {
        for odd in ["%2e", "%61", "a%4", "a.b", "A", "%ZZ", "%FF"] {
            assert_eq!(decode(odd), None, "{odd}");
        }
    }

    proptest! {
        #[test]
        fn encoding_is_reversible_and_never_leaves_the_folder(name in ".{1,64}") {
            let file = encode(&name);
            prop_assert!(!file.contains('/') && !file.contains('.') && !file.contains('\0'));
            prop_assert_eq!(decode(&file), Some(name));
        }

        #[test]
        fn distinct_names_get_distinct_files(a in ".{1,16}", b in ".{1,16}") {
            prop_assume!(a != b);
            prop_assert_ne!(encode(&a), encode(&b));
        }
    }
}
