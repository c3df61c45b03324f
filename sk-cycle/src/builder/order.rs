//! [`OrderGraph`]: the builder's ordering edges, kept acyclic as each one
//! is added, in amortized O(1) for the common edge.
//!
//! It keeps a topological position per node (the Pearce–Kelly dynamic
//! topological order). An edge that agrees with the order — every tree
//! edge into a new node, and an `after` or `pipe` edge from an earlier
//! part to a later one, as builders usually add them — costs a push. An
//! edge against it searches only the nodes whose positions lie between
//! its ends: forward from the later end (reaching the earlier one means a
//! loop, and nothing changes), backward from the earlier one, and then
//! gives the nodes found their own positions again, in an order that
//! agrees with the new edge.
//!
//! petgraph's `Acyclic` does the same over a `BTreeMap` of positions and
//! a general graph; building a large cycle spent most of its time there
//! (a `BTreeMap` insert per node), so the builder keeps its own, with
//! edge lists in flat arrays (no allocation per node).

/// No edge (the end of an edge list).
const NONE: u32 = u32::MAX;

/// Set on [`Link::to`] of a marked edge (the builder marks its `after`
/// edges, to find repeats). Node indices stay below it.
const MARK: u32 = 1 << 31;

/// How many edges of each list [`OrderGraph::find_marked`] looks at
/// before it gives up.
const SCAN: usize = 16;

/// One edge in a list: the edge before it in the list, and its far end
/// (with [`MARK`] on a marked edge).
#[derive(Clone, Copy, Debug)]
struct Link {
    next: u32,
    to: u32,
}

impl Link {
    /// The far end.
    fn node(self) -> u32 {
        self.to & !MARK
    }

    fn marked(self) -> bool {
        self.to & MARK != 0
    }
}

/// A node: its topological position, its search mark, and the latest
/// edge of each of its lists. One record, so that adding a node is one
/// push and an edge touches one record at each end.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Its place in the order (the positions are a permutation of `0..n`).
    position: u32,
    /// Marked by a search when `mark == stamp`.
    mark: u32,
    out: u32,
    into: u32,
}

/// A directed acyclic graph whose edges are checked as they are added.
/// Node `i` is the `i`-th node added.
#[derive(Clone, Debug, Default)]
pub(super) struct OrderGraph {
    slots: Vec<Slot>,
    /// Edge lists in flat arrays: `slots[n].out` is node `n`'s latest
    /// outgoing edge, `out[e].next` the one before it.
    out: Vec<Link>,
    into: Vec<Link>,
    stamp: u32,
}

/// The far ends of the list of edges `links` starting at `head`.
fn ends(links: &[Link], head: u32) -> impl Iterator<Item = u32> + '_ {
    let mut e = head;
    std::iter::from_fn(move || {
        (e != NONE).then(|| {
            let link = links[e as usize];
            e = link.next;
            link.node()
        })
    })
}

impl OrderGraph {
    /// The number of nodes.
    #[cfg(test)]
    pub(super) fn node_count(&self) -> usize {
        self.slots.len()
    }

    /// Makes room for `nodes` more nodes, each with an edge into it.
    pub(super) fn reserve(&mut self, nodes: usize) {
        self.slots.reserve(nodes);
        self.out.reserve(nodes);
        self.into.reserve(nodes);
    }

    /// Adds a node, after every other in the order; its index.
    pub(super) fn add_node(&mut self) -> usize {
        let idx = self.slots.len();
        // A link's target shares its word with `MARK`.
        debug_assert!(idx < MARK as usize, "order graph node {idx} past MARK");
        self.slots.push(Slot {
            position: idx as u32,
            mark: 0,
            out: NONE,
            into: NONE,
        });
        idx
    }

    fn position(&self, n: u32) -> u32 {
        self.slots[n as usize].position
    }

