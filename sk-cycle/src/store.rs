//! [`Store`]: the typed key/value store shared by the parts of a run.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_core::Value;

use crate::error::ReadError;
use crate::error::view_as;

/// One value and the revision it was written at.
#[derive(Clone)]
struct Slot {
    value: Arc<Value>,
    revision: u64,
}

/// A concurrent typed key/value store, shared by every part of a run —
/// on threads and, through the run, in worker processes (see
/// [`current_part`](crate::current_part)) — and kept across its
/// iterations.
///
/// A value set with [`set`](Store::set) is serializable, so a part in a
/// worker process reads it as a part on a thread does; one set with
/// [`set_local`](Store::set_local) (a connection, a handle: anything
/// without serde) is for the parts of this process only. Reads are
/// typed: a missing key or a value of another type is a [`ReadError`]
/// saying which, never a silent `None`.
///
/// # Examples
///
/// ```
/// use sk_cycle::Store;
/// let store = Store::new();
/// store.set("seen", 1u64);
/// store.update("seen", |n: Option<&u64>| n.copied().unwrap_or(0) + 1)?;
/// assert_eq!(store.get::<u64>("seen")?, 2);
/// assert!(store.get::<String>("seen").is_err()); // a `u64`, not a `String`
/// # Ok::<(), sk_cycle::ReadError>(())
/// ```
#[derive(Default)]
pub struct Store {
    map: DashMap<String, Slot>,
    /// The last revision given out (each write gets a new one).
    revision: AtomicU64,
    /// While a journaled run uses the store: the keys written outside any
    /// part's own thread (threads a part starts, observers), which the
    /// next recorded part end takes along (see `Durable::record`).
    stray: parking_lot::Mutex<Option<Vec<String>>>,
    /// How many journaled runs keep `stray` (read without its lock on
    /// every write).
    keeping_stray: AtomicU64,
    /// Whether `stray` may hold keys (read without its lock on every
    /// record).
    stray_noted: std::sync::atomic::AtomicBool,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// `value` in a slot of its own, at a new revision.
    fn slot_of(&self, value: Value) -> Slot {
        Slot {
            value: Arc::new(value),
            revision: self.revision.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Sets `key` to `value`, replacing what was there. Readable from
    /// parts in worker processes too.
    pub fn set<T: Serialize + Send + Sync + 'static>(&self, key: impl Into<String>, value: T) {
        self.set_value(key, Value::new(value));
    }

    /// Sets `key` to `value`, a value of any type for the parts of this
    /// process only (a part in a worker process reading it gets
    /// [`ReadError::LocalOnly`]).
    pub fn set_local<T: Send + Sync + 'static>(&self, key: impl Into<String>, value: T) {
        self.set_value(key, Value::local(value));
    }

    /// Sets `key` to an untyped `value`; the new revision.
    pub(crate) fn set_value(&self, key: impl Into<String>, value: Value) -> u64 {
        let slot = self.slot_of(value);
        let revision = slot.revision;
        let key = key.into();
        self.map.insert(key.clone(), slot);
        // Noted after the write: a record that takes the key reads the
        // new value.
        self.note_write(&key);
        revision
    }

    /// A copy of the value under `key` as a `T` (a value set in this
    /// process, or sent from a worker process and decoded once).
    ///
    /// # Errors
    ///
    /// [`ReadError::NotInStore`] when `key` is not set, [`ReadError::Type`]
    /// naming both types when the value is not a `T`.
    pub fn get<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Result<T, ReadError> {
        let value = self.get_value(key)?;
        view_as(&value, Value::get::<T>, || what(key)).cloned()
    }

