//! The journal as a run uses it: record, resume, drift, and every kind
//! of file that is not a good journal.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sk_journal::{Durability, Fingerprint, Journal, JournalError, PartRecord};
use sk_testkit::guarded;

fn plan(parts: &[(&str, &str)]) -> Fingerprint {
    Fingerprint::new("sync=parallel", parts.iter().copied())
}

fn part(iteration: u64, name: &str, output: &[u8]) -> PartRecord {
    PartRecord {
        iteration,
        part: name.to_owned(),
        lane: 0,
        state: "succeeded".to_owned(),
        attempts: 1,
        error: None,
        output: Some(output.to_vec()),
        store: Vec::new(),
    }
}

fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.journal");
    (dir, path)
}

#[test]
fn a_reopened_journal_resumes_where_the_run_was() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("a", "1-1"), ("b", "2-1"), ("c", "3-1")]);
        {
            let j = Journal::open(&path, Durability::default()).unwrap();
            let fresh = j.begin("r1", &fp).unwrap();
            assert!(!fresh.resumed);
            for name in ["a", "b", "c"] {
                let _ = j.record("r1", part(1, name, name.as_bytes()));
            }
            j.finish_iteration("r1", 0, 1).wait().unwrap();
            let mut a = part(2, "a", b"a2");
            a.store = vec![
                ("seen".to_owned(), Some(b"2".to_vec())),
                ("gone".to_owned(), None),
            ];
            j.record("r1", a).wait().unwrap();
            // Iteration 2 stops here: b and c never finished.
        }
        let j = Journal::open(&path, Durability::default()).unwrap();
        let resume = j.begin("r1", &fp).unwrap();
        assert!(resume.resumed);
        assert_eq!(resume.iterations_done(0), 1);
        assert_eq!(resume.completed, vec![part(2, "a", b"a2")]);
        assert_eq!(resume.store, vec![("seen".to_owned(), b"2".to_vec())]);
        assert!(resume.intents.is_empty());
        // Another run in the same journal starts fresh.
        assert!(!j.begin("r2", &fp).unwrap().resumed);
    })
}

#[test]
fn a_record_written_twice_keeps_one_and_the_last() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("a", "1-1")]);
        let j = Journal::open(&path, Durability::PowerLoss).unwrap();
        j.begin("r", &fp).unwrap();
        let _ = j.record("r", part(1, "a", b"first"));
        j.record("r", part(1, "a", b"second")).wait().unwrap();
        let resume = j.begin("r", &fp).unwrap();
        assert_eq!(resume.completed, vec![part(1, "a", b"second")]);
    })
}

#[test]
fn resuming_with_another_plan_names_the_first_part_that_differs() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin(
            "r",
            &plan(&[("load", "1-1 pool"), ("score", "2-1 process")]),
        )
        .unwrap();
        let err = j
            .begin("r", &plan(&[("load", "1-1 pool"), ("score", "2-1 pool")]))
            .unwrap_err();
        match &err {
            JournalError::PlanDrift {
                run,
                what,
                was,
                now,
                ..
            } => {
                assert_eq!(run, "r");
                assert_eq!(what, "part \"score\"");
                assert_eq!((was.as_str(), now.as_str()), ("2-1 process", "2-1 pool"));
            }
            other => panic!("expected plan drift, got {other:?}"),
        }
        assert!(err.to_string().contains("part \"score\""), "{err}");
    })
}

