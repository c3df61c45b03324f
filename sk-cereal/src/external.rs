//! The external format: a protobuf envelope around a CBOR payload.

use std::cell::RefCell;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer};

use crate::envelope::{Envelope, MAGIC};
use crate::error::{BoxError, CerealError, Message};
use crate::format::Format;
use crate::guard::{Guard, Report, State};
use crate::internal::decode_error;
use crate::limits::Limits;
use crate::path::ValuePath;
use crate::track_ser::{SerState, Tracked};

/// The stable, self-describing format for disk and other programs.
///
/// Bytes are `b"SKCE"` followed by a protobuf envelope holding the format
/// version, the value's type name, the payload encoding (`"cbor"`) and the
/// payload, a CBOR (RFC 8949) encoding of the value. See the crate docs,
/// section *External wire format*, for the exact layout.
///
/// The type name defaults to [`std::any::type_name`], which is not stable
/// across compiler versions or module moves; use [`External::encode_named`]
/// and [`External::decode_named`] with an explicit name for data that must
/// outlive the build.
///
/// # Examples
///
/// ```
/// use sk_cereal::{External, Format};
/// let bytes = External::encode_named(&vec![1_u16, 2], "demo.Numbers").unwrap();
/// let info = External::inspect(&bytes).unwrap();
/// assert_eq!(info.type_name, "demo.Numbers");
/// let back: Vec<u16> = External::decode_named(&bytes, "demo.Numbers").unwrap();
/// assert_eq!(back, [1, 2]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct External;

/// What the envelope of external bytes says, read without decoding the payload.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// The format version that wrote the bytes.
    pub format_version: u32,
    /// The type name recorded by the writer.
    pub type_name: String,
    /// The payload encoding (`"cbor"` for version 1).
    pub payload_encoding: String,
    /// The payload length in bytes.
    pub payload_len: usize,
}

impl Format for External {
    const NAME: &'static str = "external";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CerealError> {
        Self::encode_named(value, std::any::type_name::<T>())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CerealError> {
        Self::decode_named_with(bytes, std::any::type_name::<T>(), &Limits::default())
    }
}

impl External {
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

    /// The magic bytes every external encoding starts with.
    pub const MAGIC: [u8; 4] = *MAGIC;
    /// The format version this build writes and reads.
    pub const FORMAT_VERSION: u32 = 1;
    /// The payload encoding this build writes and reads.
    pub const PAYLOAD_ENCODING: &'static str = "cbor";

    /// Encodes `value` recording `type_name` as its type.
    ///
    /// # Errors
    ///
    /// [`CerealError::Serialize`] naming the path of the value that failed.
    pub fn encode_named<T: Serialize + ?Sized>(
        value: &T,
        type_name: &str,
    ) -> Result<Vec<u8>, CerealError> {
        let mut payload = Vec::new();
        if let Err(err) = ciborium::into_writer(value, &mut payload) {
            return Err(serialize_error(value, err));
        }
        let envelope = Envelope {
            format_version: Self::FORMAT_VERSION,
            type_name: type_name.to_owned(),
            payload_encoding: Self::PAYLOAD_ENCODING.to_owned(),
            payload,
        };
        let mut out = Vec::with_capacity(MAGIC.len() + prost::Message::encoded_len(&envelope));
        out.extend_from_slice(MAGIC);
        // A `Vec` grows as needed, so the infallible raw encoding applies.
        prost::Message::encode_raw(&envelope, &mut out);
        Ok(out)
    }

    /// Decodes a value recorded under `type_name`.
    ///
    /// # Errors
    ///
    /// As [`External::decode_named_with`] with [`Limits::default`].
    pub fn decode_named<T: DeserializeOwned>(
        bytes: &[u8],
        type_name: &str,
    ) -> Result<T, CerealError> {
        Self::decode_named_with(bytes, type_name, &Limits::default())
    }

