//! [`Journal`]: records runs part by part through one group-committing
//! writer thread, and reads back where a run was.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::JournalError;
use crate::fingerprint::Fingerprint;
use crate::open::{Durability, Lock, connect, lock};

/// The most records one commit takes.
const BATCH: usize = 512;

/// An iteration number as SQLite stores it (an `i64`; numbers past it,
/// never reached, are kept at the largest).
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One finished part of one iteration, as the journal keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartRecord {
    /// The iteration, from 1.
    pub iteration: u64,
    /// The part's name.
    pub part: String,
    /// Its end state, by name (`succeeded`, `failed`, ...).
    pub state: String,
    /// How many attempts it took.
    pub attempts: u32,
    /// Its error's text, if it failed.
    pub error: Option<String>,
    /// Its output in the external format, if it has one.
    pub output: Option<Vec<u8>>,
    /// The run-store writes the part made (`None`: removed), committed
    /// in the same transaction as the record.
    pub store: Vec<(String, Option<Vec<u8>>)>,
}

/// Where a journaled run was when it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Whether the run was in the journal already.
    pub resumed: bool,
    /// Iterations that ended completely.
    pub iterations_done: u64,
    /// The parts of the next iteration that had finished.
    pub completed: Vec<PartRecord>,
    /// The run's store as recorded.
    pub store: Vec<(String, Vec<u8>)>,
    /// Parts of the next iteration that recorded an intent (see
    /// [`Journal::record_intent`]) and no end: their outcome is unknown.
    pub intents: Vec<String>,
}

/// The answer to a write: wait on it to know the write is committed.
#[derive(Debug)]
#[must_use = "a write is committed only once its ticket says so"]
pub struct Ticket {
    path: PathBuf,
    done: Receiver<Result<(), String>>,
}

impl Ticket {
    /// Waits until the write is committed.
    ///
    /// # Errors
    ///
    /// [`JournalError::Stopped`] when the writer failed or stopped before
    /// committing it.
    pub fn wait(self) -> Result<(), JournalError> {
        let stopped = |why: String| JournalError::Stopped {
            path: self.path.clone(),
            why,
        };
        match self.done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(stopped(why)),
            Err(_) => Err(stopped("the writer thread ended".to_owned())),
        }
    }
}

/// What the writer thread does.
enum Write {
    Part {
        run: String,
        record: PartRecord,
    },
    Iteration {
        run: String,
        iteration: u64,
    },
    Step {
        run: String,
        iteration: u64,
        part: String,
        step: String,
        value: Vec<u8>,
    },
    Intent {
        run: String,
        iteration: u64,
        part: String,
    },
    /// Nothing: committed when everything sent before it is.
    Flush,
}

/// A write and who to tell when it is committed.
type Job = (Write, Sender<Result<(), String>>);

/// A journal file, open for one process.
///
/// Writes go to one writer thread in order (first in, first committed)
/// and are committed in batches; each returns a [`Ticket`] to wait on.
/// Reads see what is committed. The file is locked while the journal is
/// open: a second opener, in this process or another, gets
/// [`JournalError::Busy`].
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    writes: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<ConnectionCell>,
    _lock: Lock,
}

/// A connection, `Debug` for the journal's.
struct ConnectionCell(Connection);