#[test]
fn steps_and_intents_survive_a_reopen() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("submit", "1-1 once")]);
        {
            let j = Journal::open(&path, Durability::default()).unwrap();
            j.begin("r", &fp).unwrap();
            j.record_intent("r", 0, 1, "submit").wait().unwrap();
            j.record_step("r", 0, 1, "submit", "create", b"job-42".to_vec())
                .wait()
                .unwrap();
        }
        let j = Journal::open(&path, Durability::default()).unwrap();
        let resume = j.begin("r", &fp).unwrap();
        assert_eq!(resume.intents, [(1, "submit".to_owned())]);
        assert_eq!(
            j.step("r", 1, "submit", "create").unwrap().as_deref(),
            Some(&b"job-42"[..])
        );
        assert_eq!(j.step("r", 1, "submit", "poll").unwrap(), None);
        // A part that recorded its end has no outcome left unknown.
        j.record("r", part(1, "submit", b"done")).wait().unwrap();
        assert!(j.begin("r", &fp).unwrap().intents.is_empty());
    })
}

#[test]
fn writes_commit_in_the_order_they_were_sent() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[]);
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("r", &fp).unwrap();
        let tickets: Vec<_> = (0..2000u32)
            .map(|n| j.record("r", part(1, &format!("p{n:04}"), &n.to_le_bytes())))
            .collect();
        // The last ticket committed means every earlier one did.
        tickets.into_iter().last().unwrap().wait().unwrap();
        let resume = j.begin("r", &fp).unwrap();
        assert_eq!(resume.completed.len(), 2000);
        let names: Vec<_> = resume.completed.iter().map(|r| r.part.clone()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "records come back by iteration and name");
    })
}

