//! Compiling a [`Blueprint`] into a [`Plan`]: the flat DAG the engine
//! runs.
//!
//! - Nodes `0..parts.len()` are the parts (forks are elided); the rest are
//!   level barriers (no work, only ordering).
//! - Edges are *data* edges (tree parent → child, pipeline chain, `pipe`):
//!   the child takes the parent's output as input, and a parent's failure
//!   reaches it; or *order* edges (`after`, sequential chains, barriers):
//!   ordering only.
//! - Sync modes become edges and lanes: `Level` adds a barrier between
//!   consecutive levels of its scope; `Sequential`/`Pipeline` chain a
//!   split's parts; `Independent` gives each branch its own lane that
//!   loops at its own pace. A cycle-wide mode applies to every split.
//! - Concurrency limits become gates (the innermost split's limit, or the
//!   cycle-wide one, which overrides); rate limits become limiters, each
//!   part drawing from its own, its splits' and the cycle's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::blueprint::{Blueprint, BpKind, Indexes, NodeIdx};
use crate::coord::Coord;
use crate::coords::CoordIndex;
use crate::error::BuildError;
use crate::mode::SyncMode;
use crate::names::NameIndex;
use crate::part::{ConditionFn, CyclePart, PartFn, Work};

mod edges;
mod walk;

pub(crate) use edges::{DATA, SOLE, edge_target};
use edges::{reaches, successor_lists};

/// One part, ready to run.
pub(crate) struct PlanPart {
    /// Behind an `Arc`: the record stays small, so large cycles stay in
    /// cache (a part's full settings are only read off the fast path).
    pub(crate) part: Arc<CyclePart>,
    /// The closure of a plain part — a context closure with no validator,
    /// retry, condition, gate, component, timeout or process — which the
    /// engine runs on its fast path.
    pub(crate) plain: Option<Arc<PartFn>>,
    pub(crate) coord: Coord,
    /// The part whose output is this part's input.
    pub(crate) input_from: Option<u32>,
    /// What few parts have (see [`Guards`]): `None` for most.
    pub(crate) guards: Option<Box<Guards>>,
    pub(crate) lane: u32,
    /// Where it runs (see `engine/place.rs`).
    pub(crate) site: Site,
}

/// A part's inherited conditions, gate, rate limiters and declared reads:
/// out of line, as most parts have none (a large cycle's plan is then
/// half the size, and made in half the memory).
#[derive(Default)]
pub(crate) struct Guards {
    /// Conditions inherited from the splits above it (its own is in `part`).
    pub(crate) split_conditions: Box<[Arc<ConditionFn>]>,
    pub(crate) gate: Option<u32>,
    /// The rate limiters a start of it draws from (its own, its splits',
    /// the cycle's): indices into [`Plan::rates`].
    pub(crate) rates: Box<[u32]>,
    /// The parts it declared it reads (ordered before it), and reads as
    /// they last completed.
    pub(crate) reads: Box<[u32]>,
    pub(crate) reads_latest: Box<[u32]>,
}

impl PlanPart {
    /// Conditions inherited from the splits above it.
    pub(crate) fn split_conditions(&self) -> &[Arc<ConditionFn>] {
        self.guards.as_ref().map_or(&[], |g| &g.split_conditions)
    }

    /// The gate it enters, if any.
    pub(crate) fn gate(&self) -> Option<u32> {
        self.guards.as_ref().and_then(|g| g.gate)
    }

    /// The rate limiters a start of it draws from.
    pub(crate) fn rates(&self) -> &[u32] {
        self.guards.as_ref().map_or(&[], |g| &g.rates)
    }

    /// The parts it declared it reads, ordered before it.
    pub(crate) fn reads(&self) -> &[u32] {
        self.guards.as_ref().map_or(&[], |g| &g.reads)
    }

    /// The parts it declared it reads as they last completed.
    pub(crate) fn reads_latest(&self) -> &[u32] {
        self.guards.as_ref().map_or(&[], |g| &g.reads_latest)
    }
}

/// Where a part runs, chosen when the plan is compiled; the engine runs
/// each site through one implementation of its `Place` trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// On the run's thread pool.
    Pool,
    /// On a thread of its own, raced by the watchdog at its timeout.
    Timed,
    /// On the long-lived component thread of this index (with its
    /// timeout, if any, kept there).
    Component(u32),
    /// In a worker process, its call waited for on a thread of its own.
    Process,
    /// On a remote group's worker, through the run's remote runner.
    Remote,
}

