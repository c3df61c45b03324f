//! The worker side: what runs inside a worker process (or thread).
//!
//! A worker process is this same binary started again with the channel as
//! its standard input and `SK_WORKER_FD=0` in its environment (so code a
//! worker runs must not read stdin).
//! [`init`] at the top of `main` (or the test entry made by
//! [`worker_test!`](crate::worker_test)) sees that, runs the registered
//! process init functions, and serves calls until the parent says stop or
//! goes away; it never returns in a worker.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use sk_core::{Args, FunctionError, SkFunction, StopToken, error_chain};
use sk_reg::{CasOutcome, GlobalStorage, StorageBackend, StorageError, StoredValue};

use crate::error::ProtocolError;
use crate::frame::{DEFAULT_MAX_FRAME, FrameReader, encode_frame, write_frame};
use crate::protocol::{Encoded, FromWorker, RemoteFailure, StorageOp, StorageReply, ToWorker};

/// The channel's file descriptor in a worker process: its standard input.
pub(crate) const WORKER_FD: i32 = 0;
pub(crate) const ENV_FD: &str = "SK_WORKER_FD";
pub(crate) const ENV_NAME: &str = "SK_WORKER_NAME";
pub(crate) const ENV_PARENT: &str = "SK_PARENT_PID";

/// How often a worker process says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(250);

/// Where a worker sends its messages.
pub(crate) trait Outbox: Send + Sync {
    fn send(&self, message: FromWorker) -> Result<(), ProtocolError>;
}

/// A process worker's outbox: frames on the socket.
struct StreamOutbox {
    stream: Mutex<UnixStream>,
}

impl Outbox for StreamOutbox {
    fn send(&self, message: FromWorker) -> Result<(), ProtocolError> {
        let frame = encode_frame(&message, DEFAULT_MAX_FRAME)?;
        write_frame(&mut *self.stream.lock(), &frame)
    }
}

/// A function registered to run in every new worker process before it
/// serves calls (register with [`process_init!`](crate::process_init)).
#[doc(hidden)]
pub struct ProcessInit {
    pub(crate) name: &'static str,
    pub(crate) run: fn(),
}

impl ProcessInit {
    #[doc(hidden)]
    pub const fn new(name: &'static str, run: fn()) -> Self {
        ProcessInit { name, run }
    }
}

inventory::collect!(ProcessInit);

/// How the test harness must be started to reach the worker entry test
/// made by [`worker_test!`](crate::worker_test).
#[doc(hidden)]
pub struct WorkerEntry {
    pub(crate) test_name: &'static str,
}

impl WorkerEntry {
    #[doc(hidden)]
    pub const fn test(test_name: &'static str) -> Self {
        WorkerEntry { test_name }
    }
}

inventory::collect!(WorkerEntry);

/// The arguments that start this binary as a worker.
pub(crate) fn worker_args() -> Vec<String> {
    match inventory::iter::<WorkerEntry>.into_iter().next() {
        Some(entry) => vec![
            entry.test_name.to_owned(),
            "--exact".to_owned(),
            "--include-ignored".to_owned(),
            "--nocapture".to_owned(),
            "--test-threads=1".to_owned(),
            "--quiet".to_owned(),
        ],
        None => Vec::new(),
    }
}

/// Whether this process is a worker.
pub fn is_worker() -> bool {
    std::env::var_os(ENV_FD).is_some()
}

/// Turns a worker launch into the worker loop; returns at once in any other
/// process. Call it first thing in `main` of every binary (and example)
/// that starts worker processes.
///
/// # Examples
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     sk_process::init();
///     // ... the program; workers never get here.
/// }
/// ```
pub fn init() {
    if is_worker() {
        let code = run_process_worker();
        // Leave without running the rest of `main` (or the test harness).
        std::process::exit(code);
    }
}

/// The outbox of this worker process, for tests that write raw bytes.
static RAW: OnceLock<Arc<StreamOutbox>> = OnceLock::new();

