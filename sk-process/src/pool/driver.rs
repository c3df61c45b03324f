//! The parent side of a pool: one driver thread per worker slot.
//!
//! A driver takes chunks from the pool's shared queue, runs each as one
//! batch call on its worker, and settles every item exactly once: its
//! result or error goes to the job, or the item goes back on the queue
//! (a retry, or the unfinished rest of a chunk whose worker died or was
//! killed for a timeout). A dead worker is replaced before the next chunk,
//! so a re-queued item always reaches a live worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use sk_core::{Args, RetryPolicy, SkFunction, Value};

use crate::backend::Backend;
use crate::error::{ItemError, WorkerError};
use crate::pool::child::{FailureKind, Outcome, Report};
use crate::worker::Worker;

/// An item run by workers that died under it this many times fails with
/// [`ItemError::WorkerDied`], whatever the retry policy says.
pub(crate) const DEATH_LIMIT: u32 = 3;

/// How often a streaming driver checks its worker while no report comes.
const POLL: Duration = Duration::from_millis(2);

/// How long a driver drains late reports of a worker that died.
const DRAIN: Duration = Duration::from_millis(20);

/// How many replacement workers in a row may fail to start (each dying or
/// refused while starting) before the chunk in hand fails as unrunnable;
/// the driver waits between them, doubling from [`REPLACE_BACKOFF`] up to
/// [`REPLACE_BACKOFF_MAX`] (about 2.5 s in all).
const REPLACE_LIMIT: u32 = 8;
const REPLACE_BACKOFF: Duration = Duration::from_millis(10);
const REPLACE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One item's final answer.
pub(crate) type Delivery = (usize, Result<Value, ItemError>);

/// What the pool's drivers share.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) backend: Backend,
    pub(crate) batch: SkFunction,
    pub(crate) queue: Sender<Msg>,
    pub(crate) inbox: Receiver<Msg>,
    /// The current worker of each slot.
    pub(crate) workers: Mutex<Vec<Worker>>,
    pub(crate) replaced: AtomicUsize,
    pub(crate) next_chunk: AtomicU64,
    pub(crate) closing: AtomicBool,
}

/// One `map`-like call.
pub(crate) struct Job {
    pub(crate) function: SkFunction,
    pub(crate) results: Sender<Delivery>,
    pub(crate) cancelled: AtomicBool,
    pub(crate) policy: RetryPolicy,
    pub(crate) item_timeout: Option<Duration>,
}

impl Job {
    fn deliver(&self, index: usize, result: Result<Value, ItemError>) {
        // The receiver is gone when the caller stopped listening.
        let _ = self.results.send((index, result));
    }
}

/// One item in flight.
pub(crate) struct Item {
    pub(crate) index: usize,
    pub(crate) args: Args,
    /// Chunks of it that never reached a worker, in a row: back to 0
    /// when one does (see [`reached`]).
    pub(crate) undelivered: u32,
    pub(crate) attempts: u32,
    pub(crate) deaths: u32,
}

/// A chunk of one job's items.
pub(crate) struct Task {
    pub(crate) job: Arc<Job>,
    pub(crate) items: Vec<Item>,
    /// Report outcomes item by item (see `batch.rs`).
    pub(crate) stream: bool,
}

pub(crate) enum Msg {
    Task(Task),
    Stop,
}

/// How an attempt of an item ended, when it did not succeed.
enum Miss {
    Failed(crate::pool::child::Failure),
    TimedOut(Duration),
    Died { worker: String, status: String },
}

impl Shared {
    fn requeue(&self, task: Task) {
        if task.items.is_empty() || self.closing.load(Ordering::Acquire) {
            return;
        }
        let _ = self.queue.send(Msg::Task(task));
    }