impl std::fmt::Debug for ConnectionCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Journal {
    /// Opens the journal at `path`, creating it if there is no file.
    ///
    /// # Errors
    ///
    /// [`JournalError::Busy`] when a live run holds it,
    /// [`JournalError::Foreign`] for a file that is not a journal,
    /// [`JournalError::Corrupt`] for a damaged one,
    /// [`JournalError::NewerVersion`], [`JournalError::Sqlite`],
    /// [`JournalError::Lock`].
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Journal, JournalError> {
        let path = path.as_ref().to_owned();
        let lock = lock(&path)?;
        let writer_conn = connect(&path, durability)?;
        let reader = connect(&path, durability)?;
        let (writes, jobs) = channel::unbounded::<Job>();
        let thread_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("sk-journal".to_owned())
            .spawn(move || write_loop(&thread_path, writer_conn, &jobs))
            .map_err(|source| JournalError::Lock {
                path: path.clone(),
                source,
            })?;
        Ok(Journal {
            path,
            writes: Some(writes),
            writer: Some(writer),
            reader: Mutex::new(ConnectionCell(reader)),
            _lock: lock,
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, write: Write) -> Ticket {
        let (done, wait) = channel::bounded(1);
        if let Some(writes) = &self.writes {
            // A writer that has stopped drops the job: the ticket says so.
            let _ = writes.send((write, done));
        }
        Ticket {
            path: self.path.clone(),
            done: wait,
        }
    }

    fn sqlite(&self, what: String) -> impl FnOnce(rusqlite::Error) -> JournalError + '_ {
        move |source| JournalError::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Starts run `run` with the plan `fingerprint`, or finds where it was:
    /// a run not in the journal is recorded with its fingerprint.
    ///
    /// # Errors
    ///
    /// [`JournalError::PlanDrift`] naming the first difference when the
    /// run was journaled with another plan; [`JournalError::Corrupt`]
    /// when its fingerprint cannot be read; [`JournalError::Sqlite`].
    pub fn begin(&self, run: &str, fingerprint: &Fingerprint) -> Result<Resume, JournalError> {
        self.flush()?;
        let conn = &self.reader.lock().0;
        let row: Option<(String, i64)> = conn
            .query_row(
                "SELECT fingerprint, iterations_done FROM runs WHERE run = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sqlite(format!("cannot read run \"{run}\"")))?;
        let Some((stored, done)) = row else {
            conn.execute(
                "INSERT INTO runs (run, fingerprint) VALUES (?1, ?2)",
                params![run, fingerprint.encode()],
            )
            .map_err(self.sqlite(format!("cannot record run \"{run}\"")))?;
            return Ok(Resume::default());
        };
        let Some(was) = Fingerprint::decode(&stored) else {
            return Err(JournalError::Corrupt {
                path: self.path.clone(),
                why: format!("the plan of run \"{run}\" cannot be read"),
            });
        };
        if let Some(drift) = was.first_difference(fingerprint) {
            return Err(JournalError::PlanDrift {
                path: self.path.clone(),
                run: run.to_owned(),
                what: drift.what,
                was: drift.was,
                now: drift.now,
            });
        }
        let done = u64::try_from(done).unwrap_or(0);
        let next = sql_int(done + 1);
        let read = self.sqlite(format!("cannot read run \"{run}\""));
        let resume = (|| {
            let mut completed = Vec::new();
            let mut rows = conn.prepare(
                "SELECT part, state, attempts, error, output FROM parts \
                 WHERE run = ?1 AND iteration = ?2 ORDER BY rowid",
            )?;
            let mut found = rows.query(params![run, next])?;
            while let Some(r) = found.next()? {
                completed.push(PartRecord {
                    iteration: done + 1,
                    part: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    error: r.get(3)?,
                    output: r.get(4)?,
                    store: Vec::new(),
                });
            }
            let mut store = Vec::new();
            let mut rows =
                conn.prepare("SELECT key, value FROM store WHERE run = ?1 ORDER BY key")?;
            let mut found = rows.query([run])?;
            while let Some(r) = found.next()? {
                store.push((r.get(0)?, r.get(1)?));
            }
            let mut intents = Vec::new();
            let mut rows = conn.prepare(
                "SELECT i.part FROM intents i WHERE i.run = ?1 AND i.iteration = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM parts p WHERE p.run = i.run AND p.iteration = i.iteration \
                  AND p.part = i.part) ORDER BY i.part",
            )?;
            let mut found = rows.query(params![run, next])?;
            while let Some(r) = found.next()? {
                intents.push(r.get(0)?);
            }
            Ok(Resume {
                resumed: true,
                iterations_done: done,
                completed,
                store,
                intents,
            })
        })()
        .map_err(read)?;
        Ok(resume)
    }

    /// Records a finished part of run `run`, with its store writes, in
    /// one transaction. A second record of the same (iteration, part)
    /// replaces the first (a part re-run after a crash before its record
    /// was committed).
    pub fn record(&self, run: &str, record: PartRecord) -> Ticket {
        self.send(Write::Part {
            run: run.to_owned(),
            record,
        })
    }

