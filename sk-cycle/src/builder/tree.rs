//! The tree behind a [`CycleBuilder`](super::CycleBuilder): placement
//! checks, layout of splits and sub-cycles, the ordering graph.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::order::OrderGraph;

use crate::blueprint::{Blueprint, BpKind, BpNode, Indexes, NodeIdx, Split};
use crate::coord::Coord;
use crate::coords::CoordIndex;
use crate::error::BuildError;
use crate::mode::SyncMode;
use crate::names::NameIndex;
use crate::part::CyclePart;
use crate::{FastMap, FastSet};

/// The placed tree and its edges; everything a [`Blueprint`] holds plus
/// the indexes the checks need.
#[derive(Clone)]
pub(super) struct Tree {
    pub(super) name: String,
    pub(super) nodes: Vec<BpNode>,
    /// Node indices by coordinate and part name, as `u32`s (the plan's
    /// ids, which these maps become at build: see [`Indexes`]).
    pub(super) by_coord: CoordIndex,
    pub(super) by_name: NameIndex,
    /// Tree, `after` and `pipe` edges, all pointing from the part that runs
    /// first to the part that runs later. Node `i` is `NodeIndex::new(i)`.
    pub(super) graph: OrderGraph,
    pub(super) after: Vec<(NodeIdx, NodeIdx)>,
    pub(super) pipes: Vec<(NodeIdx, NodeIdx)>,
    /// `after`, as a set of [`edge_key`]s, once a repeat could not be
    /// ruled out by reading a few edges of the graph (see
    /// [`has_after`](Tree::has_after)): most builders never make it.
    after_set: Option<FastSet<u64>>,
    /// The source of the pipe into each piped part.
    pipe_into: FastMap<NodeIdx, NodeIdx>,
    pub(super) sync: Option<SyncMode>,
    pub(super) concurrency_limit: Option<NonZeroUsize>,
    pub(super) rate_limit: Option<f64>,
    /// The largest column used so far; fresh columns come after it.
    pub(super) max_col: u32,
}

/// An item resolved before anything is changed.
pub(super) enum Resolved {
    Part(Arc<CyclePart>),
    Cycle(Arc<Blueprint>),
}

/// Nodes and edges of one placement, laid out but not yet committed.
pub(super) struct Staged {
    /// The first node index the staged nodes take.
    base: NodeIdx,
    nodes: Vec<BpNode>,
    after: Vec<(NodeIdx, NodeIdx)>,
    pipes: Vec<(NodeIdx, NodeIdx)>,
    max_col: u32,
}

impl Staged {
    fn push(&mut self, node: BpNode) -> NodeIdx {
        self.nodes.push(node);
        self.base + self.nodes.len() - 1
    }

    fn node_mut(&mut self, idx: NodeIdx) -> &mut BpNode {
        // Only called with indices returned by `push`.
        &mut self.nodes[idx - self.base]
    }

    fn fresh_col(&mut self) -> u32 {
        self.max_col += 1;
        self.max_col
    }
}

impl Tree {
    pub(super) fn new(name: String) -> Self {
        Tree {
            name,
            nodes: Vec::new(),
            by_coord: CoordIndex::default(),
            by_name: NameIndex::default(),
            graph: OrderGraph::default(),
            after: Vec::new(),
            pipes: Vec::new(),
            after_set: None,
            pipe_into: FastMap::default(),
            sync: None,
            concurrency_limit: None,
            rate_limit: None,
            max_col: 0,
        }
    }

    /// Adds the `after` edge `(waiter, waits_for)` unless it exists,
    /// checking it as an ordering edge.
    pub(super) fn add_after(
        &mut self,
        (waiter, waits_for): (NodeIdx, NodeIdx),
    ) -> Result<(), BuildError> {
        if self.has_after(waiter, waits_for) {
            return Ok(());
        }
        self.add_order_edge_marked(waits_for, waiter, true)?;
        self.record_after((waiter, waits_for));
        Ok(())
    }

    /// Whether the `after` edge `(waiter, waits_for)` exists. The graph
    /// marks its `after` edges, so reading a few edges at either end
    /// answers for most pairs, with no set to fill; when both ends have
    /// many edges, the set of every `after` edge is made (once) and used
    /// from then on. O(1) either way.
    fn has_after(&mut self, waiter: NodeIdx, waits_for: NodeIdx) -> bool {
        if self.after_set.is_none() {
            match self.graph.find_marked(waits_for, waiter) {
                Some(found) => return found,
                None => {
                    let keys = self.after.iter().map(|&(w, f)| edge_key(w, f));
                    self.after_set = Some(keys.collect());
                }
            }
        }
        let key = edge_key(waiter, waits_for);
        self.after_set
            .as_ref()
            .is_some_and(|set| set.contains(&key))
    }