    /// Re-queues `items` after the policy's wait for their attempt count.
    fn retry_later(self: &Arc<Self>, job: &Arc<Job>, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let wait = items
            .iter()
            .map(|item| {
                let retry = item.attempts.max(1);
                job.policy
                    .delays(item.index as u64 ^ u64::from(retry))
                    .nth(retry as usize - 1)
                    .unwrap_or_default()
            })
            .max()
            .unwrap_or_default();
        let task = Task {
            job: Arc::clone(job),
            items,
            stream: job.item_timeout.is_some(),
        };
        if wait.is_zero() {
            self.requeue(task);
            return;
        }
        // The task rides in a slot the caller can take back if no timer
        // thread starts, so no item is ever lost.
        let slot = Arc::new(Mutex::new(Some(task)));
        let shared = Arc::clone(self);
        let timer_slot = Arc::clone(&slot);
        let spawned = thread::Builder::new()
            .name(format!("sk-pool-retry:{}", self.name))
            .spawn(move || {
                thread::sleep(wait);
                if let Some(task) = timer_slot.lock().take() {
                    shared.requeue(task);
                }
            });
        if spawned.is_err() {
            if let Some(task) = slot.lock().take() {
                self.requeue(task);
            }
        }
    }
}

/// Settles the attempt of `item` that ended with `miss`: re-queues it when
/// the policy (or the death budget) allows, else delivers its error.
fn settle_miss(job: &Job, item: Item, miss: Miss, retry: &mut Vec<Item>, free: &mut Vec<Item>) {
    let mut item = reached(item);
    item.attempts += 1;
    let policy_allows = item.attempts < job.policy.attempts();
    match miss {
        Miss::Died { worker, status } => {
            item.deaths += 1;
            if item.deaths < DEATH_LIMIT {
                free.push(item);
            } else {
                job.deliver(
                    item.index,
                    Err(ItemError::WorkerDied {
                        worker,
                        status,
                        attempts: item.attempts,
                    }),
                );
            }
        }
        Miss::TimedOut(after) => {
            if policy_allows && job.policy.retries_timeouts() {
                retry.push(item);
            } else {
                job.deliver(
                    item.index,
                    Err(ItemError::TimedOut {
                        after,
                        attempts: item.attempts,
                    }),
                );
            }
        }
        Miss::Failed(failure) => {
            if policy_allows && failure.retryable {
                retry.push(item);
            } else {
                let attempts = item.attempts;
                let message = failure.message;
                let error = match failure.kind {
                    FailureKind::Panicked => ItemError::Panicked { message, attempts },
                    FailureKind::Failed => ItemError::Failed { message, attempts },
                };
                job.deliver(item.index, Err(error));
            }
        }
    }
}

/// Settles `item` with the outcome the worker reported.
fn settle(job: &Job, item: Item, outcome: Outcome, retry: &mut Vec<Item>, free: &mut Vec<Item>) {
    match outcome {
        Outcome::Done { type_name, bytes } => {
            job.deliver(item.index, Ok(Value::from_encoded(type_name, bytes)));
        }
        Outcome::Failed(failure) => settle_miss(job, item, Miss::Failed(failure), retry, free),
    }
}

/// How many chunks in a row an item may see end before they reach a
/// worker (each worker dying, or killed, as it takes them) before it
/// fails as unrunnable: the pool does not start workers without end for
/// work that never gets to run.
const UNDELIVERED_LIMIT: u32 = 8;

/// Re-queues `items`, whose chunk never reached its worker, at no cost
/// to their attempts — up to [`UNDELIVERED_LIMIT`] times in a row, after
/// a wait that doubles with each (as between replacements that fail to
/// start, from [`REPLACE_BACKOFF`]): workers killed as fast as they start
/// (a storm of kills) would otherwise use up the limit in milliseconds.
fn undelivered(job: &Job, items: Vec<Item>, e: &WorkerError, free: &mut Vec<Item>) {
    let most = items.iter().map(|i| i.undelivered + 1).max().unwrap_or(0);
    // No wait for a job nobody waits for (its items are dropped).
    if (1..UNDELIVERED_LIMIT).contains(&most) && !job.cancelled.load(Ordering::Acquire) {
        let wait = REPLACE_BACKOFF.saturating_mul(1 << (most - 1));
        thread::sleep(wait.min(REPLACE_BACKOFF_MAX));
    }
    for mut item in items {
        item.undelivered += 1;
        if item.undelivered < UNDELIVERED_LIMIT {
            free.push(item);
        } else {
            job.deliver(
                item.index,
                Err(ItemError::Unrunnable {
                    message: format!(
                        "its workers ended {} times in a row before it reached them, the last: {}",
                        item.undelivered,
                        sk_core::error_chain(e)
                    ),
                }),
            );
        }
    }
}

