//! The walk of a blueprint's tree that makes every part's [`PlanPart`]:
//! what each part inherits from the splits above it (its data parent,
//! gate, rate limiters, conditions, level-sync scopes), where it runs,
//! and the edges its tree and splits make.
//!
//! The walk visits nodes in index order, which the builder makes parents
//! first (see [`Blueprint`]): each node's inheritance is written by its
//! parent before the walk reaches it. In index order a large cycle's
//! nodes, and the parts they point at, are read in the order they were
//! made, one after the next in memory; a walk down the tree read a grid
//! built row by row down its columns, two cache misses per part.
//!
//! Lanes are numbered separately, in the depth-first order reports and
//! journals have always recorded (see [`number_lanes`]), and only when a
//! cycle has any independent lane.

use std::num::NonZeroUsize;
use std::sync::Arc;

use super::{Guards, PlanPart, Site, effective_sync, intern, process_error_or};
use crate::blueprint::{Blueprint, BpKind, NodeIdx};
use crate::error::BuildError;
use crate::mode::{ErrorMode, Placement, SyncMode};
use crate::part::{ConditionFn, Work};

/// What the walk found: the parts by id and what the rest of compile
/// builds on.
pub(super) struct Walked {
    /// Every reachable part, by id (short of the blueprint's part count
    /// only when a node is not reachable from the root).
    pub(super) parts: Vec<PlanPart>,
    /// Their names, by id: taken as the walk reads each part, when the
    /// parts come in id order (else empty: taken from `parts` after).
    pub(super) names: Vec<Arc<str>>,
    pub(super) lane_count: u32,
    pub(super) gates: Vec<NonZeroUsize>,
    /// Rate limits, in part starts per second.
    pub(super) rates: Vec<f64>,
    pub(super) components: Vec<String>,
    /// Tree and sequential edges: `(from, to, data)`.
    pub(super) edges: Vec<(u32, u32, bool)>,
    /// Level-sync scopes: the part ids in each scope.
    pub(super) level_scopes: Vec<Vec<u32>>,
    /// Whether a sequential or pipeline split chained its parts: edges
    /// the builder's ordering graph did not check for loops.
    pub(super) chained: bool,
    pub(super) any_timeout: bool,
    pub(super) any_retry: bool,
    pub(super) any_local_process: bool,
    pub(super) remote_parts: Vec<u32>,
    /// Parts that declared reads, and process parts (by node): the checks
    /// after the walk visit only these.
    pub(super) readers: Vec<u32>,
    pub(super) process_nodes: Vec<NodeIdx>,
    /// The first part (by id) with a fallback error mode and no fallback.
    pub(super) missing_fallback: Option<u32>,
}

/// What the nodes below a split inherit from it (and from the splits above
/// it); shared by every node below it down to the next split.
struct Scope {
    gate: Option<u32>,
    rates: Vec<u32>,
    conditions: Vec<Arc<ConditionFn>>,
    /// The level-sync scopes the parts below are in.
    levels: Vec<usize>,
}

/// What a node inherits from its parent, written by the parent (8 bytes:
/// one per node of a large cycle).
#[derive(Clone, Copy)]
struct Inherited {
    /// The part whose output is its input ([`NONE`]: none).
    data_parent: u32,
    /// Index into the walk's scopes ([`NONE`]: the parent was not reached
    /// from the root).
    scope: u32,
}

const NONE: u32 = u32::MAX;

const UNREACHED: Inherited = Inherited {
    data_parent: NONE,
    scope: NONE,
};

impl Inherited {
    fn new(data_parent: Option<u32>, scope: u32) -> Self {
        Inherited {
            data_parent: data_parent.unwrap_or(NONE),
            scope,
        }
    }

    fn data_parent(self) -> Option<u32> {
        (self.data_parent != NONE).then_some(self.data_parent)
    }
}

