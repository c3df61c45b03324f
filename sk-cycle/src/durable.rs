//! Durable runs: what a journaled run keeps in its journal (see
//! `sk-journal`) and reads back when it resumes.
//!
//! [`Durable`] is a run's side of its journal: the plan's fingerprint,
//! where the run was ([`Durable::start`]), what to replay, the store
//! writes each running part made, and the records it sends as parts end.
//! The engine calls it from its one completion path (record) and from the
//! one place it decides whether a part runs (replay), so no place — pool,
//! thread, component, worker process — knows about journals.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use sk_core::Value;
use sk_journal::{Durability, Fingerprint, Journal, JournalError, PartRecord};

use crate::error::{PartError, RunError};
use crate::mode::PartState;
use crate::plan::{DATA, Plan, edge_target};
use crate::store::Store;

/// Called after a part's record is committed.
pub(crate) type RecordedFn = Arc<dyn Fn(&Recorded) + Send + Sync>;

/// A part's end, committed to the run's journal (see
/// [`Run::on_recorded`](crate::Run::on_recorded)).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The part.
    pub part: Arc<str>,
    /// Its lane's iteration, from 1.
    pub iteration: u64,
    /// How it ended.
    pub state: PartState,
}

/// Where a resumed run picked up (see [`Run::journal`](crate::Run::journal)).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The run's id.
    pub run: String,
    /// Per lane, the iterations that had ended before the resume.
    pub iterations_done: Vec<u64>,
    /// Parts of the interrupted iterations whose recorded ends are
    /// replayed instead of run again.
    pub replayed: usize,
    /// Parts marked [`once`](crate::CyclePart::once) that had started and
    /// left no end: not run again, failed as outcome unknown.
    pub unknown: usize,
}

impl Resumed {
    /// The iteration the first lane resumes at (its first not ended).
    pub fn iteration(&self) -> u64 {
        self.iterations_done.first().copied().unwrap_or(0) + 1
    }
}

/// How a run keeps its journal (see [`Run::journal`](crate::Run::journal));
/// no path: the run keeps none.
#[derive(Clone, Default)]
pub(crate) struct JournalSetup {
    pub(crate) path: Option<PathBuf>,
    pub(crate) run: Option<String>,
    pub(crate) durability: Durability,
    pub(crate) keep: Option<u64>,
    pub(crate) on_recorded: Option<RecordedFn>,
    /// Once parts to run again on resume (see `Run::rerun_once`).
    pub(crate) rerun_once: Vec<String>,
}

/// How a part ended, as [`Durable::record`] records it.
pub(crate) struct End<'a> {
    pub(crate) lane: u32,
    pub(crate) iteration: u64,
    pub(crate) state: PartState,
    pub(crate) attempts: u32,
    pub(crate) error: Option<&'a PartError>,
    pub(crate) output: Option<&'a Value>,
}

/// A recorded end to replay instead of running the part.
pub(crate) enum Replay {
    /// The part ended so (the state, its error's text, its output).
    Ended {
        state: PartState,
        error: Option<String>,
        output: Option<Value>,
    },
    /// A [`once`](crate::CyclePart::once) part started and left no end.
    Unknown,
}

/// What a part replays instead of running, and in which iteration.
type PendingReplay = (u64, Replay);

/// A run's side of its journal.
pub(crate) struct Durable {
    journal: Journal,
    run: Arc<str>,
    shared: Arc<Shared>,
    store: Arc<Store>,
    /// Held from reading store values to sending their record, so that
    /// records carrying the same key are committed in the order their
    /// values were read.
    store_order: Mutex<()>,
    /// Per part: the store keys its current execution wrote.
    writes: Box<[Mutex<Vec<String>>]>,
    /// Per part: what to replay, in which iteration.
    replay: Box<[Mutex<Option<PendingReplay>>]>,
    /// Per lane: iterations ended before the run started.
    pub(crate) lanes_done: Vec<u64>,
    /// Where the run resumed (`None`: a fresh run).
    pub(crate) resumed: Option<Resumed>,
}

