//! The coordinator: a run's side of remote parts ([`Coordinator`], the
//! [`RemoteRunner`] sk-cycle calls).
//!
//! Each attempt is published to its group's subject with `Nats-Msg-Id` =
//! run/iteration/part/attempt by a task on the bridge; no thread waits
//! for it. A
//! listener on the bridge reads the run's results from the results
//! stream (from its start: a restarted coordinator finds the answers
//! that came while it was gone) and hands each to the attempt waiting
//! for it. An answer nobody waits for — late (the attempt was given up
//! on), duplicate (a redelivered part ran twice) or for another attempt
//! — is dropped: each attempt is answered at most once, and the engine
//! records each part's end once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use parking_lot::Mutex;
use sk_core::{StopToken, Value};
use sk_cycle::{RemoteCall, RemoteDone, RemoteFailure, RemoteRunner};

use crate::broker::{Bridge, Broker, Connection, GroupConfig, run_token};
use crate::error::{RemoteError, check_group};
use crate::wire::{self, Cancel, Outcome, Reply, Work};

/// (iteration, part, attempt).
type Key = (u64, String, u32);

/// How many answers nobody waits for a run keeps before it forgets those
/// of iterations before the latest sent.
const EARLY_LIMIT: usize = 10_000;

/// How long an attempt is sent again while the broker takes none before
/// it fails as unavailable.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);

/// How long a stopped run's last words to the broker may take.
const END_LIMIT: Duration = Duration::from_secs(5);

/// Sends a run's remote parts to their groups' workers through NATS
/// JetStream, and hears their answers (see the [crate docs](crate)).
///
/// One coordinator serves any number of runs, one after another or at
/// once; give it to each with [`Run::remote`](sk_cycle::Run::remote).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    groups: Mutex<HashMap<String, GroupConfig>>,
    grace: Mutex<Option<Duration>>,
    runs: Mutex<HashMap<String, Arc<RunState>>>,
    /// When each group may send its next part (rate limits, across the
    /// coordinator's runs).
    next_send: Mutex<HashMap<String, Instant>>,
    /// Last: the client's tasks stop with it.
    bridge: Bridge,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("url", &self.inner.conn.url)
            .finish_non_exhaustive()
    }
}

/// One run's state.
struct RunState {
    run: String,
    token: String,
    /// The attempts out and the answers nobody waits for, under one lock
    /// (an answer and its attempt's submission may cross).
    calls: Mutex<Calls>,
    /// The work stream's sequence of the run's last published attempt.
    last_seq: AtomicU64,
    /// Stops the results listener.
    stop_listener: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    groups: Vec<String>,
    /// The stop tokens of the run's calls, each watched by a task.
    stops: Mutex<Vec<StopToken>>,
    ended: std::sync::atomic::AtomicBool,
}

/// A run's attempts out, and early answers.
#[derive(Default)]
struct Calls {
    waiting: HashMap<Key, Waiting>,
    /// Answers that came before their attempt was asked for (a restarted
    /// coordinator's results replayed), or after it was given up on.
    early: HashMap<Key, Reply>,
    /// The latest iteration an attempt was sent for.
    latest: u64,
}

/// An attempt out.
struct Waiting {
    done: RemoteDone,
    /// Its message's stream sequence, once published.
    sequence: Option<u64>,
    /// Wakes its timeout task when it ends otherwise.
    ended: Arc<tokio::sync::Notify>,
}

impl RunState {
    /// Hands `reply` to the attempt waiting for it, or keeps it for one
    /// asked for later.
    fn deliver(&self, reply: Reply) {
        if reply.run != self.run {
            return;
        }
        let key = (reply.iteration, reply.part.clone(), reply.attempt);
        let waiter = {
            let mut calls = self.calls.lock();
            match calls.waiting.remove(&key) {
                Some(waiter) => waiter,
                None => {
                    if calls.early.len() >= EARLY_LIMIT {
                        // Answers for iterations already over are late,
                        // never early: forget them.
                        let latest = calls.latest;
                        calls.early.retain(|k, _| k.0 + 1 >= latest);
                    }
                    if calls.early.len() < EARLY_LIMIT * 2 {
                        calls.early.insert(key, reply);
                    }
                    return;
                }
            }
        };
        waiter.ended.notify_one();
        (waiter.done)(answer(reply));
    }

