//! Helpers of the journaled-run tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sk_cycle::{CyclePart, Durability, JournalError, RunError};
use sk_journal::Journal;

pub fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.journal");
    (dir, path)
}

/// A part that counts its runs in `runs` and outputs `value`.
pub fn counted(name: &str, runs: &Arc<AtomicU64>, value: u64) -> CyclePart {
    let runs = Arc::clone(runs);
    CyclePart::new(name.to_owned(), move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        value
    })
}

/// The journal's source error of a run's error, if it is one.
pub fn journal_error(error: &RunError) -> &JournalError {
    match error {
        RunError::Journal { source, .. } => source,
        other => panic!("expected a journal error, got {other:?}"),
    }
}

/// The records of `run` in the journal at `path` (no run holds it).
pub fn records(path: &Path, run: &str) -> Vec<sk_journal::PartRecord> {
    Journal::open(path, Durability::default())
        .unwrap()
        .records(run)
        .unwrap()
}