/// What the journal's writer thread tells the run.
struct Shared {
    /// Why the journal stopped recording, once it has.
    failed: Mutex<Option<JournalError>>,
    on_recorded: Option<RecordedFn>,
}

impl Shared {
    fn fail(&self, error: JournalError) {
        let mut failed = self.failed.lock();
        if failed.is_none() {
            tracing::error!(error = %error, "the run's journal stopped recording");
            *failed = Some(error);
        }
    }
}

impl Durable {
    /// Opens the journal of `setup` for cycle `cycle` and finds where run
    /// was: restores the store, and sets up the ends to replay. Returns
    /// how many parts are to be replayed (see [`Durable::take_replay`]).
    ///
    /// # Errors
    ///
    /// [`RunError::Unrecordable`] for a part whose output cannot be
    /// recorded, [`RunError::Journal`] when the journal cannot be opened,
    /// holds another plan under the run's id, or holds records this
    /// plan cannot read.
    pub(crate) fn start(
        setup: &JournalSetup,
        path: &std::path::Path,
        cycle: &str,
        plan: &Plan,
        store: &Arc<Store>,
    ) -> Result<(Durable, usize), RunError> {
        let journal_error = |source| RunError::Journal {
            cycle: cycle.to_owned(),
            source: Box::new(source),
        };
        if let Some(part) = plan
            .parts
            .iter()
            .find(|p| p.part.local_output && !p.part.recompute)
        {
            return Err(RunError::Unrecordable {
                cycle: cycle.to_owned(),
                part: part.part.name.to_string(),
                coord: part.coord,
            });
        }
        // Once parts the caller has checked did not do their effect.
        let mut rerun_once = vec![false; plan.parts.len()];
        for name in &setup.rerun_once {
            match plan.id_of(name) {
                Some(id) if plan.parts[id as usize].part.once => rerun_once[id as usize] = true,
                _ => {
                    return Err(RunError::NotOnce {
                        cycle: cycle.to_owned(),
                        part: name.clone(),
                    });
                }
            }
        }
        let journal = Journal::open(path, setup.durability).map_err(journal_error)?;
        if let Some(keep) = setup.keep {
            journal.keep_iterations(keep);
        }
        let run: Arc<str> = Arc::from(setup.run.as_deref().unwrap_or(cycle));
        let lanes = u32::try_from(plan.lanes.len()).unwrap_or(u32::MAX);
        let resume = journal
            .begin_lanes(
                &run,
                plan.fingerprint.get_or_init(|| fingerprint(cycle, plan)),
                lanes,
            )
            .map_err(journal_error)?;
        let corrupt = |why: String| {
            journal_error(JournalError::Corrupt {
                path: path.to_owned(),
                why,
            })
        };
        let lanes_done: Vec<u64> = (0..plan.lanes.len())
            .map(|lane| resume.iterations_done(lane))
            .collect();
        let next = |lane: u32| lanes_done.get(lane as usize).copied().unwrap_or(0) + 1;
        let mut replay: Vec<Option<(u64, Replay)>> = plan.parts.iter().map(|_| None).collect();
        for record in resume.completed {
            let Some(id) = plan.id_of(&record.part) else {
                continue;
            };
            let part = &plan.parts[id as usize].part;
            if record.iteration != next(plan.parts[id as usize].lane) {
                continue;
            }
            let Some(state) = PartState::from_name(&record.state) else {
                return Err(corrupt(format!(
                    "part \"{}\" has an unknown end state \"{}\"",
                    record.part, record.state
                )));
            };
            // A failure is not replayed: the part runs again — unless it
            // runs at most once and did run (and is not to run again).
            let keep = part.once && state.ran() && !rerun_once[id as usize];
            if state.is_failure() && !keep {
                continue;
            }
            let output = match record.output {
                Some(bytes) => Some(Value::from_external(bytes).map_err(|e| {
                    corrupt(format!(
                        "the recorded output of part \"{}\" cannot be read: {}",
                        record.part,
                        sk_core::error_chain(&e)
                    ))
                })?),
                None => None,
            };
            let end = Replay::Ended {
                state,
                error: record.error,
                output,
            };
            replay[id as usize] = Some((record.iteration, end));
        }
        // Parts with no end to replay run again (a failure, an output
        // that could not be recorded, a part recomputed on resume, or one
        // that had not ended): what comes after them runs again too.
        if replay.iter().any(Option::is_some) {
            let rerun: Vec<u32> = (0..plan.parts.len())
                .filter(|&id| replay[id].is_none())
                .filter_map(|id| u32::try_from(id).ok())
                .collect();
            forget_after(plan, &rerun, &mut replay);
        }
        for (iteration, part) in resume.intents {
            let Some(id) = plan.id_of(&part) else {
                continue;
            };
            let slot = &mut replay[id as usize];
            let unknown = iteration == next(plan.parts[id as usize].lane) && slot.is_none();
            if unknown && !rerun_once[id as usize] {
                *slot = Some((iteration, Replay::Unknown));
            }
        }
        let unknown = replay
            .iter()
            .filter(|r| matches!(r, Some((_, Replay::Unknown))))
            .count();
        let replayed = replay.iter().flatten().count() - unknown;
        for (key, bytes) in resume.store {
            let value = Value::from_external(bytes).map_err(|e| {
                corrupt(format!(
                    "the recorded store value under \"{key}\" cannot be read: {}",
                    sk_core::error_chain(&e)
                ))
            })?;
            store.set_value(key, value);
        }
        for key in resume.removed {
            store.remove(&key);
        }
        // From here, writes no part makes on its own thread are kept for
        // the next record.
        store.keep_stray_writes(true);
        let resumed = resume.resumed.then(|| Resumed {
            run: run.to_string(),
            iterations_done: lanes_done.clone(),
            replayed,
            unknown,
        });
        if let Some(r) = &resumed {
            tracing::info!(
                run = %r.run, iteration = r.iteration(), replayed, unknown,
                "resuming a journaled run"
            );
        }
        let durable = Durable {
            journal,
            run,
            shared: Arc::new(Shared {
                failed: Mutex::new(None),
                on_recorded: setup.on_recorded.clone(),
            }),
            store: Arc::clone(store),
            store_order: Mutex::new(()),
            writes: plan.parts.iter().map(|_| Mutex::new(Vec::new())).collect(),
            replay: replay.into_iter().map(Mutex::new).collect(),
            lanes_done,
            resumed,
        };
        Ok((durable, replayed + unknown))
    }

