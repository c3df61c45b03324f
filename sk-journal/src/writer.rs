//! The journal's writer thread: it takes writes in the order they were
//! sent, commits them in batches (group commit) with statements prepared
//! once, and tells each sender when its write is committed.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use rusqlite::{Connection, params};

use crate::record::{PartRecord, sql_int};

/// The most records one commit takes.
const BATCH: usize = 512;

/// How long the writer waits for more records to commit with the ones it
/// has, when nobody waits for them (see `write_loop`).
const LINGER: Duration = Duration::from_millis(5);

/// Who to tell when a write is committed (or why it never will be).
pub(crate) enum Notify {
    Ticket(Sender<Result<(), String>>),
    Then(Box<dyn FnOnce(Result<(), String>) + Send>),
}

impl Notify {
    /// Whether someone may be waiting for the commit (a ticket): then it
    /// is committed without lingering.
    fn is_awaited(&self) -> bool {
        matches!(self, Notify::Ticket(_))
    }

    pub(crate) fn send(self, result: Result<(), String>) {
        match self {
            Notify::Ticket(done) => {
                let _ = done.send(result);
            }
            // A callback that panics must not take the writer down.
            Notify::Then(then) => {
                let call = std::panic::AssertUnwindSafe(move || then(result));
                if std::panic::catch_unwind(call).is_err() {
                    tracing::error!("a journal commit callback panicked");
                }
            }
        }
    }
}

/// What the writer thread does.
pub(crate) enum Write {
    Part {
        run: String,
        record: PartRecord,
    },
    Iteration {
        run: String,
        lane: u32,
        iteration: u64,
    },
    Store {
        run: String,
        writes: Vec<(String, Option<Vec<u8>>)>,
    },
    Step {
        run: String,
        lane: u32,
        iteration: u64,
        part: String,
        step: String,
        value: Vec<u8>,
    },
    Intent {
        run: String,
        lane: u32,
        iteration: u64,
        part: String,
    },
    /// Nothing: committed when everything sent before it is.
    Flush,
}

/// A write and who to tell when it is committed.
pub(crate) type Job = (Write, Notify);

/// The writer thread: takes what has arrived (up to [`BATCH`]), commits
/// it in one transaction, tells each sender, and goes on; after a failed
/// commit it tells everyone why and stops.
pub(crate) fn write_loop(path: &Path, conn: Connection, jobs: &Receiver<Job>, keep: &AtomicU64) {
    let fail_all = |why: String, batch: Vec<Job>| {
        tracing::error!(journal = %path.display(), error = %why, "journal write failed");
        for (_, done) in batch {
            done.send(Err(why.clone()));
        }
        while let Ok((_, done)) = jobs.recv() {
            done.send(Err(why.clone()));
        }
    };
    let mut statements = match Statements::prepare(&conn) {
        Ok(statements) => statements,
        Err(e) => {
            return fail_all(
                format!("cannot write to {}: {e}", path.display()),
                Vec::new(),
            );
        }
    };
    while let Ok(first) = jobs.recv() {
        // Group commit: what is queued goes in one transaction. Records
        // nobody waits for (a run's part ends, reported by callback) wait
        // LINGER for company first: a commit costs tens of microseconds of
        // locks and WAL writes whatever it holds, and parts ending one by
        // one would otherwise commit one by one. The writer sleeps rather
        // than waiting on the channel meanwhile, so that senders do not
        // pay a wake-up each (a futex wake across cores costs more than
        // the record).
        let mut awaited = first.1.is_awaited();
        let mut batch = vec![first];
        let drain = |batch: &mut Vec<Job>, awaited: &mut bool| {
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => {
                        *awaited |= job.1.is_awaited();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
        };
        drain(&mut batch, &mut awaited);
        if !awaited && batch.len() < BATCH {
            std::thread::sleep(LINGER);
            drain(&mut batch, &mut awaited);
        }
        match commit(&conn, &mut statements, &batch, keep.load(Ordering::Relaxed)) {
            Ok(()) => {
                for (_, done) in batch {
                    done.send(Ok(()));
                }
            }
            Err(e) => {
                return fail_all(format!("cannot commit to {}: {e}", path.display()), batch);
            }
        }
    }
}

/// The writer's statements, prepared once for the life of the writer.
struct Statements<'c> {
    part: rusqlite::Statement<'c>,
    store_set: rusqlite::Statement<'c>,
    store_delete: rusqlite::Statement<'c>,
    lane: rusqlite::Statement<'c>,
    prune: [rusqlite::Statement<'c>; 3],
    step: rusqlite::Statement<'c>,
    intent: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            part: conn.prepare(
                "INSERT OR REPLACE INTO parts (run, iteration, part, state, attempts, error, \
                 output, lane) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            store_set: conn
                .prepare("INSERT OR REPLACE INTO store (run, key, value) VALUES (?1, ?2, ?3)")?,
            // A removal is kept (a null value): a store seeded anew on
            // resume must lose the key too.
            store_delete: conn
                .prepare("INSERT OR REPLACE INTO store (run, key, value) VALUES (?1, ?2, NULL)")?,
            lane: conn.prepare(
                "INSERT INTO lanes (run, lane, done) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (run, lane) DO UPDATE SET done = max(done, excluded.done)",
            )?,
            prune: [
                conn.prepare("DELETE FROM parts WHERE run = ?1 AND lane = ?2 AND iteration <= ?3")?,
                conn.prepare("DELETE FROM steps WHERE run = ?1 AND lane = ?2 AND iteration <= ?3")?,
                conn.prepare(
                    "DELETE FROM intents WHERE run = ?1 AND lane = ?2 AND iteration <= ?3",
                )?,
            ],
            step: conn.prepare(
                "INSERT OR REPLACE INTO steps (run, iteration, part, step, value, lane) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            intent: conn.prepare(
                "INSERT OR IGNORE INTO intents (run, iteration, part, lane) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?,
        })
    }
}