/// `item`, whose chunk reached a worker: that ends its row of chunks
/// that did not (see [`UNDELIVERED_LIMIT`]).
fn reached(mut item: Item) -> Item {
    item.undelivered = 0;
    item
}

/// Fails every item with `message` (the chunk could not run at all).
fn unrunnable(job: &Job, items: Vec<Item>, message: &str) {
    for item in items {
        job.deliver(
            item.index,
            Err(ItemError::Unrunnable {
                message: message.to_owned(),
            }),
        );
    }
}

/// The loop of the driver of slot `slot`.
pub(crate) fn drive(shared: Arc<Shared>, slot: usize, mut worker: Worker) {
    let mut generation = 0u32;
    while let Ok(Msg::Task(task)) = shared.inbox.recv() {
        if task.job.cancelled.load(Ordering::Acquire) || shared.closing.load(Ordering::Acquire) {
            continue;
        }
        if let Err(e) = ensure_live(&shared, slot, &mut generation, &mut worker) {
            // Nothing ran: the items' attempts and deaths are untouched.
            unrunnable(&task.job, task.items, &sk_core::error_chain(&e));
            continue;
        }
        let killed = run_task(&shared, &worker, task);
        // Replace a worker that died (or was killed for a timeout) now, so
        // the pool is whole again before the next chunk arrives. A killed
        // process may not be reaped yet, hence `killed`.
        if (killed || !worker.is_alive()) && !shared.closing.load(Ordering::Acquire) {
            if let Ok(w) = replace(&shared, slot, &mut generation) {
                worker = w;
            }
        }
    }
    worker.stop(Duration::from_secs(2));
}

/// Replaces `worker` while it is dead: a replacement that dies (or is
/// killed) while starting costs the items nothing, and another is started
/// after a short wait. An error when [`REPLACE_LIMIT`] starts in a row
/// failed, or at once when the program cannot start workers at all.
fn ensure_live(
    shared: &Shared,
    slot: usize,
    generation: &mut u32,
    worker: &mut Worker,
) -> Result<(), WorkerError> {
    let mut failures = 0;
    let mut wait = REPLACE_BACKOFF;
    while !worker.is_alive() {
        match replace(shared, slot, generation) {
            Ok(w) => *worker = w,
            Err(e @ WorkerError::MissingInit { .. }) => return Err(e),
            Err(e) => {
                failures += 1;
                if failures >= REPLACE_LIMIT || shared.closing.load(Ordering::Acquire) {
                    return Err(e);
                }
                thread::sleep(wait);
                wait = (wait * 2).min(REPLACE_BACKOFF_MAX);
            }
        }
    }
    Ok(())
}

fn replace(shared: &Shared, slot: usize, generation: &mut u32) -> Result<Worker, WorkerError> {
    *generation += 1;
    let name = format!("{}-{slot}.{generation}", shared.name);
    let worker = Worker::spawn(name, shared.backend)?;
    if let Some(current) = shared.workers.lock().get_mut(slot) {
        *current = worker.clone();
    }
    shared.replaced.fetch_add(1, Ordering::Relaxed);
    Ok(worker)
}

/// Runs one chunk on `worker` and settles all of its items; `true` when
/// the worker was killed for a timeout.
fn run_task(shared: &Arc<Shared>, worker: &Worker, task: Task) -> bool {
    let Task { job, items, stream } = task;
    let chunk = shared.next_chunk.fetch_add(1, Ordering::Relaxed);
    // Bound as the batch's declared `Vec<Args>` (a `Vec<&Args>` would carry
    // another type name).
    let payload: Vec<Args> = items.iter().map(|i| i.args.clone()).collect();
    let call = Args::new()
        .with("function", &job.function)
        .and_then(|a| a.with("chunk", &chunk))
        .and_then(|a| a.with("items", &payload))
        .and_then(|a| a.with("stream", &stream));
    let call = match call {
        Ok(call) => call,
        Err(e) => {
            unrunnable(&job, items, &sk_core::error_chain(&e));
            return false;
        }
    };
    let pending = match worker.submit(&shared.batch, &call) {
        Ok(p) => p,
        // The worker ended before the call reached it: nothing ran.
        Err(e) if e.never_ran() => {
            let mut free = Vec::new();
            undelivered(&job, items, &e, &mut free);
            shared.requeue(Task {
                job,
                items: free,
                stream: true,
            });
            return false;
        }
        Err(e) => {
            unrunnable(&job, items, &sk_core::error_chain(&e));
            return false;
        }
    };
    let mut retry = Vec::new();
    let mut free = Vec::new();
    let mut killed = false;
    if stream {
        killed = run_streaming(
            shared, worker, &job, chunk, items, pending, &mut retry, &mut free,
        );
    } else {
        settle_batch(&job, items, pending.wait(None), &mut retry, &mut free);
    }
    shared.requeue(Task {
        job: Arc::clone(&job),
        items: free,
        stream: true,
    });
    shared.retry_later(&job, retry);
    killed
}

