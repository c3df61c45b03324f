//! Named threads with cooperative stop, init functions, panic capture and a
//! monitor: [`Threader`].
//!
//! # Who owns what
//!
//! [`Threader::spawn`] returns a [`ThreadHandle`], which owns the OS thread
//! and the channel its result arrives on. The `Threader` keeps only a status
//! record per thread (name, state, times, stop token), shared with the
//! thread so it can mark itself finished. Dropping a handle without joining
//! hands the OS thread over to the `Threader`, which joins it in
//! [`Threader::join_all`] or [`Threader::forget_finished`]; the result of
//! such a thread is dropped on the thread.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError};
use parking_lot::{Condvar, Mutex};
use sk_core::StopToken;

use crate::error::ThreadError;

/// An init function, shared by every thread spawned after it was added.
type InitFn = Arc<dyn Fn(&ThreadInfo) + Send + Sync + 'static>;

/// What a thread sends back: its value, or its panic message.
type Outcome<R> = Result<R, String>;

/// Starts, monitors, stops and joins named threads.
///
/// There is one per process, [`Threader::global`]; [`Threader::new`] makes
/// an isolated one (for tests, or a component that wants its own set).
///
/// - Names are unique among *running* threads: a second running thread with
///   the same name is refused, a finished one is replaced in the listing.
/// - Each thread gets a [`StopToken`], a child of the `Threader`'s root
///   token, passed to its body and entered as the thread's
///   [current](StopToken::current) token.
/// - [Init functions](Threader::add_init) run on every new thread before its
///   body.
/// - A panic in the body or an init function is caught and reported as
///   [`ThreadError::Panicked`]; it never reaches the process or the
///   `Threader`.
/// - Finished threads stay listed by [`threads`](Threader::threads) until
///   joined or [forgotten](Threader::forget_finished).
///
/// Dropping a `Threader` requests stop of every thread it started (it does
/// not wait for them).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_process::{ThreadState, Threader};
///
/// let threader = Threader::new();
/// let handle = threader.spawn("ticker", |stop| {
///     let mut ticks = 0u32;
///     while !stop.wait_timeout(Duration::from_millis(1)) {
///         ticks += 1;
///     }
///     ticks
/// })?;
/// assert_eq!(threader.status("ticker").unwrap().state, ThreadState::Running);
///
/// threader.request_stop("ticker")?;
/// let _ticks: u32 = handle.join()?;
/// assert!(threader.threads().is_empty());
/// # Ok::<(), sk_process::ThreadError>(())
/// ```
pub struct Threader {
    shared: Arc<Shared>,
}

/// The state handles and the `Threader` share.
struct Shared {
    root: StopToken,
    /// Listed threads, in spawn order; at most one per name.
    records: Mutex<Vec<Arc<Record>>>,
    /// Replaced whole on `add_init`, so a spawn takes a snapshot by cloning
    /// one `Arc` and later additions do not affect it.
    inits: Mutex<Arc<Vec<InitFn>>>,
    next_index: AtomicUsize,
}

impl Shared {
    fn unlist(&self, record: &Arc<Record>) {
        self.records.lock().retain(|r| !Arc::ptr_eq(r, record));
    }
}

/// One thread's status, shared between the `Threader` and the thread.
struct Record {
    name: String,
    index: usize,
    token: StopToken,
    started: Instant,
    state: Mutex<RecordState>,
    /// Notified when the thread ends.
    ended_cv: Condvar,
}

#[derive(Default)]
struct RecordState {
    ended: Option<Instant>,
    panicked: bool,
    /// The OS thread once its [`ThreadHandle`] was dropped unjoined.
    orphan: Option<JoinHandle<()>>,
}

impl Record {
    fn finish(&self, panicked: bool) {
        let mut state = self.state.lock();
        state.ended = Some(Instant::now());
        state.panicked = panicked;
        self.ended_cv.notify_all();
    }

    fn is_ended(&self) -> bool {
        self.state.lock().ended.is_some()
    }

    /// Waits until the thread ended or `deadline` passed (`None`: forever);
    /// whether it ended.
    fn wait_ended(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state.lock();
        while state.ended.is_none() {
            match deadline {
                Some(deadline) => {
                    if self.ended_cv.wait_until(&mut state, deadline).timed_out() {
                        return state.ended.is_some();
                    }
                }
                None => self.ended_cv.wait(&mut state),
            }
        }
        true
    }

