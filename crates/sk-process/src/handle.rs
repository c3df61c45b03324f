//! [`Worker`]: the parent's handle to one worker, a process or a thread.
//!
//! Calls go out as frames and come back as [`Value`]s. Nothing is lost:
//! every call ends with its result or a typed error — the worker failed
//! the call, it timed out (the process is killed), it died with the call in
//! hand, or its channel carried bad data (the worker is killed and
//! reported, so a supervisor can replace it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
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
use crate::frame::{DEFAULT_MAX_FRAME, FrameReader, encode_frame, write_frame};
use crate::protocol::{FromWorker, ToWorker};
use crate::spawn::spawn_worker;
use crate::worker::{Outbox, ServeEnd, serve};

/// How long a new worker process has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A worker process sends a heartbeat every 250 ms; a channel silent this
/// long (or stuck inside a frame this long) means the worker is lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// How a worker ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with status 0 (or its thread returned) — a clean stop.
    Normal,
    /// It exited with a non-zero status.
    Code(i32),
    /// It was killed by a signal (e.g. by a timeout, or from outside).
    Signal(i32),
    /// Its thread panicked, or its channel carried bad data.
    Failed(String),
}

impl Exit {
    /// Whether the worker ended cleanly.
    pub fn is_normal(&self) -> bool {
        matches!(self, Exit::Normal)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Normal => f.write_str("exited normally"),
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

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

enum Link {
    Process {
        writer: Mutex<UnixStream>,
        child: Mutex<Child>,
    },
    Thread {
        tx: Mutex<Option<Sender<ToWorker>>>,
        stop: StopToken,
    },
}

struct Inner {
    name: String,
    backend: Backend,
    pid: u32,
    link: Link,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, (String, Sender<Reply>)>>,
    alive: AtomicBool,
    exit: Mutex<Option<Exit>>,
    last_heartbeat: Mutex<Instant>,
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
            exit: Mutex::new(None),
            last_heartbeat: Mutex::new(Instant::now()),
            watchers: Mutex::new(Vec::new()),
            messages: channel::unbounded(),
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
    rx: Receiver<Reply>,
}

impl Worker {
    /// Starts a worker named `name` on `backend`; worker processes host
    /// their global storage in `storage` (this process's, by default).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Spawn`] when it cannot be started,
    /// [`WorkerError::NotReady`] when a process does not report ready.
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
        let name = name.into();
        match backend {
            Backend::Process => spawn_process(name, storage),
            Backend::Thread => spawn_thread(name),
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

    /// How the worker ended, once it has.
    pub fn exit(&self) -> Option<Exit> {
        self.inner.exit.lock().clone()
    }

    /// When the worker was last heard from.
    pub fn last_heartbeat(&self) -> Instant {
        *self.inner.last_heartbeat.lock()
    }

    /// Receives a [`WorkerEvent`] when the worker ends.
    pub fn watch(&self, events: Sender<WorkerEvent>) {
        match self.exit() {
            Some(exit) => {
                let _ = events.send(self.event(exit));
            }
            None => self.inner.watchers.lock().push(events),
        }
    }

    fn event(&self, exit: Exit) -> WorkerEvent {
        WorkerEvent {
            worker: self.inner.name.clone(),
            pid: self.inner.pid,
            exit,
        }
    }

    /// Sends a call of `function` (with `extra` arguments) without waiting.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Closed`] when the worker has ended,
    /// [`WorkerError::Encode`] when the call cannot be sent.
    pub fn submit(&self, function: &SkFunction, extra: &Args) -> Result<PendingCall, WorkerError> {
        if !self.is_alive() {
            return Err(self.closed());
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::bounded(1);
        self.inner
            .pending
            .lock()
            .insert(id, (function.name().to_owned(), tx));
        let message = ToWorker::Call {
            id,
            function: function.clone(),
            extra: extra.clone(),
        };
        if let Err(e) = self.send(message) {
            self.inner.pending.lock().remove(&id);
            return Err(e);
        }
        // The worker may have died between the check and the insert; its
        // death fails every pending call, so re-check.
        if !self.is_alive() {
            self.fail_pending_one(id);
        }
        Ok(PendingCall {
            worker: self.clone(),
            id,
            function: function.name().to_owned(),
            rx,
        })
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
        self.submit(function, extra)?.wait(timeout)
    }

    fn send(&self, message: ToWorker) -> Result<(), WorkerError> {
        match &self.inner.link {
            Link::Process { writer, .. } => {
                let frame = encode_frame(&message, DEFAULT_MAX_FRAME).map_err(|e| match e {
                    ProtocolError::Malformed(source) => WorkerError::Encode {
                        worker: self.inner.name.clone(),
                        source,
                    },
                    other => self.protocol(other),
                })?;
                write_frame(&mut *writer.lock(), &frame).map_err(|e| self.protocol(e))
            }
            Link::Thread { tx, .. } => match tx.lock().as_ref() {
                Some(tx) => tx.send(message).map_err(|_| self.closed()),
                None => Err(self.closed()),
            },
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
        self.send(ToWorker::Message { bytes })
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
        match self.inner.messages.1.recv_timeout(timeout) {
            Ok(bytes) => sk_cereal::Internal::decode(&bytes)
                .map(Some)
                .map_err(|e| self.protocol(ProtocolError::Malformed(e))),
            Err(_) => Ok(None),
        }
    }

    /// Writes raw bytes to a process worker's channel. Only for tests of
    /// the worker's handling of bad input.
    #[doc(hidden)]
    pub fn __send_raw(&self, bytes: &[u8]) -> Result<(), WorkerError> {
        match &self.inner.link {
            Link::Process { writer, .. } => {
                let mut w = writer.lock();
                w.write_all(bytes)
                    .and_then(|()| w.flush())
                    .map_err(|e| self.protocol(ProtocolError::Io(e)))
            }
            Link::Thread { .. } => Err(self.closed()),
        }
    }

    /// Asks the worker to finish its current call and exit; kills a process
    /// that has not exited after `grace`.
    pub fn stop(&self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        let _ = self.send(ToWorker::Stop);
        if let Link::Thread { tx, .. } = &self.inner.link {
            tx.lock().take();
        }
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if self.is_alive() {
            self.kill();
        }
    }

    /// Ends the worker now: a process gets SIGKILL; a thread worker has its
    /// stop token set and is abandoned. Calls in hand fail with
    /// [`WorkerError::Died`].
    pub fn kill(&self) {
        match &self.inner.link {
            Link::Process { child, .. } => {
                // Dead from now on for every caller; the exit watcher reaps
                // the process and reports how it ended.
                self.inner.alive.store(false, Ordering::Release);
                let _ = child.lock().kill();
            }
            Link::Thread { tx, stop } => {
                // Record the kill first: closing the channel wakes the
                // thread, which would otherwise report a normal exit.
                finish(&self.inner, Exit::Signal(libc::SIGKILL));
                stop.stop();
                tx.lock().take();
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

    fn fail_pending_one(&self, id: u64) {
        if let Some((_, tx)) = self.inner.pending.lock().remove(&id) {
            let _ = tx.send(Err(died(&self.inner)));
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
        let received = match timeout {
            Some(limit) => self.rx.recv_timeout(limit),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                self.worker.inner.pending.lock().remove(&self.id);
                self.worker.kill();
                Err(WorkerError::TimedOut {
                    worker: self.worker.inner.name.clone(),
                    function: self.function,
                    after: timeout.unwrap_or_default(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(died(&self.worker.inner)),
        }
    }

    /// The worker the call went to.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }
}

fn died(inner: &Inner) -> WorkerError {
    WorkerError::Died {
        worker: inner.name.clone(),
        pid: inner.pid,
        status: inner
            .exit
            .lock()
            .as_ref()
            .map_or_else(|| "its channel closed".to_owned(), ToString::to_string),
    }
}

/// Marks the worker ended: fails every pending call, tells the watchers.
fn finish(inner: &Inner, exit: Exit) {
    {
        let mut slot = inner.exit.lock();
        if slot.is_some() {
            return;
        }
        *slot = Some(exit.clone());
    }
    inner.alive.store(false, Ordering::Release);
    let pending: Vec<_> = inner.pending.lock().drain().collect();
    for (_, (_, tx)) in pending {
        let _ = tx.send(Err(died(inner)));
    }
    let event = WorkerEvent {
        worker: inner.name.clone(),
        pid: inner.pid,
        exit,
    };
    for watcher in inner.watchers.lock().drain(..) {
        let _ = watcher.send(event.clone());
    }
}

/// Routes a worker's message to whoever waits for it.
fn dispatch(inner: &Inner, message: FromWorker, storage: &GlobalStorage, reply: impl Fn(ToWorker)) {
    match message {
        FromWorker::Done { id, outcome } => {
            if let Some((_, tx)) = inner.pending.lock().remove(&id) {
                let result = outcome
                    .map(|e| Value::from_encoded(e.type_name, e.bytes))
                    .map_err(|f| WorkerError::Remote {
                        worker: inner.name.clone(),
                        message: f.message,
                        retryable: f.retryable,
                    });
                let _ = tx.send(result);
            }
        }
        FromWorker::Heartbeat | FromWorker::Ready { .. } => {
            *inner.last_heartbeat.lock() = Instant::now();
        }
        FromWorker::Storage { id, op } => {
            reply(ToWorker::Storage {
                id,
                reply: crate::worker::host_storage(storage, op),
            });
        }
        FromWorker::Message { bytes } => {
            let _ = inner.messages.0.send(bytes);
        }
    }
}

fn spawn_process(name: String, storage: GlobalStorage) -> Result<Worker, WorkerError> {
    let spawn_error = |source| WorkerError::Spawn {
        worker: name.clone(),
        source,
    };
    let mut spawned = spawn_worker(&name).map_err(spawn_error)?;
    let pid = spawned.child.id();
    let stdout = spawned.child.stdout.take();
    let stderr = spawned.child.stderr.take();
    let reader = spawned.channel.try_clone().map_err(spawn_error)?;
    let inner = Arc::new(Inner::new(
        name.clone(),
        Backend::Process,
        pid,
        Link::Process {
            writer: Mutex::new(spawned.channel),
            child: Mutex::new(spawned.child),
        },
    ));
    if let Some(out) = stdout {
        forward(format!("sk-out:{name}"), out, name.clone(), false);
    }
    if let Some(err) = stderr {
        forward(format!("sk-err:{name}"), err, name.clone(), true);
    }
    // Wait for Ready on this thread, then hand the channel to a reader.
    let mut frames = FrameReader::new(reader, DEFAULT_MAX_FRAME);
    let ready = wait_ready(&mut frames, READY_TIMEOUT);
    let worker = Worker {
        inner: Arc::clone(&inner),
    };
    if let Err(e) = ready {
        worker.kill();
        reap(&inner);
        return Err(match e {
            ReadyError::Timeout => WorkerError::NotReady {
                worker: name,
                after: READY_TIMEOUT,
            },
            ReadyError::Protocol(source) => WorkerError::Protocol {
                worker: name,
                source,
            },
        });
    }
    let _ = frames.get_ref().set_read_timeout(Some(SILENCE_LIMIT));
    let weak = Arc::downgrade(&inner);
    let spawned_reader = thread::Builder::new()
        .name(format!("sk-read:{name}"))
        .spawn(move || read_loop(weak, frames, storage));
    let spawned_waiter = {
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name(format!("sk-wait:{name}"))
            .spawn(move || wait_loop(weak))
    };
    if let Err(e) = spawned_reader.and(spawned_waiter) {
        worker.kill();
        return Err(WorkerError::Spawn {
            worker: name,
            source: e,
        });
    }
    Ok(worker)
}

enum ReadyError {
    Timeout,
    Protocol(ProtocolError),
}

/// Reads the first frame with a deadline (the socket's read timeout).
fn wait_ready(frames: &mut FrameReader<UnixStream>, limit: Duration) -> Result<(), ReadyError> {
    let _ = frames.get_ref().set_read_timeout(Some(limit));
    let first = frames.read::<FromWorker>();
    let _ = frames.get_ref().set_read_timeout(None);
    match first {
        Ok(Some(FromWorker::Ready { .. })) => Ok(()),
        Ok(Some(_)) => Err(ReadyError::Protocol(ProtocolError::Unexpected(
            "a message before Ready",
        ))),
        Ok(None) => Err(ReadyError::Protocol(ProtocolError::Io(
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the worker exited before it was ready",
            ),
        ))),
        Err(ProtocolError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ReadyError::Timeout)
        }
        Err(e) => Err(ReadyError::Protocol(e)),
    }
}

/// Reads the worker's frames until the channel ends or breaks.
fn read_loop(weak: Weak<Inner>, mut frames: FrameReader<UnixStream>, storage: GlobalStorage) {
    loop {
        let next = frames.read::<FromWorker>();
        let Some(inner) = weak.upgrade() else { return };
        match next {
            Ok(Some(message)) => {
                let writer_inner = Arc::clone(&inner);
                dispatch(&inner, message, &storage, move |reply| {
                    if let Link::Process { writer, .. } = &writer_inner.link {
                        if let Ok(frame) = encode_frame(&reply, DEFAULT_MAX_FRAME) {
                            let _ = write_frame(&mut *writer.lock(), &frame);
                        }
                    }
                });
            }
            // End of file: the process is exiting; the waiter reports how.
            Ok(None) => return,
            Err(e) => {
                // Bad data, or silence: the worker cannot be trusted any more.
                let why = match &e {
                    ProtocolError::Io(io)
                        if matches!(
                            io.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        format!("no heartbeat for {SILENCE_LIMIT:?}")
                    }
                    _ => format!("protocol error: {}", sk_core::error_chain(&e)),
                };
                finish(&inner, Exit::Failed(why));
                if let Link::Process { child, .. } = &inner.link {
                    let _ = child.lock().kill();
                }
                reap(&inner);
                return;
            }
        }
    }
}

/// Waits for the process to exit and reports how.
fn wait_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let status = match &inner.link {
            Link::Process { child, .. } => child.lock().try_wait(),
            Link::Thread { .. } => return,
        };
        match status {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                let exit = match (status.code(), status.signal()) {
                    (Some(0), _) => Exit::Normal,
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Failed(status.to_string()),
                };
                finish(&inner, exit);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                finish(
                    &inner,
                    Exit::Failed(format!("cannot wait for the process: {e}")),
                );
                return;
            }
        }
        drop(inner);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps an ended process so it does not linger as a zombie.
fn reap(inner: &Inner) {
    if let Link::Process { child, .. } = &inner.link {
        let _ = child.lock().wait();
    }
}

/// Forwards a worker's output line by line, prefixed with its name.
fn forward(thread_name: String, stream: impl Read + Send + 'static, worker: String, err: bool) {
    let _ = thread::Builder::new().name(thread_name).spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if is_harness_noise(&line) {
                continue;
            }
            if err {
                eprintln!("[{worker}] {line}");
            } else {
                println!("[{worker}] {line}");
            }
        }
    });
}

/// Lines the test harness prints when a test binary runs as a worker.
fn is_harness_noise(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("running 1 test")
        || line.starts_with("test result:")
        || line.trim_start_matches('.').is_empty()
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
        // Thread workers share this process's storage; they send no
        // storage operations.
        dispatch(&inner, message, GlobalStorage::global(), |_| {});
        Ok(())
    }
}

fn spawn_thread(name: String) -> Result<Worker, WorkerError> {
    let (tx, rx) = channel::unbounded::<ToWorker>();
    let stop = StopToken::new();
    let inner = Arc::new(Inner::new(
        name.clone(),
        Backend::Thread,
        std::process::id(),
        Link::Thread {
            tx: Mutex::new(Some(tx)),
            stop: stop.clone(),
        },
    ));
    let outbox: Arc<dyn Outbox> = Arc::new(ThreadOutbox {
        inner: Arc::downgrade(&inner),
    });
    let weak = Arc::downgrade(&inner);
    let thread_name = name.clone();
    thread::Builder::new()
        .name(format!("sk-worker:{name}"))
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                serve(
                    &thread_name,
                    || Ok(rx.recv().ok()),
                    outbox,
                    None,
                    Some(stop),
                )
            }));
            if let Some(inner) = weak.upgrade() {
                let exit = match served {
                    Ok(ServeEnd::Stopped | ServeEnd::ParentGone) => Exit::Normal,
                    Ok(ServeEnd::Protocol(e)) => Exit::Failed(format!("protocol error: {e}")),
                    Err(_) => Exit::Failed("the worker thread panicked".to_owned()),
                };
                finish(&inner, exit);
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
            Link::Process { writer, child } => {
                if let Ok(frame) = encode_frame(&ToWorker::Stop, DEFAULT_MAX_FRAME) {
                    let _ = write_frame(&mut *writer.lock(), &frame);
                }
                let mut child = child.lock();
                let deadline = Instant::now() + Duration::from_millis(500);
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
