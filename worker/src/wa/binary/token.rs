//! The token dictionaries, version 3 (wa-protocol.md §5.3, §5.9, Appendix A), and the reverse
//! lookup the encoder uses (a binary search over [`SORTED`]). The tables are generated from
//! Appendix A; do not edit them by hand (a test checks [`SORTED`] against the dictionaries).

/// The dictionary version sent in the connection intro (`57 41 06 03`).
pub const DICT_VERSION: u8 = 3;

/// Where a string sits in the dictionaries.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Token {
    /// A single-byte token: the byte is the index into [`SINGLE_BYTE`] (1–235).
    Single(u8),
    /// A double-byte token: dictionary (0–3, written as `0xEC + dictionary`) and index into it.
    Double(u8, u8),
}

/// The dictionary position of `s`, if it is a token. The unused empty string at single-byte
/// index 0 is not a token.
pub fn index_of(s: &str) -> Option<Token> {
    let at = SORTED
        .binary_search_by(|&code| token_of(code).as_bytes().cmp(s.as_bytes()))
        .ok()?;
    let code = SORTED[at];
    Some(match code {
        0..=255 => Token::Single(code as u8),
        _ => Token::Double(((code - 256) / 256) as u8, ((code - 256) % 256) as u8),
    })
}

/// The string of a [`SORTED`] code.
fn token_of(code: u16) -> &'static str {
    let code = usize::from(code);
    match code.checked_sub(256) {
        None => SINGLE_BYTE[code],
        Some(double) => DOUBLE_BYTE[double / 256][double % 256],
    }
}

/// The single-byte token at `index`, if any (index 0 and values past the table are not tokens).
pub fn single(index: u8) -> Option<&'static str> {
    match index {
        0 => None,
        _ => SINGLE_BYTE.get(usize::from(index)).copied(),
    }
}

/// The double-byte token at `index` of dictionary `dict` (0–3).
pub fn double(dict: u8, index: u8) -> Option<&'static str> {
    DOUBLE_BYTE
        .get(usize::from(dict))
        .and_then(|d| d.get(usize::from(index)))
        .copied()
}

