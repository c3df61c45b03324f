//! [`Pool`]: a fixed set of workers (threads or processes) that maps a
//! registered function over many items.
//!
//! Items travel in chunks: one call of a framework-registered batch
//! function (see `pool/batch.rs`) runs a chunk in a worker and reports one
//! outcome per item, so a 10 000-item map costs a few dozen calls, not
//! 10 000. Each item succeeds or fails on its own; per-item timeouts,
//! retries and worker deaths are handled item by item (see `pool/driver.rs`).

mod child;
mod driver;

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_core::{Args, FunctionError, RetryPolicy, SkFunction, Value};

use crate::backend::Backend;
use crate::error::{ItemError, PoolError};
use crate::worker::{READY_TIMEOUT, Worker};
use driver::{Delivery, Item, Job, Msg, Shared, Task};

/// Chunks per worker the automatic chunk size aims for: enough to balance
/// uneven items, few enough that transport stays small next to the work.
const CHUNKS_PER_WORKER: usize = 4;

/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 1024;

/// The automatic chunk size when the number of items is not known.
const UNKNOWN_LEN_CHUNK: usize = 16;

/// Chunks per worker an `imap` keeps submitted ahead of the caller.
const AHEAD_PER_WORKER: usize = 2;

/// How long closing waits for drivers to finish their chunk before killing
/// the workers.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Builds a [`Pool`]: worker count, backend, chunking, per-item timeout
/// and retry.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use sk_core::RetryPolicy;
/// use sk_process::{Backend, Pool};
///
/// let pool = Pool::builder()
///     .workers(4)
///     .backend(Backend::Process)
///     .item_timeout(Duration::from_secs(5))
///     .retry(RetryPolicy::fixed(Duration::from_millis(50)).max_attempts(3))
///     .name("resize")
///     .build()?;
/// # Ok::<(), sk_process::PoolError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    workers: usize,
    backend: Backend,
    chunk_size: Option<usize>,
    item_timeout: Option<Duration>,
    retry: RetryPolicy,
    name: String,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Backend::from_env(),
            chunk_size: None,
            item_timeout: None,
            retry: RetryPolicy::never(),
            name: "pool".to_owned(),
        }
    }
}

impl PoolBuilder {
    /// How many workers (default: the number of CPUs).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Where the workers run (default: [`Backend::from_env`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Items per chunk (default: automatic, about four chunks per worker,
    /// at most 1024 items). Use 1 for items that each take long.
    pub fn chunk_size(mut self, items: usize) -> Self {
        self.chunk_size = Some(items);
        self
    }

    /// The longest one item may run. An item over it fails with
    /// [`ItemError::TimedOut`]; a process worker running it is killed and
    /// replaced, and the rest of its chunk runs again elsewhere. A thread
    /// worker gets its stop token set and is abandoned.
    pub fn item_timeout(mut self, limit: Duration) -> Self {
        self.item_timeout = Some(limit);
        self
    }