    /// A copy of the value under `key` as a `T` of any type (set with
    /// [`set_local`](Store::set_local), or a `T` set with
    /// [`set`](Store::set)).
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub fn get_local<T: Clone + 'static>(&self, key: &str) -> Result<T, ReadError> {
        let value = self.get_value(key)?;
        view_as(&value, Value::downcast_ref::<T>, || what(key)).cloned()
    }

    /// The value under `key`, untyped.
    ///
    /// # Errors
    ///
    /// [`ReadError::NotInStore`] when `key` is not set.
    pub fn get_value(&self, key: &str) -> Result<Arc<Value>, ReadError> {
        self.slot(key).map(|slot| slot.value)
    }

    fn slot(&self, key: &str) -> Result<Slot, ReadError> {
        self.map
            .get(key)
            .map(|slot| slot.clone())
            .ok_or_else(|| ReadError::NotInStore {
                key: key.to_owned(),
            })
    }

    /// The value under `key` and the revision it was written at.
    pub(crate) fn get_revision(&self, key: &str) -> Result<(Arc<Value>, u64), ReadError> {
        self.slot(key).map(|slot| (slot.value, slot.revision))
    }

    /// Sets `key` to `new` if it is still at revision `expected` (`None`:
    /// not set); the new revision, or `None` when it was not.
    pub(crate) fn compare_and_set(
        &self,
        key: &str,
        expected: Option<u64>,
        new: Value,
    ) -> Option<u64> {
        let slot = self.slot_of(new);
        let revision = slot.revision;
        match (self.map.entry(key.to_owned()), expected) {
            (Entry::Occupied(mut e), Some(expected)) if e.get().revision == expected => {
                e.insert(slot);
            }
            (Entry::Vacant(e), None) => {
                e.insert(slot);
            }
            _ => return None,
        }
        self.note_write(key);
        Some(revision)
    }

    /// Atomically replaces the value under `key` with `f(current)`
    /// (`None`: not set) and returns a copy of the new value.
    ///
    /// # Errors
    ///
    /// [`ReadError::Type`] when the value there is not a `T` (it is left
    /// as it was).
    pub fn update<T, F>(&self, key: &str, f: F) -> Result<T, ReadError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Option<&T>) -> T,
    {
        self.update_by(key, Value::get::<T>, f, Value::new)
    }

    /// [`update`](Store::update) for a value of any type, for the parts of
    /// this process only (see [`set_local`](Store::set_local)).
    ///
    /// # Errors
    ///
    /// As [`update`](Store::update).
    pub fn update_local<T, F>(&self, key: &str, f: F) -> Result<T, ReadError>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce(Option<&T>) -> T,
    {
        self.update_by(key, Value::downcast_ref::<T>, f, Value::local)
    }

    fn update_by<T: Clone, F>(
        &self,
        key: &str,
        view: fn(&Value) -> Option<&T>,
        f: F,
        wrap: fn(T) -> Value,
    ) -> Result<T, ReadError>
    where
        F: FnOnce(Option<&T>) -> T,
    {
        let entry = self.map.entry(key.to_owned());
        let new = match &entry {
            Entry::Occupied(e) => f(Some(view_as(&e.get().value, view, || what(key))?)),
            Entry::Vacant(_) => f(None),
        };
        entry.insert(self.slot_of(wrap(new.clone())));
        self.note_write(key);
        Ok(new)
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let removed = self.map.remove(key).is_some();
        self.note_write(key);
        removed
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.iter().map(|e| e.key().clone()).collect();
        keys.sort();
        keys
    }

    /// Removes everything.
    pub fn clear(&self) {
        let keys = self.keys();
        self.map.clear();
        for key in keys {
            self.note_write(&key);
        }
    }
}

