//! [`Store`]: the typed key/value store shared by the parts of a run.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

type Slot = Arc<dyn Any + Send + Sync>;

/// A concurrent typed key/value store, shared by every part of a run (and
/// kept across its iterations).
///
/// # Examples
///
/// ```
/// use sk_cycle::Store;
/// let store = Store::new();
/// store.set("seen", 1u64);
/// store.update("seen", |n: Option<&u64>| n.copied().unwrap_or(0) + 1);
/// assert_eq!(store.get::<u64>("seen"), Some(2));
/// ```
#[derive(Default)]
pub struct Store {
    map: DashMap<String, Slot>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// Sets `key` to `value`, replacing what was there.
    pub fn set<T: Send + Sync + 'static>(&self, key: impl Into<String>, value: T) {
        self.map.insert(key.into(), Arc::new(value));
    }

    /// A copy of the value under `key`, if it is a `T`.
    pub fn get<T: Clone + 'static>(&self, key: &str) -> Option<T> {
        self.map
            .get(key)
            .and_then(|slot| slot.downcast_ref::<T>().cloned())
    }

    /// The value under `key` as a shared `Arc<T>`, if it is a `T`.
    pub fn get_arc<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        let slot = self.map.get(key)?.clone();
        slot.downcast::<T>().ok()
    }

    /// Atomically replaces the value under `key` with `f(current)` and
    /// returns a copy of the new value. A value of another type counts as
    /// absent (and is replaced).
    pub fn update<T, F>(&self, key: &str, f: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce(Option<&T>) -> T,
    {
        match self.map.entry(key.to_owned()) {
            Entry::Occupied(mut e) => {
                let new = f(e.get().downcast_ref::<T>());
                e.insert(Arc::new(new.clone()));
                new
            }
            Entry::Vacant(e) => {
                let new = f(None);
                e.insert(Arc::new(new.clone()));
                new
            }
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
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
        self.map.clear();
    }
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
    fn typed_access_ignores_other_types() {
        let store = Store::new();
        store.set("k", 5u32);
        assert_eq!(store.get::<u32>("k"), Some(5));
        assert_eq!(store.get::<i64>("k"), None);
        assert_eq!(
            store.update("k", |v: Option<&i64>| v.copied().unwrap_or(-1)),
            -1
        );
        assert_eq!(store.get::<i64>("k"), Some(-1));
        assert!(store.remove("k"));
        assert!(!store.contains("k"));
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
                            store.update("n", |v: Option<&u64>| v.copied().unwrap_or(0) + 1);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(store.get::<u64>("n"), Some(4000));
        });
    }
}
