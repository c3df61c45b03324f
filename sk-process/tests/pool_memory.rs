//! `Pool::map` encodes items as they go out, a few chunks ahead of the
//! workers, so the parent never holds every encoded item at once.
//!
//! Its own test binary: it reads the process's peak memory (`VmHWM`), which
//! other tests running beside it would disturb.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sk_core::SkFunction;
use sk_process::{Backend, Pool};
use sk_testkit::guarded;

sk_process::worker_test!();

/// Bytes each item encodes to.
const BLOB: usize = 256 << 10;

/// Items in the map: 30 MB encoded, a kilobyte as given.
const ITEMS: u32 = 120;

/// An item that is small to hold and large to encode (as, say, a path to
/// a file the encoding reads in would be): it encodes to `self.0` bytes,
/// and decodes to their count.
struct Blob(usize);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static BYTES: [u8; BLOB] = [7; BLOB];
        s.serialize_bytes(&BYTES[..self.0.min(BLOB)])
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|bytes| Blob(bytes.len()))
    }
}

#[sk_core::function(crate = ::sk_core)]
fn blob_len(x: Blob) -> u64 {
    x.0 as u64
}

/// This process's peak resident memory since the last reset, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resets the peak to the current resident memory.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[test]
fn a_map_holds_a_few_chunks_of_encoded_items_not_all_of_them() {
    guarded(|| {
        let f = SkFunction::builder("blob_len").build().unwrap();
        let pool = Pool::builder()
            .workers(2)
            .backend(Backend::from_env())
            .chunk_size(1)
            .build()
            .unwrap();
        // Warm up: workers started, buffers grown.
        let out: Vec<u64> = pool.map(&f, "x", (0..4).map(|_| Blob(BLOB))).unwrap();
        assert_eq!(out, vec![BLOB as u64; 4]);
        reset_peak();
        let before = peak_rss();
        let out: Vec<u64> = pool.map(&f, "x", (0..ITEMS).map(|_| Blob(BLOB))).unwrap();
        let grew = peak_rss().saturating_sub(before);
        assert_eq!(out.len(), ITEMS as usize);
        assert!(out.iter().all(|&n| n == BLOB as u64));
        // Two chunks of one item per worker in flight (each decoded once
        // more on a thread worker): a few MB, not the 30 MB of every item
        // encoded up front (which it was).
        let limit = 12 << 20;
        assert!(
            grew < limit,
            "the map's peak memory grew by {} MB (limit {} MB)",
            grew >> 20,
            limit >> 20
        );
    });
}
