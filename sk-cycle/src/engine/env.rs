//! What a running part sees of the run: outputs it may read, the
//! subtree below a part, the store.

use std::sync::Arc;

use sk_core::Value;

use super::Runtime;
use crate::ask::{Asker, Question, Reply};
use crate::context::ContextEnv;
use crate::coord::Coord;
use crate::error::ReadError;
use crate::store::Store;

/// The view a part's context has of the run.
pub(crate) struct Env<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) lane: u32,
}

impl ContextEnv for Env<'_> {
    fn read(&self, reader: &str, part: &str) -> Result<Arc<Value>, ReadError> {
        let plan = &self.rt.plan;
        let Some(id) = plan.id_of(part) else {
            return Err(ReadError::Unknown {
                reader: format!("part \"{reader}\""),
                part: part.to_owned(),
            });
        };
        let me = plan.id_of(reader).map(|r| &plan.parts[r as usize]);
        let latest = me.is_some_and(|me| me.reads_latest().contains(&id));
        let ordered = me.is_some_and(|me| me.input_from == Some(id) || me.reads().contains(&id));
        if !latest && !ordered {
            return Err(ReadError::Undeclared {
                reader: format!("part \"{reader}\""),
                part: part.to_owned(),
            });
        }
        let value = if latest {
            self.rt.latest_output(id)
        } else {
            self.rt.output(id, self.lane)
        };
        value.ok_or_else(|| ReadError::NoOutput {
            reader: format!("part \"{reader}\""),
            part: part.to_owned(),
            state: self
                .rt
                .state(id)
                .map_or_else(|| "not run yet".to_owned(), |s| s.to_string()),
        })
    }

    fn subtree_latest(&self, part: &str) -> Option<crate::context::LatestOutputs> {
        let plan = &self.rt.plan;
        let id = plan.id_of(part)?;
        let below = crate::plan::subtree(&plan.tree_children, id);
        Some(
            below
                .into_iter()
                .map(|p| {
                    let name = Arc::clone(&plan.parts[p as usize].part.name);
                    (name, self.rt.latest_output(p))
                })
                .collect(),
        )
    }

    fn part_name(&self, node: u32) -> &Arc<str> {
        &self.rt.plan.names[node as usize]
    }

    fn part_coord(&self, node: u32) -> Coord {
        self.rt.plan.parts[node as usize].coord
    }

    fn name_at(&self, coord: Coord) -> Option<&str> {
        let id = self.rt.plan.by_coord.get(coord)?;
        Some(&self.rt.plan.parts[id as usize].part.name)
    }

    fn store(&self) -> &Store {
        &self.rt.store
    }

    fn run_key(&self) -> String {
        match self.rt.durable() {
            Some(durable) => durable.run().to_owned(),
            None => format!("{}#{}", self.rt.cycle, self.rt.run_id),
        }
    }

    fn recorded_step(
        &self,
        part: &str,
        iteration: u64,
        step: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        match self.rt.durable() {
            Some(durable) => durable
                .step(part, iteration, step)
                .map_err(|e| sk_core::error_chain(&e)),
            None => Ok(None),
        }
    }

    fn record_step(
        &self,
        part: &str,
        iteration: u64,
        step: &str,
        value: Vec<u8>,
    ) -> Result<(), String> {
        match self.rt.durable() {
            Some(durable) => durable
                .record_step(part, self.lane, iteration, step, value)
                .map_err(|e| sk_core::error_chain(&e)),
            None => Ok(()),
        }
    }
}

scoped_tls::scoped_thread_local!(static RUNTIME: Runtime);

thread_local! {
    /// The part this thread runs, when it runs a function part of the
    /// run in `RUNTIME`: (lane, node, iteration, attempt).
    static AT: std::cell::Cell<(u32, u32, u64, u32)> = const { std::cell::Cell::new((0, 0, 0, 0)) };
}

/// Runs `f`, function part `node` of `rt` on this thread, so that its
/// code's questions (`current_part`) are answered here.
pub(crate) fn enter<R>(
    rt: &Runtime,
    lane: u32,
    node: u32,
    iteration: u64,
    attempt: u32,
    f: impl FnOnce() -> R,
) -> R {
    /// Puts the outer part back, however `f` ends (a panicking part is
    /// caught further up, and this thread goes on).
    struct Restore((u32, u32, u64, u32));
    impl Drop for Restore {
        fn drop(&mut self) {
            AT.with(|at| at.set(self.0));
        }
    }
    let _restore = Restore(AT.with(|at| at.replace((lane, node, iteration, attempt))));
    RUNTIME.set(rt, f)
}

/// Answers `question` for the function part this thread runs; the
/// question back when it runs none.
pub(crate) fn respond_here(
    question: Question<Value>,
) -> Result<Reply<Arc<Value>>, Question<Value>> {
    if !RUNTIME.is_set() {
        return Err(question);
    }
    let (lane, node, iteration, attempt) = AT.with(std::cell::Cell::get);
    Ok(RUNTIME.with(|rt| {
        let env = rt.env(lane);
        let pp = &rt.plan.parts[node as usize];
        Asker {
            env: &env,
            part: &pp.part.name,
            coord: pp.coord,
            iteration,
            attempt,
        }
        .respond(question)
    }))
}
