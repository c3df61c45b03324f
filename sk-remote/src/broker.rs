//! The broker: how to reach a NATS server ([`Broker`]), the private
//! runtime the client runs on ([`Bridge`]), and the streams, consumers
//! and subjects sk-remote keeps there ([`Names`]).
//!
//! The async client lives on one thread of its own running a small
//! current-thread tokio runtime for its whole life; synchronous code hands
//! it futures and waits for their answers on a channel. (A runtime entered
//! per command would leave the client's background tasks — pings,
//! reconnects, pull requests — without a thread between commands.)

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::error::{RemoteError, boxed, check_group};

/// How to reach the NATS server (with JetStream) that carries remote
/// parts, and the names sk-remote uses there.
///
/// NATS options pass through: credentials (`.creds` file, token, user
/// and password, nkey seed) and TLS (required, root and client
/// certificates). See the crate docs for restricting a deployment.
#[derive(Clone, Debug)]
pub struct Broker {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) name: Option<String>,
    credentials_file: Option<PathBuf>,
    token: Option<String>,
    user_password: Option<(String, String)>,
    nkey: Option<String>,
    require_tls: bool,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
}

impl Broker {
    /// The server at `url` (e.g. `nats://10.0.0.5:4222`; several, comma
    /// separated, for a cluster).
    pub fn new(url: impl Into<String>) -> Self {
        Broker {
            url: url.into(),
            prefix: "SK".to_owned(),
            connect_timeout: Duration::from_secs(5),
            name: None,
            credentials_file: None,
            token: None,
            user_password: None,
            nkey: None,
            require_tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Names streams `<PREFIX>_WORK` and `<PREFIX>_RESULTS` and subjects
    /// `<prefix>.work.…` (default `SK`): deployments sharing a server keep
    /// apart with prefixes of their own. Letters, digits, `-` and `_`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting may take before it fails (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The client name the server shows for this connection.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Authenticates with a NATS `.creds` file (JWT and nkey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with an nkey seed.
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.nkey = Some(seed.into());
        self
    }

    /// Refuses a connection without TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path`.
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents the client certificate `cert` with its key `key` (PEM).
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Connects on `bridge`.
    pub(crate) fn connect(&self, bridge: &Bridge) -> Result<Connection, RemoteError> {
        let names = Names::new(&self.prefix)?;
        let url = self.url.clone();
        let this = self.clone();
        let (client, js) = bridge.run(async move {
            let client = this.connect_async().await?;
            // The context starts a task of its own: on the bridge.
            let js = jetstream::new(client.clone());
            Ok::<_, RemoteError>((client, js))
        })??;
        Ok(Connection {
            client,
            js,
            names,
            url,
        })
    }

    async fn connect_async(&self) -> Result<async_nats::Client, RemoteError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            // Keep trying after a lost connection, for ever: the broker
            // restarting mid-run must not end the run.
            .max_reconnects(None)
            .require_tls(self.require_tls);
        if let Some(path) = &self.credentials_file {
            options =
                options
                    .credentials_file(path)
                    .await
                    .map_err(|source| RemoteError::Options {
                        url: self.url.clone(),
                        what: format!("credentials file {}", path.display()),
                        source,
                    })?;
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &self.nkey {
            options = options.nkey(seed.clone());
        }
        for path in &self.root_certificates {
            options = options.add_root_certificates(path.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Connect {
            url: self.url.clone(),
            timeout: self.connect_timeout,
            source,
        };
        // The client's own timeout covers one try of one address: bound
        // the whole connect too.
        match tokio::time::timeout(
            self.connect_timeout + Duration::from_millis(500),
            options.connect(self.url.as_str()),
        )
        .await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(fail(boxed(e))),
            Err(elapsed) => Err(fail(boxed(elapsed))),
        }
    }
}

/// A connection to the broker, with sk-remote's names.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) url: String,
}

impl Connection {
    /// Fails naming `what` was being done.
    pub(crate) fn failed<E: std::error::Error + Send + Sync + 'static>(
        &self,
        what: &str,
    ) -> impl FnOnce(E) -> RemoteError + use<E> {
        let (url, what) = (self.url.clone(), what.to_owned());
        move |e| RemoteError::JetStream {
            url,
            what,
            source: boxed(e),
        }
    }

