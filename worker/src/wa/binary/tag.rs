//! Tag bytes and packing constants (wa-protocol.md §5.3, §5.6). Bytes 1–235 are single-byte
//! tokens and `0xF0`–`0xF4` are unused.

/// Empty list, null value, or empty JID user.
pub const LIST_EMPTY: u8 = 0x00;
/// Double-byte dictionary 0; dictionaries 1–3 follow at `0xED`–`0xEF`.
pub const DICTIONARY_0: u8 = 0xEC;
/// Double-byte dictionary 3, the last.
pub const DICTIONARY_3: u8 = 0xEF;
/// Interop JID: user, device u16, integrator u16, server.
pub const INTEROP_JID: u8 = 0xF5;
/// Messenger JID: user, device u16, server.
pub const FB_JID: u8 = 0xF6;
/// Agent/device JID: domain u8, device u8, user.
pub const AD_JID: u8 = 0xF7;
/// List with a 1-byte size.
pub const LIST_8: u8 = 0xF8;
/// List with a 2-byte big-endian size.
pub const LIST_16: u8 = 0xF9;
/// `user@server` JID.
pub const JID_PAIR: u8 = 0xFA;
/// Packed upper-case hex string.
pub const HEX_8: u8 = 0xFB;
/// Bytes with a 1-byte length.
pub const BINARY_8: u8 = 0xFC;
/// Bytes with a 20-bit length in 3 bytes.
pub const BINARY_20: u8 = 0xFD;
/// Bytes with a 4-byte big-endian length.
pub const BINARY_32: u8 = 0xFE;
/// Packed numeric string (`0-9`, `-`, `.`).
pub const NIBBLE_8: u8 = 0xFF;

/// The most characters a packed string holds.
pub const PACKED_MAX: usize = 127;
/// The nibble that pads an odd-length packed string.
pub const PACKED_FILLER: u8 = 0x0F;
