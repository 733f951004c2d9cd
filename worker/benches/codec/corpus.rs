//! The stanzas a real session sees, as frame plaintexts: what the server sends a linked companion
//! (login, IQ results, messages of every encryption type, receipts, acks, notifications, `<ib>`,
//! calls, group metadata, app-state sync) and what the companion sends back. Shapes follow
//! wa-protocol.md §8–§9 and wa-messaging.md §6–§10; ciphertexts and keys are seeded random bytes
//! of the sizes real ones have, so the corpus is the same at every run.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use worker::wa::binary::{self, Jid, Node};

/// A frame of the corpus.
pub struct Entry {
    /// A short name, unique in the corpus (no spaces: the corpus file is space-separated).
    pub name: &'static str,
    /// `small`, `medium` or `large`: see [`size_set`].
    pub set: &'static str,
    /// Its frame plaintext: the flags byte, then the node.
    pub frame: Vec<u8>,
}

/// The size classes results are reported in: under 256 bytes, under 4 KiB, the rest.
pub fn size_set(frame_len: usize) -> &'static str {
    match frame_len {
        0..256 => "small",
        256..4096 => "medium",
        _ => "large",
    }
}

const T: &str = "1752021890";
const GROUP: &str = "120363000000000001";
const OWN_PN: &str = "15550001111";
const OWN_LID: &str = "100000000000001";

/// The real `<success>` of wa-protocol.md §11.1.2 (node bytes, no flags byte).
const REAL_SUCCESS: &str = "f80f4c1aff0517520218905cee043dfc0366726376f7012aff88100000000000001f4becb43cff051752020041ece6fc2c643559623557784c2b6b35554b5148564936627546524751456a30475a413565767a3862365632786b64773d";

fn server() -> Jid {
    Jid::server_jid()
}

fn pn(user: &str) -> Jid {
    Jid::new(user, "s.whatsapp.net")
}

fn lid(user: &str, device: u16) -> Jid {
    Jid::device(user, "lid", device)
}

fn group() -> Jid {
    Jid::new(GROUP, "g.us")
}

/// The n-th contact: a phone number and a LID.
fn contact(n: usize) -> (String, String) {
    (
        format!("1555{:07}", 2000 + n),
        format!("1000000{:08}", 2000 + n),
    )
}

/// Builds the corpus; every frame round-trips through the worker's codec byte for byte.
pub fn build() -> Vec<Entry> {
    let mut b = Builder {
        rng: StdRng::seed_from_u64(0x5EED_C0DE),
        ids: 0,
        entries: Vec::new(),
    };
    b.incoming_control();
    b.incoming_iq_results();
    b.incoming_messages();
    b.incoming_receipts_and_acks();
    b.incoming_notifications();
    b.incoming_calls_and_presence();
    b.large_payloads();
    b.outgoing();
    b.entries
}

struct Builder {
    rng: StdRng,
    ids: u32,
    entries: Vec<Entry>,
}

