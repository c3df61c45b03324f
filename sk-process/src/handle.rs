//! [`Worker`]: the parent's handle to one worker, a process or a thread.
//!
//! Calls go out as frames and come back as [`Value`]s. Nothing is lost:
//! every call ends with its result or a typed error — the worker failed
//! the call, it timed out (the process is killed), it died with the call in
//! hand, or its channel carried bad data (the worker is killed and
//! reported, so a supervisor can replace it).
//!
//! A process worker costs the parent no thread of its own: the thread that
//! waits for a reply reads the channel itself (see `relay.rs`), and the
//! I/O hub (`hub.rs`) forwards output, reads between calls, learns of the
//! exit and checks heartbeats.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use sk_core::{Args, SkFunction, StopToken, Value};
use sk_reg::GlobalStorage;

use crate::backend::Backend;
use crate::error::{ProtocolError, WorkerError};
use crate::frame::{DEFAULT_MAX_FRAME, encode_frame, send_frame};
use crate::hub::{Arm, Watched, hub};
use crate::mark::StartedMark;

mod ending;
use ending::{died, lost, not_delivered};
use crate::protocol::{Answer, FromWorker, ToWorker};
use crate::relay::{Relay, Router, Waited};
use crate::spawn::spawn_worker;
use crate::stamp::Stamp;
use crate::vocab::Exit;
use crate::worker::{Outbox, ServeEnd, serve_thread};

/// How long a new worker process has to say it is ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A worker process sends a frame (a heartbeat, when nothing else) at
/// least every 250 ms from the moment it starts; a channel silent this
/// long means the worker is lost (frozen, or not a worker at all).
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// Said of a worker process that never became ready.
const INIT_HINT: &str = " (does the program call `suitkaise::init()` first thing in `main`, \
     or `sk_process::worker_test!()` in a test binary?)";

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

/// A call sent and not yet answered.
struct Pending {
    reply: Sender<CallEvent>,
    /// The number of frames sent to the worker once this call was out
    /// (`u64::MAX` until it is): while it is the last, a channel reset
    /// proves the call never reached the worker.
    sent: u64,
}
struct ProcessLink {
    writer: Mutex<UnixStream>,
    child: Mutex<Child>,
    relay: Relay<FromWorker>,
    storage: GlobalStorage,
    ready: AtomicBool,
    /// The highest call id the worker has started.
    mark: Option<StartedMark>,
    /// Frames written to the worker so far.
    sent: AtomicU64,
    /// Its exit has been collected (and its output drained).
    reaped: AtomicBool,
    /// When the worker was started.
    started: Instant,
    /// The worker said it runs `main` without `init()` (a program
    /// mistake; see `spawn.rs`).
    missing_init: AtomicBool,
    /// The hub's entries for this worker (its channel and its exit).
    tokens: Mutex<Vec<u64>>,
}

enum Link {
    Process(Box<ProcessLink>),
    Thread {
        tx: Mutex<Option<Sender<ToWorker>>>,
        messages: Sender<Vec<u8>>,
        /// Answers to the running code's questions (dropped when the
        /// worker is killed, which wakes a question waiting for one).
        answers: Mutex<Option<Sender<(u64, Answer)>>>,
        stop: StopToken,
    },
}

