//! Remote workers: a process serving remote groups ([`RemoteWorker`]).
//!
//! Each group's shared pull consumer is fetched from with a pull request
//! always outstanding, asking for as many parts as there are free slots;
//! each part runs in a local worker process of this worker (one per
//! slot, so a part's timeout preempts it and a part that crashes takes
//! only its local process down). While it runs, in-progress acks keep
//! the broker from handing it to another worker; when it ends, its result
//! is published to the results stream, the publish acknowledged, and
//! only then is the work message acked. A part whose local process died
//! is handed back (a negative ack: it goes to another worker at once,
//! and counts as a delivery); one delivered more times than its crash
//! limit is not run but answered as a poison part.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use parking_lot::Mutex;
use sk_core::{StopToken, Value};
use sk_process::{Backend, CallOptions, Worker, WorkerError};

use crate::broker::{Bridge, Broker, Connection, GroupConfig, run_token};
use crate::error::{RemoteError, check_group};
use crate::wire::{self, Cancel, Outcome, Reply, Work};

/// A process serving remote parts for some groups.
///
/// Each group's shared pull consumer is fetched from with a pull request
/// always outstanding, asking for as many parts as there are free slots;
/// each part runs in a local worker process of this worker (one per
/// slot, so a part's timeout preempts it and a part that crashes takes
/// only its local process down). While it runs, in-progress acks keep
/// the broker from handing it to another worker; when it ends, its result
/// is published to the results stream, the publish acknowledged, and
/// only then is the work message acked. A part whose local process died
/// is handed back (a negative ack: it goes to another worker at once,
/// and counts as a delivery); one delivered more times than its crash
/// limit is not run but answered as a poison part.
#[derive(Clone, Debug)]
pub struct RemoteWorker {
    broker: Broker,
    groups: Vec<String>,
    slots: usize,
    name: String,
    backend: Backend,
    drain: Duration,
}

/// What a worker did, when it stops.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Parts run to an answer (output, failure or timeout).
    pub answered: u64,
    /// Parts handed back (their local process died, or the worker drained).
    pub handed_back: u64,
    /// Parts answered as poison without running.
    pub poison: u64,
    /// Parts dropped because their run was stopped.
    pub cancelled: u64,
}

/// Counts behind [`WorkerSummary`].
#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    handed_back: AtomicU64,
    poison: AtomicU64,
    cancelled: AtomicU64,
}

