//! Round-trip cost of the internal format against raw postcard.
//!
//! `sk_internal` must stay within 1.1x of `raw_postcard` on every payload.

// A benchmark of known-good values: a failure should abort loudly, and
// criterion's macros generate undocumented items.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sk_cereal::Internal;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Small {
    id: u64,
    name: String,
    w: u32,
    h: u32,
    scale: Option<f32>,
}

fn bench_payload<T>(c: &mut Criterion, name: &str, value: &T)
where
    T: Serialize + DeserializeOwned,
{
    let mut group = c.benchmark_group(name);
    group.bench_function("raw_postcard", |b| {
        b.iter(|| {
            let bytes = postcard::to_allocvec(black_box(value)).unwrap();
            black_box(postcard::from_bytes::<T>(black_box(&bytes)).unwrap())
        });
    });
    group.bench_function("sk_internal", |b| {
        b.iter(|| {
            let bytes = Internal::encode(black_box(value)).unwrap();
            black_box(Internal::decode::<T>(black_box(&bytes)).unwrap())
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let small = Small {
        id: 42,
        name: "resize".to_owned(),
        w: 640,
        h: 480,
        scale: Some(0.5),
    };
    bench_payload(c, "small_struct", &small);

    let map: HashMap<u32, u32> = (0..100).map(|i| (i, i * 7)).collect();
    bench_payload(c, "hashmap_100", &map);

    let bytes = serde_bytes::ByteBuf::from(vec![0xA5_u8; 1 << 20]);
    bench_payload(c, "bytes_1mib", &bytes);

    let plain: Vec<u8> = vec![0xA5_u8; 1 << 20];
    bench_payload(c, "vec_u8_1mib", &plain);
}

criterion_group!(cereal, benches);
criterion_main!(cereal);
