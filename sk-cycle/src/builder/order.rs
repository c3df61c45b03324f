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

/// Edge lists in flat arrays: `head[n]` is node `n`'s latest edge,
/// `next[e]` the edge before `e` in its list, `to[e]` its far end.
#[derive(Clone, Debug, Default)]
struct Lists {
    head: Vec<u32>,
    next: Vec<u32>,
    to: Vec<u32>,
}

impl Lists {
    fn add_node(&mut self) {
        self.head.push(NONE);
    }

    fn push(&mut self, from: u32, to: u32) {
        self.next.push(self.head[from as usize]);
        self.to.push(to);
        self.head[from as usize] = (self.to.len() - 1) as u32;
    }

    /// The far ends of `node`'s edges.
    fn of(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let mut e = self.head[node as usize];
        std::iter::from_fn(move || {
            (e != NONE).then(|| {
                let to = self.to[e as usize];
                e = self.next[e as usize];
                to
            })
        })
    }
}

/// A directed acyclic graph whose edges are checked as they are added.
/// Node `i` is the `i`-th node added.
#[derive(Clone, Debug, Default)]
pub(super) struct OrderGraph {
    out: Lists,
    into: Lists,
    /// Each node's topological position (a permutation of `0..n`).
    position: Vec<u32>,
    /// Search marks: a node is marked when `mark[n] == stamp`.
    mark: Vec<u32>,
    stamp: u32,
}

impl OrderGraph {
    /// The number of nodes.
    #[cfg(test)]
    pub(super) fn node_count(&self) -> usize {
        self.position.len()
    }

    /// Adds a node, after every other in the order; its index.
    pub(super) fn add_node(&mut self) -> usize {
        let idx = self.position.len();
        self.position.push(idx as u32);
        self.mark.push(0);
        self.out.add_node();
        self.into.add_node();
        idx
    }

    /// Adds `first -> then` unless it closes a loop (`then` already
    /// reaches `first`): `Err(())`, and the graph is unchanged. `first`
    /// and `then` differ.
    pub(super) fn try_add_edge(&mut self, first: usize, then: usize) -> Result<(), ()> {
        let (x, y) = (first as u32, then as u32);
        let (upper, lower) = (self.position[first], self.position[then]);
        if upper > lower {
            self.reorder(x, y, lower, upper)?;
        }
        self.out.push(x, y);
        self.into.push(y, x);
        Ok(())
    }

    /// Makes room in the order for an edge `x -> y` where `y` comes first
    /// (at `lower`, `x` at `upper`), or finds that `y` reaches `x`.
    fn reorder(&mut self, x: u32, y: u32, lower: u32, upper: u32) -> Result<(), ()> {
        let stamp = self.next_stamp();
        // Forward from `y`: the nodes it reaches up to `x`'s position.
        let mut ahead = Vec::new();
        let mut stack = vec![y];
        self.mark[y as usize] = stamp;
        while let Some(n) = stack.pop() {
            ahead.push(n);
            for w in self.out.of(n) {
                if w == x {
                    return Err(());
                }
                if self.mark[w as usize] != stamp && self.position[w as usize] < upper {
                    self.mark[w as usize] = stamp;
                    stack.push(w);
                }
            }
        }
        // Backward from `x`: the nodes reaching it down to `y`'s position
        // (none of them is ahead: that would have been a loop).
        let mut behind = Vec::new();
        stack.push(x);
        self.mark[x as usize] = stamp;
        while let Some(n) = stack.pop() {
            behind.push(n);
            for w in self.into.of(n) {
                if self.mark[w as usize] != stamp && self.position[w as usize] > lower {
                    self.mark[w as usize] = stamp;
                    stack.push(w);
                }
            }
        }
        // The nodes behind `x` go first, then those ahead of `y`, each
        // group in its old order, onto the positions they held.
        let by_position = |v: &mut Vec<u32>, position: &[u32]| {
            v.sort_unstable_by_key(|&n| position[n as usize]);
        };
        by_position(&mut behind, &self.position);
        by_position(&mut ahead, &self.position);
        let mut slots: Vec<u32> = behind
            .iter()
            .chain(&ahead)
            .map(|&n| self.position[n as usize])
            .collect();
        slots.sort_unstable();
        for (&n, slot) in behind.iter().chain(&ahead).zip(slots) {
            self.position[n as usize] = slot;
        }
        Ok(())
    }

    /// A fresh search stamp (marks of earlier searches no longer count).
    fn next_stamp(&mut self) -> u32 {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }

    /// A shortest path `from` ... `to` along edges, both ends included
    /// (empty when there is none): the loop an edge would close, to name.
    pub(super) fn path(&self, from: usize, to: usize) -> Vec<usize> {
        let mut came_from = vec![NONE; self.position.len()];
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
            for w in self.out.of(n) {
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
            g.out
                .of(n)
                .all(|w| g.position[n as usize] < g.position[w as usize])
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
    fn a_refused_edge_changes_nothing() {
        let mut g = graph(3);
        g.try_add_edge(2, 1).unwrap();
        g.try_add_edge(1, 0).unwrap();
        let before = g.position.clone();
        assert_eq!(g.try_add_edge(0, 2), Err(()));
        assert_eq!(g.position, before);
        assert_eq!(g.out.to.len(), 2);
    }
}
