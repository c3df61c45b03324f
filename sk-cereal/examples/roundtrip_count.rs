//! Runs round trips of one benchmark payload, for counting instructions.
//!
//! Wall-clock benchmarks are noisy on a loaded machine; instruction counts
//! under callgrind are not. Run the raw postcard and the [`Internal`] round
//! trip of the same payload and compare the totals:
//!
//! ```text
//! cargo build --release -p sk-cereal --example roundtrip_count
//! valgrind --tool=callgrind target/release/examples/roundtrip_count small raw 10000
//! valgrind --tool=callgrind target/release/examples/roundtrip_count small sk 10000
//! ```
//!
//! Payloads (as in `benches/cereal.rs`): `small`, `hashmap`, `bytes`, `vec`.
//! Run once with 0 round trips to measure (and subtract) the setup cost.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;

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

/// Runs `n` round trips of `value`, through raw postcard or [`Internal`].
fn run<T: Serialize + DeserializeOwned>(value: &T, sk: bool, n: u64) -> Result<(), String> {
    for _ in 0..n {
        if sk {
            let bytes = Internal::encode(black_box(value)).map_err(|e| e.to_string())?;
            black_box(Internal::decode::<T>(black_box(&bytes)).map_err(|e| e.to_string())?);
        } else {
            let bytes = postcard::to_allocvec(black_box(value)).map_err(|e| e.to_string())?;
            black_box(postcard::from_bytes::<T>(black_box(&bytes)).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [payload, mode, n] = args.as_slice() else {
        eprintln!("usage: roundtrip_count <small|hashmap|bytes|vec> <raw|sk> <round trips>");
        return ExitCode::FAILURE;
    };
    let sk = match mode.as_str() {
        "raw" => false,
        "sk" => true,
        other => {
            eprintln!("unknown mode {other:?}: expected raw or sk");
            return ExitCode::FAILURE;
        }
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("round trips must be a number, got {n:?}");
        return ExitCode::FAILURE;
    };
    let result = match payload.as_str() {
        "small" => {
            let small = Small {
                id: 42,
                name: "resize".to_owned(),
                w: 640,
                h: 480,
                scale: Some(0.5),
            };
            run(&small, sk, n)
        }
        "hashmap" => {
            let map: HashMap<u32, u32> = (0..100).map(|i| (i, i * 7)).collect();
            run(&map, sk, n)
        }
        "bytes" => run(&serde_bytes::ByteBuf::from(vec![0xA5_u8; 1 << 20]), sk, n),
        "vec" => run(&vec![0xA5_u8; 1 << 20], sk, n),
        other => Err(format!("unknown payload {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
