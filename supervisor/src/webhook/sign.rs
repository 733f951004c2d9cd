//! The signature header: `X-Wafleet-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 keyed with the UTF-8 bytes of `WEBHOOK_SECRET` over `"<t>.<body>"`, the body
//! being the exact bytes POSTed. A receiver recomputes it and compares in constant time, and
//! refuses a `t` too far from its clock to stop replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use volume::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The value of `X-Wafleet-Signature` for `body` sent at Unix second `t`.
pub fn signature(secret: &Secret<String>, t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("hmac takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's standard library:
    /// `hmac.new(b"whsec-test", b"1700000000." + body, hashlib.sha256).hexdigest()`.
    const VECTOR: &str = "18199e3d288fa389dee2e2806fda197ba86f3e3874c2f4f1ddb9ac371065c912";
    const BODY: &[u8] =
        br#"{"id":1,"type":"account.status","accountId":"a","timestamp":1700000000000,"data":{}}"#;

    #[test]
    fn matches_an_independently_computed_vector() {
        let secret = Secret::new("whsec-test".to_owned());
        assert_eq!(
            signature(&secret, 1_700_000_000, BODY),
            format!("t=1700000000,v1={VECTOR}")
        );
    }

    #[test]
    fn covers_the_time_the_body_and_the_secret() {
        let secret = Secret::new("whsec-test".to_owned());
        let base = signature(&secret, 1_700_000_000, BODY);
        assert_ne!(signature(&secret, 1_700_000_001, BODY), base);
        assert_ne!(signature(&secret, 1_700_000_000, b"{}"), base);
        assert_ne!(
            signature(&Secret::new("other".into()), 1_700_000_000, BODY),
            base
        );
    }
}
