//! Threads and processes for Suitkaise.
//!
//! - [`Worker`]: one worker — this binary re-executed as a process (spawn,
//!   never fork-and-continue), or a thread — serving calls of registered
//!   functions over a private channel of length-prefixed sk-cereal frames.
//!   Every call ends in its result or a typed [`WorkerError`]: the function
//!   failed, the call timed out (a process is killed: true preemption), the
//!   worker died with the call in hand, or its channel carried bad data.
//!   [`Worker::tell`] / [`Worker::listen`] exchange messages with the
//!   running code ([`tell_parent`] / [`listen_parent`] there), and the
//!   running code asks the waiting caller questions with [`ask_parent`]
//!   ([`Worker::call_answering`] answers them). Worker
//!   stdout and stderr are forwarded, prefixed with the worker's name.
//!   [`Worker::start`] returns before the worker is ready; calls sent at
//!   once wait in its channel.
//! - Faults are contained. A worker beats from its first moment, so one
//!   that freezes (even in its first call, queued before it was ready)
//!   is failed after a 10 s silence; a frame that begins must arrive
//!   whole within 10 s (a peer frozen mid-frame, or whose header lies
//!   about its length, breaks the channel; no reader waits forever), and
//!   its buffer grows only as bytes arrive. Each worker process keeps a
//!   *started mark* its parent can read after it dies, so a call it never
//!   started fails with [`WorkerError::NotDelivered`]
//!   ([`WorkerError::never_ran`]) and can run elsewhere without running
//!   twice: the cycle engine, [`Pool`] and [`ProcessManager::call`] do so
//!   by themselves, whatever the error mode or retry policy.
//! - A program that starts workers without [`init`] first in `main` would
//!   start a generation of workers per generation; a process started as a
//!   worker refuses to start workers of its own
//!   ([`WorkerError::MissingInit`], seen by its parent too).
//! - Cheap workers: a call crosses no thread hand-off — the thread waiting
//!   for a reply reads the channel itself, and a worker process runs a
//!   call on the thread that read it — and a worker process costs the
//!   parent no thread: one I/O thread (epoll, a pidfd per worker) forwards
//!   every worker's output, reads channels between calls, reports exits
//!   and checks heartbeats.
//! - [`init`] at the top of `main` turns a worker launch into the worker
//!   loop ([`worker_test!`] does it for a test binary, which has no `main`
//!   of ours); [`process_init!`] registers set-up that runs in every new
//!   worker process.
//! - No orphans: workers get a parent-death signal (started from the main
//!   thread or a long-lived spawner thread) and leave on end of channel, so a parent killed even
//!   by SIGKILL leaves none behind; they ignore SIGINT, and the parent
//!   stops them in order.
//! - [`ProcessManager`]: supervision in the OTP style ([`RestartStrategy`]
//!   one-for-one / one-for-all / rest-for-one; [`Restart`] permanent /
//!   transient / temporary; at most R restarts in T, then escalate) and
//!   graceful shutdown; [`ProcessCommander`] owns the budget of processes
//!   and threads and splits it between an internal and an external side.
//! - [`Pool`]: `map`, `imap`, unordered and star variants over worker
//!   processes or threads, chunked, with per-item timeout and retry.
//! - [`SkProcess`]: long-lived workers with lifecycle hooks, runs, a
//!   wall-clock limit, per-hook timeouts, lives, stop vs kill, messages and
//!   per-hook timing.
//! - [`Threader`]: named threads with init functions, panic capture and
//!   stop/join with timeouts.
//! - Global storage of worker processes is hosted by the parent
//!   ([`sk_reg::GlobalStorage`] works the same in every process).
//!
//! `SK_SPAWN_BACKEND=thread|process` ([`Backend::from_env`]) picks the
//! backend for a whole program or test suite; the same tests pass on both.
//! `SK_WORKER_CHANNEL=watched` has worker processes talk over one socket
//! the I/O hub watches, without the doorbell and the socket for calls
//! that make a call's round trip four system calls when each side's
//! input is there at its first try: the fallback every worker uses where
//! those cannot be made, selectable for diagnosis (the test suite runs
//! on it too). A thread waiting for a worker process's channel, on
//! either side, tries it for up to 50 µs before it sleeps (a sleeping
//! CPU is slow to wake, on a VM above all), while the other side answers
//! that fast; `SK_WORKER_SPIN_US` sets another time in microseconds, at
//! most 10 ms (`0`: one try, then sleep).
//!
//! Linux only: the crate is built on pidfd, epoll, memfd, `SCM_RIGHTS`
//! and the parent-death signal; on any other system it stops the build
//! with one message saying so.
//!
//! # Modules
//!
//! Each layer uses only the ones below it (no import circles; `.ci/run`
//! checks):
//!
//! ```text
//! pool/  manager/ (+ supervisor, commander)  skprocess/  threader  interrupt
//!    \        |                                  /
//!     worker/  — Worker, PendingCall; link.rs: the Link trait with
//!                process.rs and thread.rs; child.rs: the serving loop
//!        |      \
//!      hub   spawn  mark  reaper        (the I/O thread, exec, started
//!        |                               marks, ending dropped workers)
//!      wire/  — frame.rs, protocol.rs, relay.rs: frames on the channel
//!        |
//!  error  vocab (Exit, ChildId, Side, Resource, Hook)  backend  stamp  sys
//! ```
//!
//! In every module with both sides, `child.rs` is the code that runs in
//! the worker (`worker/child.rs`, `pool/child.rs`, `skprocess/child.rs`);
//! the rest runs in the parent. `sys.rs` is the only module with `unsafe`
//! (signal dispositions and one `mmap`, which no safe crate wraps); every
//! other system call goes through `rustix`.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use sk_core::{Args, SkFunction};
//! use sk_process::{Backend, Worker};
//!
//! #[sk_core::function(crate = ::sk_core)]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     sk_process::init(); // a worker launch never returns from here
//!     let worker = Worker::spawn("squarer", Backend::Process)?;
//!     let f = SkFunction::builder("square").arg("x", 12u64).build()?;
//!     let out: u64 = worker.call(&f, &Args::new(), Some(Duration::from_secs(5)))?.take()?;
//!     assert_eq!(out, 144);
//!     assert_ne!(worker.pid(), std::process::id());
//!     worker.stop(Duration::from_secs(2));
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "sk-process (the process layer of Suitkaise) supports Linux only: it is built on \
     pidfd, epoll, memfd, SCM_RIGHTS and the parent-death signal"
);