/// Commits `batch` in one transaction (rolled back whole on a failure).
fn commit(
    conn: &Connection,
    statements: &mut Statements<'_>,
    batch: &[Job],
    keep: u64,
) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    let done = apply(statements, batch, keep).and_then(|()| conn.execute_batch("COMMIT"));
    if done.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// Writes (`Some`) or removes (`None`) store keys of run `run`.
fn store_writes(
    statements: &mut Statements<'_>,
    run: &str,
    writes: &[(String, Option<Vec<u8>>)],
) -> rusqlite::Result<()> {
    for (key, value) in writes {
        match value {
            Some(value) => statements.store_set.execute(params![run, key, value])?,
            None => statements.store_delete.execute(params![run, key])?,
        };
    }
    Ok(())
}

fn apply(statements: &mut Statements<'_>, batch: &[Job], keep: u64) -> rusqlite::Result<()> {
    for (write, _) in batch {
        match write {
            Write::Part { run, record } => {
                statements.part.execute(params![
                    run,
                    sql_int(record.iteration),
                    record.part,
                    record.state,
                    record.attempts,
                    record.error,
                    record.output,
                    record.lane
                ])?;
                store_writes(statements, run, &record.store)?;
            }
            Write::Store { run, writes } => store_writes(statements, run, writes)?,
            Write::Iteration {
                run,
                lane,
                iteration,
            } => {
                statements
                    .lane
                    .execute(params![run, lane, sql_int(*iteration)])?;
                // A lane's records (parts, steps, intents) go as its own
                // iterations end.
                let before = sql_int(*iteration).saturating_sub(sql_int(keep));
                if before > 0 {
                    for prune in &mut statements.prune {
                        prune.execute(params![run, lane, before])?;
                    }
                }
            }
            Write::Step {
                run,
                lane,
                iteration,
                part,
                step,
                value,
            } => {
                statements.step.execute(params![
                    run,
                    sql_int(*iteration),
                    part,
                    step,
                    value,
                    lane
                ])?;
            }
            Write::Intent {
                run,
                lane,
                iteration,
                part,
            } => {
                statements
                    .intent
                    .execute(params![run, sql_int(*iteration), part, lane])?;
            }
            Write::Flush => {}
        }
    }
    Ok(())
}
