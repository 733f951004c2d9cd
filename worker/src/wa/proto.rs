//! The protobufs of the handshake, the certificate chain, the client payload and pairing
//! (wa-protocol.md §2.4, §3.1, §4, §6.6, Appendix B), as hand-written prost messages: no
//! `.proto` compilation, so no protoc is needed to build. Only the fields a client or the
//! simulator reads or writes are declared; prost skips unknown fields on decode.

#![allow(missing_docs)]

/// `HandshakeMessage`: one of the three Noise XX messages.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandshakeMessage {
    #[prost(message, optional, tag = "2")]
    pub client_hello: Option<ClientHello>,
    #[prost(message, optional, tag = "3")]
    pub server_hello: Option<ServerHello>,
    #[prost(message, optional, tag = "4")]
    pub client_finish: Option<ClientFinish>,
}

/// `HandshakeMessage.ClientHello`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientHello {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub ephemeral: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub r#static: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub payload: Option<Vec<u8>>,
}

/// `HandshakeMessage.ServerHello`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerHello {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub ephemeral: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub r#static: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub payload: Option<Vec<u8>>,
}

/// `HandshakeMessage.ClientFinish`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientFinish {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub r#static: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub payload: Option<Vec<u8>>,
}

/// `CertChain`: the server's certificates, the ServerHello payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertChain {
    #[prost(message, optional, tag = "1")]
    pub leaf: Option<NoiseCertificate>,
    #[prost(message, optional, tag = "2")]
    pub intermediate: Option<NoiseCertificate>,
}

/// `CertChain.NoiseCertificate`: serialized details and their XEdDSA signature.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NoiseCertificate {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub details: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature: Option<Vec<u8>>,
}

/// `CertChain.NoiseCertificate.Details`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertDetails {
    #[prost(uint32, optional, tag = "1")]
    pub serial: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub issuer_serial: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub key: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "4")]
    pub not_before: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub not_after: Option<u64>,
}

/// `ClientPayload`: who connects, sent encrypted in ClientFinish.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientPayload {
    #[prost(uint64, optional, tag = "1")]
    pub username: Option<u64>,
    #[prost(bool, optional, tag = "3")]
    pub passive: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub user_agent: Option<UserAgent>,
    #[prost(message, optional, tag = "6")]
    pub web_info: Option<WebInfo>,
    #[prost(string, optional, tag = "7")]
    pub push_name: Option<String>,
    #[prost(int32, optional, tag = "12")]
    pub connect_type: Option<i32>,
    #[prost(int32, optional, tag = "13")]
    pub connect_reason: Option<i32>,
    #[prost(uint32, optional, tag = "18")]
    pub device: Option<u32>,
    #[prost(message, optional, tag = "19")]
    pub device_pairing_data: Option<DevicePairingRegistrationData>,
    #[prost(int32, optional, tag = "24")]
    pub lc: Option<i32>,
    #[prost(bool, optional, tag = "33")]
    pub pull: Option<bool>,
    #[prost(bool, optional, tag = "41")]
    pub lid_db_migrated: Option<bool>,
}

/// `ClientPayload.ConnectType.WIFI_UNKNOWN`.
pub const CONNECT_TYPE_WIFI_UNKNOWN: i32 = 1;
/// `ClientPayload.ConnectReason.USER_ACTIVATED`.
pub const CONNECT_REASON_USER_ACTIVATED: i32 = 1;
/// `UserAgent.Platform.WEB`.
pub const PLATFORM_WEB: i32 = 14;
/// `UserAgent.ReleaseChannel.RELEASE`.
pub const RELEASE_CHANNEL_RELEASE: i32 = 0;
/// `WebInfo.WebSubPlatform.WEB_BROWSER`.
pub const WEB_SUB_PLATFORM_WEB_BROWSER: i32 = 0;
/// `DeviceProps.PlatformType.UNKNOWN`.
pub const PLATFORM_TYPE_UNKNOWN: i32 = 0;

/// `ClientPayload.UserAgent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserAgent {
    #[prost(int32, optional, tag = "1")]
    pub platform: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub app_version: Option<AppVersion>,
    #[prost(string, optional, tag = "3")]
    pub mcc: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub mnc: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub os_version: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub manufacturer: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub device: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub os_build_number: Option<String>,
    #[prost(int32, optional, tag = "10")]
    pub release_channel: Option<i32>,
    #[prost(string, optional, tag = "11")]
    pub locale_language_iso639_1: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub locale_country_iso3166_1_alpha2: Option<String>,
}

/// `AppVersion` (both `UserAgent.AppVersion` and `DeviceProps.AppVersion`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppVersion {
    #[prost(uint32, optional, tag = "1")]
    pub primary: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub secondary: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub tertiary: Option<u32>,
    #[prost(uint32, optional, tag = "4")]
    pub quaternary: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub quinary: Option<u32>,
}

/// `ClientPayload.WebInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WebInfo {
    #[prost(string, optional, tag = "1")]
    pub ref_token: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub version: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub web_sub_platform: Option<i32>,
}

