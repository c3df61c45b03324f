//! Length-prefixed frames: a 4-byte little-endian length, then that many
//! bytes of sk-cereal internal format.
//!
//! A reader refuses a declared length above its limit before allocating
//! anything, so a length prefix of 4 GiB costs nothing; a channel that
//! ends inside a frame is a typed error, not a hang or a panic.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_cereal::Internal;

use crate::error::ProtocolError;

/// The default largest frame: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// A reader refusing frames above `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next frame's payload; `Ok(None)` when the stream ends cleanly
    /// between frames.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TooLarge`] for a declared length above the limit,
    /// [`ProtocolError::Truncated`] when the stream ends inside a frame,
    /// [`ProtocolError::Io`] when reading fails.
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        let mut header = [0u8; 4];
        let got = read_full(&mut self.inner, &mut header)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(ProtocolError::Truncated {
                expected: header.len(),
                got,
            });
        }
        let len = u32::from_le_bytes(header);
        if len as usize > self.max {
            return Err(ProtocolError::TooLarge {
                len: u64::from(len),
                max: self.max,
            });
        }
        let len = len as usize;
        self.buf.clear();
        self.buf.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.buf)?;
        if got < len {
            return Err(ProtocolError::Truncated { expected: len, got });
        }
        Ok(Some(&self.buf))
    }

    /// The next frame decoded as a `T`.
    ///
    /// # Errors
    ///
    /// As [`FrameReader::read_frame`], and [`ProtocolError::Malformed`]
    /// when the payload is not a `T`.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtocolError> {
        match self.read_frame()? {
            Some(bytes) => Internal::decode(bytes)
                .map(Some)
                .map_err(ProtocolError::Malformed),
            None => Ok(None),
        }
    }
}

/// Reads until `buf` is full or the stream ends; how many bytes arrived.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encodes `message` as one frame (header and payload in one buffer, so a
/// single write puts it on the channel whole).
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when the message does not serialize, or
/// [`ProtocolError::TooLarge`] when it exceeds `max`.
pub fn encode_frame<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut frame = vec![0u8; 4];
    Internal::encode_into(message, &mut frame).map_err(ProtocolError::Malformed)?;
    let len = frame.len() - 4;
    if len > max || u32::try_from(len).is_err() {
        return Err(ProtocolError::TooLarge {
            len: len as u64,
            max,
        });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// Writes one encoded frame.
///
/// # Errors
///
/// [`ProtocolError::Io`] when the channel fails.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> Result<(), ProtocolError> {
    w.write_all(frame)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut wire = Vec::new();
        for msg in ["one", "two", ""] {
            wire.extend(encode_frame(&msg.to_owned(), DEFAULT_MAX_FRAME).unwrap());
        }
        let mut r = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME);
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some("one"));
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some("two"));
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some(""));
        assert!(r.read::<String>().unwrap().is_none());
    }

    #[test]
    fn a_4_gib_length_prefix_is_refused_without_allocating() {
        let wire = u32::MAX.to_le_bytes();
        let mut r = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME);
        let err = r.read_frame().unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { len, .. } if len == u64::from(u32::MAX)),
            "{err:?}"
        );
        assert!(r.buf.capacity() == 0, "nothing was allocated");
        assert_eq!(
            err.to_string(),
            "frame of 4294967295 bytes exceeds the limit of 67108864 bytes"
        );
    }

    #[test]
    fn a_truncated_frame_is_a_typed_error() {
        let frame = encode_frame(&"hello".to_owned(), DEFAULT_MAX_FRAME).unwrap();
        for cut in 1..frame.len() {
            let mut r = FrameReader::new(&frame[..cut], DEFAULT_MAX_FRAME);
            let err = r.read_frame().unwrap_err();
            assert!(
                matches!(err, ProtocolError::Truncated { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_malformed() {
        let frame = encode_frame(&"text".to_owned(), DEFAULT_MAX_FRAME).unwrap();
        let mut r = FrameReader::new(&frame[..], DEFAULT_MAX_FRAME);
        let err = r.read::<(u64, u64, u64)>().unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn encoding_above_the_limit_is_refused() {
        let err = encode_frame(&vec![0u8; 100], 10).unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { max: 10, .. }),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = FrameReader::new(&bytes[..], 1 << 10);
            // Read until the stream ends or an error; every outcome is typed.
            for _ in 0..64 {
                match r.read::<Vec<String>>() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
