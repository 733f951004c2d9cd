//! What the server decides about a client before `<success>`: its app version, failures played
//! on purpose, and the silent mode (wa-protocol.md §8.6; issue 8, items 3, 4 and 7).
//!
//! 1. Versions: the simulator publishes a current WhatsApp Web version (`GET /sw.js`, shaped
//!    like `https://web.whatsapp.com/sw.js`, see [`sw_js`]) and may require a minimum one. A
//!    login or registration whose ClientPayload `userAgent.appVersion` is below the minimum
//!    gets `<failure reason="405"/>` (client outdated).
//! 2. Failures: `<failure reason="403"|"405"|"406"/>` at every login of one account, or of all
//!    accounts, until cleared (403 locked, 405 outdated, 406 banned).
//! 3. Noise IK: accepted for a paired device unless `refuse_ik` is set, which answers every
//!    attempt with XXfallback.
//! 4. Silence: a silenced connection stays open but the server writes nothing more and answers
//!    nothing, so only the client's keepalive can tell it is dead.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use worker::wa::proto::ClientPayload;

/// The version served until the control API changes it: the worker's default `WA_VERSION`
/// (`DEFAULT_WA_VERSION` in worker/src/config.rs).
pub const DEFAULT_VERSION: Version = Version([2, 3000, 1_045_649_367]);

/// The failure reasons the control API can play at login.
pub const PLAYABLE_FAILURES: [u16; 3] = [403, 405, 406];

/// A WhatsApp Web version `primary.secondary.tertiary`, e.g. `2.3000.1045649367`; ordered
/// part by part.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub struct Version(pub [u32; 3]);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}.{b}.{c}")
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u32> = s
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("a version looks like 2.3000.1045649367, got {s:?}"))?;
        match parts.as_slice() {
            [a, b, c] => Ok(Version([*a, *b, *c])),
            _ => Err(format!(
                "a version has three parts, like 2.3000.1045649367, got {s:?}"
            )),
        }
    }
}

impl Version {
    /// The user agent's app version of a ClientPayload (missing parts read as 0).
    pub fn of_payload(payload: &ClientPayload) -> Option<Version> {
        let v = payload.user_agent.as_ref()?.app_version.as_ref()?;
        Some(Version([
            v.primary.unwrap_or(0),
            v.secondary.unwrap_or(0),
            v.tertiary.unwrap_or(0),
        ]))
    }
}

/// The server's rules before `<success>`; part of the registry, changed by the control API.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Policy {
    /// The version `/sw.js` publishes.
    pub current: Version,
    /// Clients below this get 405; `None` accepts every version.
    pub min: Option<Version>,
    /// A failure for every login, whatever the account.
    pub fail_all: Option<u16>,
    /// A failure for every login of one account (phone number).
    pub fail_account: BTreeMap<String, u16>,
    /// Every connection goes silent right after its `<success>`.
    pub silent: bool,
    /// Answer every Noise IK attempt with XXfallback, as a server that lost its session
    /// state would (wa-protocol.md §2.6).
    pub refuse_ik: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            current: DEFAULT_VERSION,
            min: None,
            fail_all: None,
            fail_account: BTreeMap::new(),
            silent: false,
            refuse_ik: false,
        }
    }
}

impl Policy {
    /// The failure reason a login of `phone` with `payload` gets, if any: a failure set for the
    /// account, else one set for all, else 405 when the client is below the minimum version.
    pub fn login_failure(&self, phone: &str, payload: &ClientPayload) -> Option<u16> {
        self.fail_account
            .get(phone)
            .or(self.fail_all.as_ref())
            .copied()
            .or_else(|| self.outdated(payload).then_some(405))
    }

    /// Whether a client with `payload` is below the minimum version. A payload without a
    /// version is outdated once a minimum is set.
    pub fn outdated(&self, payload: &ClientPayload) -> bool {
        match (self.min, Version::of_payload(payload)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(min), Some(version)) => version < min,
        }
    }
}

