//! The parent's I/O hub: one thread, one epoll set, for every worker
//! process.
//!
//! It forwards each worker's stdout and stderr line by line, prefixed with
//! the worker's name; learns of exits through a pidfd per worker (drains
//! the worker's output and channel first, so nothing it said is lost);
//! reads a worker's channel whenever no waiting thread does (see
//! `relay.rs`); and checks heartbeats. So a worker costs the parent no
//! thread of its own.
//!
//! A worker process with a doorbell (an eventfd handed over with its
//! started-call mark, see `mark.rs`) rings it for every frame it sends
//! outside a call. Frames sent inside a call are read by whoever waits for
//! the call, or by the hub watching the socket while calls are out (see
//! [`Arm::must_watch`]). So a call's round trip, with its caller reading
//! the reply, costs the hub nothing: the socket need not be disarmed for
//! the call and armed again after it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::event::Timespec;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::fs::OFlags;
use rustix::process::{Pid, PidfdFlags};

use crate::wire::HubArm;

/// The hub thread's name.
pub(crate) const THREAD_NAME: &str = "sk-io";

/// How often the hub checks heartbeats.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What the hub needs from a worker.
pub(crate) trait Watched: Send + Sync {
    /// Its channel is readable and the hub's turn to read it.
    fn readable(&self);
    /// Its process has exited (its output is drained already).
    fn exited(&self);
    /// A periodic check (heartbeats).
    fn sweep(&self, now: Instant);
    /// Its doorbell rang: it sent something outside a call.
    fn rung(&self) {
        self.readable();
    }
}

enum Entry {
    Channel(Weak<dyn Watched>),
    Exit {
        worker: Weak<dyn Watched>,
        _pidfd: OwnedFd,
        outputs: Vec<u64>,
    },
    Output(Output),
    Doorbell {
        worker: Weak<dyn Watched>,
        bell: OwnedFd,
    },
}

struct Output {
    worker: String,
    stream: std::fs::File,
    err: bool,
    partial: Vec<u8>,
}

/// The hub (one per process, started on first use).
pub(crate) struct Hub {
    epoll: OwnedFd,
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

/// The process's hub.
pub(crate) fn hub() -> io::Result<&'static Hub> {
    static HUB: OnceLock<Result<&'static Hub, String>> = OnceLock::new();
    HUB.get_or_init(|| {
        let start = || -> io::Result<&'static Hub> {
            let hub: &'static Hub = Box::leak(Box::new(Hub {
                epoll: epoll::create(CreateFlags::CLOEXEC)?,
                entries: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            }));
            thread::Builder::new()
                .name(THREAD_NAME.to_owned())
                .spawn(move || hub.run())?;
            Ok(hub)
        };
        start().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(io::Error::other)
}

