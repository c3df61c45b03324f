// Tests may unwrap: a panic is the failure report.

use std::error::Error as _;
use std::thread;

use serde::Deserialize;

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    name: String,
    sizes: Vec<u32>,
    verbose: Option<bool>,
}

fn settings() -> Settings {
    Settings {
        name: "ingest".into(),
        sizes: vec![640, 480],
        verbose: Some(true),
    }
}

#[test]
fn typed_round_trip() {
    let storage = GlobalStorage::new();
    assert_eq!(storage.get::<Settings>("settings").unwrap(), None);
    storage.set("settings", &settings()).unwrap();
    assert_eq!(
        storage.get::<Settings>("settings").unwrap(),
        Some(settings())
    );
    assert!(storage.contains("settings").unwrap());
    // Overwriting with another type is allowed; reads follow the new type.
    storage.set("settings", &7u8).unwrap();
    assert_eq!(storage.get::<u8>("settings").unwrap(), Some(7));
}

#[test]
fn reading_as_another_type_is_a_mismatch() {
    let storage = GlobalStorage::new();
    storage.set("count", &5u32).unwrap();
    let err = storage.get::<u64>("count").unwrap_err();
    match &err {
        StorageError::TypeMismatch {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, "count");
            assert_eq!(expected, "u64");
            assert_eq!(found, "u32");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "value at key \"count\" is stored as `u32`, not `u64`"
    );
    // `update` refuses too, and leaves the value alone.
    assert!(matches!(
        storage.update::<String, _>("count", |_| String::new()),
        Err(StorageError::TypeMismatch { .. })
    ));
    assert_eq!(storage.get::<u32>("count").unwrap(), Some(5));
}

#[test]
fn corrupt_bytes_are_a_decode_error_naming_the_key() {
    let backend = Arc::new(InProcessBackend::new());
    let storage = GlobalStorage::with_backend(backend.clone());
    backend
        .store(
            "bad",
            StoredValue {
                type_name: std::any::type_name::<Settings>().into(),
                bytes: vec![0xff; 3],
            },
        )
        .unwrap();
    let err = storage.get::<Settings>("bad").unwrap_err();
    assert!(
        matches!(&err, StorageError::Decode { key, .. } if key == "bad"),
        "{err:?}"
    );
    assert!(err.source().is_some());
}

#[test]
fn unserializable_value_is_an_encode_error() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    let storage = GlobalStorage::new();
    let err = storage.set("nope", &Refuses).unwrap_err();
    assert!(
        matches!(&err, StorageError::Encode { key, .. } if key == "nope"),
        "{err:?}"
    );
    assert!(!storage.contains("nope").unwrap());
}

#[test]
fn remove_contains_keys() {
    let storage = GlobalStorage::new();
    storage.set("b", &1).unwrap();
    storage.set("a", &2).unwrap();
    assert_eq!(storage.keys().unwrap(), ["a", "b"]);
    assert!(storage.remove("a").unwrap());
    assert!(!storage.remove("a").unwrap());
    assert!(!storage.contains("a").unwrap());
    assert_eq!(storage.keys().unwrap(), ["b"]);
}

#[test]
fn clones_share_the_backend() {
    let storage = GlobalStorage::new();
    let other = storage.clone();
    other.set("shared", &true).unwrap();
    assert_eq!(storage.get::<bool>("shared").unwrap(), Some(true));
}

#[test]
fn typed_keys() {
    const HITS: Key<u64> = Key::new("hits");
    let storage = GlobalStorage::new();
    assert_eq!(storage.get_key(&HITS).unwrap(), None);
    assert_eq!(
        storage.update_key(&HITS, |h| h.unwrap_or(0) + 1).unwrap(),
        1
    );
    storage.set_key(&HITS, &10).unwrap();
    assert_eq!(storage.get_key(&HITS).unwrap(), Some(10));
    assert_eq!(format!("{HITS:?}"), "Key(\"hits\")");
}