    /// Makes sure the work and results streams exist.
    pub(crate) async fn ensure_streams(&self) -> Result<(), RemoteError> {
        let n = &self.names;
        self.js
            .get_or_create_stream(stream::Config {
                name: n.work_stream.clone(),
                subjects: vec![format!("{}.work.>", n.subject)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(self.failed("create the work stream"))?;
        self.js
            .get_or_create_stream(stream::Config {
                name: n.results_stream.clone(),
                subjects: vec![format!("{}.result.>", n.subject)],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                // Longer than the duplicate window: a republished attempt
                // the server drops as a duplicate still finds its result.
                max_age: RESULTS_KEPT,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(self.failed("create the results stream"))?;
        Ok(())
    }

    /// The shared pull consumer of `group`, created with `config` if there
    /// is none (and updated to it when `update`).
    pub(crate) async fn group_consumer(
        &self,
        group: &str,
        config: &GroupConfig,
        update: bool,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, RemoteError> {
        let stream = self
            .js
            .get_stream(&self.names.work_stream)
            .await
            .map_err(self.failed("find the work stream"))?;
        let name = self.names.group_consumer(group);
        if !update {
            if let Ok(consumer) = stream.get_consumer(&name).await {
                return Ok(consumer);
            }
        }
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                filter_subject: self.names.work_filter(group),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_deliver: i64::from(config.crash_limit) + 2,
                max_ack_pending: config.max_in_flight.map_or(-1, |n| n as i64),
                max_waiting: 4096,
                ..Default::default()
            })
            .await
            .map_err(self.failed(&format!("create the consumer of group \"{group}\"")))
    }
}

/// How long the broker drops a republished attempt as a duplicate.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long results are kept: well past the duplicate window (an attempt
/// republished by a restarted coordinator within the window is dropped by
/// the broker, and its answer is found among the kept results), and long
/// enough for a coordinator to read them, while bounding the stream of a
/// long-running run.
pub(crate) const RESULTS_KEPT: Duration = Duration::from_secs(15 * 60);

/// How a remote group's parts are delivered: set by the coordinator (it
/// creates or updates the group's consumer as a run starts); workers use
/// what the broker has.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// At most this many of the group's parts run at once, across all its
    /// workers (the consumer's MaxAckPending). Default: no limit.
    pub max_in_flight: Option<usize>,
    /// At most this many of the group's parts are sent per second.
    pub rate_per_sec: Option<f64>,
    /// How long a worker may hold a part without a sign of life before it
    /// goes to another (the consumer's AckWait; workers send in-progress
    /// acks at a third of it). Default 1 s.
    pub ack_wait: Duration,
    /// A part whose worker died this many times is failed as a poison part
    /// instead of being handed to another (default 3).
    pub crash_limit: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            max_in_flight: None,
            rate_per_sec: None,
            ack_wait: Duration::from_secs(1),
            crash_limit: 3,
        }
    }
}

impl GroupConfig {
    /// The default delivery.
    pub fn new() -> Self {
        GroupConfig::default()
    }

    /// Sets [`GroupConfig::max_in_flight`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Sets [`GroupConfig::rate_per_sec`].
    pub fn rate_per_sec(mut self, per_sec: f64) -> Self {
        self.rate_per_sec = (per_sec.is_finite() && per_sec > 0.0).then_some(per_sec);
        self
    }

    /// Sets [`GroupConfig::ack_wait`] (at least 100 ms).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_millis(100));
        self
    }