/// One lane: a set of nodes that iterate together.
pub(crate) struct LanePlan {
    pub(crate) nodes: Vec<u32>,
    pub(crate) roots: Vec<u32>,
    /// How many of its nodes have no successor: the lane's iteration ends
    /// when they have all ended (every other node is an ancestor of one).
    pub(crate) sinks: usize,
}

/// The compiled cycle.
pub(crate) struct Plan {
    pub(crate) parts: Vec<PlanPart>,
    /// Total nodes: parts, then barriers.
    pub(crate) node_count: usize,
    /// Successors of node `n`: `succ[succ_start[n]..succ_start[n + 1]]`,
    /// each a node id, with [`DATA`] set on data edges and [`SOLE`] on
    /// edges into a node with no other predecessor.
    pub(crate) succ_start: Vec<u32>,
    pub(crate) succ: Vec<u32>,
    /// Number of predecessors of each node (within its lane).
    pub(crate) pred_count: Vec<u32>,
    pub(crate) lanes: Vec<LanePlan>,
    /// The lane of each node.
    pub(crate) node_lane: Vec<u32>,
    pub(crate) gates: Vec<NonZeroUsize>,
    /// Rate limits, in part starts per second.
    pub(crate) rates: Vec<f64>,
    pub(crate) components: Vec<String>,
    /// Part ids by name and by coordinate (shared with each report).
    pub(crate) by_name: Arc<NameIndex>,
    pub(crate) by_coord: Arc<CoordIndex>,
    /// The parts directly below each part in the tree (through forks), in
    /// coordinate order: its subtree's first level.
    pub(crate) tree_children: Arc<TreeChildren>,
    /// Every part's name and coordinate by id, shared with each report.
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) coords: Arc<[Coord]>,
    /// The plan's fingerprint for a journal, made by the first journaled
    /// run (see `durable.rs`).
    pub(crate) fingerprint: std::sync::OnceLock<sk_journal::Fingerprint>,
    /// What a run's start needs to know of every part, found once here
    /// (a scan of every part's settings per run cost a large cycle a
    /// cache miss per part): whether any has a timeout, any runs in a
    /// local worker process, and the remote ones.
    pub(crate) any_timeout: bool,
    /// Whether any part retries (its error mode is `Retry`).
    pub(crate) any_retry: bool,
    pub(crate) any_local_process: bool,
    pub(crate) remote_parts: Vec<u32>,
    /// The per-node arrays of the last run that ended, for the next one
    /// (the engine's `Spare`, which the plan does not look into).
    pub(crate) spare: parking_lot::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// The parts directly below each part in the tree (through forks), in
/// coordinate order, in two flat arrays (no allocation per part): part
/// `p`'s are `ids[start[p]..start[p + 1]]`.
#[derive(Debug, Default)]
pub(crate) struct TreeChildren {
    start: Box<[u32]>,
    ids: Box<[u32]>,
}

impl TreeChildren {
    /// The parts directly below part `id`.
    pub(crate) fn of(&self, id: u32) -> &[u32] {
        let id = id as usize;
        &self.ids[self.start[id] as usize..self.start[id + 1] as usize]
    }
}

/// The parts of part `id`'s subtree, without it, in coordinate order
/// (part ids are given in coordinate order), from each part's tree
/// children.
pub(crate) fn subtree(tree_children: &TreeChildren, id: u32) -> Vec<u32> {
    let mut below = Vec::new();
    let mut stack: Vec<u32> = tree_children.of(id).to_vec();
    while let Some(part) = stack.pop() {
        below.push(part);
        stack.extend_from_slice(tree_children.of(part));
    }
    below.sort_unstable();
    below
}

impl Plan {
    /// The successors of `node`.
    #[inline]
    pub(crate) fn successors(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.succ[self.succ_start[n] as usize..self.succ_start[n + 1] as usize]
    }

    /// The id of the part `name`.
    pub(crate) fn id_of(&self, name: &str) -> Option<u32> {
        self.by_name.get_among(name, &self.names)
    }

    /// Whether `node` is a part (not a barrier).
    #[inline]
    pub(crate) fn is_part(&self, node: u32) -> bool {
        (node as usize) < self.parts.len()
    }
}

/// Sync settings in force at a fork.
fn effective_sync(bp: &Blueprint, fork: Option<SyncMode>) -> SyncMode {
    bp.sync.or(fork).unwrap_or_default()
}