    /// How failed items are retried (default [`RetryPolicy::never`]): a
    /// retryable failure or a timeout runs again, after the policy's wait,
    /// until the policy's attempts are spent.
    ///
    /// An item whose worker dies under it runs again on a live worker
    /// whatever the policy, at most [`Pool::DEATH_LIMIT`] times.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The pool's name; workers are named `{name}-{slot}` (default `pool`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoWorkers`], [`PoolError::ZeroChunkSize`],
    /// [`PoolError::ZeroItemTimeout`] or [`PoolError::Policy`] for a bad
    /// setting; [`PoolError::Spawn`] or [`PoolError::Thread`] when a worker
    /// or its driver thread cannot start (the ones started are stopped).
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        if self.chunk_size == Some(0) {
            return Err(PoolError::ZeroChunkSize);
        }
        if self.item_timeout == Some(Duration::ZERO) {
            return Err(PoolError::ZeroItemTimeout);
        }
        self.retry.validate().map_err(PoolError::Policy)?;
        let batch = SkFunction::builder(child::BATCH)
            .build()
            .map_err(|e| PoolError::Spawn(batch_missing(&e)))?;
        // Start them all, then wait for each: they get ready side by side.
        let workers = (0..self.workers)
            .map(|slot| Worker::start(format!("{}-{slot}", self.name), self.backend))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PoolError::Spawn)?;
        for worker in &workers {
            worker.ready(READY_TIMEOUT).map_err(PoolError::Spawn)?;
        }
        let (queue, inbox) = channel::unbounded();
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            backend: self.backend,
            batch,
            queue,
            inbox,
            workers: Mutex::new(workers.clone()),
            replaced: AtomicUsize::new(0),
            next_chunk: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        });
        let (ended_tx, drivers_ended) = crossbeam::channel::bounded::<()>(0);
        let mut pool = Pool {
            shared,
            drivers: Vec::with_capacity(self.workers),
            drivers_ended,
            chunk_size: self.chunk_size,
            item_timeout: self.item_timeout,
            retry: self.retry,
        };
        for (slot, worker) in workers.into_iter().enumerate() {
            let name = format!("sk-pool:{}-{slot}", self.name);
            let shared = Arc::clone(&pool.shared);
            // Dropped when the driver's thread ends: closing waits for the
            // channel to disconnect.
            let ended = ended_tx.clone();
            let spawned = thread::Builder::new().name(name.clone()).spawn(move || {
                let _ended = ended;
                driver::drive(shared, slot, worker);
            });
            match spawned {
                Ok(handle) => pool.drivers.push(handle),
                Err(source) => {
                    // Dropping `pool` stops what was started; it waits for
                    // the drivers' channel to close, so close our end first.
                    drop(ended_tx);
                    return Err(PoolError::Thread { name, source });
                }
            }
        }
        Ok(pool)
    }
}