#[test]
fn a_second_opener_is_refused_while_the_journal_is_live() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let j = Journal::open(&path, Durability::default()).unwrap();
        let err = Journal::open(&path, Durability::default()).unwrap_err();
        assert!(matches!(err, JournalError::Busy { .. }), "{err}");
        assert!(
            err.to_string().contains("held by another live run"),
            "{err}"
        );
        drop(j);
        Journal::open(&path, Durability::default()).unwrap();
    })
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_alone() {
    guarded(|| {
        let (dir, path) = journal_path();
        // Not a database at all.
        std::fs::write(
            &path,
            b"hello, this is someone's notes file, not a database",
        )
        .unwrap();
        let err = Journal::open(&path, Durability::default()).unwrap_err();
        assert!(matches!(err, JournalError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("run.journal"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"hello, this is someone's notes file, not a database"
        );
        // Another program's SQLite database.
        let other = dir.path().join("other.db");
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
        drop(conn);
        let err = Journal::open(&other, Durability::default()).unwrap_err();
        assert!(matches!(err, JournalError::Foreign { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("another program's SQLite database"),
            "{err}"
        );
        // A SQLite database another program marked as its own.
        let marked = dir.path().join("marked.db");
        let conn = rusqlite::Connection::open(&marked).unwrap();
        conn.execute_batch("PRAGMA application_id = 305419896;")
            .unwrap();
        drop(conn);
        let err = Journal::open(&marked, Durability::default()).unwrap_err();
        assert!(err.to_string().contains("application 0x12345678"), "{err}");
        // A truncated one.
        let short = dir.path().join("short.journal");
        std::fs::write(&short, b"SQLite for").unwrap();
        let err = Journal::open(&short, Durability::default()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    })
}

#[test]
fn a_journal_of_a_newer_format_is_refused() {
    guarded(|| {
        let (_dir, path) = journal_path();
        drop(Journal::open(&path, Durability::default()).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        // The user version is the big-endian u32 at offset 60.
        bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
        std::fs::write(&path, bytes).unwrap();
        let err = Journal::open(&path, Durability::default()).unwrap_err();
        assert!(
            matches!(err, JournalError::NewerVersion { found: 99, .. }),
            "{err}"
        );
    })
}

#[test]
fn damaged_pages_are_corrupt_not_a_fresh_start() {
    guarded(|| {
        let (_dir, path) = journal_path();
        {
            let j = Journal::open(&path, Durability::PowerLoss).unwrap();
            j.begin("r", &plan(&[("a", "1-1")])).unwrap();
            for n in 0..200u32 {
                let _ = j.record("r", part(1, &format!("p{n}"), &[7; 512]));
            }
            j.flush().unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192, "{} bytes", bytes.len());
        // Scribble over the second page onwards, keeping the header.
        for b in &mut bytes[4096..8192] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = Journal::open(&path, Durability::default()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    })
}

/// The child side of [`a_run_killed_after_a_commit_keeps_it_and_frees_the_journal`].
const CHILD_ENV: &str = "SK_JOURNAL_TEST_CHILD";

#[test]
fn a_run_killed_after_a_commit_keeps_it_and_frees_the_journal() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // The child: record, say so only once committed, then wait to die.
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("killed", &plan(&[("a", "1-1")])).unwrap();
        for n in 0..50u32 {
            j.record("killed", part(1, &format!("p{n:02}"), &n.to_le_bytes()))
                .wait()
                .unwrap();
        }
        println!("committed");
        std::thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    guarded(|| {
        use std::io::BufRead;
        let (_dir, path) = journal_path();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_run_killed_after_a_commit_keeps_it_and_frees_the_journal",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let committed = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("committed"));
        assert!(committed, "the child never committed");
        // While it lives, the journal is its.
        assert!(matches!(
            Journal::open(&path, Durability::default()),
            Err(JournalError::Busy { .. })
        ));
        child.kill().unwrap();
        child.wait().unwrap();
        // Dead: the lock is gone with it, and every committed record is in.
        let j = Journal::open(&path, Durability::default()).unwrap();
        let resume = j.begin("killed", &plan(&[("a", "1-1")])).unwrap();
        assert_eq!(resume.completed.len(), 50);
        assert_eq!(resume.completed[49], part(1, "p49", &49u32.to_le_bytes()));
    })
}

#[test]
fn a_continuous_run_keeps_its_last_iterations_and_the_file_plateaus() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("a", "1-1"), ("b", "2-1")]);
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.keep_iterations(10);
        j.begin("r", &fp).unwrap();
        let wal = path.with_extension("journal-wal");
        let size = || {
            std::fs::metadata(&path).map_or(0, |m| m.len())
                + std::fs::metadata(&wal).map_or(0, |m| m.len())
        };
        let mut sizes = Vec::new();
        for iteration in 1..=100_000u64 {
            for name in ["a", "b"] {
                let mut record = part(iteration, name, &iteration.to_le_bytes());
                record.store = vec![("last".to_owned(), Some(iteration.to_le_bytes().to_vec()))];
                j.record_then("r", record, |_| {});
            }
            let ticket = j.finish_iteration("r", 0, iteration);
            if iteration % 20_000 == 0 {
                ticket.wait().unwrap();
                sizes.push(size());
            } else {
                drop(ticket);
            }
        }
        j.flush().unwrap();
        assert_eq!(
            j.records("r").unwrap().len(),
            2 * 10,
            "only the last 10 iterations are kept"
        );
        let resume = j.begin("r", &fp).unwrap();
        assert_eq!(resume.iterations_done(0), 100_000);
        assert_eq!(
            resume.store,
            vec![("last".to_owned(), 100_000u64.to_le_bytes().to_vec())]
        );
        // The file and its write-ahead log (which SQLite lets grow to
        // about 4 MB before it reuses it) stop growing: the last 40k
        // iterations (80k records, several MB unpruned) add nothing.
        assert!(
            sizes[4] <= sizes[2] + sizes[2] / 10,
            "journal size kept growing: {sizes:?}"
        );
        j.check_integrity().unwrap();
    })
}

#[test]
fn lanes_end_iterations_and_are_pruned_on_their_own() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("fast", "1-1 lane 0"), ("slow", "1-2 lane 1")]);
        let slow = |iteration| PartRecord {
            lane: 1,
            ..part(iteration, "slow", b"s")
        };
        {
            let j = Journal::open(&path, Durability::default()).unwrap();
            j.keep_iterations(1);
            j.begin_lanes("r", &fp, 2).unwrap();
            for i in 1..=5 {
                let _ = j.record("r", part(i, "fast", b"f"));
                let _ = j.finish_iteration("r", 0, i);
            }
            let _ = j.record("r", slow(1));
            let _ = j.finish_iteration("r", 1, 1);
            j.record("r", slow(2)).wait().unwrap();
        }
        let j = Journal::open(&path, Durability::default()).unwrap();
        let resume = j.begin_lanes("r", &fp, 2).unwrap();
        assert_eq!(resume.lanes_done, [5, 1]);
        assert_eq!(resume.iterations_done(7), 0);
        // Each lane keeps its own last iteration (keep 1) and what came
        // after it, whatever the other lane does: the fast lane does not
        // grow while the slow one lags.
        let kept: Vec<_> = j
            .records("r")
            .unwrap()
            .iter()
            .map(|r| (r.part.clone(), r.iteration))
            .collect();
        assert_eq!(
            kept,
            [
                ("slow".to_owned(), 1),
                ("slow".to_owned(), 2),
                ("fast".to_owned(), 5)
            ]
        );
        let next: Vec<_> = resume
            .completed
            .iter()
            .map(|r| (r.part.as_str(), r.iteration, r.lane))
            .collect();
        assert_eq!(next, [("slow", 2, 1), ("fast", 5, 0)]);
    })
}

