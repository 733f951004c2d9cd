//! Framing: a `u32` big-endian length, then that many bytes of JSON.
//!
//! The sans-IO half ([`encode`], [`FrameDecoder`]) does all the work; [`FrameReader`] and
//! [`FrameWriter`] move bytes between it and any `AsyncRead`/`AsyncWrite`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::FrameError;

/// The largest frame body accepted or produced: 1 MiB.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

const LEN_PREFIX: usize = 4;

/// Encodes `msg` as one frame.
///
/// # Errors
/// [`FrameError::Json`] if `msg` cannot be serialized, [`FrameError::TooLarge`] if its JSON
/// exceeds [`MAX_FRAME_LEN`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LEN_PREFIX];
    serde_json::to_writer(&mut out, msg)?;
    let body_len = out.len() - LEN_PREFIX;
    let len = u32::try_from(body_len)
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge {
            len: body_len as u64,
            max: MAX_FRAME_LEN,
        })?;
    out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Splits a byte stream into frames, whatever the chunking of the input.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed by a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next complete frame out of the buffer, if one is there.
    ///
    /// The length prefix is checked against [`MAX_FRAME_LEN`] before the body is waited for, so
    /// a hostile length never makes the buffer grow past the cap.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] for an oversized length (the stream is then unusable) and
    /// [`FrameError::Json`] for a body that is not a `T` (the bad frame is consumed, so the
    /// caller may decide to go on).
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(prefix) = self.buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len: u64::from(len),
                max: MAX_FRAME_LEN,
            });
        }
        let end = LEN_PREFIX + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let parsed = serde_json::from_slice(&self.buf[LEN_PREFIX..end]);
        self.buf.drain(..end);
        Ok(Some(parsed?))
    }
}

/// Reads frames from an `AsyncRead`.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            decoder: FrameDecoder::new(),
            chunk: vec![0u8; 4096].into_boxed_slice(),
        }
    }

    /// Reads the next frame; `Ok(None)` on a clean end of stream between frames.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes already read stay in this reader's buffer, so dropping the future and
    /// calling again loses nothing.
    ///
    /// # Errors
    /// As [`FrameDecoder::next_frame`], plus [`FrameError::Io`] and [`FrameError::Truncated`]
    /// when the stream ends inside a frame.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.decoder.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            self.decoder.push(&self.chunk[..n]);
        }
    }
}

/// Writes frames to an `AsyncWrite`.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        FrameWriter { inner }
    }

    /// Writes `msg` as one frame and flushes it.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped write can leave half a frame on the stream. Own the writer in a
    /// single task and feed it through a channel.
    ///
    /// # Errors
    /// As [`encode`], plus [`FrameError::Io`].
    pub async fn write<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let frame = encode(msg)?;
        self.inner.write_all(&frame).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Shuts the stream down for writing.
    ///
    /// # Errors
    /// [`FrameError::Io`] from the stream.
    pub async fn shutdown(&mut self) -> Result<(), FrameError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ToWorker;

    #[test]
    fn refuses_an_oversized_length_before_the_body_arrives() {
        let mut d = FrameDecoder::new();
        d.push(&(MAX_FRAME_LEN + 1).to_be_bytes());
        assert!(matches!(
            d.next_frame::<ToWorker>(),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn waits_for_the_whole_frame() {
        let frame = encode(&ToWorker::Ping).expect("encodes");
        let mut d = FrameDecoder::new();
        d.push(&frame[..frame.len() - 1]);
        assert!(d.next_frame::<ToWorker>().expect("no error").is_none());
        d.push(&frame[frame.len() - 1..]);
        assert_eq!(
            d.next_frame::<ToWorker>().expect("ok"),
            Some(ToWorker::Ping)
        );
        assert_eq!(d.buffered(), 0);
    }

    #[tokio::test]
    async fn reader_reports_a_frame_cut_by_eof() {
        let frame = encode(&ToWorker::Shutdown).expect("encodes");
        let mut r = FrameReader::new(&frame[..frame.len() - 2]);
        assert!(matches!(
            r.read::<ToWorker>().await,
            Err(FrameError::Truncated)
        ));
        let mut r = FrameReader::new(&frame[..]);
        assert_eq!(
            r.read::<ToWorker>().await.expect("ok"),
            Some(ToWorker::Shutdown)
        );
        assert!(r.read::<ToWorker>().await.expect("clean eof").is_none());
    }
}
