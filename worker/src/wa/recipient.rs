//! Who a message may be sent to, as the operator writes it: a phone number (`+40712345678` or
//! `40712345678`), a user JID (`40712345678@s.whatsapp.net`, `100000000000001@lid`) or a group
//! (`120363000000000001@g.us`, or the older `40712345678-1600000000@g.us`).

use super::binary::jid::{Jid, DEFAULT_USER_SERVER, GROUP_SERVER, HIDDEN_USER_SERVER};

/// Why a recipient is not one. The text never repeats the input (it may be a phone number).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum RecipientError {
    /// Nothing given.
    #[error("the recipient is empty")]
    Empty,
    /// A phone number with other characters than digits, or of an impossible length.
    #[error("a phone number is 6 to 20 digits, with an optional leading +")]
    BadPhone,
    /// A JID of a server messages cannot go to, or with a device or odd user part.
    #[error("the recipient must be a phone number, a <digits>@s.whatsapp.net or <digits>@lid user, or a <id>@g.us group")]
    BadJid,
}

/// Parses what the operator wrote into the chat JID to send to.
///
/// # Errors
/// [`RecipientError`] when it is none of the accepted forms.
pub fn parse_recipient(raw: &str) -> Result<Jid, RecipientError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(RecipientError::Empty);
    }
    let Some((user, server)) = raw.split_once('@') else {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        return if is_digits(digits, 6, 20) {
            Ok(Jid::new(digits, DEFAULT_USER_SERVER))
        } else {
            Err(RecipientError::BadPhone)
        };
    };
    let ok = match server {
        DEFAULT_USER_SERVER => is_digits(user, 6, 20),
        HIDDEN_USER_SERVER => is_digits(user, 1, 24),
        GROUP_SERVER => match user.split_once('-') {
            Some((creator, time)) => is_digits(creator, 6, 20) && is_digits(time, 1, 12),
            None => is_digits(user, 6, 24),
        },
        _ => false,
    };
    if ok {
        Ok(Jid::new(user, server))
    } else {
        Err(RecipientError::BadJid)
    }
}

fn is_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_phones_users_lids_and_groups() {
        for (raw, want) in [
            ("+40712345678", "40712345678@s.whatsapp.net"),
            ("40712345678", "40712345678@s.whatsapp.net"),
            (" 40712345678@s.whatsapp.net ", "40712345678@s.whatsapp.net"),
            ("100000000000001@lid", "100000000000001@lid"),
            ("120363000000000001@g.us", "120363000000000001@g.us"),
            ("40712345678-1600000000@g.us", "40712345678-1600000000@g.us"),
        ] {
            assert_eq!(
                parse_recipient(raw).map(|j| j.to_string()),
                Ok(want.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for (raw, err) in [
            ("", RecipientError::Empty),
            ("+40 712", RecipientError::BadPhone),
            ("12345", RecipientError::BadPhone),
            ("+4071234567x", RecipientError::BadPhone),
            ("40712345678:3@s.whatsapp.net", RecipientError::BadJid),
            ("status@broadcast", RecipientError::BadJid),
            ("abc@g.us", RecipientError::BadJid),
            ("40712345678@evil.example", RecipientError::BadJid),
            ("a@b@s.whatsapp.net", RecipientError::BadJid),
        ] {
            assert_eq!(parse_recipient(raw), Err(err), "{raw}");
        }
    }
}
