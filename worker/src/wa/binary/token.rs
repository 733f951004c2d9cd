//! The token dictionaries, version 3 (wa-protocol.md §5.3, §5.9, Appendix A), and the reverse
//! lookup the encoder uses: a perfect hash over every token ([`index_of`]). The dictionaries are
//! generated from Appendix A and the hash tables from the dictionaries; edit neither by hand (a
//! test rebuilds the tables from the dictionaries, checks them, and prints them when they
//! differ).

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
///
/// One hash of `s` picks a bucket, the bucket's pilot picks a slot of [`SLOTS`], and one
/// comparison with the token there decides: no search, and nothing built at run time. A
/// string longer than every token is refused before it is hashed.
pub fn index_of(s: &str) -> Option<Token> {
    let bytes = s.as_bytes();
    if bytes.len() > MAX_TOKEN_LEN {
        return None;
    }
    let h = hash(SEED, bytes);
    let code = SLOTS[slot(h, PILOTS[bucket(h)])];
    if code == 0 || token_of(code).as_bytes() != bytes {
        return None;
    }
    Some(match code {
        0..=255 => Token::Single(code as u8),
        _ => Token::Double(((code - 256) / 256) as u8, ((code - 256) % 256) as u8),
    })
}

/// The string of a token code: below 256 a single-byte index, else `256 + 256 * dictionary +
/// index`.
fn token_of(code: u16) -> &'static str {
    let code = usize::from(code);
    match code.checked_sub(256) {
        None => SINGLE_BYTE[code],
        Some(double) => DOUBLE_BYTE[double / 256][double % 256],
    }
}

/// log2 of the number of [`SLOTS`].
const SLOT_BITS: u32 = 11;
/// The number of buckets, one pilot each (a power of two).
const BUCKETS: usize = 512;

/// The hash of a string: its length and its bytes, eight at a time, mixed (FxHash's multiplier,
/// MurmurHash3's finalizer). Not for hostile keys: the tables are fixed and each lookup costs
/// one comparison whatever the input.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bucket of a hash.
fn bucket(h: u64) -> usize {
    (h >> 32) as usize % BUCKETS
}