    /// The run's id.
    pub(crate) fn run(&self) -> &str {
        &self.run
    }

    /// What to replay for part `id` in `iteration`, taken (once).
    pub(crate) fn take_replay(&self, id: u32, iteration: u64) -> Option<Replay> {
        let mut slot = self.replay[id as usize].lock();
        match slot.as_ref() {
            Some((at, _)) if *at == iteration => slot.take().map(|(_, replay)| replay),
            _ => None,
        }
    }

    /// Notes the store keys part `id` wrote.
    pub(crate) fn wrote(&self, id: u32, keys: Vec<String>) {
        if !keys.is_empty() {
            self.writes[id as usize].lock().extend(keys);
        }
    }

    /// Records the end of part `id` (`name`), with the store writes it
    /// made (and any stray ones) and their values now. An output that cannot be
    /// encoded is not recorded: the part runs again on resume.
    pub(crate) fn record(&self, id: u32, name: &Arc<str>, end: End<'_>) {
        let End {
            lane,
            iteration,
            state,
            attempts,
            error,
            output,
        } = end;
        let output = match output.map(Value::encode_external) {
            None => None,
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(e)) => {
                tracing::warn!(
                    part = %name, error = %sk_core::error_chain(&e),
                    "a part's output cannot be journaled: it runs again on resume"
                );
                self.forget(id);
                return;
            }
        };
        let keys = std::mem::take(&mut *self.writes[id as usize].lock());
        self.send_with_store(keys, |store| {
            let record = PartRecord {
                iteration,
                part: name.to_string(),
                lane,
                state: state.as_str().to_owned(),
                attempts,
                error: error.map(ToString::to_string),
                output,
                store,
            };
            let shared = Arc::clone(&self.shared);
            let name = Arc::clone(name);
            self.journal
                .record_then(&self.run, record, move |committed| match committed {
                    Ok(()) => {
                        if let Some(observer) = &shared.on_recorded {
                            observer(&Recorded {
                                part: name,
                                iteration,
                                state,
                            });
                        }
                    }
                    Err(e) => shared.fail(e),
                });
        });
    }

    /// Forgets the store writes of part `id`'s execution, whose end is not
    /// recorded.
    pub(crate) fn forget(&self, id: u32) {
        self.writes[id as usize].lock().clear();
    }

    /// Records the store writes no part's record took (made by threads
    /// parts started, or by observers).
    fn record_stray(&self) {
        self.send_with_store(Vec::new(), |writes| {
            if !writes.is_empty() {
                drop(self.journal.record_store(&self.run, writes));
            }
        });
    }

    /// Calls `send` with the journal's view of store keys `keys` and of
    /// the stray writes not recorded yet — their values now (`None`:
    /// removed; local values are left out) — holding the store order
    /// from reading the values to sending them, so that writes carrying
    /// the same key are committed in the order they were read.
    fn send_with_store(
        &self,
        mut keys: Vec<String>,
        send: impl FnOnce(Vec<(String, Option<Vec<u8>>)>),
    ) {
        keys.extend(self.store.take_stray());
        if keys.is_empty() {
            return send(Vec::new());
        }
        keys.sort_unstable();
        keys.dedup();
        let _order = self.store_order.lock();
        let writes = keys
            .into_iter()
            .filter_map(|key| match self.store.get_value(&key) {
                Err(_) => Some((key, None)),
                Ok(value) => match value.encode_external() {
                    Ok(bytes) => Some((key, Some(bytes))),
                    // A local value stays in this process: not journaled.
                    Err(_) => None,
                },
            })
            .collect();
        send(writes);
    }

    /// Records that `iteration` of lane `lane` ended.
    pub(crate) fn iteration_ended(&self, lane: usize, iteration: u64) {
        self.record_stray();
        let lane = u32::try_from(lane).unwrap_or(u32::MAX);
        // Not waited for: the next records queue behind it (first in,
        // first committed), and a failure is noted by the next commit.
        drop(self.journal.finish_iteration(&self.run, lane, iteration));
    }

    /// Records (and waits for) the intent of [`once`](crate::CyclePart::once)
    /// part `part` to run in `iteration`.
    ///
    /// # Errors
    ///
    /// The journal's, when it cannot commit.
    pub(crate) fn intend(&self, part: &str, lane: u32, iteration: u64) -> Result<(), JournalError> {
        self.journal
            .record_intent(&self.run, lane, iteration, part)
            .wait()
            .inspect_err(|e| {
                self.shared.fail(JournalError::Stopped {
                    path: self.journal.path().to_owned(),
                    why: e.to_string(),
                });
            })
    }

    /// The recorded value of step `step` of `part` in `iteration`.
    ///
    /// # Errors
    ///
    /// The journal's.
    pub(crate) fn step(
        &self,
        part: &str,
        iteration: u64,
        step: &str,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        self.journal.step(&self.run, iteration, part, step)
    }

    /// Records (and waits for) step `step` of `part` (of lane `lane`) in
    /// `iteration`.
    ///
    /// # Errors
    ///
    /// The journal's, when it cannot commit.
    pub(crate) fn record_step(
        &self,
        part: &str,
        lane: u32,
        iteration: u64,
        step: &str,
        value: Vec<u8>,
    ) -> Result<(), JournalError> {
        self.journal
            .record_step(&self.run, lane, iteration, part, step, value)
            .wait()
    }

    /// Whether the journal has stopped recording.
    pub(crate) fn has_failed(&self) -> bool {
        self.shared.failed.lock().is_some()
    }

    /// Waits until everything is committed; the first failure, if the
    /// journal stopped recording.
    ///
    /// # Errors
    ///
    /// The journal's first failure.
    pub(crate) fn finish(&self) -> Result<(), JournalError> {
        self.record_stray();
        if let Err(e) = self.journal.flush() {
            self.shared.fail(e);
        }
        match self.shared.failed.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // The store outlives the run: it stops keeping stray writes.
        self.store.keep_stray_writes(false);
    }
}

