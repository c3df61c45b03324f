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

/// How many early answers (arrived before their attempt was asked for)
/// a run keeps at most.
const EARLY_LIMIT: usize = 100_000;

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
    publish_patience: Duration,
    runs: Mutex<HashMap<String, Arc<RunState>>>,
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
    waiting: Mutex<HashMap<Key, RemoteDone>>,
    early: Mutex<HashMap<Key, Reply>>,
    /// The work stream's sequence of the run's last published attempt.
    last_seq: AtomicU64,
    /// Per waiting attempt, its message's stream sequence once published.
    sent: Mutex<HashMap<Key, u64>>,
    /// When each group may send its next part (rate limits).
    next_send: Mutex<HashMap<String, Instant>>,
    /// Stops the results listener.
    stop_listener: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    groups: Vec<String>,
    /// The stop tokens of the run's calls, each watched by a task.
    stops: Mutex<Vec<StopToken>>,
    ended: std::sync::atomic::AtomicBool,
}

impl RunState {
    /// Hands `reply` to the attempt waiting for it, if any.
    fn deliver(&self, reply: Reply) {
        if reply.run != self.run {
            return;
        }
        let key = (reply.iteration, reply.part.clone(), reply.attempt);
        let waiter = self.waiting.lock().remove(&key);
        if let Some(done) = waiter {
            self.sent.lock().remove(&key);
            done(answer(reply));
            return;
        }
        let mut early = self.early.lock();
        if early.len() >= EARLY_LIMIT {
            early.clear();
        }
        early.insert(key, reply);
    }

    /// Ends attempt `key` with `result`, if it still waits; whether it did.
    fn end(&self, key: &Key, result: Result<Value, RemoteFailure>) -> bool {
        let waiter = self.waiting.lock().remove(key);
        self.sent.lock().remove(key);
        match waiter {
            Some(done) => {
                done(result);
                true
            }
            None => false,
        }
    }

    /// Ends every waiting attempt with `failure`.
    fn end_all(&self, failure: &RemoteFailure) {
        let waiting: Vec<RemoteDone> = self.waiting.lock().drain().map(|(_, d)| d).collect();
        self.sent.lock().clear();
        for done in waiting {
            done(Err(failure.clone()));
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
                publish_patience: Duration::from_secs(60),
                runs: Mutex::new(HashMap::new()),
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
            waiting: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            last_seq: AtomicU64::new(0),
            sent: Mutex::new(HashMap::new()),
            next_send: Mutex::new(HashMap::new()),
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
            let consumer = results
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name),
                    filter_subject: conn.names.result_subject(&token),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::None,
                    inactive_threshold: Duration::from_secs(3600),
                    ..Default::default()
                })
                .await
                .map_err(conn.failed("create the run's results consumer"))?;
            tokio::spawn(listen(consumer, listener_state, stop_rx));
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
        let early = state.early.lock().remove(&key);
        if let Some(reply) = early {
            return done(answer(reply));
        }
        state.waiting.lock().insert(key.clone(), done);
        let config = self.config(&call.group);
        let inner = Arc::clone(&self.inner);
        self.inner
            .bridge
            .spawn(async move { send(inner, state, call, config, key).await });
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
) {
    if let Some(per_sec) = config.rate_per_sec {
        let slot = {
            let mut next = state.next_send.lock();
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
            state.end(&key, Err(failure));
            return;
        }
    };
    let subject = inner.conn.names.work_subject(&call.group, &state.token);
    let id = work.message_id();
    let sent = Instant::now();
    let mut pause = Duration::from_millis(50);
    let sequence = loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let error = match inner
            .conn
            .js
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(ack) => break ack.sequence,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if !state.waiting.lock().contains_key(&key) {
            return; // stopped meanwhile
        }
        if sent.elapsed() > inner.publish_patience {
            let failure = RemoteFailure::Unavailable(format!(
                "the broker at {} took no part for {:?}: {error}",
                inner.conn.url, inner.publish_patience
            ));
            state.end(&key, Err(failure));
            return;
        }
        tracing::debug!(%error, "publish failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    state.last_seq.fetch_max(sequence, Ordering::AcqRel);
    {
        let waiting = state.waiting.lock();
        if waiting.contains_key(&key) {
            state.sent.lock().insert(key.clone(), sequence);
        }
    }
    let Some(timeout) = call.timeout else { return };
    let grace = inner
        .grace
        .lock()
        .unwrap_or(config.ack_wait + Duration::from_secs(2));
    tokio::time::sleep_until((sent + timeout.saturating_add(grace)).into()).await;
    if state.end(&key, Err(RemoteFailure::TimedOut { after: timeout })) {
        cancel(&inner, &state, Some(key)).await;
    }
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

/// Reads the run's results until told to stop, resubscribing after
/// broker trouble.
async fn listen(
    consumer: consumer::Consumer<consumer::pull::Config>,
    state: Arc<RunState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let messages = tokio::select! {
            _ = &mut stop => return,
            messages = consumer.messages() => messages,
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::debug!(%error, "results subscription failed; again");
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
                Some(Ok(message)) => match wire::decode::<Reply>(&message.payload, "result") {
                    Ok(reply) => state.deliver(reply),
                    Err(error) => tracing::warn!(%error, "dropped a result"),
                },
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
    let Ok(mut advisories) = client.subscribe(subject).await else {
        return;
    };
    while let Some(message) = advisories.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let Ok(notice) = serde_json::from_slice::<MaxDeliveries>(&message.payload) else {
            continue;
        };
        let runs: Vec<Arc<RunState>> = inner.runs.lock().values().cloned().collect();
        for state in runs {
            let key = state
                .sent
                .lock()
                .iter()
                .find(|(_, seq)| **seq == notice.stream_seq)
                .map(|(key, _)| key.clone());
            if let Some(key) = key {
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
