//! The internal format: postcard, for same-build process-to-process traffic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bounded::Bounded;
use crate::error::{BoxError, CerealError, Message};
use crate::format::Format;
use crate::guard::{Guard, Report, State};
use crate::limits::Limits;
use crate::path::ValuePath;
use crate::track_ser::{SerState, Tracked};

/// The fast, compact format for traffic between processes of the same build.
///
/// Bytes are [postcard](https://docs.rs/postcard): no type information, no
/// versioning, so both sides must use the same types. Decoding bounds input
/// length and nesting depth ([`Limits`]) and rejects trailing bytes.
///
/// # Examples
///
/// ```
/// use sk_cereal::{Format, Internal};
/// let bytes = Internal::encode(&("size", 640_u32)).unwrap();
/// let back: (String, u32) = Internal::decode(&bytes).unwrap();
/// assert_eq!(back, ("size".to_owned(), 640));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Internal;

impl Format for Internal {
    const NAME: &'static str = "internal";

    #[inline]
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CerealError> {
        postcard::to_allocvec(value).map_err(|err| serialize_error(value, err))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CerealError> {
        Self::decode_with(bytes, &Limits::default())
    }
}

impl Internal {
    /// Encodes `value` (the same as [`Format::encode`], without importing
    /// the trait).
    ///
    /// # Errors
    ///
    /// As [`Format::encode`].
    #[inline]
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CerealError> {
        <Self as Format>::encode(value)
    }

    /// Decodes a `T` (the same as [`Format::decode`], without importing
    /// the trait).
    ///
    /// # Errors
    ///
    /// As [`Format::decode`].
    #[inline]
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CerealError> {
        <Self as Format>::decode(bytes)
    }

    /// Appends the encoding of `value` to `out`, reusing its capacity.
    ///
    /// On error `out` is left as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cereal::{Format, Internal};
    /// let mut out = vec![0xAA];
    /// Internal::encode_into(&7_u8, &mut out).unwrap();
    /// assert_eq!(out, [0xAA, 7]);
    /// ```
    ///
    /// # Errors
    ///
    /// [`CerealError::Serialize`] naming the path of the value that failed.
    pub fn encode_into<T: Serialize + ?Sized>(
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CerealError> {
        let start = out.len();
        match postcard::serialize_with_flavor(value, Append(out)) {
            Ok(()) => Ok(()),
            Err(err) => {
                out.truncate(start);
                Err(serialize_error(value, err))
            }
        }
    }

    /// Decodes a `T` under explicit [`Limits`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cereal::{CerealError, Format, Internal, Limits};
    /// let bytes = Internal::encode(&vec![1_u8; 100]).unwrap();
    /// let limits = Limits::default().with_max_input_bytes(10);
    /// let err = Internal::decode_with::<Vec<u8>>(&bytes, &limits).unwrap_err();
    /// assert!(matches!(err, CerealError::InputTooLarge { len: 101, max: 10, .. }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`CerealError::InputTooLarge`], [`CerealError::DepthLimit`],
    /// [`CerealError::TrailingBytes`], or [`CerealError::Deserialize`] naming
    /// the path of the value that could not be read.
    #[inline]
    pub fn decode_with<T: DeserializeOwned>(
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<T, CerealError> {
        if bytes.len() > limits.max_input_bytes {
            return Err(CerealError::InputTooLarge {
                format: Self::NAME,
                len: bytes.len(),
                max: limits.max_input_bytes,
            });
        }
        let mut de = postcard::Deserializer::from_bytes(bytes);
        match T::deserialize(Bounded::new(&mut de, limits.max_depth)) {
            Ok(value) => match de.finalize() {
                Ok([]) => Ok(value),
                Ok(rest) => Err(CerealError::TrailingBytes {
                    format: Self::NAME,
                    count: rest.len(),
                }),
                Err(err) => Err(decode_error(
                    Self::NAME,
                    limits,
                    Report::default(),
                    err.into(),
                )),
            },
            Err(_) => Err(Self::explain_decode_failure::<T>(bytes, limits)),
        }
    }

    /// The failure path: decodes again with path tracking.
    #[cold]
    #[inline(never)]
    fn explain_decode_failure<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> CerealError {
        let state = State::new(limits.max_depth);
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let source: BoxError = match T::deserialize(Guard::new(&mut de, &state)) {
            Err(err) => Box::new(state.lower(err)),
            // Decoding is deterministic; should a hand-written impl differ
            // between runs, still report a failure, at the root.
            Ok(_) => Box::new(Message(
                "decoding failed on the first attempt only".to_owned(),
            )),
        };
        decode_error(Self::NAME, limits, state.into_report(), source)
    }
}

/// Builds the error for a failed decode from a failure-path report.
pub(crate) fn decode_error(
    format: &'static str,
    limits: &Limits,
    report: Report,
    inner: BoxError,
) -> CerealError {
    let path = ValuePath::from(report.path);
    if report.tripped {
        return CerealError::DepthLimit {
            format,
            path,
            max_depth: limits.max_depth,
        };
    }
    let source = match report.message {
        Some(message) => Box::new(Message(message)),
        None => inner,
    };
    CerealError::Deserialize {
        format,
        path,
        source,
    }
}

/// Builds the error for a failed encode, re-running with path tracking.
#[cold]
#[inline(never)]
fn serialize_error<T: Serialize + ?Sized>(value: &T, first: postcard::Error) -> CerealError {
    let state = SerState::default();
    let second = postcard::to_allocvec(&Tracked { value, st: &state }).err();
    let message = state.take_message();
    let path = ValuePath::from(state.track.into_path());
    let source: BoxError = match (message, second) {
        (Some(message), _) => Box::new(Message(message)),
        (None, Some(err)) => Box::new(err),
        (None, None) => Box::new(first),
    };
    CerealError::Serialize {
        format: Internal::NAME,
        path,
        source,
    }
}

/// A postcard flavor appending to a caller's buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