struct Inner {
    name: String,
    backend: Backend,
    pid: u32,
    link: Link,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
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

impl Inner {
    fn new(name: String, backend: Backend, pid: u32, link: Link) -> Self {
        Inner {
            name,
            backend,
            pid,
            link,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
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
    /// alive until [`settle`](Self::settle) (or an explicit kill), so
    /// whoever sees it dead also sees how it ended.
    fn record(&self, exit: Exit) {
        let mut cause = self.cause.lock();
        if cause.is_none() {
            *cause = Some(exit);
        }
    }

    /// Gives up on the worker: records `why` and kills its process.
    fn fail(&self, why: String) {
        self.record(Exit::Failed(why));
        if let Link::Process(p) = &self.link {
            let _ = p.child.lock().kill();
        }
    }

    /// Once the worker has ended and its channel is drained: fails every
    /// pending call and tells the watchers.
    fn settle(&self) {
        let Some(exit) = self.cause.lock().clone() else {
            return;
        };
        if let Link::Process(p) = &self.link {
            // Only once the process is reaped (its output forwarded) and
            // its channel read to the end: whoever sees the end then sees
            // everything the worker said.
            if !p.reaped.load(Ordering::Acquire) || p.relay.ended().is_none() {
                return;
            }
        }
        {
            let mut slot = self.exit.lock();
            if slot.is_some() {
                return;
            }
            *slot = Some(exit.clone());
        }
        self.alive.store(false, Ordering::Release);
        let pending: Vec<_> = self.pending.lock().drain().collect();
        for (id, call) in pending {
            let _ = call.reply.send(CallEvent::Done(Err(lost(self, id, call.sent))));
        }
        if exit.is_normal() {
            tracing::debug!(worker = %self.name, pid = self.pid, "worker exited");
        } else {
            tracing::warn!(worker = %self.name, pid = self.pid, exit = %exit, "worker died");
        }
        let event = self.event(exit);
        for watcher in self.watchers.lock().drain(..) {
            let _ = watcher.send(event.clone());
        }
        if let Link::Process(p) = &self.link {
            p.relay.wake_all();
        }
    }

    /// Writes one message to a process worker; the number of frames
    /// written so far, this one included.
    fn write(&self, message: &impl serde::Serialize) -> Result<u64, ProtocolError> {
        match &self.link {
            Link::Process(p) => {
                let frame = encode_frame(message, DEFAULT_MAX_FRAME)?;
                let writer = p.writer.lock();
                let sent = send_frame(&writer, &frame);
                if let Err(ProtocolError::Io(e)) = &sent {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        // Stalled in the middle of a frame: the channel is
                        // shut (see `send_frame`); so is the worker.
                        self.fail(format!("protocol error: {e}"));
                    }
                }
                sent.map(|()| p.sent.fetch_add(1, Ordering::Relaxed) + 1)
            }
            Link::Thread { .. } => Ok(0),
        }
    }

    /// Sends the answer to question `id`; whether it went out.
    fn answer(&self, id: u64, answer: Answer) -> bool {
        match &self.link {
            Link::Process(_) => self.write(&ToWorker::Answer { id, answer }).is_ok(),
            Link::Thread { answers, .. } => answers
                .lock()
                .as_ref()
                .is_some_and(|tx| tx.send((id, answer)).is_ok()),
        }
    }
}

impl Router<FromWorker> for Inner {
    fn route(&self, message: FromWorker) {
        // Every frame says the worker is alive (it skips heartbeats while
        // other frames flow).
        self.last_heard.touch();
        dispatch(self, message);
    }

    fn closed(&self, broken: Option<&ProtocolError>) {
        if let Some(e) = broken {
            self.fail(format!("protocol error: {}", sk_core::error_chain(e)));
        }
        self.settle();
    }
}

impl Watched for Inner {
    fn readable(&self) {
        if let Link::Process(p) = &self.link {
            p.relay.drain(self, true);
        }
    }

    fn exited(&self) {
        let Link::Process(p) = &self.link else { return };
        let status = p.child.lock().try_wait();
        match status {
            Ok(Some(status)) => self.record(Exit::of(status)),
            Ok(None) => return,
            Err(e) => self.record(Exit::Failed(format!("cannot wait for the process: {e}"))),
        }
        p.reaped.store(true, Ordering::Release);
        // Whatever it wrote before it died is read, then end of file — even
        // if a descendant still holds its end of the channel.
        // SAFETY: shutdown on the socket this handle owns.
        unsafe { libc::shutdown(p.relay.fd(), libc::SHUT_RD) };
        p.relay.drain(self, true);
        self.settle();
    }

