//! Helpers shared by the worker tests.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::time::Duration;

use sk_core::{Args, SkFunction};
use sk_process::{Backend, Worker, WorkerError};

/// The backend `SK_SPAWN_BACKEND` selects (process by default).
pub fn backend() -> Backend {
    Backend::from_env()
}

/// Calls function `name` on `worker`, its output taken as a `T`.
pub fn call<T: serde::de::DeserializeOwned + 'static>(
    worker: &Worker,
    name: &str,
    args: Args,
    timeout: Option<Duration>,
) -> Result<T, WorkerError> {
    let f = SkFunction::builder(name).build().unwrap();
    worker
        .call(&f, &args, timeout)
        .map(|v| v.take::<T>().unwrap())
}

/// The process it runs in: the parent's id on the thread backend, a
/// worker's own on the process backend.
#[sk_core::function(crate = ::sk_core)]
pub fn whoami() -> u32 {
    std::process::id()
}