/// Drops the replays of every part after the parts of `rerun` (which run
/// again, so what came after them may come out otherwise) — but not of a
/// part that runs at most once and ran: its effect happened.
fn forget_after(plan: &Plan, rerun: &[u32], replay: &mut [Option<PendingReplay>]) {
    let ran = |slot: &Option<PendingReplay>| matches!(slot, Some((_, Replay::Ended { state, .. })) if state.ran());
    let mut seen = vec![false; plan.node_count];
    let mut stack: Vec<u32> = rerun.to_vec();
    while let Some(node) = stack.pop() {
        for &next in plan.successors(node) {
            let next = edge_target(next);
            if std::mem::replace(&mut seen[next as usize], true) {
                continue;
            }
            if let Some(part) = plan.parts.get(next as usize) {
                let slot = &mut replay[next as usize];
                if !(part.part.once && ran(slot)) {
                    *slot = None;
                }
            }
            stack.push(next);
        }
    }
}

/// The fingerprint of `plan`: per part its place in the graph (level and
/// position, lane, successors, input), where it runs and its modes;
/// barriers by their successors.
pub(crate) fn fingerprint(cycle: &str, plan: &Plan) -> Fingerprint {
    let node_name = |node: u32| -> String {
        let target = edge_target(node);
        let data = if node & DATA != 0 { "*" } else { "" };
        match plan.parts.get(target as usize) {
            Some(p) => format!("{data}{}", p.part.name),
            None => format!("{data}#{}", target as usize - plan.parts.len()),
        }
    };
    let successors = |node: u32| -> String {
        let mut names: Vec<String> = plan
            .successors(node)
            .iter()
            .map(|&s| node_name(s))
            .collect();
        names.sort();
        names.join(",")
    };
    let mut entries: Vec<(String, String)> = plan
        .parts
        .iter()
        .enumerate()
        .map(|(id, p)| {
            let part = &p.part;
            let mut d = format!(
                "at {} lane {} on {} mode {:?}",
                p.coord, p.lane, part.placement, part.error_mode
            );
            if let Some(from) = p.input_from {
                let _ = write!(d, " input {}", plan.parts[from as usize].part.name);
            }
            if let Some(limit) = part.settings().timeout {
                let _ = write!(d, " timeout {limit:?}");
            }
            if part.once {
                d.push_str(" once");
            }
            if part.recompute {
                d.push_str(" recompute");
            }
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            let _ = write!(d, " then [{}]", successors(id));
            (part.name.to_string(), d)
        })
        .collect();
    for node in plan.parts.len()..plan.node_count {
        let node = u32::try_from(node).unwrap_or(u32::MAX);
        entries.push((
            node_name(node),
            format!("barrier then [{}]", successors(node)),
        ));
    }
    Fingerprint::new(
        format!("cycle \"{cycle}\", {} lanes", plan.lanes.len()),
        entries,
    )
}