    fn status(&self) -> ThreadStatus {
        let state = self.state.lock();
        let thread_state = match (state.ended, state.panicked) {
            (Some(_), true) => ThreadState::Panicked,
            (Some(_), false) => ThreadState::Finished,
            (None, _) if self.token.is_stopped() => ThreadState::Stopping,
            (None, _) => ThreadState::Running,
        };
        ThreadStatus {
            name: self.name.clone(),
            index: self.index,
            state: thread_state,
            started: self.started,
            ended: state.ended,
        }
    }
}

/// Joins OS threads whose body already ended (so this waits only for
/// thread-local destructors). Called with no lock held.
fn join_ended(orphans: Vec<JoinHandle<()>>) {
    for orphan in orphans {
        // The body ran under `catch_unwind`; an `Err` here means only that
        // dropping a panic payload panicked, which was already reported.
        let _ = orphan.join();
    }
}

fn check_name(name: &str) -> Result<(), ThreadError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(ThreadError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

impl Threader {
    /// A new, isolated `Threader` with no threads and no init functions.
    pub fn new() -> Self {
        Threader::with_root(StopToken::new())
    }

    /// A new `Threader` whose threads, those running and those started
    /// later, are asked to stop when `parent` is (a program-wide shutdown
    /// token, a cycle's stop handle). Stopping its threads leaves `parent`
    /// running.
    pub fn with_parent(parent: &StopToken) -> Self {
        Threader::with_root(parent.child())
    }

    fn with_root(root: StopToken) -> Self {
        Threader {
            shared: Arc::new(Shared {
                root,
                records: Mutex::new(Vec::new()),
                inits: Mutex::new(Arc::new(Vec::new())),
                next_index: AtomicUsize::new(0),
            }),
        }
    }

    /// The process's `Threader`, created on first use.
    pub fn global() -> &'static Threader {
        static GLOBAL: OnceLock<Threader> = OnceLock::new();
        GLOBAL.get_or_init(Threader::new)
    }

    /// Starts `f` on a new OS thread named `name`.
    ///
    /// The thread first runs every [init function](Threader::add_init), in
    /// the order they were added, then `f`. Both run with the thread's stop
    /// token entered as its [current](StopToken::current) token; `f` also
    /// gets it as its argument. The OS may shorten the name it shows (Linux
    /// keeps 15 bytes); the `Threader` keeps it whole.
    ///
    /// A finished thread with the same name that is still listed is
    /// replaced in the listing (its handle can still join it).
    ///
    /// # Errors
    ///
    /// [`ThreadError::NameTaken`] when a running thread has this name,
    /// [`ThreadError::InvalidName`] for an empty name or one containing a
    /// NUL byte, [`ThreadError::Spawn`] when the OS cannot start a thread.
    pub fn spawn<R, F>(&self, name: impl Into<String>, f: F) -> Result<ThreadHandle<R>, ThreadError>
    where
        R: Send + 'static,
        F: FnOnce(&StopToken) -> R + Send + 'static,
    {
        let name = name.into();
        check_name(&name)?;
        let record = Arc::new(Record {
            index: self.shared.next_index.fetch_add(1, Ordering::Relaxed),
            token: self.shared.root.child(),
            started: Instant::now(),
            state: Mutex::new(RecordState::default()),
            ended_cv: Condvar::new(),
            name,
        });
        let mut replaced = Vec::new();
        {
            let mut records = self.shared.records.lock();
            if let Some(pos) = records.iter().position(|r| r.name == record.name) {
                if !records[pos].is_ended() {
                    return Err(ThreadError::NameTaken {
                        name: record.name.clone(),
                    });
                }
                let old = records.remove(pos);
                replaced.extend(old.state.lock().orphan.take());
            }
            // Listed before the OS thread starts, so a second spawn with
            // this name cannot slip in between.
            records.push(Arc::clone(&record));
        }
        join_ended(replaced);

        let inits = Arc::clone(&self.shared.inits.lock());
        let (tx, rx) = channel::bounded::<Outcome<R>>(1);
        let thread_record = Arc::clone(&record);
        let spawned = thread::Builder::new()
            .name(record.name.clone())
            .spawn(move || {
                let record = thread_record;
                let info = ThreadInfo {
                    name: record.name.clone(),
                    index: record.index,
                };
                let token = record.token.clone();
                // Unwind safety: `f` is consumed, so nothing it captured is
                // seen after a panic; init functions are `Fn` shared across
                // threads, so they must cope with their own panics anyway.
                let outcome = token.enter(|| {
                    panic::catch_unwind(AssertUnwindSafe(|| {
                        for init in inits.iter() {
                            init(&info);
                        }
                        f(&token)
                    }))
                });
                let outcome = outcome.map_err(|payload| sk_core::panic_message(&*payload));
                // Marked before sending, so a received result always finds
                // the thread `Finished`/`Panicked`.
                record.finish(outcome.is_err());
                // The receiver is gone only when the handle was dropped.
                let _ = tx.send(outcome);
            });
        match spawned {
            Ok(os) => Ok(ThreadHandle {
                id: os.thread().id(),
                os: Some(os),
                result: rx,
                record,
                shared: Arc::clone(&self.shared),
            }),
            Err(source) => {
                self.shared.unlist(&record);
                Err(ThreadError::Spawn {
                    name: record.name.clone(),
                    source,
                })
            }
        }
    }

    /// Adds a function every thread spawned from now on runs, after the
    /// ones added before it, before its body.
    ///
    /// A panic in an init function fails that thread like a panic in its
    /// body: the body does not run and joining reports
    /// [`ThreadError::Panicked`].
    pub fn add_init(&self, f: impl Fn(&ThreadInfo) + Send + Sync + 'static) {
        let mut inits = self.shared.inits.lock();
        Arc::make_mut(&mut inits).push(Arc::new(f));
    }

    /// The status of every listed thread, in spawn order.
    pub fn threads(&self) -> Vec<ThreadStatus> {
        self.snapshot().iter().map(|r| r.status()).collect()
    }

    /// The status of the listed thread named `name`.
    pub fn status(&self, name: &str) -> Option<ThreadStatus> {
        self.find(name).map(|r| r.status())
    }

    /// Asks the thread named `name` to stop by setting its stop token.
    ///
    /// Stopping is cooperative: the thread stops when its body next looks
    /// at the token. Stopping a finished thread does nothing.
    ///
    /// # Errors
    ///
    /// [`ThreadError::Unknown`] when no listed thread has this name.
    pub fn request_stop(&self, name: &str) -> Result<(), ThreadError> {
        match self.find(name) {
            Some(record) => {
                record.token.stop();
                Ok(())
            }
            None => Err(ThreadError::Unknown {
                name: name.to_owned(),
            }),
        }
    }

    /// Asks every listed thread to stop. Threads spawned later are not
    /// affected.
    pub fn stop_all(&self) {
        for record in self.snapshot() {
            record.token.stop();
        }
    }

    /// Waits up to `timeout` for every listed thread to end.
    ///
    /// Threads whose [`ThreadHandle`] was dropped are joined here and
    /// unlisted. Threads whose handle is still held are only waited for;
    /// they stay listed until that handle joins them (their result belongs
    /// to it). Panics are not reported here: see
    /// [`threads`](Threader::threads) or the handle's `join`. This does not
    /// stop anything; call [`stop_all`](Threader::stop_all) first for a
    /// shutdown.
    ///
    /// # Errors
    ///
    /// [`ThreadError::JoinTimeout`] naming the threads still running at the
    /// deadline; they are left running (Rust cannot kill a thread).
    pub fn join_all(&self, timeout: Duration) -> Result<(), ThreadError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut late = Vec::new();
        for record in self.snapshot() {
            if !record.wait_ended(deadline) {
                late.push(record.name.clone());
                continue;
            }
            let orphan = record.state.lock().orphan.take();
            if let Some(orphan) = orphan {
                join_ended(vec![orphan]);
                self.shared.unlist(&record);
            }
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(ThreadError::JoinTimeout { names: late })
        }
    }

    /// Unlists every finished thread and returns how many there were.
    ///
    /// Threads whose handle was dropped are joined; a handle still held can
    /// join its thread as usual.
    pub fn forget_finished(&self) -> usize {
        let mut orphans = Vec::new();
        let mut forgotten = 0;
        self.shared.records.lock().retain(|record| {
            let mut state = record.state.lock();
            if state.ended.is_none() {
                return true;
            }
            orphans.extend(state.orphan.take());
            forgotten += 1;
            false
        });
        join_ended(orphans);
        forgotten
    }

    fn snapshot(&self) -> Vec<Arc<Record>> {
        self.shared.records.lock().clone()
    }

    fn find(&self, name: &str) -> Option<Arc<Record>> {
        self.shared
            .records
            .lock()
            .iter()
            .find(|r| r.name == name)
            .cloned()
    }
}

