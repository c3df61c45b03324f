//! [`JournalError`]: why a journal cannot be opened, read or written.

use std::path::PathBuf;

/// Why a journal operation failed. Every variant names the journal file.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file is not a journal of this library: another program's
    /// SQLite database, or not a database at all.
    #[error("{path}: not a Suitkaise journal ({why})")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// The file is a journal but damaged (truncated, or its pages do not
    /// check out). It is left as it is: nothing starts afresh over it.
    #[error("{path}: the journal is corrupt ({why})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The journal was written by a newer version of this library.
    #[error("{path}: journal format {found} is newer than this program reads ({supported})")]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// The format version in the file.
        found: i64,
        /// The newest format this library reads.
        supported: i64,
    },
    /// Another live run holds the journal.
    #[error("{path}: the journal is held by another live run (lock {lock})")]
    Busy {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The run exists in the journal with a different plan.
    #[error(
        "{path}: run \"{run}\" was journaled with another plan: {what} (it was {was}, now {now})"
    )]
    PlanDrift {
        /// The file.
        path: PathBuf,
        /// The run.
        run: String,
        /// The first thing that differs, e.g. `part "score"`.
        what: String,
        /// What the journal has.
        was: String,
        /// What the plan has now.
        now: String,
    },
    /// The journal's writer has stopped (after an earlier error, or the
    /// journal was closed).
    #[error("{path}: the journal writer has stopped: {why}")]
    Stopped {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// SQLite or the file system failed.
    #[error("{path}: {what}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// The lock file could not be made or taken.
    #[error("{path}: cannot lock the journal")]
    Lock {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use sk_testkit::assert_chain_says_each_thing_once as says_once;

    use super::*;

    #[test]
    fn every_error_with_a_source_says_it_once() {
        says_once(&JournalError::Sqlite {
            path: "j.db".into(),
            what: "cannot record part \"a\"".to_owned(),
            source: rusqlite::Error::InvalidQuery,
        });
        says_once(&JournalError::Lock {
            path: "j.db".into(),
            source: std::io::Error::other("no space"),
        });
    }
}