    fn sweep(&self, now: Instant) {
        let Link::Process(p) = &self.link else { return };
        if !self.alive.load(Ordering::Acquire) || self.cause.lock().is_some() {
            return;
        }
        let ready = p.ready.load(Ordering::Acquire);
        if !ready && now.saturating_duration_since(p.started) > READY_TIMEOUT {
            self.fail(format!("not ready within {READY_TIMEOUT:?}{INIT_HINT}"));
            return;
        }
        // The worker beats from its first moments (see `worker.rs`); a
        // frame it has begun and not finished does not count.
        let last = self.last_heard.at();
        if now.saturating_duration_since(last) > SILENCE_LIMIT {
            let hint = if ready { "" } else { INIT_HINT };
            self.fail(format!("no heartbeat for {SILENCE_LIMIT:?}{hint}"));
        }
    }
}

/// A worker: a process (this binary re-executed) or a thread, serving
/// calls of registered functions one at a time.
///
/// Dropping the last handle stops the worker (a process is killed after a
/// short grace).
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .field("pid", &self.inner.pid)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A call sent to a worker, not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    worker: Worker,
    id: u64,
    function: String,
    rx: Receiver<CallEvent>,
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
        match backend {
            Backend::Process => start_process(name, storage),
            Backend::Thread => start_thread(name),
        }
    }

