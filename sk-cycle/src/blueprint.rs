//! [`Blueprint`]: the placed tree a [`CycleBuilder`](crate::CycleBuilder)
//! produces and the engine compiles. Crate-internal.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::context::PartContext;
use crate::coord::Coord;
use crate::mode::SyncMode;
use crate::part::{ConditionFn, CyclePart};

/// Index of a node in [`Blueprint::nodes`].
pub(crate) type NodeIdx = usize;

/// The placed tree of a cycle.
///
/// Invariants (kept by the builder):
/// - `nodes[0]` is the root part at 1-1, when there is any node;
/// - a node comes after its parent (`children` hold larger indices): the
///   plan's compile walks nodes in index order, parents first;
/// - a part node has at most one child; a fork node has at least one, and
///   its children are part nodes, in position order;
/// - every node's coordinate is unique; part names are unique;
/// - `after` and `pipe` edges join part nodes, and with the tree's edges
///   they close no loop (the builder checks each as it is added; compile
///   checks the whole graph again only when it adds edges of its own).
#[derive(Clone, Debug, Default)]
pub(crate) struct Blueprint {
    pub(crate) name: String,
    pub(crate) nodes: Vec<BpNode>,
    /// The cycle-wide sync mode; overrides every split's.
    pub(crate) sync: Option<SyncMode>,
    /// The cycle-wide concurrency limit; overrides every split's.
    pub(crate) concurrency_limit: Option<NonZeroUsize>,
    /// The cycle-wide rate (part starts per second); applies beside the
    /// splits' and parts' own.
    pub(crate) rate_limit: Option<f64>,
    /// Ordering edges `(waiter, waits_for)`.
    pub(crate) after: Vec<(NodeIdx, NodeIdx)>,
    /// Data edges `(from, to)`: `to` receives `from`'s output as input.
    pub(crate) pipes: Vec<(NodeIdx, NodeIdx)>,
}

/// A builder's indexes of its blueprint's nodes, which the plan takes
/// over (rather than hash every name and coordinate again): node indices
/// by part name and by coordinate (forks included).
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    pub(crate) by_name: crate::names::NameIndex,
    pub(crate) by_coord: crate::coords::CoordIndex,
}

/// One node of the tree.
#[derive(Clone, Debug)]
pub(crate) struct BpNode {
    pub(crate) coord: Coord,
    pub(crate) parent: Option<NodeIdx>,
    /// Inline up to two (a chain's node has one, a fork's two): most
    /// nodes allocate nothing for them.
    pub(crate) children: smallvec::SmallVec<[NodeIdx; 2]>,
    pub(crate) kind: BpKind,
}

// A large cycle's builder copies and walks its nodes: one cache line each.
const _: () = assert!(std::mem::size_of::<BpNode>() <= 64);

/// A part, or the fork a split leaves at its coordinate.
#[derive(Clone, Debug)]
pub(crate) enum BpKind {
    /// Shared with the compiled plan (a part is much larger than a fork).
    Part(Arc<CyclePart>),
    /// Boxed: forks are few, and a node is then one cache line (64 bytes,
    /// 96 with the split inline), which a large cycle's builder copies and
    /// walks.
    Fork(Box<Split>),
}

impl Blueprint {
    /// The part at `idx`, if it is a part node.
    pub(crate) fn part(&self, idx: NodeIdx) -> Option<&CyclePart> {
        match &self.nodes.get(idx)?.kind {
            BpKind::Part(p) => Some(&**p),
            BpKind::Fork(_) => None,
        }
    }
}

/// Options of one split: its sync mode, concurrency limit and condition.
///
/// # Examples
///
/// ```
/// use sk_cycle::{Split, SyncMode};
/// let opts = Split::new().sync(SyncMode::Level).concurrency_limit(2);
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct Split {
    pub(crate) sync: Option<SyncMode>,
    pub(crate) concurrency_limit: Option<NonZeroUsize>,
    pub(crate) rate_limit: Option<f64>,
    pub(crate) condition: Option<Arc<ConditionFn>>,
}

impl Split {
    /// Default options: parallel, unlimited, unconditional.
    pub fn new() -> Self {
        Split::default()
    }

    /// The split's sync mode (overridden by a cycle-wide mode).
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.sync = Some(mode);
        self
    }

    /// At most `n` parts of the split's subtree run at once; `0` means no
    /// limit. Overridden by a cycle-wide limit.
    pub fn concurrency_limit(mut self, n: usize) -> Self {
        self.concurrency_limit = NonZeroUsize::new(n);
        self
    }

    /// At most `per_sec` starts of parts of the split's subtree per
    /// second (a rate, where [`concurrency_limit`](Split::concurrency_limit)
    /// caps how many run at once); parts wait their turn without holding
    /// a thread. Applies together with the parts' own and the cycle's
    /// rates. Not a finite number above zero: a build error.
    pub fn rate_limit(mut self, per_sec: f64) -> Self {
        self.rate_limit = Some(per_sec);
        self
    }

    /// The split's parts (and everything below them) run only when
    /// `condition` holds; otherwise they end not-taken.
    pub fn condition<F>(mut self, condition: F) -> Self
    where
        F: Fn(&PartContext<'_>) -> bool + Send + Sync + 'static,
    {
        self.condition = Some(Arc::new(condition));
        self
    }
}

impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("sync", &self.sync)
            .field("concurrency_limit", &self.concurrency_limit)
            .field("rate_limit", &self.rate_limit)
            .field("conditional", &self.condition.is_some())
            .finish()
    }
}