/// The slot of a hash, displaced by its bucket's pilot.
fn slot(h: u64, pilot: u8) -> usize {
    let displaced = h ^ (u64::from(pilot) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (displaced.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> (64 - SLOT_BITS)) as usize
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

/// The seed [`index_of`] hashes with: the first for which every bucket finds a pilot.
const SEED: u64 = 0;
/// The longest token, in bytes.
const MAX_TOKEN_LEN: usize = 48;
/// Each bucket's pilot, the displacement that put its tokens in free slots.
#[rustfmt::skip]
const PILOTS: [u8; BUCKETS] = [
    0, 2, 3, 1, 2, 0, 0, 0, 0, 1, 1, 1, 3, 0, 1, 1,
    0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 6, 1, 0, 2, 1, 0,
    2, 0, 2, 1, 0, 1, 3, 0, 0, 1, 0, 0, 0, 0, 5, 0,
    0, 1, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 3,
    6, 2, 0, 1, 0, 2, 0, 0, 5, 3, 1, 0, 1, 1, 1, 0,
    5, 3, 0, 1, 1, 0, 0, 0, 0, 0, 4, 0, 1, 0, 2, 0,
    0, 0, 0, 0, 2, 1, 3, 6, 3, 7, 1, 1, 1, 0, 3, 0,
    2, 0, 0, 10, 1, 0, 1, 1, 7, 0, 1, 3, 0, 0, 2, 1,
    2, 5, 2, 2, 9, 3, 0, 4, 0, 0, 0, 6, 0, 0, 0, 0,
    0, 2, 0, 0, 2, 2, 0, 2, 2, 3, 0, 1, 2, 0, 0, 0,
    1, 5, 0, 0, 8, 0, 0, 0, 5, 0, 0, 5, 2, 0, 2, 0,
    0, 0, 0, 3, 6, 0, 2, 3, 0, 1, 0, 1, 12, 2, 0, 1,
    3, 0, 0, 0, 3, 1, 1, 1, 4, 4, 0, 8, 2, 0, 0, 3,
    3, 0, 0, 3, 2, 1, 0, 4, 1, 2, 11, 8, 1, 4, 11, 2,
    0, 0, 2, 1, 0, 1, 1, 1, 2, 5, 2, 0, 1, 0, 1, 1,
    0, 1, 3, 6, 0, 0, 5, 0, 3, 1, 1, 0, 2, 9, 0, 6,
    0, 0, 1, 2, 3, 22, 2, 0, 3, 1, 0, 12, 1, 2, 1, 3,
    0, 0, 4, 3, 0, 0, 1, 10, 1, 3, 0, 1, 0, 5, 1, 1,
    3, 1, 3, 0, 4, 0, 1, 3, 4, 2, 3, 15, 2, 0, 8, 0,
    3, 0, 0, 3, 0, 3, 0, 2, 5, 2, 0, 1, 1, 2, 0, 15,
    0, 3, 6, 1, 0, 3, 0, 4, 4, 1, 2, 0, 0, 0, 0, 2,
    0, 8, 0, 1, 0, 0, 2, 0, 2, 2, 3, 0, 0, 0, 2, 5,
    0, 0, 0, 19, 2, 0, 0, 0, 1, 1, 2, 1, 15, 0, 0, 0,
    0, 0, 2, 0, 3, 0, 0, 0, 0, 3, 2, 1, 0, 2, 8, 1,
    2, 4, 4, 6, 1, 9, 0, 4, 2, 3, 2, 0, 1, 2, 9, 1,
    0, 0, 0, 0, 3, 1, 1, 0, 3, 0, 1, 0, 1, 2, 1, 1,
    4, 0, 0, 8, 0, 0, 1, 1, 0, 4, 1, 1, 4, 13, 1, 2,
    0, 1, 0, 13, 1, 0, 3, 3, 0, 1, 2, 0, 1, 1, 0, 0,
    1, 0, 1, 5, 3, 1, 10, 1, 3, 5, 0, 0, 0, 1, 0, 5,
    0, 0, 1, 2, 0, 0, 3, 0, 0, 1, 0, 7, 3, 0, 4, 10,
    1, 1, 2, 0, 0, 0, 5, 6, 6, 9, 0, 5, 5, 6, 0, 2,
    1, 1, 2, 5, 6, 2, 0, 3, 1, 2, 0, 4, 6, 10, 7, 3,
];
/// The token code in each slot (0: none), as [`token_of`] reads it. Plain numbers, so the
/// tables live in read-only data shared by every worker, where a map would be built in each
/// process's heap.
#[rustfmt::skip]
const SLOTS: [u16; 1 << SLOT_BITS] = [
    540, 935, 391, 899, 966, 337, 1072, 830, 0, 12, 1028, 353, 691, 0, 0, 678,
    0, 445, 508, 0, 8, 410, 0, 0, 938, 0, 995, 0, 641, 0, 0, 982,
    1245, 0, 562, 0, 89, 0, 721, 0, 113, 747, 1027, 0, 457, 0, 31, 1006,
    538, 709, 232, 0, 0, 0, 803, 467, 0, 1042, 1225, 186, 0, 1203, 200, 1024,
    0, 0, 877, 0, 1123, 0, 0, 0, 175, 0, 754, 1260, 174, 917, 1061, 0,
    0, 230, 1170, 129, 1163, 974, 1057, 413, 0, 992, 874, 0, 28, 1000, 0, 1218,
    1230, 201, 269, 784, 0, 0, 0, 743, 0, 361, 1189, 0, 0, 0, 0, 13,
    0, 256, 0, 0, 1266, 608, 0, 661, 0, 0, 757, 0, 33, 1041, 96, 376,
    58, 0, 575, 878, 0, 0, 1166, 0, 523, 452, 828, 0, 963, 530, 999, 0,
    0, 550, 0, 301, 0, 0, 849, 0, 0, 947, 367, 1064, 1076, 782, 418, 0,
    219, 0, 942, 1108, 357, 0, 0, 690, 509, 0, 320, 881, 0, 398, 787, 2,
    756, 0, 1204, 298, 324, 0, 925, 0, 39, 0, 87, 0, 0, 0, 1060, 0,
    1223, 824, 1144, 744, 0, 0, 0, 158, 0, 355, 0, 582, 624, 0, 567, 0,
    888, 0, 162, 0, 84, 902, 0, 1034, 59, 216, 114, 0, 0, 0, 647, 0,
    952, 218, 117, 1107, 0, 0, 0, 590, 0, 887, 0, 0, 1047, 1056, 976, 0,
    0, 363, 854, 1161, 587, 593, 0, 1158, 0, 937, 322, 196, 0, 0, 684, 359,
    604, 727, 1242, 0, 0, 0, 524, 30, 850, 0, 176, 0, 564, 1015, 767, 449,
    0, 0, 0, 281, 0, 896, 0, 0, 0, 0, 1142, 79, 736, 1084, 110, 1186,
    332, 1216, 781, 0, 990, 507, 734, 0, 15, 0, 517, 663, 1195, 276, 0, 0,
    437, 169, 339, 515, 370, 0, 0, 23, 750, 0, 469, 0, 535, 0, 51, 0,
    1030, 149, 498, 652, 182, 988, 0, 0, 0, 0, 0, 792, 0, 0, 0, 0,
    1081, 0, 1063, 92, 195, 0, 0, 1095, 977, 1100, 0, 0, 0, 0, 0, 930,
    885, 0, 325, 0, 0, 215, 286, 0, 0, 1212, 0, 0, 0, 1265, 1259, 98,
    0, 1106, 1089, 1126, 1197, 0, 0, 105, 664, 870, 0, 0, 0, 124, 0, 0,
    0, 466, 0, 0, 991, 64, 703, 346, 868, 0, 989, 0, 150, 882, 212, 1105,
    0, 0, 321, 0, 602, 717, 156, 296, 1140, 695, 0, 662, 673, 838, 0, 1175,
    0, 0, 0, 0, 1187, 0, 0, 1244, 521, 133, 131, 101, 1184, 289, 0, 584,
    0, 0, 75, 922, 146, 0, 448, 694, 981, 0, 865, 40, 711, 284, 0, 0,
    231, 741, 0, 295, 1009, 1145, 944, 1276, 0, 1004, 956, 0, 0, 0, 501, 740,
    0, 0, 0, 1177, 892, 225, 0, 0, 10, 571, 403, 1268, 0, 323, 202, 0,
    0, 0, 488, 0, 0, 659, 0, 0, 0, 0, 879, 547, 0, 0, 0, 576,
    139, 461, 106, 0, 798, 789, 844, 424, 674, 0, 984, 0, 1071, 863, 0, 0,
    0, 518, 1109, 825, 1119, 0, 627, 836, 0, 208, 0, 0, 46, 0, 776, 689,
    959, 0, 0, 0, 763, 1029, 619, 0, 0, 628, 843, 0, 859, 493, 0, 0,
    682, 532, 955, 0, 0, 193, 474, 556, 0, 0, 826, 0, 0, 1221, 0, 1114,
    713, 0, 1262, 78, 148, 1040, 0, 0, 732, 463, 270, 0, 0, 1098, 1277, 730,
    0, 0, 0, 913, 599, 316, 714, 655, 606, 511, 0, 0, 0, 197, 0, 788,
    924, 572, 809, 0, 790, 384, 0, 306, 951, 548, 57, 0, 137, 0, 0, 649,
    771, 228, 85, 1251, 1110, 1036, 561, 1240, 0, 0, 0, 779, 1272, 919, 49, 1271,
    722, 0, 1045, 297, 1070, 0, 433, 943, 342, 1193, 1055, 616, 380, 832, 334, 557,
    123, 0, 0, 0, 0, 1039, 18, 806, 1117, 0, 0, 0, 596, 1171, 811, 1160,
    1270, 733, 1183, 381, 378, 0, 962, 0, 644, 0, 0, 0, 1236, 180, 416, 1255,
    135, 0, 487, 0, 0, 0, 153, 0, 199, 1194, 949, 54, 525, 0, 500, 720,
    598, 0, 1077, 99, 630, 0, 430, 263, 0, 765, 1046, 333, 142, 0, 1172, 1143,
    953, 675, 933, 1211, 0, 97, 1016, 0, 443, 198, 188, 822, 900, 0, 412, 668,
    0, 1198, 436, 0, 718, 0, 987, 1165, 0, 141, 473, 194, 0, 351, 0, 0,
    1279, 0, 293, 94, 1147, 0, 1231, 0, 800, 1141, 425, 460, 554, 0, 0, 0,
    911, 0, 0, 1150, 76, 1059, 0, 1235, 1007, 1133, 358, 1111, 700, 512, 0, 0,
    1032, 377, 14, 155, 728, 0, 724, 310, 0, 821, 0, 226, 0, 725, 319, 0,
    0, 1102, 0, 0, 0, 126, 163, 0, 1067, 578, 545, 1274, 482, 104, 1213, 766,
    172, 775, 0, 399, 0, 229, 1157, 118, 53, 0, 328, 552, 0, 0, 0, 1068,
    345, 120, 752, 742, 91, 738, 0, 415, 389, 585, 206, 0, 311, 368, 0, 918,
    132, 810, 814, 0, 0, 1149, 961, 0, 979, 796, 0, 1080, 0, 0, 386, 0,
    348, 0, 1023, 669, 0, 0, 0, 0, 205, 1139, 889, 0, 0, 1168, 0, 0,
    369, 558, 0, 409, 177, 864, 692, 0, 926, 1052, 658, 880, 706, 819, 0, 0,
    1104, 260, 0, 0, 0, 873, 637, 0, 134, 0, 0, 568, 224, 0, 1031, 147,
    0, 388, 0, 1215, 455, 0, 1148, 0, 666, 0, 356, 67, 884, 109, 876, 875,
    0, 0, 1173, 1086, 996, 0, 697, 1103, 683, 642, 185, 565, 948, 0, 266, 273,
    907, 349, 0, 400, 755, 151, 0, 375, 347, 315, 536, 0, 0, 0, 0, 55,
    265, 0, 90, 0, 26, 0, 285, 0, 479, 1014, 0, 646, 1131, 932, 0, 0,
    486, 1058, 0, 1038, 1159, 0, 160, 0, 234, 0, 308, 934, 851, 0, 0, 751,
    0, 0, 808, 812, 277, 0, 927, 0, 737, 1226, 0, 0, 112, 0, 676, 393,
    0, 0, 307, 1090, 504, 1037, 0, 164, 0, 278, 497, 638, 373, 1134, 0, 0,
    1164, 1079, 0, 1021, 0, 0, 510, 485, 1128, 327, 0, 0, 318, 447, 0, 0,
    634, 613, 975, 257, 0, 600, 749, 0, 0, 0, 710, 81, 0, 820, 0, 303,
    0, 0, 1005, 0, 783, 0, 0, 304, 408, 904, 813, 0, 778, 0, 0, 0,
    394, 939, 294, 0, 24, 1154, 591, 0, 0, 719, 716, 0, 0, 207, 858, 0,
    0, 954, 1191, 0, 287, 187, 0, 211, 191, 1250, 0, 262, 68, 0, 292, 804,
    0, 1233, 625, 5, 921, 677, 336, 0, 761, 0, 0, 421, 300, 1113, 1275, 566,
    121, 672, 855, 312, 654, 895, 366, 0, 912, 305, 818, 440, 1241, 178, 1002, 0,
    1196, 534, 0, 0, 0, 404, 0, 542, 0, 171, 0, 631, 635, 0, 95, 0,
    871, 0, 0, 1054, 122, 1085, 702, 0, 0, 0, 496, 492, 435, 1127, 459, 0,
    0, 0, 0, 610, 0, 656, 0, 203, 72, 0, 0, 0, 299, 971, 0, 842,
    901, 74, 0, 329, 0, 0, 472, 1082, 580, 0, 893, 735, 43, 1261, 0, 759,
    543, 903, 439, 0, 0, 0, 869, 0, 0, 0, 0, 0, 605, 0, 0, 586,
    0, 0, 786, 506, 0, 0, 417, 402, 0, 0, 48, 115, 77, 1254, 422, 491,
    957, 852, 179, 1136, 0, 1253, 69, 0, 915, 785, 0, 167, 0, 0, 958, 0,
    607, 0, 50, 965, 0, 0, 17, 462, 985, 0, 362, 0, 872, 1044, 1214, 712,
    723, 715, 0, 42, 0, 0, 209, 681, 1208, 0, 0, 478, 0, 189, 0, 477,
    923, 0, 0, 0, 0, 559, 1190, 856, 577, 34, 138, 1206, 0, 0, 210, 636,
    1124, 0, 1118, 0, 0, 1228, 1156, 0, 183, 0, 0, 0, 973, 686, 159, 419,
    588, 0, 0, 1094, 0, 0, 434, 343, 470, 423, 427, 214, 335, 802, 0, 0,
    615, 848, 555, 0, 618, 0, 622, 549, 21, 401, 0, 970, 499, 0, 0, 0,
    0, 1001, 0, 0, 0, 0, 731, 639, 25, 166, 420, 614, 533, 845, 0, 520,
    551, 0, 745, 0, 1269, 0, 0, 0, 726, 978, 213, 739, 1246, 350, 914, 140,
    0, 38, 0, 0, 910, 516, 259, 0, 1093, 0, 1116, 589, 1264, 181, 483, 82,
    0, 791, 0, 0, 0, 1248, 0, 862, 807, 338, 0, 595, 326, 633, 125, 0,
    1075, 0, 1049, 283, 834, 0, 0, 0, 1146, 0, 1008, 0, 1135, 173, 660, 0,
    0, 0, 0, 503, 777, 453, 86, 0, 235, 476, 0, 9, 0, 1258, 494, 93,
    972, 513, 475, 891, 429, 0, 271, 581, 0, 997, 379, 1227, 0, 0, 629, 0,
    0, 0, 0, 0, 0, 837, 190, 0, 805, 0, 0, 801, 0, 579, 0, 374,
    4, 573, 22, 0, 0, 762, 546, 1155, 1199, 108, 0, 1205, 100, 1097, 0, 102,
    1243, 670, 1176, 857, 0, 1151, 0, 0, 0, 471, 1022, 0, 1201, 1249, 481, 0,
    526, 1278, 261, 0, 846, 1083, 603, 0, 288, 1263, 797, 0, 223, 799, 998, 1053,
    592, 1138, 0, 795, 220, 331, 116, 426, 0, 372, 1121, 1210, 860, 56, 0, 0,
    0, 705, 609, 0, 1073, 1003, 61, 0, 184, 1237, 570, 794, 0, 395, 667, 0,
    330, 267, 0, 0, 0, 1096, 0, 0, 83, 0, 0, 0, 0, 0, 522, 594,
    1088, 0, 431, 0, 1209, 0, 36, 1222, 80, 0, 144, 0, 0, 0, 0, 0,
    0, 484, 1115, 632, 441, 1239, 916, 0, 279, 0, 0, 60, 687, 154, 1018, 71,
    960, 0, 1010, 0, 890, 272, 7, 1012, 0, 0, 1152, 0, 928, 0, 621, 340,
    833, 0, 847, 1033, 464, 446, 772, 0, 360, 128, 1217, 0, 560, 275, 0, 531,
    314, 0, 0, 0, 0, 1162, 0, 29, 66, 0, 528, 0, 839, 0, 0, 0,
    1019, 657, 268, 0, 107, 685, 0, 1091, 906, 0, 0, 853, 993, 1153, 0, 643,
    1238, 0, 0, 0, 514, 364, 0, 502, 0, 611, 0, 0, 748, 645, 411, 883,
    0, 1099, 70, 640, 841, 1202, 103, 0, 465, 1025, 20, 941, 1267, 45, 0, 1013,
    0, 0, 0, 0, 1179, 1130, 886, 0, 1120, 11, 0, 0, 37, 0, 597, 527,
    0, 88, 760, 0, 1256, 0, 290, 0, 0, 1, 1011, 451, 1026, 280, 0, 707,
    302, 0, 544, 227, 0, 1125, 0, 32, 774, 0, 773, 19, 0, 553, 680, 1043,
    665, 866, 0, 490, 6, 0, 0, 539, 233, 701, 0, 583, 0, 929, 221, 0,
    569, 0, 1247, 0, 0, 489, 612, 793, 344, 1020, 27, 0, 387, 1174, 1078, 390,
    1112, 0, 432, 1122, 0, 136, 47, 396, 0, 894, 0, 840, 1087, 0, 0, 0,
    980, 0, 1219, 382, 1066, 815, 1092, 0, 1129, 650, 0, 157, 0, 152, 897, 309,
    537, 168, 541, 835, 0, 909, 0, 0, 920, 161, 407, 0, 468, 0, 444, 0,
    0, 0, 0, 130, 442, 563, 0, 968, 127, 406, 1192, 699, 770, 0, 0, 986,
    35, 0, 341, 0, 698, 969, 693, 0, 405, 458, 0, 0, 0, 0, 617, 0,
    623, 0, 601, 0, 0, 0, 0, 0, 0, 829, 0, 454, 1101, 383, 1185, 1234,
    1181, 354, 52, 0, 145, 0, 217, 0, 861, 708, 0, 0, 994, 0, 0, 1180,
    0, 1065, 0, 0, 1257, 574, 264, 0, 3, 729, 0, 746, 0, 1050, 0, 0,
    519, 0, 936, 0, 529, 1137, 817, 898, 456, 964, 0, 16, 1178, 0, 940, 0,
    170, 823, 0, 0, 0, 0, 1224, 0, 0, 397, 505, 0, 626, 0, 0, 0,
    0, 119, 365, 0, 313, 0, 827, 495, 0, 282, 204, 753, 480, 0, 1207, 1069,
    704, 0, 0, 0, 0, 63, 0, 41, 0, 1273, 0, 0, 1048, 1229, 816, 648,
    1017, 0, 0, 0, 0, 44, 620, 371, 908, 0, 1035, 414, 0, 950, 1051, 62,
    1252, 65, 0, 0, 0, 0, 0, 0, 317, 1167, 1062, 1232, 983, 0, 0, 696,
    831, 0, 0, 143, 0, 385, 1074, 165, 0, 780, 450, 1182, 758, 945, 0, 192,
    0, 688, 764, 73, 0, 905, 0, 274, 967, 1169, 946, 0, 0, 392, 0, 0,
    1132, 428, 1220, 352, 0, 0, 291, 653, 0, 438, 0, 0, 768, 679, 769, 931,
    0, 0, 258, 867, 1188, 0, 1200, 0, 651, 671, 111, 0, 0, 0, 0, 222,
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
    use std::cmp::Reverse;
    use std::fmt::Write as _;

    use super::*;

    /// Every token with its code, in dictionary order.
    fn all_tokens() -> Vec<(&'static str, u16)> {
        (1..SINGLE_BYTE.len())
            .map(|i| (SINGLE_BYTE[i], i as u16))
            .chain((0..4).flat_map(|d| {
                (0..256).map(move |i| (DOUBLE_BYTE[d][i], (256 + 256 * d + i) as u16))
            }))
            .collect()
    }

    /// The pilots and slots for `seed`: buckets are placed largest first, each with the first
    /// pilot that puts all its tokens in free, distinct slots (PTHash's search). `None` when
    /// some bucket finds no pilot.
    fn build(seed: u64) -> Option<(Vec<u8>, Vec<u16>)> {
        let mut buckets: Vec<Vec<(u64, u16)>> = vec![Vec::new(); BUCKETS];
        for (s, code) in all_tokens() {
            let h = hash(seed, s.as_bytes());
            buckets[bucket(h)].push((h, code));
        }
        let mut order: Vec<usize> = (0..BUCKETS).collect();
        order.sort_by_key(|&b| (Reverse(buckets[b].len()), b));
        let mut pilots = vec![0u8; BUCKETS];
        let mut slots = vec![0u16; 1 << SLOT_BITS];
        for b in order {
            let keys = &buckets[b];
            let pilot = (0..=u8::MAX).find(|&pilot| {
                let mut taken: Vec<usize> = keys.iter().map(|&(h, _)| slot(h, pilot)).collect();
                taken.sort_unstable();
                taken.dedup();
                taken.len() == keys.len() && taken.iter().all(|&at| slots[at] == 0)
            })?;
            pilots[b] = pilot;
            for &(h, code) in keys {
                slots[slot(h, pilot)] = code;
            }
        }
        Some((pilots, slots))
    }

    /// The Rust source of the tables, to paste over the stale ones.
    fn source(seed: u64, max_len: usize, pilots: &[u8], slots: &[u16]) -> String {
        fn rows<T: std::fmt::Display>(out: &mut String, values: &[T]) {
            for row in values.chunks(16) {
                let row: Vec<String> = row.iter().map(T::to_string).collect();
                let _ = writeln!(out, "    {},", row.join(", "));
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "const SEED: u64 = {seed};");
        let _ = writeln!(out, "const MAX_TOKEN_LEN: usize = {max_len};");
        out.push_str("const PILOTS: [u8; BUCKETS] = [\n");
        rows(&mut out, pilots);
        out.push_str("];\nconst SLOTS: [u16; 1 << SLOT_BITS] = [\n");
        rows(&mut out, slots);
        out.push_str("];\n");
        out
    }

    #[test]
    fn the_hash_tables_are_built_from_the_dictionaries_and_find_every_token() {
        let (seed, pilots, slots) = (0..1024)
            .find_map(|seed| build(seed).map(|(pilots, slots)| (seed, pilots, slots)))
            .expect("some seed places every token (are two tokens equal?)");
        let tokens = all_tokens();
        let max_len = tokens.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
        assert!(
            (seed, max_len, &pilots[..], &slots[..])
                == (SEED, MAX_TOKEN_LEN, &PILOTS[..], &SLOTS[..]),
            "the token hash tables are stale; replace them in token.rs with:\n{}",
            source(seed, max_len, &pilots, &slots)
        );
        let mut placed: Vec<u16> = SLOTS.iter().copied().filter(|&c| c != 0).collect();
        placed.sort_unstable();
        let mut codes: Vec<u16> = tokens.iter().map(|&(_, code)| code).collect();
        codes.sort_unstable();
        assert_eq!(placed, codes, "every token sits in exactly one slot");
        for (s, code) in tokens {
            let token = index_of(s).expect("every token is found");
            let back = match token {
                Token::Single(i) => single(i),
                Token::Double(d, i) => double(d, i),
            };
            assert_eq!(back, Some(s), "code {code}");
            // A token with one byte more or less is not that token.
            assert_ne!(index_of(&format!("{s}x")), Some(token));
            assert_ne!(index_of(&s[..s.len() - 1]), Some(token));
        }
        assert_eq!(index_of(""), None);
        assert_eq!(index_of("not-a-token-at-all"), None);
        assert_eq!(index_of(&"x".repeat(MAX_TOKEN_LEN + 1)), None);
        assert_eq!(index_of("iq"), Some(Token::Single(25)));
    }
}
