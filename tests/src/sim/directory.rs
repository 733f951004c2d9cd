//! Who has which devices and keys: the `usync` device/LID query and the `encrypt` prekey
//! bundle fetch (wa-messaging.md §6.2–§6.4).
//!
//! 1. `<iq xmlns="usync" type="get"><usync …><query>…</query><list><user jid/>…</list></usync>` →
//!    the same `<usync>` with a `<list>` holding, per user, `<devices>` (when `<devices/>` was
//!    queried: a `<device-list>` of the phone (device 0, a Signal peer: `peer`) and the paired
//!    companions with their `key-index`, and a `<key-index-list>` signed by the account key) and
//!    `<lid val/>` (when `<lid/>` was queried and the user was named by phone number). An unknown
//!    user gets an empty `<device-list/>` and no `<lid>`: Baileys throws on the per-user `<error>`
//!    form, and an empty list means "nobody to encrypt for" to every client.
//! 2. `<iq xmlns="encrypt" type="get"><key><user jid=<device>/>…</key></iq>` → `<list>` with one
//!    `<user jid>` per requested device: registration id, key type, identity, signed prekey and
//!    one one-time prekey, which is consumed (removed from the device's stock); without
//!    `<key>` when the stock is empty. Device 0 answers with the phone's keys. A device that
//!    does not exist gets `<user jid><error code="406" text="not-acceptable"/></user>`.

use prost::Message as _;
use worker::wa::binary::{Jid, Node};
use worker::wa::xeddsa;

use super::iq;
use super::registry::{jid_in, unix_now, Account, Addressing, Registry};
use super::relay::phash;

/// The account signature prefix of a key index list (the `06 0x` family of §6.6; no client we
/// read verifies it).
const KEY_INDEX_SIGNATURE_PREFIX: [u8; 2] = [6, 2];

/// `ADVKeyIndexList` (wa-messaging.md §6.2).
#[derive(Clone, PartialEq, prost::Message)]
struct AdvKeyIndexList {
    #[prost(uint32, optional, tag = "1")]
    raw_id: Option<u32>,
    #[prost(uint64, optional, tag = "2")]
    timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "3")]
    current_index: Option<u32>,
    #[prost(uint32, repeated, packed = "true", tag = "4")]
    valid_indexes: Vec<u32>,
}

/// `ADVSignedKeyIndexList`.
#[derive(Clone, PartialEq, prost::Message)]
struct AdvSignedKeyIndexList {
    #[prost(bytes = "vec", optional, tag = "1")]
    details: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    account_signature: Option<Vec<u8>>,
}

/// Step 1: the answer to a `usync` query.
pub(crate) fn usync(registry: &mut Registry, request: &Node) -> Node {
    registry.stats.usync_queries += 1;
    let Some(query) = request.child("usync") else {
        return iq::error(request, 400, "bad-request");
    };
    let protocols = query.child("query");
    let wants = |tag: &str| protocols.is_some_and(|q| q.child(tag).is_some());
    let (devices, lid) = (wants("devices"), wants("lid"));
    let now = unix_now();
    let users: Vec<Node> = query
        .child("list")
        .map(|l| l.children_by_tag("user").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|user| jid_in(user, "jid"))
        .map(|jid| {
            let account = registry.account_of(&jid);
            let mut children = Vec::new();
            if devices {
                children.push(devices_node(account, &jid, now));
            }
            if let (true, Some(account), Some(Addressing::Pn)) =
                (lid, account, Addressing::of(&jid))
            {
                children.push(Node::new("lid").jid_attr("val", account.jid(Addressing::Lid, 0)));
            }
            Node::new("user").jid_attr("jid", jid).children(children)
        })
        .collect();
    let mut answer = Node::new("usync");
    for key in ["sid", "mode", "context", "index", "last"] {
        if let Some(value) = query.attr_str(key) {
            answer = answer.attr(key, value.into_owned());
        }
    }
    iq::result(request).children(vec![
        answer.children(vec![Node::new("list").children(users)])
    ])
}

