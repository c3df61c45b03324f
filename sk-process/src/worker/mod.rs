//! [`Worker`]: the parent's handle to one worker, a process or a thread.
//!
//! Calls go out as frames and come back as [`Value`]s. Nothing is lost:
//! every call ends with its result or a typed error — the worker failed
//! the call, it timed out (the process is killed), it died with the call in
//! hand, or its channel carried bad data (the worker is killed and
//! reported, so a supervisor can replace it).
//!
//! The module holds both sides of a worker. In the parent:
//!
//! - this file: [`Worker`] and the state every backend shares
//!   ([`Shared`]: pending calls, how the worker ended, its watchers), and
//!   the routing of what a worker sends;
//! - `pending.rs`: [`PendingCall`], a call on its way, and the wait for
//!   its end (answering the questions its code asks meanwhile);
//! - `link.rs`: the [`Link`](link::Link) trait — what differs between
//!   backends — with one implementation per backend: `process.rs` (this
//!   binary re-executed, its channel read by the waiting caller or the I/O
//!   hub) and `thread.rs`;
//! - `ending.rs`: how a call whose worker ended is reported.
//!
//! In the worker: `child.rs`, the serving loop and what the running code
//! uses to talk to its parent ([`tell_parent`](crate::tell_parent),
//! [`listen_parent`](crate::listen_parent), [`ask_parent`](crate::ask_parent)).
//!
//! A process worker costs the parent no thread of its own: the thread that
//! waits for a reply reads the channel itself (see `wire/relay.rs`), and
//! the I/O hub (`hub.rs`) forwards output, reads between calls, learns of
//! the exit and checks heartbeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use sk_core::{Args, SkFunction, Value};
use sk_reg::GlobalStorage;

use crate::backend::Backend;
use crate::error::{ProtocolError, WorkerError};
use crate::stamp::Stamp;
use crate::vocab::Exit;
use crate::wire::{FromWorker, ToWorker};
use sk_core::Encoding;

pub(crate) mod child;
mod ending;
mod link;
mod mailbox;
mod pending;
mod process;
mod thread;

use ending::{died, lost, not_delivered};
use link::Link;
pub use pending::PendingCall;
pub(crate) use process::READY_TIMEOUT;

/// How long a caller whose worker's channel has ended waits for the exit
/// to be reported (it comes as soon as the process is reaped).
const EXIT_REPORT_LIMIT: Duration = Duration::from_secs(10);

/// Something that happened to a worker.
#[derive(Clone, Debug)]
pub struct WorkerEvent {
    /// The worker's name.
    pub worker: String,
    /// Its process id (0 for a thread).
    pub pid: u32,
    /// How it ended.
    pub exit: Exit,
}

type Reply = Result<Value, WorkerError>;

/// What the parent answers a question asked by the code a worker runs
/// (see [`ask_parent`](crate::ask_parent)): the answer's bytes, or why
/// there is none. It runs on the thread that waits for the call (see
/// [`Worker::call_answering`]).
pub type Answerer<'a> = &'a mut dyn FnMut(&[u8]) -> Result<Vec<u8>, String>;

/// What comes back for a call: its end, or a question its code asks.
enum CallEvent {
    Done(Reply),
    Ask { id: u64, question: Vec<u8> },
}

/// Said to a question asked by a call nobody answers questions for.
const NO_ANSWERER: &str = "nobody answers questions for this call";

/// A call sent and not yet answered: where its events go, and (see
/// [`MailSender::sent`](mailbox::MailSender::sent)) how many frames had
/// been sent to the worker once it was out.
struct Pending {
    reply: mailbox::MailSender,
}

/// Hashes call ids, numbers from a counter, with one multiplication:
/// nobody outside picks them, so SipHash's guard is not needed.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The calls sent to a worker and not yet answered, by id.
type Calls = HashMap<u64, Pending, std::hash::BuildHasherDefault<IdHasher>>;

/// What every backend keeps about a worker the same way.
pub(super) struct Shared {
    name: String,
    backend: Backend,
    pid: u32,
    next_id: AtomicU64,
    pending: Mutex<Calls>,
    alive: AtomicBool,
    /// Why it ended, first come; known before every trace of it is in.
    cause: Mutex<Option<Exit>>,
    /// How it ended, once its channel and output are drained and its
    /// pending calls failed.
    exit: Mutex<Option<Exit>>,
    /// When a frame last came (or the worker started).
    last_heard: Stamp,
    watchers: Mutex<Vec<Sender<WorkerEvent>>>,
    messages: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl Shared {
    fn new(name: String, backend: Backend, pid: u32) -> Self {
        Shared {
            name,
            backend,
            pid,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Calls::default()),
            alive: AtomicBool::new(true),
            cause: Mutex::new(None),
            exit: Mutex::new(None),
            last_heard: Stamp::new(),
            watchers: Mutex::new(Vec::new()),
            messages: channel::unbounded(),
        }
    }

