//! The process backend: this binary started again as a worker, its
//! channel a socket pair of length-prefixed frames (two, one a direction,
//! where the worker's started-call mark carries the second; see `start`).
//!
//! Nobody owns a thread per worker: the caller waiting for a reply reads
//! the channel itself (see `wire/relay.rs`); the I/O hub reads it between
//! calls, forwards the worker's output, learns of its exit through a pidfd
//! and checks that it keeps beating. A dropped worker is asked to stop and
//! ended by the reaper after a short grace, without holding up whoever
//! dropped it.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;
use parking_lot::Mutex;
use sk_core::{Args, Encoding, SkFunction};
use sk_reg::GlobalStorage;

use super::link::Link;
use super::mailbox::MailReceiver;
use super::{CallEvent, EXIT_REPORT_LIMIT, Shared, died, dispatch, settle};
use crate::backend::Backend;
use crate::error::{ProtocolError, WorkerError};
use crate::hub::{Arm, Watched, hub};
use crate::mark::StartedMark;
use crate::spawn::spawn_worker;
use crate::vocab::Exit;
use crate::wire::{
    CallRef, DEFAULT_MAX_FRAME, Ended, FromWorker, Relay, Router, StorageOp, ToWorker, Waited,
    send_frame, with_frame,
};

/// How long a new worker process has to say it is ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A worker process sends a frame (a heartbeat, when nothing else) at
/// least every 250 ms from the moment it starts; a channel silent this
/// long means the worker is lost (frozen, or not a worker at all).
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// Said of a worker process that never became ready.
const INIT_HINT: &str = " (does the program call `suitkaise::init()` first thing in `main`, \
     or `sk_process::worker_test!()` in a test binary?)";

/// How long a dropped worker has to stop by itself before it is killed.
const DROP_GRACE: Duration = Duration::from_millis(500);

/// The parent's end of a worker process.
pub(super) struct ProcessLink {
    shared: Shared,
    writer: Mutex<UnixStream>,
    /// The same socket, for shutting its reading side while a reader may
    /// be blocked on it.
    control: UnixStream,
    child: Mutex<Option<Child>>,
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
    /// The hub's entries for this worker (its channel, its exit, its
    /// doorbell).
    tokens: Mutex<Vec<u64>>,
    /// With a doorbell: the calls sent whose end has not been read (see
    /// [`Arm::must_watch`]).
    calls_out: Option<Arc<AtomicU64>>,
}

impl ProcessLink {
    /// Writes one message; the number of frames written so far, this one
    /// included.
    fn write(&self, message: &impl serde::Serialize) -> Result<u64, ProtocolError> {
        with_frame(message, DEFAULT_MAX_FRAME, |frame| {
            let writer = self.writer.lock();
            let sent = send_frame(&writer, frame);
            if let Err(ProtocolError::Io(e)) = &sent {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    // Stalled in the middle of a frame: the channel is shut
                    // (see `send_frame`); so is the worker.
                    self.fail(format!("protocol error: {e}"));
                }
            }
            sent.map(|()| self.sent.fetch_add(1, Ordering::Relaxed) + 1)
        })?
    }

    /// [`write`](Self::write) as [`Link::send`] reports it.
    fn write_message(&self, message: &impl serde::Serialize) -> Result<u64, WorkerError> {
        self.write(message).map_err(|e| match e {
            ProtocolError::Malformed(source) => WorkerError::Encode {
                worker: self.shared.name.clone(),
                source,
            },
            other => self.shared.protocol(other),
        })
    }

    /// Gives up on the worker: records `why` and kills its process.
    fn fail(&self, why: String) {
        self.shared.record(Exit::Failed(why));
        self.signal_kill();
    }

    fn signal_kill(&self) {
        if let Some(child) = self.child.lock().as_mut() {
            let _ = child.kill();
        }
    }
}