impl Builder {
    fn push(&mut self, name: &'static str, node: Node) {
        let frame = binary::encode(&node);
        self.entries.push(Entry {
            name,
            set: size_set(frame.len()),
            frame,
        });
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// A message id as phones and WA Web make them: `3EB0` or `3A` and upper-case hex.
    fn msg_id(&mut self) -> String {
        let prefix = if self.rng.gen_bool(0.5) { "3EB0" } else { "3A" };
        let tail: String = (0..16)
            .map(|_| char::from(b"0123456789ABCDEF"[self.rng.gen_range(0..16)]))
            .collect();
        format!("{prefix}{tail}")
    }

    /// An IQ id as the server echoes the client's (`<u16>.<u16>-<n>`).
    fn iq_id(&mut self) -> String {
        self.ids += 1;
        format!("51234.6012-{}", self.ids)
    }

    fn enc(&mut self, kind: &str, len: usize) -> Node {
        Node::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .bytes(self.bytes(len))
    }

    fn result(&mut self, children: Vec<Node>) -> Node {
        let id = self.iq_id();
        Node::new("iq")
            .jid_attr("from", server())
            .attr("id", id)
            .attr("type", "result")
            .children(children)
    }

    fn key_index_list(&mut self) -> Node {
        Node::new("key-index-list")
            .attr("ts", T)
            .bytes(self.bytes(118))
    }

    /// A prekey bundle as the `encrypt` IQ returns it (wa-messaging.md §6.4).
    fn bundle(&mut self, jid: Jid, companion: bool) -> Node {
        let mut children = vec![
            Node::new("registration").bytes(self.bytes(4)),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(self.bytes(32)),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(self.bytes(32)),
                Node::new("signature").bytes(self.bytes(64)),
            ]),
            Node::new("key").children(vec![
                Node::new("id").bytes(self.bytes(3)),
                Node::new("value").bytes(self.bytes(32)),
            ]),
        ];
        if companion {
            children.push(Node::new("device-identity").bytes(self.bytes(166)));
        }
        Node::new("user").jid_attr("jid", jid).children(children)
    }

    fn incoming_control(&mut self) {
        let success = binary::decode_node(&hex::decode(REAL_SUCCESS).expect("hex"))
            .expect("the real success decodes");
        self.push("success", success);
        self.push(
            "ib_offline_preview",
            Node::new("ib").children(vec![Node::new("offline_preview")
                .attr("count", "23")
                .attr("message", "14")
                .attr("notification", "5")
                .attr("receipt", "4")
                .attr("appdata", "0")]),
        );
        self.push(
            "ib_offline",
            Node::new("ib").children(vec![Node::new("offline").attr("count", "23")]),
        );
        let routing = self.bytes(14);
        self.push(
            "ib_edge_routing",
            Node::new("ib")
                .children(vec![Node::new("edge_routing")
                    .children(vec![Node::new("routing_info").bytes(routing)])]),
        );
        self.push(
            "ib_dirty",
            Node::new("ib").children(vec![Node::new("dirty")
                .attr("type", "account_sync")
                .attr("timestamp", T)]),
        );
        self.push(
            "stream_error_515",
            Node::new("stream:error").attr("code", "515"),
        );
        self.push(
            "stream_error_replaced",
            Node::new("stream:error")
                .children(vec![Node::new("conflict").attr("type", "replaced")]),
        );
        self.push("xmlstreamend", Node::new("xmlstreamend"));
    }

    fn incoming_iq_results(&mut self) {
        let id = self.iq_id();
        self.push(
            "iq_ping_result",
            Node::new("iq")
                .jid_attr("from", server())
                .attr("id", id)
                .attr("type", "result")
                .attr("t", T),
        );
        let count = self.result(vec![Node::new("count").attr("value", "812")]);
        self.push("iq_prekey_count", count);
        let digest_children = vec![
            Node::new("registration").bytes(self.bytes(4)),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(self.bytes(32)),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(self.bytes(32)),
                Node::new("signature").bytes(self.bytes(64)),
            ]),
            Node::new("list").children(
                (1..=30u32)
                    .map(|i| Node::new("id").bytes(i.to_be_bytes()[1..].to_vec()))
                    .collect(),
            ),
            Node::new("hash").bytes(self.bytes(20)),
        ];
        let digest = self.result(vec![Node::new("digest").children(digest_children)]);
        self.push("iq_digest", digest);
        let props: Vec<Node> = (0..60)
            .map(|i| {
                Node::new("prop")
                    .attr("config_code", (1000 + i * 37).to_string())
                    .attr("config_value", if i % 3 == 0 { "true" } else { "1" })
            })
            .collect();
        let props = self.result(vec![Node::new("props")
            .attr("protocol", "1")
            .attr("hash", "9c0e6b51")
            .attr("refresh", "86400")
            .children(props)]);
        self.push("iq_ab_props", props);

        // usync for one contact (the send path's device query) and for a contact list.
        let one = self.usync_user(0, 3);
        let usync_one = self.usync_result(vec![one]);
        self.push("iq_usync_devices_1", usync_one);
        let users: Vec<Node> = (1..=20).map(|n| self.usync_user(n, 1 + n % 4)).collect();
        let usync_many = self.usync_result(users);
        self.push("iq_usync_devices_20", usync_many);

        let mut bundles = Vec::new();
        for n in 0..5 {
            let (_, l) = contact(n);
            let device = if n % 2 == 0 { 0 } else { 3 + n as u16 };
            bundles.push(self.bundle(lid(&l, device), device != 0));
        }
        let encrypt = self.result(vec![Node::new("list").children(bundles)]);
        self.push("iq_encrypt_bundles_5", encrypt);
    }

    fn usync_user(&mut self, n: usize, devices: usize) -> Node {
        let (p, l) = contact(n);
        let mut list = vec![Node::new("device").attr("id", "0")];
        for d in 1..devices {
            list.push(
                Node::new("device")
                    .attr("id", (d * 7).to_string())
                    .attr("key-index", d.to_string()),
            );
        }
        let hash = format!("2:{}", hex::encode_upper(self.bytes(6)));
        let mut devices_children = vec![Node::new("device-list").attr("hash", hash).children(list)];
        if devices > 1 {
            devices_children.push(self.key_index_list());
        }
        Node::new("user").jid_attr("jid", pn(&p)).children(vec![
            Node::new("devices").children(devices_children),
            Node::new("lid").jid_attr("val", lid(&l, 0)),
        ])
    }

    fn usync_result(&mut self, users: Vec<Node>) -> Node {
        let sid = self.msg_id();
        self.result(vec![Node::new("usync")
            .attr("sid", sid)
            .attr("mode", "query")
            .attr("last", "true")
            .attr("index", "0")
            .attr("context", "message")
            .children(vec![Node::new("list").children(users)])])
    }

    fn message(&mut self, from: Jid, kind: &str, extra: &[(&str, Jid)]) -> Node {
        let id = self.msg_id();
        let mut node = Node::new("message")
            .jid_attr("from", from)
            .attr("id", id)
            .attr("t", T)
            .attr("type", kind)
            .attr("notify", "Ana Souza");
        for (key, jid) in extra {
            node = node.jid_attr(*key, jid.clone());
        }
        node
    }

    fn incoming_messages(&mut self) {
        let (p, l) = contact(1);
        let pkmsg = self.enc("pkmsg", 341);
        let m = self
            .message(lid(&l, 0), "text", &[("sender_pn", pn(&p))])
            .children(vec![pkmsg]);
        self.push("message_pkmsg", m);

        let msg = self.enc("msg", 122);
        let m = self
            .message(lid(&l, 4), "text", &[("sender_pn", pn(&p))])
            .children(vec![msg]);
        self.push("message_msg", m);

        // An image: the Message carries a JPEG thumbnail of a few KB.
        let media = self.enc("msg", 4_730).attr("mediatype", "image");
        let m = self
            .message(lid(&l, 0), "media", &[("sender_pn", pn(&p))])
            .children(vec![media]);
        self.push("message_image", m);

        let (gp, gl) = contact(2);
        let skdm = self.enc("pkmsg", 402);
        let skmsg = self.enc("skmsg", 154);
        let m = self
            .message(group(), "text", &[("participant", lid(&gl, 2))])
            .attr("addressing_mode", "lid")
            .jid_attr("participant_pn", pn(&gp))
            .children(vec![skdm, skmsg]);
        self.push("message_group_skdm_skmsg", m);

        let skmsg = self.enc("skmsg", 138);
        let m = self
            .message(group(), "text", &[("participant", lid(&gl, 2))])
            .attr("addressing_mode", "lid")
            .jid_attr("participant_pn", pn(&gp))
            .children(vec![skmsg]);
        self.push("message_group_skmsg", m);

        let dsm = self.enc("msg", 186);
        let m = self
            .message(lid(OWN_LID, 3), "text", &[("recipient", lid(&l, 0))])
            .children(vec![dsm]);
        self.push("message_self_fanout", m);

        // Own-device protocol messages: an app-state key share and a history-sync notification.
        let keys = self.enc("msg", 618);
        let m = self
            .message(lid(OWN_LID, 0), "text", &[])
            .attr("category", "peer")
            .children(vec![keys]);
        self.push("message_peer_app_state_keys", m);
        let history = self.enc("pkmsg", 1_042);
        let m = self
            .message(pn(OWN_PN), "text", &[])
            .attr("category", "peer")
            .attr("offline", "1")
            .children(vec![history]);
        self.push("message_peer_history_sync", m);

        let plaintext = self.bytes(64);
        let m = self
            .message(Jid::new("120363111111111111", "newsletter"), "text", &[])
            .attr("server_id", "1043")
            .children(vec![Node::new("plaintext").bytes(plaintext)]);
        self.push("message_newsletter", m);

        let m = self
            .message(lid(&l, 0), "media", &[])
            .attr("offline", "1")
            .children(vec![Node::new("unavailable").attr("type", "view_once")]);
        self.push("message_unavailable", m);
    }

    fn incoming_receipts_and_acks(&mut self) {
        let (_, l) = contact(1);
        let id = self.msg_id();
        self.push(
            "receipt_delivery",
            Node::new("receipt")
                .jid_attr("from", lid(&l, 4))
                .attr("id", id)
                .attr("t", T),
        );
        let id = self.msg_id();
        let items = (0..9)
            .map(|_| Node::new("item").attr("id", self.msg_id()))
            .collect();
        self.push(
            "receipt_read_list",
            Node::new("receipt")
                .jid_attr("from", lid(&l, 0))
                .attr("id", id)
                .attr("type", "read")
                .attr("t", T)
                .children(vec![Node::new("list").children(items)]),
        );
        let id = self.msg_id();
        let users = (0..30)
            .map(|n| {
                Node::new("user")
                    .jid_attr("jid", lid(&contact(n).1, (n % 3) as u16))
                    .attr("t", T)
            })
            .collect();
        self.push(
            "receipt_group_aggregated",
            Node::new("receipt")
                .jid_attr("from", group())
                .attr("type", "read")
                .children(vec![Node::new("participants")
                    .attr("key", id)
                    .children(users)]),
        );
        let id = self.msg_id();
        let keys = vec![
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(self.bytes(32)),
            Node::new("key").children(vec![
                Node::new("id").bytes(self.bytes(3)),
                Node::new("value").bytes(self.bytes(32)),
            ]),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(self.bytes(32)),
                Node::new("signature").bytes(self.bytes(64)),
            ]),
            Node::new("device-identity").bytes(self.bytes(166)),
        ];
        let registration = self.bytes(4);
        self.push(
            "receipt_retry_keys",
            Node::new("receipt")
                .jid_attr("from", lid(&l, 4))
                .attr("id", id.clone())
                .attr("type", "retry")
                .attr("t", T)
                .children(vec![
                    Node::new("retry")
                        .attr("count", "2")
                        .attr("id", id)
                        .attr("t", T)
                        .attr("v", "1"),
                    Node::new("registration").bytes(registration),
                    Node::new("keys").children(keys),
                ]),
        );
        let id = self.msg_id();
        self.push(
            "receipt_sender",
            Node::new("receipt")
                .jid_attr("from", lid(OWN_LID, 3))
                .jid_attr("recipient", lid(&l, 0))
                .attr("id", id)
                .attr("type", "sender")
                .attr("t", T),
        );
        let id = self.msg_id();
        self.push(
            "ack_message",
            Node::new("ack")
                .attr("class", "message")
                .attr("id", id)
                .jid_attr("from", lid(&l, 0))
                .attr("t", T)
                .attr("phash", "2:Qm9hdA=="),
        );
        let id = self.msg_id();
        self.push(
            "ack_receipt",
            Node::new("ack")
                .attr("class", "receipt")
                .attr("id", id)
                .jid_attr("from", lid(&l, 4)),
        );
    }

    fn notification(&mut self, kind: &str, from: Jid, children: Vec<Node>) -> Node {
        let id = format!("{}", 1_900_000_000u64 + u64::from(self.rng.gen::<u16>()));
        Node::new("notification")
            .jid_attr("from", from)
            .attr("type", kind)
            .attr("id", id)
            .attr("t", T)
            .children(children)
    }

    fn incoming_notifications(&mut self) {
        let (p, l) = contact(3);
        let n = self.notification(
            "encrypt",
            server(),
            vec![Node::new("count").attr("value", "4")],
        );
        self.push("notification_encrypt_count", n);
        let n = self
            .notification("encrypt", pn(&p), vec![Node::new("identity")])
            .jid_attr("lid", lid(&l, 0));
        self.push("notification_identity", n);
        let list = self.key_index_list();
        let n = self
            .notification(
                "devices",
                pn(&p),
                vec![
                    Node::new("add")
                        .attr("device_hash", "2:A1B2C3D4")
                        .children(vec![Node::new("device")
                            .jid_attr("jid", Jid::device(p.clone(), "s.whatsapp.net", 9))
                            .jid_attr("lid", lid(&l, 9))
                            .attr("key-index", "4")]),
                    list,
                ],
            )
            .jid_attr("lid", lid(&l, 0));
        self.push("notification_devices_add", n);
        let added = (4..7)
            .map(|n| {
                let (p, l) = contact(n);
                Node::new("participant")
                    .jid_attr("jid", lid(&l, 0))
                    .jid_attr("phone_number", pn(&p))
            })
            .collect();
        let n = self
            .notification(
                "w:gp2",
                group(),
                vec![Node::new("add").attr("reason", "invite").children(added)],
            )
            .jid_attr("participant", lid(&l, 0))
            .jid_attr("participant_pn", pn(&p))
            .attr("notify", "Ana Souza");
        self.push("notification_group_add", n);
        let token = self.bytes(26);
        let n = self.notification(
            "privacy_token",
            lid(&l, 0),
            vec![Node::new("tokens").children(vec![Node::new("token")
                .jid_attr("jid", lid(OWN_LID, 0))
                .attr("t", T)
                .attr("type", "trusted_contact")
                .bytes(token)])],
        );
        self.push("notification_privacy_token", n);
        let collections = ["regular_high", "regular_low", "critical_unblock_low"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                Node::new("collection")
                    .attr("name", name)
                    .attr("version", (1200 + i * 5).to_string())
            })
            .collect();
        let n = self.notification("server_sync", pn(OWN_PN), collections);
        self.push("notification_server_sync", n);
        let n = self.notification(
            "picture",
            pn(&p),
            vec![Node::new("set")
                .jid_attr("jid", pn(&p))
                .attr("id", "1752021777")
                .jid_attr("author", pn(&p))],
        );
        self.push("notification_picture", n);
    }

    fn incoming_calls_and_presence(&mut self) {
        let (p, _) = contact(5);
        let call_id = hex::encode_upper(self.bytes(16));
        let capability = self.bytes(6);
        let enc = self.enc("pkmsg", 246);
        let id = self.msg_id();
        self.push(
            "call_offer",
            Node::new("call")
                .jid_attr("from", pn(&p))
                .attr("id", id)
                .attr("t", T)
                .children(vec![Node::new("offer")
                    .attr("call-id", call_id.clone())
                    .jid_attr("call-creator", Jid::device(p.clone(), "s.whatsapp.net", 0))
                    .children(vec![
                        Node::new("audio").attr("enc", "opus").attr("rate", "16000"),
                        Node::new("audio").attr("enc", "opus").attr("rate", "8000"),
                        Node::new("video")
                            .attr("enc", "vp8")
                            .attr("dec", "vp8")
                            .attr("orientation", "0")
                            .attr("screen_width", "1920")
                            .attr("screen_height", "1080")
                            .attr("device_orientation", "0"),
                        Node::new("net").attr("medium", "3"),
                        Node::new("capability").attr("ver", "1").bytes(capability),
                        Node::new("encopt").attr("keygen", "2"),
                        enc,
                    ])]),
        );
        let id = self.msg_id();
        self.push(
            "call_terminate",
            Node::new("call")
                .jid_attr("from", pn(&p))
                .attr("id", id)
                .attr("t", T)
                .children(vec![Node::new("terminate")
                    .attr("call-id", call_id)
                    .jid_attr("call-creator", pn(&p))
                    .attr("reason", "timeout")]),
        );
        self.push(
            "presence",
            Node::new("presence")
                .jid_attr("from", pn(&p))
                .attr("type", "unavailable")
                .attr("last", "1752021000"),
        );
        self.push(
            "chatstate",
            Node::new("chatstate")
                .jid_attr("from", pn(&p))
                .children(vec![Node::new("composing")]),
        );
    }

    fn group_metadata(&mut self, members: usize) -> Node {
        let participants = (0..members)
            .map(|n| {
                let (p, l) = contact(n);
                let node = Node::new("participant")
                    .jid_attr("jid", lid(&l, 0))
                    .jid_attr("phone_number", pn(&p));
                match n {
                    0 => node.attr("type", "superadmin"),
                    1..=3 => node.attr("type", "admin"),
                    _ => node,
                }
            })
            .collect::<Vec<_>>();
        let (_, creator) = contact(0);
        let mut children = participants;
        children.push(
            Node::new("description")
                .attr("id", self.msg_id())
                .attr("t", T)
                .jid_attr("participant", lid(&creator, 0))
                .children(vec![Node::new("body").text(
                    "Neighbourhood group: rubbish days, lost cats, the Saturday market and \
                     nothing else please. Read the pinned rules before posting.",
                )]),
        );
        children.push(Node::new("ephemeral").attr("expiration", "604800"));
        children.push(Node::new("member_add_mode").text("admin_add"));
        let id = self.iq_id();
        Node::new("iq")
            .jid_attr("from", group())
            .attr("id", id)
            .attr("type", "result")
            .children(vec![Node::new("group")
                .attr("id", GROUP)
                .attr("subject", "Rua das Flores 12")
                .attr("s_t", T)
                .jid_attr("s_o", lid(&creator, 0))
                .attr("creation", "1699999999")
                .jid_attr("creator", lid(&creator, 0))
                .attr("addressing_mode", "lid")
                .attr("size", members.to_string())
                .attr("p_v_id", "1752021890123456")
                .attr("a_v_id", "1752021890654321")
                .children(children)])
    }

    fn large_payloads(&mut self) {
        let g = self.group_metadata(256);
        self.push("iq_group_metadata_256", g);
        let g = self.group_metadata(1024);
        self.push("iq_group_metadata_1024", g);

        // An app-state sync answer after pairing: patches inline, one snapshot reference.
        let mut collections = Vec::new();
        for (i, name) in ["regular_high", "regular_low", "regular", "critical_block"]
            .into_iter()
            .enumerate()
        {
            let patches = (0..2 + i)
                .map(|_| {
                    let len = 1_500 + self.rng.gen_range(0..2_500);
                    Node::new("patch").bytes(self.bytes(len))
                })
                .collect();
            let mut children = vec![Node::new("patches").children(patches)];
            if i == 3 {
                children.push(Node::new("snapshot").bytes(self.bytes(180)));
            }
            collections.push(
                Node::new("collection")
                    .attr("name", name)
                    .attr("version", (40 + i * 11).to_string())
                    .children(children),
            );
        }
        let sync = self.result(vec![Node::new("sync").children(collections)]);
        self.push("iq_app_state_sync", sync);

        // A history-sync blob pushed inline to a fresh companion (the largest `<enc>` it sees).
        let history = self.enc("msg", 61_440);
        let m = self
            .message(lid(OWN_LID, 0), "text", &[])
            .attr("category", "peer")
            .children(vec![history]);
        self.push("message_peer_history_inline", m);
    }

    fn outgoing(&mut self) {
        let to_server = |node: Node| node.jid_attr("to", server());
        let id = self.iq_id();
        self.push(
            "out_ping",
            to_server(
                Node::new("iq")
                    .attr("id", id)
                    .attr("xmlns", "w:p")
                    .attr("type", "get"),
            ),
        );
        let id = self.iq_id();
        self.push(
            "out_passive_active",
            to_server(
                Node::new("iq")
                    .attr("id", id)
                    .attr("xmlns", "passive")
                    .attr("type", "set")
                    .children(vec![Node::new("active")]),
            ),
        );
        self.push(
            "out_unified_session",
            Node::new("ib").children(vec![Node::new("unified_session").attr("id", "387459123")]),
        );
        self.push(
            "out_presence",
            Node::new("presence")
                .attr("name", "Loja Centro")
                .attr("type", "available"),
        );
        let users = (0..20)
            .map(|n| Node::new("user").jid_attr("jid", pn(&contact(n).0)))
            .collect();
        let id = self.iq_id();
        let sid = self.msg_id();
        self.push(
            "out_usync_query",
            to_server(
                Node::new("iq")
                    .attr("id", id)
                    .attr("xmlns", "usync")
                    .attr("type", "get")
                    .children(vec![Node::new("usync")
                        .attr("sid", sid)
                        .attr("mode", "query")
                        .attr("last", "true")
                        .attr("index", "0")
                        .attr("context", "message")
                        .children(vec![
                            Node::new("query")
                                .children(vec![Node::new("devices").attr("version", "2")]),
                            Node::new("list").children(users),
                        ])]),
            ),
        );
        let users = (0..5)
            .map(|n| {
                Node::new("user")
                    .jid_attr("jid", lid(&contact(n).1, 3 * (n as u16 % 2)))
                    .attr("reason", "identity")
            })
            .collect();
        let id = self.iq_id();
        self.push(
            "out_encrypt_get",
            to_server(
                Node::new("iq")
                    .attr("id", id)
                    .attr("xmlns", "encrypt")
                    .attr("type", "get")
                    .children(vec![Node::new("key").children(users)]),
            ),
        );

        // A text to a contact with three devices, copied to our own two other devices.
        let (_, l) = contact(1);
        let mut tos = Vec::new();
        for (jid, kind, len) in [
            (lid(&l, 0), "pkmsg", 341),
            (lid(&l, 4), "msg", 122),
            (lid(&l, 11), "msg", 122),
            (lid(OWN_LID, 0), "msg", 186),
            (lid(OWN_LID, 3), "msg", 186),
        ] {
            let enc = self.enc(kind, len);
            tos.push(Node::new("to").jid_attr("jid", jid).children(vec![enc]));
        }
        let identity = self.bytes(166);
        let id = self.msg_id();
        self.push(
            "out_message_fanout",
            Node::new("message")
                .attr("id", id)
                .attr("type", "text")
                .jid_attr("to", lid(&l, 0))
                .children(vec![
                    Node::new("participants").children(tos),
                    Node::new("device-identity").bytes(identity),
                ]),
        );

        // A first send to a group of 20: the SKDM to every member device, then the skmsg.
        let mut tos = Vec::new();
        for n in 0..20 {
            let kind = if n % 4 == 0 { "pkmsg" } else { "msg" };
            let enc = self.enc(kind, if kind == "pkmsg" { 402 } else { 218 });
            tos.push(
                Node::new("to")
                    .jid_attr("jid", lid(&contact(n).1, (n % 3) as u16))
                    .children(vec![enc]),
            );
        }
        let identity = self.bytes(166);
        let skmsg = self.enc("skmsg", 138);
        let id = self.msg_id();
        self.push(
            "out_group_message_skdm",
            Node::new("message")
                .attr("id", id)
                .attr("type", "text")
                .jid_attr("to", group())
                .attr("addressing_mode", "lid")
                .attr("phash", "2:Zm9vYmFy")
                .children(vec![
                    Node::new("participants").children(tos),
                    Node::new("device-identity").bytes(identity),
                    skmsg,
                ]),
        );
        let (_, l) = contact(2);
        let id = self.msg_id();
        self.push(
            "out_receipt",
            Node::new("receipt")
                .jid_attr("to", lid(&l, 2))
                .attr("id", id)
                .attr("type", "inactive"),
        );
        let id = self.msg_id();
        self.push(
            "out_ack_notification",
            Node::new("ack")
                .attr("class", "notification")
                .attr("id", id)
                .jid_attr("to", server())
                .attr("type", "encrypt"),
        );

        // The first login's prekey upload: 812 one-time prekeys (wa-protocol.md §8.2).
        let keys = (1..=812u32)
            .map(|i| {
                Node::new("key").children(vec![
                    Node::new("id").bytes(i.to_be_bytes()[1..].to_vec()),
                    Node::new("value").bytes(self.bytes(32)),
                ])
            })
            .collect();
        let id = self.iq_id();
        let upload = to_server(
            Node::new("iq")
                .attr("id", id)
                .attr("xmlns", "encrypt")
                .attr("type", "set")
                .children(vec![
                    Node::new("registration").bytes(self.bytes(4)),
                    Node::new("type").bytes(vec![5]),
                    Node::new("identity").bytes(self.bytes(32)),
                    Node::new("list").children(keys),
                    Node::new("skey").children(vec![
                        Node::new("id").bytes(vec![0, 0, 1]),
                        Node::new("value").bytes(self.bytes(32)),
                        Node::new("signature").bytes(self.bytes(64)),
                    ]),
                ]),
        );
        self.push("out_prekey_upload_812", upload);
    }
}