/// Compiles `bp`, taking over its builder's `indexes`.
pub(crate) fn compile(bp: &Blueprint, indexes: Indexes) -> Result<Plan, BuildError> {
    if bp.nodes.is_empty() {
        return Err(BuildError::Empty {
            name: bp.name.clone(),
        });
    }
    // Part ids in coordinate order of the blueprint's part nodes.
    let mut part_of_node: Vec<Option<u32>> = vec![None; bp.nodes.len()];
    let mut order: Vec<NodeIdx> = Vec::with_capacity(indexes.by_name.len());
    // Builders usually place in coordinate order (a chain, a split, rows
    // of columns): no sort then, found in the same pass over the nodes.
    let mut sorted = true;
    for (idx, node) in bp.nodes.iter().enumerate() {
        if let BpKind::Part(_) = node.kind {
            sorted &= order
                .last()
                .is_none_or(|&last| bp.nodes[last].coord < node.coord);
            order.push(idx);
        }
    }
    if !sorted {
        // Coordinates are unique.
        order.sort_unstable_by_key(|&i| bp.nodes[i].coord);
    }
    for (pid, &idx) in order.iter().enumerate() {
        part_of_node[idx] = Some(pid as u32);
    }
    let pid = |idx: NodeIdx| part_of_node[idx];

    let walk::Walked {
        mut parts,
        names,
        lane_count,
        gates,
        rates,
        components,
        mut edges,
        level_scopes,
        chained,
        any_timeout,
        any_retry,
        any_local_process,
        mut remote_parts,
        mut readers,
        mut process_nodes,
        missing_fallback,
    } = walk::walk(bp, order.len(), &part_of_node)?;
    process_nodes.sort_unstable();
    check_process_work(bp, &process_nodes)?;
    if parts.len() != order.len() {
        // Unreachable for a builder-made blueprint: every part hangs off
        // the root. (Part ids index `parts` from here on.)
        return Err(BuildError::Empty {
            name: bp.name.clone(),
        });
    }
    if let Some(p) = missing_fallback.and_then(|id| parts.get(id as usize)) {
        return Err(BuildError::MissingFallback {
            name: p.part.name.to_string(),
            coord: p.coord,
            mode: p.part.error_mode,
        });
    }

    for &(waiter, waits_for) in &bp.after {
        if let (Some(w), Some(f)) = (pid(waiter), pid(waits_for)) {
            edges.push((f, w, false));
        }
    }
    for &(from, to) in &bp.pipes {
        if let (Some(f), Some(t)) = (pid(from), pid(to)) {
            edges.push((f, t, true));
            // A piped part's input is its pipe's output, not its tree
            // parent's (which still orders it and passes on failure).
            parts[t as usize].input_from = Some(f);
        }
    }

    // A value that cannot leave this process must not feed a process part.
    let mut process_parts: Vec<u32> = process_nodes.iter().filter_map(|&n| pid(n)).collect();
    process_parts.sort_unstable();
    for &reader in &process_parts {
        let reader = &parts[reader as usize];
        if let Some(from) = reader.input_from {
            let source = &parts[from as usize];
            if source.part.local_output {
                return Err(BuildError::LocalOutputCrossesProcess {
                    part: source.part.name.to_string(),
                    coord: source.coord,
                    reader: reader.part.name.to_string(),
                    reader_coord: reader.coord,
                });
            }
        }
    }

    // Barriers: one per pair of consecutive part levels in each scope.
    let mut node_count = parts.len() as u32;
    let mut node_lane: Vec<u32> = parts.iter().map(|p| p.lane).collect();
    for scope in &level_scopes {
        // Barriers only join parts of one lane.
        let mut by_lane: BTreeMap<u32, BTreeMap<u32, Vec<u32>>> = BTreeMap::new();
        for &id in scope {
            let p = &parts[id as usize];
            by_lane
                .entry(p.lane)
                .or_default()
                .entry(p.coord.level)
                .or_default()
                .push(id);
        }
        for (lane, levels) in by_lane {
            let levels: Vec<&Vec<u32>> = levels.values().collect();
            for pair in levels.windows(2) {
                let barrier = node_count;
                node_count += 1;
                node_lane.push(lane);
                for &above in pair[0] {
                    edges.push((above, barrier, false));
                }
                for &below in pair[1] {
                    edges.push((barrier, below, false));
                }
            }
        }
    }

    // Cross-lane edges do not order anything: the later lane reads the
    // latest output instead.
    edges.retain(|&(from, to, _)| node_lane[from as usize] == node_lane[to as usize]);
    let n = node_count as usize;
    if n >= SOLE as usize {
        return Err(BuildError::TooLarge {
            name: bp.name.clone(),
            nodes: n,
            max: SOLE as usize - 1,
        });
    }
    let (succ_start, succ, pred_count) = successor_lists(n, &edges);

    // The builder refused every tree, `after` and `pipe` edge that closed
    // a loop (a blueprint invariant); only the edges of sequential and
    // pipeline splits and of level barriers are new here.
    if chained || !level_scopes.is_empty() {
        check_acyclic(&parts, n, &succ_start, &succ, &pred_count)?;
    }

    let mut lanes: Vec<LanePlan> = (0..lane_count)
        .map(|_| LanePlan {
            nodes: Vec::new(),
            roots: Vec::new(),
            sinks: 0,
        })
        .collect();
    for node in 0..node_count {
        let lane = &mut lanes[node_lane[node as usize] as usize];
        lane.nodes.push(node);
        if pred_count[node as usize] == 0 {
            lane.roots.push(node);
        }
        if succ_start[node as usize] == succ_start[node as usize + 1] {
            lane.sinks += 1;
        }
    }

    // The builder's indexes, from node indices to part ids (a fork has no
    // part: its coordinate goes).
    let Indexes {
        mut by_name,
        mut by_coord,
    } = indexes;
    // Every node a part, in coordinate order (a chain): part ids are node
    // indices already.
    if !(sorted && order.len() == bp.nodes.len()) {
        by_name.remap(|idx| pid(idx as NodeIdx));
        by_coord.remap(|idx| pid(idx as NodeIdx));
    }
    if by_name.len() != parts.len() || by_coord.len() != parts.len() {
        // Not a builder's indexes (one entry per part): made afresh.
        by_name = NameIndex::default();
        by_name.reserve(parts.len());
        for (id, p) in parts.iter().enumerate() {
            let added = by_name.insert(&p.part.name, id as u32, |i| &parts[i as usize].part.name);
            debug_assert!(added.is_ok(), "part names are unique");
        }
        by_coord = CoordIndex::default();
        for (id, p) in parts.iter().enumerate() {
            by_coord.insert(p.coord, id as u32);
        }
    }
    readers.sort_unstable();
    resolve_reads(&mut parts, &readers, &by_name, n, &succ_start, &succ)?;
    let mut start = Vec::with_capacity(order.len() + 1);
    let mut ids = Vec::with_capacity(order.len());
    let mut stack = Vec::new();
    for &idx in &order {
        let first = ids.len();
        start.push(first as u32);
        stack.extend_from_slice(&bp.nodes[idx].children);
        while let Some(child) = stack.pop() {
            match pid(child) {
                Some(part) => ids.push(part),
                // A fork: its parts are this part's children.
                None => stack.extend_from_slice(&bp.nodes[child].children),
            }
        }
        ids[first..].sort_unstable();
    }
    start.push(ids.len() as u32);
    let tree_children = Arc::new(TreeChildren {
        start: start.into_boxed_slice(),
        ids: ids.into_boxed_slice(),
    });
    let names: Arc<[Arc<str>]> = if names.len() == parts.len() {
        names.into()
    } else {
        parts.iter().map(|p| Arc::clone(&p.part.name)).collect()
    };
    let coords = parts.iter().map(|p| p.coord).collect();
    remote_parts.sort_unstable();
    Ok(Plan {
        any_timeout,
        any_retry,
        any_local_process,
        remote_parts,
        names,
        coords,
        parts,
        node_count: n,
        succ_start,
        succ,
        pred_count,
        lanes,
        node_lane,
        gates,
        rates,
        components,
        by_name: Arc::new(by_name),
        by_coord: Arc::new(by_coord),
        tree_children,
        fingerprint: std::sync::OnceLock::new(),
        spare: parking_lot::Mutex::new(None),
    })
}