    /// Decodes a value whose type name is [`std::any::type_name::<T>`] under
    /// explicit [`Limits`].
    ///
    /// # Errors
    ///
    /// As [`External::decode_named_with`].
    pub fn decode_with<T: DeserializeOwned>(
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<T, CerealError> {
        Self::decode_named_with(bytes, std::any::type_name::<T>(), limits)
    }

    /// Decodes a value recorded under `type_name`, under explicit [`Limits`].
    ///
    /// Checks, in order: input length, magic, envelope, format version,
    /// payload encoding, type name, then the payload (depth-limited by
    /// [`Limits::max_depth`], no trailing bytes).
    ///
    /// # Errors
    ///
    /// [`CerealError::InputTooLarge`], [`CerealError::BadMagic`],
    /// [`CerealError::Envelope`], [`CerealError::UnsupportedVersion`],
    /// [`CerealError::PayloadEncoding`], [`CerealError::TypeMismatch`],
    /// [`CerealError::DepthLimit`], [`CerealError::TrailingBytes`] or
    /// [`CerealError::Deserialize`] naming the path of the failing value.
    pub fn decode_named_with<T: DeserializeOwned>(
        bytes: &[u8],
        type_name: &str,
        limits: &Limits,
    ) -> Result<T, CerealError> {
        let envelope = Self::open(bytes, limits)?;
        if envelope.type_name != type_name {
            return Err(CerealError::TypeMismatch {
                expected: type_name.to_owned(),
                found: envelope.type_name,
            });
        }
        let mut reader: &[u8] = &envelope.payload;
        match ciborium::de::from_reader_with_recursion_limit::<T, _>(&mut reader, limits.max_depth)
        {
            Ok(value) if reader.is_empty() => Ok(value),
            Ok(_) => Err(CerealError::TrailingBytes {
                format: Self::NAME,
                count: reader.len(),
            }),
            Err(err) => Err(explain_decode_failure::<T>(&envelope.payload, limits, err)),
        }
    }

    /// Reads the envelope of external bytes without decoding the payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cereal::{External, Format};
    /// let info = External::inspect(&External::encode(&42_u8).unwrap()).unwrap();
    /// assert_eq!((info.format_version, info.type_name.as_str()), (1, "u8"));
    /// ```
    ///
    /// # Errors
    ///
    /// The envelope checks of [`External::decode_named_with`] (length under
    /// [`Limits::default`], magic, envelope, version, payload encoding).
    pub fn inspect(bytes: &[u8]) -> Result<EnvelopeInfo, CerealError> {
        let envelope = Self::open(bytes, &Limits::default())?;
        Ok(EnvelopeInfo {
            format_version: envelope.format_version,
            type_name: envelope.type_name,
            payload_encoding: envelope.payload_encoding,
            payload_len: envelope.payload.len(),
        })
    }

    /// Checks length, magic, envelope, version and payload encoding.
    fn open(bytes: &[u8], limits: &Limits) -> Result<Envelope, CerealError> {
        if bytes.len() > limits.max_input_bytes {
            return Err(CerealError::InputTooLarge {
                format: Self::NAME,
                len: bytes.len(),
                max: limits.max_input_bytes,
            });
        }
        let Some(body) = bytes.strip_prefix(MAGIC) else {
            return Err(CerealError::BadMagic {
                found: bytes.iter().take(MAGIC.len()).copied().collect(),
            });
        };
        let envelope = <Envelope as prost::Message>::decode(body)
            .map_err(|source| CerealError::Envelope { source })?;
        if envelope.format_version != Self::FORMAT_VERSION {
            return Err(CerealError::UnsupportedVersion {
                found: envelope.format_version,
                supported: Self::FORMAT_VERSION,
            });
        }
        if envelope.payload_encoding != Self::PAYLOAD_ENCODING {
            return Err(CerealError::PayloadEncoding {
                found: envelope.payload_encoding,
            });
        }
        Ok(envelope)
    }
}

thread_local! {
    /// Hands the failure report out of [`TrackedDe::deserialize`], which
    /// ciborium calls without a way to pass state in or out.
    static REPORT: RefCell<Option<Report>> = const { RefCell::new(None) };
}

/// Decodes a `T` through the path-tracking guard (failure path only).
struct TrackedDe<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for TrackedDe<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // ciborium bounds the depth itself; the guard only tracks the path.
        let state = State::new(usize::MAX);
        let result =
            T::deserialize(Guard::new(deserializer, &state)).map_err(|err| state.lower(err));
        REPORT.with(|slot| *slot.borrow_mut() = Some(state.into_report()));
        result.map(TrackedDe)
    }
}

/// The failure path of decoding: decodes again with path tracking.
#[cold]
#[inline(never)]
fn explain_decode_failure<T: DeserializeOwned>(
    payload: &[u8],
    limits: &Limits,
    first: ciborium::de::Error<std::io::Error>,
) -> CerealError {
    REPORT.with(|slot| slot.borrow_mut().take());
    let second = ciborium::de::from_reader_with_recursion_limit::<TrackedDe<T>, _>(
        payload,
        limits.max_depth,
    );
    let mut report = REPORT
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_default();
    if matches!(first, ciborium::de::Error::RecursionLimitExceeded) {
        report.tripped = true;
    }
    let source: BoxError = match second {
        Err(err) => Box::new(err),
        Ok(_) => Box::new(first),
    };
    decode_error(External::NAME, limits, report, source)
}

/// Builds the error for a failed encode, re-running with path tracking.
#[cold]
#[inline(never)]
fn serialize_error<T: Serialize + ?Sized>(
    value: &T,
    first: ciborium::ser::Error<std::io::Error>,
) -> CerealError {
    let state = SerState::default();
    let second = ciborium::into_writer(&Tracked { value, st: &state }, Vec::new()).err();
    let message = state.take_message();
    let path = ValuePath::from(state.track.into_path());
    let source: BoxError = match (message, second) {
        (Some(message), _) => Box::new(Message(message)),
        (None, Some(err)) => Box::new(err),
        (None, None) => Box::new(first),
    };
    CerealError::Serialize {
        format: External::NAME,
        path,
        source,
    }
}
