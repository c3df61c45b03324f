//! Opening a journal file: what it must be before anything is written to
//! it (a SQLite database of ours, of a format we read, undamaged), the
//! lock that keeps a second live run out, and the schema.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::JournalError;

/// `PRAGMA application_id` of a journal: "SkJn".
pub(crate) const APPLICATION_ID: i64 = 0x536B_4A6E;

/// The journal format this library writes (`PRAGMA user_version`).
pub(crate) const FORMAT: i64 = 1;

/// How durable a committed record is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives the death of the process (WAL, `synchronous=NORMAL`).
    #[default]
    ProcessDeath,
    /// Survives a power cut too (`synchronous=FULL`): each commit waits
    /// for the disk.
    PowerLoss,
}

/// The header every SQLite database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lanes (
    run TEXT NOT NULL,
    lane INTEGER NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (run, lane)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    run TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    part TEXT NOT NULL,
    lane INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    output BLOB,
    PRIMARY KEY (run, iteration, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store (
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    run TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    part TEXT NOT NULL,
    lane INTEGER NOT NULL,
    step TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (run, iteration, part, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (
    run TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    part TEXT NOT NULL,
    lane INTEGER NOT NULL,
    PRIMARY KEY (run, iteration, part)
) WITHOUT ROWID;
";

/// The advisory lock a live journal holds, released when dropped (or
/// when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Takes the lock of the journal at `path`.
pub(crate) fn lock(path: &Path) -> Result<Lock, JournalError> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|source| JournalError::Lock {
            path: path.to_owned(),
            source,
        })?;
    // A process that has just died can leave its lock held for a moment
    // by a child it was starting (a spawned process shares the lock until
    // it runs its program): a busy lock is tried again for a while.
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(JournalError::Busy {
                    path: path.to_owned(),
                    lock: lock_path,
                });
            }
            Err(e) => {
                return Err(JournalError::Lock {
                    path: path.to_owned(),
                    source: e.into(),
                });
            }
        }
    }
}

/// How long a busy journal lock is waited for before
/// [`JournalError::Busy`].
pub(crate) const LOCK_PATIENCE: Duration = Duration::from_secs(1);

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Checks that the file at `path`, if it has any bytes, starts as a SQLite
/// database does.
fn check_header(path: &Path) -> Result<(), JournalError> {
    let foreign = |why: String| JournalError::Foreign {
        path: path.to_owned(),
        why,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(JournalError::Lock {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut header = [0u8; 18];
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(foreign(format!("cannot read it: {e}"))),
        }
    }
    let len = file.metadata().map_or(0, |m| m.len());
    let cut = |why: String| JournalError::Corrupt {
        path: path.to_owned(),
        why,
    };
    match got {
        0 => Ok(()),
        18 if header.starts_with(SQLITE_HEADER) => {
            // A database is whole pages; a file cut inside one lost data.
            let page = match u16::from_be_bytes([header[16], header[17]]) {
                1 => 65_536,
                n => u64::from(n),
            };
            if page >= 512 && len % page != 0 {
                return Err(cut(format!(
                    "cut short: {len} bytes is not a whole number of {page}-byte pages"
                )));
            }
            Ok(())
        }
        n if n < 18 && SQLITE_HEADER.starts_with(&header[..n.min(16)]) => {
            Err(cut(format!("truncated to {n} bytes")))
        }
        _ => Err(foreign("it is not a SQLite database".to_owned())),
    }
}

/// Opens (or creates) the journal database at `path`, checks what it is,
/// and sets it up for `durability`.
pub(crate) fn connect(path: &Path, durability: Durability) -> Result<Connection, JournalError> {
    check_header(path)?;
    let sqlite = |what: &str| {
        let what = what.to_owned();
        move |source| JournalError::Sqlite {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("cannot open the journal"))?;
    let damaged = |e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            JournalError::Corrupt {
                path: path.to_owned(),
                why: e.to_string(),
            }
        }
        e => JournalError::Sqlite {
            path: path.to_owned(),
            what: "cannot read the journal's header".to_owned(),
            source: e,
        },
    };
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(damaged)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(damaged)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(damaged)?;
    if app == 0 && tables > 0 {
        return Err(JournalError::Foreign {
            path: path.to_owned(),
            why: "another program's SQLite database".to_owned(),
        });
    }
    if app != 0 && app != APPLICATION_ID {
        return Err(JournalError::Foreign {
            path: path.to_owned(),
            why: format!("a SQLite database of application {app:#x}"),
        });
    }
    if version > FORMAT {
        return Err(JournalError::NewerVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT,
        });
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(damaged)?;
    if check != "ok" {
        return Err(JournalError::Corrupt {
            path: path.to_owned(),
            why: check,
        });
    }
    let synchronous = match durability {
        Durability::ProcessDeath => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // Checkpoints every 128 pages (not SQLite's 1000) run in the writer
    // while the run goes on, and leave less to copy when the journal
    // closes at the end of a run.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA wal_autocheckpoint = 128; \
         PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT};"
    ))
    .map_err(sqlite("cannot set the journal up"))?;
    conn.execute_batch(SCHEMA)
        .map_err(sqlite("cannot create the journal's tables"))?;
    Ok(conn)
}
