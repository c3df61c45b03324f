//! Suitkaise: cycles of small named units of work, on threads and in
//! processes, with supervision and explicit error modes.
//!
//! This crate is the facade: it re-exports the public API of the workspace
//! crates — every item, under a module per crate ([`cereal`], [`reg`],
//! [`core`], [`process`], [`cycle`]), the common ones also at the top
//! level — and a [`prelude`].
//!
//! | crate | what it holds |
//! |---|---|
//! | `sk-cereal` | serialization: [`Internal`] (fast, same build) and [`External`] (versioned, self-describing) formats, [`Snapshot`] |
//! | `sk-reg` | layered [`Registry`], project root [`SkRoot`], [`GlobalStorage`] |
//! | `sk-core` | [`SkFunction`] handles, [`SkLambda`], [`AnyFunction`], [`RetryPolicy`], [`StopToken`], [`TimingStats`], [`Circuit`] |
//! | `sk-process` | [`Worker`] processes (or threads), [`Threader`], supervision, the commander; [`init`] |
//! | `sk-cycle` | [`CyclePart`], [`CycleBuilder`], [`Cycle`] and its engine, [`Run`], [`CycleRegistry`] |
//! | `sk-journal` | durable runs: the [`journal`] on embedded SQLite |
//! | `sk-remote` | [`remote`] parts: a [`remote::Coordinator`] and [`remote::RemoteWorker`]s on NATS JetStream |
//!
//! # Examples
//!
//! ```
//! use suitkaise::prelude::*;
//!
//! #[suitkaise::function]
//! fn greet(name: String, excited: bool) -> String {
//!     format!("hello, {name}{}", if excited { "!" } else { "." })
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let f = SkFunction::builder("greet").arg("name", "ada".to_string()).arg("excited", true).build()?;
//! assert_eq!(f.execute::<String>()?, "hello, ada!");
//!
//! // Handles are plain data: they cross process boundaries.
//! let bytes = External::encode(&f)?;
//! let g: SkFunction = External::decode(&bytes)?;
//! assert_eq!(g.execute::<String>()?, "hello, ada!");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

/// Serialization (`sk-cereal`): every public item.
pub mod cereal {
    pub use sk_cereal::*;
}

/// Registries, the project root and global storage (`sk-reg`): every
/// public item.
pub mod reg {
    pub use sk_reg::*;
}

/// The unit of work (`sk-core`): function handles, retry policies, stop
/// tokens, stats — every public item.
pub mod core {
    pub use sk_core::*;
}

/// Threads and worker processes (`sk-process`, Linux): every public item.
pub mod process {
    pub use sk_process::*;
}

/// Cycles and their engine (`sk-cycle`): every public item.
pub mod cycle {
    pub use sk_cycle::*;
}

/// Durable runs (`sk-journal`): the journal on embedded SQLite.
pub mod journal {
    pub use sk_journal::*;
}

/// Remote parts and workers on NATS JetStream (`sk-remote`): every public
/// item.
pub mod remote {
    pub use sk_remote::*;
}

pub use sk_cereal::{
    CerealError, External, Format, Internal, Limits, Segment, Snapshot, ValuePath,
};
pub use sk_core::{
    AnyFunction, ArgValue, Args, Attempt, Background, Backoff, BoxError, Circuit, CircuitError,
    Clock, Encoding, Execute, FunctionError, FunctionKind, FunctionSpec, Jitter, ManualClock,
    Modifiers, Modify, ParamSpec, Permanent, RateLimitError, RateLimiter, Retry, RetryError,
    RetryPolicy, SharedStats, SkFunction, SkFunctionBuilder, SkLambda, StatsSummary, StopToken,
    SystemClock, TakeError, TimingStats, Value, ValueFuture, ValueStream, error_chain, function,
    functions, generator, instances, panic_message,
};
pub use sk_cycle::{
    BuildError, Coord, CurrentPart, Cycle, CycleBuilder, CyclePart, CycleRegistry, CycleStats,
    Durability, ErrorMode, Input, IterationReport, JournalError, Output, PartContext, PartError,
    PartHandle, PartRef, PartSource, PartState, PartStats, Placement, ReadError, Recorded, Resumed,
    Run, RunError, RunHandle, RunReport, RunStore, Split, SplitItem, StepError, StopReason, Store,
    SubCycle, SyncMode, Trace, TraceEvent, current_part,
};
pub use sk_process::{
    Answerer, BACKEND_ENV, Backend, Budget, BudgetError, CallOptions, ChildId, ChildInfo,
    ChildSpec, ChildState, Exit, Hook, HookTimings, ItemError, ManagerError, ManagerEvent,
    PendingCall, Pool, PoolBuilder, PoolError, ProcessCommander, ProcessConfig, ProcessContext,
    ProcessManager, ProtocolError, Restart, RestartStrategy, Side, SkProcess, SkProcessError,
    SkProcessHandle, ThreadError, ThreadHandle, ThreadInfo, ThreadState, ThreadStatus, Threader,
    Worker, WorkerError, WorkerEvent, ask_parent, init, is_worker, listen_parent, process_init,
    register_process, tell_parent, worker_test,
};
pub use sk_reg::{GlobalStorage, Layer, Registry, RegistryError, RootError, SkRoot, registry};

#[doc(hidden)]
pub use sk_core::__private;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names most programs need: `use suitkaise::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AnyFunction, Args, Cycle, CycleBuilder, CyclePart, ErrorMode, Execute, External, Format,
        FunctionError, GlobalStorage, Internal, Layer, Modify, PartContext, PartState, Registry,
        RetryPolicy, Run, SkFunction, SkLambda, SkRoot, Split, StopToken, SyncMode, TimingStats,
        Value, current_part,
    };
    pub use crate::{
        BoxError, BuildError, CerealError, PoolError, ReadError, RunError, WorkerError, error_chain,
    };
}
