//! The ClientPayload sent inside the handshake: registration for a device that has never
//! paired, login for one that has (wa-protocol.md §4). Values follow whatsmeow.

use md5::{Digest, Md5};
use prost::Message;

use crate::config::{Browser, WaVersion};
use crate::store::creds::{Creds, DJB_KEY_TYPE};
use crate::wa::binary::Jid;
use crate::wa::proto::{
    AppVersion, ClientPayload, DevicePairingRegistrationData, DeviceProps, UserAgent, WebInfo,
    CONNECT_REASON_USER_ACTIVATED, CONNECT_TYPE_WIFI_UNKNOWN, PLATFORM_WEB,
    RELEASE_CHANNEL_RELEASE, WEB_SUB_PLATFORM_WEB_BROWSER,
};

/// The payload for `creds`: login when paired (and the JID parses), registration otherwise.
pub(crate) fn for_creds(creds: &Creds, version: WaVersion, browser: &Browser) -> Vec<u8> {
    let login = creds
        .me
        .as_ref()
        .and_then(|me| me.jid.parse::<Jid>().ok())
        .and_then(|jid| Some((jid.user.parse::<u64>().ok()?, jid.device)));
    match login {
        Some((username, device)) => login_payload(username, device, version),
        None => registration_payload(creds, version, browser),
    }
}

/// §4.5: `username` + `device`, passive, pull.
fn login_payload(username: u64, device: u16, version: WaVersion) -> Vec<u8> {
    ClientPayload {
        username: Some(username),
        device: Some(u32::from(device)),
        passive: Some(true),
        pull: Some(true),
        lc: Some(1),
        lid_db_migrated: Some(true),
        ..base(version)
    }
    .encode_to_vec()
}

/// §4.4: the keys of a new companion, and how it shows on the phone (§4.6).
fn registration_payload(creds: &Creds, version: WaVersion, browser: &Browser) -> Vec<u8> {
    let [a, b, c] = version.0;
    let [primary, secondary, tertiary] = browser.version;
    let props = DeviceProps {
        os: Some(browser.name.clone()),
        version: Some(AppVersion {
            primary: Some(primary),
            secondary: Some(secondary),
            tertiary: Some(tertiary),
            ..Default::default()
        }),
        platform_type: Some(browser.platform_type),
        require_full_sync: Some(false),
    };
    let spk = &creds.signed_prekey;
    ClientPayload {
        passive: Some(false),
        pull: Some(false),
        device_pairing_data: Some(DevicePairingRegistrationData {
            e_regid: Some(creds.registration_id.to_be_bytes().to_vec()),
            e_keytype: Some(vec![DJB_KEY_TYPE]),
            e_ident: Some(creds.identity_key.public.0.to_vec()),
            e_skey_id: Some(spk.key_id.to_be_bytes()[1..].to_vec()),
            e_skey_val: Some(spk.key_pair.public.0.to_vec()),
            e_skey_sig: Some(spk.signature.0.to_vec()),
            build_hash: Some(Md5::digest(format!("{a}.{b}.{c}")).to_vec()),
            device_props: Some(props.encode_to_vec()),
        }),
        ..base(version)
    }
    .encode_to_vec()
}

fn base(version: WaVersion) -> ClientPayload {
    let [primary, secondary, tertiary] = version.0;
    ClientPayload {
        user_agent: Some(UserAgent {
            platform: Some(PLATFORM_WEB),
            app_version: Some(AppVersion {
                primary: Some(primary),
                secondary: Some(secondary),
                tertiary: Some(tertiary),
                ..Default::default()
            }),
            mcc: Some("000".into()),
            mnc: Some("000".into()),
            os_version: Some("0.1".into()),
            manufacturer: Some(String::new()),
            device: Some("Desktop".into()),
            os_build_number: Some("0.1".into()),
            release_channel: Some(RELEASE_CHANNEL_RELEASE),
            locale_language_iso639_1: Some("en".into()),
            locale_country_iso3166_1_alpha2: Some("US".into()),
        }),
        web_info: Some(WebInfo {
            web_sub_platform: Some(WEB_SUB_PLATFORM_WEB_BROWSER),
            ..Default::default()
        }),
        connect_type: Some(CONNECT_TYPE_WIFI_UNKNOWN),
        connect_reason: Some(CONNECT_REASON_USER_ACTIVATED),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::creds::Me;

    const VERSION: WaVersion = WaVersion([2, 3000, 1_045_649_367]);

    fn browser() -> Browser {
        Browser::parse("SuperParty,Chrome,2.0.0").expect("valid")
    }

    #[test]
    fn an_unpaired_device_registers_its_keys() {
        let creds = Creds::generate();
        let payload = ClientPayload::decode(for_creds(&creds, VERSION, &browser()).as_slice())
            .expect("decodes");
        assert_eq!(payload.passive, Some(false));
        assert_eq!(payload.username, None);
        let reg = payload.device_pairing_data.expect("pairing data");
        assert_eq!(
            reg.e_regid,
            Some(creds.registration_id.to_be_bytes().to_vec())
        );
        assert_eq!(reg.e_keytype, Some(vec![5]));
        assert_eq!(reg.e_skey_id, Some(vec![0, 0, 1]));
        assert_eq!(
            reg.e_ident.as_deref(),
            Some(&creds.identity_key.public.0[..])
        );
        // wa-protocol.md §4.4: MD5("2.3000.1045649367").
        assert_eq!(
            hex::encode(reg.build_hash.expect("hash")),
            "9fa53af9421567b114e33c9bb1ef7db2"
        );
        // §4.6: the phone lists the device as the operator named it, with the platform's icon.
        let props =
            DeviceProps::decode(reg.device_props.expect("props").as_slice()).expect("decodes");
        assert_eq!(props.os.as_deref(), Some("SuperParty"));
        assert_eq!(props.platform_type, Some(1));
        let version = props.version.expect("version");
        assert_eq!(
            (version.primary, version.secondary, version.tertiary),
            (Some(2), Some(0), Some(0))
        );
    }

    #[test]
    fn a_paired_device_logs_in_with_its_number_and_device() {
        let mut creds = Creds::generate();
        creds.me = Some(Me {
            jid: "15551234567:2@s.whatsapp.net".into(),
            lid: None,
            push_name: None,
        });
        let payload = ClientPayload::decode(for_creds(&creds, VERSION, &browser()).as_slice())
            .expect("decodes");
        assert_eq!(
            (payload.username, payload.device),
            (Some(15_551_234_567), Some(2))
        );
        assert_eq!((payload.passive, payload.pull), (Some(true), Some(true)));
        assert!(payload.device_pairing_data.is_none());
        let ua = payload.user_agent.expect("user agent");
        assert_eq!(ua.app_version.and_then(|v| v.tertiary), Some(1_045_649_367));
    }
}
