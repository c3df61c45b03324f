//! [`KvStorage`]: a [`GlobalStorage`](sk_reg::GlobalStorage) backend on a
//! JetStream key-value bucket, shared by every process (on any machine)
//! that opens the same bucket.
//!
//! Atomic updates keep their meaning: a compare-and-swap reads the key's
//! entry with its revision and writes only if the revision is still the
//! latest (the broker refuses the write otherwise), so concurrent
//! [`GlobalStorage::update`](sk_reg::GlobalStorage::update)s from many
//! machines each apply exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use sk_reg::{CasOutcome, StorageBackend, StorageError, StoredValue};

use crate::broker::{Bridge, Broker, Connection};
use crate::error::RemoteError;

/// A storage backend on the JetStream key-value bucket of one name.
#[derive(Clone)]
pub struct KvStorage {
    inner: Arc<Inner>,
}

struct Inner {
    store: kv::Store,
    bucket: String,
    url: String,
    /// Last: the client's tasks stop with it.
    _conn: Connection,
    bridge: Bridge,
}

impl std::fmt::Debug for KvStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStorage")
            .field("bucket", &self.inner.bucket)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// How long one storage operation may take.
const OP_LIMIT: Duration = Duration::from_secs(10);

impl KvStorage {
    /// Opens (creating it if there is none) the bucket `bucket` on
    /// `broker`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Connect`] naming the URL, [`RemoteError::JetStream`]
    /// when the bucket cannot be opened or made (tried 4 times, over
    /// about 0.7 s of waits), [`RemoteError::Usage`]
    /// for a bucket name other than letters, digits, `-` and `_`.
    pub fn open(broker: &Broker, bucket: &str) -> Result<KvStorage, RemoteError> {
        crate::error::check_group(bucket).map_err(|_| {
            RemoteError::Usage(format!(
                "bucket \"{bucket}\" is not a valid name: use letters, digits, '-' and '_'"
            ))
        })?;
        let bridge = Bridge::start("sk-remote:kv")?;
        let conn = broker.connect(&bridge)?;
        let js = conn.js.clone();
        let name = bucket.to_owned();
        let opened = bridge.run(async move { open_bucket_retrying(&js, &name).await })?;
        let store = opened.map_err(|source| RemoteError::JetStream {
            url: conn.url.clone(),
            what: format!("open the key-value bucket \"{bucket}\""),
            source,
        })?;
        Ok(KvStorage {
            inner: Arc::new(Inner {
                store,
                bucket: bucket.to_owned(),
                url: conn.url.clone(),
                _conn: conn,
                bridge,
            }),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// Runs `op` on the bucket, bounded by [`OP_LIMIT`].
    fn run<T, F, Fut>(&self, what: &str, key: &str, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(kv::Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let fut = op(self.inner.store.clone());
        let done = self
            .inner
            .bridge
            .run(async move { tokio::time::timeout(OP_LIMIT, fut).await })
            .map_err(|e| StorageError::backend_with(format!("{what} \"{key}\""), e))?;
        done.map_err(|e| {
            StorageError::backend_with(
                format!("{what} \"{key}\" in bucket \"{}\"", self.inner.bucket),
                e,
            )
        })?
    }
}

/// Opens bucket `name`, making it if need be. The stream is made by hand,
/// as the client would, in a form a 2.9 server takes.
/// How many times opening a bucket is tried, the waits between tries
/// doubling from [`OPEN_RETRY_WAIT`]: a broker busy with other clients
/// may let one JetStream request time out, and several processes open
/// one bucket at once.
const OPEN_ATTEMPTS: u32 = 4;
const OPEN_RETRY_WAIT: Duration = Duration::from_millis(100);

/// [`open_bucket`], tried [`OPEN_ATTEMPTS`] times; the last error.
async fn open_bucket_retrying(
    js: &jetstream::Context,
    name: &str,
) -> Result<kv::Store, Box<dyn std::error::Error + Send + Sync>> {
    let mut wait = OPEN_RETRY_WAIT;
    for _ in 1..OPEN_ATTEMPTS {
        if let Ok(store) = open_bucket(js, name).await {
            return Ok(store);
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    open_bucket(js, name).await
}

async fn open_bucket(
    js: &jetstream::Context,
    name: &str,
) -> Result<kv::Store, Box<dyn std::error::Error + Send + Sync>> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        num_replicas: 1,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    Ok(js.get_key_value(name).await?)
}

/// A storage key as a bucket key: letters, digits, `-` and `_` as they
/// are, every other byte as `=XX`.
fn bucket_key(key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// The storage key of bucket key `key` (see [`bucket_key`]).
fn storage_key(key: &str) -> Option<String> {
    if key == "=" {
        return Some(String::new());
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn decode(key: &str, bytes: &[u8]) -> Result<StoredValue, StorageError> {
    sk_cereal::Internal::decode(bytes).map_err(|source| StorageError::Decode {
        key: key.to_owned(),
        source,
    })
}

fn encode(key: &str, value: &StoredValue) -> Result<bytes::Bytes, StorageError> {
    sk_cereal::Internal::encode(value)
        .map(bytes::Bytes::from)
        .map_err(|source| StorageError::Encode {
            key: key.to_owned(),
            source,
        })
}

/// The key's live entry: its revision (also of a deletion) and value.
async fn entry(
    store: &kv::Store,
    key: &str,
    k: &str,
) -> Result<(Option<u64>, Option<StoredValue>), StorageError> {
    let entry = store
        .entry(k)
        .await
        .map_err(|e| StorageError::backend_with(format!("reading \"{key}\""), e))?;
    match entry {
        None => Ok((None, None)),
        Some(e) if e.operation != kv::Operation::Put => Ok((Some(e.revision), None)),
        Some(e) => Ok((Some(e.revision), Some(decode(key, &e.value)?))),
    }
}

impl StorageBackend for KvStorage {
    fn load(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        let (k, key_owned) = (bucket_key(key), key.to_owned());
        self.run("reading", key, move |store| async move {
            Ok(entry(&store, &key_owned, &k).await?.1)
        })
    }

    fn store(&self, key: &str, value: StoredValue) -> Result<(), StorageError> {
        let (k, bytes) = (bucket_key(key), encode(key, &value)?);
        self.run("writing", key, move |store| async move {
            store
                .put(k, bytes)
                .await
                .map(|_| ())
                .map_err(|e| StorageError::backend_with("put", e))
        })
    }

    fn remove(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        let (k, key_owned) = (bucket_key(key), key.to_owned());
        self.run("removing", key, move |store| async move {
            loop {
                let (revision, value) = entry(&store, &key_owned, &k).await?;
                let (Some(revision), Some(value)) = (revision, value) else {
                    return Ok(None);
                };
                match store.delete_expect_revision(&k, Some(revision)).await {
                    Ok(()) => return Ok(Some(value)),
                    // Someone wrote between: read again.
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(StorageError::backend_with("removing", e)),
                }
            }
        })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&StoredValue>,
        new: Option<StoredValue>,
    ) -> Result<CasOutcome, StorageError> {
        let k = bucket_key(key);
        let key_owned = key.to_owned();
        let expected = expected.cloned();
        let new = new.map(|v| encode(key, &v)).transpose()?;
        self.run("updating", key, move |store| async move {
            let (revision, current) = entry(&store, &key_owned, &k).await?;
            if current != expected {
                return Ok(CasOutcome::Conflict(current));
            }
            // A refused write (the revision moved on) is a conflict; any
            // other failure may or may not have written: an error, never a
            // conflict (which would make the caller apply its update again).
            let ambiguous = |e: &dyn std::error::Error| {
                StorageError::backend(format!(
                    "writing \"{key_owned}\": {e}; it may or may not have been written"
                ))
            };
            let written = match (revision, current.is_some(), new) {
                (_, false, None) => return Ok(CasOutcome::Swapped),
                (Some(revision), true, None) => {
                    match store.delete_expect_revision(&k, Some(revision)).await {
                        Ok(()) => true,
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                        Err(e) => return Err(ambiguous(&e)),
                    }
                }
                (None, _, Some(bytes)) => match store.create(&k, bytes).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(ambiguous(&e)),
                },
                (Some(revision), _, Some(bytes)) => match store.update(&k, bytes, revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(ambiguous(&e)),
                },
                (None, true, None) => false,
            };
            if written {
                Ok(CasOutcome::Swapped)
            } else {
                // The revision moved on: report the value as it is now.
                Ok(CasOutcome::Conflict(entry(&store, &key_owned, &k).await?.1))
            }
        })
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        use futures_util::StreamExt;
        self.run("listing", "*", move |store| async move {
            let keys = match store.keys().await {
                Ok(keys) => keys,
                Err(e) => return Err(StorageError::backend_with("listing keys", e)),
            };
            let keys: Vec<_> = keys.collect().await;
            let mut out = Vec::new();
            for key in keys {
                let key = key.map_err(|e| StorageError::backend_with("listing keys", e))?;
                out.extend(storage_key(&key));
            }
            out.sort();
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_survives_the_bucket_encoding() {
        for key in ["", "a", "counter", "a.b/c d", "=", "ü*>", "x=41"] {
            let k = bucket_key(key);
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{k}"
            );
            assert_eq!(storage_key(&k).as_deref(), Some(key), "{k}");
        }
        assert_eq!(storage_key("=4"), None);
        assert_eq!(storage_key("=ZZ"), None);
    }
}