/// The batch function is registered statically by this crate, so this
/// only happens in a broken build; it is reported as a spawn failure.
fn batch_missing(e: &FunctionError) -> crate::error::WorkerError {
    crate::error::WorkerError::Spawn {
        worker: child::BATCH.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A fixed set of workers — threads or processes — that maps a registered
/// function over many items: `map`, `imap`, unordered and star-args
/// variants, with per-item timeouts and retries.
///
/// Work is a registered function handle ([`SkFunction`]), so it runs in any
/// worker process; each item is bound to one named parameter (`map`) or
/// brings several named arguments ([`Args`], `starmap`). Items are sent
/// in chunks (automatic size unless [`PoolBuilder::chunk_size`] is set),
/// but succeed, fail, time out and retry one by one. A worker that dies or
/// is killed is replaced; the items it had in hand run again on a live
/// worker, so every item ends with a result or an [`ItemError`] — never a
/// hang, never a missing result.
///
/// Deaths count only against the item that was running: items a dead
/// worker had not started, a chunk that never reached its worker
/// ([`WorkerError::never_ran`](crate::WorkerError::never_ran)), and
/// replacement workers that die (or are killed) while starting cost no
/// item anything — a driver starts replacements with a short backoff,
/// and an item fails as [`ItemError::Unrunnable`] only after 8
/// replacements in a row failed to start (at once, for a program without
/// `init()`), or after its chunk did not reach a worker 8 times in a row
/// (each resent after a wait doubling from 10 ms: about 1.3 s in all).
///
/// Dropping the pool (or [`close`](Pool::close)) stops its workers.
///
/// # Examples
///
/// ```no_run
/// use sk_core::SkFunction;
/// use sk_process::{Backend, Pool};
///
/// #[sk_core::function(crate = ::sk_core)]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     sk_process::init(); // worker processes start here and never return
///
///     let pool = Pool::new(2, Backend::Process)?;
///     let square = SkFunction::builder("square").build()?;
///     let squares: Vec<u64> = pool.map(&square, "x", 0..10_000u64)?;
///     assert_eq!(squares[3], 9);
///
///     // Results as they finish, with their input positions.
///     for (index, result) in pool.imap_unordered::<u64, u64>(&square, "x", 0..100u64) {
///         assert_eq!(result?, (index as u64).pow(2));
///     }
///     pool.close();
///     Ok(())
/// }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    drivers: Vec<JoinHandle<()>>,
    /// Disconnects once every driver thread has ended.
    drivers_ended: crossbeam::channel::Receiver<()>,
    chunk_size: Option<usize>,
    item_timeout: Option<Duration>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.name)
            .field("backend", &self.shared.backend)
            .field("workers", &self.drivers.len())
            .field("chunk_size", &self.chunk_size)
            .field("item_timeout", &self.item_timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// How many times an item may be running when its worker dies before it
    /// fails with [`ItemError::WorkerDied`], whatever the retry policy.
    pub const DEATH_LIMIT: u32 = driver::DEATH_LIMIT;

    /// Starts a pool of `workers` workers on `backend` with default
    /// settings (automatic chunks, no item timeout, no retry).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(workers: usize, backend: Backend) -> Result<Pool, PoolError> {
        Pool::builder().workers(workers).backend(backend).build()
    }

    /// A builder with the default settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// How many workers the pool runs.
    pub fn size(&self) -> usize {
        self.drivers.len()
    }

    /// The pool's backend.
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// The current workers, one per slot (a replaced worker's successor
    /// once it has been started).
    pub fn workers(&self) -> Vec<Worker> {
        self.shared.workers.lock().clone()
    }

    /// How many workers have been replaced since the pool started
    /// (after a death or a timeout kill).
    pub fn replacements(&self) -> usize {
        self.shared.replaced.load(Ordering::Relaxed)
    }

    /// Calls `f` once per item, the item bound to parameter `param`, and
    /// returns the outputs in input order.
    ///
    /// # Errors
    ///
    /// [`PoolError::Item`] with the index of the first item to fail (in
    /// time); the call stops there and the other results are dropped. Use
    /// [`map_results`](Pool::map_results) to keep every outcome.
    pub fn map<T, R>(
        &self,
        f: &SkFunction,
        param: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize,
        R: DeserializeOwned + 'static,
    {
        // Collected for their count (the chunk size), then encoded as they
        // go out: a bounded number of chunks ahead, not all at once.
        let items: Vec<T> = items.into_iter().collect();
        let n = items.len();
        let stream = self.stream(f, bind(f, param, items.into_iter()));
        collect_or_fail(stream, n)
    }

    /// As [`map`](Pool::map), keeping every item's outcome: one
    /// `Result` per item, in input order.
    pub fn map_results<T, R>(
        &self,
        f: &SkFunction,
        param: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Vec<Result<R, ItemError>>
    where
        T: Serialize,
        R: DeserializeOwned + 'static,
    {
        let items: Vec<T> = items.into_iter().collect();
        let n = items.len();
        let stream = self.stream(f, bind(f, param, items.into_iter()));
        collect_all(stream, n)
    }

    /// Calls `f` once per item, lazily: yields outputs in input order as
    /// they become available, keeping a bounded number of chunks in flight
    /// (two per worker) ahead of the caller.
    pub fn imap<'p, T, R>(
        &'p self,
        f: &SkFunction,
        param: &str,
        items: impl IntoIterator<Item = T, IntoIter: 'p>,
    ) -> Imap<'p, R>
    where
        T: Serialize + 'p,
        R: DeserializeOwned + 'static,
    {
        let items = items.into_iter();
        let stream = self.stream(f, bind(f, param, items));
        Imap {
            stream,
            next: 0,
            early: BTreeMap::new(),
            _out: PhantomData,
        }
    }

    /// As [`imap`](Pool::imap), yielding `(index, result)` in the order
    /// items finish.
    pub fn imap_unordered<'p, T, R>(
        &'p self,
        f: &SkFunction,
        param: &str,
        items: impl IntoIterator<Item = T, IntoIter: 'p>,
    ) -> ImapUnordered<'p, R>
    where
        T: Serialize + 'p,
        R: DeserializeOwned + 'static,
    {
        let items = items.into_iter();
        ImapUnordered {
            stream: self.stream(f, bind(f, param, items)),
            _out: PhantomData,
        }
    }

    /// Calls `f` once per item where each item brings several named
    /// arguments; outputs in input order.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<R>(
        &self,
        f: &SkFunction,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<R>, PoolError>
    where
        R: DeserializeOwned + 'static,
    {
        let items: Vec<Args> = items.into_iter().collect();
        let n = items.len();
        let stream = self.stream(f, items.into_iter().map(Ok));
        collect_or_fail(stream, n)
    }

    /// As [`starmap`](Pool::starmap), keeping every item's outcome.
    pub fn starmap_results<R>(
        &self,
        f: &SkFunction,
        items: impl IntoIterator<Item = Args>,
    ) -> Vec<Result<R, ItemError>>
    where
        R: DeserializeOwned + 'static,
    {
        let items: Vec<Args> = items.into_iter().collect();
        let n = items.len();
        let stream = self.stream(f, items.into_iter().map(Ok));
        collect_all(stream, n)
    }

    /// As [`starmap`](Pool::starmap), lazily, yielding `(index, result)`
    /// in the order items finish.
    pub fn starmap_unordered<'p, R>(
        &'p self,
        f: &SkFunction,
        items: impl IntoIterator<Item = Args, IntoIter: 'p>,
    ) -> ImapUnordered<'p, R>
    where
        R: DeserializeOwned + 'static,
    {
        ImapUnordered {
            stream: self.stream(f, items.into_iter().map(Ok)),
            _out: PhantomData,
        }
    }

    /// Stops the workers: waits briefly for chunks in hand, then kills.
    pub fn close(self) {
        drop(self);
    }

    /// One call's stream of `items`: chunked by their number (when the
    /// iterator knows it), a bounded number of chunks ahead of the caller.
    fn stream<'p, I>(&'p self, f: &SkFunction, items: I) -> Stream<'p>
    where
        I: Iterator<Item = Result<Args, FunctionError>> + 'p,
    {
        let hint = items.size_hint();
        let len = hint.1.filter(|&upper| upper == hint.0);
        let ahead_chunk = self.chunk_for(len.or(Some(hint.0).filter(|&n| n > 0)));
        let ahead = ahead_chunk.saturating_mul(AHEAD_PER_WORKER * self.size());
        let (results, rx) = channel::unbounded();
        let job = Arc::new(Job {
            function: f.clone(),
            results,
            cancelled: AtomicBool::new(false),
            policy: self.retry.clone(),
            item_timeout: self.item_timeout,
        });
        Stream {
            pool: self,
            job,
            rx,
            items: Box::new(items),
            exhausted: false,
            chunk: self.chunk_for(len),
            ahead,
            submitted: 0,
            yielded: 0,
            local: VecDeque::new(),
        }
    }

    /// The chunk size for `len` items (`None`: unknown).
    fn chunk_for(&self, len: Option<usize>) -> usize {
        if let Some(size) = self.chunk_size {
            return size.min(u32::MAX as usize);
        }
        match len {
            Some(n) => n
                .div_ceil(self.size() * CHUNKS_PER_WORKER)
                .clamp(1, MAX_AUTO_CHUNK),
            None => UNKNOWN_LEN_CHUNK,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        for _ in &self.drivers {
            let _ = self.shared.queue.send(Msg::Stop);
        }
        // Nothing is ever sent: this returns when every driver has ended
        // (disconnected) or at the deadline.
        let _ = self
            .drivers_ended
            .recv_deadline(Instant::now() + CLOSE_GRACE);
        // Drivers still busy are waiting on a chunk: end their workers.
        for worker in self.workers() {
            if worker.is_alive() {
                worker.kill();
            }
        }
        for driver in self.drivers.drain(..) {
            let _ = driver.join();
        }
    }
}