/// Settles the items of a chunk run as one batch call that answered
/// `answer`.
fn settle_batch(
    job: &Job,
    items: Vec<Item>,
    answer: Result<Value, WorkerError>,
    retry: &mut Vec<Item>,
    free: &mut Vec<Item>,
) {
    match answer {
        Ok(value) => match value.take::<Vec<Outcome>>() {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for item in items {
                    match outcomes.next() {
                        Some(outcome) => settle(job, item, outcome, retry, free),
                        // The batch stopped early: not run, re-run free.
                        None => free.push(reached(item)),
                    }
                }
            }
            Err(e) => unrunnable(job, items, &sk_core::error_chain(&e)),
        },
        // Which item killed it is unknown: re-run the chunk item by
        // item, where a death is pinned on the item that was running.
        Err(e) if e.never_ran() => undelivered(job, items, &e, free),
        Err(e) if e.is_retryable() => free.extend(items.into_iter().map(reached)),
        Err(e) => unrunnable(job, items, &sk_core::error_chain(&e)),
    }
}

/// Runs a streaming chunk: outcomes arrive one item at a time; the item
/// after the last reported one is the running one, timed from that report.
/// `true` when the worker was killed for a timeout.
#[allow(clippy::too_many_arguments)]
fn run_streaming(
    shared: &Arc<Shared>,
    worker: &Worker,
    job: &Arc<Job>,
    chunk: u64,
    items: Vec<Item>,
    pending: crate::worker::PendingCall,
    retry: &mut Vec<Item>,
    free: &mut Vec<Item>,
) -> bool {
    let (done_tx, done_rx) = channel::bounded(1);
    let waiter = thread::Builder::new()
        .name(format!("sk-pool-wait:{}", worker.name()))
        .spawn(move || {
            let _ = done_tx.send(pending.wait(None));
        });
    if waiter.is_err() {
        // Cannot watch the call: end the worker so nothing hangs, and re-run.
        worker.kill();
        free.extend(items);
        return true;
    }
    let mut items = items.into_iter().peekable();
    let mut next_offset = 0u32;
    let mut started = Instant::now();
    let take_report = |report: Report,
                       items: &mut std::iter::Peekable<std::vec::IntoIter<Item>>,
                       next_offset: &mut u32,
                       retry: &mut Vec<Item>,
                       free: &mut Vec<Item>| {
        if report.chunk != chunk || report.offset != *next_offset {
            return false;
        }
        let Some(item) = items.next() else {
            return false;
        };
        *next_offset += 1;
        settle(job, item, report.outcome, retry, free);
        true
    };
    let ended = loop {
        let wait = match job.item_timeout {
            Some(limit) => limit.saturating_sub(started.elapsed()).min(POLL),
            None => POLL,
        };
        // A message that is not a report (the user's own) is not ours.
        if let Ok(Some(report)) = worker.listen::<Report>(wait) {
            if take_report(report, &mut items, &mut next_offset, retry, free) {
                started = Instant::now();
            }
            continue;
        }
        if let Ok(done) = done_rx.try_recv() {
            break Some(done);
        }
        if items.peek().is_none() {
            // Every item reported; the call's answer follows at once.
            break done_rx.recv_timeout(Duration::from_secs(10)).ok();
        }
        if let Some(limit) = job.item_timeout {
            if started.elapsed() >= limit {
                worker.kill();
                settle_timed_out(job, items, limit, retry, free);
                return true;
            }
        }
        if shared.closing.load(Ordering::Acquire) && !worker.is_alive() {
            break None;
        }
    };
    // Reports sent before the call ended may still be queued.
    let drain = match &ended {
        Some(Ok(_)) => Duration::ZERO,
        _ => DRAIN,
    };
    while let Ok(Some(report)) = worker.listen::<Report>(drain) {
        take_report(report, &mut items, &mut next_offset, retry, free);
    }
    settle_rest(job, items, ended, worker.name(), retry, free);
    false
}