impl RemoteWorker {
    /// A worker for `broker`, with no group yet, one slot per CPU.
    pub fn new(broker: Broker) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".to_owned());
        RemoteWorker {
            broker,
            groups: Vec::new(),
            slots: std::thread::available_parallelism().map_or(1, usize::from),
            name: format!("{host}:{}", std::process::id()),
            backend: Backend::from_env(),
            drain: Duration::from_secs(30),
        }
    }

    /// Serves `group` too.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Runs at most `n` parts at once, each in a local worker process of
    /// its own (default: one per CPU).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.slots = n.max(1);
        self
    }

    /// The name results carry (default `<hostname>:<pid>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where parts run locally (default `SK_SPAWN_BACKEND`, else worker
    /// processes).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// On stop, how long parts in flight may take to finish before they
    /// are handed back to other workers (default 30 s).
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain = grace;
        self
    }

    /// Serves until `stop` is stopped, then drains: takes no new part,
    /// lets the parts in flight finish within the drain grace, hands the
    /// others back, and returns.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Usage`] with no group, [`RemoteError::BadGroup`],
    /// [`RemoteError::Connect`] naming the URL, [`RemoteError::JetStream`].
    pub fn run(self, stop: &StopToken) -> Result<WorkerSummary, RemoteError> {
        self.run_with(stop, |_| {})
    }

    /// As [`RemoteWorker::run`]; `ready` is called once the worker is
    /// connected and bound to its groups.
    ///
    /// # Errors
    ///
    /// As [`RemoteWorker::run`].
    pub fn run_with(
        self,
        stop: &StopToken,
        ready: impl FnOnce(&str),
    ) -> Result<WorkerSummary, RemoteError> {
        if self.groups.is_empty() {
            return Err(RemoteError::Usage("no group to serve (--group)".to_owned()));
        }
        for group in &self.groups {
            check_group(group)?;
        }
        let bridge = Bridge::start("sk-remote:worker")?;
        let conn = self.broker.connect(&bridge)?;
        let setup = conn.clone();
        let groups = self.groups.clone();
        let consumers = bridge.run(async move {
            setup.ensure_streams().await?;
            let mut consumers = Vec::new();
            for group in &groups {
                let mut consumer = setup
                    .group_consumer(group, &GroupConfig::default(), false)
                    .await?;
                let ack_wait = consumer
                    .info()
                    .await
                    .map(|info| info.config.ack_wait)
                    .unwrap_or(Duration::from_secs(1));
                consumers.push((consumer, ack_wait));
            }
            Ok::<_, RemoteError>(consumers)
        })??;
        let shared = Arc::new(Shared {
            conn,
            name: self.name.clone(),
            cancelled: Mutex::new(HashMap::new()),
            running: (0..self.slots).map(|_| Mutex::new(None)).collect(),
            counts: Counts::default(),
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            serving: std::sync::atomic::AtomicUsize::new(0),
            fetching: std::sync::atomic::AtomicUsize::new(0),
        });
        let (jobs, slot_rx) = crossbeam_channel::unbounded::<Job>();
        let mut slot_threads = Vec::new();
        for index in 0..self.slots {
            let rx = slot_rx.clone();
            let shared = Arc::clone(&shared);
            let backend = self.backend;
            let label = format!("{}:{index}", self.name);
            let thread = std::thread::Builder::new()
                .name(format!("sk-remote:slot:{index}"))
                .spawn(move || slot(index, &label, backend, &rx, &shared))
                .map_err(|e| RemoteError::Bridge(format!("cannot start a slot thread: {e}")))?;
            slot_threads.push(thread);
        }
        drop(slot_rx);
        let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
        // Each slot holds one part running and one waiting its turn, so
        // that a slot goes from one part to the next without a round
        // trip to the broker between (the waiting one is kept alive by
        // in-progress acks too, and handed back at once on a drain).
        let held = self.slots * PREFETCH;
        let permits = Arc::new(tokio::sync::Semaphore::new(held));
        let tasks = {
            let shared = Arc::clone(&shared);
            let permits = Arc::clone(&permits);
            let jobs = jobs.clone();
            bridge.run(async move {
                let mut tasks = Vec::new();
                tasks.push(tokio::spawn(hear_cancels(
                    Arc::clone(&shared),
                    stopped_rx.clone(),
                )));
                for (consumer, ack_wait) in consumers {
                    tasks.push(tokio::spawn(fetch_loop(
                        consumer,
                        ack_wait,
                        Arc::clone(&shared),
                        Arc::clone(&permits),
                        jobs.clone(),
                        held,
                        stopped_rx.clone(),
                    )));
                }
                tasks
            })?
        };
        ready(&self.name);
        while !stop.is_stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drain: no new part; those in flight get the grace, then are
        // handed back.
        let _ = stopped_tx.send(true);
        // First no part comes in any more (a part handed back must not
        // come back here), then the waiting ones go back.
        let fetch_deadline = Instant::now() + Duration::from_secs(5);
        while shared.fetching.load(Ordering::Acquire) > 0 && Instant::now() < fetch_deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        shared.stopping.store(true, Ordering::Release);
        let deadline = Instant::now() + self.drain;
        while shared.serving.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.draining.store(true, Ordering::Release);
        for running in shared.running.iter() {
            if let Some(run) = running.lock().as_ref() {
                run.worker.kill();
            }
        }
        let hand_back_deadline = Instant::now() + Duration::from_secs(10);
        while shared.serving.load(Ordering::Acquire) > 0 && Instant::now() < hand_back_deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(jobs);
        let client = shared.conn.client.clone();
        let _ = bridge.run(async move {
            for task in tasks {
                task.abort();
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        });
        for thread in slot_threads {
            let _ = thread.join();
        }
        let c = &shared.counts;
        Ok(WorkerSummary {
            answered: c.answered.load(Ordering::Relaxed),
            handed_back: c.handed_back.load(Ordering::Relaxed),
            poison: c.poison.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        })
    }
}

/// How long stop notices are kept (attempts are not sent again later).
const FORGET_STOPS: Duration = Duration::from_secs(3600);

/// How long a part no local process could be started for stays away.
const NO_SLOT_PAUSE: Duration = Duration::from_secs(2);

/// How many parts a slot holds: one running, the rest waiting.
const PREFETCH: usize = 2;

/// What the worker's tasks and slots share.
struct Shared {
    conn: Connection,
    name: String,
    /// Per run token: stop notices heard.
    cancelled: Mutex<HashMap<String, Stopped>>,
    /// Per slot: the attempt it runs.
    running: Box<[Mutex<Option<Running>>]>,
    counts: Counts,
    /// Stopping: parts not started yet are handed back.
    stopping: AtomicBool,
    /// Past the drain grace: parts running are handed back too.
    draining: AtomicBool,
    /// Parts being served (running, or their results going out).
    serving: std::sync::atomic::AtomicUsize,
    /// Fetch loops still taking parts.
    fetching: std::sync::atomic::AtomicUsize,
}

