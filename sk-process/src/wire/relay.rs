//! One end of a worker channel, read by whoever is waiting for it.
//!
//! A thread that needs something from the channel (a call's reply, a
//! storage answer, the next call) does not hand the read to another
//! thread and wait to be woken: if nobody is reading, it reads the frames
//! itself, routes each one to whoever it is for, and stops once its own
//! has come (leader/follower). Threads that find a reader already at work
//! park until it routes their frame or steps down. On the parent side the
//! I/O hub (see `hub.rs`) reads whenever no thread does, so heartbeats,
//! messages and storage requests are served between calls too.
//!
//! The hub learns that there is something to read in one of two ways.
//! It can watch the socket itself (armed in its epoll), which a thread
//! taking the reader's role must undo and the thread stepping down redo:
//! two `epoll_ctl` calls a call. Or, where the worker has a doorbell (see
//! `hub.rs`), the worker rings it for each frame it sends outside a call,
//! and the socket is watched only while that does not cover everything:
//! while calls are out that no thread may be waiting for, while a frame
//! is partly read, and once after a ring came while a thread was reading.
//!
//! Reads are buffered (a frame usually costs one `recv`). A reader that
//! must wait first tries the socket without sleeping for a short while,
//! yielding its CPU between tries, as long as its peer answers quickly
//! (see `spin::Spin`); then it sleeps: on a one-way channel (a worker's
//! socket for calls, which it only reads) a reader with no deadline in
//! `recv`; otherwise, and with a deadline, in `poll`, then reading
//! without blocking, so it keeps its deadline even inside a half-arrived
//! frame (and is not woken when the peer takes in what this side sent).
//!
//! A frame that has begun must keep arriving: a peer that stops inside a
//! frame (frozen, or its header promised more bytes than it sent) would
//! otherwise have every later byte it sends, heartbeats included, read as
//! the rest of that frame. A reader that finds no new byte of it for
//! [`FRAME_STALL_LIMIT`] ends the channel as broken
//! ([`ProtocolError::Stalled`]); bytes that wait in the socket while no
//! reader is there do not count as a stall.

use std::io::BufReader;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::event::PollFlags;
use serde::de::DeserializeOwned;
use sk_cereal::Internal;

use super::frame::{DEFAULT_MAX_FRAME, FrameReader, Recv, poll_fd};
use super::spin::{Spin, spin_readable};
use crate::error::ProtocolError;

/// Where the frames a relay reads go.
pub(crate) trait Router<M>: Send + Sync {
    /// Handles one message.
    fn route(&self, message: M);
    /// The channel ended: cleanly (`None`) or with bad data.
    fn closed(&self, broken: Option<&ProtocolError>);
}

/// The outcome of [`Relay::wait`].
#[derive(Debug)]
pub(crate) enum Waited<T> {
    Got(T),
    TimedOut,
    /// The channel has ended and what was waited for did not come.
    Closed,
}