    /// Registers attempt `key` (the notice its end gives), or answers it
    /// at once from an early answer (then `None`).
    fn wait_for(&self, key: &Key, done: RemoteDone) -> Option<Arc<tokio::sync::Notify>> {
        let early = {
            let mut calls = self.calls.lock();
            calls.latest = calls.latest.max(key.0);
            match calls.early.remove(key) {
                Some(reply) => Some((reply, done)),
                None => {
                    let ended = Arc::new(tokio::sync::Notify::new());
                    calls.waiting.insert(
                        key.clone(),
                        Waiting {
                            done,
                            sequence: None,
                            ended: Arc::clone(&ended),
                        },
                    );
                    return Some(ended);
                }
            }
        };
        if let Some((reply, done)) = early {
            done(answer(reply));
        }
        None
    }

    /// Whether attempt `key` still waits.
    fn is_waiting(&self, key: &Key) -> bool {
        self.calls.lock().waiting.contains_key(key)
    }

    /// Notes the stream sequence attempt `key` was published at.
    fn published(&self, key: &Key, sequence: u64) {
        if let Some(w) = self.calls.lock().waiting.get_mut(key) {
            w.sequence = Some(sequence);
        }
    }

    /// The waiting attempt published at `sequence`.
    fn at_sequence(&self, sequence: u64) -> Option<Key> {
        self.calls
            .lock()
            .waiting
            .iter()
            .find(|(_, w)| w.sequence == Some(sequence))
            .map(|(k, _)| k.clone())
    }

    /// Ends attempt `key` with `result`, if it still waits; whether it did.
    fn end(&self, key: &Key, result: Result<Value, RemoteFailure>) -> bool {
        let waiter = self.calls.lock().waiting.remove(key);
        match waiter {
            Some(waiter) => {
                waiter.ended.notify_one();
                (waiter.done)(result);
                true
            }
            None => false,
        }
    }

    /// Ends every waiting attempt with `failure`.
    fn end_all(&self, failure: &RemoteFailure) {
        let waiting: Vec<Waiting> = self.calls.lock().waiting.drain().map(|(_, w)| w).collect();
        for waiter in waiting {
            waiter.ended.notify_one();
            (waiter.done)(Err(failure.clone()));
        }
    }
}

impl Coordinator {
    /// Connects to `broker` and makes sure its streams exist.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Connect`] naming the URL when the server cannot be
    /// reached in time; [`RemoteError::JetStream`] when it has no
    /// JetStream or refuses the streams.
    pub fn connect(broker: &Broker) -> Result<Coordinator, RemoteError> {
        let bridge = Bridge::start("sk-remote:coordinator")?;
        let conn = broker.connect(&bridge)?;
        let ensure = conn.clone();
        bridge.run(async move { ensure.ensure_streams().await })??;
        let coordinator = Coordinator {
            inner: Arc::new(Inner {
                conn,
                groups: Mutex::new(HashMap::new()),
                grace: Mutex::new(None),
                runs: Mutex::new(HashMap::new()),
                next_send: Mutex::new(HashMap::new()),
                bridge,
            }),
        };
        let weak = Arc::downgrade(&coordinator.inner);
        let client = coordinator.inner.conn.client.clone();
        let subject = coordinator.inner.conn.names.max_deliveries_advisories();
        coordinator
            .inner
            .bridge
            .spawn(async move { hear_max_deliveries(weak, client, subject).await });
        Ok(coordinator)
    }

    /// Sets how `group`'s parts are delivered (see [`GroupConfig`]); the
    /// group's consumer takes it when a run with the group starts.
    ///
    /// # Errors
    ///
    /// [`RemoteError::BadGroup`] when the name cannot be a subject token.
    pub fn group(&self, group: &str, config: GroupConfig) -> Result<&Self, RemoteError> {
        check_group(group)?;
        self.inner.groups.lock().insert(group.to_owned(), config);
        Ok(self)
    }

    /// How long past a part's timeout an attempt is waited for before it
    /// is given up on as timed out (its worker may be dead or cut off;
    /// default: the group's ack wait plus 2 s).
    pub fn timeout_grace(&self, grace: Duration) -> &Self {
        *self.inner.grace.lock() = Some(grace);
        self
    }

