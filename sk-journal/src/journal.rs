//! [`Journal`]: records runs part by part through one group-committing
//! writer thread, and reads back where a run was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::JournalError;
use crate::fingerprint::Fingerprint;
use crate::open::{Durability, Lock, connect, lock};
use crate::record::{PartRecord, part_row, sql_int};
use crate::writer::{Job, Notify, Write, write_loop};

/// How many ended iterations of a run are kept by default.
pub(crate) const DEFAULT_KEEP: u64 = 100;

/// The most lanes a run's record is read back for.
const MAX_LANES: usize = 1 << 16;

/// Where a journaled run was when it stopped.
///
/// A run has one or more *lanes* (independent loops of iterations, e.g.
/// the parts of a cycle under independent sync), each with its own
/// iteration count; a run of one lane uses lane 0.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Whether the run was in the journal already.
    pub resumed: bool,
    /// Per lane (by index), the iterations that ended completely; a lane
    /// past the end of the list has none.
    pub lanes_done: Vec<u64>,
    /// The finished parts of iterations no lane has ended yet (at least
    /// every part of the iteration after each lane's last ended one), by
    /// iteration, then part name.
    pub completed: Vec<PartRecord>,
    /// The run's store as recorded.
    pub store: Vec<(String, Vec<u8>)>,
    /// Store keys the run removed (to remove from a store seeded anew).
    pub removed: Vec<String>,
    /// `(iteration, part)`s that recorded an intent (see
    /// [`Journal::record_intent`]) and no end: their outcome is unknown.
    pub intents: Vec<(u64, String)>,
}

impl Resume {
    /// The iterations lane `lane` ended completely.
    pub fn iterations_done(&self, lane: usize) -> u64 {
        self.lanes_done.get(lane).copied().unwrap_or(0)
    }
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
    /// How many ended iterations of a run to keep (see
    /// [`Journal::keep_iterations`]), shared with the writer.
    keep: Arc<AtomicU64>,
    writes: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<ConnectionCell>,
    /// The file's identity (device, inode) when it was opened: a journal
    /// removed or replaced under a live run is noticed (see
    /// [`Journal::flush`]).
    file: Option<(u64, u64)>,
    _lock: Lock,
}

