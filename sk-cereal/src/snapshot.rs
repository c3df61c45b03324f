//! Live objects that can be turned into state and rebuilt from it.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A live object (holding threads, channels, handles) that can give a
/// serializable state and be rebuilt from it.
///
/// `snapshot` must return a consistent state while the object keeps running;
/// `restore` builds a new, independent live object. Encode and decode through
/// [`Format::encode_snapshot`](crate::Format::encode_snapshot) and
/// [`Format::decode_snapshot`](crate::Format::decode_snapshot).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use sk_cereal::{CerealError, Format, Internal, Snapshot};
///
/// /// A live counter that other threads bump while it runs.
/// struct Counter(AtomicU64);
///
/// impl Snapshot for Counter {
///     type State = u64;
///     type Error = Infallible;
///
///     fn snapshot(&self) -> Result<u64, Infallible> {
///         Ok(self.0.load(Ordering::SeqCst))
///     }
///
///     fn restore(state: u64) -> Result<Self, Infallible> {
///         Ok(Counter(AtomicU64::new(state)))
///     }
/// }
///
/// let live = Counter(AtomicU64::new(5));
/// let bytes = Internal::encode_snapshot(&live)?;
/// live.0.fetch_add(1, Ordering::SeqCst); // the original keeps running
/// let copy: Counter = Internal::decode_snapshot(&bytes)?;
/// assert_eq!(copy.0.load(Ordering::SeqCst), 5);
/// # Ok::<(), CerealError>(())
/// ```
pub trait Snapshot: Sized {
    /// The serializable state.
    type State: Serialize + DeserializeOwned;
    /// Why a snapshot or restore failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Gathers the current state without stopping the object.
    ///
    /// # Errors
    ///
    /// When the object cannot report its state (e.g. its worker is gone).
    fn snapshot(&self) -> Result<Self::State, Self::Error>;

    /// Builds a new live object from `state`.
    ///
    /// # Errors
    ///
    /// When the object cannot be started (e.g. a thread cannot be spawned).
    fn restore(state: Self::State) -> Result<Self, Self::Error>;
}