/// How the channel ended.
#[derive(Clone, Debug)]
pub(crate) enum Ended {
    Eof,
    /// The peer closed with bytes it had not read: the last frames sent
    /// to it never reached it.
    Reset,
    Broken(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Nobody,
    /// A waiting thread reads.
    Thread,
    /// The hub will read when the socket is readable (armed in its epoll).
    Hub,
    /// The hub is reading now.
    HubReading,
}

#[derive(Debug)]
struct State {
    reader: Reader,
    waiters: Vec<Thread>,
    ended: Option<Ended>,
    /// The socket was last left armed in the hub's epoll (it may have
    /// fired since).
    armed: bool,
    /// The doorbell rang while a thread was reading: whoever steps down
    /// next leaves the socket armed.
    rung: bool,
}

/// The hub's hooks for a relay it reads when no thread does.
pub(crate) trait HubArm: Send + Sync {
    /// Ask to be told when `socket` is readable (once).
    fn arm(&self, socket: BorrowedFd<'_>);
    /// Stop listening for `socket`.
    fn disarm(&self, socket: BorrowedFd<'_>);
    /// Whether the hub must watch the socket while no thread reads it;
    /// `false` only while the peer rings a doorbell for every frame that
    /// nobody is sure to read (see `hub.rs`).
    fn must_watch(&self) -> bool {
        true
    }
}

/// How long a parked follower sleeps before looking again (a safety net;
/// it is woken whenever something is routed or the reader steps down).
const PARK_SLICE: Duration = Duration::from_millis(100);

type Frames = FrameReader<BufReader<Recv>>;

/// What one read did.
enum Step {
    Routed,
    /// Nothing (more) has arrived.
    Empty,
    Ended,
}

/// How much a read takes from the socket at once.
const READ_BUFFER: usize = 64 << 10;

/// How long a frame that has begun may go without a new byte while a
/// reader waits for it.
pub(crate) const FRAME_STALL_LIMIT: Duration = Duration::from_secs(10);

/// The frame reader and when its current frame was first seen partly read.
struct Reading {
    frames: Frames,
    /// When the partly read frame last grew.
    partial_since: Option<Instant>,
    /// How many of its bytes had come then.
    partial_bytes: usize,
    stall_limit: Duration,
}

impl Reading {
    /// When the partly read frame must be whole, if there is one.
    fn stall_deadline(&self) -> Option<Instant> {
        self.partial_since.map(|since| since + self.stall_limit)
    }
}

/// The reading end of a channel carrying frames of `M`.
pub(crate) struct Relay<M> {
    /// The socket, shared with the reader in `frames`: a thread polls it
    /// and the hub registers it without taking the frame reader's lock.
    socket: Arc<UnixStream>,
    frames: Mutex<Reading>,
    state: Mutex<State>,
    waiting: AtomicUsize,
    hub: Option<Box<dyn HubArm>>,
    _message: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for Relay<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("fd", &self.socket.as_raw_fd())
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

impl<M: DeserializeOwned> Relay<M> {
    /// A relay reading `stream`. With a `hub`, the hub reads whenever no
    /// thread does; the caller registers the socket with the hub, armed.
    pub(crate) fn new(stream: UnixStream, hub: Option<Box<dyn HubArm>>) -> Self {
        let socket = Arc::new(stream);
        // The parent's side (the one with a hub) waits for replies to
        // what it sent; a worker's waits for its parent's next request.
        let recv = Recv::new(Arc::clone(&socket));
        let reader = if hub.is_some() {
            Reader::Hub
        } else {
            Reader::Nobody
        };
        Relay {
            socket,
            frames: Mutex::new(Reading {
                frames: FrameReader::new(
                    BufReader::with_capacity(READ_BUFFER, recv),
                    DEFAULT_MAX_FRAME,
                ),
                partial_since: None,
                partial_bytes: 0,
                stall_limit: FRAME_STALL_LIMIT,
            }),
            state: Mutex::new(State {
                reader,
                waiters: Vec::new(),
                ended: None,
                // The caller registers the socket armed.
                armed: hub.is_some(),
                rung: false,
            }),
            waiting: AtomicUsize::new(0),
            hub,
            _message: PhantomData,
        }
    }

    /// The same relay, for a socket that carries only what this side
    /// reads (what it sends goes on another): a reader with no deadline
    /// then waits in `recv` itself, not in `poll` and then `recv`. (The
    /// peer closing with bytes of ours unread then shows on the other
    /// socket: this relay sees it as a plain end, never
    /// [`Ended::Reset`].)
    pub(crate) fn one_way(self) -> Self {
        self.frames.lock().frames.get_mut().get_mut().one_way = true;
        self
    }

    /// The same relay with another limit for a frame to arrive whole.
    #[cfg(test)]
    fn stall_after(self, limit: Duration) -> Self {
        self.frames.lock().stall_limit = limit;
        self
    }

    /// The socket, for the hub to register (by its descriptor: the hub
    /// arms and disarms it through this relay's [`HubArm`]).
    pub(crate) fn fd(&self) -> Arc<UnixStream> {
        Arc::clone(&self.socket)
    }

    /// How the channel ended, once it has.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.state.lock().ended.clone()
    }

    /// Waits until `ready` yields (checked after every routed frame), at
    /// most until `deadline`, reading the channel when nobody else does.
    pub(crate) fn wait<T>(
        &self,
        router: &dyn Router<M>,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Waited<T> {
        loop {
            if let Some(got) = ready() {
                return Waited::Got(got);
            }
            let mut state = self.state.lock();
            if state.ended.is_some() {
                drop(state);
                return ready().map_or(Waited::Closed, Waited::Got);
            }
            match state.reader {
                Reader::Nobody | Reader::Hub => {
                    drop(state);
                    if self.try_lead() {
                        return self.wait_leading(router, deadline, ready);
                    }
                }
                Reader::Thread | Reader::HubReading => {
                    state.waiters.push(thread::current());
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                    drop(state);
                    // Pairs with the fence in `step`.
                    fence(Ordering::SeqCst);
                    let got = ready();
                    let now = Instant::now();
                    if got.is_none() && deadline.is_none_or(|d| now < d) {
                        let slice = deadline.map_or(PARK_SLICE, |d| (d - now).min(PARK_SLICE));
                        thread::park_timeout(slice);
                    }
                    self.leave_waiters();
                    if let Some(got) = got {
                        return Waited::Got(got);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return ready().map_or(Waited::TimedOut, Waited::Got);
                    }
                }
            }
        }
    }

    /// Takes the reader's role if no thread has it (taking it over from
    /// the hub). The caller must then [`wait_leading`](Self::wait_leading).
    ///
    /// Taking the role before sending a request means nothing but the
    /// blocking read is left to do once the request is out, so the peer,
    /// woken by it, finds this thread already asleep.
    pub(crate) fn try_lead(&self) -> bool {
        let mut state = self.state.lock();
        if state.ended.is_some() {
            return false;
        }
        match state.reader {
            Reader::Nobody => {
                state.reader = Reader::Thread;
                true
            }
            Reader::Hub => {
                state.reader = Reader::Thread;
                let armed = std::mem::take(&mut state.armed);
                drop(state);
                if let (true, Some(hub)) = (armed, &self.hub) {
                    hub.disarm(self.socket.as_fd());
                }
                true
            }
            Reader::Thread | Reader::HubReading => false,
        }
    }

    /// [`wait`](Self::wait) for a thread that took the reader's role with
    /// [`try_lead`](Self::try_lead); gives the role up after.
    pub(crate) fn wait_leading<T>(
        &self,
        router: &dyn Router<M>,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Waited<T> {
        let waited = self.read_until(router, deadline, &mut ready);
        self.step_down();
        waited
    }

    /// Reads and routes whatever frames have arrived, without waiting, if
    /// nobody else is reading. `from_hub`: the hub's turn (the socket was
    /// armed in its epoll); otherwise only when no reader is set.
    pub(crate) fn drain(&self, router: &dyn Router<M>, from_hub: bool) {
        {
            let mut state = self.state.lock();
            if from_hub {
                // The hub's turn came from a one-shot event: the kernel
                // has disarmed the socket (a later `watch` must arm it).
                state.armed = false;
            }
            let mine = if from_hub {
                matches!(state.reader, Reader::Hub | Reader::Nobody)
            } else {
                state.reader == Reader::Nobody
            };
            if !mine || state.ended.is_some() {
                return;
            }
            state.reader = if from_hub {
                Reader::HubReading
            } else {
                Reader::Thread
            };
        }
        let _ = self.read_until(router, Some(Instant::now()), &mut || None::<()>);
        self.step_down();
    }

    /// The peer rang the doorbell (it sent a frame nobody may be about to
    /// read): the hub reads what has come, or, if a thread is reading, has
    /// the socket watched once that thread steps down.
    pub(crate) fn rung(&self, router: &dyn Router<M>) {
        {
            let mut state = self.state.lock();
            if state.ended.is_some() {
                return;
            }
            match state.reader {
                Reader::Hub | Reader::Nobody => state.reader = Reader::HubReading,
                Reader::Thread | Reader::HubReading => {
                    state.rung = true;
                    return;
                }
            }
        }
        let _ = self.read_until(router, Some(Instant::now()), &mut || None::<()>);
        self.step_down();
    }

    /// Makes sure the hub watches the socket while no thread reads it:
    /// something went out whose answer no thread may wait for.
    pub(crate) fn watch(&self) {
        let mut state = self.state.lock();
        if state.reader != Reader::Hub || state.ended.is_some() || state.armed {
            return;
        }
        state.armed = true;
        drop(state);
        if let Some(hub) = &self.hub {
            hub.arm(self.socket.as_fd());
        }
    }

    /// Wakes every parked follower (something they wait for may be ready).
    pub(crate) fn wake_all(&self) {
        for waiter in &self.state.lock().waiters {
            waiter.unpark();
        }
    }

    fn leave_waiters(&self) {
        let me = thread::current().id();
        let mut state = self.state.lock();
        if let Some(i) = state.waiters.iter().position(|t| t.id() == me) {
            state.waiters.swap_remove(i);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The reader gives up the channel: to the hub where there is one
    /// (a parked follower, woken here, takes it back from the hub if it
    /// still needs to read), else to nobody. The socket is left armed in
    /// the hub's epoll unless the doorbell covers what may come next: a
    /// frame partly read goes on arriving without a ring.
    fn step_down(&self) {
        // Taken before the state (the order `read_until` holds them in).
        let partial = self.frames.lock().frames.partial().is_some();
        let mut state = self.state.lock();
        let to_hub = state.ended.is_none() && self.hub.is_some();
        state.reader = if to_hub { Reader::Hub } else { Reader::Nobody };
        for waiter in &state.waiters {
            waiter.unpark();
        }
        let arm = to_hub
            && (std::mem::take(&mut state.rung)
                || partial
                || self.hub.as_ref().is_some_and(|hub| hub.must_watch()));
        if arm {
            state.armed = true;
        }
        drop(state);
        if let (true, Some(hub)) = (arm, &self.hub) {
            hub.arm(self.socket.as_fd());
        }
    }

    /// The reader's loop: route frames until `ready` yields, the deadline
    /// passes (a deadline of now: read only what has arrived) or the
    /// channel ends.
    fn read_until<T>(
        &self,
        router: &dyn Router<M>,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> Option<T>,
    ) -> Waited<T> {
        let mut reading = self.frames.lock();
        loop {
            if let Some(got) = ready() {
                self.route_buffered(&mut reading, router);
                return Waited::Got(got);
            }
            let stall = reading.stall_deadline();
            // Nothing buffered: wait for the socket, in `recv` itself when
            // there is no deadline and no frame half read.
            let limit = match (deadline, stall) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let mut wait = false;
            if reading.frames.get_ref().buffer().is_empty() {
                match limit {
                    None => wait = true,
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if !left.is_zero() {
                            let spin = &mut reading.frames.get_mut().get_mut().spin;
                            match self.readable_by(d, spin) {
                                Ok(true) => {}
                                Ok(false) => continue,
                                Err(e) => {
                                    self.end(router, Some(ProtocolError::Io(e)));
                                    return ready().map_or(Waited::Closed, Waited::Got);
                                }
                            }
                        }
                    }
                }
            }
            match self.step(&mut reading, router, wait) {
                Step::Routed => {}
                Step::Ended => return ready().map_or(Waited::Closed, Waited::Got),
                Step::Empty => {
                    // Nothing new came in this read: a frame begun that
                    // has had no byte for the whole limit is stalled (not
                    // one whose bytes wait in the socket for a reader).
                    if reading
                        .stall_deadline()
                        .is_some_and(|s| Instant::now() >= s)
                    {
                        let (expected, got) = reading.frames.partial().unwrap_or_default();
                        let stalled = ProtocolError::Stalled {
                            expected,
                            got,
                            after: reading.stall_limit,
                        };
                        self.end(router, Some(stalled));
                        return ready().map_or(Waited::Closed, Waited::Got);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Waited::TimedOut;
                    }
                }
            }
        }
    }

    /// Waits until the socket has input, at most until `deadline`:
    /// trying it without sleeping first where `spin` says so, as a read
    /// without a deadline does (see [`Spin`]). Whether it has.
    fn readable_by(&self, deadline: Instant, spin: &mut Spin) -> std::io::Result<bool> {
        let started = Instant::now();
        let budget = spin.budget(deadline.saturating_duration_since(started));
        if !budget.is_zero() && spin_readable(self.socket.as_fd(), budget)? {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let came = !left.is_zero() && poll_fd(self.socket.as_fd(), PollFlags::IN, Some(left))?;
        spin.ended(started, came);
        Ok(came)
    }

    /// Routes the whole frames a leaving reader has already taken off the
    /// socket into its buffer: nothing would announce them to the next
    /// reader. (The rest of a partly buffered frame is still in the socket,
    /// which does announce it.)
    fn route_buffered(&self, reading: &mut Reading, router: &dyn Router<M>) {
        while !reading.frames.get_ref().buffer().is_empty() {
            if !matches!(self.step(reading, router, false), Step::Routed) {
                break;
            }
        }
    }

    /// Reads and routes one frame (`wait`: blocking in `recv`).
    fn step(&self, reading: &mut Reading, router: &dyn Router<M>, wait: bool) -> Step {
        let frames = &mut reading.frames;
        frames.get_mut().get_mut().wait = wait;
        let read = match frames.read_frame() {
            Ok(Some(bytes)) => Ok(Some(Internal::decode::<M>(bytes))),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if matches!(read, Ok(Some(_))) {
            reading.partial_since = None;
            reading.partial_bytes = 0;
        } else if let Some((_, got)) = frames.partial() {
            // Nothing whole yet: the stall clock runs from the last byte
            // of the frame that came.
            if reading.partial_since.is_none() || got > reading.partial_bytes {
                reading.partial_since = Some(Instant::now());
                reading.partial_bytes = got;
            }
        }
        match read {
            Ok(Some(Ok(message))) => {
                router.route(message);
                // Pairs with the fence in `wait`: a follower that
                // registered before this route is seen here, or sees
                // the routed item itself.
                fence(Ordering::SeqCst);
                if self.waiting.load(Ordering::Relaxed) > 0 {
                    self.wake_all();
                }
                Step::Routed
            }
            Ok(Some(Err(e))) => {
                self.end(router, Some(ProtocolError::Malformed(e)));
                Step::Ended
            }
            // The peer closed: cleanly, or with our data unread (a reset).
            Ok(None) => {
                self.end_as(router, Ended::Eof, None);
                Step::Ended
            }
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.end_as(router, Ended::Reset, None);
                Step::Ended
            }
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Step::Empty,
            Err(e) => {
                self.end(router, Some(e));
                Step::Ended
            }
        }
    }

    /// Ends the channel as broken by `broken` (or as closed, `None`).
    fn end(&self, router: &dyn Router<M>, broken: Option<ProtocolError>) {
        let how = match &broken {
            None => Ended::Eof,
            Some(e) => Ended::Broken(sk_core::error_chain(e)),
        };
        self.end_as(router, how, broken.as_ref());
    }

    fn end_as(&self, router: &dyn Router<M>, how: Ended, broken: Option<&ProtocolError>) {
        self.state.lock().ended = Some(how);
        router.closed(broken);
        self.wake_all();
    }
}

#[cfg(test)]
mod tests;