    /// Sets [`GroupConfig::crash_limit`] (at least 1).
    pub fn crash_limit(mut self, n: u32) -> Self {
        self.crash_limit = n.max(1);
        self
    }
}

/// Stream, consumer and subject names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) work_stream: String,
    pub(crate) results_stream: String,
    /// The subjects' first token (the prefix, lowercase).
    pub(crate) subject: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Result<Names, RemoteError> {
        check_group(prefix).map_err(|_| {
            RemoteError::Usage(format!(
                "prefix \"{prefix}\" is not a valid name: use letters, digits, '-' and '_'"
            ))
        })?;
        Ok(Names {
            work_stream: format!("{prefix}_WORK"),
            results_stream: format!("{prefix}_RESULTS"),
            subject: prefix.to_ascii_lowercase(),
        })
    }

    pub(crate) fn group_consumer(&self, group: &str) -> String {
        format!("{}_group_{group}", self.work_stream)
    }

    /// All of a group's work.
    pub(crate) fn work_filter(&self, group: &str) -> String {
        format!("{}.work.{group}.>", self.subject)
    }

    /// One run's work on a group.
    pub(crate) fn work_subject(&self, group: &str, token: &str) -> String {
        format!("{}.work.{group}.{token}", self.subject)
    }

    /// One run's results.
    pub(crate) fn result_subject(&self, token: &str) -> String {
        format!("{}.result.{token}", self.subject)
    }

    /// Stop notices for one run (core NATS, not kept).
    pub(crate) fn cancel_subject(&self, token: &str) -> String {
        format!("{}.cancel.{token}", self.subject)
    }

    /// The broker's notices of the group consumers' parts past MaxDeliver.
    pub(crate) fn max_deliveries_advisories(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.work_stream
        )
    }

    pub(crate) fn results_consumer(&self, token: &str) -> String {
        format!("{}_run_{token}", self.results_stream)
    }
}

/// A future the bridge runs.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The thread the async client runs on (see the module docs).
pub(crate) struct Bridge {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    id: std::thread::ThreadId,
}

impl Bridge {
    /// Starts the bridge thread `name`.
    pub(crate) fn start(name: &str) -> Result<Bridge, RemoteError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Bridge(format!("cannot start its runtime: {e}")))?;
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
                // Dropping the runtime cancels what is still running.
            })
            .map_err(|e| RemoteError::Bridge(format!("cannot start: {e}")))?;
        Ok(Bridge {
            jobs: Some(jobs),
            id: thread.thread().id(),
            thread: Some(thread),
        })
    }

    /// Runs `future` on the bridge without waiting for it.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Box::pin(future));
        }
    }

    /// Runs `future` on the bridge and waits for its output. On the
    /// bridge thread itself (a callback of ours calling back in) it would
    /// wait for ever: that is an error.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RemoteError> {
        if std::thread::current().id() == self.id {
            return Err(RemoteError::Bridge(
                "cannot wait for its own work: called from a callback running on it (e.g. a RemoteDone)"
                    .to_owned(),
            ));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .map_err(|_| RemoteError::Bridge("is gone".to_owned()))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A subject token naming run `run`: 32 hex digits of two FNV-1a hashes
/// (run ids may hold characters subjects cannot).
pub(crate) fn run_token(run: &str) -> String {
    let hash = |seed: u64| {
        run.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x84222325_cbf29ce4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tokens_are_subject_tokens_and_differ() {
        let a = run_token("cycle a.b c*>");
        let b = run_token("cycle a.b c*");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(a, run_token("cycle a.b c*>"));
    }

    #[test]
    fn bad_prefixes_and_groups_are_refused() {
        assert!(Names::new("SK").is_ok());
        assert!(Names::new("a.b").is_err());
        assert!(check_group("gpu-1_x").is_ok());
        for bad in ["", "a.b", "a b", "a*", ">"] {
            let e = check_group(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }
}
