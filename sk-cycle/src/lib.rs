//! Cycles: small named units of work ("parts") placed by level and
//! position, run once or in a loop by an engine with sync and error modes.
//!
//! - [`CyclePart`]: what a part does (a closure over its [`PartContext`],
//!   or any [`AnyFunction`](sk_core::AnyFunction)), where it runs (the
//!   pool, or a named component thread), its [`ErrorMode`], timeout, retry
//!   policy, validators, condition and fallback.
//! - [`CycleBuilder`]: places parts by coordinate — `add(part, level)`,
//!   `split(parts, level)`, sub-cycles — or by handle (`root`, `then`,
//!   `fork`), adds ordering (`after`) and data (`pipe`) edges, and builds a
//!   [`Cycle`] after checking every rule (errors name the coordinate and
//!   why).
//! - [`Cycle::run`] with a [`Run`]: once, N times, until a predicate, or
//!   continuously (with an interval), stopped by a [`RunHandle`], a stop
//!   token or Ctrl-C at an iteration boundary. The result is a
//!   [`RunReport`]: every part's end state ([`PartState`]) and output, the
//!   stats of every part, and optionally a Chrome [`Trace`].
//! - [`CycleRegistry`]: parts and cycles registered by name.
//!
//! # Placement
//!
//! Level 1 is an `add` of one part. `add(part, (L, p))` extends the branch
//! whose leaf is at `(L-1, p)`; `split(parts, (L, p))` fills `(L, p)` with
//! a fork and places the parts on level `L+1`, the first at position `p`
//! and the others at fresh positions. So `add(p, 1)` then
//! `split([a, b, c], 2)` fills 1-1, 2-1, 3-1, 3-2, 3-3, and the next open
//! coordinates are 4-1, 4-2, 4-3.
//!
//! # Sync modes ([`SyncMode`], per split or cycle-wide, which overrides)
//!
//! `Parallel` (the default: branches run free, the iteration ends when all
//! have; they may run at the same time but need not — on a pool of one
//! thread they never do, and a part that measured quick, under 1 µs a
//! run, runs before its sibling branch is offered to other threads — so
//! a part must not wait for a part of another branch), `Level` (a
//! barrier per level), `Sequential` (a split's parts one after another),
//! `Pipeline` (each gets the previous one's output), `Independent` (each
//! branch loops at its own pace). Conditions
//! (`condition` on a part or [`Split`]) and the two limits combine with
//! all of them: a *concurrency limit* (`concurrency_limit`, on a split or
//! the cycle: at most N parts at once) and a *rate limit* (`rate_limit`,
//! on a part, a split or the cycle: at most N part starts per second; a
//! part waits for its turn without holding a thread).
//!
//! # Data
//!
//! A part reads its input with [`PartContext::input_as`], and other
//! parts' outputs with [`PartContext::output`] — the same way whether a
//! value was made on a thread or in a worker process. Reads are declared:
//! [`CyclePart::reads`] names parts ordered before the reader (checked
//! when the cycle is built: [`BuildError::UnorderedRead`] names both),
//! [`CyclePart::reads_latest`] parts read as they last completed. A read
//! that cannot be served says why ([`ReadError`]: unknown or undeclared
//! name, no output, or the type asked for against the type it is).
//!
//! A part made of a registered function has no context parameter; its
//! code calls [`current_part`] for the same reads — declared outputs,
//! descendants' data, the run's [`Store`] — and they work the same
//! whether the part runs on a thread or in a worker process (there each
//! read is a question answered by the run). Values cross a process
//! boundary in the internal format; one that cannot (a
//! [`CyclePart::local`] output, a [`Store::set_local`] value) is a
//! [`ReadError::LocalOnly`] in the process, never a silent gap.
//!
//! # Error modes ([`ErrorMode`]) and end states ([`PartState`])
//!
//! | mode | the part | its dependents | iteration in error |
//! |---|---|---|---|
//! | `InstantFail` | failed | cancelled; the run stops | yes |
//! | `CleanFail` (default) | failed | upstream failed | yes |
//! | `Skip` | failed | skipped | no |
//! | `Retry` | retried by its policy within its timeout, then clean fail | | yes |
//! | `FallbackFail` | succeeded with fallback | run on the fallback | yes |
//! | `FallbackSkip` | succeeded with fallback | run on the fallback | no |
//! | `Propagate` | failed | run, with the error as input | no |
//!
//! A part over its timeout ends timed out (its stop token is set; the
//! cycle does not wait for it); a part whose condition is false ends not
//! taken, with everything below it. Only data edges (tree, pipeline,
//! `pipe`) carry a failure to dependents; ordering edges (`after`, level
//! barriers, sequential order) only order.
//!
//! # Modules
//!
//! Each layer uses only the ones below it (no import circles; `.ci/run`
//! checks):
//!
//! ```text
//! run, registry, cycle, current            running a cycle; function parts' reads
//!   |
//! engine/  — life (Engine: setup, teardown), mod (scheduling), exec (one
//!   |        part), place (Place: where a part runs), env, readout, gate,
//!   |        timer, component
//!   |
//! plan  process  ask  trace  render, cycle_render   compiled cycle; worker
//!   |                                               processes; questions
//! builder/ (tree, items) -> blueprint              placing parts
//!   |
//! part  store  report  mode  coord  error  ctrl_c   the vocabulary
//! ```
//!
//! # Examples
//!
//! ```
//! use sk_cycle::{CycleBuilder, CyclePart, PartState, Run, Split, SyncMode};
//!
//! let mut b = CycleBuilder::new("doc");
//! b.add(CyclePart::new("read", |_| vec![3u32, 1, 2]), 1)?;
//! b.split_with(
//!     [
//!         CyclePart::new("sum", |ctx| ctx.input_as::<Vec<u32>>().map_or(0, |v| v.iter().sum::<u32>())),
//!         CyclePart::new("max", |ctx| ctx.input_as::<Vec<u32>>().ok().and_then(|v| v.iter().max().copied())),
//!     ],
//!     2,
//!     Split::new().sync(SyncMode::Level),
//! )?;
//! let report = b.build()?.run(Run::times(3))?;
//!
//! let last = report.last().expect("it ran");
//! assert_eq!(last.output_as::<u32>("sum"), Some(&6));
//! assert_eq!(last.output_as::<Option<u32>>("max"), Some(&Some(3)));
//! assert_eq!(last.state_of("read"), Some(PartState::Succeeded));
//! assert_eq!(report.iterations(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