#[test]
fn concurrent_updates_are_atomic() {
    const THREADS: u64 = 8;
    const INCREMENTS: u64 = 1_000;
    let total = sk_testkit::guarded(|| {
        let storage = GlobalStorage::new();
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let storage = storage.clone();
                thread::spawn(move || {
                    for _ in 0..INCREMENTS {
                        storage
                            .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        storage.get::<u64>("counter").unwrap()
    });
    assert_eq!(total, Some(THREADS * INCREMENTS));
}

#[test]
fn in_process_compare_and_swap() {
    let backend = InProcessBackend::new();
    let one = StoredValue::encode("k", &1u8).unwrap();
    let two = StoredValue::encode("k", &2u8).unwrap();

    // Absent key: expecting a value conflicts, expecting absence swaps.
    assert_eq!(
        backend
            .compare_and_swap("k", Some(&one), Some(two.clone()))
            .unwrap(),
        CasOutcome::Conflict(None)
    );
    assert_eq!(
        backend
            .compare_and_swap("k", None, Some(one.clone()))
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(backend.load("k").unwrap(), Some(one.clone()));

    // Present key: a stale expectation conflicts and reports the value.
    assert_eq!(
        backend
            .compare_and_swap("k", None, Some(two.clone()))
            .unwrap(),
        CasOutcome::Conflict(Some(one.clone()))
    );
    assert_eq!(
        backend.compare_and_swap("k", Some(&two), None).unwrap(),
        CasOutcome::Conflict(Some(one.clone()))
    );
    assert_eq!(
        backend
            .compare_and_swap("k", Some(&one), Some(two.clone()))
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(backend.load("k").unwrap(), Some(two.clone()));

    // Swapping in `None` removes.
    assert_eq!(
        backend.compare_and_swap("k", Some(&two), None).unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(backend.load("k").unwrap(), None);
    // Absent and expected absent with nothing new: a no-op swap.
    assert_eq!(
        backend.compare_and_swap("k", None, None).unwrap(),
        CasOutcome::Swapped
    );
    assert!(backend.keys().unwrap().is_empty());
}

#[test]
fn type_name_is_part_of_the_comparison() {
    let backend = InProcessBackend::new();
    // Same bytes (postcard encodes 1u8 and true alike), different types.
    let as_u8 = StoredValue::encode("k", &1u8).unwrap();
    let as_bool = StoredValue::encode("k", &true).unwrap();
    backend.store("k", as_u8.clone()).unwrap();
    assert_eq!(
        backend.compare_and_swap("k", Some(&as_bool), None).unwrap(),
        CasOutcome::Conflict(Some(as_u8))
    );
}

/// A backend whose transport is down.
#[derive(Debug)]
struct Broken;

impl StorageBackend for Broken {
    fn load(&self, _: &str) -> Result<Option<StoredValue>, StorageError> {
        Err(StorageError::backend_with(
            "loading from the host",
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed"),
        ))
    }
    fn store(&self, _: &str, _: StoredValue) -> Result<(), StorageError> {
        Err(StorageError::backend("storing to the host"))
    }
    fn remove(&self, _: &str) -> Result<Option<StoredValue>, StorageError> {
        Err(StorageError::backend("removing on the host"))
    }
    fn compare_and_swap(
        &self,
        _: &str,
        _: Option<&StoredValue>,
        _: Option<StoredValue>,
    ) -> Result<CasOutcome, StorageError> {
        Err(StorageError::backend("swapping on the host"))
    }
    fn keys(&self) -> Result<Vec<String>, StorageError> {
        Err(StorageError::backend("listing keys on the host"))
    }
}

#[test]
fn backend_errors_reach_the_caller() {
    let storage = GlobalStorage::with_backend(Arc::new(Broken));
    let err = storage.get::<u8>("k").unwrap_err();
    assert_eq!(
        err.to_string(),
        "storage backend failed: loading from the host"
    );
    assert_eq!(
        err.source().map(ToString::to_string).as_deref(),
        Some("pipe closed")
    );
    assert!(matches!(
        storage.set("k", &1u8),
        Err(StorageError::Backend { .. })
    ));
    assert!(matches!(
        storage.update("k", |_: Option<u8>| 1),
        Err(StorageError::Backend { .. })
    ));
    assert!(storage.keys().is_err());
    assert!(storage.remove("k").is_err());
    assert!(format!("{storage:?}").contains("Broken"));
}

/// The only test that touches the process-wide storage, so the order of
/// `install_global_backend` and `global` is known.
#[test]
fn global_storage_uses_the_installed_backend() {
    let backend = Arc::new(InProcessBackend::new());
    GlobalStorage::install_global_backend(backend.clone()).unwrap();
    GlobalStorage::global().set("seen", &1u16).unwrap();
    assert!(backend.load("seen").unwrap().is_some());
    assert!(std::ptr::eq(
        GlobalStorage::global(),
        GlobalStorage::global()
    ));
    let err = GlobalStorage::install_global_backend(Arc::new(InProcessBackend::new())).unwrap_err();
    assert!(matches!(err, StorageError::GlobalAlreadyInitialized));
    assert_eq!(GlobalStorage::global().get::<u16>("seen").unwrap(), Some(1));
}