/// Writes raw bytes to the parent, bypassing the framing. Only for tests of
/// the parent's handling of bad input.
///
/// # Errors
///
/// When this is not a worker process or the channel fails.
#[doc(hidden)]
pub fn __write_raw_to_parent(bytes: &[u8]) -> io::Result<()> {
    let outbox = RAW
        .get()
        .ok_or_else(|| io::Error::other("not a worker process"))?;
    let mut stream = outbox.stream.lock();
    stream.write_all(bytes)?;
    stream.flush()
}

/// Closes the worker's sending side of the channel (the parent sees end of
/// input). Only for tests of the parent's handling of truncated frames.
///
/// # Errors
///
/// When this is not a worker process or the channel fails.
#[doc(hidden)]
pub fn __close_channel_to_parent() -> io::Result<()> {
    let outbox = RAW
        .get()
        .ok_or_else(|| io::Error::other("not a worker process"))?;
    outbox.stream.lock().shutdown(std::net::Shutdown::Write)
}

/// Ties this worker's life to its parent's: a parent-death signal, SIGINT
/// ignored (the parent stops its workers), and an exit if the parent is
/// already gone. Whether to go on.
fn bind_to_parent() -> bool {
    // SAFETY: plain system calls on this process's own attributes.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let parent = std::env::var(ENV_PARENT)
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    // SAFETY: getppid has no preconditions.
    let current = unsafe { libc::getppid() } as u32;
    // The parent died before the signal was set: the worker was reparented.
    parent.is_none_or(|p| p == current)
}

fn run_process_worker() -> i32 {
    if !bind_to_parent() {
        return 1;
    }
    let name = std::env::var(ENV_NAME).unwrap_or_else(|_| "worker".to_owned());
    // SAFETY: the parent started this process with the channel's socket on
    // WORKER_FD (see spawn.rs) and nothing else in the process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("worker \"{name}\": cannot use its channel: {e}");
            return 3;
        }
    };
    let outbox = Arc::new(StreamOutbox {
        stream: Mutex::new(writer),
    });
    let _ = RAW.set(Arc::clone(&outbox));
    for init in inventory::iter::<ProcessInit> {
        if std::panic::catch_unwind(init.run).is_err() {
            eprintln!("worker \"{name}\": process init \"{}\" panicked", init.name);
            return 4;
        }
    }
    let storage = Arc::new(RemoteStorage::new(Arc::clone(&outbox) as Arc<dyn Outbox>));
    let _ = GlobalStorage::install_global_backend(Arc::clone(&storage) as Arc<dyn StorageBackend>);
    if outbox
        .send(FromWorker::Ready {
            pid: std::process::id(),
        })
        .is_err()
    {
        return 0;
    }
    let beat = Arc::clone(&outbox);
    let _ = thread::Builder::new()
        .name("sk-heartbeat".to_owned())
        .spawn(move || {
            while beat.send(FromWorker::Heartbeat).is_ok() {
                thread::sleep(HEARTBEAT);
            }
        });
    let mut reader = FrameReader::new(stream, DEFAULT_MAX_FRAME);
    let end = serve(
        &name,
        move || reader.read::<ToWorker>(),
        outbox as Arc<dyn Outbox>,
        Some(storage),
        None,
    );
    match end {
        ServeEnd::Stopped | ServeEnd::ParentGone => 0,
        ServeEnd::Protocol(e) => {
            eprintln!("worker \"{name}\": {e}");
            3
        }
    }
}

/// The running code's line to its parent: set on a worker's executor
/// thread while it serves.
struct Line {
    outbox: Arc<dyn Outbox>,
    inbox: Receiver<Vec<u8>>,
}

thread_local! {
    static LINE: std::cell::RefCell<Option<Line>> = const { std::cell::RefCell::new(None) };
}