    /// Whether [`has_after`](Tree::has_after) has made the set.
    #[cfg(test)]
    pub(super) fn after_set_made(&self) -> bool {
        self.after_set.is_some()
    }

    /// Records an `after` edge whose ordering edge is in the graph.
    fn record_after(&mut self, edge: (NodeIdx, NodeIdx)) {
        if let Some(set) = &mut self.after_set {
            set.insert(edge_key(edge.0, edge.1));
        }
        self.after.push(edge);
    }

    /// The source of the pipe into `to`, if any.
    pub(super) fn pipe_into(&self, to: NodeIdx) -> Option<NodeIdx> {
        self.pipe_into.get(&to).copied()
    }

    /// Records a pipe `(from, to)` (already checked).
    pub(super) fn push_pipe(&mut self, (from, to): (NodeIdx, NodeIdx)) {
        if self.pipe_into.insert(to, from).is_none() {
            self.pipes.push((from, to));
        }
    }

    pub(super) fn to_blueprint(&self) -> Blueprint {
        Blueprint {
            name: self.name.clone(),
            nodes: self.nodes.clone(),
            sync: self.sync,
            concurrency_limit: self.concurrency_limit,
            rate_limit: self.rate_limit,
            after: self.after.clone(),
            pipes: self.pipes.clone(),
        }
    }

    /// The blueprint, and the indexes the plan takes over.
    pub(super) fn into_blueprint(self) -> (Blueprint, Indexes) {
        let blueprint = Blueprint {
            name: self.name,
            nodes: self.nodes,
            sync: self.sync,
            concurrency_limit: self.concurrency_limit,
            rate_limit: self.rate_limit,
            after: self.after,
            pipes: self.pipes,
        };
        let indexes = Indexes {
            by_name: self.by_name,
            by_coord: self.by_coord,
        };
        (blueprint, indexes)
    }

    /// The node of the placed part `name`.
    pub(super) fn idx_of(&self, name: &str) -> Option<NodeIdx> {
        let nodes = &self.nodes;
        self.by_name
            .get(name, |idx| node_name(nodes, idx))
            .map(|idx| idx as NodeIdx)
    }

    /// The node at `coord`.
    pub(super) fn idx_at(&self, coord: Coord) -> Option<NodeIdx> {
        self.by_coord.get(coord).map(|idx| idx as NodeIdx)
    }

    /// The name of the node at `idx` (`""` for a fork).
    pub(super) fn name_of(&self, idx: NodeIdx) -> &str {
        node_name(&self.nodes, idx as u32)
    }

    fn describe(&self, idx: NodeIdx) -> String {
        match &self.nodes[idx].kind {
            BpKind::Part(p) => format!("part \"{}\"", p.name()),
            BpKind::Fork(_) => "a split".to_owned(),
        }
    }

    /// Checks that `at` is open and returns the part it continues (`None`
    /// for the root).
    pub(super) fn check_target(
        &self,
        at: Coord,
        action: &'static str,
    ) -> Result<Option<NodeIdx>, BuildError> {
        self.check_target_below(at, action, None)
    }