impl Router<FromWorker> for ProcessLink {
    fn route(&self, message: FromWorker) {
        // Every frame says the worker is alive (it skips heartbeats while
        // other frames flow).
        self.shared.last_heard.mark();
        if let (FromWorker::Done { .. }, Some(out)) = (&message, &self.calls_out) {
            // Before the call's caller can step down as the reader.
            let _ = out.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
        dispatch(self, message);
    }

    fn closed(&self, broken: Option<&ProtocolError>) {
        if let Some(e) = broken {
            self.fail(format!("protocol error: {}", sk_core::error_chain(e)));
        }
        settle(self);
    }
}

impl Watched for ProcessLink {
    fn readable(&self) {
        self.relay.drain(self, true);
    }

    fn rung(&self) {
        self.relay.rung(self);
    }

    fn exited(&self) {
        let status = match self.child.lock().as_mut() {
            Some(child) => child.try_wait(),
            None => return,
        };
        match status {
            Ok(Some(status)) => self.shared.record(Exit::of(status)),
            Ok(None) => return,
            Err(e) => self
                .shared
                .record(Exit::Failed(format!("cannot wait for the process: {e}"))),
        }
        self.reaped.store(true, Ordering::Release);
        // Whatever it wrote before it died is read, then end of file — even
        // if a descendant still holds its end of the channel.
        let _ = self.control.shutdown(std::net::Shutdown::Read);
        self.relay.drain(self, true);
        settle(self);
    }

    fn sweep(&self, now: Instant) {
        let shared = &self.shared;
        if !shared.alive.load(Ordering::Acquire) || shared.cause.lock().is_some() {
            return;
        }
        let ready = self.ready.load(Ordering::Acquire);
        if !ready && now.saturating_duration_since(self.started) > READY_TIMEOUT {
            self.fail(format!("not ready within {READY_TIMEOUT:?}{INIT_HINT}"));
            return;
        }
        // The worker beats from its first moments (see `child.rs`); a
        // frame it has begun and not finished does not count.
        let last = shared.last_heard.at();
        if now.saturating_duration_since(last) > SILENCE_LIMIT {
            let hint = if ready { "" } else { INIT_HINT };
            self.fail(format!("no heartbeat for {SILENCE_LIMIT:?}{hint}"));
        }
    }
}

impl Link for ProcessLink {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn send(&self, message: ToWorker) -> Result<u64, WorkerError> {
        self.write_message(&message)
    }

    fn send_call(
        &self,
        id: u64,
        function: &SkFunction,
        extra: &Args,
        output: Encoding,
    ) -> Result<u64, WorkerError> {
        // Counted before it can start: the worker does not ring for what
        // it sends inside a call.
        if let Some(out) = &self.calls_out {
            out.fetch_add(1, Ordering::SeqCst);
        }
        let sent = self.write_message(&CallRef {
            id,
            function,
            extra,
            output,
        });
        if sent.is_err() {
            if let Some(out) = &self.calls_out {
                out.fetch_sub(1, Ordering::SeqCst);
            }
        }
        sent
    }

    fn watch(&self) {
        self.relay.watch();
    }

    fn send_raw(&self, bytes: &[u8]) -> Result<(), WorkerError> {
        send_frame(&self.writer.lock(), bytes).map_err(|e| self.shared.protocol(e))
    }

    fn await_ready(&self, timeout: Duration) -> Result<(), WorkerError> {
        let deadline = Instant::now() + timeout;
        let waited = self.relay.wait(self, Some(deadline), || {
            if self.ready.load(Ordering::Acquire) {
                Some(true)
            } else {
                self.shared.exit.lock().is_some().then_some(false)
            }
        });
        match waited {
            Waited::Got(true) => Ok(()),
            Waited::Got(false) => Err(died(self)),
            Waited::TimedOut => Err(WorkerError::NotReady {
                worker: self.shared.name.clone(),
                after: timeout,
            }),
            Waited::Closed => {
                self.shared.wait_exit(EXIT_REPORT_LIMIT);
                Err(died(self))
            }
        }
    }

    fn lead(&self) -> bool {
        self.relay.try_lead()
    }

    fn unlead(&self) {
        self.relay
            .wait_leading(self, Some(Instant::now()), || None::<()>);
    }