/// Maps keyed by part names, coordinates and node indices: building a
/// large cycle hashes each part's name and coordinate several times, and
/// foldhash does that several times faster than the default SipHash (its
/// seed is still random per process).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A set with [`FastMap`]'s hasher.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

mod ask;
mod blueprint;
mod builder;
mod context;
mod coord;
mod coords;
mod ctrl_c;
mod current;
mod cycle;
mod cycle_render;
mod durable;
mod engine;
mod error;
mod mode;
mod names;
mod part;
mod plan;
mod process;
mod registry;
mod remote;
mod render;
mod report;
mod run;
mod step;
mod store;
mod trace;

pub use blueprint::Split;
pub use builder::{CycleBuilder, PartHandle, PartRef, PartSource, SplitItem, SubCycle};
pub use context::{Descendants, Input, Output, PartContext};
pub use coord::Coord;
pub use current::{CurrentPart, RunStore, current_part};
pub use cycle::Cycle;
pub use durable::{Recorded, Resumed};
pub use error::{BuildError, PartError, ReadError, RunError, StepError};
pub use mode::{ErrorMode, PartState, Placement, SyncMode};
pub use part::CyclePart;
pub use registry::CycleRegistry;
pub use remote::{RemoteCall, RemoteDone, RemoteFailure, RemoteRunner};
pub use report::{CycleStats, IterationReport, PartStats, RunReport, StateCounts, StopReason};
pub use run::{Run, RunHandle};
pub use sk_journal::{Durability, JournalError};
pub use store::Store;
pub use trace::{DEFAULT_TRACE_CAPACITY, Trace, TraceEvent, TraceKind};
