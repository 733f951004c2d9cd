//! WhatsApp addresses ("JIDs") and their string forms (wa-protocol.md §5.8). The wire forms
//! live in `encode.rs` and `decode.rs`; this file only knows the model and its text.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

/// Phone-number users and the server's own JID.
pub const DEFAULT_USER_SERVER: &str = "s.whatsapp.net";
/// LID users (hidden phone numbers).
pub const HIDDEN_USER_SERVER: &str = "lid";
/// Groups.
pub const GROUP_SERVER: &str = "g.us";
/// Channels.
pub const NEWSLETTER_SERVER: &str = "newsletter";
/// Hosted (business API) phone-number users.
pub const HOSTED_SERVER: &str = "hosted";
/// Hosted LID users.
pub const HOSTED_LID_SERVER: &str = "hosted.lid";
/// Messenger users (written as `FB_JID`).
pub const MESSENGER_SERVER: &str = "msgr";
/// Interop users (written as `INTEROP_JID`).
pub const INTEROP_SERVER: &str = "interop";

/// A WhatsApp address: `user[.agent][:device]@server`.
///
/// `agent` is the raw domain byte of an `AD_JID` that names no known server (§5.8);
/// `integrator` only travels in `INTEROP_JID` and has no text form.
#[derive(Clone, Debug, Default, Eq, Hash, PartialEq)]
pub struct Jid {
    /// The user part: a phone number, a LID, a group id, …; empty for server JIDs.
    pub user: String,
    /// The server part, e.g. [`DEFAULT_USER_SERVER`].
    pub server: String,
    /// The device id; 0 is the primary device (the "non-AD" JID).
    pub device: u16,
    /// The raw agent byte; 0 when the server says it all.
    pub agent: u8,
    /// The interop integrator id; 0 outside [`INTEROP_SERVER`].
    pub integrator: u16,
}

impl Jid {
    /// `user@server`, device 0.
    pub fn new(user: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            server: server.into(),
            ..Self::default()
        }
    }

    /// The server's own JID, `s.whatsapp.net` with an empty user.
    pub fn server_jid() -> Self {
        Self::new("", DEFAULT_USER_SERVER)
    }

    /// `user:device@server`.
    pub fn device(user: impl Into<String>, server: impl Into<String>, device: u16) -> Self {
        Self {
            device,
            ..Self::new(user, server)
        }
    }

    /// The same user without device and agent: the account rather than one of its devices.
    pub fn to_non_ad(&self) -> Jid {
        Self {
            device: 0,
            agent: 0,
            ..self.clone()
        }
    }
}

/// A JID fit for a log: the user part masked but its last two characters, e.g.
/// `*********01:3@s.whatsapp.net`; server JIDs and short users unchanged.
#[derive(Debug)]
pub struct Masked<'a>(pub &'a Jid);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jid = self.0;
        if jid.user.is_empty() {
            return write!(f, "{jid}");
        }
        let masked = Jid {
            user: mask_digits(&jid.user),
            ..jid.clone()
        };
        write!(f, "{masked}")
    }
}

impl Jid {
    /// This JID as it may appear in a log.
    pub fn masked(&self) -> Masked<'_> {
        Masked(self)
    }
}

/// `text` with every character but the last two masked when it is longer than four: phone
/// numbers, LIDs and group ids in logs.
pub fn mask_digits(text: &str) -> String {
    let n = text.chars().count();
    if n <= 4 {
        return text.to_owned();
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + 2 < n { '*' } else { c })
        .collect()
}

/// As whatsmeow renders it: `user@server`, `user:device@server`, `user.agent:device@server`
/// when an agent is set, and only `server` when user, device and agent are all empty.
impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.agent > 0 {
            write!(
                f,
                "{}.{}:{}@{}",
                self.user, self.agent, self.device, self.server
            )
        } else if self.device > 0 {
            write!(f, "{}:{}@{}", self.user, self.device, self.server)
        } else if !self.user.is_empty() {
            write!(f, "{}@{}", self.user, self.server)
        } else {
            f.write_str(&self.server)
        }
    }
}

/// Parses the forms [`Jid`]'s `Display` writes; a string without `@` is a server JID.
impl FromStr for Jid {
    type Err = JidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((user_part, server)) = s.split_once('@') else {
            return Ok(Jid::new("", s));
        };
        if server.contains('@') {
            return Err(JidParseError::TooManyAts);
        }
        let mut jid = Jid::new("", server);
        if let Some((user, ad)) = user_part.split_once('.') {
            let (agent, device) = match ad.split_once(':') {
                Some((agent, device)) => (agent, Some(device)),
                None => (ad, None),
            };
            if agent.contains('.') {
                return Err(JidParseError::TooManyDots);
            }
            jid.agent = agent.parse().map_err(JidParseError::Agent)?;
            if let Some(device) = device {
                jid.device = parse_device(device)?;
            }
            jid.user = user.to_owned();
        } else if let Some((user, device)) = user_part.split_once(':') {
            jid.device = parse_device(device)?;
            jid.user = user.to_owned();
        } else {
            jid.user = user_part.to_owned();
        }
        Ok(jid)
    }
}

fn parse_device(device: &str) -> Result<u16, JidParseError> {
    if device.contains(':') {
        return Err(JidParseError::TooManyColons);
    }
    device.parse().map_err(JidParseError::Device)
}

/// A string that is not a JID. Messages never quote the input: it may be a phone number.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum JidParseError {
    /// More than one `@`.
    #[error("jid has more than one @")]
    TooManyAts,
    /// More than one `.` in the user part.
    #[error("jid user part has more than one dot")]
    TooManyDots,
    /// More than one `:` in the user part.
    #[error("jid user part has more than one colon")]
    TooManyColons,
    /// The agent after `.` is not a number from 0 to 255.
    #[error("jid agent is not a number from 0 to 255")]
    Agent(#[source] ParseIntError),
    /// The device after `:` is not a number from 0 to 65535.
    #[error("jid device is not a number from 0 to 65535")]
    Device(#[source] ParseIntError),
}