    fn config(&self, group: &str) -> GroupConfig {
        self.inner
            .groups
            .lock()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    fn state(&self, run: &str) -> Option<Arc<RunState>> {
        self.inner.runs.lock().get(run).cloned()
    }

    /// Watches `stop` for `state`'s run (once per distinct token): when it
    /// is stopped, every waiting attempt ends stopped and the workers are
    /// told.
    fn watch(&self, state: &Arc<RunState>, stop: &StopToken) {
        {
            let mut stops = state.stops.lock();
            if stops.iter().any(|s| s.same_as(stop)) {
                return;
            }
            stops.push(stop.clone());
        }
        let (state, stop, inner) = (Arc::clone(state), stop.clone(), Arc::clone(&self.inner));
        self.inner.bridge.spawn(async move {
            while !state.ended.load(Ordering::Acquire) {
                if stop.is_stopped() {
                    state.end_all(&RemoteFailure::Stopped);
                    cancel(&inner, &state, None).await;
                    return;
                }
                tokio::time::sleep(STOP_POLL).await;
            }
        });
    }
}

/// How often a run's stop token is looked at.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Tells the workers to drop attempts of `state`'s run (all, or one).
async fn cancel(inner: &Inner, state: &RunState, attempt: Option<Key>) {
    let notice = Cancel {
        upto: state.last_seq.load(Ordering::Acquire),
        attempt,
    };
    let Ok(payload) = wire::encode(&notice) else {
        return;
    };
    let subject = inner.conn.names.cancel_subject(&state.token);
    let _ = inner.conn.client.publish(subject, payload.into()).await;
    let _ = inner.conn.client.flush().await;
}

impl RemoteRunner for Coordinator {
    fn start_run(
        &self,
        run: &str,
        _cycle: &str,
        groups: &[&str],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for group in groups {
            check_group(group)?;
        }
        let conn = self.inner.conn.clone();
        let configs: Vec<(String, GroupConfig)> = groups
            .iter()
            .map(|g| ((*g).to_owned(), self.config(g)))
            .collect();
        let token = run_token(run);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(RunState {
            run: run.to_owned(),
            token: token.clone(),
            calls: Mutex::new(Calls::default()),
            last_seq: AtomicU64::new(0),
            stop_listener: Mutex::new(Some(stop_tx)),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            stops: Mutex::new(Vec::new()),
            ended: std::sync::atomic::AtomicBool::new(false),
        });
        let listener_state = Arc::clone(&state);
        self.inner.bridge.run(async move {
            for (group, config) in &configs {
                conn.group_consumer(group, config, true).await?;
            }
            let results = conn
                .js
                .get_stream(&conn.names.results_stream)
                .await
                .map_err(conn.failed("find the results stream"))?;
            let name = conn.names.results_consumer(&token);
            // From the start of the run's results, whatever an earlier
            // coordinator of this run had read.
            let _ = results.delete_consumer(&name).await;
            let config = results_consumer(&conn, &token);
            let consumer = results
                .create_consumer(config.clone())
                .await
                .map_err(conn.failed("create the run's results consumer"))?;
            tokio::spawn(listen(results, consumer, config, listener_state, stop_rx));
            Ok::<_, RemoteError>(())
        })??;
        self.inner.runs.lock().insert(run.to_owned(), state);
        Ok(())
    }

    fn submit(&self, call: RemoteCall, done: RemoteDone) {
        let Some(state) = self.state(&call.run) else {
            return done(Err(RemoteFailure::Unavailable(format!(
                "run \"{}\" was not started on this coordinator",
                call.run
            ))));
        };
        if call.stop.is_stopped() {
            return done(Err(RemoteFailure::Stopped));
        }
        self.watch(&state, &call.stop);
        let key: Key = (call.iteration, call.part.to_string(), call.attempt);
        let Some(ended) = state.wait_for(&key, done) else {
            return;
        };
        let config = self.config(&call.group);
        let inner = Arc::clone(&self.inner);
        self.inner
            .bridge
            .spawn(async move { send(inner, state, call, config, key, ended).await });
    }