impl Default for Threader {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Threader {
    fn drop(&mut self) {
        self.shared.root.stop();
    }
}

impl fmt::Debug for Threader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threader")
            .field("threads", &self.threads())
            .field("inits", &self.shared.inits.lock().len())
            .finish()
    }
}

/// What an [init function](Threader::add_init) learns about the thread it
/// runs on.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The thread's name, as given to [`Threader::spawn`].
    pub name: String,
    /// The thread's spawn number in its `Threader`: increasing from 0 and
    /// never reused (a refused spawn may leave a gap).
    pub index: usize,
}

/// Where a thread is in its life.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadState {
    /// Running, not asked to stop.
    Running,
    /// Asked to stop, still running.
    Stopping,
    /// Ended by returning from its body.
    Finished,
    /// Ended by a panic in its body or an init function.
    Panicked,
}

impl ThreadState {
    /// Whether the thread has ended ([`Finished`](ThreadState::Finished) or
    /// [`Panicked`](ThreadState::Panicked)).
    pub fn is_ended(self) -> bool {
        matches!(self, ThreadState::Finished | ThreadState::Panicked)
    }
}

/// A thread's status, as listed by [`Threader::threads`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStatus {
    /// The thread's name.
    pub name: String,
    /// The thread's spawn number in its `Threader` (see [`ThreadInfo`]).
    pub index: usize,
    /// Where the thread is in its life.
    pub state: ThreadState,
    /// When it was spawned.
    pub started: Instant,
    /// When its body (or a failing init function) ended.
    pub ended: Option<Instant>,
}