    fn next_event(
        &self,
        events: &MailReceiver,
        deadline: Option<Instant>,
        leading: bool,
    ) -> Result<CallEvent, RecvTimeoutError> {
        let ready = || events.try_recv();
        let waited = if leading {
            self.relay.wait_leading(self, deadline, ready)
        } else {
            self.relay.wait(self, deadline, ready)
        };
        match waited {
            Waited::Got(event) => Ok(event),
            Waited::TimedOut => Err(RecvTimeoutError::Timeout),
            // The channel ended: the report of the exit settles it.
            Waited::Closed => events.recv_timeout(EXIT_REPORT_LIMIT),
        }
    }

    fn next_message(&self, deadline: Instant) -> Option<Vec<u8>> {
        let inbox = &self.shared.messages.1;
        match self
            .relay
            .wait(self, Some(deadline), || inbox.try_recv().ok())
        {
            Waited::Got(bytes) => Some(bytes),
            Waited::TimedOut | Waited::Closed => None,
        }
    }

    /// SIGKILL; the hub reaps the process and reports how it ended.
    fn kill(&self) {
        // Dead from now on for every caller.
        self.shared.alive.store(false, Ordering::Release);
        self.signal_kill();
    }

    fn drained(&self) -> bool {
        // Reaped (its output forwarded) and its channel read to the end.
        self.reaped.load(Ordering::Acquire) && self.relay.ended().is_some()
    }

    fn settled(&self) {
        self.relay.wake_all();
    }

    /// The started mark, where there is one, is the worker's own word.
    /// Without it: the worker ended before it was ready, or left bytes of
    /// ours unread while this call was the last thing sent.
    fn never_started(&self, id: u64, sent: u64) -> bool {
        match &self.mark {
            Some(mark) => mark.get() < id,
            None => {
                !self.ready.load(Ordering::Acquire)
                    || matches!(self.relay.ended(), Some(Ended::Reset))
                        && self.sent.load(Ordering::Relaxed) == sent
            }
        }
    }

    fn missing_init(&self) -> bool {
        self.missing_init.load(Ordering::Acquire)
    }

    fn on_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn on_missing_init(&self) {
        self.missing_init.store(true, Ordering::Release);
        self.fail("its program does not call `suitkaise::init()` first thing".to_owned());
    }

    fn host_storage(&self, id: u64, op: StorageOp) {
        let reply = ToWorker::Storage {
            id,
            reply: super::child::host_storage(&self.storage, op),
        };
        let _ = self.write(&reply);
    }
}

/// Starts a worker process named `name`, hosting its global storage in
/// `storage`.
/// The environment variable that, set to `watched`, has worker processes
/// started afterwards talk over one socket that the I/O hub watches
/// whenever no thread reads it, with no doorbell and no socket of their
/// own for calls: the plain channel every worker falls back to where
/// those cannot be made (slower per call; a switch for diagnosis, and the
/// way the test suite runs that fallback).
pub(crate) const CHANNEL_ENV: &str = "SK_WORKER_CHANNEL";

/// Whether [`CHANNEL_ENV`] asks for the watched channel (read once).
fn watched_channel() -> bool {
    static WATCHED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var(CHANNEL_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("watched"))
    });
    *WATCHED
}