/// Binds each item to `param` of `f` — refused item by item, naming the
/// typo, when `f` (registered here) has no such parameter.
fn bind<T: Serialize, I: Iterator<Item = T>>(
    f: &SkFunction,
    param: &str,
    items: I,
) -> impl Iterator<Item = Result<Args, FunctionError>> + use<T, I> {
    let param = param.to_owned();
    let spec = f.spec().ok().cloned();
    items.map(move |item| {
        if let Some(spec) = &spec {
            spec.expect_param(&param)?;
        }
        Args::new().with(&param, &item)
    })
}

fn take<R: DeserializeOwned + 'static>(result: Result<Value, ItemError>) -> Result<R, ItemError> {
    result.and_then(|v| v.take::<R>().map_err(ItemError::Output))
}

fn collect_or_fail<R: DeserializeOwned + 'static>(
    mut stream: Stream<'_>,
    n: usize,
) -> Result<Vec<R>, PoolError> {
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(n).collect();
    while let Some((index, result)) = stream.next_raw() {
        let value = take::<R>(result).map_err(|source| PoolError::Item {
            index,
            error: source,
        })?;
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(value);
        }
    }
    // Every index is delivered exactly once (see `Stream::next_raw`).
    Ok(slots.into_iter().flatten().collect())
}

