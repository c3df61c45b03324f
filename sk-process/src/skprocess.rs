//! [`SkProcess`]: a long-lived worker with lifecycle hooks.
//!
//! A process is a serializable state plus hooks. [`start`] sends the state
//! to a fresh [`Worker`](crate::Worker); the worker runs the loop
//! `prerun → run → postrun` (as many times as [`ProcessConfig`] says, or
//! until stopped), then `onfinish → result`, and sends the output back with
//! per-hook timing statistics. The parent holds a [`SkProcessHandle`] to
//! stop, kill, message and join it, and restarts a crashed worker from the
//! original state while lives remain.

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sk_core::{BoxError, StatsSummary, StopToken};

use crate::error::SkProcessError;
use crate::vocab::Hook;

mod child;
mod handle;

#[doc(hidden)]
pub use child::process_spec;
pub use handle::{SkProcessHandle, start};

/// A long-lived worker: a state that crosses into a worker, and the hooks
/// the worker runs on it.
///
/// Per run the worker calls [`prerun`](SkProcess::prerun),
/// [`run`](SkProcess::run) and [`postrun`](SkProcess::postrun), for
/// [`ProcessConfig::runs`] runs or until stopped (by
/// [`SkProcessHandle::stop`] or the [`join_in`](ProcessConfig::join_in)
/// limit), then [`onfinish`](SkProcess::onfinish) and
/// [`result`](SkProcess::result), whose output
/// [`SkProcessHandle::join`] returns. A hook that fails, panics or overruns
/// its timeout ends the process with an [`SkProcessError`]; before that,
/// [`error`](SkProcess::error) may turn it into a fallback output. A panic
/// (or a crash of the worker process) while lives remain restarts the
/// process from its original state instead.
///
/// Every type started with [`start`] must be registered once with
/// [`register_process!`](crate::register_process), so that a worker
/// process (the same binary, started again) can find its runner by name.
///
/// # Examples
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use sk_core::BoxError;
/// use sk_process::{Backend, ProcessConfig, ProcessContext, SkProcess};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter {
///     total: u64,
/// }
///
/// impl SkProcess for Counter {
///     type Output = u64;
///
///     fn config(&self) -> ProcessConfig {
///         ProcessConfig::new().runs(10)
///     }
///
///     fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
///         self.total += ctx.run();
///         Ok(())
///     }
///
///     fn result(&mut self, _ctx: &ProcessContext) -> Result<u64, BoxError> {
///         Ok(self.total)
///     }
/// }
///
/// sk_process::register_process!(Counter);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     sk_process::init();
///     let handle = sk_process::start(Counter { total: 0 }, Backend::from_env())?;
///     assert_eq!(handle.join(None)?, 55);
///     Ok(())
/// }
/// ```
pub trait SkProcess: Serialize + DeserializeOwned + Send + 'static {
    /// What [`result`](SkProcess::result) produces and
    /// [`SkProcessHandle::join`] returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// How the process runs: runs, time limit, hook timeouts, lives. Read
    /// once, in the parent, from the initial state.
    fn config(&self) -> ProcessConfig {
        ProcessConfig::default()
    }

    /// Runs before each [`run`](SkProcess::run).
    ///
    /// # Errors
    ///
    /// An error ends the process with [`SkProcessError::HookFailed`].
    fn prerun(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// The work of one run.
    ///
    /// # Errors
    ///
    /// An error ends the process with [`SkProcessError::HookFailed`].
    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError>;

    /// Runs after each [`run`](SkProcess::run).
    ///
    /// # Errors
    ///
    /// An error ends the process with [`SkProcessError::HookFailed`].
    fn postrun(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs once after the last run (also after a stop or the time limit).
    ///
    /// # Errors
    ///
    /// An error ends the process with [`SkProcessError::HookFailed`].
    fn onfinish(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// The process's output, sent back to the parent.
    ///
    /// # Errors
    ///
    /// An error ends the process with [`SkProcessError::HookFailed`].
    fn result(&mut self, ctx: &ProcessContext) -> Result<Self::Output, BoxError>;

    /// Called when a hook failed or panicked (with no lives left); a
    /// `Some` output is returned by [`SkProcessHandle::join`] instead of the
    /// error. Not called for a hook that overran its timeout: the state is
    /// still held by that hook.
    fn error(&mut self, ctx: &ProcessContext, err: &SkProcessError) -> Option<Self::Output> {
        let _ = (ctx, err);
        None
    }
}

/// How an [`SkProcess`] runs, returned by [`SkProcess::config`].
///
/// The default runs until stopped, with no time limit, no hook timeouts
/// and one life.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_process::{Hook, ProcessConfig};
///
/// let config = ProcessConfig::new()
///     .runs(100)
///     .join_in(Duration::from_secs(30))
///     .timeout(Hook::Run, Duration::from_secs(1))
///     .lives(3);
/// assert_eq!(config.max_runs(), Some(100));
/// assert_eq!(config.hook_timeout(Hook::Run), Some(Duration::from_secs(1)));
/// assert_eq!(config.hook_timeout(Hook::Prerun), None);
/// assert_eq!(config.max_lives(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    runs: Option<u64>,
    join_in: Option<Duration>,
    timeouts: [Option<Duration>; 6],
    lives: u32,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            runs: None,
            join_in: None,
            timeouts: [None; 6],
            lives: 1,
        }
    }
}

