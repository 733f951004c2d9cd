//! After `<success>`: go active, and keep the server stocked with Signal prekeys
//! (wa-protocol.md §8.1, §8.2; whatsmeow's batch sizes).

use tracing::{info, warn};

use super::actions::{Actions, Persist, Report};
use super::keepalive::Keepalive;
use super::request::{Purpose, Requests};
use super::stage::{Ctx, Stage};
use crate::store::creds::{Creds, DJB_KEY_TYPE};
use crate::store::signal::PreKeyPublic;
use crate::wa::binary::Node;

/// Below this many prekeys on the server, upload more.
const MIN_SERVER_PREKEYS: u32 = 5;
/// The first upload of a device.
const INITIAL_UPLOAD: u32 = 812;
/// Later uploads.
const LATER_UPLOAD: u32 = 50;

/// `<iq xmlns=passive type=set><active/></iq>`: deliver what is queued for us.
pub(crate) fn active_iq(requests: &mut Requests) -> Node {
    requests.iq(Purpose::Active, "passive", "set", vec![Node::new("active")])
}

/// `<iq xmlns=encrypt type=get><count/></iq>`.
pub(crate) fn prekey_count_iq(requests: &mut Requests) -> Node {
    requests.iq(
        Purpose::PrekeyCount,
        "encrypt",
        "get",
        vec![Node::new("count")],
    )
}

/// How many prekeys to upload after the server answered the count IQ with `result`;
/// `stocked` says whether we hold prekeys from an earlier upload.
pub(crate) fn prekeys_needed(result: &Node, stocked: bool) -> Option<u32> {
    let count = result
        .child("count")
        .and_then(|c| c.attr_str("value"))
        .and_then(|v| v.parse::<u32>().ok())?;
    let batch = if !stocked {
        INITIAL_UPLOAD
    } else {
        LATER_UPLOAD
    };
    (count < MIN_SERVER_PREKEYS).then_some(batch)
}

/// The upload IQ for `keys`, with the identity and the signed prekey.
pub(crate) fn upload_iq(requests: &mut Requests, creds: &Creds, keys: &[PreKeyPublic]) -> Node {
    let id3 = |id: u32| id.to_be_bytes()[1..].to_vec();
    let spk = &creds.signed_prekey;
    let list = keys
        .iter()
        .map(|k| {
            Node::new("key").children(vec![
                Node::new("id").bytes(id3(k.id)),
                Node::new("value").bytes(k.public.to_vec()),
            ])
        })
        .collect();
    requests.iq(
        Purpose::PrekeyUpload,
        "encrypt",
        "set",
        vec![
            Node::new("registration").bytes(creds.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![DJB_KEY_TYPE]),
            Node::new("identity").bytes(creds.identity_key.public.0.to_vec()),
            Node::new("list").children(list),
            Node::new("skey").children(vec![
                Node::new("id").bytes(id3(spk.key_id)),
                Node::new("value").bytes(spk.key_pair.public.0.to_vec()),
                Node::new("signature").bytes(spk.signature.0.to_vec()),
            ]),
        ],
    )
}

/// `<success>`: logged in. Go active, ask for the prekey count, start the keepalive, and learn
/// our LID if the server names one.
pub(crate) fn on_success(ctx: &mut Ctx<'_>, node: &Node) -> Actions {
    if !matches!(ctx.stage, Stage::ExpectSuccess) {
        warn!("success outside a login ignored");
        return Actions::none();
    }
    info!("connected");
    *ctx.stage = Stage::Online(Keepalive::new(ctx.now));
    let mut actions = Actions::send(active_iq(ctx.requests))
        .and_send(prekey_count_iq(ctx.requests))
        .and_report(Report::Connected);
    if let Some(lid) = node.attr_jid("lid").map(ToString::to_string) {
        let known = ctx
            .creds
            .and_then(|c| c.me.as_ref())
            .and_then(|m| m.lid.as_deref());
        if known != Some(lid.as_str()) {
            actions = actions.and_persist(Persist::OwnLid(lid));
        }
    }
    actions
}

/// The answer to the prekey count, or the server's `<notification type="encrypt"><count
/// value=N/>`: upload a batch when the server runs low (fewer than 5: whatsmeow and Baileys;
/// whatsapp-rust uploads on every such notification). The new keys are durable before the upload
/// goes out (the upload follows the persist step).
pub(crate) fn on_prekey_count(ctx: &mut Ctx<'_>, result: &Node) -> Actions {
    let stocked = match ctx.keys.has_prekeys() {
        Ok(stocked) => stocked,
        Err(e) => {
            warn!(error = %e, "cannot read the prekey store; no upload");
            return Actions::none();
        }
    };
    match prekeys_needed(result, stocked) {
        Some(count) => Actions::none().and_persist(Persist::UploadPrekeys(count)),
        None => Actions::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_812_first_then_50_when_the_server_runs_low() {
        let answer = |n: &str| Node::new("iq").children(vec![Node::new("count").attr("value", n)]);
        assert_eq!(prekeys_needed(&answer("0"), false), Some(812));
        assert_eq!(prekeys_needed(&answer("30"), false), None);
        assert_eq!(prekeys_needed(&answer("4"), true), Some(50));
        assert_eq!(prekeys_needed(&Node::new("iq"), true), None);
    }

    #[test]
    fn the_upload_carries_ids_keys_and_the_signed_prekey() {
        let creds = Creds::generate();
        let keys = [1, 2].map(|id| PreKeyPublic {
            id,
            public: [id as u8; 32],
        });
        let iq = upload_iq(&mut Requests::new(), &creds, &keys);
        assert_eq!(iq.attr_str("xmlns").as_deref(), Some("encrypt"));
        let list = iq.child("list").expect("list");
        let ids: Vec<_> = list
            .children_slice()
            .iter()
            .filter_map(|k| k.child("id")?.content_bytes())
            .collect();
        assert_eq!(ids, [&[0u8, 0, 1][..], &[0, 0, 2][..]]);
        let skey = iq.child("skey").expect("skey");
        assert_eq!(
            skey.child("signature")
                .and_then(Node::content_bytes)
                .map(<[u8]>::len),
            Some(64)
        );
    }
}