pub(super) fn start(name: String, storage: GlobalStorage) -> Result<Arc<dyn Link>, WorkerError> {
    if let Some(refused) = super::child::missing_init(&name) {
        return Err(refused);
    }
    let spawn_error = |source| WorkerError::Spawn {
        worker: name.clone(),
        source,
    };
    let hub = hub().map_err(spawn_error)?;
    // Without a mark, the worker's end says less about which calls it
    // started (see `never_started`), but it works the same.
    let mark = StartedMark::new().ok();
    // Without a doorbell (no mark to hand it over with, no eventfd, or
    // `SK_WORKER_CHANNEL=watched`), the hub watches the socket whenever no
    // thread reads it.
    let doorbell = mark.as_ref().filter(|_| !watched_channel()).and_then(|_| {
        rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok()
    });
    // With a doorbell, calls go to the worker on a socket of their own,
    // the channel carrying only what it sends: neither side's wait for
    // input is then woken by the other taking in what it sent, so both
    // wait in `recv` itself (see `Recv`). The worker's end goes with the
    // mark.
    let calls = doorbell.as_ref().and_then(|_| UnixStream::pair().ok());
    let mut spawned = spawn_worker(&name, mark.is_some()).map_err(spawn_error)?;
    if let Some(mark) = &mark {
        let extra: Vec<_> = doorbell
            .iter()
            .map(AsFd::as_fd)
            .chain(calls.iter().map(|(_, theirs)| theirs.as_fd()))
            .collect();
        if mark.hand_over(&spawned.channel, &extra).is_err() {
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
    let calls_out = doorbell.as_ref().map(|_| Arc::new(AtomicU64::new(0)));
    let one_way = calls.is_some();
    let relay = spawned.channel.try_clone().map(|reader| {
        let relay = Relay::new(
            reader,
            Some(Box::new(Arm {
                hub,
                token: channel_token,
                calls_out: calls_out.clone(),
            })),
        );
        if one_way { relay.one_way() } else { relay }
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
    let control = match spawned.channel.try_clone() {
        Ok(control) => control,
        Err(e) => {
            let _ = spawned.child.kill();
            let _ = spawned.child.wait();
            return Err(spawn_error(e));
        }
    };
    // The parent's copy of the worker's end is closed here, so a write
    // to a worker that died fails.
    let writer = match calls {
        Some((ours, _theirs)) => ours,
        None => spawned.channel,
    };
    let link = Arc::new(ProcessLink {
        shared: Shared::new(name.clone(), Backend::Process, pid),
        writer: Mutex::new(writer),
        control,
        child: Mutex::new(Some(spawned.child)),
        relay,
        storage,
        ready: AtomicBool::new(false),
        mark,
        sent: AtomicU64::new(0),
        reaped: AtomicBool::new(false),
        started: Instant::now(),
        missing_init: AtomicBool::new(false),
        tokens: Mutex::new(Vec::new()),
        calls_out,
    });
    let watched: Weak<dyn Watched> = Arc::downgrade(&link) as Weak<dyn Watched>;
    let registered = (|| -> std::io::Result<()> {
        // Recorded as they are made, so the handle's drop forgets them.
        let tokens = &link.tokens;
        hub.watch_channel(channel_token, channel_fd, watched.clone())?;
        tokens.lock().push(channel_token);
        if let Some(bell) = doorbell {
            tokens
                .lock()
                .push(hub.watch_doorbell(bell, watched.clone())?);
        }
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
                let weak = Arc::downgrade(&link);
                std::thread::Builder::new()
                    .name(format!("sk-wait:{name}"))
                    .spawn(move || wait_for_exit(&weak, pid))?;
            }
        }
        Ok(())
    })();
    match registered {
        Ok(()) => Ok(link),
        Err(source) => {
            link.kill();
            Err(WorkerError::Spawn {
                worker: name,
                source,
            })
        }
    }
}

/// Waits for process `pid` to exit and reports it (where there is no
/// pidfd): blocks until it has exited, leaving it to be reaped by the
/// report.
fn wait_for_exit(weak: &Weak<ProcessLink>, pid: u32) {
    let _ = crate::sys::wait_exited(pid);
    if let Some(link) = weak.upgrade() {
        link.exited();
    }
}

impl Drop for ProcessLink {
    fn drop(&mut self) {
        if let Ok(hub) = hub() {
            hub.forget(&self.tokens.lock(), self.relay.fd());
        }
        let _ = self.write(&ToWorker::Stop);
        if let Some(child) = self.child.lock().take() {
            // No grace on the I/O hub's thread (rarely the last holder):
            // it must not hold up every other worker's I/O.
            let grace = if std::thread::current().name() == Some(crate::hub::THREAD_NAME) {
                Duration::ZERO
            } else {
                DROP_GRACE
            };
            crate::reaper::reap(child, grace);
        }
    }
}