/// Sends `message` to the parent of this worker (read there with
/// [`Worker::listen`](crate::Worker::listen)).
///
/// # Errors
///
/// [`WorkerError::Closed`](crate::WorkerError::Closed) when not called from
/// code a worker is running, [`WorkerError::Encode`](crate::WorkerError::Encode)
/// when the message does not serialize, a protocol error when the channel
/// fails.
pub fn tell_parent<T: serde::Serialize>(message: &T) -> Result<(), crate::WorkerError> {
    let bytes =
        sk_cereal::Internal::encode(message).map_err(|source| crate::WorkerError::Encode {
            worker: current_name(),
            source,
        })?;
    LINE.with(|line| match line.borrow().as_ref() {
        Some(line) => line
            .outbox
            .send(FromWorker::Message { bytes })
            .map_err(|source| crate::WorkerError::Protocol {
                worker: current_name(),
                source,
            }),
        None => Err(crate::WorkerError::Closed {
            worker: current_name(),
        }),
    })
}

/// Waits at most `timeout` for a message from the parent (sent with
/// [`Worker::tell`](crate::Worker::tell)); `Ok(None)` when none came.
///
/// # Errors
///
/// [`WorkerError::Closed`](crate::WorkerError::Closed) when not called from
/// code a worker is running, a protocol error when the message is not a `T`.
pub fn listen_parent<T: serde::de::DeserializeOwned>(
    timeout: Duration,
) -> Result<Option<T>, crate::WorkerError> {
    LINE.with(|line| {
        let line = line.borrow();
        let Some(line) = line.as_ref() else {
            return Err(crate::WorkerError::Closed {
                worker: current_name(),
            });
        };
        match line.inbox.recv_timeout(timeout) {
            Ok(bytes) => sk_cereal::Internal::decode(&bytes).map(Some).map_err(|e| {
                crate::WorkerError::Protocol {
                    worker: current_name(),
                    source: ProtocolError::Malformed(e),
                }
            }),
            Err(_) => Ok(None),
        }
    })
}

fn current_name() -> String {
    thread::current()
        .name()
        .and_then(|n| n.strip_prefix("sk-exec:"))
        .unwrap_or("worker")
        .to_owned()
}

/// Why [`serve`] returned.
#[derive(Debug)]
pub(crate) enum ServeEnd {
    Stopped,
    ParentGone,
    Protocol(ProtocolError),
}

/// Serves calls until stop, end of input, or a protocol error. Calls run
/// one at a time on an executor thread, so storage replies and `Stop` are
/// still read while a call runs.
pub(crate) fn serve(
    name: &str,
    mut next: impl FnMut() -> Result<Option<ToWorker>, ProtocolError>,
    outbox: Arc<dyn Outbox>,
    storage: Option<Arc<RemoteStorage>>,
    stop: Option<StopToken>,
) -> ServeEnd {
    let (calls, inbox) = channel::unbounded::<(u64, SkFunction, Args)>();
    let (messages, message_inbox) = channel::unbounded::<Vec<u8>>();
    let results = Arc::clone(&outbox);
    let executor = thread::Builder::new()
        .name(format!("sk-exec:{name}"))
        .spawn(move || {
            LINE.with(|line| {
                *line.borrow_mut() = Some(Line {
                    outbox: Arc::clone(&results),
                    inbox: message_inbox,
                });
            });
            for (id, function, extra) in inbox {
                // A thread worker's calls see its stop token (set when the
                // worker is killed); a process worker is killed for real.
                let outcome = match &stop {
                    Some(token) => token.enter(|| run_call(&function, &extra)),
                    None => run_call(&function, &extra),
                };
                if results.send(FromWorker::Done { id, outcome }).is_err() {
                    break;
                }
            }
        });
    let executor = match executor {
        Ok(handle) => handle,
        Err(e) => return ServeEnd::Protocol(ProtocolError::Io(e)),
    };
    let end = loop {
        match next() {
            Ok(Some(ToWorker::Call {
                id,
                function,
                extra,
            })) => {
                if calls.send((id, function, extra)).is_err() {
                    break ServeEnd::Stopped;
                }
            }
            Ok(Some(ToWorker::Storage { id, reply })) => {
                if let Some(storage) = &storage {
                    storage.complete(id, reply);
                }
            }
            Ok(Some(ToWorker::Message { bytes })) => {
                let _ = messages.send(bytes);
            }
            Ok(Some(ToWorker::Stop)) => break ServeEnd::Stopped,
            Ok(None) => break ServeEnd::ParentGone,
            Err(e) => break ServeEnd::Protocol(e),
        }
    };
    if let ServeEnd::Stopped = end {
        // Finish the call in hand, then leave.
        drop(calls);
        let _ = executor.join();
    }
    end
}

