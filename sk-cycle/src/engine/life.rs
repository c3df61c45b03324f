//! [`Engine`]: the one owner of a run's setup and teardown.
//!
//! [`Engine::start`] builds the runtime and starts what its plan needs —
//! a thread pool (unless the run brings one), the component threads, the
//! worker processes' runner, the watchdog. [`Engine::finish`] stops them
//! in order and waits, on an event and not by polling, until no job or
//! thread of the run holds the runtime; [`Finished::join`] then lets the
//! runtime go and joins every thread the run started.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Component, EngineOptions, Runtime, Watchdog};
use crate::durable::Durable;
use crate::error::RunError;
use crate::plan::Plan;
use crate::store::Store;

/// How long a finishing run waits for its jobs and threads to let go of
/// the runtime.
const RELEASE_LIMIT: Duration = Duration::from_secs(5);

/// As [`RELEASE_LIMIT`], while a timed part that ignored its stop token
/// still runs: it is not waited for past this.
const LATE_PART_LIMIT: Duration = Duration::from_secs(1);

/// The threads of a run's own pool, spawned by us so that the run can
/// join them: a run returns only once they have exited.
type PoolThreads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// What an engine is started with.
pub(crate) struct EngineSetup {
    /// A pool to run on; `None`: a pool of the run's own.
    pub(crate) pool: Option<Arc<rayon::ThreadPool>>,
    /// The size of the run's own pool (`None`: rayon's default).
    pub(crate) threads: Option<usize>,
    pub(crate) store: Arc<Store>,
    pub(crate) options: EngineOptions,
    /// Where process parts run (`None`: as `SK_SPAWN_BACKEND` says).
    pub(crate) backend: Option<sk_process::Backend>,
    /// How many pooled worker processes at most.
    pub(crate) process_workers: usize,
    /// A durable run's journal, and how many recorded ends it replays.
    pub(crate) durable: Option<(Durable, usize)>,
    /// Where remote parts go, and the run's id there.
    pub(crate) remote: Option<(Arc<dyn crate::RemoteRunner>, Arc<str>)>,
}

/// A started engine.
pub(crate) struct Engine {
    rt: Arc<Runtime>,
    pool_threads: Option<PoolThreads>,
}

