//! The worker side: what runs inside a worker process (or thread).
//!
//! A worker process is this same binary started again with the channel as
//! its standard input and `SK_WORKER_FD=0` in its environment. The worker
//! moves the channel off standard input at once (to a descriptor closed on
//! exec) and puts `/dev/null` there, so code it runs may read stdin
//! harmlessly and programs it starts do not inherit the channel. Calls
//! may come on a second socket, handed over on the first with the
//! started-call mark; the first then carries only what the worker sends.
//! [`init`] at the top of `main` (or the test entry made by
//! [`worker_test!`](crate::worker_test)) sees that, runs the registered
//! process init functions, and serves calls until the parent says stop or
//! goes away; it never returns in a worker.
//!
//! A process worker runs each call on the thread that read it; whoever
//! needs the channel while a call runs (a storage operation waiting for
//! its answer, `listen_parent`) reads it for itself (see `relay.rs`), and
//! the heartbeat thread drains it every beat.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use sk_core::{Args, Execute, FunctionError, SkFunction, StopToken, error_chain};
use sk_reg::{CasOutcome, GlobalStorage, SkRoot, StorageBackend, StorageError, StoredValue};

use crate::error::ProtocolError;
use crate::mark::StartedMark;
use crate::spawn::{ENV_FD, ENV_NAME, ENV_PARENT, ENV_ROOT};
use crate::stamp::Stamp;
use crate::wire::{
    Answer, DEFAULT_MAX_FRAME, Encoded, Ended, FromWorker, Relay, RemoteFailure, Router, StorageOp,
    StorageReply, ToWorker, Waited, encode_frame, send_frame, send_frame_or, with_frame,
};
use sk_core::Encoding;

mod talk;

use talk::{InCall, LINE, Line};
pub use talk::{ask_parent, listen_parent, tell_parent};

/// How often a worker process says it is alive.
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Where a worker sends its messages.
pub(crate) trait Outbox: Send + Sync {
    fn send(&self, message: FromWorker) -> Result<(), ProtocolError>;
}

impl std::fmt::Debug for dyn Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// A function registered to run in every new worker process before it
/// serves calls (register with [`process_init!`](crate::process_init)).
#[doc(hidden)]
#[derive(Debug)]
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

/// Whether this process is a worker.
pub fn is_worker() -> bool {
    std::env::var_os(ENV_FD).is_some()
}

/// Set once this worker process serves (it got into [`init`]).
static SERVING: AtomicBool = AtomicBool::new(false);

/// `Some` when this process was started as a worker but runs the
/// program's `main` (it never called [`init`]) and is about to start a
/// worker `name` of its own: without this check every generation would
/// start the next, without end. Tells the parent (once) in place of
/// `Ready`, on the channel that is still this process's standard input.
pub(crate) fn missing_init(name: &str) -> Option<crate::WorkerError> {
    if !is_worker() || SERVING.load(Ordering::Acquire) {
        return None;
    }
    static TOLD: AtomicBool = AtomicBool::new(false);
    if !TOLD.swap(true, Ordering::AcqRel) {
        // Standard input is still the channel of this worker launch.
        let told = rustix::stdio::stdin()
            .try_clone_to_owned()
            .map(UnixStream::from);
        if let (Ok(channel), Ok(frame)) = (
            told,
            encode_frame(&FromWorker::MissingInit, DEFAULT_MAX_FRAME),
        ) {
            let _ = send_frame(&channel, &frame);
        }
    }
    Some(crate::WorkerError::MissingInit {
        worker: name.to_owned(),
        pid: std::process::id(),
    })
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

/// This worker process's link to its parent, for tests that write raw
/// bytes.
static LINK: OnceLock<Arc<WorkerLink>> = OnceLock::new();

/// Writes raw bytes to the parent, bypassing the framing. Only for tests of
/// the parent's handling of bad input.
///
/// # Errors
///
/// When this is not a worker process or the channel fails.
#[doc(hidden)]
pub fn __write_raw_to_parent(bytes: &[u8]) -> io::Result<()> {
    let link = LINK
        .get()
        .ok_or_else(|| io::Error::other("not a worker process"))?;
    let out = link.out.lock();
    let sent = send_frame(&out, bytes).map_err(io::Error::other);
    link.ring_if_idle();
    sent
}

/// Closes the worker's sending side of the channel (the parent sees end of
/// input). Only for tests of the parent's handling of truncated frames.
///
/// # Errors
///
/// When this is not a worker process or the channel fails.
#[doc(hidden)]
pub fn __close_channel_to_parent() -> io::Result<()> {
    let link = LINK
        .get()
        .ok_or_else(|| io::Error::other("not a worker process"))?;
    let out = link.out.lock();
    let shut = out.shutdown(std::net::Shutdown::Write);
    // The parent reads the end (if no thread does) when told.
    link.ring_if_idle();
    shut
}

/// Ties this worker's life to its parent's: a parent-death signal, SIGINT
/// ignored (the parent stops its workers), and an exit if the parent is
/// already gone. Whether to go on.
fn bind_to_parent() -> bool {
    use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};
    let _ = set_parent_process_death_signal(Some(Signal::KILL));
    crate::sys::ignore(Signal::INT);
    let parent = std::env::var(ENV_PARENT)
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    // No parent in this process's pid namespace reads as 0, as getppid(2)
    // says it.
    let current = u32::try_from(Pid::as_raw(getppid())).unwrap_or(0);
    // The parent died before the signal was set: the worker was reparented.
    parent.is_none_or(|p| p == current)
}