/// Runs one call and encodes its outcome.
fn run_call(function: &SkFunction, extra: &Args) -> Result<Encoded, RemoteFailure> {
    let failure = |e: &FunctionError| RemoteFailure {
        message: error_chain(e),
        retryable: e.is_retryable(),
    };
    let value = function
        .execute_value_with(extra)
        .map_err(|e| failure(&e))?;
    let (type_name, bytes) = value
        .into_encoded()
        .map_err(|e| failure(&FunctionError::Cereal(e)))?;
    Ok(Encoded { type_name, bytes })
}

/// The global storage of a worker process: every operation is sent to the
/// parent, which hosts the store.
#[derive(Debug)]
pub(crate) struct RemoteStorage {
    outbox: Arc<dyn Outbox>,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Sender<StorageReply>>>,
}

impl std::fmt::Debug for dyn Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// How long a storage operation waits for the parent.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);

impl RemoteStorage {
    fn new(outbox: Arc<dyn Outbox>) -> Self {
        RemoteStorage {
            outbox,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn complete(&self, id: u64, reply: StorageReply) {
        if let Some(waiter) = self.pending.lock().remove(&id) {
            let _ = waiter.send(reply);
        }
    }

    fn request(&self, op: StorageOp) -> Result<StorageReply, StorageError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::bounded(1);
        self.pending.lock().insert(id, tx);
        if let Err(e) = self.outbox.send(FromWorker::Storage { id, op }) {
            self.pending.lock().remove(&id);
            return Err(StorageError::backend_with(
                "cannot reach the parent's storage",
                e,
            ));
        }
        match rx.recv_timeout(STORAGE_TIMEOUT) {
            Ok(StorageReply::Failed(message)) => Err(StorageError::backend(message)),
            Ok(reply) => Ok(reply),
            Err(_) => {
                self.pending.lock().remove(&id);
                Err(StorageError::backend("the parent's storage did not answer"))
            }
        }
    }
}

fn unexpected(reply: &StorageReply) -> StorageError {
    StorageError::backend(format!("unexpected storage reply {reply:?}"))
}

impl StorageBackend for RemoteStorage {
    fn load(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        match self.request(StorageOp::Load {
            key: key.to_owned(),
        })? {
            StorageReply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    fn store(&self, key: &str, value: StoredValue) -> Result<(), StorageError> {
        match self.request(StorageOp::Store {
            key: key.to_owned(),
            value,
        })? {
            StorageReply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn remove(&self, key: &str) -> Result<Option<StoredValue>, StorageError> {
        match self.request(StorageOp::Remove {
            key: key.to_owned(),
        })? {
            StorageReply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&StoredValue>,
        new: Option<StoredValue>,
    ) -> Result<CasOutcome, StorageError> {
        match self.request(StorageOp::CompareAndSwap {
            key: key.to_owned(),
            expected: expected.cloned(),
            new,
        })? {
            StorageReply::Cas(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        match self.request(StorageOp::Keys)? {
            StorageReply::Keys(keys) => Ok(keys),
            other => Err(unexpected(&other)),
        }
    }
}

/// Runs a storage operation against the parent's store.
pub(crate) fn host_storage(storage: &GlobalStorage, op: StorageOp) -> StorageReply {
    let backend = storage.backend();
    let result = match op {
        StorageOp::Load { key } => backend.load(&key).map(StorageReply::Value),
        StorageOp::Store { key, value } => backend.store(&key, value).map(|()| StorageReply::Done),
        StorageOp::Remove { key } => backend.remove(&key).map(StorageReply::Value),
        StorageOp::CompareAndSwap { key, expected, new } => backend
            .compare_and_swap(&key, expected.as_ref(), new)
            .map(StorageReply::Cas),
        StorageOp::Keys => backend.keys().map(StorageReply::Keys),
    };
    result.unwrap_or_else(|e| StorageReply::Failed(error_chain(&e)))
}