    /// [`check_target`](Tree::check_target), given the node above `at`
    /// when the caller knows it (a checked handle's: one lookup less).
    pub(super) fn check_target_below(
        &self,
        at: Coord,
        action: &'static str,
        known_above: Option<NodeIdx>,
    ) -> Result<Option<NodeIdx>, BuildError> {
        if at.level == 0 || at.position == 0 {
            return Err(BuildError::InvalidCoord { coord: at });
        }
        if self.nodes.is_empty() {
            if action != "add" || at != Coord::new(1, 1) {
                return Err(BuildError::MustStartWithAdd { coord: at, action });
            }
            return Ok(None);
        }
        let Some(above) = at.above() else {
            return Err(BuildError::SecondRoot { coord: at });
        };
        debug_assert!(known_above.is_none_or(|k| Some(k) == self.idx_at(above)));
        let above_idx = known_above.or_else(|| self.idx_at(above));
        // A fork's first part sits right below it, so `at` is also filled;
        // saying the fork is not a leaf tells the user where to go instead.
        if let Some(a) = above_idx
            && matches!(self.nodes[a].kind, BpKind::Fork(_))
        {
            let parts: Vec<String> = self.nodes[a]
                .children
                .iter()
                .map(|&c| self.nodes[c].coord.to_string())
                .collect();
            return Err(BuildError::NotALeaf {
                coord: at,
                above,
                reason: format!("it is a split; its parts are at {}", parts.join(", ")),
            });
        }
        if let Some(idx) = self.idx_at(at) {
            return Err(BuildError::Occupied {
                coord: at,
                by: self.describe(idx),
            });
        }
        match above_idx {
            None => Err(BuildError::LevelGap {
                coord: at,
                missing: above,
            }),
            Some(a) if !self.nodes[a].children.is_empty() => Err(BuildError::NotALeaf {
                coord: at,
                above,
                reason: format!(
                    "{} already continues it",
                    self.describe(self.nodes[a].children[0])
                ),
            }),
            Some(a) => Ok(Some(a)),
        }
    }

    /// Lays out a placement at `at` below `parent`: a single item (no
    /// fork) or a fork with its items. Returns the staged nodes and the
    /// index of each item's root part. Checks names; changes nothing.
    pub(super) fn stage(
        &self,
        at: Coord,
        parent: Option<NodeIdx>,
        fork: Option<Split>,
        items: Vec<Resolved>,
    ) -> Result<(Staged, Vec<NodeIdx>), BuildError> {
        let mut staged = Staged {
            base: self.nodes.len(),
            // At least a node per item, and the fork.
            nodes: Vec::with_capacity(items.len() + usize::from(fork.is_some())),
            after: Vec::new(),
            pipes: Vec::new(),
            max_col: self.max_col.max(at.position),
        };
        let mut roots = Vec::with_capacity(items.len());
        match fork {
            None => {
                for item in items {
                    roots.push(self.stage_item(&mut staged, item, at, parent));
                }
            }
            Some(options) => {
                let fork_idx = staged.push(BpNode {
                    coord: at,
                    parent,
                    children: smallvec::SmallVec::new(),
                    kind: BpKind::Fork(Box::new(options)),
                });
                for (k, item) in items.into_iter().enumerate() {
                    let col = if k == 0 {
                        at.position
                    } else {
                        staged.fresh_col()
                    };
                    let coord = Coord::new(at.level + 1, col);
                    let root = self.stage_item(&mut staged, item, coord, Some(fork_idx));
                    staged.node_mut(fork_idx).children.push(root);
                    roots.push(root);
                }
            }
        }
        self.check_names(&staged)?;
        Ok((staged, roots))
    }

    fn check_names(&self, staged: &Staged) -> Result<(), BuildError> {
        let mut seen: FastMap<&str, Coord> = FastMap::default();
        for node in &staged.nodes {
            let BpKind::Part(part) = &node.kind else {
                continue;
            };
            self.check_unique(part.name(), node.coord, seen.get(part.name()).copied())?;
            seen.insert(part.name(), node.coord);
        }
        Ok(())
    }

    /// Refuses part name `name` at `at` when a placed part has it, or a
    /// part staged before it at `staged`.
    fn check_unique(&self, name: &str, at: Coord, staged: Option<Coord>) -> Result<(), BuildError> {
        let first = self.idx_of(name).map(|idx| self.nodes[idx].coord);
        match first.or(staged) {
            Some(first) => Err(BuildError::DuplicatePart {
                name: name.to_owned(),
                first,
                second: at,
            }),
            None => Ok(()),
        }
    }

    /// Appends staged nodes; cannot fail (everything was checked).
    pub(super) fn commit(&mut self, parent: Option<NodeIdx>, staged: Staged) {
        let first = staged.base;
        // Room for them all at once: a large split grows each index once.
        let added = staged.nodes.len();
        self.nodes.reserve(added);
        self.by_name.reserve(added);
        self.graph.reserve(added);
        for node in staged.nodes {
            self.push_node(node);
        }
        if let Some(p) = parent {
            self.nodes[p].children.push(first);
        }
        // Edges among the new nodes copy an acyclic sub-cycle's edges, so
        // they cannot close a loop either.
        for (waiter, waits_for) in staged.after {
            if !self.has_after(waiter, waits_for) {
                let added = self.add_order_edge_marked(waits_for, waiter, true);
                debug_assert!(added.is_ok());
                self.record_after((waiter, waits_for));
            }
        }
        for (from, to) in staged.pipes {
            let added = self.add_order_edge(from, to);
            debug_assert!(added.is_ok());
            self.push_pipe((from, to));
        }
        self.max_col = staged.max_col;
    }

