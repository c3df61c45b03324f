//! `GlobalStorage`: a typed key/value store over a [`StorageBackend`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{CasOutcome, InProcessBackend, StorageBackend, StoredValue};
use crate::error::StorageError;

/// A typed key/value store, shared by every thread of a process and —
/// through a remote [`StorageBackend`] — by the worker processes of the
/// same commander (the role of `multiprocessing.Manager` dicts in
/// Python).
///
/// Values are encoded with [`sk_cereal::Internal`] and kept as
/// [`StoredValue`]s that remember their type, so reading a value as the
/// wrong type is a [`StorageError::TypeMismatch`], never garbage.
///
/// [`update`](GlobalStorage::update) is an atomic read-modify-write built
/// on the backend's compare-and-swap, so it stays atomic when the backend
/// is another process.
///
/// Cloning a `GlobalStorage` gives another handle on the same backend.
///
/// # Examples
///
/// ```
/// use sk_reg::{GlobalStorage, Key};
///
/// const RUNS: Key<u64> = Key::new("runs");
///
/// let storage = GlobalStorage::new();
/// storage.set("greeting", &String::from("hello"))?;
/// assert_eq!(storage.get::<String>("greeting")?.as_deref(), Some("hello"));
///
/// storage.update_key(&RUNS, |runs| runs.unwrap_or(0) + 1)?;
/// assert_eq!(storage.update_key(&RUNS, |runs| runs.unwrap_or(0) + 1)?, 2);
///
/// // Reading a value as another type is an error, not garbage.
/// assert!(storage.get::<u64>("greeting").is_err());
/// # Ok::<(), sk_reg::StorageError>(())
/// ```
#[derive(Clone)]
pub struct GlobalStorage {
    backend: Arc<dyn StorageBackend>,
}

static GLOBAL: OnceLock<GlobalStorage> = OnceLock::new();

impl GlobalStorage {
    /// A storage of this process only, over an [`InProcessBackend`].
    pub fn new() -> Self {
        GlobalStorage::with_backend(Arc::new(InProcessBackend::new()))
    }

    /// A storage over `backend`.
    pub fn with_backend(backend: Arc<dyn StorageBackend>) -> Self {
        GlobalStorage { backend }
    }

    /// The process-wide storage.
    ///
    /// In the process that hosts it (the parent, or any program that never
    /// spawns workers) it is created on first use over an
    /// [`InProcessBackend`]. A worker process installs a backend that talks
    /// to its parent with
    /// [`install_global_backend`](GlobalStorage::install_global_backend)
    /// before anything uses the storage.
    pub fn global() -> &'static GlobalStorage {
        GLOBAL.get_or_init(GlobalStorage::new)
    }

    /// Makes `backend` the backend of [`GlobalStorage::global`].
    ///
    /// # Errors
    ///
    /// [`StorageError::GlobalAlreadyInitialized`] when the process-wide
    /// storage was already used or installed; it keeps its backend.
    pub fn install_global_backend(backend: Arc<dyn StorageBackend>) -> Result<(), StorageError> {
        GLOBAL
            .set(GlobalStorage::with_backend(backend))
            .map_err(|_| StorageError::GlobalAlreadyInitialized)
    }

    /// The backend this storage works on.
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// Stores `value` under `key`, replacing any previous value (of any
    /// type).
    ///
    /// # Errors
    ///
    /// [`StorageError::Encode`] when the value does not serialize, and the
    /// backend's errors.
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        self.backend.store(key, StoredValue::encode(key, value)?)
    }

    /// The value under `key`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`StorageError::TypeMismatch`] when the value was stored as another
    /// type, [`StorageError::Decode`] when it does not decode, and the
    /// backend's errors.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.backend
            .load(key)?
            .map(|stored| stored.decode(key))
            .transpose()
    }

    /// Atomically replaces the value under `key` by `f(current)` and
    /// returns the new value.
    ///
    /// This is a compare-and-swap loop: `f` receives the current value
    /// (`None` when absent), and if another writer changed the value in the
    /// meantime, `f` runs again on the newer value. So `f` may run more
    /// than once and should have no side effects beyond computing the new
    /// value. Every successful `update` is applied exactly once.
    ///
    /// # Errors
    ///
    /// [`StorageError::TypeMismatch`] when the current value has another
    /// type, encode/decode errors, and the backend's errors. On error the
    /// stored value is unchanged.
    pub fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, StorageError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let mut current = self.backend.load(key)?;
        let mut conflicts = 0u32;
        loop {
            let value = current
                .as_ref()
                .map(|stored| stored.decode::<T>(key))
                .transpose()?;
            let new = f(value);
            let encoded = StoredValue::encode(key, &new)?;
            match self
                .backend
                .compare_and_swap(key, current.as_ref(), Some(encoded))?
            {
                CasOutcome::Swapped => return Ok(new),
                CasOutcome::Conflict(actual) => {
                    current = actual;
                    conflicts = conflicts.saturating_add(1);
                    // After a few lost races, give the winners time to move
                    // on instead of burning the core they need.
                    if conflicts > 4 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }

    /// Removes the value under `key`; returns whether there was one.
    ///
    /// # Errors
    ///
    /// The backend's errors.
    pub fn remove(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.backend.remove(key)?.is_some())
    }

    /// Whether a value is stored under `key`.
    ///
    /// # Errors
    ///
    /// The backend's errors.
    pub fn contains(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.backend.load(key)?.is_some())
    }

    /// Every key, sorted.
    ///
    /// # Errors
    ///
    /// The backend's errors.
    pub fn keys(&self) -> Result<Vec<String>, StorageError> {
        let mut keys = self.backend.keys()?;
        keys.sort();
        Ok(keys)
    }

    /// [`get`](GlobalStorage::get) with a typed [`Key`].
    ///
    /// # Errors
    ///
    /// As [`get`](GlobalStorage::get).
    pub fn get_key<T: DeserializeOwned>(&self, key: &Key<T>) -> Result<Option<T>, StorageError> {
        self.get(key.name)
    }

    /// [`set`](GlobalStorage::set) with a typed [`Key`].
    ///
    /// # Errors
    ///
    /// As [`set`](GlobalStorage::set).
    pub fn set_key<T: Serialize>(&self, key: &Key<T>, value: &T) -> Result<(), StorageError> {
        self.set(key.name, value)
    }

    /// [`update`](GlobalStorage::update) with a typed [`Key`].
    ///
    /// # Errors
    ///
    /// As [`update`](GlobalStorage::update).
    pub fn update_key<T, F>(&self, key: &Key<T>, f: F) -> Result<T, StorageError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        self.update(key.name, f)
    }
}

impl Default for GlobalStorage {
    fn default() -> Self {
        GlobalStorage::new()
    }
}

impl fmt::Debug for GlobalStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalStorage")
            .field("backend", &self.backend)
            .finish()
    }
}

/// A storage key that fixes the type of its value, usable in `const`s.
///
/// # Examples
///
/// ```
/// use sk_reg::{GlobalStorage, Key};
///
/// const LIMIT: Key<u32> = Key::new("limit");
/// let storage = GlobalStorage::new();
/// storage.set_key(&LIMIT, &10)?;
/// assert_eq!(storage.get_key(&LIMIT)?, Some(10));
/// assert_eq!(LIMIT.name(), "limit");
/// # Ok::<(), sk_reg::StorageError>(())
/// ```
pub struct Key<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A key called `name` holding `T` values.
    pub const fn new(name: &'static str) -> Self {
        Key {
            name,
            _type: PhantomData,
        }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Key").field(&self.name).finish()
    }
}

#[cfg(test)]
mod tests;
