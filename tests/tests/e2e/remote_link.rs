//! Remote linking: a signed, expiring URL for one account opens its QR and a pairing-code form
//! without any admin credential, and is refused once used (across a restart), expired,
//! tampered with, or aimed at another account.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{add, start};
use super::STATE_DEADLINE;

fn link_url(sup: &Supervisor, id: &str, ttl: u64) -> String {
    let r = sup.call(
        "POST",
        &format!("/api/whatsapp/accounts/{id}/link-url"),
        Some(&json!({ "ttlSeconds": ttl }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["success"], true);
    assert!(
        body["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    body["url"].as_str().expect("url").to_owned()
}

/// A request with no credential at all.
fn anonymous(sup: &Supervisor, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let r = sup.call_with(method, path, &[], body);
    (r.status, r.text())
}

/// A token signed with the volume's link secret, as the supervisor signs them.
fn forge(volume: &Volume, account: &str, expires: u64, issued: u64) -> String {
    let hex_secret =
        std::fs::read_to_string(volume.sessions().join("link-secret")).expect("secret");
    let secret = hex::decode(hex_secret.trim()).expect("hex");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("key");
    mac.update(format!("wafleet-link-v1|{account}|{expires}|{issued}").as_bytes());
    format!(
        "{account}.{expires}.{issued}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn a_link_shows_one_accounts_qr_pairs_it_by_code_and_is_refused_once_used_even_after_a_restart() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let url = {
        let sup = start(&volume, &sim, &[]);
        add(&sup, "shop-a");
        add(&sup, "shop-b");
        for bad in [0, 59, 7 * 24 * 3600 + 1] {
            let r = sup.call(
                "POST",
                "/api/whatsapp/accounts/shop-a/link-url",
                Some(&json!({ "ttlSeconds": bad }).to_string()),
            );
            assert_eq!(r.status, 400, "{bad}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "invalid_ttl");
        }
        let (status, _) = anonymous(
            &sup,
            "POST",
            "/api/whatsapp/accounts/shop-a/link-url",
            Some("{\"ttlSeconds\":600}"),
        );
        assert_eq!(status, 401, "making a link needs the admin");
        let url = link_url(&sup, "shop-a", 600);
        assert!(url.starts_with("/link/shop-a."), "{url}");

        // The page and its QR, with no credential; no admin token anywhere in them.
        let page = sup.call_with("GET", &url, &[], None);
        assert_eq!(page.status, 200, "{}", page.text());
        let csp = page.header("content-security-policy").expect("csp");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !page.text().contains(TOKEN),
            "the admin token stays out of the page"
        );
        let (status, text) = anonymous(&sup, "GET", &format!("{url}/qr"), None);
        assert_eq!(status, 200, "{text}");
        let qr: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert!(qr["qr"].as_str().is_some_and(|q| q.contains(",")), "{qr}");
        assert!(qr["qrCode"]
            .as_str()
            .is_some_and(|q| q.starts_with("data:image/png;base64,")));
        assert!(!text.contains(TOKEN));

        // Only shop-a: the token opens none of shop-b's admin routes, and a token edited to
        // name shop-b is invalid.
        let bearer = format!("Bearer {}", url.trim_start_matches("/link/"));
        let r = sup.call_with(
            "GET",
            "/api/whatsapp/qr/shop-b?format=json",
            &[("Authorization", &bearer)],
            None,
        );
        assert_eq!(r.status, 401, "{}", r.text());
        let edited = url.replacen("shop-a", "shop-b", 1);
        let (status, text) = anonymous(&sup, "GET", &format!("{edited}/qr"), None);
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("link_invalid"), "{text}");

        // Pair through the link's own form, with the sim's phone, as the page's fetch sends it
        // (its same-origin referrer policy gives it the real Origin; `Origin: null`, what a
        // no-referrer page would send, is refused).
        let path = format!("{url}/pairing-code");
        let body = Some("{\"phone\":\"+1 555 000 4001\"}");
        let r = sup.call_with("POST", &path, &[("Origin", "null")], body);
        assert_eq!(r.status, 403, "{}", r.text());
        let origin = sup.origin();
        let browser = [
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ];
        let r = sup.call_with("POST", &path, &browser, body);
        let (status, text) = (r.status, r.text());
        assert_eq!(status, 200, "{text}");
        let code: serde_json::Value = serde_json::from_str(&text).expect("json");
        let code = code["code"].as_str().expect("code").to_owned();
        let (status, entered) = sim.post(
            "/enter-code",
            &json!({ "phone": "15550004001", "code": code }),
        );
        assert_eq!(status, 200, "{entered}");
        wait_until("shop-a connected", STATE_DEADLINE, || {
            let a = sup.account("shop-a");
            if a["status"] == "connected" {
                Ok(())
            } else {
                Err(a.to_string())
            }
        });
        assert_eq!(
            sup.account("shop-b")["status"],
            "needs_qr",
            "shop-b untouched"
        );

        // Used: refused, as JSON and as a page.
        let (status, text) = anonymous(&sup, "GET", &format!("{url}/qr"), None);
        assert_eq!(status, 410, "{text}");
        assert!(text.contains("link_used"), "{text}");
        let page = sup.call_with("GET", &url, &[], None);
        assert_eq!(page.status, 410);
        assert!(page.text().contains("has been used"));
        url
    };

    // Still refused after a restart, and after the account is logged out again.
    let sup = start(&volume, &sim, &[]);
    wait_until("shop-a back", STATE_DEADLINE, || {
        let a = sup.account("shop-a");
        if a["status"] == "connected" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let r = sup.call("POST", "/api/whatsapp/accounts/shop-a/logout", None);
    assert_eq!(r.status, 202, "{}", r.text());
    wait_until("shop-a logged out", STATE_DEADLINE, || {
        let a = sup.account("shop-a");
        if a["status"] == "logged_out" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let (status, text) = anonymous(&sup, "GET", &format!("{url}/qr"), None);
    assert_eq!(status, 410, "{text}");
    assert!(text.contains("link_used"), "{text}");
    let (status, text) = anonymous(
        &sup,
        "POST",
        &format!("{url}/pairing-code"),
        Some("{\"phone\":\"15550004001\"}"),
    );
    assert_eq!(status, 410, "{text}");
}

#[test]
fn expired_and_tampered_links_are_refused_with_clear_errors() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    add(&sup, "kiosk");
    let url = link_url(&sup, "kiosk", 60);
    let token = url.trim_start_matches("/link/");
    let issued: u64 = token
        .split('.')
        .nth(2)
        .expect("issued")
        .parse()
        .expect("ms");

    // Signed as the supervisor signs: a later expiry verifies, a past one is expired.
    let fresh = forge(&volume, "kiosk", now_secs() + 300, issued);
    let (status, text) = anonymous(&sup, "GET", &format!("/link/{fresh}/qr"), None);
    assert_eq!(status, 200, "{text}");
    let expired = forge(&volume, "kiosk", now_secs() - 1, issued);
    let (status, text) = anonymous(&sup, "GET", &format!("/link/{expired}/qr"), None);
    assert_eq!(status, 410, "{text}");
    assert!(text.contains("link_expired"), "{text}");
    let page = sup.call_with("GET", &format!("/link/{expired}"), &[], None);
    assert_eq!(page.status, 410);
    assert!(page.text().contains("expired"));
    assert!(
        !page.text().contains(&expired),
        "a refused token is not echoed"
    );

    // Tampered: the expiry moved without the signature, a character of the signature changed.
    let parts: Vec<&str> = token.split('.').collect();
    let later = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1].parse::<u64>().expect("s") + 3600,
        parts[2],
        parts[3]
    );
    let mut flipped = token.to_owned();
    let last = flipped.pop().expect("char");
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [later, flipped, "kiosk".to_owned(), "x.y.z.w".to_owned()] {
        let (status, text) = anonymous(&sup, "GET", &format!("/link/{bad}/qr"), None);
        assert_eq!(status, 404, "{bad}: {text}");
        assert!(text.contains("link_invalid"), "{text}");
        let (status, _) = anonymous(
            &sup,
            "POST",
            &format!("/link/{bad}/pairing-code"),
            Some("{\"phone\":\"15550004002\"}"),
        );
        assert_eq!(status, 404);
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(volume.sessions().join("link-secret"))
            .expect("secret")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read_to_string(volume.sessions().join("link-secret")).expect("secret");
    assert!(!secret.contains(TOKEN), "never the admin token");
}
