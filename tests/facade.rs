//! Everything a program needs is reachable from `suitkaise` alone: a
//! long-lived process, a pool, storage and policies, through the crate's
//! modules and its prelude.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use suitkaise::prelude::*;
use suitkaise::process::{
    Backend, Imap, ProcessConfig, ProcessContext, ProcessManagerBuilder, SkProcess, start,
};

suitkaise::worker_test!();

/// Counts to `to` in its runs; the SkProcess of the docs, written against
/// the facade only.
#[derive(Serialize, Deserialize)]
struct Counter {
    to: u64,
    count: u64,
}

impl SkProcess for Counter {
    type Output = u64;

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new().runs(self.to)
    }
    fn run(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.count += 1;
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<u64, BoxError> {
        Ok(self.count)
    }
}
suitkaise::register_process!(Counter);

#[suitkaise::function]
fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_program_needs_nothing_but_suitkaise() {
    sk_testkit::guarded(|| {
        let handle = start(Counter { to: 5, count: 0 }, Backend::from_env()).unwrap();
        assert_eq!(handle.join(Some(Duration::from_secs(30))).unwrap(), 5);

        let pool = suitkaise::Pool::new(2, Backend::from_env()).unwrap();
        let f = SkFunction::builder("double").build().unwrap();
        let doubled: Imap<'_, u64> = pool.imap(&f, "x", 0..4u64);
        let doubled: Vec<u64> = doubled.map(Result::unwrap).collect();
        assert_eq!(doubled, [0, 2, 4, 6]);

        // Items named by the issue that reported them missing.
        let _: fn(&str) -> ProcessManagerBuilder =
            |name| suitkaise::process::ProcessManager::builder(name);
        let policy: Result<(), suitkaise::core::PolicyError> =
            RetryPolicy::fixed(Duration::from_millis(1))
                .max_attempts(0)
                .validate();
        assert!(policy.is_err());
        let storage_error: Option<suitkaise::reg::StorageError> = None;
        assert!(storage_error.is_none());
        let chain = error_chain(&FunctionError::failed("f", "boom"));
        assert_eq!(chain, "function \"f\" failed: boom");
    })
}