/// Walks `bp`'s nodes in index order; `part_of_node` gives each part
/// node's id (`part_count` of them).
pub(super) fn walk(
    bp: &Blueprint,
    part_count: usize,
    part_of_node: &[Option<u32>],
) -> Result<Walked, BuildError> {
    let pid = |idx: NodeIdx| part_of_node[idx];
    let cycle_gate = bp.concurrency_limit;
    let cycle_level = bp.sync == Some(SyncMode::Level);
    let cycle_independent = bp.sync == Some(SyncMode::Independent);
    let mut w = Walked {
        parts: Vec::with_capacity(part_count),
        names: Vec::with_capacity(part_count),
        lane_count: 1,
        gates: cycle_gate.into_iter().collect(),
        rates: Vec::new(),
        components: Vec::new(),
        // A tree edge into each part but the root, and the `after` and
        // `pipe` edges compile adds: one allocation, not a doubling.
        edges: Vec::with_capacity(part_count + bp.after.len() + bp.pipes.len()),
        level_scopes: if cycle_level {
            vec![Vec::new()]
        } else {
            Vec::new()
        },
        chained: false,
        any_timeout: false,
        any_retry: false,
        any_local_process: false,
        remote_parts: Vec::new(),
        readers: Vec::new(),
        process_nodes: Vec::new(),
        missing_fallback: None,
    };
    let add_rate = |rates: &mut Vec<f64>,
                    per_sec: f64,
                    what: &dyn Fn() -> String|
     -> Result<u32, BuildError> {
        if !(per_sec.is_finite() && per_sec > 0.0) {
            return Err(process_error_or(
                bp,
                BuildError::InvalidRateLimit {
                    what: what(),
                    per_sec,
                },
            ));
        }
        rates.push(per_sec);
        Ok(rates.len() as u32 - 1)
    };
    let root_rates = match bp.rate_limit {
        Some(per_sec) => vec![add_rate(&mut w.rates, per_sec, &|| {
            format!("cycle \"{}\"", bp.name)
        })?],
        None => Vec::new(),
    };
    let mut scopes = vec![Scope {
        gate: cycle_gate.map(|_| 0),
        rates: root_rates,
        conditions: Vec::new(),
        levels: if cycle_level { vec![0] } else { Vec::new() },
    }];
    // Parts are written in id order when ids follow node order (the
    // builder's usual coordinate order); else each into its slot.
    let mut scattered: Option<Vec<Option<PlanPart>>> = None;
    let mut any_independent = cycle_independent;
    let mut inherited = vec![UNREACHED; bp.nodes.len()];
    inherited[0] = Inherited::new(None, 0);
    for (idx, node) in bp.nodes.iter().enumerate() {
        let inh = inherited[idx];
        if inh.scope == NONE {
            continue;
        }
        debug_assert!(node.children.iter().all(|&c| c > idx), "parents first");
        let scope = &scopes[inh.scope as usize];
        match &node.kind {
            BpKind::Part(part) => {
                let Some(id) = pid(idx) else { continue };
                let settings = part.settings();
                w.any_timeout |= settings.timeout.is_some();
                w.any_retry |= part.error_mode == ErrorMode::Retry;
                w.any_local_process |= part.placement.is_local_process();
                if matches!(
                    part.error_mode,
                    ErrorMode::FallbackFail | ErrorMode::FallbackSkip
                ) && settings.fallback.is_none()
                {
                    w.missing_fallback = Some(w.missing_fallback.map_or(id, |m| m.min(id)));
                }
                if !settings.reads.is_empty() || !settings.reads_latest.is_empty() {
                    w.readers.push(id);
                }
                if part.placement.is_process() {
                    w.process_nodes.push(idx);
                }
                let site = match &part.placement {
                    Placement::Component(name) => Site::Component(intern(&mut w.components, name)),
                    Placement::Remote(_) => {
                        w.remote_parts.push(id);
                        Site::Remote
                    }
                    p if p.is_process() => Site::Process,
                    _ if settings.timeout.is_some() => Site::Timed,
                    _ => Site::Pool,
                };
                if let Some(parent) = inh.data_parent() {
                    w.edges.push((parent, id, true));
                }
                for &level in &scope.levels {
                    w.level_scopes[level].push(id);
                }
                let plain = settings.validator.is_none()
                    && settings.input_validator.is_none()
                    && settings.condition.is_none()
                    && part.error_mode != ErrorMode::Retry
                    && settings.timeout.is_none()
                    && part.placement == Placement::Pool
                    && scope.conditions.is_empty()
                    && scope.gate.is_none()
                    && scope.rates.is_empty()
                    && settings.rate_limit.is_none()
                    && !part.once;
                let mut part_rates = scope.rates.clone();
                if let Some(per_sec) = settings.rate_limit {
                    let what = || format!("part \"{}\" at {}", part.name, node.coord);
                    part_rates.push(add_rate(&mut w.rates, per_sec, &what)?);
                }
                let guarded =
                    !(scope.conditions.is_empty() && scope.gate.is_none() && part_rates.is_empty());
                let guards = guarded.then(|| {
                    Box::new(Guards {
                        split_conditions: scope.conditions.as_slice().into(),
                        gate: scope.gate,
                        rates: part_rates.into_boxed_slice(),
                        ..Guards::default()
                    })
                });
                let planned = PlanPart {
                    part: Arc::clone(part),
                    plain: match &part.work {
                        Work::Context(f) if plain => Some(Arc::clone(f)),
                        _ => None,
                    },
                    coord: node.coord,
                    input_from: inh.data_parent(),
                    guards,
                    // Numbered after the walk.
                    lane: 0,
                    site,
                };
                match &mut scattered {
                    None if id as usize == w.parts.len() => {
                        w.parts.push(planned);
                        w.names.push(Arc::clone(&part.name));
                    }
                    None => {
                        w.names = Vec::new();
                        let mut slots: Vec<Option<PlanPart>> =
                            w.parts.drain(..).map(Some).collect();
                        slots.resize_with(part_count, || None);
                        slots[id as usize] = Some(planned);
                        scattered = Some(slots);
                    }
                    Some(slots) => slots[id as usize] = Some(planned),
                }
                for &child in &node.children {
                    inherited[child] = Inherited::new(Some(id), inh.scope);
                }
            }
            BpKind::Fork(split) => {
                let mode = effective_sync(bp, split.sync);
                any_independent |= mode == SyncMode::Independent;
                w.chained |= matches!(mode, SyncMode::Sequential | SyncMode::Pipeline);
                let gate = if cycle_gate.is_some() {
                    scope.gate
                } else if let Some(limit) = split.concurrency_limit {
                    w.gates.push(limit);
                    Some(w.gates.len() as u32 - 1)
                } else {
                    scope.gate
                };
                let mut rates = scope.rates.clone();
                if let Some(per_sec) = split.rate_limit {
                    let what = || format!("the split at {}", node.coord);
                    rates.push(add_rate(&mut w.rates, per_sec, &what)?);
                }
                let mut conditions = scope.conditions.clone();
                if let Some(cond) = &split.condition {
                    conditions.push(Arc::clone(cond));
                }
                let mut levels = scope.levels.clone();
                if mode == SyncMode::Level && !cycle_level {
                    w.level_scopes.push(Vec::new());
                    levels.push(w.level_scopes.len() - 1);
                }
                scopes.push(Scope {
                    gate,
                    rates,
                    conditions,
                    levels,
                });
                let child_scope = scopes.len() as u32 - 1;
                let mut previous: Option<u32> = None;
                for &child_idx in &node.children {
                    let Some(child) = pid(child_idx) else {
                        continue;
                    };
                    let data_parent = match (mode, previous) {
                        (SyncMode::Pipeline, Some(prev)) => Some(prev),
                        _ => inh.data_parent(),
                    };
                    if let (SyncMode::Sequential, Some(prev)) = (mode, previous) {
                        w.edges.push((prev, child, false));
                    }
                    previous = Some(child);
                    inherited[child_idx] = Inherited::new(data_parent, child_scope);
                }
            }
        }
    }
    if let Some(slots) = scattered {
        w.parts = slots.into_iter().flatten().collect();
    }
    if any_independent && w.parts.len() == part_count {
        w.lane_count = number_lanes(bp, part_of_node, &mut w.parts);
    }
    Ok(w)
}

