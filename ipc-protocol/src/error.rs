//! Errors of the frame codec.

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`crate::MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the {max} byte cap")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u32,
    },
    /// The frame's bytes are not a valid message.
    #[error("frame is not a valid message")]
    Json(#[from] serde_json::Error),
    /// The underlying stream failed.
    #[error("link i/o failed")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream in the middle of a frame.
    #[error("link closed in the middle of a frame")]
    Truncated,
}
