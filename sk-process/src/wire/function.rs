//! How a call's function crosses the channel: its encoding as one byte
//! string, so a worker that gets the same function call after call
//! (the usual case) recognises it by comparing bytes, and reuses the
//! handle it decoded last time — its function already looked up —
//! instead of decoding a new one and looking its name up again.
//!
//! The handle is reused only while the worker's function registry is as
//! it was when the handle was decoded (see
//! [`Registry::generation`](sk_reg::Registry::generation)), so a call
//! runs what a fresh lookup would find, as before; and never for a handle
//! with a rate limit, whose limiter is state its clones share.

use std::cell::RefCell;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serializer};
use sk_cereal::Internal;
use sk_core::{Modify as _, SkFunction};

/// The last function decoded on this thread.
struct Decoded {
    bytes: Vec<u8>,
    function: Arc<SkFunction>,
    /// The registry's generation read before the handle was decoded (and
    /// so before it looked its function up).
    generation: u64,
}

thread_local! {
    static LAST: RefCell<Option<Decoded>> = const { RefCell::new(None) };
    /// Where a function is encoded before it goes into its frame.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `function` as the byte string of its encoding.
pub(crate) fn serialize<S: Serializer>(
    function: &SkFunction,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut fresh = Vec::new();
    // A frame encoded while this thread's scratch is in use (never, as
    // things are) gets a buffer of its own.
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => encode(function, &mut scratch, serializer),
        Err(_) => encode(function, &mut fresh, serializer),
    })
}

fn encode<S: Serializer>(
    function: &SkFunction,
    buffer: &mut Vec<u8>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    buffer.clear();
    Internal::encode_into(function, buffer)
        .map_err(|e| ser::Error::custom(sk_core::error_chain(&e)))?;
    serializer.serialize_bytes(buffer)
}

/// Deserializes a function from the byte string of its encoding, reusing
/// the handle decoded last on this thread when the bytes and the
/// registry are the same.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<SkFunction>, D::Error> {
    deserializer.deserialize_bytes(FunctionVisitor)
}

struct FunctionVisitor;

impl Visitor<'_> for FunctionVisitor {
    type Value = Arc<SkFunction>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bytes of an encoded function")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode(bytes).map_err(E::custom)
    }
}

/// The function encoded as `bytes`.
fn decode(bytes: &[u8]) -> Result<Arc<SkFunction>, String> {
    // Read before decoding: a change to the registry after this read makes
    // the next call decode (and look up) afresh.
    let generation = sk_core::functions().generation();
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return fresh(bytes);
        };
        if let Some(hit) = last
            .as_ref()
            .filter(|d| d.generation == generation && d.bytes == bytes)
        {
            return Ok(Arc::clone(&hit.function));
        }
        let function = fresh(bytes)?;
        // A handle with a rate limit carries its limiter, shared by its
        // clones: reusing it would throttle a run of identical calls but
        // not interleaved ones. Each call decodes its own, as before.
        if function.modifiers().rate_limit.is_some() {
            return Ok(function);
        }
        *last = Some(Decoded {
            bytes: bytes.to_vec(),
            function: Arc::clone(&function),
            generation,
        });
        Ok(function)
    })
}

fn fresh(bytes: &[u8]) -> Result<Arc<SkFunction>, String> {
    Internal::decode::<SkFunction>(bytes)
        .map(Arc::new)
        .map_err(|e| format!("bad function: {}", sk_core::error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sk_core::{Args, Execute, FunctionError, FunctionSpec, ParamSpec};

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Carrier {
        #[serde(with = "super")]
        function: Arc<SkFunction>,
    }

    fn round_trip(function: &SkFunction) -> Arc<SkFunction> {
        let bytes = Internal::encode(&Carrier {
            function: Arc::new(function.clone()),
        })
        .unwrap();
        Internal::decode::<Carrier>(&bytes).unwrap().function
    }

    #[sk_core::function(crate = ::sk_core)]
    fn blob_probe(x: u32) -> u32 {
        x + 1
    }

    #[test]
    fn the_same_function_again_is_the_handle_decoded_before() {
        let five = SkFunction::builder("blob_probe")
            .arg("x", 5u32)
            .build()
            .unwrap();
        let six = SkFunction::builder("blob_probe")
            .arg("x", 6u32)
            .build()
            .unwrap();
        let first = round_trip(&five);
        assert_eq!(*first, five);
        let again = round_trip(&five);
        assert!(Arc::ptr_eq(&first, &again), "the cached handle is reused");
        let other = round_trip(&six);
        assert_eq!(*other, six);
        assert!(!Arc::ptr_eq(&first, &other), "other bytes decode afresh");
        assert_eq!(other.execute::<u32>().unwrap(), 7);
    }

    #[test]
    fn a_change_to_the_registry_is_seen_by_the_next_call() {
        // A function registered at run time, then replaced by another of
        // the same name: a call after the change runs the new one.
        static WHICH: AtomicU32 = AtomicU32::new(0);
        let name = "blob_replaced_probe";
        let spec = |n: u32| {
            FunctionSpec::plain(name, [] as [ParamSpec; 0], move |_: &Args| {
                WHICH.store(n, Ordering::SeqCst);
                Ok::<_, FunctionError>(n)
            })
        };
        spec(1).register().unwrap();
        let handle = SkFunction::builder(name).build().unwrap();
        assert_eq!(round_trip(&handle).execute::<u32>().unwrap(), 1);
        assert_eq!(round_trip(&handle).execute::<u32>().unwrap(), 1);
        let replacement = spec(2);
        sk_core::functions().replace(replacement.layer(), name, replacement);
        assert_eq!(round_trip(&handle).execute::<u32>().unwrap(), 2);
        assert_eq!(WHICH.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_rate_limited_function_is_decoded_afresh_for_every_call() {
        // Its limiter is shared by clones of one handle: a cached handle
        // would throttle identical calls in a row and not interleaved
        // ones. Each call gets its own, as when nothing was cached.
        let limited = SkFunction::builder("blob_probe")
            .arg("x", 1u32)
            .build()
            .unwrap()
            .rate_limit(1.0);
        let first = round_trip(&limited);
        let again = round_trip(&limited);
        assert!(
            !Arc::ptr_eq(&first, &again),
            "a rate-limited handle is not reused"
        );
        assert_eq!(again.execute::<u32>().unwrap(), 2);
    }

    #[test]
    fn bad_function_bytes_are_an_error() {
        let bytes = Internal::encode(&serde_bytes::Bytes::new(&[0xFF, 0xFF, 0xFF])).unwrap();
        let err = sk_core::error_chain(&Internal::decode::<Carrier>(&bytes).err().unwrap());
        assert!(err.contains("at field \"function\""), "{err}");
        assert!(err.contains("bad function"), "{err}");
    }
}