    fn event(&self, exit: Exit) -> WorkerEvent {
        WorkerEvent {
            worker: self.name.clone(),
            pid: self.pid,
            exit,
        }
    }

    /// Records why the worker ends (the first reason wins). It counts as
    /// alive until [`settle`] (or an explicit kill), so whoever sees it
    /// dead also sees how it ended.
    fn record(&self, exit: Exit) {
        let mut cause = self.cause.lock();
        if cause.is_none() {
            *cause = Some(exit);
        }
    }

    /// Sends a [`WorkerEvent`] to `events` when the worker ends.
    fn watch(&self, events: Sender<WorkerEvent>) {
        let mut watchers = self.watchers.lock();
        match self.exit.lock().clone() {
            Some(exit) => {
                let _ = events.send(self.event(exit));
            }
            None => watchers.push(events),
        }
    }

    /// Waits at most `limit` for the worker's end to be reported.
    fn wait_exit(&self, limit: Duration) -> bool {
        let (tx, rx) = channel::bounded(1);
        self.watch(tx);
        rx.recv_timeout(limit).is_ok()
    }

    fn closed(&self) -> WorkerError {
        WorkerError::Closed {
            worker: self.name.clone(),
        }
    }

    fn protocol(&self, source: ProtocolError) -> WorkerError {
        WorkerError::Protocol {
            worker: self.name.clone(),
            source,
        }
    }
}

/// Once `link`'s worker has ended and everything it sent is in: fails
/// every pending call and tells the watchers.
fn settle(link: &dyn Link) {
    let shared = link.shared();
    let Some(exit) = shared.cause.lock().clone() else {
        return;
    };
    // Only once everything the worker sent is in (a process: reaped, its
    // output forwarded, its channel read to the end): whoever sees the end
    // then sees everything the worker said.
    if !link.drained() {
        return;
    }
    {
        let mut slot = shared.exit.lock();
        if slot.is_some() {
            return;
        }
        *slot = Some(exit.clone());
    }
    shared.alive.store(false, Ordering::Release);
    let pending: Vec<_> = shared.pending.lock().drain().collect();
    for (id, call) in pending {
        let _ = call
            .reply
            .send(CallEvent::Done(Err(lost(link, id, call.reply.sent()))));
    }
    if exit.is_normal() {
        tracing::debug!(worker = %shared.name, pid = shared.pid, "worker exited");
    } else {
        tracing::warn!(worker = %shared.name, pid = shared.pid, exit = %exit, "worker died");
    }
    let event = shared.event(exit);
    for watcher in shared.watchers.lock().drain(..) {
        let _ = watcher.send(event.clone());
    }
    link.settled();
}

