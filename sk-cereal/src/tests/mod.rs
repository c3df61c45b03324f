//! Crate tests: behaviour that spans modules — round trips, hostile input,
//! error paths and the wire fixture, error chains, snapshots. Tests of one
//! module sit beside it.

mod accumulator;
mod error_chains;
mod errors;
mod hostile;
mod roundtrip;
mod snapshot;
mod types;
