//! Signal protocol addresses: which session and identity record a device JID uses
//! (wa-messaging.md §1.3).

use std::fmt;

use thiserror::Error;

use crate::wa::binary::jid::{
    Jid, DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER,
};

/// A JID that names no Signal peer.
#[derive(Clone, Debug, Eq, Error, PartialEq)]
pub enum AddressError {
    /// Groups, broadcast lists, newsletters, … have no sessions.
    #[error("jids on server {0} have no signal address")]
    UnsupportedServer(String),
    /// A user JID with an empty user part.
    #[error("jid has no user part")]
    EmptyUser,
}

/// (name, device) of a Signal session: name is the JID user, with `_1` for LID, `_128` for
/// hosted and `_129` for hosted LID; device is the JID's device (0 = primary).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ProtocolAddress {
    name: String,
    device: u32,
}

impl ProtocolAddress {
    /// An address from its parts.
    pub fn new(name: impl Into<String>, device: u32) -> Self {
        Self {
            name: name.into(),
            device,
        }
    }

    /// The address of a user device JID.
    ///
    /// # Errors
    /// [`AddressError`] for non-user servers and empty users.
    pub fn from_jid(jid: &Jid) -> Result<Self, AddressError> {
        if jid.user.is_empty() {
            return Err(AddressError::EmptyUser);
        }
        let suffix = match jid.server.as_str() {
            DEFAULT_USER_SERVER => "",
            HIDDEN_USER_SERVER => "_1",
            HOSTED_SERVER => "_128",
            HOSTED_LID_SERVER => "_129",
            other => return Err(AddressError::UnsupportedServer(other.to_owned())),
        };
        Ok(Self::new(
            format!("{}{suffix}", jid.user),
            u32::from(jid.device),
        ))
    }

    /// The name (user plus domain suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device id.
    pub fn device(&self) -> u32 {
        self.device
    }
}

/// `name.device`, the storage key (as libsignal-node and whatsapp-rust write it).
impl fmt::Display for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.device)
    }
}

/// The key of a sender-key record: the group (or `status@broadcast`) and the sender's
/// address (§1.3).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct SenderKeyName {
    /// The group JID as text, e.g. `120363000000000001@g.us`.
    pub group: String,
    /// The sender device.
    pub sender: ProtocolAddress,
}

/// `group::name::device`, the storage key (as Baileys writes it).
impl fmt::Display for SenderKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}::{}::{}",
            self.group, self.sender.name, self.sender.device
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<ProtocolAddress, AddressError> {
        ProtocolAddress::from_jid(&s.parse::<Jid>().expect("jid"))
    }

    #[test]
    fn names_carry_the_domain_suffix() {
        assert_eq!(
            addr("15551234567@s.whatsapp.net").map(|a| a.to_string()),
            Ok("15551234567.0".to_owned())
        );
        assert_eq!(
            addr("15551234567:12@s.whatsapp.net").map(|a| a.to_string()),
            Ok("15551234567.12".to_owned())
        );
        assert_eq!(
            addr("100000000000001:12@lid").map(|a| a.to_string()),
            Ok("100000000000001_1.12".to_owned())
        );
        assert_eq!(
            addr("15551234567:99@hosted").map(|a| a.to_string()),
            Ok("15551234567_128.99".to_owned())
        );
        assert_eq!(
            addr("15551234567:99@hosted.lid").map(|a| a.to_string()),
            Ok("15551234567_129.99".to_owned())
        );
        assert_eq!(
            addr("120363000000000001@g.us"),
            Err(AddressError::UnsupportedServer("g.us".to_owned()))
        );
    }

    #[test]
    fn sender_key_names_join_group_and_address() {
        let name = SenderKeyName {
            group: "120363000000000001@g.us".to_owned(),
            sender: ProtocolAddress::new("100000000000001_1", 3),
        };
        assert_eq!(
            name.to_string(),
            "120363000000000001@g.us::100000000000001_1::3"
        );
    }
}
