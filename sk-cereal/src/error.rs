//! The error type of every fallible operation in this crate.

use std::fmt;

use crate::envelope::MAGIC;
use crate::path::{Segment, ValuePath};

/// A boxed error kept as the [`source`](std::error::Error::source) of a
/// [`CerealError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why encoding, decoding, snapshotting or restoring failed.
///
/// Errors about a value carry the [`ValuePath`] of the part that failed;
/// [`CerealError::with_context`] prefixes it with the caller's own steps.
///
/// # Examples
///
/// ```
/// use sk_cereal::{CerealError, Format, Internal};
/// let err = Internal::decode::<u64>(&[]).unwrap_err();
/// assert!(matches!(err, CerealError::Deserialize { .. }));
/// assert!(err.to_string().starts_with("cannot deserialize value at <root> (internal format)"));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CerealError {
    /// A value refused to serialize (its `Serialize` impl failed, or the
    /// format cannot express it).
    #[error("cannot serialize value at {path} ({format} format)")]
    Serialize {
        /// The format's [`NAME`](crate::Format::NAME).
        format: &'static str,
        /// Where the failing value sits.
        path: ValuePath,
        /// The reason given by the value or the format.
        #[source]
        source: BoxError,
    },
    /// The bytes do not hold a valid value of the requested type.
    #[error("cannot deserialize value at {path} ({format} format)")]
    Deserialize {
        /// The format's [`NAME`](crate::Format::NAME).
        format: &'static str,
        /// Where the failing value sits.
        path: ValuePath,
        /// The reason given by the format or the target type.
        #[source]
        source: BoxError,
    },
    /// The bytes nest deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("value at {path} nests deeper than the limit of {max_depth} levels ({format} format)")]
    DepthLimit {
        /// The format's [`NAME`](crate::Format::NAME).
        format: &'static str,
        /// Where the limit was hit (best effort).
        path: ValuePath,
        /// The limit in force.
        max_depth: usize,
    },
    /// The input is longer than [`Limits::max_input_bytes`](crate::Limits::max_input_bytes).
    #[error("input of {len} bytes exceeds the limit of {max} bytes ({format} format)")]
    InputTooLarge {
        /// The format's [`NAME`](crate::Format::NAME).
        format: &'static str,
        /// The input length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A complete value was decoded but bytes remain after it.
    #[error("{count} trailing bytes after a complete value ({format} format)")]
    TrailingBytes {
        /// The format's [`NAME`](crate::Format::NAME).
        format: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// External bytes do not start with the magic `SKCE`.
    #[error("not external-format bytes: expected magic {expected}, found {found}", expected = Bytes(MAGIC), found = Bytes(found))]
    BadMagic {
        /// The first (up to four) bytes of the input.
        found: Vec<u8>,
    },
    /// The protobuf envelope of external bytes is malformed.
    #[error("malformed external envelope")]
    Envelope {
        /// The protobuf decoding error.
        #[source]
        source: prost::DecodeError,
    },
    /// External bytes were written by a newer (or unknown) format version.
    #[error(
        "external format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the envelope.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The envelope names a payload encoding other than `cbor`.
    #[error("unsupported payload encoding {found:?} (expected \"cbor\")")]
    PayloadEncoding {
        /// The encoding named in the envelope.
        found: String,
    },
    /// The envelope holds a value of another type.
    #[error("type name mismatch: expected {expected:?}, found {found:?}")]
    TypeMismatch {
        /// The type name the caller asked for.
        expected: String,
        /// The type name in the envelope.
        found: String,
    },
    /// A live object could not give its state.
    #[error("cannot snapshot {type_name}")]
    Snapshot {
        /// The live object's type.
        type_name: &'static str,
        /// The object's own error.
        #[source]
        source: BoxError,
    },
    /// A live object could not be rebuilt from its state.
    #[error("cannot restore {type_name} from its snapshot")]
    Restore {
        /// The live object's type.
        type_name: &'static str,
        /// The object's own error.
        #[source]
        source: BoxError,
    },
    /// An error without a value path of its own, placed in a caller's context
    /// by [`CerealError::with_context`].
    #[error("at {path}")]
    InContext {
        /// The caller-supplied path.
        path: ValuePath,
        /// The underlying error.
        #[source]
        source: Box<CerealError>,
    },
}

impl CerealError {
    /// The path of the value this error is about, if it names one.
    pub fn path(&self) -> Option<&ValuePath> {
        match self {
            Self::Serialize { path, .. }
            | Self::Deserialize { path, .. }
            | Self::DepthLimit { path, .. }
            | Self::InContext { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Prefixes the error's path with `segment`, so a caller can say which
    /// argument, part or cycle the value belongs to.
    ///
    /// Errors that carry no path are wrapped in [`CerealError::InContext`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cereal::{CerealError, Format, Internal, Segment};
    /// let err = Internal::decode::<String>(&[]).unwrap_err()
    ///     .with_context(Segment::arg("size"))
    ///     .with_context(Segment::context("function", "resize"));
    /// assert_eq!(err.path().unwrap().to_string(), r#"function "resize" > arg "size""#);
    /// ```
    #[must_use]
    pub fn with_context(self, segment: Segment) -> Self {
        match self {
            Self::Serialize {
                format,
                path,
                source,
            } => Self::Serialize {
                format,
                path: path.prefixed(segment),
                source,
            },
            Self::Deserialize {
                format,
                path,
                source,
            } => Self::Deserialize {
                format,
                path: path.prefixed(segment),
                source,
            },
            Self::DepthLimit {
                format,
                path,
                max_depth,
            } => Self::DepthLimit {
                format,
                path: path.prefixed(segment),
                max_depth,
            },
            Self::InContext { path, source } => Self::InContext {
                path: path.prefixed(segment),
                source,
            },
            other => Self::InContext {
                path: ValuePath::from(vec![segment]),
                source: Box::new(other),
            },
        }
    }
}

/// A reason given as text by a `Serialize`/`Deserialize` impl, kept because
/// postcard drops custom messages.
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Renders bytes as an escaped byte-string literal.
struct Bytes<'a>(&'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in self.0 {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        f.write_str("\"")
    }
}