/// The stop notices of one run.
#[derive(Default)]
struct Stopped {
    /// Attempts published at or before this sequence are dropped.
    upto: u64,
    /// And these, up to their sequence (with when it was heard).
    attempts: HashMap<(u64, String, u32), (u64, Instant)>,
    heard: Option<Instant>,
}

impl Shared {
    /// Whether the attempt `key` of run `token`, at stream sequence `seq`,
    /// was stopped.
    fn is_cancelled(&self, token: &str, key: &(u64, String, u32), seq: u64) -> bool {
        self.cancelled.lock().get(token).is_some_and(|s| {
            seq <= s.upto || s.attempts.get(key).is_some_and(|&(upto, _)| seq <= upto)
        })
    }
}

/// An attempt running in a slot.
struct Running {
    token: String,
    key: (u64, String, u32),
    seq: u64,
    worker: Worker,
    cancelled: Arc<AtomicBool>,
}

/// An attempt handed to a slot.
struct Job {
    work: Work,
    token: String,
    seq: u64,
    done: tokio::sync::oneshot::Sender<Ran>,
}

/// How a slot's run of an attempt ended.
enum Ran {
    Answer(Outcome),
    /// Its local process died: hand it back.
    Crashed(String),
    /// No local process could be started for it: hand it back later.
    NoSlot(String),
    /// Its run was stopped.
    Cancelled,
}