impl Engine {
    /// Builds the runtime of `plan` for cycle `cycle` and starts what it
    /// needs.
    ///
    /// # Errors
    ///
    /// [`RunError::Start`] naming what could not start (what had started
    /// is stopped again).
    pub(crate) fn start(
        plan: &Arc<Plan>,
        cycle: &Arc<str>,
        setup: EngineSetup,
    ) -> Result<Engine, RunError> {
        let start_error = |what: &str, source| RunError::Start {
            cycle: cycle.to_string(),
            what: what.to_owned(),
            source,
        };
        // (part, group) of every remote part.
        let remote_parts: Vec<(&str, &str)> = plan
            .remote_parts
            .iter()
            .filter_map(|&id| {
                let p = &plan.parts[id as usize];
                match &p.part.placement {
                    crate::Placement::Remote(group) => Some((&*p.part.name, group.as_str())),
                    _ => None,
                }
            })
            .collect();
        if let (Some(&(part, group)), None) = (remote_parts.first(), &setup.remote) {
            return Err(RunError::NoRemote {
                cycle: cycle.to_string(),
                part: part.to_owned(),
                group: group.to_owned(),
            });
        }
        let mut pool_threads: Option<PoolThreads> = None;
        let pool = match setup.pool {
            Some(pool) => pool,
            None => {
                let threads: PoolThreads = Arc::default();
                pool_threads = Some(Arc::clone(&threads));
                let name = Arc::clone(cycle);
                let mut builder = rayon::ThreadPoolBuilder::new().spawn_handler(move |worker| {
                    let handle = thread::Builder::new()
                        .name(format!("sk-cycle:{name}:{}", worker.index()))
                        // Deep inline chains and nested splits want room.
                        .stack_size(16 << 20)
                        .spawn(move || worker.run())?;
                    threads.lock().push(handle);
                    Ok(())
                });
                if let Some(n) = setup.threads {
                    builder = builder.num_threads(n);
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| start_error("the thread pool", std::io::Error::other(e)))?,
                )
            }
        };
        let mut rt = Runtime::new(
            Arc::clone(plan),
            Arc::clone(cycle),
            pool,
            setup.store,
            setup.options,
        );
        if let Some((durable, replays)) = setup.durable {
            // Iterations go on from where the journal says the run was.
            for (lane, &done) in rt.lanes.iter_mut().zip(&durable.lanes_done) {
                lane.iteration.store(done, Ordering::Relaxed);
                // This run's first iterations are timed exactly, whatever
                // their numbers.
                lane.exact_iterations = lane.exact_iterations.saturating_add(done);
            }
            rt.replay_left.store(replays, Ordering::Relaxed);
            rt.durable = Some(durable);
            rt.detour.store(true, Ordering::Relaxed);
        }
        for name in &plan.components {
            let component = Component::start(cycle, name)
                .map_err(|e| start_error(&format!("component thread \"{name}\""), e))?;
            rt.components.push(component);
        }
        if plan.any_local_process {
            let backend = setup.backend.unwrap_or_else(sk_process::Backend::from_env);
            rt.processes = Some(Arc::new(crate::process::ProcessRunner::new(
                Arc::clone(cycle),
                backend,
                setup.process_workers,
            )));
        }
        if let (false, Some((runner, run))) = (remote_parts.is_empty(), setup.remote) {
            let mut unique: Vec<&str> = remote_parts.iter().map(|&(_, group)| group).collect();
            unique.sort_unstable();
            unique.dedup();
            // Last: nothing else is left to fail and leave the run started.
            runner
                .start_run(&run, cycle, &unique)
                .map_err(|source| RunError::Remote {
                    cycle: cycle.to_string(),
                    run: run.to_string(),
                    source,
                })?;
            rt.remote = Some((runner, run));
        }
        // The watchdog fires timeouts, and starts parts put off by a rate.
        if plan.any_timeout || !plan.rates.is_empty() {
            let dog = Watchdog::start(cycle).map_err(|e| start_error("the watchdog thread", e))?;
            *rt.watchdog.lock() = Some(dog);
        }
        Ok(Engine {
            rt: Arc::new(rt),
            pool_threads,
        })
    }

    /// The running engine's runtime.
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Stops everything the engine started, in order — the watchdog (its
    /// last timers fire), the component threads (their last jobs run),
    /// the worker processes — and waits until no job or thread of the run
    /// holds the runtime (not past a timed part that ignores its stop
    /// token).
    pub(crate) fn finish(self) -> Finished {
        let rt = self.rt;
        if let Some(mut dog) = rt.watchdog.lock().take() {
            dog.shutdown();
        }
        for component in &rt.components {
            component.shutdown();
        }
        if let Some(processes) = &rt.processes {
            processes.shutdown(Duration::from_secs(2));
        }
        let released = rt.wait_released(RELEASE_LIMIT, LATE_PART_LIMIT);
        if let Some((runner, run)) = &rt.remote {
            runner.end_run(run);
        }
        let part_threads = std::mem::take(&mut *rt.own_threads.lock());
        Finished {
            part_threads,
            rt,
            released,
            pool_threads: self.pool_threads,
        }
    }
}

/// A finished engine: its runtime, to read the run's results from, and
/// the threads left to join.
pub(crate) struct Finished {
    rt: Arc<Runtime>,
    /// No job or thread of the run holds the runtime any more.
    released: bool,
    part_threads: Vec<JoinHandle<()>>,
    pool_threads: Option<PoolThreads>,
}

impl Finished {
    /// The finished run's runtime.
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Lets the runtime go and joins the threads the run started — unless
    /// a part that ignored its stop token still holds it: its thread ends
    /// the pool when it returns.
    pub(crate) fn join(self) {
        drop(self.rt);
        if !self.released {
            return;
        }
        // Every part's own thread has let go of the runtime: each has
        // returned, or is about to.
        for handle in self.part_threads {
            let _ = handle.join();
        }
        if let Some(threads) = self.pool_threads {
            // The pool is gone with the runtime; its threads are ending.
            for handle in std::mem::take(&mut *threads.lock()) {
                let _ = handle.join();
            }
        }
    }
}

impl Runtime {
    /// Waits until no job or thread holds the runtime (see [`Held`]), at
    /// most `limit`, or `late_limit` while a timed part is still running;
    /// whether it was released.
    fn wait_released(&self, limit: Duration, late_limit: Duration) -> bool {
        let begun = Instant::now();
        let holds = &self.holds;
        let mut guard = holds.lock.lock();
        while holds.count.load(Ordering::Acquire) > 0 {
            let late = self.timed_running.load(Ordering::Acquire) > 0;
            let deadline = begun + if late { late_limit } else { limit };
            if holds.released.wait_until(&mut guard, deadline).timed_out() {
                return holds.count.load(Ordering::Acquire) == 0;
            }
        }
        true
    }
}