/// `<devices><device-list hash><device id key-index/>…</device-list><key-index-list ts>…`.
fn devices_node(account: Option<&Account>, asked: &Jid, now: u64) -> Node {
    let Some(account) = account else {
        return Node::new("devices").children(vec![Node::new("device-list")]);
    };
    let addressing = Addressing::of(asked).unwrap_or(Addressing::Pn);
    let companions: Vec<(u16, u32)> = account.companions().map(|d| (d.id, d.key_index)).collect();
    let mut list = vec![Node::new("device").attr("id", "0")];
    list.extend(companions.iter().map(|(id, key_index)| {
        Node::new("device")
            .attr("id", id.to_string())
            .attr("key-index", key_index.to_string())
    }));
    let hash = phash(
        account
            .signal_devices()
            .into_iter()
            .map(|id| account.jid(addressing, id)),
    );
    let mut children = vec![Node::new("device-list").attr("hash", hash).children(list)];
    if !companions.is_empty() {
        children.push(
            Node::new("key-index-list")
                .attr("ts", now.to_string())
                .bytes(signed_key_index_list(account, &companions, now)),
        );
    }
    Node::new("devices").children(children)
}

fn signed_key_index_list(account: &Account, companions: &[(u16, u32)], now: u64) -> Vec<u8> {
    let indexes: Vec<u32> = companions.iter().map(|(_, k)| *k).collect();
    let details = AdvKeyIndexList {
        raw_id: Some(account.raw_id),
        timestamp: Some(now),
        current_index: indexes.iter().max().copied(),
        valid_indexes: indexes,
    }
    .encode_to_vec();
    let signature = xeddsa::sign(
        account.identity_private(),
        &[&KEY_INDEX_SIGNATURE_PREFIX[..], &details].concat(),
    );
    AdvSignedKeyIndexList {
        details: Some(details),
        account_signature: Some(signature.to_vec()),
    }
    .encode_to_vec()
}

/// Step 2: the answer to a prekey bundle fetch.
pub(crate) fn bundles(registry: &mut Registry, request: &Node) -> Node {
    let wanted: Vec<Jid> = request
        .child("key")
        .map(|k| k.children_by_tag("user").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|user| jid_in(user, "jid"))
        .collect();
    let users = wanted
        .into_iter()
        .map(|jid| match bundle(registry, &jid) {
            Some(children) => Node::new("user").jid_attr("jid", jid).children(children),
            None => Node::new("user")
                .jid_attr("jid", jid)
                .children(vec![Node::new("error")
                    .attr("code", "406")
                    .attr("text", "not-acceptable")]),
        })
        .collect();
    iq::result(request).children(vec![Node::new("list").children(users)])
}

/// One device's published keys as the `encrypt` IQ hands them out (§6.4).
#[derive(Clone, Debug)]
pub(crate) struct Bundle {
    pub(crate) registration_id: [u8; 4],
    pub(crate) identity: [u8; 32],
    pub(crate) skey_id: [u8; 3],
    pub(crate) skey_value: [u8; 32],
    pub(crate) skey_signature: [u8; 64],
    pub(crate) prekey: Option<(u32, [u8; 32])>,
}

/// One device's bundle, consuming its lowest one-time prekey: a companion's uploaded keys, or
/// the phone's (device 0, `peer`). Counts the fetch.
pub(crate) fn take_bundle(registry: &mut Registry, jid: &Jid) -> Option<Bundle> {
    let phone = registry.phone_of(jid)?.to_owned();
    let bundle = if jid.device == 0 {
        registry.peer_mut(&phone)?.take_bundle()
    } else {
        if !registry.account(&phone)?.has_companion(jid.device) {
            return None;
        }
        let device = registry.account_mut(&phone)?.devices.get_mut(&jid.device)?;
        let keys = &device.keys;
        Bundle {
            registration_id: keys.registration_id,
            identity: keys.identity,
            skey_id: keys.skey_id,
            skey_value: keys.skey_value,
            skey_signature: keys.skey_signature,
            prekey: device.prekeys.pop_first(),
        }
    };
    registry.stats.bundle_fetches += 1;
    if bundle.prekey.is_some() {
        registry.stats.prekeys_consumed += 1;
    }
    Some(bundle)
}

/// One device's bundle as `<user>` children.
fn bundle(registry: &mut Registry, jid: &Jid) -> Option<Vec<Node>> {
    let keys = take_bundle(registry, jid)?;
    let mut children = vec![
        Node::new("registration").bytes(keys.registration_id.to_vec()),
        Node::new("type").bytes(vec![5]),
        Node::new("identity").bytes(keys.identity.to_vec()),
        Node::new("skey").children(vec![
            Node::new("id").bytes(keys.skey_id.to_vec()),
            Node::new("value").bytes(keys.skey_value.to_vec()),
            Node::new("signature").bytes(keys.skey_signature.to_vec()),
        ]),
    ];
    if let Some((id, value)) = keys.prekey {
        children.push(Node::new("key").children(vec![
            Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
            Node::new("value").bytes(value.to_vec()),
        ]));
    }
    Some(children)
}
