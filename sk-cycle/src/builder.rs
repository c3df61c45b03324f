//! [`CycleBuilder`]: places parts by level and position and checks every
//! placement as it is made.
//!
//! A cycle is a tree on a grid. Level 1 holds the root part at 1-1;
//! [`add`](CycleBuilder::add) continues a branch one level down in the same
//! column; [`split`](CycleBuilder::split) leaves a fork at its coordinate and
//! places its parts on the next level, the first in the fork's column, the
//! others in fresh columns (columns never used before in this builder).
//! Only the coordinate directly below a leaf part is open.
//!
//! # One builder style, two kinds of method
//!
//! - **Options are set by value**, as on every builder of the workspace
//!   (`fn x(mut self) -> Self`): [`sync`](CycleBuilder::sync),
//!   [`concurrency_limit`](CycleBuilder::concurrency_limit) and
//!   [`rate_limit`](CycleBuilder::rate_limit) chain from
//!   [`new`](CycleBuilder::new), and [`build`](CycleBuilder::build) takes
//!   the builder: `CycleBuilder::new("x").sync(SyncMode::Level).build()`.
//! - **Placements and edges take `&mut self` and return a `Result` at
//!   once**, as petgraph's `Acyclic::try_add_edge` does: each can fail on
//!   its own, the error names the coordinate, and a failed one leaves the
//!   builder unchanged, so the caller can react (or `?`) one at a time.
//!   Each returns what it made: a placement its [`PartHandle`]s (which the
//!   handle API — [`root`](CycleBuilder::root), [`then`](CycleBuilder::then),
//!   [`fork`](CycleBuilder::fork) — uses instead of coordinates), an edge
//!   nothing.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::blueprint::{BpKind, NodeIdx, Split};
use crate::coord::Coord;
use crate::cycle::Cycle;
use crate::error::BuildError;
use crate::mode::SyncMode;
use crate::registry::CycleRegistry;
use crate::render;

mod items;
mod order;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod tree;

use items::{Item, RefKind, resolve_item, resolve_part};
pub use items::{PartHandle, PartRef, PartSource, SplitItem, SubCycle};
use tree::Tree;

/// Source of builder ids, so a handle can tell which builder made it.
static NEXT_BUILDER_ID: AtomicU64 = AtomicU64::new(1);

/// Places parts, splits and sub-cycles by level and position, adds ordering
/// and data edges, and builds a [`Cycle`].
///
/// Every placement is checked when it is made (see the module rules below)
/// and returns a [`BuildError`] naming the coordinate and why; a failed
/// placement leaves the builder unchanged.
///
/// - Level 1 holds exactly one part, at 1-1, placed first.
/// - [`add`](CycleBuilder::add) at `L-p` needs a leaf part at `(L-1)-p`.
/// - [`split`](CycleBuilder::split) at `L-p` (same rule) leaves a fork there
///   and places its parts at `(L+1)-p` and at fresh columns.
/// - Part names are unique; [`after`](CycleBuilder::after) and
///   [`pipe`](CycleBuilder::pipe) edges must not close a loop.
///
/// # Examples
///
/// A root, a 3-way split, and the next open coordinates.
///
/// ```
/// use sk_cycle::{Coord, CycleBuilder, CyclePart, Split, SyncMode};
///
/// let part = |name: &str| CyclePart::new(name.to_owned(), |_ctx| ());
/// let mut b = CycleBuilder::new("demo");
/// b.add(part("load"), 1)?;
/// b.split_with([part("a"), part("b"), part("c")], 2, Split::new().sync(SyncMode::Level))?;
/// assert_eq!(b.coord_of("c"), Some(Coord::new(3, 3)));
/// assert_eq!(b.open_coords(), [Coord::new(4, 1), Coord::new(4, 2), Coord::new(4, 3)]);
///
/// // The same column cannot be filled twice.
/// let err = b.add(part("d"), (3, 2)).unwrap_err();
/// assert_eq!(err.to_string(), "cannot place at 3-2: it is already filled by part \"b\"");
///
/// b.add(part("sum"), (4, 2))?;
/// b.pipe("a", "sum")?; // `sum` gets `a`'s output as input, not `b`'s
/// let cycle = b.build()?;
/// assert_eq!(cycle.name(), "demo");
/// # Ok::<(), sk_cycle::BuildError>(())
/// ```
///
/// What flows through a pipe:
///
/// ```
/// use sk_cycle::{CycleBuilder, CyclePart, Run};
///
/// let mut b = CycleBuilder::new("piped");
/// b.add(CyclePart::new("root", |_| 1u32), 1)?;
/// b.split([CyclePart::new("a", |_| 500u32), CyclePart::new("b", |_| 3u32)], 2)?;
/// b.add(CyclePart::new("sum", |ctx| ctx.input_as::<u32>().ok().copied()), (4, 2))?;
/// b.pipe("a", "sum")?;
/// let report = b.build()?.run(Run::once()).expect("it runs");
/// assert_eq!(report.last().unwrap().output_as::<Option<u32>>("sum"), Some(&Some(500)));
/// # Ok::<(), sk_cycle::BuildError>(())
/// ```
pub struct CycleBuilder {
    id: u64,
    tree: Tree,
}