/// Every token's code, in byte order of the token (a code below 256 is a single-byte index;
/// `256 + 256 * dictionary + index` a double-byte one). Plain numbers, so the table lives in
/// read-only data shared by every worker, where a map would be built in each process's heap.
#[rustfmt::skip]
const SORTED: [u16; 1259] = [
    759, 882, 460, 871, 795, 45, 176, 199, 387, 400, 405, 409, 419, 429, 438, 441,
    455, 462, 466, 477, 488, 492, 497, 510, 214, 515, 530, 521, 533, 547, 560, 566,
    564, 602, 594, 608, 610, 641, 649, 650, 662, 234, 666, 676, 679, 692, 720, 700,
    722, 719, 727, 748, 764, 763, 777, 792, 781, 794, 279, 791, 799, 802, 809, 810,
    825, 822, 814, 832, 841, 857, 853, 872, 867, 873, 869, 299, 914, 906, 912, 955,
    903, 969, 1034, 963, 1004, 1035, 991, 1019, 1097, 1042, 1133, 1119, 308, 1205, 1036, 1139,
    1206, 1220, 1165, 1269, 1166, 1252, 1215, 339, 348, 361, 371, 380, 390, 402, 413, 423,
    85, 436, 307, 704, 1188, 310, 313, 394, 936, 613, 898, 315, 970, 1049, 311, 957,
    1223, 317, 548, 1080, 1125, 320, 966, 915, 1202, 1136, 312, 1026, 322, 233, 999, 559,
    314, 919, 475, 319, 1103, 1227, 323, 634, 994, 1037, 1005, 916, 1224, 403, 1277, 1111,
    1062, 640, 1232, 961, 1017, 1020, 1211, 207, 396, 946, 1189, 1116, 1212, 1021, 995, 876,
    808, 1126, 890, 856, 922, 927, 925, 939, 421, 909, 1089, 820, 677, 1121, 1137, 843,
    1010, 1233, 1112, 1107, 516, 1022, 1002, 980, 1104, 1027, 1108, 434, 1179, 910, 956, 1122,
    1059, 838, 806, 1050, 1073, 917, 981, 1011, 1278, 971, 996, 986, 1095, 550, 1262, 1012,
    1051, 1157, 532, 1096, 860, 943, 1084, 988, 1247, 973, 940, 944, 1087, 899, 865, 1271,
    1213, 1263, 997, 1052, 950, 506, 1248, 1225, 1170, 1045, 967, 1226, 1060, 1158, 895, 1056,
    1023, 1131, 1113, 1101, 1074, 926, 1057, 875, 989, 549, 702, 1028, 1041, 947, 964, 987,
    1092, 1264, 968, 1249, 1203, 1069, 930, 1081, 992, 975, 951, 948, 1180, 1234, 604, 1145,
    1255, 1132, 1272, 1031, 1024, 1250, 952, 911, 1109, 1018, 1083, 1077, 1120, 1117, 1129, 739,
    1053, 614, 990, 1061, 1214, 920, 1088, 949, 1098, 921, 1114, 1256, 1181, 941, 1115, 1159,
    646, 880, 923, 1235, 1105, 1236, 1279, 1075, 908, 1257, 1237, 1160, 69, 571, 761, 744,
    1258, 1268, 1127, 1190, 1191, 1228, 670, 1251, 1273, 1085, 675, 833, 1086, 449, 1274, 721,
    1265, 1146, 1167, 1204, 1238, 1161, 1163, 1058, 1192, 1266, 1128, 881, 713, 945, 1138, 1193,
    1182, 1183, 1198, 671, 816, 1140, 1239, 901, 928, 934, 1217, 1006, 839, 153, 902, 1162,
    793, 893, 772, 1194, 785, 819, 1134, 264, 840, 162, 628, 190, 1063, 818, 498, 1147,
    849, 863, 783, 886, 651, 1070, 1174, 1207, 958, 878, 1199, 393, 884, 1123, 1253, 1270,
    896, 290, 807, 141, 636, 309, 1029, 942, 850, 485, 1000, 965, 1187, 1185, 844, 982,
    1148, 894, 733, 1003, 998, 1047, 1275, 798, 349, 1175, 1153, 1046, 1068, 1221, 600, 377,
    681, 420, 672, 976, 1240, 1260, 1152, 599, 796, 1218, 804, 1064, 1013, 1176, 1090, 1261,
    1208, 1209, 984, 1102, 1171, 283, 1229, 977, 790, 1144, 1141, 1210, 674, 900, 1142, 1078,
    959, 1168, 417, 801, 415, 1241, 1038, 1093, 1177, 1149, 879, 1195, 1230, 768, 1124, 1039,
    587, 1106, 953, 824, 1200, 227, 913, 1201, 1216, 1196, 1143, 397, 1118, 1172, 1254, 1099,
    1276, 1079, 1032, 827, 972, 1150, 979, 589, 1222, 1151, 1055, 479, 918, 391, 1065, 858,
    836, 1267, 1066, 887, 582, 1242, 1173, 1014, 978, 1246, 935, 1186, 1040, 517, 588, 1154,
    1135, 1197, 1067, 1043, 1071, 537, 1048, 1130, 1030, 1169, 1178, 1076, 1091, 830, 465, 577,
    556, 845, 786, 983, 736, 544, 864, 304, 1155, 815, 1259, 431, 607, 364, 583, 835,
    960, 1001, 985, 1184, 406, 678, 442, 411, 75, 495, 354, 366, 27, 369, 723, 257,
    374, 151, 224, 342, 352, 574, 800, 693, 228, 514, 128, 305, 223, 130, 737, 851,
    232, 161, 341, 169, 124, 859, 136, 160, 362, 1082, 706, 454, 852, 164, 612, 358,
    698, 538, 473, 735, 680, 629, 13, 904, 68, 184, 47, 778, 291, 1164, 805, 100,
    71, 104, 847, 398, 658, 180, 127, 165, 509, 862, 756, 471, 140, 129, 46, 21,
    760, 732, 724, 103, 112, 347, 96, 472, 486, 52, 62, 35, 185, 32, 270, 343,
    378, 37, 451, 116, 125, 590, 65, 275, 1100, 60, 422, 929, 355, 823, 570, 580,
    624, 523, 741, 500, 82, 329, 132, 474, 338, 123, 344, 170, 183, 425, 59, 230,
    54, 742, 16, 192, 263, 15, 470, 131, 206, 513, 346, 726, 10, 72, 430, 408,
    638, 200, 88, 49, 738, 23, 747, 40, 149, 885, 295, 1110, 231, 29, 826, 866,
    717, 277, 203, 652, 622, 545, 359, 712, 689, 653, 461, 476, 504, 168, 974, 225,
    187, 126, 828, 188, 372, 44, 57, 64, 271, 399, 435, 519, 382, 687, 734, 258,
    334, 617, 1231, 731, 572, 325, 605, 340, 6, 595, 522, 28, 166, 41, 177, 655,
    1072, 426, 575, 541, 526, 427, 690, 356, 386, 448, 606, 775, 524, 53, 95, 262,
    688, 784, 205, 543, 611, 114, 381, 70, 627, 554, 573, 527, 456, 8, 156, 326,
    272, 67, 667, 578, 639, 172, 198, 445, 143, 553, 229, 891, 385, 353, 297, 145,
    150, 464, 25, 1156, 142, 63, 182, 12, 331, 540, 158, 80, 36, 745, 924, 643,
    870, 282, 1054, 407, 220, 97, 138, 147, 287, 752, 751, 118, 418, 216, 647, 113,
    61, 555, 269, 773, 598, 931, 99, 787, 584, 707, 186, 191, 728, 762, 648, 501,
    874, 821, 788, 565, 817, 803, 55, 58, 536, 661, 782, 38, 292, 316, 102, 19,
    637, 375, 694, 134, 139, 480, 481, 811, 450, 463, 467, 106, 754, 1243, 333, 77,
    204, 755, 567, 623, 181, 668, 484, 797, 591, 718, 511, 137, 360, 757, 446, 209,
    388, 379, 9, 24, 444, 452, 439, 468, 284, 18, 520, 78, 551, 433, 619, 195,
    111, 743, 286, 691, 478, 482, 631, 193, 321, 1245, 416, 618, 654, 771, 750, 507,
    686, 5, 937, 107, 632, 280, 993, 502, 842, 154, 593, 561, 708, 888, 303, 336,
    539, 332, 351, 33, 644, 86, 576, 83, 74, 202, 508, 729, 337, 673, 503, 546,
    695, 278, 274, 31, 1219, 294, 119, 889, 1033, 93, 268, 226, 365, 221, 384, 933,
    101, 110, 1025, 656, 79, 92, 259, 1015, 774, 219, 766, 776, 684, 829, 848, 769,
    715, 813, 109, 854, 285, 1007, 345, 260, 42, 256, 222, 302, 7, 714, 148, 592,
    306, 363, 457, 173, 1016, 493, 552, 512, 373, 133, 73, 175, 273, 711, 491, 665,
    861, 20, 1008, 267, 542, 39, 424, 855, 3, 534, 494, 597, 716, 350, 235, 261,
    1044, 327, 293, 171, 657, 459, 368, 90, 758, 496, 469, 458, 568, 487, 663, 196,
    159, 298, 212, 357, 749, 710, 301, 50, 535, 525, 557, 529, 642, 1094, 1244, 91,
    395, 208, 11, 213, 281, 837, 528, 558, 868, 518, 490, 586, 645, 892, 105, 157,
    753, 789, 383, 98, 76, 392, 404, 453, 483, 428, 660, 499, 705, 26, 179, 135,
    144, 215, 201, 626, 211, 962, 56, 330, 152, 178, 163, 174, 167, 437, 410, 218,
    17, 197, 146, 324, 318, 569, 300, 155, 217, 115, 189, 328, 4, 1009, 630, 767,
    740, 897, 669, 48, 685, 276, 94, 120, 117, 682, 265, 210, 954, 699, 43, 581,
    440, 30, 14, 812, 505, 121, 389, 81, 370, 703, 108, 883, 489, 596, 289, 51,
    34, 907, 84, 414, 89, 401, 601, 620, 585, 625, 621, 616, 562, 367, 266, 664,
    635, 432, 831, 932, 376, 633, 603, 563, 288, 194, 87, 66, 122, 412, 659, 447,
    730, 877, 938, 579, 779, 683, 609, 697, 701, 615, 834, 765, 905, 770, 443, 746,
    846, 531, 709, 780, 296, 335, 725, 696, 22, 2, 1,
];