impl Hub {
    /// A new token for an entry.
    pub(crate) fn token(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `fd` to the epoll set under `token`, for `events`.
    fn add(&self, fd: impl AsFd, token: u64, events: EventFlags) -> io::Result<()> {
        Ok(epoll::add(
            &self.epoll,
            fd,
            EventData::new_u64(token),
            events,
        )?)
    }

    /// Sets the events `fd`, in the epoll set under `token`, is watched
    /// for (none: it stays in the set, silent).
    fn modify(&self, fd: BorrowedFd<'_>, token: u64, events: EventFlags) -> io::Result<()> {
        Ok(epoll::modify(
            &self.epoll,
            fd,
            EventData::new_u64(token),
            events,
        )?)
    }

    /// Watches a worker's channel socket under `token`, armed once.
    pub(crate) fn watch_channel(
        &self,
        token: u64,
        socket: impl AsFd,
        worker: Weak<dyn Watched>,
    ) -> io::Result<()> {
        self.entries.lock().insert(token, Entry::Channel(worker));
        let added = self.add(socket, token, EventFlags::IN | EventFlags::ONESHOT);
        if added.is_err() {
            self.entries.lock().remove(&token);
        }
        added
    }

    /// Listens to a worker's doorbell (an eventfd); its token.
    pub(crate) fn watch_doorbell(
        &self,
        bell: OwnedFd,
        worker: Weak<dyn Watched>,
    ) -> io::Result<u64> {
        set_nonblocking(&bell)?;
        let token = self.token();
        // Added under the entries' lock: the hub, locking them for the
        // first event, finds the entry.
        let mut entries = self.entries.lock();
        self.add(&bell, token, EventFlags::IN)?;
        entries.insert(token, Entry::Doorbell { worker, bell });
        Ok(token)
    }

    /// Forwards a worker's output stream line by line; its token.
    pub(crate) fn forward(&self, worker: &str, stream: OwnedFd, err: bool) -> io::Result<u64> {
        set_nonblocking(&stream)?;
        let token = self.token();
        let stream = std::fs::File::from(stream);
        // Added under the entries' lock: the hub, locking them for the
        // first event, finds the entry.
        let mut entries = self.entries.lock();
        self.add(&stream, token, EventFlags::IN)?;
        entries.insert(
            token,
            Entry::Output(Output {
                worker: worker.to_owned(),
                stream,
                err,
                partial: Vec::new(),
            }),
        );
        Ok(token)
    }

    /// Reports the exit of process `pid` to `worker`, after draining the
    /// `outputs` forwarded for it. Its token; an error when this kernel
    /// has no pidfd.
    pub(crate) fn watch_exit(
        &self,
        pid: u32,
        worker: Weak<dyn Watched>,
        outputs: Vec<u64>,
    ) -> io::Result<u64> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or(rustix::io::Errno::INVAL)?;
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())?;
        let token = self.token();
        // Added under the entries' lock: the hub, locking them for the
        // event, finds the entry.
        let mut entries = self.entries.lock();
        self.add(&pidfd, token, EventFlags::IN)?;
        entries.insert(
            token,
            Entry::Exit {
                worker,
                _pidfd: pidfd,
                outputs,
            },
        );
        Ok(token)
    }

    /// Drops the channel and exit entries under `tokens` (a worker handle
    /// going away). Output goes on being forwarded until it ends.
    pub(crate) fn forget(&self, tokens: &[u64], channel: impl AsFd) {
        let mut entries = self.entries.lock();
        for token in tokens {
            match entries.get(token) {
                Some(Entry::Channel(_)) => {
                    let _ = epoll::delete(&self.epoll, &channel);
                }
                // The worker holds the same eventfd: closing ours would
                // leave it in the set, ready for good after a last ring.
                Some(Entry::Doorbell { bell, .. }) => {
                    let _ = epoll::delete(&self.epoll, bell);
                }
                // Closing the pidfd takes it out of the epoll set (nobody
                // else holds it).
                Some(Entry::Exit { .. }) => {}
                // Output entries outlive the worker's (they are read to
                // their end).
                Some(Entry::Output(_)) | None => continue,
            }
            entries.remove(token);
        }
    }

    fn run(&self) {
        let mut events = [Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        }; 64];
        // Never fails: a quarter second fits any `Timespec`.
        let timeout = Timespec::try_from(SWEEP_EVERY).unwrap_or_default();
        let mut last_sweep = Instant::now();
        loop {
            // An interrupted or failed wait reads as no events.
            let n = epoll::wait(&self.epoll, &mut events, Some(&timeout)).unwrap_or(0);
            for event in &events[..n] {
                self.handle(event.data.u64());
            }
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP_EVERY {
                last_sweep = now;
                let watched: Vec<_> = self
                    .entries
                    .lock()
                    .values()
                    .filter_map(|e| match e {
                        Entry::Channel(w) => w.upgrade(),
                        _ => None,
                    })
                    .collect();
                for worker in watched {
                    worker.sweep(now);
                    release(worker);
                }
            }
        }
    }

    fn handle(&self, token: u64) {
        enum Action {
            Read(Arc<dyn Watched>),
            Rung(Arc<dyn Watched>),
            Exit(Weak<dyn Watched>, Vec<u64>),
            Output,
            Nothing,
        }
        let action = match self.entries.lock().get(&token) {
            Some(Entry::Channel(w)) => w.upgrade().map_or(Action::Nothing, Action::Read),
            Some(Entry::Exit {
                worker, outputs, ..
            }) => Action::Exit(worker.clone(), outputs.clone()),
            Some(Entry::Output(_)) => Action::Output,
            Some(Entry::Doorbell { worker, bell }) => {
                // Quietened before the channel is read: a ring after this
                // is heard again.
                let mut count = [0u8; 8];
                let _ = rustix::io::read(bell, &mut count);
                worker.upgrade().map_or(Action::Nothing, Action::Rung)
            }
            None => Action::Nothing,
        };
        match action {
            Action::Read(worker) => {
                worker.readable();
                release(worker);
            }
            Action::Rung(worker) => {
                worker.rung();
                release(worker);
            }
            Action::Exit(worker, outputs) => {
                for output in outputs {
                    self.pump(output);
                }
                self.entries.lock().remove(&token);
                if let Some(worker) = worker.upgrade() {
                    worker.exited();
                    release(worker);
                }
            }
            Action::Output => self.pump(token),
            Action::Nothing => {}
        }
    }

    /// Forwards what an output stream has; drops it at its end.
    fn pump(&self, token: u64) {
        let Some(Entry::Output(mut output)) = self.entries.lock().remove(&token) else {
            return;
        };
        let mut buf = [0u8; 8192];
        let open = loop {
            match output.stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => output.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(_) => break false,
            }
        };
        output.print_lines(!open);
        if open {
            self.entries.lock().insert(token, Entry::Output(output));
        }
    }
}

