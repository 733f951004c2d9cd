//! The participant-list hash ("phash v2") of message acks and group stanzas
//! (wa-messaging.md §6.8): compare the server's `phash` with ours to learn that a device
//! list went stale.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::binary::jid::Jid;

/// How many hash bytes the phash keeps (8 base64 characters).
const PHASH_BYTES: usize = 6;

/// `"2:" + base64(SHA256(sorted device forms concatenated)[..6])`, standard alphabet, no
/// padding. Each device is written `user.agent:device@server` (agent 0 for PN and LID).
pub fn participant_hash(devices: &[Jid]) -> String {
    let forms: Vec<String> = devices
        .iter()
        .map(|d| format!("{}.{}:{}@{}", d.user, d.agent, d.device, d.server))
        .collect();
    participant_hash_of_forms(forms)
}

/// [`participant_hash`] over already written device forms.
pub fn participant_hash_of_forms(mut forms: Vec<String>) -> String {
    forms.sort_unstable();
    let mut hasher = Sha256::new();
    for form in &forms {
        hasher.update(form.as_bytes());
    }
    let digest = hasher.finalize();
    format!("2:{}", STANDARD_NO_PAD.encode(&digest[..PHASH_BYTES]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn matches_the_published_vectors() {
        // wa-messaging.md §11.1.3
        assert_eq!(
            participant_hash_of_forms(forms(&["5511999999999.0:3@s.whatsapp.net"])),
            "2:5s+YxCff"
        );
        assert_eq!(
            participant_hash_of_forms(forms(&["5511999999999.0:0@s.whatsapp.net"])),
            "2:RJWVxcMQ"
        );
        assert_eq!(
            participant_hash_of_forms(forms(&[
                "7469250125917.0:21@s.whatsapp.net",
                "5511988887777.0:14@s.whatsapp.net",
            ])),
            "2:AAv/hwhn"
        );
    }

    #[test]
    fn builds_forms_from_jids_in_any_order() {
        let devices = [
            Jid::device("100000000000001", "lid", 0),
            Jid::device("100000000000002", "lid", 5),
            Jid::device("100000000000002", "lid", 0),
        ];
        assert_eq!(participant_hash(&devices), "2:U35wze1n");
    }
}