/// Numbers the lanes of `parts` (all of `bp`'s parts, by id), depth first
/// from the root, the last child of a node first: an independent split
/// numbers its parts' lanes in order when the walk reaches it, and a
/// cycle-wide independent sync gives each part but the root its own lane
/// when the walk reaches the part. Returns the number of lanes. (Without
/// an independent lane, every part is in lane 0.)
fn number_lanes(bp: &Blueprint, part_of_node: &[Option<u32>], parts: &mut [PlanPart]) -> u32 {
    let cycle_independent = bp.sync == Some(SyncMode::Independent);
    let pid = |idx: NodeIdx| part_of_node[idx];
    let mut lane_count = 1u32;
    let mut stack: Vec<(NodeIdx, u32)> = vec![(0, 0)];
    while let Some((idx, lane)) = stack.pop() {
        let node = &bp.nodes[idx];
        match &node.kind {
            BpKind::Part(_) => {
                let Some(id) = pid(idx) else { continue };
                let lane = if cycle_independent && idx != 0 {
                    lane_count += 1;
                    lane_count - 1
                } else {
                    lane
                };
                parts[id as usize].lane = lane;
                stack.extend(node.children.iter().map(|&c| (c, lane)));
            }
            BpKind::Fork(split) => {
                let independent =
                    effective_sync(bp, split.sync) == SyncMode::Independent && !cycle_independent;
                for &child in &node.children {
                    if pid(child).is_none() {
                        continue;
                    }
                    let lane = if independent {
                        lane_count += 1;
                        lane_count - 1
                    } else {
                        lane
                    };
                    stack.push((child, lane));
                }
            }
        }
    }
    lane_count
}