    /// Records that iteration `iteration` of `run` ended completely.
    pub fn finish_iteration(&self, run: &str, iteration: u64) -> Ticket {
        self.send(Write::Iteration {
            run: run.to_owned(),
            iteration,
        })
    }

    /// Records step `step` of a part's work and its value (see
    /// [`Journal::step`]).
    pub fn record_step(
        &self,
        run: &str,
        iteration: u64,
        part: &str,
        step: &str,
        value: Vec<u8>,
    ) -> Ticket {
        self.send(Write::Step {
            run: run.to_owned(),
            iteration,
            part: part.to_owned(),
            step: step.to_owned(),
            value,
        })
    }

    /// Records that a part is about to run an effect that must not run
    /// twice: resumed without a record, its outcome is unknown (see
    /// [`Resume::intents`]).
    pub fn record_intent(&self, run: &str, iteration: u64, part: &str) -> Ticket {
        self.send(Write::Intent {
            run: run.to_owned(),
            iteration,
            part: part.to_owned(),
        })
    }

    /// Waits until everything written so far is committed.
    ///
    /// # Errors
    ///
    /// [`JournalError::Stopped`] when the writer has failed.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.send(Write::Flush).wait()
    }

    /// The recorded value of step `step` of a part, if it was recorded.
    ///
    /// # Errors
    ///
    /// [`JournalError::Sqlite`].
    pub fn step(
        &self,
        run: &str,
        iteration: u64,
        part: &str,
        step: &str,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        self.reader
            .lock()
            .0
            .query_row(
                "SELECT value FROM steps WHERE run = ?1 AND iteration = ?2 AND part = ?3 \
                 AND step = ?4",
                params![run, sql_int(iteration), part, step],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sqlite(format!("cannot read step \"{step}\" of part \"{part}\"")))
    }
}

impl Drop for Journal {
    /// Commits what was sent, then ends the writer.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: takes what has arrived (up to [`BATCH`]), commits
/// it in one transaction, tells each sender, and goes on; after a failed
/// commit it tells everyone why and stops.
fn write_loop(path: &Path, mut conn: Connection, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(()) => {
                for (_, done) in batch {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                let why = format!("cannot commit to {}: {e}", path.display());
                tracing::error!(journal = %path.display(), error = %e, "journal write failed");
                for (_, done) in batch {
                    let _ = done.send(Err(why.clone()));
                }
                while let Ok((_, done)) = jobs.try_recv() {
                    let _ = done.send(Err(why.clone()));
                }
                return;
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (write, _) in batch {
        match write {
            Write::Part { run, record } => {
                tx.execute(
                    "INSERT OR REPLACE INTO parts (run, iteration, part, state, attempts, error, \
                     output) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        run,
                        sql_int(record.iteration),
                        record.part,
                        record.state,
                        record.attempts,
                        record.error,
                        record.output
                    ],
                )?;
                for (key, value) in &record.store {
                    match value {
                        Some(value) => tx.execute(
                            "INSERT OR REPLACE INTO store (run, key, value) VALUES (?1, ?2, ?3)",
                            params![run, key, value],
                        )?,
                        None => tx.execute(
                            "DELETE FROM store WHERE run = ?1 AND key = ?2",
                            params![run, key],
                        )?,
                    };
                }
            }
            Write::Iteration { run, iteration } => {
                tx.execute(
                    "UPDATE runs SET iterations_done = max(iterations_done, ?2) WHERE run = ?1",
                    params![run, sql_int(*iteration)],
                )?;
            }
            Write::Step {
                run,
                iteration,
                part,
                step,
                value,
            } => {
                tx.execute(
                    "INSERT OR REPLACE INTO steps (run, iteration, part, step, value) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![run, sql_int(*iteration), part, step, value],
                )?;
            }
            Write::Intent {
                run,
                iteration,
                part,
            } => {
                tx.execute(
                    "INSERT OR IGNORE INTO intents (run, iteration, part) VALUES (?1, ?2, ?3)",
                    params![run, sql_int(*iteration), part],
                )?;
            }
            Write::Flush => {}
        }
    }
    tx.commit()
}