/// A worker: a process (this binary re-executed) or a thread, serving
/// calls of registered functions one at a time.
///
/// Dropping the last handle stops the worker (a process is killed after a
/// short grace).
#[derive(Clone)]
pub struct Worker {
    link: Arc<dyn Link>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.shared().name)
            .field("backend", &self.shared().backend)
            .field("pid", &self.shared().pid)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Worker {
    /// Starts a worker named `name` on `backend` and waits until it is
    /// ready; worker processes host their global storage in this
    /// process's.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Spawn`] when it cannot be started,
    /// [`WorkerError::NotReady`] when a process does not report ready in
    /// time (it is killed), [`WorkerError::Died`] when it dies first.
    pub fn spawn(name: impl Into<String>, backend: Backend) -> Result<Worker, WorkerError> {
        Worker::spawn_with_storage(name, backend, GlobalStorage::global().clone())
    }

    /// As [`Worker::spawn`], hosting the worker's global storage in
    /// `storage`.
    ///
    /// # Errors
    ///
    /// As [`Worker::spawn`].
    pub fn spawn_with_storage(
        name: impl Into<String>,
        backend: Backend,
        storage: GlobalStorage,
    ) -> Result<Worker, WorkerError> {
        let worker = Worker::start_with_storage(name, backend, storage)?;
        if let Err(e) = worker.ready(READY_TIMEOUT) {
            worker.kill();
            return Err(e);
        }
        Ok(worker)
    }

    /// Starts a worker without waiting until it is ready: calls submitted
    /// at once wait in its channel and run as soon as it serves (several
    /// workers started this way get ready side by side). A worker that
    /// dies before it is ready fails those calls with
    /// [`WorkerError::Died`], naming how it ended.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Spawn`] when it cannot be started.
    pub fn start(name: impl Into<String>, backend: Backend) -> Result<Worker, WorkerError> {
        Worker::start_with_storage(name, backend, GlobalStorage::global().clone())
    }

    /// As [`Worker::start`], hosting the worker's global storage in
    /// `storage`.
    ///
    /// # Errors
    ///
    /// As [`Worker::start`].
    pub fn start_with_storage(
        name: impl Into<String>,
        backend: Backend,
        storage: GlobalStorage,
    ) -> Result<Worker, WorkerError> {
        let name = name.into();
        let link = match backend {
            Backend::Process => process::start(name, storage)?,
            Backend::Thread => thread::start(name)?,
        };
        Ok(Worker { link })
    }

    /// Waits at most `timeout` until the worker serves calls (a thread
    /// worker does at once).
    ///
    /// # Errors
    ///
    /// [`WorkerError::NotReady`] when it is not ready in time (it is left
    /// running), [`WorkerError::Died`] when it ended first.
    pub fn ready(&self, timeout: Duration) -> Result<(), WorkerError> {
        self.link.await_ready(timeout)
    }

    /// The state every backend shares.
    fn shared(&self) -> &Shared {
        self.link.shared()
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The worker's backend.
    pub fn backend(&self) -> Backend {
        self.shared().backend
    }

    /// The worker's process id (this process's for a thread worker).
    pub fn pid(&self) -> u32 {
        self.shared().pid
    }

    /// Whether the worker is still serving.
    pub fn is_alive(&self) -> bool {
        self.shared().alive.load(Ordering::Acquire)
    }

    /// How the worker ended, once it has and everything it sent (output
    /// included) is in.
    pub fn exit(&self) -> Option<Exit> {
        self.shared().exit.lock().clone()
    }

    /// When the worker was last heard from (a process worker's, to within
    /// the quarter second its parent's I/O hub looks at it).
    pub fn last_heartbeat(&self) -> Instant {
        self.shared().last_heard.at()
    }

    /// Receives a [`WorkerEvent`] when the worker ends.
    pub fn watch(&self, events: Sender<WorkerEvent>) {
        self.shared().watch(events);
    }

    /// Sends a call of `function` (with `extra` arguments) without waiting.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Closed`] when the worker has ended,
    /// [`WorkerError::Encode`] when the call cannot be sent.
    pub fn submit(&self, function: &SkFunction, extra: &Args) -> Result<PendingCall, WorkerError> {
        let pending = self
            .send_call(function, extra, Encoding::Internal, true)
            .map_err(|e| self.explain_send_error(e))?;
        self.link.watch();
        Ok(pending)
    }

    /// [`submit`](Self::submit) without waiting to explain a failed send;
    /// `named`: the handle keeps the function's name (for a timeout's
    /// error), else its waiter is given it.
    fn send_call(
        &self,
        function: &SkFunction,
        extra: &Args,
        output: Encoding,
        named: bool,
    ) -> Result<PendingCall, WorkerError> {
        if !self.is_alive() {
            return Err(self.shared().closed());
        }
        let id = self.shared().next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mailbox::mailbox();
        self.shared()
            .pending
            .lock()
            .insert(id, Pending { reply: tx });
        match self.link.send_call(id, function, extra, output) {
            Ok(sent) => rx.set_sent(sent),
            Err(e) => {
                self.shared().pending.lock().remove(&id);
                return Err(e);
            }
        }
        // The worker's end may have been settled between the check and the
        // insert (settling fails the calls pending then, not this one):
        // fail it now, from the end as settled. A worker only marked dead
        // (a kill under way) is left to settle, when its started mark is
        // final.
        if self.shared().exit.lock().is_some() {
            if let Some(call) = self.shared().pending.lock().remove(&id) {
                let _ = call.reply.send(CallEvent::Done(Err(lost(
                    &*self.link,
                    id,
                    call.reply.sent(),
                ))));
            }
        }
        Ok(PendingCall {
            worker: self.clone(),
            id,
            ended: false,
            function: if named {
                function.name().to_owned()
            } else {
                String::new()
            },
            rx,
        })
    }

    /// A channel closed under a write means the worker has died and the
    /// call never reached it: say how it ended, once that is reported.
    /// (The caller must not be the channel's reader meanwhile: the report
    /// needs the channel read to its end.)
    fn explain_send_error(&self, e: WorkerError) -> WorkerError {
        if let WorkerError::Protocol {
            source: ProtocolError::Io(io),
            ..
        } = &e
        {
            if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                self.shared().wait_exit(EXIT_REPORT_LIMIT);
                return not_delivered(&*self.link);
            }
        }
        e
    }

    /// Calls `function` in the worker and waits for its output, at most
    /// `timeout`; on timeout a process worker is killed and a thread
    /// worker is abandoned with its stop token set.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Remote`] when the function failed,
    /// [`WorkerError::TimedOut`], [`WorkerError::Died`],
    /// [`WorkerError::Protocol`], [`WorkerError::Closed`],
    /// [`WorkerError::Encode`].
    pub fn call(
        &self,
        function: &SkFunction,
        extra: &Args,
        timeout: Option<Duration>,
    ) -> Result<Value, WorkerError> {
        self.call_answering(function, extra, timeout, &mut refuse)
    }

    /// [`call`](Self::call), with `answer` answering the questions the
    /// function asks while it runs ([`ask_parent`](crate::ask_parent)),
    /// on this thread, one at a time; the answer goes back at once. The
    /// timeout bounds the whole call, questions included (an answerer that
    /// itself runs past it delays the kill until it returns).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sk_core::SkFunction;
    /// use sk_process::{Backend, Worker, ask_parent};
    ///
    /// #[sk_core::function(crate = ::sk_core)]
    /// fn greet() -> String {
    ///     let name = ask_parent(b"name?", Duration::from_secs(5)).unwrap_or_default();
    ///     format!("hello, {}", String::from_utf8_lossy(&name))
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     sk_process::init();
    ///     let worker = Worker::spawn("greeter", Backend::Process)?;
    ///     let value = worker.call_answering(
    ///         &SkFunction::builder("greet").build()?,
    ///         &Default::default(),
    ///         Some(Duration::from_secs(10)),
    ///         &mut |question| match question {
    ///             b"name?" => Ok(b"Ada".to_vec()),
    ///             _ => Err("no such question".to_owned()),
    ///         },
    ///     )?;
    ///     assert_eq!(value.take::<String>()?, "hello, Ada");
    ///     Ok(())
    /// }
    /// ```
    pub fn call_answering(
        &self,
        function: &SkFunction,
        extra: &Args,
        timeout: Option<Duration>,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        self.call_with(function, extra, CallOptions::new().timeout(timeout), answer)
    }

    /// [`call_answering`](Self::call_answering) with [`CallOptions`]: a
    /// timeout, and the format the output comes back in (e.g. the
    /// external format, to keep the output on disk).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); a worker's output in the external format
    /// that is not a valid envelope is [`WorkerError::Protocol`].
    pub fn call_with(
        &self,
        function: &SkFunction,
        extra: &Args,
        options: CallOptions,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        let timeout = options.timeout;
        // Be the channel's reader before the call goes out (see
        // `Relay::try_lead`).
        let leading = self.link.lead();
        let pending = match self.send_call(function, extra, options.output, false) {
            Ok(pending) => pending,
            Err(e) => {
                if leading {
                    self.link.unlead();
                }
                return Err(self.explain_send_error(e));
            }
        };
        pending.wait_as(timeout, leading, answer, function.name())
    }

    /// Sends `message`; the number of frames sent to a process worker so
    /// far, this one included.
    fn send(&self, message: ToWorker) -> Result<u64, WorkerError> {
        self.link.send(message)
    }

    /// Sends `message` to the code the worker is running (read there with
    /// [`listen_parent`](crate::listen_parent)).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Encode`] when it does not serialize,
    /// [`WorkerError::Closed`] when the worker has ended.
    pub fn tell<T: serde::Serialize>(&self, message: &T) -> Result<(), WorkerError> {
        let bytes = sk_cereal::Internal::encode(message).map_err(|source| WorkerError::Encode {
            worker: self.shared().name.clone(),
            source,
        })?;
        self.send(ToWorker::Message { bytes }).map(drop)
    }

    /// Waits at most `timeout` for a message from the code the worker is
    /// running (sent there with [`tell_parent`](crate::tell_parent)).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Protocol`] when the message is not a `T`.
    pub fn listen<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Option<T>, WorkerError> {
        let got = self.link.next_message(Instant::now() + timeout);
        got.map(|bytes| {
            sk_cereal::Internal::decode(&bytes)
                .map_err(|e| self.protocol(ProtocolError::Malformed(e)))
        })
        .transpose()
    }

    /// Writes raw bytes to a process worker's channel. Only for tests of
    /// the worker's handling of bad input.
    #[doc(hidden)]
    pub fn __send_raw(&self, bytes: &[u8]) -> Result<(), WorkerError> {
        self.link.send_raw(bytes)
    }

    /// Asks the worker to finish its current call and exit; kills it if it
    /// has not ended after `grace`. Returns once its end is reported.
    pub fn stop(&self, grace: Duration) {
        if self.exit().is_some() {
            return;
        }
        let _ = self.send(ToWorker::Stop);
        self.link.close();
        if !self.shared().wait_exit(grace) {
            self.kill();
            self.shared().wait_exit(EXIT_REPORT_LIMIT);
        }
    }

    /// Ends the worker now: a process gets SIGKILL; a thread worker has its
    /// stop token set and is abandoned. Calls in hand fail with
    /// [`WorkerError::Died`].
    pub fn kill(&self) {
        self.link.kill();
    }

    fn protocol(&self, source: ProtocolError) -> WorkerError {
        self.shared().protocol(source)
    }
}