impl ProcessConfig {
    /// The default configuration.
    pub fn new() -> Self {
        ProcessConfig::default()
    }

    /// Runs the loop `n` times, then finishes.
    pub fn runs(mut self, n: u64) -> Self {
        self.runs = Some(n);
        self
    }

    /// Runs the loop until stopped (the default).
    pub fn until_stopped(mut self) -> Self {
        self.runs = None;
        self
    }

    /// Stops the process (as [`SkProcessHandle::stop`] does) once `limit`
    /// has passed since it started: the current run finishes, then
    /// `onfinish` and `result` run. Restarts do not reset the clock.
    pub fn join_in(mut self, limit: Duration) -> Self {
        self.join_in = Some(limit);
        self
    }

    /// Fails the process with [`SkProcessError::HookTimedOut`] when one call
    /// of `hook` takes longer than `limit`; the worker is then killed.
    pub fn timeout(mut self, hook: Hook, limit: Duration) -> Self {
        self.timeouts[hook.index()] = Some(limit);
        self
    }

    /// How many times the process may start: `1` never restarts; `n`
    /// restarts a crashed process (its worker died, or a hook panicked)
    /// from its original state up to `n - 1` times. Must be at least 1
    /// ([`start`] checks).
    pub fn lives(mut self, n: u32) -> Self {
        self.lives = n;
        self
    }

    /// The number of runs, `None` for until stopped.
    pub fn max_runs(&self) -> Option<u64> {
        self.runs
    }

    /// The wall-clock limit, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        self.join_in
    }

    /// The timeout of `hook`, if any.
    pub fn hook_timeout(&self, hook: Hook) -> Option<Duration> {
        self.timeouts[hook.index()]
    }

    /// The number of lives.
    pub fn max_lives(&self) -> u32 {
        self.lives
    }
}

/// Timing statistics of each hook, one sample per completed call, from the
/// last life of a process.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTimings {
    /// [`SkProcess::prerun`].
    pub prerun: StatsSummary,
    /// [`SkProcess::run`].
    pub run: StatsSummary,
    /// [`SkProcess::postrun`].
    pub postrun: StatsSummary,
    /// [`SkProcess::onfinish`].
    pub onfinish: StatsSummary,
    /// [`SkProcess::result`].
    pub result: StatsSummary,
    /// [`SkProcess::error`].
    pub error: StatsSummary,
}

impl HookTimings {
    /// The statistics of `hook`.
    pub fn get(&self, hook: Hook) -> StatsSummary {
        match hook {
            Hook::Prerun => self.prerun,
            Hook::Run => self.run,
            Hook::Postrun => self.postrun,
            Hook::Onfinish => self.onfinish,
            Hook::Result => self.result,
            Hook::Error => self.error,
        }
    }

    fn slot(&mut self, hook: Hook) -> &mut StatsSummary {
        match hook {
            Hook::Prerun => &mut self.prerun,
            Hook::Run => &mut self.run,
            Hook::Postrun => &mut self.postrun,
            Hook::Onfinish => &mut self.onfinish,
            Hook::Result => &mut self.result,
            Hook::Error => &mut self.error,
        }
    }
}

/// What a worker sends its parent while a process runs.
#[derive(Debug, Serialize, Deserialize)]
enum ChildMsg {
    /// A message of the process (`ProcessContext::tell`).
    User(Vec<u8>),
    /// A hook with a timeout started (for the parent's backstop).
    HookStarted { hook: Hook, timeout: Duration },
    /// That hook ended.
    HookEnded,
}

/// What the parent sends a running process.
#[derive(Debug, Serialize, Deserialize)]
enum ParentMsg {
    /// A message for the process (`ProcessContext::listen`).
    User(Vec<u8>),
    /// Finish the current run, then `onfinish` and `result`.
    Stop,
}