#[test]
fn record_then_reports_the_commit_on_the_writer_thread() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("r", &plan(&[])).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        j.record_then("r", part(1, "a", b"x"), move |result| {
            let _ = tx.send(result.is_ok());
        });
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
        // Committed: a reader sees it.
        assert_eq!(j.records("r").unwrap().len(), 1);
    })
}

#[test]
fn a_removed_store_key_stays_removed_and_store_writes_stand_alone() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fp = plan(&[("a", "1-1")]);
        {
            let j = Journal::open(&path, Durability::default()).unwrap();
            j.begin("r", &fp).unwrap();
            let mut record = part(1, "a", b"x");
            record.store = vec![
                ("kept".to_owned(), Some(b"1".to_vec())),
                ("gone".to_owned(), Some(b"2".to_vec())),
            ];
            j.record("r", record).wait().unwrap();
            j.record_store("r", vec![("gone".to_owned(), None)])
                .wait()
                .unwrap();
        }
        let j = Journal::open(&path, Durability::default()).unwrap();
        let resume = j.begin("r", &fp).unwrap();
        assert_eq!(resume.store, vec![("kept".to_owned(), b"1".to_vec())]);
        assert_eq!(resume.removed, ["gone"]);
    })
}

#[test]
fn a_journal_cut_inside_a_page_is_corrupt() {
    guarded(|| {
        let (_dir, path) = journal_path();
        {
            let j = Journal::open(&path, Durability::default()).unwrap();
            j.begin("r", &plan(&[("a", "1-1")])).unwrap();
            for n in 0..200u32 {
                let _ = j.record("r", part(1, &format!("p{n}"), &[7; 100]));
            }
            j.flush().unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        match Journal::open(&path, Durability::default()) {
            Err(JournalError::Corrupt { why, .. }) => assert!(why.contains("cut short"), "{why}"),
            other => panic!("a journal one byte short was opened: {other:?}"),
        }
    })
}

#[test]
fn a_journal_removed_under_a_live_run_fails_its_flush() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("r", &plan(&[("a", "1-1")])).unwrap();
        j.record("r", part(1, "a", b"x")).wait().unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = j.flush().unwrap_err();
        assert!(matches!(err, JournalError::Stopped { .. }), "{err}");
        assert!(err.to_string().contains("removed or replaced"), "{err}");
    })
}

#[test]
fn a_commit_callback_that_panics_does_not_stop_the_writer() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("r", &plan(&[("a", "1-1")])).unwrap();
        j.record_then("r", part(1, "a", b"x"), |_| panic!("an observer bug"));
        j.record("r", part(2, "a", b"y")).wait().unwrap();
        assert_eq!(j.records("r").unwrap().len(), 2);
    })
}