/// The single-byte dictionary (§A.1); the byte value is the index, and index 0 is unused.
#[rustfmt::skip]
pub const SINGLE_BYTE: [&str; 236] = [
    "", "xmlstreamstart", "xmlstreamend", "s.whatsapp.net", "type", "participant", "from", "receipt",
    "id", "notification", "disappearing_mode", "status", "jid", "broadcast", "user", "devices",
    "device_hash", "to", "offline", "message", "result", "class", "xmlns", "duration",
    "notify", "iq", "t", "ack", "g.us", "enc", "urn:xmpp:whatsapp:push", "presence",
    "config_value", "picture", "verified_name", "config_code", "key-index-list", "contact", "mediatype", "routing_info",
    "edge_routing", "get", "read", "urn:xmpp:ping", "fallback_hostname", "0", "chatstate", "business_hours_config",
    "unavailable", "download_buckets", "skmsg", "verified_level", "composing", "handshake", "device-list", "media",
    "text", "fallback_ip4", "media_conn", "device", "creation", "location", "config", "item",
    "fallback_ip6", "count", "w:profile:picture", "image", "business", "2", "hostname", "call-creator",
    "display_name", "relaylatency", "platform", "abprops", "success", "msg", "offline_preview", "prop",
    "key-index", "v", "day_of_week", "pkmsg", "version", "1", "ping", "w:p",
    "download", "video", "set", "specific_hours", "props", "primary", "unknown", "hash",
    "commerce_experience", "last", "subscribe", "max_buckets", "call", "profile", "member_since_text", "close_time",
    "call-id", "sticker", "mode", "participants", "value", "query", "profile_options", "open_time",
    "code", "list", "host", "ts", "contacts", "upload", "lid", "preview",
    "update", "usync", "w:stats", "delivery", "auth_ttl", "context", "fail", "cart_enabled",
    "appdata", "category", "atn", "direct_connection", "decrypt-fail", "relay_id", "mmg-fallback.whatsapp.net", "target",
    "available", "name", "last_id", "mmg.whatsapp.net", "categories", "401", "is_new", "index",
    "tctoken", "ip4", "token_id", "latency", "recipient", "edit", "ip6", "add",
    "thumbnail-document", "26", "paused", "true", "identity", "stream:error", "key", "sidelist",
    "background", "audio", "3", "thumbnail-image", "biz-cover-photo", "cat", "gcm", "thumbnail-video",
    "error", "auth", "deny", "serial", "in", "registration", "thumbnail-link", "remove",
    "00", "gif", "thumbnail-gif", "tag", "capability", "multicast", "item-not-found", "description",
    "business_hours", "config_expo_key", "md-app-state", "expiration", "fallback", "ttl", "300", "md-msg-hist",
    "device_orientation", "out", "w:m", "open_24h", "side_list", "token", "inactive", "01",
    "document", "te2", "played", "encrypt", "msgr", "hide", "direct_path", "12",
    "state", "not-authorized", "url", "terminate", "signature", "status-revoke-delay", "02", "te",
    "linked_accounts", "trusted_contact", "timezone", "ptt", "kyc-id", "privacy_token", "readreceipts", "appointment_only",
    "address", "expected_ts", "privacy", "7", "android", "interactive", "device-identity", "enabled",
    "attribute_padding", "1080", "03", "screen_height",
];