/// A slot thread: runs attempts in its local worker process, one at a
/// time, starting a new process after one dies.
fn slot(
    index: usize,
    label: &str,
    backend: Backend,
    jobs: &crossbeam_channel::Receiver<Job>,
    shared: &Shared,
) {
    let mut local: Option<Worker> = None;
    let mut started = 0u64;
    while let Ok(job) = jobs.recv() {
        if shared.stopping.load(Ordering::Acquire) {
            let _ = job.done.send(Ran::Crashed(
                "handed back: the worker is stopping".to_owned(),
            ));
            continue;
        }
        let key = (job.work.iteration, job.work.part.clone(), job.work.attempt);
        if shared.is_cancelled(&job.token, &key, job.seq) {
            // Stopped while it waited its turn.
            let _ = job.done.send(Ran::Cancelled);
            continue;
        }
        let worker = match local.take().filter(Worker::is_alive) {
            Some(worker) => worker,
            None => {
                started += 1;
                match Worker::spawn(format!("{label}:{started}"), backend) {
                    Ok(worker) => worker,
                    // The program itself is wrong: that is the part's
                    // answer, not a reason to hand it on.
                    Err(e @ WorkerError::MissingInit { .. }) => {
                        let _ = job.done.send(Ran::Answer(Outcome::Failed {
                            message: error_chain(&e),
                            retryable: false,
                        }));
                        continue;
                    }
                    Err(e) => {
                        let _ = job.done.send(Ran::NoSlot(format!(
                            "cannot start a local worker process: {}",
                            error_chain(&e)
                        )));
                        continue;
                    }
                }
            }
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        *shared.running[index].lock() = Some(Running {
            token: job.token.clone(),
            key,
            seq: job.seq,
            worker: worker.clone(),
            cancelled: Arc::clone(&cancelled),
        });
        let options = CallOptions::new()
            .timeout(job.work.timeout_ms.map(Duration::from_millis))
            .output(job.work.output);
        let result = worker.call_with(
            &job.work.function,
            &job.work.args,
            options,
            &mut |_question| {
                Err("a remote part cannot read its run (store, outputs): it runs on another machine"
                    .to_owned())
            },
        );
        shared.running[index].lock().take();
        let ran = if cancelled.load(Ordering::Acquire) {
            Ran::Cancelled
        } else {
            outcome(result, shared.draining.load(Ordering::Acquire))
        };
        if worker.is_alive() && matches!(ran, Ran::Answer(_)) {
            local = Some(worker);
        } else {
            worker.kill();
        }
        let _ = job.done.send(ran);
    }
    if let Some(worker) = local {
        worker.stop(Duration::from_secs(2));
    }
}

/// What a local call's result makes of the attempt.
fn outcome(result: Result<Value, WorkerError>, draining: bool) -> Ran {
    match result {
        Ok(value) => match value.encode_any() {
            Ok((encoding, bytes)) => Ran::Answer(Outcome::Value {
                encoding,
                type_name: value.type_name().to_owned(),
                bytes,
            }),
            Err(e) => Ran::Answer(Outcome::Failed {
                message: format!("its output cannot be sent: {e}"),
                retryable: false,
            }),
        },
        Err(WorkerError::TimedOut { after, .. }) => Ran::Answer(Outcome::TimedOut {
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        }),
        Err(e @ WorkerError::Remote { .. }) => Ran::Answer(Outcome::Failed {
            retryable: e.is_retryable(),
            message: error_chain(&e),
        }),
        Err(e) if draining => Ran::Crashed(format!("handed back while draining: {e}")),
        Err(
            e @ (WorkerError::Died { .. }
            | WorkerError::Protocol { .. }
            | WorkerError::Closed { .. }
            | WorkerError::NotDelivered { .. }),
        ) => Ran::Crashed(error_chain(&e)),
        Err(e) => Ran::Answer(Outcome::Failed {
            retryable: e.is_retryable(),
            message: error_chain(&e),
        }),
    }
}

/// `e` and its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Hears stop notices, and stops the running attempts they name.
async fn hear_cancels(shared: Arc<Shared>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let subject = format!("{}.cancel.>", shared.conn.names.subject);
    let mut subscription = loop {
        match shared.conn.client.subscribe(subject.clone()).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    loop {
        let message = tokio::select! {
            _ = stopped.changed() => return,
            message = subscription.next() => message,
        };
        let Some(message) = message else { return };
        let Some(token) = message.subject.rsplit('.').next().map(str::to_owned) else {
            continue;
        };
        let Ok(notice) = wire::decode::<Cancel>(&message.payload, "stop") else {
            continue;
        };
        {
            let mut cancelled = shared.cancelled.lock();
            // Forget runs stopped long ago.
            cancelled.retain(|_, s| {
                s.heard
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
            });
            let entry = cancelled.entry(token.clone()).or_default();
            entry.heard = Some(Instant::now());
            match &notice.attempt {
                None => entry.upto = entry.upto.max(notice.upto),
                Some(key) => {
                    entry
                        .attempts
                        .retain(|_, (_, heard)| heard.elapsed() < FORGET_STOPS);
                    entry
                        .attempts
                        .insert(key.clone(), (notice.upto, Instant::now()));
                }
            }
        }
        for running in shared.running.iter() {
            if let Some(run) = running.lock().as_ref() {
                if run.token == token && shared.is_cancelled(&token, &run.key, run.seq) {
                    run.cancelled.store(true, Ordering::Release);
                    run.worker.kill();
                }
            }
        }
    }
}

/// Fetches a group's parts while there are free slots, until stopped.
async fn fetch_loop(
    consumer: consumer::Consumer<consumer::pull::Config>,
    ack_wait: Duration,
    shared: Arc<Shared>,
    permits: Arc<tokio::sync::Semaphore>,
    jobs: crossbeam_channel::Sender<Job>,
    slots: usize,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    shared.fetching.fetch_add(1, Ordering::AcqRel);
    fetch(consumer, ack_wait, &shared, permits, jobs, slots, stopped).await;
    shared.fetching.fetch_sub(1, Ordering::AcqRel);
}

/// [`fetch_loop`], counted.
async fn fetch(
    consumer: consumer::Consumer<consumer::pull::Config>,
    ack_wait: Duration,
    shared: &Arc<Shared>,
    permits: Arc<tokio::sync::Semaphore>,
    jobs: crossbeam_channel::Sender<Job>,
    slots: usize,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let first = tokio::select! {
            _ = stopped.changed() => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut held = vec![first];
        while held.len() < slots.min(512) {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => held.push(permit),
                Err(_) => break,
            }
        }
        // A pull request stays out until a part comes or it expires.
        let batch = consumer
            .batch()
            .max_messages(held.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::debug!(%error, "fetch failed; again");
                drop(held);
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        loop {
            // Stopping drops the pull request: nothing more comes here.
            let next = tokio::select! {
                _ = stopped.changed() => break,
                next = batch.next() => next,
            };
            let Some(Ok(message)) = next else { break };
            let Some(permit) = held.pop() else {
                // More than asked for: hand it back at once.
                let _ = message.ack_with(AckKind::Nak(None)).await;
                continue;
            };
            tokio::spawn(serve(
                message,
                ack_wait,
                Arc::clone(shared),
                jobs.clone(),
                permit,
            ));
        }
    }
}

/// Serves one delivered attempt (see the module docs).
async fn serve(
    message: jetstream::Message,
    ack_wait: Duration,
    shared: Arc<Shared>,
    jobs: crossbeam_channel::Sender<Job>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    shared.serving.fetch_add(1, Ordering::AcqRel);
    serve_one(message, ack_wait, &shared, jobs, permit).await;
    shared.serving.fetch_sub(1, Ordering::AcqRel);
}

/// [`serve`], counted.
async fn serve_one(
    message: jetstream::Message,
    ack_wait: Duration,
    shared: &Shared,
    jobs: crossbeam_channel::Sender<Job>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (delivered, seq) = match message.info() {
        Ok(info) => (
            u32::try_from(info.delivered).unwrap_or(u32::MAX),
            info.stream_sequence,
        ),
        Err(_) => (1, 0),
    };
    let work: Work = match wire::decode(&message.payload, "work") {
        Ok(work) => work,
        Err(error) => {
            // Nobody can be answered: drop it for good.
            tracing::warn!(%error, subject = %message.subject, "dropped a part");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let token = run_token(&work.run);
    let key = (work.iteration, work.part.clone(), work.attempt);
    if shared.is_cancelled(&token, &key, seq) {
        shared.counts.cancelled.fetch_add(1, Ordering::Relaxed);
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    let outcome = if delivered > work.crash_limit {
        shared.counts.poison.fetch_add(1, Ordering::Relaxed);
        Outcome::Poison {
            deliveries: delivered - 1,
        }
    } else {
        let (done, ran) = tokio::sync::oneshot::channel();
        let job = Job {
            work: work.clone(),
            token: token.clone(),
            seq,
            done,
        };
        let sent = jobs.send(job).is_ok();
        // The slot threads end once no task holds a sender.
        drop(jobs);
        if !sent {
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return;
        }
        // Signs of life while it runs.
        let mut ran = ran;
        // The shorter of the ack waits the consumer had at the start and
        // the group has now (the coordinator may have changed it).
        let wait = ack_wait.min(Duration::from_millis(work.ack_wait_ms.max(100)));
        let beat = (wait / 3).max(Duration::from_millis(30));
        let ran = loop {
            tokio::select! {
                ran = &mut ran => break ran,
                () = tokio::time::sleep(beat) => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        // The slot is free: the next part may start while this one's
        // result goes out.
        drop(permit);
        match ran {
            Ok(Ran::Answer(outcome)) => outcome,
            Ok(Ran::Cancelled) => {
                shared.counts.cancelled.fetch_add(1, Ordering::Relaxed);
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
            Ok(Ran::NoSlot(why)) => {
                // Not the part's fault: give others a chance first.
                tracing::warn!(%why, part = %work.part, "handing a part back");
                shared.counts.handed_back.fetch_add(1, Ordering::Relaxed);
                let _ = message.ack_with(AckKind::Nak(Some(NO_SLOT_PAUSE))).await;
                return;
            }
            crashed => {
                if let Ok(Ran::Crashed(why)) = crashed {
                    tracing::debug!(%why, part = %work.part, "handing a part back");
                }
                shared.counts.handed_back.fetch_add(1, Ordering::Relaxed);
                let _ = message.ack_with(AckKind::Nak(None)).await;
                return;
            }
        }
    };
    let reply = Reply {
        run: work.run.clone(),
        iteration: work.iteration,
        part: work.part.clone(),
        attempt: work.attempt,
        worker: shared.name.clone(),
        outcome,
    };
    let Ok(payload) = wire::encode(&reply) else {
        let _ = message.ack_with(AckKind::Nak(None)).await;
        return;
    };
    let payload = bytes::Bytes::from(payload);
    let subject = shared.conn.names.result_subject(&token);
    // One id per delivery of one message: a publish tried again is
    // dropped as a duplicate, a later run reusing the run id is not.
    let id = format!("{}@{seq}.{delivered}", work.message_id());
    // The result first, acknowledged; only then the part.
    let mut pause = Duration::from_millis(50);
    let started = Instant::now();
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let published = match shared
            .conn
            .js
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if published {
            break;
        }
        if started.elapsed() > ack_wait * 20 {
            // The broker stayed away; the part is redelivered (to us or
            // another worker) once it is back.
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return;
        }
        let _ = message.ack_with(AckKind::Progress).await;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    if !matches!(reply.outcome, Outcome::Poison { .. }) {
        shared.counts.answered.fetch_add(1, Ordering::Relaxed);
    }
    let _ = message.ack().await;
}