/// The body of `GET /sw.js`: a stand-in for WhatsApp Web's service worker, which carries the
/// current build as `\"client_revision\":N` inside a JSON string. Baileys'
/// `fetchLatestWaWebVersion` reads it with `/\\?"client_revision\\?":\s*(\d+)/`, whatsapp-rust's
/// `parse_sw_js` takes the first number after `client_revision`; both read
/// `2.3000.N` from this body.
pub fn sw_js(current: Version) -> String {
    let [_, _, revision] = current.0;
    format!(
        "/* wa-sim: stand-in for https://web.whatsapp.com/sw.js */\n\
         self.__swData=JSON.parse(\"{{\\\"dynamic_data\\\":{{\\\"SiteData\\\":{{\
         \\\"server_revision\\\":{revision},\\\"client_revision\\\":{revision}}}}}}}\");\n\
         self.__wa_sim_version=\"{current}\";\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::proto::{AppVersion, UserAgent};

    fn payload(version: Option<[u32; 3]>) -> ClientPayload {
        ClientPayload {
            user_agent: Some(UserAgent {
                app_version: version.map(|[a, b, c]| AppVersion {
                    primary: Some(a),
                    secondary: Some(b),
                    tertiary: Some(c),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn versions_parse_print_and_order_part_by_part() {
        let v: Version = "2.3000.1045649367".parse().expect("valid");
        assert_eq!(v, DEFAULT_VERSION);
        assert_eq!(v.to_string(), "2.3000.1045649367");
        assert!("2.3000".parse::<Version>().is_err());
        assert!("2.3000.x".parse::<Version>().is_err());
        assert!(Version([2, 3000, 9]) < Version([2, 3000, 10]));
        assert!(Version([2, 2999, 99]) < Version([2, 3000, 0]));
    }

    #[test]
    fn a_client_below_the_minimum_gets_405() {
        let mut policy = Policy::default();
        let old = payload(Some([2, 3000, 1_000_000_000]));
        assert_eq!(policy.login_failure("1555", &old), None);
        policy.min = Some(Version([2, 3000, 1_020_000_000]));
        assert_eq!(policy.login_failure("1555", &old), Some(405));
        assert_eq!(
            policy.login_failure("1555", &payload(Some([2, 3000, 1_020_000_000]))),
            None
        );
        assert_eq!(policy.login_failure("1555", &payload(None)), Some(405));
    }

    #[test]
    fn an_account_failure_wins_over_the_global_one() {
        let mut policy = Policy {
            fail_all: Some(406),
            ..Policy::default()
        };
        policy.fail_account.insert("1555".into(), 403);
        let p = payload(Some([2, 3000, 1]));
        assert_eq!(policy.login_failure("1555", &p), Some(403));
        assert_eq!(policy.login_failure("1666", &p), Some(406));
    }

    #[test]
    fn sw_js_matches_the_reference_clients_parsers() {
        let body = sw_js(Version([2, 3000, 1_027_934_701]));
        // Baileys: /\\?"client_revision\\?":\s*(\d+)/ — an optional backslash before each quote.
        let at = body.find("client_revision").expect("key present");
        let before = &body[..at];
        assert!(before.ends_with("\\\"") || before.ends_with('"'));
        let after = body[at + "client_revision".len()..]
            .strip_prefix("\\\":")
            .or_else(|| body[at + "client_revision".len()..].strip_prefix("\":"))
            .expect("quote (maybe escaped) and colon after the key");
        let digits: String = after
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(digits, "1027934701");
        // The JSON string inside parses to the same number.
        let json_text = body
            .split("JSON.parse(")
            .nth(1)
            .and_then(|rest| rest.split(");").next())
            .expect("a JSON.parse call");
        let inner: String = serde_json::from_str(json_text).expect("a JSON string literal");
        let data: serde_json::Value = serde_json::from_str(&inner).expect("JSON inside");
        assert_eq!(
            data["dynamic_data"]["SiteData"]["client_revision"],
            serde_json::json!(1_027_934_701u64)
        );
    }
}