    fn end_run(&self, run: &str) {
        let Some(state) = self.inner.runs.lock().remove(run) else {
            return;
        };
        state.ended.store(true, Ordering::Release);
        if let Some(stop) = state.stop_listener.lock().take() {
            let _ = stop.send(());
        }
        state.end_all(&RemoteFailure::Stopped);
        let conn = self.inner.conn.clone();
        let inner = Arc::clone(&self.inner);
        let cancelled = Arc::clone(&state);
        let token = state.token.clone();
        let groups = state.groups.clone();
        // Left-overs of the run (attempts given up on, results not read)
        // are dropped from the broker.
        let _ = self.inner.bridge.run(async move {
            let tidy = async {
                cancel(&inner, &cancelled, None).await;
                if let Ok(results) = conn.js.get_stream(&conn.names.results_stream).await {
                    let _ = results
                        .delete_consumer(&conn.names.results_consumer(&token))
                        .await;
                    let _ = results
                        .purge()
                        .filter(conn.names.result_subject(&token))
                        .await;
                }
                if let Ok(work) = conn.js.get_stream(&conn.names.work_stream).await {
                    for group in &groups {
                        let _ = work
                            .purge()
                            .filter(conn.names.work_subject(group, &token))
                            .await;
                    }
                }
            };
            let _ = tokio::time::timeout(END_LIMIT, tidy).await;
        });
    }
}

/// Sends one attempt — at its group's pace, again until the broker takes
/// it — and, when it has a timeout, gives up on it after the timeout and
/// the grace.
async fn send(
    inner: Arc<Inner>,
    state: Arc<RunState>,
    call: RemoteCall,
    config: GroupConfig,
    key: Key,
    ended: Arc<tokio::sync::Notify>,
) {
    if let Some(per_sec) = config.rate_per_sec {
        let slot = {
            let mut next = inner.next_send.lock();
            let now = Instant::now();
            let slot = next.get(&*call.group).copied().unwrap_or(now).max(now);
            next.insert(
                call.group.to_string(),
                slot + Duration::from_secs_f64(1.0 / per_sec),
            );
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
    if call.stop.is_stopped() {
        state.end(&key, Err(RemoteFailure::Stopped));
        return;
    }
    let subject = inner.conn.names.work_subject(&call.group, &state.token);
    let timeout = call.timeout;
    let sent = Instant::now();
    let Some(sequence) = publish(&inner, &state, call, &config, &key, &subject).await else {
        return;
    };
    state.last_seq.fetch_max(sequence, Ordering::AcqRel);
    state.published(&key, sequence);
    let Some(timeout) = timeout else { return };
    let grace = inner
        .grace
        .lock()
        .unwrap_or(config.ack_wait + Duration::from_secs(2));
    let Some(deadline) = sent.checked_add(timeout.saturating_add(grace)) else {
        return;
    };
    tokio::select! {
        () = ended.notified() => {}
        () = tokio::time::sleep_until(deadline.into()) => {
            if state.end(&key, Err(RemoteFailure::TimedOut { after: timeout })) {
                cancel(&inner, &state, Some(key)).await;
            }
        }
    }
}

/// Publishes `call` as a [`Work`] message, again until the broker takes it
/// (or the attempt ends meanwhile, or patience runs out: then it is ended
/// here); its stream sequence.
///
/// A publish the broker calls a duplicate (the same attempt published by
/// an earlier coordinator of the run, within the duplicate window) is
/// left to the message already there while it is in the stream; when that
/// one is gone (answered — its answer comes from the kept results — or
/// dropped) and no answer came, the attempt is published again under an
/// id of its own, so that a reused run id never loses an attempt.
async fn publish(
    inner: &Inner,
    state: &RunState,
    call: RemoteCall,
    config: &GroupConfig,
    key: &Key,
    subject: &str,
) -> Option<u64> {
    let work = Work {
        run: call.run.to_string(),
        iteration: call.iteration,
        part: call.part.to_string(),
        attempt: call.attempt,
        function: call.function,
        args: call.args,
        timeout_ms: call
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        output: call.output,
        crash_limit: config.crash_limit,
        ack_wait_ms: u64::try_from(config.ack_wait.as_millis()).unwrap_or(u64::MAX),
    };
    let payload = match wire::encode(&work) {
        Ok(payload) => bytes::Bytes::from(payload),
        Err(e) => {
            let failure = RemoteFailure::Failed {
                message: format!("cannot encode the call: {e}"),
                retryable: false,
            };
            state.end(key, Err(failure));
            return None;
        }
    };
    let mut id = work.message_id();
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut republished = 0u32;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let error = match inner
            .conn
            .js
            .publish_with_headers(subject.to_owned(), headers, payload.clone())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(ack) if !ack.duplicate => return Some(ack.sequence),
                Ok(ack) => {
                    if still_queued(inner, ack.sequence).await || !state.is_waiting(key) {
                        return Some(ack.sequence);
                    }
                    republished += 1;
                    id = format!("{}/again{republished}", work.message_id());
                    continue;
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if !state.is_waiting(key) {
            return None; // ended meanwhile (stopped)
        }
        if started.elapsed() > PUBLISH_PATIENCE {
            let failure = RemoteFailure::Unavailable(format!(
                "the broker at {} took no part for {:?}: {error}",
                inner.conn.url, PUBLISH_PATIENCE
            ));
            state.end(key, Err(failure));
            return None;
        }
        tracing::debug!(%error, "publish failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Whether the work stream still holds the message at `sequence`.
async fn still_queued(inner: &Inner, sequence: u64) -> bool {
    let Ok(stream) = inner
        .conn
        .js
        .get_stream(&inner.conn.names.work_stream)
        .await
    else {
        // Cannot tell: keep the one there.
        return true;
    };
    stream.get_raw_message(sequence).await.is_ok()
}

/// What a worker's reply makes of the attempt.
fn answer(reply: Reply) -> Result<Value, RemoteFailure> {
    match reply.outcome {
        Outcome::Value {
            encoding,
            type_name,
            bytes,
        } => Value::from_any(encoding, type_name, bytes).map_err(|e| RemoteFailure::Failed {
            message: format!(
                "worker {} sent an output that does not decode: {e}",
                reply.worker
            ),
            retryable: false,
        }),
        Outcome::Failed { message, retryable } => Err(RemoteFailure::Failed { message, retryable }),
        Outcome::TimedOut { after_ms } => Err(RemoteFailure::TimedOut {
            after: Duration::from_millis(after_ms),
        }),
        Outcome::Poison { deliveries } => Err(RemoteFailure::Poison { deliveries }),
    }
}

/// The consumer of a run's results: all of them, from the start; each
/// acknowledged once handed on, so that one the listener lost (its
/// subscription dropped under it) comes again.
fn results_consumer(conn: &Connection, token: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(conn.names.results_consumer(token)),
        filter_subject: conn.names.result_subject(token),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(5),
        inactive_threshold: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// Reads the run's results until told to stop, resubscribing after
/// broker trouble (and making the consumer again if it is gone).
async fn listen(
    results: async_nats::jetstream::stream::Stream,
    mut consumer: consumer::Consumer<consumer::pull::Config>,
    config: consumer::pull::Config,
    state: Arc<RunState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut failures = 0u32;
    loop {
        let messages = tokio::select! {
            _ = &mut stop => return,
            messages = consumer.messages() => messages,
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, "results subscription failed; again");
                if failures % 5 == 0 {
                    if let Ok(again) = results
                        .get_or_create_consumer(
                            config.durable_name.as_deref().unwrap_or_default(),
                            config.clone(),
                        )
                        .await
                    {
                        consumer = again;
                    }
                }
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = &mut stop => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    failures = 0;
                    match wire::decode::<Reply>(&message.payload, "result") {
                        Ok(reply) => state.deliver(reply),
                        Err(error) => tracing::warn!(%error, "dropped a result"),
                    }
                    let _ = message.ack().await;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "results stream failed; resubscribing");
                    break;
                }
                None => break,
            }
        }
    }
}

/// What the broker says of a part past its group's MaxDeliver.
#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u32,
}

/// A backstop for poison parts: a part past MaxDeliver that no worker
/// answered as poison (its last workers died too) fails as poison, and its
/// message is dropped from the stream (the broker keeps it otherwise).
async fn hear_max_deliveries(
    inner: std::sync::Weak<Inner>,
    client: async_nats::Client,
    subject: String,
) {
    let mut advisories = match client.subscribe(subject).await {
        Ok(advisories) => advisories,
        Err(error) => {
            tracing::warn!(%error, "cannot hear max-deliveries advisories: a part no worker answers waits for its timeout");
            return;
        }
    };
    while let Some(message) = advisories.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let Ok(notice) = serde_json::from_slice::<MaxDeliveries>(&message.payload) else {
            continue;
        };
        let runs: Vec<Arc<RunState>> = inner.runs.lock().values().cloned().collect();
        for state in runs {
            if let Some(key) = state.at_sequence(notice.stream_seq) {
                state.end(
                    &key,
                    Err(RemoteFailure::Poison {
                        deliveries: notice.deliveries,
                    }),
                );
            }
        }
        if let Ok(work) = inner
            .conn
            .js
            .get_stream(&inner.conn.names.work_stream)
            .await
        {
            let _ = work.delete_message(notice.stream_seq).await;
        }
    }
}
