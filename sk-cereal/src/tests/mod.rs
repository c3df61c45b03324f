//! Crate tests: round trips, hostile input, error paths, wire fixture, snapshots.

mod errors;
mod hostile;
mod roundtrip;
mod snapshot;
mod types;