thread_local! {
    /// The keys written on this thread while [`collect_writes`] runs.
    static WRITES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

impl Store {
    /// Notes a write of `key` for [`collect_writes`], if it runs on this
    /// thread, or else for the journal's next record, if one is kept.
    fn note_write(&self, key: &str) {
        let collected = WRITES.with(|writes| match writes.borrow_mut().as_mut() {
            Some(keys) => {
                keys.push(key.to_owned());
                true
            }
            None => false,
        });
        if !collected && self.keeping_stray.load(Ordering::Acquire) > 0 {
            if let Some(stray) = self.stray.lock().as_mut() {
                stray.push(key.to_owned());
                self.stray_noted.store(true, Ordering::Release);
            }
        }
    }

    /// A journaled run starts (`true`) or stops keeping the keys written
    /// outside any [`collect_writes`] (see [`Store::take_stray`]); they
    /// are kept while any run sharing the store keeps them.
    pub(crate) fn keep_stray_writes(&self, keep: bool) {
        let mut stray = self.stray.lock();
        let runs = self.keeping_stray.load(Ordering::Acquire);
        let runs = if keep {
            runs + 1
        } else {
            runs.saturating_sub(1)
        };
        self.keeping_stray.store(runs, Ordering::Release);
        match (runs, stray.is_some()) {
            (0, _) => *stray = None,
            (_, false) => *stray = Some(Vec::new()),
            _ => {}
        }
    }

    /// The keys written outside any [`collect_writes`] since the last call.
    pub(crate) fn take_stray(&self) -> Vec<String> {
        if !self.stray_noted.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.stray
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// Runs `f`, and the keys of every store write made on this thread
/// meanwhile (a journaled run records them with the part that made them).
pub(crate) fn collect_writes<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    /// Puts back what an outer collection had, however `f` ends.
    struct Outer(Option<Vec<String>>);
    impl Drop for Outer {
        fn drop(&mut self) {
            let outer = self.0.take();
            WRITES.with(|writes| {
                let mut writes = writes.borrow_mut();
                let mine = std::mem::replace(&mut *writes, outer);
                if let (Some(outer), Some(mine)) = (writes.as_mut(), mine) {
                    outer.extend(mine);
                }
            });
        }
    }
    let mut outer = Outer(WRITES.with(|writes| writes.borrow_mut().replace(Vec::new())));
    let result = f();
    let keys = WRITES.with(|writes| writes.borrow_mut().replace(Vec::new()).unwrap_or_default());
    // What an outer collection gets: this collection's keys too.
    if let Some(outer) = outer.0.as_mut() {
        outer.extend(keys.iter().cloned());
    }
    drop(outer);
    (result, keys)
}

/// What a read of `key` reads, for errors.
pub(crate) fn what(key: &str) -> String {
    format!("the store's value under \"{key}\"")
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("keys", &self.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_typed_and_say_what_is_wrong() {
        let store = Store::new();
        store.set("k", 5u32);
        assert_eq!(store.get::<u32>("k").unwrap(), 5);
        let err = store.get::<i64>("k").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the store's value under \"k\" is a `u32`, not a `i64`"
        );
        // A value of another type is not replaced by an update.
        assert!(
            store
                .update("k", |v: Option<&i64>| v.copied().unwrap_or(-1))
                .is_err()
        );
        assert_eq!(store.get::<u32>("k").unwrap(), 5);
        assert!(matches!(
            store.get::<u32>("nope"),
            Err(ReadError::NotInStore { key }) if key == "nope"
        ));
        assert!(store.remove("k"));
        assert!(!store.contains("k"));
    }

    #[test]
    fn local_values_hold_anything() {
        let store = Store::new();
        let conn = Arc::new(parking_lot::Mutex::new(vec![1u8]));
        store.set_local("conn", Arc::clone(&conn));
        let got = store
            .get_local::<Arc<parking_lot::Mutex<Vec<u8>>>>("conn")
            .unwrap();
        got.lock().push(2);
        assert_eq!(*conn.lock(), vec![1, 2]);
        // A serializable value can be read locally too.
        store.set("n", 1u64);
        assert_eq!(store.get_local::<u64>("n").unwrap(), 1);
        assert!(store.get_value("conn").unwrap().encode().is_err());
    }

    #[test]
    fn compare_and_set_needs_the_revision_it_read() {
        let store = Store::new();
        assert!(
            store
                .compare_and_set("k", Some(1), Value::new(1u8))
                .is_none()
        );
        let first = store.compare_and_set("k", None, Value::new(1u8)).unwrap();
        assert!(store.compare_and_set("k", None, Value::new(2u8)).is_none());
        let (_, revision) = store.get_revision("k").unwrap();
        assert_eq!(revision, first);
        store.set("k", 3u8);
        assert!(
            store
                .compare_and_set("k", Some(first), Value::new(4u8))
                .is_none()
        );
        assert_eq!(store.get::<u8>("k").unwrap(), 3);
    }

    #[test]
    fn concurrent_updates_are_atomic() {
        let store = Arc::new(Store::new());
        sk_testkit::guarded(move || {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let store = Arc::clone(&store);
                    std::thread::spawn(move || {
                        for _ in 0..1000 {
                            store
                                .update("n", |v: Option<&u64>| v.copied().unwrap_or(0) + 1)
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(store.get::<u64>("n").unwrap(), 4000);
        });
    }
}