fn collect_all<R: DeserializeOwned + 'static>(
    mut stream: Stream<'_>,
    n: usize,
) -> Vec<Result<R, ItemError>> {
    let mut slots: Vec<Option<Result<R, ItemError>>> =
        std::iter::repeat_with(|| None).take(n).collect();
    while let Some((index, result)) = stream.next_raw() {
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(take::<R>(result));
        }
    }
    slots.into_iter().flatten().collect()
}

/// One call's items on their way to the workers and back.
struct Stream<'p> {
    pool: &'p Pool,
    job: Arc<Job>,
    rx: Receiver<Delivery>,
    items: Box<dyn Iterator<Item = Result<Args, FunctionError>> + 'p>,
    exhausted: bool,
    chunk: usize,
    /// How many items may be submitted and not yet yielded.
    ahead: usize,
    submitted: usize,
    yielded: usize,
    /// Items that failed before reaching a worker.
    local: VecDeque<Delivery>,
}

impl Stream<'_> {
    /// Submits chunks while fewer than `ahead` items are unyielded.
    fn feed(&mut self) {
        while !self.exhausted && self.submitted - self.yielded < self.ahead {
            let mut items = Vec::with_capacity(self.chunk);
            while items.len() < self.chunk {
                let Some(next) = self.items.next() else {
                    self.exhausted = true;
                    break;
                };
                let index = self.submitted;
                self.submitted += 1;
                match next {
                    Ok(args) => items.push(Item {
                        index,
                        args,
                        attempts: 0,
                        deaths: 0,
                        undelivered: 0,
                    }),
                    Err(e) => self.local.push_back((index, Err(ItemError::Encode(e)))),
                }
            }
            if !items.is_empty() {
                let _ = self.pool.shared.queue.send(Msg::Task(Task {
                    job: Arc::clone(&self.job),
                    items,
                    stream: self.job.item_timeout.is_some(),
                }));
            }
        }
    }

    /// The next item to end, with its index; `None` once every submitted
    /// item has been yielded and the input is exhausted.
    fn next_raw(&mut self) -> Option<Delivery> {
        self.feed();
        if let Some(local) = self.local.pop_front() {
            self.yielded += 1;
            return Some(local);
        }
        if self.yielded == self.submitted {
            return None;
        }
        // Every submitted item is settled exactly once by a driver; the job
        // keeps the sender, so this only ends with a delivery.
        let delivery = self.rx.recv().ok()?;
        self.yielded += 1;
        Some(delivery)
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        self.job.cancelled.store(true, Ordering::Release);
    }
}

/// The iterator of [`Pool::imap`]: outputs in input order.
pub struct Imap<'p, R> {
    stream: Stream<'p>,
    next: usize,
    early: BTreeMap<usize, Result<Value, ItemError>>,
    _out: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> Iterator for Imap<'_, R> {
    type Item = Result<R, ItemError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.early.remove(&self.next) {
                self.next += 1;
                return Some(take(result));
            }
            let (index, result) = self.stream.next_raw()?;
            if index == self.next {
                self.next += 1;
                return Some(take(result));
            }
            self.early.insert(index, result);
        }
    }
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// The iterator of [`Pool::imap_unordered`] and
/// [`Pool::starmap_unordered`]: `(index, result)` as items finish.
pub struct ImapUnordered<'p, R> {
    stream: Stream<'p>,
    _out: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> Iterator for ImapUnordered<'_, R> {
    type Item = (usize, Result<R, ItemError>);

    fn next(&mut self) -> Option<Self::Item> {
        let (index, result) = self.stream.next_raw()?;
        Some((index, take(result)))
    }
}

impl<R> std::fmt::Debug for ImapUnordered<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("yielded", &self.stream.yielded)
            .finish_non_exhaustive()
    }
}
