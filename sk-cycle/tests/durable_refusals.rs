//! Journaled runs: what the journal refuses (another plan, an output it
//! cannot record, a file that is not a good journal, a journal held by a
//! live run or removed under one) and how.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sk_cycle::{CycleBuilder, CyclePart, ErrorMode, JournalError, Run, RunError};
use sk_testkit::guarded;

use common::journal::{counted, journal_error, journal_path, records};

#[test]
fn resuming_with_another_plan_names_the_first_part_that_differs() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let build = |second: &str, mode: ErrorMode| {
            let mut b = CycleBuilder::new("drift");
            b.add(counted("first", &runs, 1), 1).unwrap();
            b.add(counted(second, &runs, 2).error_mode(mode), 2)
                .unwrap();
            b.build().unwrap()
        };
        build("second", ErrorMode::CleanFail)
            .run(Run::times(1).journal(&path))
            .unwrap();
        for (name, mode, named) in [
            ("renamed", ErrorMode::CleanFail, "renamed"),
            ("second", ErrorMode::Skip, "second"),
        ] {
            let err = build(name, mode)
                .run(Run::times(2).journal(&path))
                .expect_err("a changed plan resumed");
            match journal_error(&err) {
                JournalError::PlanDrift { what, run, .. } => {
                    assert_eq!(run, "drift");
                    assert!(what.contains(named), "{what}");
                }
                other => panic!("expected a plan drift, got {other:?}"),
            }
            let text = sk_core::error_chain(&err);
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "nothing of a drifted plan ran"
        );
        // Under another run id the new plan is a new run.
        build("renamed", ErrorMode::CleanFail)
            .run(Run::times(1).journal(&path).run_id("drift-2"))
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_part_whose_output_cannot_be_recorded_is_refused_unless_recomputed() {
    guarded(|| {
        let (_dir, path) = journal_path();
        struct Handle;
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(CyclePart::local("socket", |_| Handle), 2).unwrap();
        let err = b
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .expect_err("an unrecordable part in a journaled run");
        match &err {
            RunError::Unrecordable { part, coord, .. } => {
                assert_eq!(part, "socket");
                assert_eq!(coord.to_string(), "2-1");
            }
            other => panic!("expected Unrecordable, got {other:?}"),
        }
        // Not journaled, the same cycle runs.
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(CyclePart::local("socket", |_| Handle), 2).unwrap();
        assert!(!b.build().unwrap().run(Run::once()).unwrap().is_error());

        let computed = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&computed);
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(
            CyclePart::local("socket", move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                Handle
            })
            .recompute_on_resume(),
            2,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(2).journal(&path))
            .unwrap();
        assert!(!report.is_error());
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        let kept = records(&path, "local");
        assert!(kept.iter().all(|r| r.part == "fine"), "{kept:?}");
    });
}

#[test]
fn a_file_that_is_not_a_good_journal_is_refused_and_left_as_it_was() {
    guarded(|| {
        let (dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let cycle = {
            let mut b = CycleBuilder::new("refused");
            b.add(counted("a", &runs, 1), 1).unwrap();
            b.build().unwrap()
        };
        // Someone else's file.
        let foreign = dir.path().join("notes.txt");
        std::fs::write(&foreign, b"these are my notes, not a journal\n".repeat(200)).unwrap();
        let before = std::fs::read(&foreign).unwrap();
        let err = cycle
            .run(Run::once().journal(&foreign))
            .expect_err("a text file as a journal");
        assert!(
            matches!(journal_error(&err), JournalError::Foreign { .. }),
            "{err:?}"
        );
        assert!(sk_core::error_chain(&err).contains("notes.txt"));
        assert_eq!(
            std::fs::read(&foreign).unwrap(),
            before,
            "the file was changed"
        );

        // Another program's SQLite database.
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
        let before = std::fs::read(&other).unwrap();
        let err = cycle
            .run(Run::once().journal(&other))
            .expect_err("another program's database as a journal");
        assert!(
            matches!(journal_error(&err), JournalError::Foreign { .. }),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&other).unwrap(), before);

        // A journal cut short.
        cycle.run(Run::times(50).journal(&path)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        assert!(whole.len() > 4096, "the journal is {} bytes", whole.len());
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let cut = std::fs::read(&path).unwrap();
        match cycle.run(Run::times(60).journal(&path)) {
            Err(err) => {
                assert!(
                    matches!(journal_error(&err), JournalError::Corrupt { .. }),
                    "{err:?}"
                );
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    cut,
                    "the cut journal was changed"
                );
            }
            Ok(report) => panic!("a cut journal was run over: {report:?}"),
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            50,
            "a part ran over a bad journal"
        );
    });
}

#[test]
fn a_journal_held_by_a_live_run_refuses_a_second_one() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let (entered_tx, entered) = crossbeam::channel::bounded::<()>(1);
        let (release, released) = crossbeam::channel::bounded::<()>(1);
        let mut b = CycleBuilder::new("held");
        b.add(
            CyclePart::new("wait", move |_| {
                let _ = entered_tx.send(());
                let _ = released.recv_timeout(Duration::from_secs(30));
                1u8
            }),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let handle = cycle.spawn(Run::once().journal(&path)).unwrap();
        entered.recv_timeout(Duration::from_secs(30)).unwrap();

        let mut other = CycleBuilder::new("held-too");
        other.add(CyclePart::new("x", |_| 1u8), 1).unwrap();
        let err = other
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .expect_err("a second run on a live journal");
        assert!(
            matches!(journal_error(&err), JournalError::Busy { .. }),
            "{err:?}"
        );

        release.send(()).unwrap();
        let report = handle.join().unwrap();
        assert!(!report.is_error());
        // Free again once the first run has ended.
        let mut again = CycleBuilder::new("held-too");
        again.add(CyclePart::new("x", |_| 1u8), 1).unwrap();
        again
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .unwrap();
    });
}

#[test]
fn a_journal_removed_under_a_live_run_fails_the_run() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let doomed = path.clone();
        let n = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("removed-file");
        b.add(
            CyclePart::new("a", move |_| {
                if n.fetch_add(1, Ordering::SeqCst) == 2 {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut file = doomed.as_os_str().to_owned();
                        file.push(suffix);
                        let _ = std::fs::remove_file(&file);
                    }
                }
                1u8
            }),
            1,
        )
        .unwrap();
        let err = b
            .build()
            .unwrap()
            .run(Run::times(6).journal(&path))
            .expect_err("the run went on without its journal");
        assert!(
            matches!(journal_error(&err), JournalError::Stopped { .. }),
            "{err:?}"
        );
    });
}

#[test]
fn a_journal_one_byte_short_is_refused() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("short");
        b.add(counted("a", &runs, 1), 1).unwrap();
        let cycle = b.build().unwrap();
        cycle.run(Run::times(20).journal(&path)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        let err = cycle
            .run(Run::times(30).journal(&path))
            .expect_err("a journal one byte short was run over");
        assert!(
            matches!(journal_error(&err), JournalError::Corrupt { .. }),
            "{err:?}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 20);
    });
}