/// The answerer of calls made without one.
fn refuse(_question: &[u8]) -> Result<Vec<u8>, String> {
    Err(NO_ANSWERER.to_owned())
}

/// Sends the answer to question `id`. An answer the channel cannot carry
/// (too large, say) is replaced by the reason, so the question does not
/// wait in vain; a channel that fails shows as the worker's end.
fn answer(link: &dyn Link, id: u64, answer: Result<Vec<u8>, String>) {
    match link.send(ToWorker::Answer { id, answer }) {
        Err(e @ WorkerError::Encode { .. })
        | Err(
            e @ WorkerError::Protocol {
                source: ProtocolError::TooLarge { .. },
                ..
            },
        ) => {
            let why = format!("the answer cannot be sent: {}", sk_core::error_chain(&e));
            let _ = link.send(ToWorker::Answer {
                id,
                answer: Err(why),
            });
        }
        _ => {}
    }
}

/// Refuses question `id`: nobody waits for the call that asked it.
fn refuse_unwaited(link: &dyn Link, id: u64) {
    answer(
        link,
        id,
        Err("the call that asked is no longer waited for".to_owned()),
    );
}

/// How [`Worker::call_with`] calls: its timeout and the format of the
/// output.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::Encoding;
/// use sk_process::CallOptions;
/// let options = CallOptions::new()
///     .timeout(Some(Duration::from_secs(5)))
///     .output(Encoding::External);
/// # let _ = options;
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallOptions {
    /// The longest the call may take (`None`: no limit).
    pub timeout: Option<Duration>,
    /// The format the output comes back in.
    pub output: Encoding,
}