/// Applies `#[cfg(target_os = "linux")]` to every item, so that elsewhere
/// the `compile_error!` above is the one message.
macro_rules! linux_only {
    ($($item:item)*) => { $( #[cfg(target_os = "linux")] $item )* };
}

linux_only! {
    mod backend;
    mod commander;
    mod error;
    mod hub;
    mod interrupt;
    mod manager;
    mod mark;
    mod pool;
    mod reaper;
    mod skprocess;
    mod spawn;
    mod stamp;
    mod supervisor;
    // The one module with `unsafe`: what no safe crate wraps.
    #[allow(unsafe_code)]
    mod sys;
    mod threader;
    mod vocab;
    mod wire;
    mod worker;

    pub use backend::{BACKEND_ENV, Backend};
    pub use commander::{Budget, BudgetSide, BudgetSlot, ProcessCommander};
    pub use error::SkProcessError;
    pub use error::{BudgetError, ManagerError};
    pub use error::{ItemError, PoolError};
    pub use error::{ProtocolError, ThreadError, WorkerError};
    pub use wire::DEFAULT_MAX_FRAME;
    pub use worker::{Answerer, CallOptions, PendingCall, Worker, WorkerEvent};
    pub use vocab::{ChildId, Exit, Hook, Resource, Side};
    pub use interrupt::{InterruptGuard, stop_on_interrupt};
    pub use manager::{
        ChildInfo, ChildSpec, ChildState, DEFAULT_STOP_GRACE, ManagerEvent, ProcessManager,
        ProcessManagerBuilder,
    };
    pub use pool::{Imap, ImapUnordered, Pool, PoolBuilder};
    pub use skprocess::{
        HookTimings, ProcessConfig, ProcessContext, SkProcess, SkProcessHandle, start,
    };
    pub use supervisor::{
        DEFAULT_MAX_RESTARTS, DEFAULT_WITHIN, Decision, Restart, RestartStrategy, Supervisor,
    };
    pub use threader::{ThreadHandle, ThreadInfo, ThreadState, ThreadStatus, Threader};
    pub use worker::child::{ask_parent, init, is_worker, listen_parent, tell_parent};

    /// Items the macros expand to. Not a public API.
    #[doc(hidden)]
    pub mod __private {
        pub use crate::wire::__call_frame_sizes;
        pub use crate::skprocess::process_spec;
        pub use crate::spawn::WorkerEntry;
        pub use crate::worker::child::{
            __close_channel_to_parent, __write_raw_to_parent, ProcessInit,
        };
        pub use inventory;
        pub use sk_core::__private::StaticFunction;
    }
}

/// Makes an integration-test binary able to start worker processes.
///
/// Worker processes are the current binary started again; a test binary
/// has no `main` of ours to call [`init`] from, so this adds an (ignored)
/// test that the worker launch runs instead. Put it once, at the top level
/// of the test file.
///
/// ```ignore
/// sk_process::worker_test!();
/// ```
#[macro_export]
macro_rules! worker_test {
    () => {
        #[test]
        #[ignore = "the entry point of worker processes started by this test binary"]
        fn __suitkaise_worker() {
            $crate::init();
        }

        $crate::__private::inventory::submit! {
            $crate::__private::WorkerEntry::test("__suitkaise_worker")
        }
    };
}

/// Registers a function to run in every new worker process before it
/// serves calls (set up logging, open a connection, seed a registry).
///
/// ```ignore
/// fn open_cache() { /* ... */ }
/// sk_process::process_init!(open_cache);
/// ```
#[macro_export]
macro_rules! process_init {
    ($f:path) => {
        $crate::__private::inventory::submit! {
            $crate::__private::ProcessInit::new(::core::stringify!($f), $f)
        }
    };
}