/// The identity (device, inode) of the file at `path`, if there is one.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
    /// [`JournalError::Busy`] when a live run holds it (a held journal is
    /// waited for up to one second first: a run killed a moment ago can
    /// leave its lock to a child it was starting until that child runs),
    /// [`JournalError::Foreign`] for a file that is not a journal,
    /// [`JournalError::Corrupt`] for a damaged one,
    /// [`JournalError::NewerVersion`], [`JournalError::Sqlite`],
    /// [`JournalError::Lock`].
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Journal, JournalError> {
        // Absolute: the journal is the same file whatever directory the
        // process moves to.
        let path = path.as_ref();
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let lock = lock(&path)?;
        let writer_conn = connect(&path, durability)?;
        let reader = connect(&path, durability)?;
        let (writes, jobs) = channel::unbounded::<Job>();
        let thread_path = path.clone();
        let keep = Arc::new(AtomicU64::new(DEFAULT_KEEP));
        let writer_keep = Arc::clone(&keep);
        let writer = std::thread::Builder::new()
            .name("sk-journal".to_owned())
            .spawn(move || write_loop(&thread_path, writer_conn, &jobs, &writer_keep))
            .map_err(|source| JournalError::Lock {
                path: path.clone(),
                source,
            })?;
        Ok(Journal {
            file: file_identity(&path),
            path,
            keep,
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

    /// Keeps the records of the last `iterations` ended iterations of each
    /// run (at least 1; default 100): older ones are deleted as
    /// iterations end, so a continuous run's journal stops growing. The
    /// store is kept whole (it is a snapshot, one value per key).
    pub fn keep_iterations(&self, iterations: u64) {
        self.keep.store(iterations.max(1), Ordering::Relaxed);
    }

    fn send(&self, write: Write) -> Ticket {
        let (done, wait) = channel::bounded(1);
        self.send_notifying(write, Notify::Ticket(done));
        Ticket {
            path: self.path.clone(),
            done: wait,
        }
    }

    fn send_notifying(&self, write: Write, notify: Notify) {
        if let Some(writes) = &self.writes {
            if let Err(channel::SendError((_, notify))) = writes.send((write, notify)) {
                notify.send(Err("the writer thread ended".to_owned()));
            }
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
        self.begin_lanes(run, fingerprint, 1)
    }

    /// [`begin`](Self::begin) for a run of `lanes` lanes (see [`Resume`]):
    /// a lane that has ended no iteration yet still holds back the
    /// pruning of the others' records.
    ///
    /// # Errors
    ///
    /// As [`begin`](Self::begin).
    pub fn begin_lanes(
        &self,
        run: &str,
        fingerprint: &Fingerprint,
        lanes: u32,
    ) -> Result<Resume, JournalError> {
        self.flush()?;
        let conn = &self.reader.lock().0;
        for lane in 0..lanes.max(1) {
            conn.execute(
                "INSERT OR IGNORE INTO lanes (run, lane, done) VALUES (?1, ?2, 0)",
                params![run, lane],
            )
            .map_err(self.sqlite(format!("cannot record the lanes of run \"{run}\"")))?;
        }
        let stored: Option<String> = conn
            .query_row("SELECT fingerprint FROM runs WHERE run = ?1", [run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sqlite(format!("cannot read run \"{run}\"")))?;
        let Some(stored) = stored else {
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
        let read = self.sqlite(format!("cannot read run \"{run}\""));
        let resume = (|| {
            let mut lanes_done = Vec::new();
            let mut rows = conn.prepare("SELECT lane, done FROM lanes WHERE run = ?1")?;
            let mut found = rows.query([run])?;
            while let Some(r) = found.next()? {
                let (lane, done): (i64, i64) = (r.get(0)?, r.get(1)?);
                let lane = usize::try_from(lane).unwrap_or(usize::MAX);
                if lane < MAX_LANES {
                    if lanes_done.len() <= lane {
                        lanes_done.resize(lane + 1, 0);
                    }
                    lanes_done[lane] = u64::try_from(done).unwrap_or(0);
                }
            }
            let least = lanes_done.iter().copied().min().unwrap_or(0);
            let mut completed = Vec::new();
            let mut rows = conn.prepare(
                "SELECT iteration, part, state, attempts, error, output, lane FROM parts \
                 WHERE run = ?1 AND iteration > ?2 ORDER BY iteration, part",
            )?;
            let mut found = rows.query(params![run, sql_int(least)])?;
            while let Some(row) = found.next()? {
                completed.push(part_row(row)?);
            }
            let mut store = Vec::new();
            let mut rows =
                conn.prepare("SELECT key, value FROM store WHERE run = ?1 ORDER BY key")?;
            let mut found = rows.query([run])?;
            let mut removed = Vec::new();
            while let Some(r) = found.next()? {
                match r.get::<_, Option<Vec<u8>>>(1)? {
                    Some(value) => store.push((r.get(0)?, value)),
                    None => removed.push(r.get(0)?),
                }
            }
            let mut intents = Vec::new();
            let mut rows = conn.prepare(
                "SELECT i.iteration, i.part FROM intents i WHERE i.run = ?1 AND i.iteration > ?2 \
                 AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.run = i.run \
                 AND p.iteration = i.iteration AND p.part = i.part) ORDER BY i.iteration, i.part",
            )?;
            let mut found = rows.query(params![run, sql_int(least)])?;
            while let Some(r) = found.next()? {
                intents.push((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?));
            }
            Ok(Resume {
                resumed: true,
                lanes_done,
                completed,
                store,
                removed,
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

    /// As [`record`](Self::record), calling `then` on the writer thread
    /// once the record is committed (or with why it never will be),
    /// instead of handing back a ticket. `then` should be quick: the
    /// next commit waits for it.
    pub fn record_then(
        &self,
        run: &str,
        record: PartRecord,
        then: impl FnOnce(Result<(), JournalError>) + Send + 'static,
    ) {
        let path = self.path.clone();
        let notify = Notify::Then(Box::new(move |result: Result<(), String>| {
            then(result.map_err(|why| JournalError::Stopped { path, why }));
        }));
        let write = Write::Part {
            run: run.to_owned(),
            record,
        };
        self.send_notifying(write, notify);
    }

    /// Records that iteration `iteration` of lane `lane` of `run` ended
    /// completely (a run of one lane: lane 0), and lets go of the records
    /// of iterations older than the ones kept (see
    /// [`keep_iterations`](Self::keep_iterations)).
    pub fn finish_iteration(&self, run: &str, lane: u32, iteration: u64) -> Ticket {
        self.send(Write::Iteration {
            run: run.to_owned(),
            lane,
            iteration,
        })
    }

    /// Records step `step` of a part's work (in lane `lane`: it is pruned
    /// with the lane's records) and its value (see [`Journal::step`]).
    pub fn record_step(
        &self,
        run: &str,
        lane: u32,
        iteration: u64,
        part: &str,
        step: &str,
        value: Vec<u8>,
    ) -> Ticket {
        self.send(Write::Step {
            run: run.to_owned(),
            lane,
            iteration,
            part: part.to_owned(),
            step: step.to_owned(),
            value,
        })
    }

    /// Records that a part is about to run an effect that must not run
    /// twice: resumed without a record, its outcome is unknown (see
    /// [`Resume::intents`]).
    pub fn record_intent(&self, run: &str, lane: u32, iteration: u64, part: &str) -> Ticket {
        self.send(Write::Intent {
            run: run.to_owned(),
            lane,
            iteration,
            part: part.to_owned(),
        })
    }

    /// Records store writes of run `run` made outside any part (`None`:
    /// removed).
    pub fn record_store(&self, run: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Ticket {
        self.send(Write::Store {
            run: run.to_owned(),
            writes,
        })
    }

    /// Waits until everything written so far is committed, and checks the
    /// file is still the one opened.
    ///
    /// # Errors
    ///
    /// [`JournalError::Stopped`] when the writer has failed, or the file
    /// was removed or replaced while the journal was open (what was
    /// committed went with it).
    pub fn flush(&self) -> Result<(), JournalError> {
        self.send(Write::Flush).wait()?;
        if file_identity(&self.path) != self.file {
            return Err(JournalError::Stopped {
                path: self.path.clone(),
                why: "the file was removed or replaced while the run wrote to it".to_owned(),
            });
        }
        Ok(())
    }

    /// Every part record the journal holds for run `run` (the iterations
    /// kept), by iteration, then in the order they were committed —
    /// to inspect a run, or watch its journal stay bounded. Store writes
    /// are not included (see [`Resume::store`]).
    ///
    /// # Errors
    ///
    /// [`JournalError::Sqlite`].
    pub fn records(&self, run: &str) -> Result<Vec<PartRecord>, JournalError> {
        let conn = &self.reader.lock().0;
        (|| {
            let mut rows = conn.prepare(
                "SELECT iteration, part, state, attempts, error, output, lane FROM parts \
                 WHERE run = ?1 ORDER BY iteration, part",
            )?;
            let mut found = rows.query([run])?;
            let mut records = Vec::new();
            while let Some(row) = found.next()? {
                records.push(part_row(row)?);
            }
            Ok(records)
        })()
        .map_err(self.sqlite(format!("cannot read the records of run \"{run}\"")))
    }

    /// Runs SQLite's full `PRAGMA integrity_check` on the journal: `Ok`
    /// when it finds nothing wrong.
    ///
    /// # Errors
    ///
    /// [`JournalError::Corrupt`] with what it found;
    /// [`JournalError::Sqlite`].
    pub fn check_integrity(&self) -> Result<(), JournalError> {
        let found: String = self
            .reader
            .lock()
            .0
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.sqlite("cannot check the journal's integrity".to_owned()))?;
        if found == "ok" {
            Ok(())
        } else {
            Err(JournalError::Corrupt {
                path: self.path.clone(),
                why: found,
            })
        }
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
