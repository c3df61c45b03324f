//! The `Format` trait shared by the internal and external formats.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CerealError;
use crate::snapshot::Snapshot;

/// A way to turn values into bytes and back.
///
/// Implemented by [`Internal`](crate::Internal) (fast, same-build traffic) and
/// [`External`](crate::External) (versioned, self-describing, for disk and
/// other programs). Decoding applies [`Limits::default`](crate::Limits).
///
/// # Examples
///
/// ```
/// use sk_cereal::{External, Format, Internal};
/// fn round_trip<F: Format>(v: &Vec<u32>) -> Vec<u32> {
///     F::decode(&F::encode(v).unwrap()).unwrap()
/// }
/// assert_eq!(round_trip::<Internal>(&vec![1, 2]), vec![1, 2]);
/// assert_eq!(round_trip::<External>(&vec![1, 2]), vec![1, 2]);
/// ```
pub trait Format {
    /// The format's name as used in error messages (`internal`, `external`).
    const NAME: &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// [`CerealError::Serialize`] naming the path of the value that failed.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CerealError>;

    /// Decodes a `T` from `bytes`, which must hold exactly one value.
    ///
    /// # Errors
    ///
    /// A typed [`CerealError`] for oversized, malformed, truncated, too deep
    /// or trailing input; never a panic.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CerealError>;

    /// Encodes the [`Snapshot::State`] of a live object.
    ///
    /// # Errors
    ///
    /// [`CerealError::Snapshot`] if the object cannot give its state, else as
    /// [`Format::encode`].
    fn encode_snapshot<S: Snapshot>(object: &S) -> Result<Vec<u8>, CerealError> {
        let state = object.snapshot().map_err(|err| CerealError::Snapshot {
            type_name: std::any::type_name::<S>(),
            source: Box::new(err),
        })?;
        Self::encode(&state)
    }

    /// Decodes a [`Snapshot::State`] and rebuilds a live object from it.
    ///
    /// # Errors
    ///
    /// As [`Format::decode`], or [`CerealError::Restore`] if the object cannot
    /// be rebuilt.
    fn decode_snapshot<S: Snapshot>(bytes: &[u8]) -> Result<S, CerealError> {
        let state = Self::decode::<S::State>(bytes)?;
        S::restore(state).map_err(|err| CerealError::Restore {
            type_name: std::any::type_name::<S>(),
            source: Box::new(err),
        })
    }
}