    /// Places one part at `at` below `parent` (an `add`): what
    /// [`stage`](Tree::stage) and [`commit`](Tree::commit) do, without
    /// their lists. Checks the name; changes nothing on error.
    pub(super) fn place_part(
        &mut self,
        at: Coord,
        parent: Option<NodeIdx>,
        part: Arc<CyclePart>,
    ) -> Result<NodeIdx, BuildError> {
        // The name is looked up and indexed in one probe of the table.
        let id = self.nodes.len() as u32;
        let nodes = &self.nodes;
        if let Err(first) = self
            .by_name
            .insert(part.name(), id, |idx| node_name(nodes, idx))
        {
            return Err(BuildError::DuplicatePart {
                name: part.name().to_owned(),
                first: self.nodes[first as NodeIdx].coord,
                second: at,
            });
        }
        let idx = self.push_node_indexed(BpNode {
            coord: at,
            parent,
            children: smallvec::SmallVec::new(),
            kind: BpKind::Part(part),
        });
        if let Some(p) = parent {
            self.nodes[p].children.push(idx);
        }
        self.max_col = self.max_col.max(at.position);
        Ok(idx)
    }

    /// Appends a checked node with its indexes and its tree edge.
    fn push_node(&mut self, node: BpNode) -> NodeIdx {
        if let BpKind::Part(part) = &node.kind {
            let nodes = &self.nodes;
            let added = self
                .by_name
                .insert(part.name(), nodes.len() as u32, |idx| node_name(nodes, idx));
            debug_assert!(added.is_ok(), "names are checked before commit");
        }
        self.push_node_indexed(node)
    }

    /// [`push_node`](Tree::push_node) for a node whose name is indexed.
    fn push_node_indexed(&mut self, node: BpNode) -> NodeIdx {
        let idx = self.graph.add_node();
        debug_assert_eq!(idx, self.nodes.len());
        // A plan numbers its nodes in `u32`s, checked when it is built
        // (a builder cannot hold 2^32 nodes in memory before that).
        let id = idx as u32;
        self.by_coord.insert(node.coord, id);
        if let Some(p) = node.parent {
            // A tree edge into a new node, which has no outgoing edges
            // yet, cannot close a loop.
            let added = self.graph.try_add_edge(p, idx);
            debug_assert!(added.is_ok());
        }
        self.nodes.push(node);
        idx
    }

    /// Adds `first -> then` to the ordering graph unless it closes a loop.
    pub(super) fn add_order_edge(
        &mut self,
        first: NodeIdx,
        then: NodeIdx,
    ) -> Result<(), BuildError> {
        self.add_order_edge_marked(first, then, false)
    }

    /// [`add_order_edge`](Tree::add_order_edge), marking an `after` edge
    /// in the graph when `after`.
    fn add_order_edge_marked(
        &mut self,
        first: NodeIdx,
        then: NodeIdx,
        after: bool,
    ) -> Result<(), BuildError> {
        if first == then {
            return Err(BuildError::SelfEdge {
                name: self.name_of(first).to_owned(),
                coord: self.nodes[first].coord,
            });
        }
        if self.graph.try_add_edge_marked(first, then, after).is_ok() {
            return Ok(());
        }
        // The edge closes a loop: `then` already reaches `first`.
        let mut names: Vec<String> = self
            .graph
            .path(then, first)
            .into_iter()
            .filter(|&n| matches!(self.nodes[n].kind, BpKind::Part(_)))
            .map(|n| self.name_of(n).to_owned())
            .collect();
        names.push(self.name_of(then).to_owned());
        Err(BuildError::OrderingLoop { path: names })
    }
}

impl Tree {
    /// Stages one item with its root at `coord` below `parent`; returns the
    /// root's index.
    fn stage_item(
        &self,
        staged: &mut Staged,
        item: Resolved,
        coord: Coord,
        parent: Option<NodeIdx>,
    ) -> NodeIdx {
        match item {
            Resolved::Part(part) => staged.push(BpNode {
                coord,
                parent,
                children: smallvec::SmallVec::new(),
                kind: BpKind::Part(part),
            }),
            Resolved::Cycle(sub) => self.stage_sub(staged, &sub, coord, parent),
        }
    }