    /// The nodes `n` has edges to.
    fn successors(&self, n: u32) -> impl Iterator<Item = u32> + '_ {
        ends(&self.out, self.slots[n as usize].out)
    }

    /// The nodes with edges to `n`.
    #[cfg(test)]
    fn predecessors(&self, n: u32) -> impl Iterator<Item = u32> + '_ {
        ends(&self.into, self.slots[n as usize].into)
    }

    /// Adds `first -> then` unless it closes a loop (`then` already
    /// reaches `first`): `Err(())`, and the graph is unchanged. `first`
    /// and `then` differ.
    pub(super) fn try_add_edge(&mut self, first: usize, then: usize) -> Result<(), ()> {
        self.try_add_edge_marked(first, then, false)
    }

    /// [`try_add_edge`](OrderGraph::try_add_edge), marking the edge when
    /// `marked` (see [`find_marked`](OrderGraph::find_marked)).
    pub(super) fn try_add_edge_marked(
        &mut self,
        first: usize,
        then: usize,
        marked: bool,
    ) -> Result<(), ()> {
        let (x, y) = (first as u32, then as u32);
        let mark = if marked { MARK } else { 0 };
        let (upper, lower) = (self.position(x), self.position(y));
        if upper > lower {
            self.reorder(x, y, lower, upper)?;
        }
        let (out_edge, into_edge) = (self.out.len() as u32, self.into.len() as u32);
        let from = &mut self.slots[first];
        self.out.push(Link {
            next: from.out,
            to: y | mark,
        });
        from.out = out_edge;
        let to = &mut self.slots[then];
        self.into.push(Link {
            next: to.into,
            to: x | mark,
        });
        to.into = into_edge;
        Ok(())
    }

    /// Makes room in the order for an edge `x -> y` where `y` comes first
    /// (at `lower`, `x` at `upper`), or finds that `y` reaches `x`.
    fn reorder(&mut self, x: u32, y: u32, lower: u32, upper: u32) -> Result<(), ()> {
        let stamp = self.next_stamp();
        // Forward from `y`: the nodes it reaches up to `x`'s position.
        let mut ahead = Vec::new();
        let mut stack = vec![y];
        self.slots[y as usize].mark = stamp;
        while let Some(n) = stack.pop() {
            ahead.push(n);
            let mut e = self.slots[n as usize].out;
            while e != NONE {
                let link = self.out[e as usize];
                let w = link.node();
                e = link.next;
                if w == x {
                    return Err(());
                }
                let slot = &mut self.slots[w as usize];
                if slot.mark != stamp && slot.position < upper {
                    slot.mark = stamp;
                    stack.push(w);
                }
            }
        }
        // Backward from `x`: the nodes reaching it down to `y`'s position
        // (none of them is ahead: that would have been a loop).
        let mut behind = Vec::new();
        stack.push(x);
        self.slots[x as usize].mark = stamp;
        while let Some(n) = stack.pop() {
            behind.push(n);
            let mut e = self.slots[n as usize].into;
            while e != NONE {
                let link = self.into[e as usize];
                let w = link.node();
                e = link.next;
                let slot = &mut self.slots[w as usize];
                if slot.mark != stamp && slot.position > lower {
                    slot.mark = stamp;
                    stack.push(w);
                }
            }
        }
        // The nodes behind `x` go first, then those ahead of `y`, each
        // group in its old order, onto the positions they held.
        let slots = &mut self.slots;
        behind.sort_unstable_by_key(|&n| slots[n as usize].position);
        ahead.sort_unstable_by_key(|&n| slots[n as usize].position);
        let mut positions: Vec<u32> = behind
            .iter()
            .chain(&ahead)
            .map(|&n| slots[n as usize].position)
            .collect();
        positions.sort_unstable();
        for (&n, position) in behind.iter().chain(&ahead).zip(positions) {
            slots[n as usize].position = position;
        }
        Ok(())
    }

    /// Whether a marked edge `first -> then` is in the graph, found by
    /// reading at most [`SCAN`] edges of `first`'s outgoing list and as
    /// many of `then`'s incoming one: `None` when both are longer (the
    /// caller keeps a set of its edges then).
    pub(super) fn find_marked(&self, first: usize, then: usize) -> Option<bool> {
        let scan = |links: &[Link], head: u32, far: usize| {
            let mut e = head;
            for _ in 0..SCAN {
                if e == NONE {
                    return Some(false);
                }
                let link = links[e as usize];
                if link.marked() && link.node() as usize == far {
                    return Some(true);
                }
                e = link.next;
            }
            (e == NONE).then_some(false)
        };
        scan(&self.out, self.slots[first].out, then)
            .or_else(|| scan(&self.into, self.slots[then].into, first))
    }

    /// A fresh search stamp (marks of earlier searches no longer count).
    fn next_stamp(&mut self) -> u32 {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.slots.iter_mut().for_each(|s| s.mark = 0);
            self.stamp = 1;
        }
        self.stamp
    }

    /// A shortest path `from` ... `to` along edges, both ends included
    /// (empty when there is none): the loop an edge would close, to name.
    pub(super) fn path(&self, from: usize, to: usize) -> Vec<usize> {
        let mut came_from = vec![NONE; self.slots.len()];
        let mut queue = std::collections::VecDeque::from([from as u32]);
        came_from[from] = from as u32;
        while let Some(n) = queue.pop_front() {
            if n as usize == to {
                let mut path = vec![to];
                let mut at = n;
                while at as usize != from {
                    at = came_from[at as usize];
                    path.push(at as usize);
                }
                path.reverse();
                return path;
            }
            for w in self.successors(n) {
                if came_from[w as usize] == NONE {
                    came_from[w as usize] = n;
                    queue.push_back(w);
                }
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize) -> OrderGraph {
        let mut g = OrderGraph::default();
        for _ in 0..n {
            g.add_node();
        }
        g
    }

    /// Every edge goes forward in the order.
    fn consistent(g: &OrderGraph) -> bool {
        (0..g.node_count() as u32).all(|n| {
            g.successors(n).all(|w| g.position(n) < g.position(w))
                && g.predecessors(n).all(|w| g.position(w) < g.position(n))
        })
    }

    #[test]
    fn edges_against_the_order_reorder_and_loops_are_refused() {
        let mut g = graph(5);
        // 4 -> 3 -> 2 -> 1 -> 0: each against the initial order.
        for n in (1..5).rev() {
            assert_eq!(g.try_add_edge(n, n - 1), Ok(()));
            assert!(consistent(&g));
        }
        assert_eq!(g.try_add_edge(0, 4), Err(()));
        assert_eq!(g.try_add_edge(1, 3), Err(()));
        assert!(consistent(&g));
        assert_eq!(g.path(4, 0), vec![4, 3, 2, 1, 0]);
        assert_eq!(g.path(0, 4), Vec::<usize>::new());
        assert_eq!(g.try_add_edge(4, 0), Ok(()));
        assert_eq!(g.path(4, 0), vec![4, 0]);
    }

    #[test]
    fn marked_edges_are_found_until_both_lists_are_long() {
        let mut g = graph(2 * SCAN + 3);
        let (hub, sink) = (0, 1);
        g.try_add_edge(hub, sink).unwrap();
        // Unmarked: not an `after` edge.
        assert_eq!(g.find_marked(hub, sink), Some(false));
        g.try_add_edge_marked(hub, sink, true).unwrap();
        assert_eq!(g.find_marked(hub, sink), Some(true));
        assert_eq!(g.find_marked(sink, hub), Some(false));
        // The hub gets many edges out: the sink's short list still answers.
        for n in 2..SCAN + 3 {
            g.try_add_edge_marked(hub, n, true).unwrap();
        }
        assert_eq!(g.find_marked(hub, sink), Some(true));
        assert_eq!(g.find_marked(hub, 2), Some(true));
        // And the sink many edges in: no answer within the limit.
        for n in SCAN + 3..2 * SCAN + 3 {
            g.try_add_edge_marked(n, sink, true).unwrap();
        }
        assert_eq!(g.find_marked(hub, sink), None);
        assert!(consistent(&g));
    }

    #[test]
    fn a_refused_edge_changes_nothing() {
        let mut g = graph(3);
        g.try_add_edge(2, 1).unwrap();
        g.try_add_edge(1, 0).unwrap();
        let positions = |g: &OrderGraph| (0..3).map(|n| g.position(n)).collect::<Vec<_>>();
        let before = positions(&g);
        assert_eq!(g.try_add_edge(0, 2), Err(()));
        assert_eq!(positions(&g), before);
        assert_eq!((g.out.len(), g.into.len()), (2, 2));
    }
}