impl CycleBuilder {
    /// An empty builder for the cycle `name`.
    pub fn new(name: impl Into<String>) -> Self {
        CycleBuilder {
            id: NEXT_BUILDER_ID.fetch_add(1, Ordering::Relaxed),
            tree: Tree::new(name.into()),
        }
    }

    /// The cycle's name.
    pub fn name(&self) -> &str {
        &self.tree.name
    }

    /// The number of parts placed (forks not counted).
    pub fn len(&self) -> usize {
        self.tree.by_name.len()
    }

    /// Whether no part has been placed yet.
    pub fn is_empty(&self) -> bool {
        self.tree.nodes.is_empty()
    }

    /// Sets the cycle-wide sync mode; it overrides every split's.
    #[must_use]
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.tree.sync = Some(mode);
        self
    }

    /// At most `n` parts of the cycle run at once; `0` means no limit.
    /// Overrides every split's limit.
    #[must_use]
    pub fn concurrency_limit(mut self, n: usize) -> Self {
        self.tree.concurrency_limit = NonZeroUsize::new(n);
        self
    }

    /// At most `per_sec` part starts per second across the cycle (a rate,
    /// where [`concurrency_limit`](CycleBuilder::concurrency_limit) caps
    /// how many run at once); applies beside the splits' and parts' own
    /// rates, and parts wait their turn without holding a thread. Not a
    /// finite number above zero: [`BuildError::InvalidRateLimit`] at
    /// [`build`](CycleBuilder::build).
    #[must_use]
    pub fn rate_limit(mut self, per_sec: f64) -> Self {
        self.tree.rate_limit = Some(per_sec);
        self
    }

    /// Places `part` at `at`: 1-1 for the root, otherwise directly below a
    /// leaf part. A name is looked up in the cycle registry.
    ///
    /// # Errors
    ///
    /// [`BuildError::MustStartWithAdd`] when the builder is empty and `at`
    /// is not 1-1; [`BuildError::SecondRoot`] at level 1 otherwise;
    /// [`BuildError::Occupied`], [`BuildError::LevelGap`] or
    /// [`BuildError::NotALeaf`] when `at` is not open;
    /// [`BuildError::InvalidCoord`] for a level or position 0;
    /// [`BuildError::DuplicatePart`] for a name already placed;
    /// [`BuildError::UnknownPart`] for a name not in the registry.
    pub fn add(
        &mut self,
        part: impl Into<PartSource>,
        at: impl Into<Coord>,
    ) -> Result<PartHandle, BuildError> {
        self.add_below(part.into(), at.into(), None)
    }

    /// [`add`](CycleBuilder::add), given the node above `at` when the
    /// caller has checked it (see [`Tree::check_target_below`]).
    fn add_below(
        &mut self,
        part: PartSource,
        at: Coord,
        known_above: Option<NodeIdx>,
    ) -> Result<PartHandle, BuildError> {
        let parent = self.tree.check_target_below(at, "add", known_above)?;
        let part = resolve_part(part)?;
        let idx = self.tree.place_part(at, parent, part)?;
        Ok(self.handle(idx))
    }

    /// Inlines the cycle `sub` with its root at `at` (see [`SubCycle`] for
    /// how coordinates, names, edges and options carry over) and returns the
    /// handle of its root part.
    ///
    /// # Errors
    ///
    /// The errors of [`add`](CycleBuilder::add); [`BuildError::Empty`] when
    /// `sub` has no parts; [`BuildError::DuplicatePart`] when a renamed
    /// part clashes with a placed one (inlining the same sub-cycle again is
    /// fine: the second copy is prefixed `"<name>#2/"`).
    pub fn add_cycle(
        &mut self,
        sub: impl Into<SubCycle>,
        at: impl Into<Coord>,
    ) -> Result<PartHandle, BuildError> {
        let item = SplitItem(Item::Cycle(sub.into()));
        let handles = self.place(at.into(), "add", None, vec![item])?;
        // `place` returns one handle per item, and there is one item.
        Ok(handles[0])
    }

    /// Leaves a fork at `at` (same rule as [`add`](CycleBuilder::add)) and
    /// places `parts` on the next level: the first in `at`'s column, the
    /// others in fresh columns, in order. Returns one handle per element
    /// (a sub-cycle's root part for a sub-cycle).
    ///
    /// # Errors
    ///
    /// The errors of [`add`](CycleBuilder::add) (a split as the first
    /// placement is [`BuildError::MustStartWithAdd`]);
    /// [`BuildError::EmptySplit`] when `parts` is empty.
    pub fn split<I>(
        &mut self,
        parts: I,
        at: impl Into<Coord>,
    ) -> Result<Vec<PartHandle>, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<SplitItem>,
    {
        self.split_with(parts, at, Split::new())
    }

    /// [`split`](CycleBuilder::split) with options: the split's sync mode,
    /// concurrency limit and condition.
    ///
    /// # Errors
    ///
    /// As [`split`](CycleBuilder::split).
    pub fn split_with<I>(
        &mut self,
        parts: I,
        at: impl Into<Coord>,
        options: Split,
    ) -> Result<Vec<PartHandle>, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<SplitItem>,
    {
        let items = parts.into_iter().map(Into::into).collect();
        self.place(at.into(), "split", Some(options), items)
    }

    /// Places the root part at 1-1 (handle API).
    ///
    /// # Errors
    ///
    /// As [`add`](CycleBuilder::add) at 1-1.
    pub fn root(&mut self, part: impl Into<PartSource>) -> Result<PartHandle, BuildError> {
        self.add(part, Coord::new(1, 1))
    }

    /// Places `part` directly below `below` (handle API).
    ///
    /// # Errors
    ///
    /// [`BuildError::ForeignHandle`] for a handle of another builder;
    /// otherwise as [`add`](CycleBuilder::add) at `below.coord().below()`.
    pub fn then(
        &mut self,
        below: PartHandle,
        part: impl Into<PartSource>,
    ) -> Result<PartHandle, BuildError> {
        let at = self.check_handle(below)?.below();
        self.add_below(part.into(), at, Some(below.index))
    }

    /// Splits directly below `below` into `N` parts and returns their
    /// handles (handle API): `let [a, b] = builder.fork(root, [pa, pb])?;`.
    ///
    /// # Errors
    ///
    /// As [`then`](CycleBuilder::then) and [`split`](CycleBuilder::split).
    pub fn fork<P, const N: usize>(
        &mut self,
        below: PartHandle,
        parts: [P; N],
    ) -> Result<[PartHandle; N], BuildError>
    where
        P: Into<SplitItem>,
    {
        let handles = self.fork_with(below, parts, Split::new())?;
        // `place` returns exactly one handle per element, so `handles` has
        // length `N`.
        Ok(std::array::from_fn(|i| handles[i]))
    }

    /// [`fork`](CycleBuilder::fork) for any number of parts.
    ///
    /// # Errors
    ///
    /// As [`fork`](CycleBuilder::fork).
    pub fn fork_vec<I>(
        &mut self,
        below: PartHandle,
        parts: I,
    ) -> Result<Vec<PartHandle>, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<SplitItem>,
    {
        self.fork_with(below, parts, Split::new())
    }

    /// [`fork_vec`](CycleBuilder::fork_vec) with split options.
    ///
    /// # Errors
    ///
    /// As [`fork`](CycleBuilder::fork).
    pub fn fork_with<I>(
        &mut self,
        below: PartHandle,
        parts: I,
        options: Split,
    ) -> Result<Vec<PartHandle>, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<SplitItem>,
    {
        let at = self.check_handle(below)?.below();
        self.split_with(parts, at, options)
    }

    /// Makes `waiter` start only after `waits_for` has ended in each
    /// iteration (ordering only; no data passes). Adding an edge twice is a
    /// no-op.
    ///
    /// # Errors
    ///
    /// [`BuildError::UnknownPart`] (context `after edge`) for a name not
    /// placed; [`BuildError::ForeignHandle`]; [`BuildError::SelfEdge`];
    /// [`BuildError::OrderingLoop`] when the edge would make parts wait for
    /// each other in a loop (tree, `after` and `pipe` edges together).
    pub fn after(
        &mut self,
        waiter: impl Into<PartRef>,
        waits_for: impl Into<PartRef>,
    ) -> Result<(), BuildError> {
        let waiter = self.resolve_ref(waiter.into(), "after edge")?;
        let waits_for = self.resolve_ref(waits_for.into(), "after edge")?;
        self.tree.add_after((waiter, waits_for))
    }

    /// Pipes `from`'s output to `to`: `to` waits for `from` and gets its
    /// output as input (instead of its parent's), checked by `to`'s input
    /// validator. Adding a pipe twice is a no-op.
    ///
    /// # Errors
    ///
    /// As [`after`](CycleBuilder::after) (context `pipe edge`), and
    /// [`BuildError::SecondPipe`] when `to` already receives a pipe.
    pub fn pipe(
        &mut self,
        from: impl Into<PartRef>,
        to: impl Into<PartRef>,
    ) -> Result<(), BuildError> {
        let from = self.resolve_ref(from.into(), "pipe edge")?;
        let to = self.resolve_ref(to.into(), "pipe edge")?;
        if self.tree.pipe_into(to) == Some(from) {
            return Ok(());
        }
        if let Some(first) = self.tree.pipe_into(to) {
            return Err(BuildError::SecondPipe {
                name: self.tree.name_of(to).to_owned(),
                coord: self.tree.nodes[to].coord,
                first: self.tree.name_of(first).to_owned(),
                second: self.tree.name_of(from).to_owned(),
            });
        }
        self.tree.add_order_edge(from, to)?;
        self.tree.push_pipe((from, to));
        Ok(())
    }

    /// The coordinates where a part or split can be placed next, sorted:
    /// the one below each leaf part, or 1-1 for an empty builder.
    pub fn open_coords(&self) -> Vec<Coord> {
        if self.tree.nodes.is_empty() {
            return vec![Coord::new(1, 1)];
        }
        let mut open: Vec<Coord> = self
            .tree
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, BpKind::Part(_)) && n.children.is_empty())
            .map(|n| n.coord.below())
            .collect();
        open.sort_unstable();
        open
    }

    /// The coordinate of the placed part `name`.
    pub fn coord_of(&self, name: &str) -> Option<Coord> {
        let idx = self.tree.idx_of(name)?;
        Some(self.tree.nodes[idx].coord)
    }

    /// The handle of the placed part `name`.
    pub fn handle_of(&self, name: &str) -> Option<PartHandle> {
        let idx = self.tree.idx_of(name)?;
        Some(self.handle(idx))
    }

    /// The cycle as a Graphviz DOT graph (see [`Cycle::to_dot`]).
    pub fn to_dot(&self) -> String {
        render::dot(&self.tree.to_blueprint())
    }

    /// The cycle as a Mermaid flowchart (see [`Cycle::to_mermaid`]).
    pub fn to_mermaid(&self) -> String {
        render::mermaid(&self.tree.to_blueprint())
    }

    /// Builds the cycle.
    ///
    /// # Errors
    ///
    /// [`BuildError::Empty`] when no part was placed, or what the engine's
    /// compiler rejects.
    pub fn build(self) -> Result<Cycle, BuildError> {
        if self.tree.nodes.is_empty() {
            return Err(BuildError::Empty {
                name: self.tree.name,
            });
        }
        let (blueprint, indexes) = self.tree.into_blueprint();
        Cycle::from_blueprint(blueprint, indexes)
    }

    /// Builds the cycle and registers it under its name in the external
    /// layer of [`CycleRegistry::cycles`].
    ///
    /// # Errors
    ///
    /// As [`build`](CycleBuilder::build), and [`BuildError::Registry`] when
    /// the name is already registered there.
    pub fn build_and_register(self) -> Result<Arc<Cycle>, BuildError> {
        CycleRegistry::register_cycle(self.build()?)
    }

    fn handle(&self, index: NodeIdx) -> PartHandle {
        PartHandle {
            builder: self.id,
            index,
            coord: self.tree.nodes[index].coord,
        }
    }

    /// The coordinate of `handle`, if it is a part of this builder.
    fn check_handle(&self, handle: PartHandle) -> Result<Coord, BuildError> {
        let ok = handle.builder == self.id
            && self
                .tree
                .nodes
                .get(handle.index)
                .is_some_and(|n| n.coord == handle.coord && matches!(n.kind, BpKind::Part(_)));
        if ok {
            Ok(handle.coord)
        } else {
            Err(BuildError::ForeignHandle {
                index: handle.index,
            })
        }
    }

    fn resolve_ref(&self, part: PartRef, context: &str) -> Result<NodeIdx, BuildError> {
        match part.0 {
            RefKind::Name(name) => match self.tree.idx_of(&name) {
                Some(idx) => Ok(idx),
                None => Err(BuildError::UnknownPart {
                    name,
                    context: context.to_owned(),
                }),
            },
            RefKind::Handle(handle) => {
                self.check_handle(handle)?;
                Ok(handle.index)
            }
        }
    }

    /// Checks, lays out and commits one placement; changes nothing on error.
    fn place(
        &mut self,
        at: Coord,
        action: &'static str,
        fork: Option<Split>,
        items: Vec<SplitItem>,
    ) -> Result<Vec<PartHandle>, BuildError> {
        let parent = self.tree.check_target(at, action)?;
        if fork.is_some() && items.is_empty() {
            return Err(BuildError::EmptySplit { coord: at });
        }
        let resolved = items
            .into_iter()
            .map(resolve_item)
            .collect::<Result<Vec<_>, _>>()?;
        let (staged, roots) = self.tree.stage(at, parent, fork, resolved)?;
        self.tree.commit(parent, staged);
        Ok(roots.into_iter().map(|idx| self.handle(idx)).collect())
    }
}

impl fmt::Debug for CycleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleBuilder")
            .field("name", &self.tree.name)
            .field("nodes", &self.tree.nodes.len())
            .field("after", &self.tree.after.len())
            .field("pipes", &self.tree.pipes.len())
            .field("sync", &self.tree.sync)
            .field("concurrency_limit", &self.tree.concurrency_limit)
            .field("rate_limit", &self.tree.rate_limit)
            .finish()
    }
}
