//! Threads and processes for Suitkaise.
//!
//! (Work in progress; see the crate's README section.)

#![warn(missing_docs)]

mod backend;
mod error;
mod frame;
mod handle;
mod protocol;
mod spawn;
mod threader;
mod worker;

pub use backend::{BACKEND_ENV, Backend};
pub use error::{ProtocolError, ThreadError, WorkerError};
pub use frame::{DEFAULT_MAX_FRAME, FrameReader, encode_frame, write_frame};
pub use handle::{Exit, PendingCall, Worker, WorkerEvent};
pub use threader::{ThreadHandle, ThreadInfo, ThreadState, ThreadStatus, Threader};
pub use worker::{init, is_worker, listen_parent, tell_parent};

/// Items the macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::protocol::__call_frame_sizes;
    pub use crate::worker::{
        __close_channel_to_parent, __write_raw_to_parent, ProcessInit, WorkerEntry,
    };
    pub use inventory;
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