/// Settles the items of a streaming chunk that timed out: the running
/// one (the first of `items`) missed its attempt; the rest never started.
fn settle_timed_out(
    job: &Job,
    mut items: impl Iterator<Item = Item>,
    limit: Duration,
    retry: &mut Vec<Item>,
    free: &mut Vec<Item>,
) {
    if let Some(item) = items.next() {
        settle_miss(job, item, Miss::TimedOut(limit), retry, free);
    }
    free.extend(items.map(reached));
}

/// Settles the items of a streaming chunk that the worker `worker` had
/// not reported when the call `ended` (`None`: the pool is closing and
/// the worker is gone).
fn settle_rest(
    job: &Job,
    mut items: impl Iterator<Item = Item>,
    ended: Option<Result<Value, WorkerError>>,
    worker: &str,
    retry: &mut Vec<Item>,
    free: &mut Vec<Item>,
) {
    match ended {
        // Items the batch did not report (it stopped early): re-run, at
        // no cost.
        Some(Ok(_)) => free.extend(items.map(reached)),
        // The pool is closing and the worker is gone: whether the batch
        // reached it is unknown, so the row goes on.
        None => free.extend(items),
        Some(Err(e)) if e.never_ran() => undelivered(job, items.collect(), &e, free),
        Some(Err(e)) if e.is_retryable() => {
            // The item after the last report was running when the worker
            // died: that attempt counts; the rest never started.
            let status = match &e {
                WorkerError::Died { status, .. } => status.clone(),
                other => sk_core::error_chain(other),
            };
            if let Some(item) = items.next() {
                let miss = Miss::Died {
                    worker: worker.to_owned(),
                    status,
                };
                settle_miss(job, item, miss, retry, free);
            }
            free.extend(items.map(reached));
        }
        Some(Err(e)) => unrunnable(job, items.collect(), &sk_core::error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Item {
            index: 0,
            args: Args::new(),
            undelivered: 0,
            attempts: 0,
            deaths: 0,
        }
    }

    /// A cancelled job, so `undelivered` does not wait: the counts are
    /// the same.
    fn job() -> (Job, channel::Receiver<Delivery>) {
        let (results, rx) = channel::unbounded();
        let job = Job {
            function: SkFunction::builder(crate::pool::child::BATCH)
                .build()
                .expect("the batch function is registered"),
            results,
            cancelled: AtomicBool::new(true),
            policy: RetryPolicy::never(),
            item_timeout: None,
        };
        (job, rx)
    }

    fn died() -> WorkerError {
        WorkerError::Died {
            worker: "w".into(),
            pid: 1,
            status: "killed".into(),
        }
    }

    /// Misses `n` chunks in a row; the item, if it is still to run.
    fn miss(job: &Job, mut item: Item, n: u32) -> Option<Item> {
        for _ in 0..n {
            let mut free = Vec::new();
            undelivered(job, vec![item], &died(), &mut free);
            item = free.pop()?;
        }
        Some(item)
    }

    #[test]
    fn an_item_fails_as_unrunnable_after_its_limit_of_missed_chunks_in_a_row() {
        let (job, rx) = job();
        let item = miss(&job, item(), UNDELIVERED_LIMIT - 1).expect("still to run");
        assert!(miss(&job, item, 1).is_none());
        let (_, result) = rx.try_recv().expect("delivered");
        assert!(
            matches!(result, Err(ItemError::Unrunnable { ref message }) if message.contains("8 times in a row")),
            "{result:?}"
        );
    }

    #[test]
    fn a_chunk_that_reaches_a_worker_ends_the_row_of_missed_chunks() {
        let (job, rx) = job();
        let item = miss(&job, item(), UNDELIVERED_LIMIT - 1).expect("still to run");
        // It reaches a worker, which dies running it (an attempt).
        let (mut retry, mut free) = (Vec::new(), Vec::new());
        let miss_died = Miss::Died {
            worker: "w".into(),
            status: "killed".into(),
        };
        settle_miss(&job, item, miss_died, &mut retry, &mut free);
        let item = free.pop().expect("re-run after one death");
        // A new row of misses: as long as the first, and it still runs.
        let item = miss(&job, item, UNDELIVERED_LIMIT - 1).expect("a new row, not the old one");
        assert_eq!(item.deaths, 1);
        assert!(rx.try_recv().is_err(), "nothing delivered");
    }

    /// Three items, each after `missed` chunks in a row that missed.
    fn items(missed: u32) -> Vec<Item> {
        (0..3)
            .map(|index| Item {
                index,
                undelivered: missed,
                ..item()
            })
            .collect()
    }

    fn not_delivered() -> WorkerError {
        WorkerError::NotDelivered {
            worker: "w".into(),
            pid: 1,
            status: "killed".into(),
        }
    }

    /// The rows of misses of the items left to run, by index.
    fn rows(free: &[Item]) -> Vec<(usize, u32)> {
        let mut rows: Vec<_> = free.iter().map(|i| (i.index, i.undelivered)).collect();
        rows.sort_unstable();
        rows
    }

    #[test]
    fn a_batch_that_reached_its_worker_ends_every_items_row() {
        let (job, _rx) = job();
        // It stopped before reporting any item.
        let (mut retry, mut free) = (Vec::new(), Vec::new());
        let none: Vec<Outcome> = Vec::new();
        settle_batch(&job, items(5), Ok(Value::new(none)), &mut retry, &mut free);
        assert_eq!(rows(&free), [(0, 0), (1, 0), (2, 0)]);
        // Its worker died running it.
        let mut free = Vec::new();
        settle_batch(&job, items(5), Err(died()), &mut retry, &mut free);
        assert_eq!(rows(&free), [(0, 0), (1, 0), (2, 0)]);
        // It never reached its worker: the row goes on.
        let mut free = Vec::new();
        settle_batch(&job, items(5), Err(not_delivered()), &mut retry, &mut free);
        assert_eq!(rows(&free), [(0, 6), (1, 6), (2, 6)]);
        assert!(retry.is_empty());
    }

    #[test]
    fn a_stream_that_reached_its_worker_ends_the_rows_of_the_items_it_left() {
        let (job, rx) = job();
        let settled = |ended: Option<Result<Value, WorkerError>>| {
            let (mut retry, mut free) = (Vec::new(), Vec::new());
            settle_rest(
                &job,
                items(5).into_iter(),
                ended,
                "w",
                &mut retry,
                &mut free,
            );
            assert!(retry.is_empty());
            rows(&free)
        };
        // The call ended before it reported them (it stopped early).
        assert_eq!(settled(Some(Ok(Value::new(())))), [(0, 0), (1, 0), (2, 0)]);
        // The worker died running the first: a death for it, and a row
        // ended for all.
        assert_eq!(settled(Some(Err(died()))), [(0, 0), (1, 0), (2, 0)]);
        // It never reached its worker: the row goes on.
        assert_eq!(
            settled(Some(Err(not_delivered()))),
            [(0, 6), (1, 6), (2, 6)]
        );
        // Closing, the worker gone: unknown, so the row stays as it was.
        assert_eq!(settled(None), [(0, 5), (1, 5), (2, 5)]);
        assert!(rx.try_recv().is_err(), "nothing delivered");
        // A timed-out stream: its running item's attempt is used up (the
        // policy allows no retry); the rest reached the worker.
        let (mut retry, mut free) = (Vec::new(), Vec::new());
        let limit = Duration::from_millis(1);
        settle_timed_out(&job, items(5).into_iter(), limit, &mut retry, &mut free);
        assert_eq!(rows(&free), [(1, 0), (2, 0)]);
        let (index, result) = rx.try_recv().expect("the timed-out item");
        assert_eq!(index, 0);
        assert!(
            matches!(result, Err(ItemError::TimedOut { .. })),
            "{result:?}"
        );
    }
}
