//! The inputs of [`CycleBuilder`] placements and edges.

use std::fmt;
use std::sync::Arc;

use super::CycleBuilder;
use super::tree::Resolved;
use crate::blueprint::{Blueprint, NodeIdx};
use crate::coord::Coord;
use crate::cycle::Cycle;
use crate::error::BuildError;
use crate::part::CyclePart;
use crate::registry::CycleRegistry;

/// A part placed in a [`CycleBuilder`], for the handle API and for edges.
///
/// Only valid in the builder that returned it; elsewhere it is a
/// [`BuildError::ForeignHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartHandle {
    pub(super) builder: u64,
    pub(super) index: NodeIdx,
    pub(super) coord: Coord,
}

impl PartHandle {
    /// The part's coordinate.
    pub fn coord(self) -> Coord {
        self.coord
    }
}

/// A part to place: a [`CyclePart`], or the name of a part in the cycle
/// registry ([`CycleRegistry::parts`]), looked up when it is placed.
#[derive(Clone, Debug)]
pub struct PartSource(Source);

#[derive(Clone, Debug)]
enum Source {
    Part(Arc<CyclePart>),
    Named(String),
}

impl From<CyclePart> for PartSource {
    fn from(part: CyclePart) -> Self {
        PartSource(Source::Part(Arc::new(part)))
    }
}

impl From<&str> for PartSource {
    fn from(name: &str) -> Self {
        PartSource(Source::Named(name.to_owned()))
    }
}

impl From<String> for PartSource {
    fn from(name: String) -> Self {
        PartSource(Source::Named(name))
    }
}

/// A cycle to inline as a sub-cycle: a [`CycleBuilder`]'s current tree or a
/// built [`Cycle`]'s.
///
/// Its root lands on the target coordinate; its column 1 maps to the
/// target's column and its other columns to fresh ones; its parts are
/// renamed `"<sub-cycle name>/<part name>"` (`"<sub-cycle name>#2/<part
/// name>"`, `#3`, ... when that prefix is already used, so one sub-cycle can
/// be inlined several times); its `after` and `pipe` edges come along.
///
/// Its cycle-wide sync mode becomes the sync mode of every split inside it
/// (as a cycle-wide mode overrides every split's), and its cycle-wide rate
/// limit becomes the limit of its topmost split (the one whose subtree
/// holds all of its concurrency; the limits of splits below it are dropped,
/// as a cycle-wide limit overrides them). A sub-cycle without splits runs
/// one part at a time, so
/// both options have nothing to act on and are dropped.
#[derive(Clone)]
pub struct SubCycle {
    blueprint: Arc<Blueprint>,
}

impl From<&CycleBuilder> for SubCycle {
    fn from(builder: &CycleBuilder) -> Self {
        SubCycle {
            blueprint: Arc::new(builder.tree.to_blueprint()),
        }
    }
}

impl From<&Cycle> for SubCycle {
    fn from(cycle: &Cycle) -> Self {
        SubCycle {
            blueprint: Arc::clone(&cycle.blueprint),
        }
    }
}

impl fmt::Debug for SubCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubCycle")
            .field("name", &self.blueprint.name)
            .field("nodes", &self.blueprint.nodes.len())
            .finish()
    }
}

/// One element of a split: a part ([`PartSource`]) or a sub-cycle
/// ([`SubCycle`]).
///
/// Arrays of one kind convert on their own (`[part_a, part_b]`,
/// `["registered", "names"]`); mix kinds with `SplitItem::from`.
#[derive(Clone, Debug)]
pub struct SplitItem(pub(super) Item);

#[derive(Clone, Debug)]
pub(super) enum Item {
    Part(PartSource),
    Cycle(SubCycle),
}

impl From<PartSource> for SplitItem {
    fn from(source: PartSource) -> Self {
        SplitItem(Item::Part(source))
    }
}

impl From<CyclePart> for SplitItem {
    fn from(part: CyclePart) -> Self {
        SplitItem(Item::Part(part.into()))
    }
}

impl From<&str> for SplitItem {
    fn from(name: &str) -> Self {
        SplitItem(Item::Part(name.into()))
    }
}

impl From<String> for SplitItem {
    fn from(name: String) -> Self {
        SplitItem(Item::Part(name.into()))
    }
}

impl From<SubCycle> for SplitItem {
    fn from(sub: SubCycle) -> Self {
        SplitItem(Item::Cycle(sub))
    }
}

impl From<&CycleBuilder> for SplitItem {
    fn from(builder: &CycleBuilder) -> Self {
        SplitItem(Item::Cycle(builder.into()))
    }
}

impl From<&Cycle> for SplitItem {
    fn from(cycle: &Cycle) -> Self {
        SplitItem(Item::Cycle(cycle.into()))
    }
}

/// A placed part named in an edge: by name or by [`PartHandle`].
#[derive(Clone, Debug)]
pub struct PartRef(pub(super) RefKind);

#[derive(Clone, Debug)]
pub(super) enum RefKind {
    Name(String),
    Handle(PartHandle),
}

impl From<&str> for PartRef {
    fn from(name: &str) -> Self {
        PartRef(RefKind::Name(name.to_owned()))
    }
}

impl From<String> for PartRef {
    fn from(name: String) -> Self {
        PartRef(RefKind::Name(name))
    }
}

impl From<PartHandle> for PartRef {
    fn from(handle: PartHandle) -> Self {
        PartRef(RefKind::Handle(handle))
    }
}

/// The part `source` names: itself, or the registry's part of that name.
pub(super) fn resolve_part(source: PartSource) -> Result<Arc<CyclePart>, BuildError> {
    match source.0 {
        Source::Part(part) => Ok(part),
        Source::Named(name) => CycleRegistry::part(&name).ok_or_else(|| BuildError::UnknownPart {
            name,
            context: "not in the cycle registry".to_owned(),
        }),
    }
}

pub(super) fn resolve_item(item: SplitItem) -> Result<Resolved, BuildError> {
    match item.0 {
        Item::Part(source) => resolve_part(source).map(Resolved::Part),
        Item::Cycle(sub) => {
            if sub.blueprint.nodes.is_empty() {
                Err(BuildError::Empty {
                    name: sub.blueprint.name.clone(),
                })
            } else {
                Ok(Resolved::Cycle(sub.blueprint))
            }
        }
    }
}
