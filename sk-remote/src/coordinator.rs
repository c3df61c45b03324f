//! The coordinator: a run's side of remote parts ([`Coordinator`], the
//! [`RemoteRunner`] sk-cycle calls).
//!
//! Each attempt is published to its group's subject with `Nats-Msg-Id` =
//! run/iteration/part/attempt and waited for on the calling thread. A
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
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_util::StreamExt;
use parking_lot::Mutex;
use sk_core::Value;
use sk_cycle::{RemoteCall, RemoteFailure, RemoteRunner};

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
    waiting: Mutex<HashMap<Key, Sender<Reply>>>,
    early: Mutex<HashMap<Key, Reply>>,
    /// The work stream's sequence of the run's last published attempt.
    last_seq: AtomicU64,
    /// When each group may send its next part (rate limits).
    next_send: Mutex<HashMap<String, Instant>>,
    /// Stops the results listener.
    stop_listener: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    groups: Vec<String>,
}

impl RunState {
    /// Hands `reply` to the attempt waiting for it, if any.
    fn deliver(&self, reply: Reply) {
        if reply.run != self.run {
            return;
        }
        let key = (reply.iteration, reply.part.clone(), reply.attempt);
        if let Some(waiter) = self.waiting.lock().remove(&key) {
            let _ = waiter.send(reply);
            return;
        }
        let mut early = self.early.lock();
        if early.len() >= EARLY_LIMIT {
            early.clear();
        }
        early.insert(key, reply);
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
        Ok(Coordinator {
            inner: Arc::new(Inner {
                conn,
                groups: Mutex::new(HashMap::new()),
                grace: Mutex::new(None),
                publish_patience: Duration::from_secs(60),
                runs: Mutex::new(HashMap::new()),
                bridge,
            }),
        })
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

    /// Publishes `work` on `subject`, again until the broker takes it, the
    /// run stops or patience runs out; the stream sequence it got.
    fn publish(
        &self,
        subject: String,
        work: &Work,
        stop: &sk_core::StopToken,
    ) -> Result<u64, RemoteFailure> {
        let payload = wire::encode(work).map_err(|e| RemoteFailure::Failed {
            message: format!("cannot encode the call: {e}"),
            retryable: false,
        })?;
        let payload = bytes::Bytes::from(payload);
        let id = work.message_id();
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let js = self.inner.conn.js.clone();
            let (subject, payload, id) = (subject.clone(), payload.clone(), id.clone());
            let sent = self.inner.bridge.run(async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                let ack = js
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map(|ack| ack.sequence).map_err(|e| e.to_string())
            });
            let error = match sent {
                Ok(Ok(sequence)) => return Ok(sequence),
                Ok(Err(e)) => e,
                Err(e) => return Err(RemoteFailure::Unavailable(e.to_string())),
            };
            if stop.is_stopped() {
                return Err(RemoteFailure::Stopped);
            }
            if started.elapsed() > self.inner.publish_patience {
                return Err(RemoteFailure::Unavailable(format!(
                    "the broker at {} took no part for {:?}: {error}",
                    self.inner.conn.url, self.inner.publish_patience
                )));
            }
            tracing::debug!(%error, "publish failed; trying again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits for a group's rate to allow a send.
    fn pace(&self, state: &RunState, group: &str, per_sec: f64, stop: &sk_core::StopToken) {
        let wait_until = {
            let mut next = state.next_send.lock();
            let now = Instant::now();
            let slot = next.get(group).copied().unwrap_or(now).max(now);
            next.insert(
                group.to_owned(),
                slot + Duration::from_secs_f64(1.0 / per_sec),
            );
            slot
        };
        while !stop.is_stopped() {
            let now = Instant::now();
            if now >= wait_until {
                break;
            }
            std::thread::sleep((wait_until - now).min(Duration::from_millis(50)));
        }
    }

    /// Tells the workers to drop attempts of `state`'s run (all, or one).
    fn cancel(&self, state: &RunState, attempt: Option<Key>) {
        let notice = Cancel {
            upto: state.last_seq.load(Ordering::Acquire),
            attempt,
        };
        let Ok(payload) = wire::encode(&notice) else {
            return;
        };
        let client = self.inner.conn.client.clone();
        let subject = self.inner.conn.names.cancel_subject(&state.token);
        self.inner.bridge.spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
            let _ = client.flush().await;
        });
    }
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
            next_send: Mutex::new(HashMap::new()),
            stop_listener: Mutex::new(Some(stop_tx)),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
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

    fn call(&self, call: &RemoteCall<'_>) -> Result<Value, RemoteFailure> {
        let Some(state) = self.state(call.run) else {
            return Err(RemoteFailure::Unavailable(format!(
                "run \"{}\" was not started on this coordinator",
                call.run
            )));
        };
        let config = self.config(call.group);
        let key: Key = (call.iteration, call.part.to_owned(), call.attempt);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let early = state.early.lock().remove(&key);
        if let Some(reply) = early {
            return answer(reply);
        }
        state.waiting.lock().insert(key.clone(), tx);
        let result = self.send_and_wait(call, &state, &config, &key, &rx);
        state.waiting.lock().remove(&key);
        result
    }

    fn end_run(&self, run: &str) {
        let Some(state) = self.inner.runs.lock().remove(run) else {
            return;
        };
        if let Some(stop) = state.stop_listener.lock().take() {
            let _ = stop.send(());
        }
        self.cancel(&state, None);
        let conn = self.inner.conn.clone();
        let token = state.token.clone();
        let groups = state.groups.clone();
        // Left-overs of the run (attempts given up on, results not read)
        // are dropped from the broker.
        let _ = self.inner.bridge.run(async move {
            let tidy = async {
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

impl Coordinator {
    fn send_and_wait(
        &self,
        call: &RemoteCall<'_>,
        state: &RunState,
        config: &GroupConfig,
        key: &Key,
        rx: &Receiver<Reply>,
    ) -> Result<Value, RemoteFailure> {
        if let Some(per_sec) = config.rate_per_sec {
            self.pace(state, call.group, per_sec, call.stop);
        }
        if call.stop.is_stopped() {
            return Err(RemoteFailure::Stopped);
        }
        let work = Work {
            run: call.run.to_owned(),
            iteration: call.iteration,
            part: call.part.to_owned(),
            attempt: call.attempt,
            function: call.function.clone(),
            args: call.args.clone(),
            timeout_ms: call
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            output: call.output,
            crash_limit: config.crash_limit,
        };
        let subject = self.inner.conn.names.work_subject(call.group, &state.token);
        let sent = Instant::now();
        let sequence = self.publish(subject, &work, call.stop)?;
        state.last_seq.fetch_max(sequence, Ordering::AcqRel);
        let grace = self
            .inner
            .grace
            .lock()
            .unwrap_or(config.ack_wait + Duration::from_secs(2));
        let deadline = call.timeout.map(|t| sent + t.saturating_add(grace));
        loop {
            let slice = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.cancel(state, Some(key.clone()));
                        return Err(RemoteFailure::TimedOut {
                            after: call.timeout.unwrap_or_default(),
                        });
                    }
                    (deadline - now).min(Duration::from_millis(100))
                }
                None => Duration::from_millis(100),
            };
            match rx.recv_timeout(slice) {
                Ok(reply) => return answer(reply),
                Err(RecvTimeoutError::Timeout) => {
                    if call.stop.is_stopped() {
                        self.cancel(state, Some(key.clone()));
                        return Err(RemoteFailure::Stopped);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(RemoteFailure::Unavailable(
                        "the run's results listener is gone".to_owned(),
                    ));
                }
            }
        }
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
