//! The WhatsApp Web protocol, without IO: frames, the Noise XX handshake and transport, the
//! server certificate chain, XEdDSA, protobufs and the binary node codec. Shared with `wa-sim`,
//! which plays the server side of the same code paths (wa-protocol.md).

pub mod binary;
pub mod e2e;
pub mod frame;
pub mod link_code;
pub mod message_id;
pub mod noise;
pub mod phash;
pub mod proto;
pub mod recipient;
pub mod xeddsa;