impl Output {
    /// Prints the complete lines (and, at the end, the rest).
    fn print_lines(&mut self, end: bool) {
        let cut = if end {
            self.partial.len()
        } else {
            self.partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut == 0 {
            return;
        }
        let text: Vec<u8> = self.partial.drain(..cut).collect();
        let text = String::from_utf8_lossy(&text);
        // Straight to the process's streams (not the test harness's
        // per-thread capture: this thread serves every worker).
        let mut out: Box<dyn Write> = if self.err {
            Box::new(io::stderr().lock())
        } else {
            Box::new(io::stdout().lock())
        };
        for line in text.lines() {
            if !is_harness_noise(line) {
                let _ = writeln!(out, "[{}] {line}", self.worker);
            }
        }
        let _ = out.flush();
    }
}

/// Drops the hub's hold on a worker — on another thread if it is the
/// last: a worker's drop stops its process, which may take a while, and
/// must not hold up every other worker's I/O. (Should another holder let
/// go between the check and the drop, the drop sees it runs on the hub
/// and kills without grace.)
fn release(worker: Arc<dyn Watched>) {
    if Arc::strong_count(&worker) == 1 {
        let _ = thread::Builder::new()
            .name("sk-drop".to_owned())
            .spawn(move || drop(worker));
    }
}

/// Lines the test harness prints when a test binary runs as a worker.
fn is_harness_noise(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("running 1 test")
        || line.starts_with("test result:")
        || line.trim_start_matches('.').is_empty()
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    Ok(rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?)
}

/// A relay's link to the hub: re-arms or disarms its socket's entry.
pub(crate) struct Arm {
    pub(crate) hub: &'static Hub,
    pub(crate) token: u64,
    /// With a doorbell: the calls sent to the worker whose end has not
    /// been read. `None`: no doorbell, the socket is always watched.
    pub(crate) calls_out: Option<Arc<AtomicU64>>,
}

impl HubArm for Arm {
    fn arm(&self, socket: BorrowedFd<'_>) {
        let _ = self
            .hub
            .modify(socket, self.token, EventFlags::IN | EventFlags::ONESHOT);
    }

    fn disarm(&self, socket: BorrowedFd<'_>) {
        let _ = self.hub.modify(socket, self.token, EventFlags::empty());
    }

    /// The worker rings for what it sends outside a call; inside one, it
    /// does not, and a call's caller may not be waiting (sent with
    /// `submit`, or its handle dropped): the socket is watched until
    /// every call sent has ended.
    fn must_watch(&self) -> bool {
        self.calls_out
            .as_ref()
            .is_none_or(|out| out.load(Ordering::SeqCst) > 0)
    }
}