impl CallOptions {
    /// No timeout, output in the internal format.
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the output format.
    pub fn output(mut self, output: Encoding) -> Self {
        self.output = output;
        self
    }
}

/// Routes a worker's message to whoever waits for it.
fn dispatch(link: &dyn Link, message: FromWorker) {
    let shared = link.shared();
    match message {
        FromWorker::Done { id, outcome } => {
            if let Some(call) = shared.pending.lock().remove(&id) {
                let result = outcome
                    .map_err(|f| WorkerError::Remote {
                        worker: shared.name.clone(),
                        message: f.message,
                        retryable: f.retryable,
                    })
                    .and_then(|e| {
                        Value::from_any(e.format, e.type_name, e.bytes).map_err(|e| {
                            WorkerError::Protocol {
                                worker: shared.name.clone(),
                                source: ProtocolError::Malformed(e),
                            }
                        })
                    });
                let _ = call.reply.send(CallEvent::Done(result));
            }
        }
        FromWorker::Ask { call, id, question } => {
            let asked = shared
                .pending
                .lock()
                .get(&call)
                .is_some_and(|c| c.reply.send(CallEvent::Ask { id, question }).is_ok());
            if !asked {
                refuse_unwaited(link, id);
            }
        }
        FromWorker::Heartbeat => {}
        FromWorker::MissingInit => link.on_missing_init(),
        FromWorker::Ready { .. } => link.on_ready(),
        FromWorker::Storage { id, op } => link.host_storage(id, op),
        FromWorker::Message { bytes } => {
            let _ = shared.messages.0.send(bytes);
        }
    }
}