    /// Waits at most `timeout` until the worker serves calls (a thread
    /// worker does at once).
    ///
    /// # Errors
    ///
    /// [`WorkerError::NotReady`] when it is not ready in time (it is left
    /// running), [`WorkerError::Died`] when it ended first.
    pub fn ready(&self, timeout: Duration) -> Result<(), WorkerError> {
        let inner = &*self.inner;
        let Link::Process(p) = &inner.link else {
            return if self.is_alive() {
                Ok(())
            } else {
                Err(died(inner))
            };
        };
        let deadline = Instant::now() + timeout;
        let waited = p.relay.wait(inner, Some(deadline), || {
            if p.ready.load(Ordering::Acquire) {
                Some(true)
            } else {
                inner.exit.lock().is_some().then_some(false)
            }
        });
        match waited {
            Waited::Got(true) => Ok(()),
            Waited::Got(false) => Err(died(inner)),
            Waited::TimedOut => Err(WorkerError::NotReady {
                worker: inner.name.clone(),
                after: timeout,
            }),
            Waited::Closed => {
                self.wait_exit(EXIT_REPORT_LIMIT);
                Err(died(inner))
            }
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The worker's backend.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The worker's process id (this process's for a thread worker).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Whether the worker is still serving.
    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::Acquire)
    }

    /// How the worker ended, once it has and everything it sent (output
    /// included) is in.
    pub fn exit(&self) -> Option<Exit> {
        self.inner.exit.lock().clone()
    }

    /// When the worker was last heard from.
    pub fn last_heartbeat(&self) -> Instant {
        self.inner.last_heard.at()
    }

    /// Receives a [`WorkerEvent`] when the worker ends.
    pub fn watch(&self, events: Sender<WorkerEvent>) {
        let mut watchers = self.inner.watchers.lock();
        match self.exit() {
            Some(exit) => {
                let _ = events.send(self.inner.event(exit));
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

    /// Sends a call of `function` (with `extra` arguments) without waiting.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Closed`] when the worker has ended,
    /// [`WorkerError::Encode`] when the call cannot be sent.
    pub fn submit(&self, function: &SkFunction, extra: &Args) -> Result<PendingCall, WorkerError> {
        self.send_call(function, extra)
            .map_err(|e| self.explain_send_error(e))
    }

    /// [`submit`](Self::submit) without waiting to explain a failed send.
    fn send_call(&self, function: &SkFunction, extra: &Args) -> Result<PendingCall, WorkerError> {
        if !self.is_alive() {
            return Err(self.closed());
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::unbounded();
        self.inner.pending.lock().insert(
            id,
            Pending {
                reply: tx,
                sent: u64::MAX,
            },
        );
        let message = ToWorker::Call {
            id,
            function: function.clone(),
            extra: extra.clone(),
        };
        match self.send(message) {
            Ok(sent) => {
                if let Some(call) = self.inner.pending.lock().get_mut(&id) {
                    call.sent = sent;
                }
            }
            Err(e) => {
                self.inner.pending.lock().remove(&id);
                return Err(e);
            }
        }
        // The worker's end may have been settled between the check and the
        // insert (settling fails the calls pending then, not this one):
        // fail it now, from the end as settled. A worker only marked dead
        // (a kill under way) is left to settle, when its started mark is
        // final.
        if self.inner.exit.lock().is_some() {
            if let Some(call) = self.inner.pending.lock().remove(&id) {
                let _ = call
                    .reply
                    .send(CallEvent::Done(Err(lost(&self.inner, id, call.sent))));
            }
        }
        Ok(PendingCall {
            worker: self.clone(),
            id,
            function: function.name().to_owned(),
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
                self.wait_exit(EXIT_REPORT_LIMIT);
                return not_delivered(&self.inner);
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
    /// timeout bounds the whole call, questions included.
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
        let Link::Process(p) = &self.inner.link else {
            return self.submit(function, extra)?.wait_answering(timeout, answer);
        };
        // Be the channel's reader before the call goes out (see
        // `Relay::try_lead`).
        let leading = p.relay.try_lead();
        let pending = match self.send_call(function, extra) {
            Ok(pending) => pending,
            Err(e) => {
                if leading {
                    p.relay
                        .wait_leading(&*self.inner, Some(Instant::now()), || None::<()>);
                }
                return Err(self.explain_send_error(e));
            }
        };
        pending.wait_as(timeout, leading, answer)
    }

    /// Sends `message`; the number of frames sent to a process worker so
    /// far, this one included.
    fn send(&self, message: ToWorker) -> Result<u64, WorkerError> {
        match &self.inner.link {
            Link::Process(_) => self.inner.write(&message).map_err(|e| match e {
                ProtocolError::Malformed(source) => WorkerError::Encode {
                    worker: self.inner.name.clone(),
                    source,
                },
                other => self.protocol(other),
            }),
            Link::Thread { tx, messages, .. } => {
                let sent = match message {
                    ToWorker::Message { bytes } => messages.send(bytes).is_ok(),
                    ToWorker::Answer { id, answer } => self.inner.answer(id, answer),
                    other => tx.lock().as_ref().is_some_and(|tx| tx.send(other).is_ok()),
                };
                if sent { Ok(0) } else { Err(self.closed()) }
            }
        }
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
            worker: self.inner.name.clone(),
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
        let inbox = &self.inner.messages.1;
        let got = match &self.inner.link {
            Link::Process(p) => {
                match p
                    .relay
                    .wait(&*self.inner, Some(Instant::now() + timeout), || {
                        inbox.try_recv().ok()
                    }) {
                    Waited::Got(bytes) => Some(bytes),
                    Waited::TimedOut | Waited::Closed => None,
                }
            }
            Link::Thread { .. } => inbox.recv_timeout(timeout).ok(),
        };
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
        match &self.inner.link {
            Link::Process(p) => send_frame(&p.writer.lock(), bytes).map_err(|e| self.protocol(e)),
            Link::Thread { .. } => Err(self.closed()),
        }
    }

    /// Asks the worker to finish its current call and exit; kills it if it
    /// has not ended after `grace`. Returns once its end is reported.
    pub fn stop(&self, grace: Duration) {
        if self.exit().is_some() {
            return;
        }
        let _ = self.send(ToWorker::Stop);
        if let Link::Thread { tx, .. } = &self.inner.link {
            tx.lock().take();
        }
        if !self.wait_exit(grace) {
            self.kill();
            self.wait_exit(EXIT_REPORT_LIMIT);
        }
    }

    /// Ends the worker now: a process gets SIGKILL; a thread worker has its
    /// stop token set and is abandoned. Calls in hand fail with
    /// [`WorkerError::Died`].
    pub fn kill(&self) {
        match &self.inner.link {
            Link::Process(p) => {
                // Dead from now on for every caller; the hub reaps the
                // process and reports how it ended.
                self.inner.alive.store(false, Ordering::Release);
                let _ = p.child.lock().kill();
            }
            Link::Thread {
                tx, answers, stop, ..
            } => {
                // Record the kill first: closing the channel wakes the
                // thread, which would otherwise report a normal exit.
                self.inner.record(Exit::Signal(libc::SIGKILL));
                self.inner.settle();
                stop.stop();
                tx.lock().take();
                answers.lock().take();
            }
        }
    }

    fn closed(&self) -> WorkerError {
        WorkerError::Closed {
            worker: self.inner.name.clone(),
        }
    }

    fn protocol(&self, source: ProtocolError) -> WorkerError {
        WorkerError::Protocol {
            worker: self.inner.name.clone(),
            source,
        }
    }
}

impl PendingCall {
    /// Waits for the answer, at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait(self, timeout: Option<Duration>) -> Result<Value, WorkerError> {
        self.wait_as(timeout, false, &mut refuse)
    }

    /// [`wait`](Self::wait), with `answer` answering the questions the
    /// function asks meanwhile (see [`Worker::call_answering`]). Questions
    /// asked before the wait began are answered when it begins.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait_answering(
        self,
        timeout: Option<Duration>,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        self.wait_as(timeout, false, answer)
    }

    /// Waits, `leading` the channel's reading already or not, answering
    /// questions with `answer`.
    fn wait_as(
        self,
        timeout: Option<Duration>,
        mut leading: bool,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        let inner = &*self.worker.inner;
        let deadline = timeout.map(|t| Instant::now() + t);
        let received = loop {
            let event = match &inner.link {
                Link::Process(p) => {
                    let ready = || self.rx.try_recv().ok();
                    let waited = if leading {
                        p.relay.wait_leading(inner, deadline, ready)
                    } else {
                        p.relay.wait(inner, deadline, ready)
                    };
                    match waited {
                        Waited::Got(event) => Ok(event),
                        Waited::TimedOut => Err(RecvTimeoutError::Timeout),
                        // The channel ended: the report of the exit settles it.
                        Waited::Closed => self.rx.recv_timeout(EXIT_REPORT_LIMIT),
                    }
                }
                Link::Thread { .. } => match deadline {
                    Some(deadline) => self.rx.recv_deadline(deadline),
                    None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                },
            };
            match event {
                Ok(CallEvent::Done(reply)) => break Ok(reply),
                Ok(CallEvent::Ask { id, question }) => {
                    let reply = answer(&question);
                    // Be the reader before the answer goes out (see
                    // `Relay::try_lead`); a lost answer shows as the
                    // worker's end.
                    leading = match &inner.link {
                        Link::Process(p) => p.relay.try_lead(),
                        Link::Thread { .. } => false,
                    };
                    inner.answer(id, reply);
                }
                Err(e) => break Err(e),
            }
        };
        match received {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) if timeout.is_some() => {
                inner.pending.lock().remove(&self.id);
                tracing::warn!(
                    worker = %inner.name,
                    function = %self.function,
                    after = ?timeout.unwrap_or_default(),
                    "call timed out; killing the worker"
                );
                self.worker.kill();
                Err(WorkerError::TimedOut {
                    worker: inner.name.clone(),
                    function: self.function,
                    after: timeout.unwrap_or_default(),
                })
            }
            Err(_) => Err(died(inner)),
        }
    }

    /// The worker the call went to.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }
}

/// The answerer of calls made without one.
fn refuse(_question: &[u8]) -> Result<Vec<u8>, String> {
    Err(NO_ANSWERER.to_owned())
}

/// Routes a worker's message to whoever waits for it.
fn dispatch(inner: &Inner, message: FromWorker) {
    match message {
        FromWorker::Done { id, outcome } => {
            if let Some(call) = inner.pending.lock().remove(&id) {
                let result = outcome
                    .map(|e| Value::from_encoded(e.type_name, e.bytes))
                    .map_err(|f| WorkerError::Remote {
                        worker: inner.name.clone(),
                        message: f.message,
                        retryable: f.retryable,
                    });
                let _ = call.reply.send(CallEvent::Done(result));
            }
        }
        FromWorker::Ask { call, id, question } => {
            let asked = inner
                .pending
                .lock()
                .get(&call)
                .is_some_and(|c| c.reply.send(CallEvent::Ask { id, question }).is_ok());
            if !asked {
                inner.answer(id, Err("the call that asked is no longer waited for".to_owned()));
            }
        }
        FromWorker::Heartbeat => {}
        FromWorker::MissingInit => {
            if let Link::Process(p) = &inner.link {
                p.missing_init.store(true, Ordering::Release);
            }
            inner.fail("its program does not call `suitkaise::init()` first thing".to_owned());
        }
        FromWorker::Ready { .. } => {
            if let Link::Process(p) = &inner.link {
                p.ready.store(true, Ordering::Release);
            }
        }
        FromWorker::Storage { id, op } => {
            // Thread workers share this process's storage; only processes
            // send storage operations.
            if let Link::Process(p) = &inner.link {
                let reply = ToWorker::Storage {
                    id,
                    reply: crate::worker::host_storage(&p.storage, op),
                };
                let _ = inner.write(&reply);
            }
        }
        FromWorker::Message { bytes } => {
            let _ = inner.messages.0.send(bytes);
        }
    }
}

fn start_process(name: String, storage: GlobalStorage) -> Result<Worker, WorkerError> {
    if let Some(refused) = crate::worker::missing_init(&name) {
        return Err(refused);
    }
    let spawn_error = |source| WorkerError::Spawn {
        worker: name.clone(),
        source,
    };
    let hub = hub().map_err(spawn_error)?;
    // Without a mark, the worker's end says less about which calls it
    // started (see `lost`), but it works the same.
    let mark = StartedMark::new().ok();
    let mut spawned = spawn_worker(&name, mark.is_some()).map_err(spawn_error)?;
    if let Some(mark) = &mark {
        if mark.hand_over(&spawned.channel).is_err() {
            // Dead already (killed while starting), or it cannot be told
            // its mark: either way it ends here, and its end is reported
            // like any other death before it was ready.
            let _ = spawned.child.kill();
        }
    }
    let pid = spawned.child.id();
    let stdout = spawned.child.stdout.take();
    let stderr = spawned.child.stderr.take();
    let channel_token = hub.token();
    let relay = spawned.channel.try_clone().map(|reader| {
        Relay::new(
            reader,
            Some(Box::new(Arm {
                hub,
                token: channel_token,
            })),
        )
    });
    let relay = match relay {
        Ok(relay) => relay,
        Err(e) => {
            let _ = spawned.child.kill();
            let _ = spawned.child.wait();
            return Err(spawn_error(e));
        }
    };
    let channel_fd = relay.fd();
    let inner = Arc::new(Inner::new(
        name.clone(),
        Backend::Process,
        pid,
        Link::Process(Box::new(ProcessLink {
            writer: Mutex::new(spawned.channel),
            child: Mutex::new(spawned.child),
            relay,
            storage,
            ready: AtomicBool::new(false),
            mark,
            sent: AtomicU64::new(0),
            reaped: AtomicBool::new(false),
            started: Instant::now(),
            missing_init: AtomicBool::new(false),
            tokens: Mutex::new(Vec::new()),
        })),
    ));
    let watched: Weak<dyn Watched> = Arc::downgrade(&inner) as Weak<dyn Watched>;
    let Link::Process(link) = &inner.link else {
        unreachable!("a process worker has a process link")
    };
    let registered = (|| -> std::io::Result<()> {
        // Recorded as they are made, so the handle's drop forgets them.
        let tokens = &link.tokens;
        hub.watch_channel(channel_token, channel_fd, watched.clone())?;
        tokens.lock().push(channel_token);
        let mut outputs = Vec::new();
        for (stream, err) in [
            (stdout.map(OwnedFd::from), false),
            (stderr.map(OwnedFd::from), true),
        ] {
            if let Some(stream) = stream {
                outputs.push(hub.forward(&name, stream, err)?);
            }
        }
        match hub.watch_exit(pid, watched.clone(), outputs) {
            Ok(token) => tokens.lock().push(token),
            // No pidfd on this kernel: a thread waits for the exit instead.
            Err(_) => {
                let weak = Arc::downgrade(&inner);
                thread::Builder::new()
                    .name(format!("sk-wait:{name}"))
                    .spawn(move || wait_loop(&weak))?;
            }
        }
        Ok(())
    })();
    let worker = Worker {
        inner: Arc::clone(&inner),
    };
    match registered {
        Ok(()) => Ok(worker),
        Err(source) => {
            worker.kill();
            Err(WorkerError::Spawn {
                worker: name,
                source,
            })
        }
    }
}

/// Waits for the process to exit and reports it (where there is no pidfd).
fn wait_loop(weak: &Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let Link::Process(p) = &inner.link else {
            return;
        };
        let exited = !matches!(p.child.lock().try_wait(), Ok(None));
        if exited {
            inner.exited();
            return;
        }
        drop(inner);
        thread::sleep(Duration::from_millis(5));
    }
}

struct ThreadOutbox {
    inner: Weak<Inner>,
}

impl Outbox for ThreadOutbox {
    fn send(&self, message: FromWorker) -> Result<(), ProtocolError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(ProtocolError::Io(std::io::Error::other(
                "parent handle dropped",
            )));
        };
        dispatch(&inner, message);
        Ok(())
    }
}

fn start_thread(name: String) -> Result<Worker, WorkerError> {
    let (tx, rx) = channel::unbounded::<ToWorker>();
    let (messages, inbox) = channel::unbounded::<Vec<u8>>();
    let (answers, answers_rx) = channel::unbounded();
    let stop = StopToken::new();
    let inner = Arc::new(Inner::new(
        name.clone(),
        Backend::Thread,
        std::process::id(),
        Link::Thread {
            tx: Mutex::new(Some(tx)),
            messages,
            answers: Mutex::new(Some(answers)),
            stop: stop.clone(),
        },
    ));
    let outbox: Arc<dyn Outbox> = Arc::new(ThreadOutbox {
        inner: Arc::downgrade(&inner),
    });
    let weak = Arc::downgrade(&inner);
    thread::Builder::new()
        .name(format!("sk-worker:{name}"))
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                serve_thread(&rx, inbox, answers_rx, outbox, &stop)
            }));
            if let Some(inner) = weak.upgrade() {
                inner.record(match served {
                    Ok(ServeEnd::Stopped | ServeEnd::ParentGone) => Exit::Normal,
                    Ok(ServeEnd::Protocol(e)) => Exit::Failed(format!("protocol error: {e}")),
                    Err(_) => Exit::Failed("the worker thread panicked".to_owned()),
                });
                inner.settle();
            }
        })
        .map_err(|source| WorkerError::Spawn {
            worker: name,
            source,
        })?;
    Ok(Worker { inner })
}

impl Drop for Inner {
    fn drop(&mut self) {
        match &self.link {
            Link::Process(p) => {
                if let Ok(hub) = hub() {
                    hub.forget(&p.tokens.lock(), p.relay.fd());
                }
                let _ = self.write(&ToWorker::Stop);
                let mut child = p.child.lock();
                // No grace on the I/O hub's thread (rarely the last holder):
                // it must not hold up every other worker's I/O.
                let grace = if thread::current().name() == Some(crate::hub::THREAD_NAME) {
                    Duration::ZERO
                } else {
                    Duration::from_millis(500)
                };
                let deadline = Instant::now() + grace;
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
            Link::Thread { tx, .. } => {
                tx.lock().take();
            }
        }
    }
}