/// The four double-byte dictionaries (§A.2); a token is written as `0xEC + dictionary`, `index`.
#[rustfmt::skip]
pub const DOUBLE_BYTE: [[&str; 256]; 4] = [
    [
        "read-self", "active", "fbns", "protocol", "reaction", "screen_width", "heartbeat", "deviceid",
        "2:47DEQpj8", "uploadfieldstat", "voip_settings", "retry", "priority", "longitude", "conflict", "false",
        "ig_professional", "replaced", "preaccept", "cover_photo", "uncompressed", "encopt", "ppic", "04",
        "passive", "status-revoke-drop", "keygen", "540", "offer", "rate", "opus", "latitude",
        "w:gp2", "ver", "4", "business_profile", "medium", "sender", "prev_v_id", "email",
        "website", "invited", "sign_credential", "05", "transport", "skey", "reason", "peer_abtest_bucket",
        "America/Sao_Paulo", "appid", "refresh", "100", "06", "404", "101", "104",
        "107", "102", "109", "103", "member_add_mode", "105", "transaction-id", "110",
        "106", "outgoing", "108", "111", "tokens", "followers", "ig_handle", "self_pid",
        "tue", "dec", "thu", "joinable", "peer_pid", "mon", "features", "wed",
        "peer_device_presence", "pn", "delete", "07", "fri", "audio_duration", "admin", "connected",
        "delta", "rcat", "disable", "collection", "08", "480", "sat", "phash",
        "all", "invite", "accept", "critical_unblock_low", "group_update", "signed_credential", "blinded_credential", "eph_setting",
        "net", "09", "background_location", "refresh_id", "Asia/Kolkata", "privacy_mode_ts", "account_sync", "voip_payload_type",
        "service_areas", "acs_public_key", "v_id", "0a", "fallback_class", "relay", "actual_actors", "metadata",
        "w:biz", "5", "connected-limit", "notice", "0b", "host_storage", "fb_page", "subject",
        "privatestats", "invis", "groupadd", "010", "note.m4r", "uuid", "0c", "8000",
        "sun", "372", "1020", "stage", "1200", "720", "canonical", "fb",
        "011", "video_duration", "0d", "1140", "superadmin", "012", "Opening.m4r", "keystore_attestation",
        "dleq_proof", "013", "timestamp", "ab_key", "w:sync:app:state", "0e", "vertical", "600",
        "p_v_id", "6", "likes", "014", "500", "1260", "creator", "0f",
        "rte", "destination", "group", "group_info", "syncd_anti_tampering_fatal_exception_enabled", "015", "dl_bw", "Asia/Jakarta",
        "vp8/h.264", "online", "1320", "fb:multiway", "10", "timeout", "016", "nse_retry",
        "urn:xmpp:whatsapp:dirty", "017", "a_v_id", "web_shops_chat_header_button_enabled", "nse_call", "inactive-upgrade", "none", "web",
        "groups", "2250", "mms_hot_content_timespan_in_seconds", "contact_blacklist", "nse_read", "suspended_group_deletion_notification", "binary_version", "018",
        "https://www.whatsapp.com/otp/copy/", "reg_push", "shops_hide_catalog_attachment_entrypoint", "server_sync", ".", "ephemeral_messages_allowed_values", "019", "mms_vcache_aggregation_enabled",
        "iphone", "America/Argentina/Buenos_Aires", "01a", "mms_vcard_autodownload_size_kb", "nse_ver", "shops_header_dropdown_menu_item", "dhash", "catalog_status",
        "communities_mvp_new_iqs_serverprop", "blocklist", "default", "11", "ephemeral_messages_enabled", "01b", "original_dimensions", "8",
        "mms4_media_retry_notification_encryption_enabled", "mms4_server_error_receipt_encryption_enabled", "original_image_url", "sync", "multiway", "420", "companion_enc_static", "shops_profile_drawer_entrypoint",
        "01c", "vcard_as_document_size_kb", "status_video_max_duration", "request_image_url", "01d", "regular_high", "s_t", "abt",
        "share_ext_min_preliminary_image_quality", "01e", "32", "syncd_key_rotation_enabled", "data_namespace", "md_downgrade_read_receipts2", "patch", "polltype",
        "ephemeral_messages_setting", "userrate", "15", "partial_pjpeg_bw_threshold", "played-self", "catalog_exists", "01f", "mute_v2",
    ],
    [
        "reject", "dirty", "announcement", "020", "13", "9", "status_video_max_bitrate", "fb:thrift_iq",
        "offline_batch", "022", "full", "ctwa_first_business_reply_logging", "h.264", "smax_id", "group_description_length", "https://www.whatsapp.com/otp/code",
        "status_image_max_edge", "smb_upsell_business_profile_enabled", "021", "web_upgrade_to_md_modal", "14", "023", "s_o", "smaller_video_thumbs_status_enabled",
        "media_max_autodownload", "960", "blocking_status", "peer_msg", "joinable_group_call_client_version", "group_call_video_maximization_enabled", "return_snapshot", "high",
        "America/Mexico_City", "entry_point_block_logging_enabled", "pop", "024", "1050", "16", "1380", "one_tap_calling_in_group_chat_size",
        "regular_low", "inline_joinable_education_enabled", "hq_image_max_edge", "locked", "America/Bogota", "smb_biztools_deeplink_enabled", "status_image_quality", "1088",
        "025", "payments_upi_intent_transaction_limit", "voip", "w:g2", "027", "md_pin_chat_enabled", "026", "multi_scan_pjpeg_download_enabled",
        "shops_product_grid", "transaction_id", "ctwa_context_enabled", "20", "fna", "hq_image_quality", "alt_jpeg_doc_detection_quality", "group_call_max_participants",
        "pkey", "America/Belem", "image_max_kbytes", "web_cart_v1_1_order_message_changes_enabled", "ctwa_context_enterprise_enabled", "urn:xmpp:whatsapp:account", "840", "Asia/Kuala_Lumpur",
        "max_participants", "video_remux_after_repair_enabled", "stella_addressbook_restriction_type", "660", "900", "780", "context_menu_ios13_enabled", "mute-state",
        "ref", "payments_request_messages", "029", "frskmsg", "vcard_max_size_kb", "sample_buffer_gif_player_enabled", "match_last_seen", "510",
        "4983", "video_max_bitrate", "028", "w:comms:chat", "17", "frequently_forwarded_max", "groups_privacy_blacklist", "Asia/Karachi",
        "02a", "web_download_document_thumb_mms_enabled", "02b", "hist_sync", "biz_block_reasons_version", "1024", "18", "web_is_direct_connection_for_plm_transparent",
        "view_once_write", "file_max_size", "paid_convo_id", "online_privacy_setting", "video_max_edge", "view_once_read", "enhanced_storage_management", "multi_scan_pjpeg_encoding_enabled",
        "ctwa_context_forward_enabled", "video_transcode_downgrade_enable", "template_doc_mime_types", "hq_image_bw_threshold", "30", "body", "u_aud_limit_sil_restarts_ctrl", "other",
        "participating", "w:biz:directory", "1110", "vp8", "4018", "meta", "doc_detection_image_max_edge", "image_quality",
        "1170", "02c", "smb_upsell_chat_banner_enabled", "key_expiry_time_second", "pid", "stella_interop_enabled", "19", "linked_device_max_count",
        "md_device_sync_enabled", "02d", "02e", "360", "enhanced_block_enabled", "ephemeral_icon_in_forwarding", "paid_convo_status", "gif_provider",
        "project_name", "server-error", "canonical_url_validation_enabled", "wallpapers_v2", "syncd_clear_chat_delete_chat_enabled", "medianotify", "02f", "shops_required_tos_version",
        "vote", "reset_skey_on_id_change", "030", "image_max_edge", "multicast_limit_global", "ul_bw", "21", "25",
        "5000", "poll", "570", "22", "031", "1280", "WhatsApp", "032",
        "bloks_shops_enabled", "50", "upload_host_switching_enabled", "web_ctwa_context_compose_enabled", "ptt_forwarded_features_enabled", "unblocked", "partial_pjpeg_enabled", "fbid:devices",
        "height", "ephemeral_group_query_ts", "group_join_permissions", "order", "033", "alt_jpeg_status_quality", "migrate", "popular-bank",
        "win_uwp_deprecation_killswitch_enabled", "web_download_status_thumb_mms_enabled", "blocking", "url_text", "035", "web_forwarding_limit_to_groups", "1600", "val",
        "1000", "syncd_msg_date_enabled", "bank-ref-id", "max_subject", "payments_web_enabled", "web_upload_document_thumb_mms_enabled", "size", "request",
        "ephemeral", "24", "receipt_agg", "ptt_remember_play_position", "sampling_weight", "enc_rekey", "mute_always", "037",
        "034", "23", "036", "action", "click_to_chat_qr_enabled", "width", "disabled", "038",
        "md_blocklist_v2", "played_self_enabled", "web_buttons_message_enabled", "flow_id", "clear", "450", "fbid:thread", "bloks_session_state",
        "America/Lima", "attachment_picker_refresh", "download_host_switching_enabled", "1792", "u_aud_limit_sil_restarts_test2", "custom_urls", "device_fanout", "optimistic_upload",
        "2000", "key_cipher_suite", "web_smb_upsell_in_biz_profile_enabled", "e", "039", "siri_post_status_shortcut", "pair-device", "lg",
        "lc", "stream_attribution_url", "model", "mspjpeg_phash_gen", "catalog_send_all", "new_multi_vcards_ui", "share_biz_vcard_enabled", "-",
        "clean", "200", "md_blocklist_v2_server", "03b", "03a", "web_md_migration_experience", "ptt_conversation_waveform", "u_aud_limit_sil_restarts_test1",
    ],
    [
        "64", "ptt_playback_speed_enabled", "web_product_list_message_enabled", "paid_convo_ts", "27", "manufacturer", "psp-routing", "grp_uii_cleanup",
        "ptt_draft_enabled", "03c", "business_initiated", "web_catalog_products_onoff", "web_upload_link_thumb_mms_enabled", "03e", "mediaretry", "35",
        "hfm_string_changes", "28", "America/Fortaleza", "max_keys", "md_mhfs_days", "streaming_upload_chunk_size", "5541", "040",
        "03d", "2675", "03f", "...", "512", "mute", "48", "041",
        "alt_jpeg_quality", "60", "042", "md_smb_quick_reply", "5183", "c", "1343", "40",
        "1230", "043", "044", "mms_cat_v1_forward_hot_override_enabled", "user_notice", "ptt_waveform_send", "047", "Asia/Calcutta",
        "250", "md_privacy_v2", "31", "29", "128", "md_messaging_enabled", "046", "crypto",
        "690", "045", "enc_iv", "75", "failure", "ptt_oot_playback", "AIzaSyDR5yfaG7OG8sMTUj8kfQEb8T9pN8BM6Lk", "w",
        "048", "2201", "web_large_files_ui", "Asia/Makassar", "812", "status_collapse_muted", "1334", "257",
        "2HP4dm", "049", "patches", "1290", "43cY6T", "America/Caracas", "web_sticker_maker", "campaign",
        "ptt_pausable_enabled", "33", "42", "attestation", "biz", "04b", "query_linked", "s",
        "125", "04a", "810", "availability", "1411", "responsiveness_v2_m1", "catalog_not_created", "34",
        "America/Santiago", "1465", "enc_p", "04d", "status_info", "04f", "key_version", "..",
        "04c", "04e", "md_group_notification", "1598", "1215", "web_cart_enabled", "37", "630",
        "1920", "2394", "-1", "vcard", "38", "elapsed", "36", "828",
        "peer", "pricing_category", "1245", "invalid", "stella_ios_enabled", "2687", "45", "1528",
        "39", "u_is_redial_audio_1104_ctrl", "1025", "1455", "58", "2524", "2603", "054",
        "bsp_system_message_enabled", "web_pip_redesign", "051", "verify_apps", "1974", "1272", "1322", "1755",
        "052", "70", "050", "1063", "1135", "1361", "80", "1096",
        "1828", "1851", "1251", "1921", "key_config_id", "1254", "1566", "1252",
        "2525", "critical_block", "1669", "max_available", "w:auth:backup:token", "product", "2530", "870",
        "1022", "participant_uuid", "web_cart_on_off", "1255", "1432", "1867", "41", "1415",
        "1440", "240", "1204", "1608", "1690", "1846", "1483", "1687",
        "1749", "69", "url_number", "053", "1325", "1040", "365", "59",
        "Asia/Riyadh", "1177", "test_recommended", "057", "1612", "43", "1061", "1518",
        "1635", "055", "1034", "1375", "750", "1430", "event_code", "1682",
        "503", "55", "865", "78", "1309", "1365", "44", "America/Guayaquil",
        "535", "LIMITED", "1377", "1613", "1420", "1599", "1822", "05a",
        "1681", "password", "1111", "1214", "1376", "1478", "47", "1082",
        "4282", "Europe/Istanbul", "1307", "46", "058", "1124", "256", "rate-overlimit",
        "retail", "u_a_socket_err_fix_succ_test", "1292", "1370", "1388", "520", "861", "psa",
        "regular", "1181", "1766", "05b", "1183", "1213", "1304", "1537",
    ],
    [
        "1724", "profile_picture", "1071", "1314", "1605", "407", "990", "1710",
        "746", "pricing_model", "056", "059", "061", "1119", "6027", "65",
        "877", "1607", "05d", "917", "seen", "1516", "49", "470",
        "973", "1037", "1350", "1394", "1480", "1796", "keys", "794",
        "1536", "1594", "2378", "1333", "1524", "1825", "116", "309",
        "52", "808", "827", "909", "495", "1660", "361", "957",
        "google", "1357", "1565", "1967", "996", "1775", "586", "736",
        "1052", "1670", "bank", "177", "1416", "2194", "2222", "1454",
        "1839", "1275", "53", "997", "1629", "6028", "smba", "1378",
        "1410", "05c", "1849", "727", "create", "1559", "536", "1106",
        "1310", "1944", "670", "1297", "1316", "1762", "en", "1148",
        "1295", "1551", "1853", "1890", "1208", "1784", "7200", "05f",
        "178", "1283", "1332", "381", "643", "1056", "1238", "2024",
        "2387", "179", "981", "1547", "1705", "05e", "290", "903",
        "1069", "1285", "2436", "062", "251", "560", "582", "719",
        "56", "1700", "2321", "325", "448", "613", "777", "791",
        "51", "488", "902", "Asia/Almaty", "is_hidden", "1398", "1527", "1893",
        "1999", "2367", "2642", "237", "busy", "065", "067", "233",
        "590", "993", "1511", "54", "723", "860", "363", "487",
        "522", "605", "995", "1321", "1691", "1865", "2447", "2462",
        "NON_TRANSACTIONAL", "433", "871", "432", "1004", "1207", "2032", "2050",
        "2379", "2446", "279", "636", "703", "904", "248", "370",
        "691", "700", "1068", "1655", "2334", "060", "063", "364",
        "533", "534", "567", "1191", "1210", "1473", "1827", "069",
        "701", "2531", "514", "prev_dhash", "064", "496", "790", "1046",
        "1139", "1505", "1521", "1108", "207", "544", "637", "final",
        "1173", "1293", "1694", "1939", "1951", "1993", "2353", "2515",
        "504", "601", "857", "modify", "spam_request", "p_121_aa_1101_test4", "866", "1427",
        "1502", "1638", "1744", "2153", "068", "382", "725", "1704",
        "1864", "1990", "2003", "Asia/Dubai", "508", "531", "1387", "1474",
        "1632", "2307", "2386", "819", "2014", "066", "387", "1468",
        "1706", "2186", "2261", "471", "728", "1147", "1372", "1961",
    ],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sorted_index_holds_every_token_once_in_byte_order() {
        let mut all: Vec<(&str, u16)> = (1..SINGLE_BYTE.len())
            .map(|i| (SINGLE_BYTE[i], i as u16))
            .chain((0..4).flat_map(|d| {
                (0..256).map(move |i| (DOUBLE_BYTE[d][i], (256 + 256 * d + i) as u16))
            }))
            .collect();
        all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let codes: Vec<u16> = all.iter().map(|(_, code)| *code).collect();
        assert_eq!(codes, SORTED.to_vec());
        for (s, code) in all {
            let token = index_of(s).expect("every token is found");
            let back = match token {
                Token::Single(i) => single(i),
                Token::Double(d, i) => double(d, i),
            };
            assert_eq!(back, Some(s), "code {code}");
        }
        assert_eq!(index_of(""), None);
        assert_eq!(index_of("not-a-token-at-all"), None);
        assert_eq!(index_of("iq"), Some(Token::Single(25)));
    }
}