/// `error`, unless a process part's work cannot cross into a process
/// (see [`check_process_work`]): that error comes first, as from a build
/// that finds nothing else wrong. Made only on an error path: it looks at
/// every node.
fn process_error_or(bp: &Blueprint, error: BuildError) -> BuildError {
    let process_nodes: Vec<NodeIdx> = (0..bp.nodes.len())
        .filter(|&i| bp.part(i).is_some_and(|p| p.placement.is_process()))
        .collect();
    check_process_work(bp, &process_nodes)
        .err()
        .unwrap_or(error)
}

/// A part placed in a process must be a function handle: closures and
/// lambdas cannot cross a process boundary. Checks `nodes` (process
/// parts) in the order given, and names the first offender: callers give
/// them in placement (node index) order.
fn check_process_work(bp: &Blueprint, nodes: &[NodeIdx]) -> Result<(), BuildError> {
    for &idx in nodes {
        let node = &bp.nodes[idx];
        let BpKind::Part(part) = &node.kind else {
            continue;
        };
        let what = match &part.work {
            Work::Function(f) if f.as_handle().is_some() => continue,
            Work::Function(f) => format!("the local closure (SkLambda) \"{}\"", f.name()),
            Work::Context(_) => "a closure over its context".to_owned(),
        };
        return Err(BuildError::LocalOnlyInProcess {
            name: part.name.to_string(),
            coord: node.coord,
            what,
        });
    }
    Ok(())
}