/// What a hook sees of its process: run number, stop token, and the line
/// to the parent.
pub struct ProcessContext {
    name: String,
    run: u64,
    life: u32,
    stop: StopToken,
    started: Instant,
    out: Sender<ChildMsg>,
    inbox: Receiver<Vec<u8>>,
}

impl fmt::Debug for ProcessContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessContext")
            .field("name", &self.name)
            .field("run", &self.run)
            .field("life", &self.life)
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

impl ProcessContext {
    /// The process's name (its type's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current run, from 1; in `onfinish`, `result` and `error`, the
    /// last run started (0 when none was).
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The current life, from 1 (2 after the first restart, ...).
    pub fn life(&self) -> u32 {
        self.life
    }

    /// Set when the process should end: a stop was requested, the time
    /// limit passed, a hook overran its timeout, or the worker was killed.
    /// A long hook can poll it (or wait on it) to end early.
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    /// Whether [`stop_token`](ProcessContext::stop_token) is set.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Time since this life started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends `message` to the parent (read there with
    /// [`SkProcessHandle::listen`]).
    ///
    /// # Errors
    ///
    /// [`SkProcessError::Message`] when it does not serialize,
    /// [`SkProcessError::Closed`] when the worker no longer relays messages.
    pub fn tell<T: Serialize>(&self, message: &T) -> Result<(), SkProcessError> {
        let bytes =
            sk_cereal::Internal::encode(message).map_err(|source| SkProcessError::Message {
                process: self.name.clone(),
                source,
            })?;
        self.out
            .send(ChildMsg::User(bytes))
            .map_err(|_| SkProcessError::Closed {
                process: self.name.clone(),
            })
    }

    /// Waits at most `timeout` for a message from the parent (sent with
    /// [`SkProcessHandle::tell`]); `Ok(None)` when none came.
    ///
    /// # Errors
    ///
    /// [`SkProcessError::Message`] when the message is not a `T`.
    pub fn listen<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Option<T>, SkProcessError> {
        match self.inbox.recv_timeout(timeout) {
            Ok(bytes) => sk_cereal::Internal::decode(&bytes)
                .map(Some)
                .map_err(|source| SkProcessError::Message {
                    process: self.name.clone(),
                    source,
                }),
            Err(_) => Ok(None),
        }
    }
}

/// The name a process type's runner is registered under.
fn runner_name<P: SkProcess>() -> String {
    format!("sk_process::skprocess::{}", std::any::type_name::<P>())
}

/// A short name for a process type: its path without the module prefix.
fn short_name<P: SkProcess>() -> String {
    let full = std::any::type_name::<P>();
    let head_end = full.find('<').unwrap_or(full.len());
    let start = full[..head_end].rfind("::").map_or(0, |i| i + 2);
    full[start..].to_owned()
}

/// Registers an [`SkProcess`] type so that workers can run it; put it once
/// per type, at the top level of the crate (or test file) that defines it.
///
/// # Examples
///
/// ```ignore
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Poller;
/// impl sk_process::SkProcess for Poller { /* ... */ }
/// sk_process::register_process!(Poller);
/// ```
#[macro_export]
macro_rules! register_process {
    ($ty:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::StaticFunction::new($crate::__private::process_spec::<$ty>)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Probe;

    impl SkProcess for Probe {
        type Output = ();
        fn run(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
            Ok(())
        }
        fn result(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
            Ok(())
        }
    }

    #[test]
    fn hooks_have_their_trait_names_and_distinct_slots() {
        let names: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        assert_eq!(
            names,
            ["prerun", "run", "postrun", "onfinish", "result", "error"]
        );
        let mut timings = HookTimings::default();
        for (i, hook) in Hook::ALL.into_iter().enumerate() {
            timings.slot(hook).count = i as u64 + 1;
        }
        for (i, hook) in Hook::ALL.into_iter().enumerate() {
            assert_eq!(timings.get(hook).count, i as u64 + 1);
        }
    }

    #[test]
    fn config_defaults_to_one_life_until_stopped() {
        let config = Probe.config();
        assert_eq!(config.max_runs(), None);
        assert_eq!(config.time_limit(), None);
        assert_eq!(config.max_lives(), 1);
        assert!(Hook::ALL.iter().all(|&h| config.hook_timeout(h).is_none()));
    }

    #[test]
    fn short_name_drops_the_module_path() {
        assert_eq!(short_name::<Probe>(), "Probe");
        assert!(runner_name::<Probe>().ends_with("skprocess::tests::Probe"));
    }
}