/// Moves the channel off standard input to a descriptor closed on exec,
/// and puts `/dev/null` on standard input.
fn take_channel() -> io::Result<UnixStream> {
    use rustix::fs::{Mode, OFlags, open};
    use rustix::stdio::{dup2_stdin, stdin};
    let channel = rustix::io::fcntl_dupfd_cloexec(stdin(), 3)?;
    // Best effort: if /dev/null does not open, standard input stays the
    // channel.
    if let Ok(null) = open(
        c"/dev/null",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = dup2_stdin(&null);
    }
    Ok(UnixStream::from(channel))
}

fn run_process_worker() -> i32 {
    SERVING.store(true, Ordering::Release);
    if !bind_to_parent() {
        return 1;
    }
    let name = std::env::var(ENV_NAME).unwrap_or_else(|_| "worker".to_owned());
    let link = match take_channel().and_then(WorkerLink::new) {
        Ok(link) => Arc::new(link),
        Err(e) => {
            eprintln!("worker \"{name}\": cannot use its channel: {e}");
            return 3;
        }
    };
    let _ = LINK.set(Arc::clone(&link));
    // Beats from here on, process init functions included: the parent
    // holds a worker to its silence limit from the moment it starts.
    start_heartbeat(&link);
    if let Some(path) = std::env::var_os(ENV_ROOT) {
        if let Err(e) = SkRoot::at(&path).and_then(SkRoot::set_current) {
            eprintln!(
                "worker \"{name}\": cannot adopt its parent's root {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
    for init in inventory::iter::<ProcessInit> {
        if std::panic::catch_unwind(init.run).is_err() {
            eprintln!("worker \"{name}\": process init \"{}\" panicked", init.name);
            return 4;
        }
    }
    let _ = GlobalStorage::install_global_backend(Arc::clone(&link) as Arc<dyn StorageBackend>);
    if link
        .send(FromWorker::Ready {
            pid: std::process::id(),
        })
        .is_err()
    {
        return 0;
    }
    match serve_process(&link) {
        ServeEnd::Stopped | ServeEnd::ParentGone => 0,
        ServeEnd::Protocol(e) => {
            eprintln!("worker \"{name}\": {e}");
            3
        }
    }
}

/// Why serving ended.
#[derive(Debug)]
pub(crate) enum ServeEnd {
    Stopped,
    ParentGone,
    Protocol(String),
}

/// Serves a thread worker's calls one at a time until stop or until the
/// parent drops the channel.
pub(crate) fn serve_thread(
    calls: &Receiver<ToWorker>,
    inbox: Receiver<Vec<u8>>,
    answers: Receiver<(u64, Answer)>,
    outbox: Arc<dyn Outbox>,
    stop: &StopToken,
) -> ServeEnd {
    LINE.with(|line| {
        *line.borrow_mut() = Some(Line::Thread {
            outbox: Arc::clone(&outbox),
            inbox,
            answers,
            next_question: std::cell::Cell::new(0),
        });
    });
    for message in calls {
        match message {
            ToWorker::Call {
                id,
                function,
                extra,
                output,
            } => {
                // The call sees the worker's stop token (set when it is
                // killed).
                let outcome = stop.enter(|| {
                    let _call = InCall::enter(id);
                    run_call(&function, &extra, output)
                });
                if outbox.send(FromWorker::Done { id, outcome }).is_err() {
                    return ServeEnd::ParentGone;
                }
            }
            ToWorker::Stop => return ServeEnd::Stopped,
            // Messages and answers do not come this way.
            ToWorker::Message { .. } | ToWorker::Storage { .. } | ToWorker::Answer { .. } => {}
        }
    }
    ServeEnd::ParentGone
}

/// Starts the heartbeat thread: a heartbeat every [`HEARTBEAT`], and the
/// channel drained while a call runs and nobody reads it (messages queue
/// here, not in the socket).
///
/// Any frame the worker sends tells the parent it is alive, so a beat is
/// skipped while other frames flow: a busy worker's heartbeat never wakes
/// the parent (nor moves its threads between CPUs) mid-exchange.
fn start_heartbeat(link: &Arc<WorkerLink>) {
    let beat = Arc::clone(link);
    let _ = thread::Builder::new()
        .name("sk-heartbeat".to_owned())
        .stack_size(256 << 10)
        .spawn(move || {
            let mut first = true;
            loop {
                let quiet = beat.last_send.at().elapsed() >= HEARTBEAT;
                if first || quiet {
                    if beat.send(FromWorker::Heartbeat).is_err() {
                        return;
                    }
                    // Dated now, not when next looked at (a quarter second
                    // on): the next beat is due a quarter second from now.
                    beat.last_send.touch();
                }
                first = false;
                beat.relay.drain(&*beat, false);
                thread::sleep(HEARTBEAT);
            }
        });
}

/// Serves a process worker's calls, each on this thread, until stop, end
/// of input, or bad input.
fn serve_process(link: &Arc<WorkerLink>) -> ServeEnd {
    LINE.with(|line| *line.borrow_mut() = Some(Line::Process(Arc::clone(link))));
    let next = || link.commands.lock().pop_front();
    let mut waited = link.relay.wait(&**link, None, next);
    loop {
        match waited {
            Waited::Got(Command::Call(id, function, extra, output)) => {
                // From here until its end is sent, what the worker sends
                // is read by the call's caller, or by the hub watching
                // while calls are out: no ring.
                link.in_call.store(true, Ordering::Relaxed);
                if let Some(mark) = &link.mark {
                    // The function is looked up first (a new process's
                    // first lookup takes a while): the mark then comes as
                    // close to its start as it can.
                    let _ = function.spec();
                    mark.mark(id);
                }
                let outcome = {
                    let _call = InCall::enter(id);
                    run_call(&function, &extra, output)
                };
                // Be the reader before the answer goes out (see
                // `Relay::try_lead`).
                let leading = link.relay.try_lead();
                if link
                    .send_as(FromWorker::Done { id, outcome }, true)
                    .is_err()
                {
                    return ServeEnd::ParentGone;
                }
                waited = if leading {
                    link.relay.wait_leading(&**link, None, next)
                } else {
                    link.relay.wait(&**link, None, next)
                };
            }
            Waited::Got(Command::Stop) => return ServeEnd::Stopped,
            Waited::TimedOut => waited = link.relay.wait(&**link, None, next),
            Waited::Closed => {
                return match link.relay.ended() {
                    Some(Ended::Broken(why)) => ServeEnd::Protocol(why),
                    _ => ServeEnd::ParentGone,
                };
            }
        }
    }
}

/// Runs one call and encodes its outcome as `format` asks.
fn run_call(
    function: &SkFunction,
    extra: &Args,
    format: Encoding,
) -> Result<Encoded, RemoteFailure> {
    let failure = |e: &FunctionError| RemoteFailure {
        message: error_chain(e),
        retryable: e.is_retryable(),
    };
    let value = function
        .execute_value_with(extra)
        .map_err(|e| failure(&e))?;
    let encoded = match format {
        Encoding::External => value
            .encode_external()
            .map(|bytes| (value.type_name().to_owned(), bytes)),
        _ => value.into_encoded(),
    };
    let (type_name, bytes) = encoded.map_err(|e| failure(&FunctionError::Cereal(e)))?;
    Ok(Encoded {
        type_name,
        bytes,
        format,
    })
}

/// What the serving thread does next.
enum Command {
    Call(u64, Arc<SkFunction>, Args, Encoding),
    Stop,
}

/// A worker process's side of the channel: the relay it reads, the
/// socket it writes, and where routed messages wait. It is also the
/// process's global storage: every operation is sent to the parent, which
/// hosts the store.
pub(crate) struct WorkerLink {
    /// Where the parent sees which calls have started.
    mark: Option<StartedMark>,
    /// Rung (where the parent handed one over) for each frame sent
    /// outside a call (see `hub.rs`).
    doorbell: Option<OwnedFd>,
    /// A call runs (its end not sent yet). Changed, where it matters,
    /// under the lock of `out`, so that frames on the channel after a
    /// call's end are the ones sent with a ring.
    in_call: AtomicBool,
    relay: Relay<ToWorker>,
    out: Mutex<UnixStream>,
    commands: Mutex<VecDeque<Command>>,
    inbox: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// The id of the next storage operation or question.
    next_request: AtomicU64,
    storage: Mutex<HashMap<u64, Sender<StorageReply>>>,
    answers: Mutex<HashMap<u64, Sender<Answer>>>,
    /// When a frame last went out (or the link was made).
    last_send: Stamp,
}

impl std::fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLink")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

/// How long a storage operation waits for the parent.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);

impl WorkerLink {
    fn new(stream: UnixStream) -> io::Result<Self> {
        let (mark, extra) = match std::env::var_os(crate::mark::ENV_MARK) {
            Some(_) => {
                let (mark, extra) = StartedMark::receive(&stream)?;
                (Some(mark), extra)
            }
            None => (None, Vec::new()),
        };
        // After the mark may come the doorbell, then the socket calls come
        // on (this one then carries only what the worker sends).
        let mut extra = extra.into_iter();
        let doorbell = extra.next();
        let (relay, out) = match extra.next() {
            Some(calls) => (Relay::new(UnixStream::from(calls), None).one_way(), stream),
            None => (Relay::new(stream.try_clone()?, None), stream),
        };
        Ok(WorkerLink {
            mark,
            doorbell,
            in_call: AtomicBool::new(false),
            relay,
            out: Mutex::new(out),
            commands: Mutex::new(VecDeque::new()),
            inbox: channel::unbounded(),
            next_request: AtomicU64::new(1),
            storage: Mutex::new(HashMap::new()),
            answers: Mutex::new(HashMap::new()),
            last_send: Stamp::new(),
        })
    }

    fn send(&self, message: FromWorker) -> Result<(), ProtocolError> {
        self.send_as(message, false)
    }

    /// Sends `message`, the end of the running call if `ends_call`;
    /// rings the doorbell if no call runs (also while the frame waits
    /// for room: the parent must read to make it).
    fn send_as(&self, message: FromWorker, ends_call: bool) -> Result<(), ProtocolError> {
        with_frame(&message, DEFAULT_MAX_FRAME, |frame| {
            let out = self.out.lock();
            let idle = !self.in_call.load(Ordering::Relaxed);
            let sent = send_frame_or(&out, frame, &mut || {
                if idle {
                    self.ring();
                }
            });
            if ends_call {
                self.in_call.store(false, Ordering::Relaxed);
            } else if idle {
                self.ring();
            }
            sent
        })??;
        self.last_send.mark();
        Ok(())
    }

    /// Rings the doorbell if no call runs (the caller holds `out`).
    fn ring_if_idle(&self) {
        if !self.in_call.load(Ordering::Relaxed) {
            self.ring();
        }
    }

    fn ring(&self) {
        if let Some(bell) = &self.doorbell {
            // A full counter (it never is: the hub reads it) has rung.
            let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
        }
    }

    fn listen(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        match self
            .relay
            .wait(self, Some(deadline), || self.inbox.1.try_recv().ok())
        {
            Waited::Got(bytes) => Some(bytes),
            Waited::TimedOut | Waited::Closed => None,
        }
    }

    fn request(&self, op: StorageOp) -> Result<StorageReply, StorageError> {
        let deadline = Instant::now() + STORAGE_TIMEOUT;
        let frame = |id| FromWorker::Storage { id, op };
        match self.round_trip(&self.storage, frame, deadline) {
            Ok(StorageReply::Failed(message)) => Err(StorageError::backend(message)),
            Ok(reply) => Ok(reply),
            Err(Asked::Send(e)) => Err(StorageError::backend_with(
                "cannot reach the parent's storage",
                e,
            )),
            Err(Asked::TimedOut | Asked::Closed) => {
                Err(StorageError::backend("the parent's storage did not answer"))
            }
        }
    }

    /// Asks the parent `question` for call `call`; waits until `deadline`.
    fn ask(&self, call: u64, question: &[u8], deadline: Instant) -> Result<Answer, Asked> {
        let question = question.to_vec();
        self.round_trip(
            &self.answers,
            |id| FromWorker::Ask { call, id, question },
            deadline,
        )
    }

    /// Sends the frame `frame(id)` for a new request id and waits until
    /// `deadline` for the reply routed to `waiters` under that id.
    fn round_trip<R>(
        &self,
        waiters: &Mutex<HashMap<u64, Sender<R>>>,
        frame: impl FnOnce(u64) -> FromWorker,
        deadline: Instant,
    ) -> Result<R, Asked> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::bounded(1);
        waiters.lock().insert(id, tx);
        if let Err(e) = self.send(frame(id)) {
            waiters.lock().remove(&id);
            return Err(Asked::Send(e));
        }
        match self.relay.wait(self, Some(deadline), || rx.try_recv().ok()) {
            Waited::Got(reply) => Ok(reply),
            waited => {
                waiters.lock().remove(&id);
                Err(match waited {
                    Waited::TimedOut => Asked::TimedOut,
                    _ => Asked::Closed,
                })
            }
        }
    }
}

/// Why a request (a question, a storage operation) got no reply from the
/// parent.
enum Asked {
    Send(ProtocolError),
    TimedOut,
    Closed,
}

impl Router<ToWorker> for WorkerLink {
    fn route(&self, message: ToWorker) {
        match message {
            ToWorker::Call {
                id,
                function,
                extra,
                output,
            } => self
                .commands
                .lock()
                .push_back(Command::Call(id, function, extra, output)),
            ToWorker::Stop => self.commands.lock().push_back(Command::Stop),
            ToWorker::Storage { id, reply } => {
                if let Some(waiter) = self.storage.lock().remove(&id) {
                    let _ = waiter.send(reply);
                }
            }
            ToWorker::Answer { id, answer } => {
                if let Some(waiter) = self.answers.lock().remove(&id) {
                    let _ = waiter.send(answer);
                }
            }
            ToWorker::Message { bytes } => {
                let _ = self.inbox.0.send(bytes);
            }
        }
    }

    fn closed(&self, _broken: Option<&ProtocolError>) {}
}

fn unexpected(reply: &StorageReply) -> StorageError {
    StorageError::backend(format!("unexpected storage reply {reply:?}"))
}

impl StorageBackend for WorkerLink {
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