/// Resolves the declared reads of `readers` (in id order: the parts that
/// declared any) to part ids; a `reads` target must be ordered before its
/// reader (it reaches the reader along the plan's edges, which join only
/// nodes of one lane).
fn resolve_reads(
    parts: &mut [PlanPart],
    readers: &[u32],
    by_name: &NameIndex,
    n: usize,
    succ_start: &[u32],
    succ: &[u32],
) -> Result<(), BuildError> {
    for &reader in readers {
        let reader = reader as usize;
        let (reads, latest) = {
            let parts = &*parts;
            let part = &parts[reader].part;
            let coord = parts[reader].coord;
            let id_of = |name: &Arc<str>| {
                by_name
                    .get(name, |id| &parts[id as usize].part.name)
                    .ok_or_else(|| BuildError::UnknownRead {
                        reader: part.name.to_string(),
                        coord,
                        part: name.to_string(),
                    })
            };
            let mut reads = Vec::with_capacity(part.settings().reads.len());
            for name in &part.settings().reads {
                let id = id_of(name)?;
                if !reaches(id as usize, reader, n, succ_start, succ) {
                    return Err(BuildError::UnorderedRead {
                        reader: part.name.to_string(),
                        reader_coord: coord,
                        part: name.to_string(),
                        part_coord: parts[id as usize].coord,
                    });
                }
                reads.push(id);
            }
            let latest = part
                .settings()
                .reads_latest
                .iter()
                .map(id_of)
                .collect::<Result<Vec<_>, _>>()?;
            (reads, latest)
        };
        let guards = parts[reader].guards.get_or_insert_with(Box::default);
        guards.reads = reads.into_boxed_slice();
        guards.reads_latest = latest.into_boxed_slice();
    }
    Ok(())
}

fn intern(names: &mut Vec<String>, name: &str) -> u32 {
    match names.iter().position(|n| n == name) {
        Some(i) => i as u32,
        None => {
            names.push(name.to_owned());
            names.len() as u32 - 1
        }
    }
}

/// Kahn's algorithm; a leftover node means a loop, reported by part names.
fn check_acyclic(
    parts: &[PlanPart],
    n: usize,
    succ_start: &[u32],
    succ: &[u32],
    pred_count: &[u32],
) -> Result<(), BuildError> {
    let mut remaining = pred_count.to_vec();
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut seen = 0;
    while let Some(node) = queue.pop_front() {
        seen += 1;
        for &s in &succ[succ_start[node] as usize..succ_start[node + 1] as usize] {
            let s = edge_target(s) as usize;
            remaining[s] -= 1;
            if remaining[s] == 0 {
                queue.push_back(s);
            }
        }
    }
    if seen == n {
        return Ok(());
    }
    let name = |i: usize| {
        parts
            .get(i)
            .map_or_else(|| "<level barrier>".to_owned(), |p| p.part.name.to_string())
    };
    // Every node left over has a left-over predecessor: walk backwards
    // until a node repeats, then report the loop in edge order.
    let succ_of = |p: usize| &succ[succ_start[p] as usize..succ_start[p + 1] as usize];
    let pred_left = |node: usize| {
        (0..n).find(|&p| {
            remaining[p] > 0 && succ_of(p).iter().any(|&s| edge_target(s) as usize == node)
        })
    };
    let mut path = Vec::new();
    let mut index_of: HashMap<usize, usize> = HashMap::new();
    let mut node = (0..n).find(|&i| remaining[i] > 0).unwrap_or(0);
    loop {
        if let Some(&start) = index_of.get(&node) {
            let mut names: Vec<String> = path[start..].iter().rev().map(|&i| name(i)).collect();
            names.push(name(path[path.len() - 1]));
            return Err(BuildError::OrderingLoop { path: names });
        }
        index_of.insert(node, path.len());
        path.push(node);
        match pred_left(node) {
            Some(p) => node = p,
            None => {
                return Err(BuildError::OrderingLoop {
                    path: vec![name(node)],
                });
            }
        }
    }
}