/// The owner of a thread started by [`Threader::spawn`], and of its result.
///
/// Dropping it without joining hands the OS thread over to the `Threader`
/// (see [`Threader::join_all`]); the thread keeps running.
pub struct ThreadHandle<R> {
    record: Arc<Record>,
    shared: Arc<Shared>,
    result: Receiver<Outcome<R>>,
    /// `None` once joined.
    os: Option<JoinHandle<()>>,
    id: ThreadId,
}

impl<R> ThreadHandle<R> {
    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The OS thread's id.
    pub fn thread_id(&self) -> ThreadId {
        self.id
    }

    /// Asks the thread to stop by setting its stop token.
    pub fn stop(&self) {
        self.record.token.stop();
    }

    /// The thread's stop token.
    pub fn stop_token(&self) -> &StopToken {
        &self.record.token
    }

    /// Whether the thread's body (or a failing init function) has ended.
    pub fn is_finished(&self) -> bool {
        self.record.is_ended()
    }

    /// Waits for the thread to end and returns what its body returned.
    ///
    /// The thread is unlisted from its `Threader`.
    ///
    /// # Errors
    ///
    /// [`ThreadError::Panicked`] when the body or an init function panicked,
    /// [`ThreadError::Joined`] when
    /// [`join_timeout`](ThreadHandle::join_timeout) already returned the
    /// outcome.
    pub fn join(mut self) -> Result<R, ThreadError> {
        if self.os.is_none() {
            return Err(self.joined());
        }
        let outcome = self.result.recv().ok();
        self.finish(outcome)
    }

    /// Waits up to `timeout` for the thread to end; `Ok(None)` while it is
    /// still running.
    ///
    /// Does not block past the deadline. Once it returned the outcome, the
    /// thread is unlisted and later joins report [`ThreadError::Joined`].
    ///
    /// # Errors
    ///
    /// As [`join`](ThreadHandle::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, ThreadError> {
        if self.os.is_none() {
            return Err(self.joined());
        }
        let outcome = match self.result.recv_timeout(timeout) {
            Ok(outcome) => Some(outcome),
            Err(RecvTimeoutError::Timeout) => return Ok(None),
            Err(RecvTimeoutError::Disconnected) => None,
        };
        self.finish(outcome).map(Some)
    }

    /// Joins the OS thread, unlists it, and turns its outcome into the
    /// caller's result. `None`: the thread ended without sending one.
    fn finish(&mut self, outcome: Option<Outcome<R>>) -> Result<R, ThreadError> {
        if let Some(os) = self.os.take() {
            join_ended(vec![os]);
        }
        self.shared.unlist(&self.record);
        match outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(message)) => Err(ThreadError::Panicked {
                name: self.record.name.clone(),
                message,
            }),
            None => Err(ThreadError::Panicked {
                name: self.record.name.clone(),
                message: "thread ended without a result".to_owned(),
            }),
        }
    }

    fn joined(&self) -> ThreadError {
        ThreadError::Joined {
            name: self.record.name.clone(),
        }
    }
}

impl<R> Drop for ThreadHandle<R> {
    fn drop(&mut self) {
        if let Some(os) = self.os.take() {
            self.record.state.lock().orphan = Some(os);
        }
    }
}

impl<R> fmt::Debug for ThreadHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHandle")
            .field("name", &self.record.name)
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .field("joined", &self.os.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests;