/// `ClientPayload.DevicePairingRegistrationData`: the keys a new companion registers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DevicePairingRegistrationData {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub e_regid: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub e_keytype: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub e_ident: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub e_skey_id: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub e_skey_val: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub e_skey_sig: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub build_hash: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub device_props: Option<Vec<u8>>,
}

/// `DeviceProps`: how the companion shows on the phone.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceProps {
    #[prost(string, optional, tag = "1")]
    pub os: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub version: Option<AppVersion>,
    #[prost(int32, optional, tag = "3")]
    pub platform_type: Option<i32>,
    #[prost(bool, optional, tag = "4")]
    pub require_full_sync: Option<bool>,
}

/// `ADVEncryptionType.HOSTED`.
pub const ADV_ENCRYPTION_HOSTED: i32 = 1;

/// `ADVSignedDeviceIdentityHMAC`: the `<device-identity>` of `pair-success`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdvSignedDeviceIdentityHmac {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub details: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub hmac: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "3")]
    pub account_type: Option<i32>,
}

/// `ADVSignedDeviceIdentity`: the device identity signed by the phone (and by the companion).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdvSignedDeviceIdentity {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub details: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub account_signature_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub account_signature: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub device_signature: Option<Vec<u8>>,
}

/// `ADVDeviceIdentity`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdvDeviceIdentity {
    #[prost(uint32, optional, tag = "1")]
    pub raw_id: Option<u32>,
    #[prost(uint64, optional, tag = "2")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "3")]
    pub key_index: Option<u32>,
    #[prost(int32, optional, tag = "4")]
    pub account_type: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub device_type: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn decodes_the_real_certificate_chain() {
        // wa-protocol.md §11.1.1, certificate plaintext.
        let bytes = hex::decode("0a770a3308c90210031a205854d333d8e13975abd6597bbaddd49d6935ced25c93a44bd3ade508f2bec33020d08f87bf0628d0c99fc406124019cbee71b63bb8048af269f3aa7c13c62a1fd89ac4ef2509d1d78d68267f40393b49a9cc38db05e35a6c5bf3ba6172a4c5325f25f363338cf8f3535a4cd9520512760a32080310001a201c51a9ac303994c6c8d0b92ea1878a533476599cc599fbea35997d9aa90cce62208091aebe0628ffdeb7dc061240270f294648539fed4870e25054dd4e95983aba29189c2ba6c8eeda7055555f753740f5ec192ab64c26c26d6ade6d20b9f774aee37120a6b20395f53c66058507").expect("hex");
        let chain = CertChain::decode(&bytes[..]).expect("decodes");
        let leaf = CertDetails::decode(
            chain
                .leaf
                .and_then(|l| l.details)
                .unwrap_or_default()
                .as_slice(),
        )
        .expect("leaf");
        assert_eq!((leaf.serial, leaf.issuer_serial), (Some(329), Some(3)));
        assert_eq!(leaf.not_after, Some(1_753_736_400));
        let inter = CertDetails::decode(
            chain
                .intermediate
                .and_then(|l| l.details)
                .unwrap_or_default()
                .as_slice(),
        )
        .expect("intermediate");
        assert_eq!((inter.serial, inter.issuer_serial), (Some(3), Some(0)));
    }

    #[test]
    fn encodes_the_derived_adv_device_identity_byte_for_byte() {
        // wa-protocol.md §11.2.2
        let identity = AdvDeviceIdentity {
            raw_id: Some(1_234_567),
            timestamp: Some(1_700_000_000),
            key_index: Some(1),
            account_type: Some(0),
            device_type: Some(0),
        };
        assert_eq!(
            hex::encode(identity.encode_to_vec()),
            "0887ad4b1080e2cfaa06180120002800"
        );
    }

    #[test]
    fn encodes_the_derived_login_payload_byte_for_byte() {
        // wa-protocol.md §11.2.1 client_payload
        let payload = ClientPayload {
            username: Some(15_551_234_567),
            passive: Some(true),
            user_agent: Some(UserAgent {
                platform: Some(PLATFORM_WEB),
                app_version: Some(AppVersion {
                    primary: Some(2),
                    secondary: Some(3000),
                    tertiary: Some(1_035_194_821),
                    ..Default::default()
                }),
                mcc: Some("000".into()),
                mnc: Some("000".into()),
                os_version: Some("0.1".into()),
                device: Some("Desktop".into()),
                os_build_number: Some("0.1".into()),
                release_channel: Some(RELEASE_CHANNEL_RELEASE),
                locale_language_iso639_1: Some("en".into()),
                locale_country_iso3166_1_alpha2: Some("US".into()),
                ..Default::default()
            }),
            web_info: Some(WebInfo {
                web_sub_platform: Some(WEB_SUB_PLATFORM_WEB_BROWSER),
                ..Default::default()
            }),
            connect_type: Some(CONNECT_TYPE_WIFI_UNKNOWN),
            connect_reason: Some(CONNECT_REASON_USER_ACTIVATED),
            device: Some(2),
            pull: Some(true),
            ..Default::default()
        };
        assert_eq!(
            hex::encode(payload.encode_to_vec()),
            "088784b4f73918012a36080e120b080210b81718c5a3cfed031a0330303022033030302a03302e313a074465736b746f704203302e3150005a02656e620255533202200060016801900102880201"
        );
    }
}