    /// Copies the sub-cycle `sub` in with its root at `at` (see [`SubCycle`]).
    fn stage_sub(
        &self,
        staged: &mut Staged,
        sub: &Blueprint,
        at: Coord,
        parent: Option<NodeIdx>,
    ) -> NodeIdx {
        let columns: BTreeSet<u32> = sub.nodes.iter().map(|n| n.coord.position).collect();
        let mut column_map: HashMap<u32, u32> = HashMap::with_capacity(columns.len());
        for col in columns {
            let to = if col == 1 {
                at.position
            } else {
                staged.fresh_col()
            };
            column_map.insert(col, to);
        }
        let prefix = self.sub_prefix(staged, &sub.name);
        let base = staged.base + staged.nodes.len();
        let map_coord = |c: Coord| {
            // Every sub-cycle column is in the map; level 1 maps to `at.level`.
            let position = column_map.get(&c.position).copied().unwrap_or(at.position);
            Coord::new(at.level + c.level - 1, position)
        };
        // The topmost fork: the first fork on the chain down from the root.
        let mut topmost_fork = None;
        let mut cursor = sub.nodes.first();
        while let Some(node) = cursor {
            if matches!(node.kind, BpKind::Fork(_)) {
                topmost_fork = Some(node.coord);
                break;
            }
            cursor = node.children.first().and_then(|&c| sub.nodes.get(c));
        }
        for (i, node) in sub.nodes.iter().enumerate() {
            let kind = match &node.kind {
                BpKind::Part(part) => {
                    let mut part = CyclePart::clone(part);
                    part.name = Arc::from(format!("{prefix}/{}", part.name));
                    BpKind::Part(Arc::new(part))
                }
                BpKind::Fork(split) => {
                    let mut split = split.clone();
                    if sub.sync.is_some() {
                        split.sync = sub.sync;
                    }
                    if sub.concurrency_limit.is_some() {
                        split.concurrency_limit = if Some(node.coord) == topmost_fork {
                            sub.concurrency_limit
                        } else {
                            None
                        };
                    }
                    // The sub-cycle's rate covers all of it, from its
                    // topmost fork.
                    if sub.rate_limit.is_some() && Some(node.coord) == topmost_fork {
                        split.rate_limit = sub.rate_limit;
                    }
                    BpKind::Fork(split)
                }
            };
            staged.nodes.push(BpNode {
                coord: map_coord(node.coord),
                parent: if i == 0 {
                    parent
                } else {
                    node.parent.map(|p| base + p)
                },
                children: node.children.iter().map(|&c| base + c).collect(),
                kind,
            });
        }
        staged
            .after
            .extend(sub.after.iter().map(|&(w, f)| (base + w, base + f)));
        staged
            .pipes
            .extend(sub.pipes.iter().map(|&(f, t)| (base + f, base + t)));
        base
    }

    /// The prefix for the parts of an inlined sub-cycle: its name, or
    /// `name#2`, `name#3`, ... when that prefix is already in use, so one
    /// sub-cycle can be inlined several times.
    fn sub_prefix(&self, staged: &Staged, name: &str) -> String {
        let in_use = |prefix: &str| {
            let prefix = format!("{prefix}/");
            let in_nodes = |nodes: &[BpNode]| {
                nodes.iter().any(|n| match &n.kind {
                    BpKind::Part(p) => p.name().starts_with(&prefix),
                    BpKind::Fork(_) => false,
                })
            };
            in_nodes(&self.nodes) || in_nodes(&staged.nodes)
        };
        if !in_use(name) {
            return name.to_owned();
        }
        let mut k = 2u64;
        loop {
            let candidate = format!("{name}#{k}");
            if !in_use(&candidate) {
                return candidate;
            }
            k += 1;
        }
    }
}

/// The name of node `idx` of `nodes` (`""` for a fork).
fn node_name(nodes: &[BpNode], idx: u32) -> &str {
    match &nodes[idx as usize].kind {
        BpKind::Part(p) => p.name(),
        BpKind::Fork(_) => "",
    }
}

/// An edge between two nodes as one 8-byte key (a plan numbers its nodes
/// in `u32`s: see `push_node_indexed`).
fn edge_key(from: NodeIdx, to: NodeIdx) -> u64 {
    (from as u64) << 32 | to as u64
}
