//! A journal opened by a relative path stays the same file when the
//! process changes directory (alone in its test binary: it moves the
//! process's working directory).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sk_journal::{Durability, Fingerprint, Journal, PartRecord};

#[test]
fn a_journal_opened_by_a_relative_path_survives_a_change_of_directory() {
    sk_testkit::guarded(|| {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::env::set_current_dir(home.path()).unwrap();
        let journal = Journal::open("run.journal", Durability::default()).unwrap();
        journal
            .begin("r", &Fingerprint::new("c", [("a", "1-1")]))
            .unwrap();
        std::env::set_current_dir(elsewhere.path()).unwrap();
        let record = PartRecord {
            iteration: 1,
            part: "a".into(),
            state: "succeeded".into(),
            attempts: 1,
            ..Default::default()
        };
        journal.record("r", record).wait().unwrap();
        journal.flush().unwrap();
        assert_eq!(journal.path(), home.path().join("run.journal"));
    })
}
