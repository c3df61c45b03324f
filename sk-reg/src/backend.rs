//! The storage backend trait, the stored value format and the in-process
//! backend.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sk_cereal::Internal;

use crate::error::StorageError;

/// A value as a [`StorageBackend`] keeps it: the Rust type name it was
/// stored as, and its [`sk_cereal::Internal`] encoding.
///
/// The type name lets [`GlobalStorage::get`](crate::GlobalStorage::get)
/// refuse to decode a value as another type
/// ([`StorageError::TypeMismatch`]) instead of silently mis-decoding it. It
/// is `std::any::type_name`, which is stable within one build of a program:
/// exactly the processes that share a storage (a parent and the workers it
/// spawned from its own executable).
///
/// The struct is itself serializable, so a remote backend can send it over
/// its transport unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredValue {
    /// `std::any::type_name` of the stored type.
    pub type_name: String,
    /// The value encoded with [`sk_cereal::Internal`].
    pub bytes: Vec<u8>,
}

impl StoredValue {
    /// Encodes `value`, recording its type.
    ///
    /// # Errors
    ///
    /// [`StorageError::Encode`] (naming `key`) when the value does not
    /// serialize.
    pub fn encode<T: Serialize>(key: &str, value: &T) -> Result<Self, StorageError> {
        let bytes = Internal::encode(value).map_err(|source| StorageError::Encode {
            key: key.to_owned(),
            source,
        })?;
        Ok(StoredValue {
            type_name: std::any::type_name::<T>().to_owned(),
            bytes,
        })
    }

    /// Decodes the value as a `T`.
    ///
    /// # Errors
    ///
    /// [`StorageError::TypeMismatch`] when the value was stored as another
    /// type, [`StorageError::Decode`] when the bytes do not decode.
    pub fn decode<T: DeserializeOwned>(&self, key: &str) -> Result<T, StorageError> {
        let expected = std::any::type_name::<T>();
        if self.type_name != expected {
            return Err(StorageError::TypeMismatch {
                key: key.to_owned(),
                expected: expected.to_owned(),
                found: self.type_name.clone(),
            });
        }
        Internal::decode(&self.bytes).map_err(|source| StorageError::Decode {
            key: key.to_owned(),
            source,
        })
    }
}

/// Result of [`StorageBackend::compare_and_swap`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasOutcome {
    /// The current value equalled the expected one and was replaced.
    Swapped,
    /// The current value differed; it is returned so the caller can retry
    /// without another load.
    Conflict(Option<StoredValue>),
}

/// Where a [`GlobalStorage`](crate::GlobalStorage) keeps its values.
///
/// [`InProcessBackend`] is a concurrent map. A process that hosts the
/// storage for its workers serves these five operations over IPC, and the
/// workers use a backend that forwards each call to it; because
/// [`compare_and_swap`](StorageBackend::compare_and_swap) is one of the
/// operations, [`GlobalStorage::update`](crate::GlobalStorage::update) is
/// atomic across processes too.
///
/// Every operation must be atomic with respect to the others.
pub trait StorageBackend: Send + Sync + std::fmt::Debug {
    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend cannot answer.
    fn load(&self, key: &str) -> Result<Option<StoredValue>, StorageError>;

    /// Stores `value` under `key`, overwriting any previous value.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend cannot answer.
    fn store(&self, key: &str, value: StoredValue) -> Result<(), StorageError>;

    /// Removes `key` and returns its value.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend cannot answer.
    fn remove(&self, key: &str) -> Result<Option<StoredValue>, StorageError>;

    /// Replaces the value under `key` by `new` (`None` removes it) if and
    /// only if the current value equals `expected` (`None`: the key is
    /// absent).
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend cannot answer.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&StoredValue>,
        new: Option<StoredValue>,
    ) -> Result<CasOutcome, StorageError>;

    /// Every key, in no particular order.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend cannot answer.
    fn keys(&self) -> Result<Vec<String>, StorageError>;
}

/// A [`StorageBackend`] in this process's memory (a dashmap). Never fails.
#[derive(Debug, Default)]
pub struct InProcessBackend {
    map: DashMap<String, StoredValue>,
}

impl InProcessBackend {
    /// An empty backend.
    pub fn new() -> Self {
        InProcessBackend::default()
    }
}

impl StorageBackend for InProcessBackend {
    fn load(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        Ok(self.map.get(key).map(|r| r.value().clone()))
    }

    fn store(&self, key: &str, value: StoredValue) -> Result<(), StorageError> {
        self.map.insert(key.to_owned(), value);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        Ok(self.map.remove(key).map(|(_, value)| value))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&StoredValue>,
        new: Option<StoredValue>,
    ) -> Result<CasOutcome, StorageError> {
        // The entry holds the shard's write lock, so the comparison and the
        // swap are one atomic step.
        let outcome = match (self.map.entry(key.to_owned()), expected) {
            (MapEntry::Occupied(mut occupied), Some(expected)) if occupied.get() == expected => {
                match new {
                    Some(new) => {
                        occupied.insert(new);
                    }
                    None => {
                        occupied.remove();
                    }
                }
                CasOutcome::Swapped
            }
            (MapEntry::Occupied(occupied), _) => CasOutcome::Conflict(Some(occupied.get().clone())),
            (MapEntry::Vacant(vacant), None) => {
                if let Some(new) = new {
                    vacant.insert(new);
                }
                CasOutcome::Swapped
            }
            (MapEntry::Vacant(_), Some(_)) => CasOutcome::Conflict(None),
        };
        Ok(outcome)
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.map.iter().map(|r| r.key().clone()).collect())
    }
}
