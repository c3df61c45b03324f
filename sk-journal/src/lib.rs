//! Durable runs for Suitkaise: a journal of every finished part of a run,
//! on embedded SQLite (WAL; no server), so a run killed at any moment
//! resumes without losing or repeating work.
//!
//! - [`Journal::open`] opens (or creates) a journal file. What is there
//!   must be a journal of a format this library reads and undamaged, or
//!   it is a typed [`JournalError`] naming the file — never a fresh start
//!   over someone's data. A live journal is locked: a second opener gets
//!   [`JournalError::Busy`].
//! - [`Journal::begin`] starts a run under a stable id with its plan's
//!   [`Fingerprint`], or finds where it was ([`Resume`]: iterations done,
//!   the finished parts of the next one, the store, intents without an
//!   outcome); a run resumed with another plan is
//!   [`JournalError::PlanDrift`] naming the first part that differs.
//! - Writes ([`Journal::record`] with the part's store writes in the same
//!   transaction, [`Journal::finish_iteration`] per lane,
//!   [`Journal::record_step`], [`Journal::record_intent`]) go to one
//!   writer thread, first in first committed, in batches (group commit);
//!   each returns a [`Ticket`] to wait on ([`Journal::record_then`] calls
//!   back instead). [`Durability`] picks what a commit survives.
//! - Growth: records older than the slowest lane's last
//!   [`keep_iterations`](Journal::keep_iterations) iterations are pruned
//!   as iterations end, so a continuous run's file plateaus; the store
//!   is kept whole (its latest values).
//!
//! `sk-cycle` drives a journal from `Run::journal`; this crate knows no
//! other Suitkaise crate (parts, plans and values reach it as names,
//! texts and bytes).
//!
//! # Modules
//!
//! `journal.rs` (the journal: opening, reading back, sending writes) uses
//! `writer.rs` (the writer thread: batches, prepared statements, group
//! commit), `open.rs` (what a file must be, the lock, the schema),
//! `fingerprint.rs`, `record.rs` (a part's record, a leaf) and
//! `error.rs`; none of these uses another in a circle.
//!
//! # Examples
//!
//! ```
//! use sk_journal::{Durability, Fingerprint, Journal, PartRecord};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("run.journal");
//! let plan = Fingerprint::new("parallel", [("load", "1-1")]);
//! {
//!     let journal = Journal::open(&path, Durability::default())?;
//!     assert!(!journal.begin("nightly", &plan)?.resumed);
//!     let record = PartRecord { iteration: 1, part: "load".into(), state: "succeeded".into(), attempts: 1, ..Default::default() };
//!     journal.record("nightly", record).wait()?;
//! } // killed here, say
//! let journal = Journal::open(&path, Durability::default())?;
//! let resume = journal.begin("nightly", &plan)?;
//! assert_eq!(resume.completed[0].part, "load"); // not run again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod error;
mod fingerprint;
mod journal;
mod open;
mod record;
mod writer;

pub use error::JournalError;
pub use fingerprint::{Drift, Fingerprint};
pub use journal::{Journal, Resume, Ticket};
pub use open::Durability;
pub use record::PartRecord;
