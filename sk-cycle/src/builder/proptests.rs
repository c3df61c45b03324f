//! Random placement sequences keep every builder invariant.

use std::collections::BTreeSet;

use petgraph::algo::is_cyclic_directed;
use petgraph::graph::DiGraph;
use proptest::prelude::*;

use super::*;
use crate::part::CyclePart;

/// Where an operation aims: one of the open coordinates (usually valid),
/// or any coordinate (usually not).
#[derive(Clone, Debug)]
enum Target {
    Open(usize),
    Raw(u32, u32),
}

#[derive(Clone, Debug)]
enum Op {
    Add(Target, u8),
    Split(Target, Vec<u8>),
    After(usize, usize),
    Pipe(usize, usize),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => any::<usize>().prop_map(Target::Open),
        1 => (0u32..8, 0u32..8).prop_map(|(l, p)| Target::Raw(l, p)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // 48 names for up to ~100 parts: duplicates happen, but not mostly.
    prop_oneof![
        4 => (target(), 0u8..48).prop_map(|(t, n)| Op::Add(t, n)),
        3 => (target(), prop::collection::vec(0u8..48, 0..4)).prop_map(|(t, ns)| Op::Split(t, ns)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::After(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Pipe(a, b)),
    ]
}

fn part(n: u8) -> CyclePart {
    CyclePart::new(format!("p{n}"), |_ctx| ())
}

/// Everything observable about the tree: coordinates, names, parents,
/// edges, the fresh-column counter.
type Snapshot = (
    Vec<(Coord, String, Option<Coord>)>,
    Vec<(NodeIdx, NodeIdx)>,
    Vec<(NodeIdx, NodeIdx)>,
    u32,
);

fn snapshot(b: &CycleBuilder) -> Snapshot {
    let t = &b.tree;
    let nodes = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.coord,
                t.name_of(i).to_owned(),
                n.parent.map(|p| t.nodes[p].coord),
            )
        })
        .collect();
    (nodes, t.after.clone(), t.pipes.clone(), t.max_col)
}

fn coords(b: &CycleBuilder) -> BTreeSet<Coord> {
    b.tree.nodes.iter().map(|n| n.coord).collect()
}

fn resolve(b: &CycleBuilder, t: &Target) -> Coord {
    match *t {
        Target::Open(i) => {
            let open = b.open_coords();
            open[i % open.len()]
        }
        Target::Raw(l, p) => Coord::new(l, p),
    }
}

/// A placed name, or (for one index in eight) an unknown one.
fn name_at(b: &CycleBuilder, i: usize) -> String {
    let names: Vec<&str> = {
        let mut v: Vec<&str> = b
            .tree
            .by_name
            .ids()
            .map(|i| b.tree.name_of(i as usize))
            .collect();
        v.sort_unstable();
        v
    };
    if names.is_empty() || i % 8 == 7 {
        "unknown".to_owned()
    } else {
        names[i % names.len()].to_owned()
    }
}

fn check_invariants(b: &CycleBuilder) -> Result<(), TestCaseError> {
    let t = &b.tree;
    prop_assert_eq!(t.by_coord.len(), t.nodes.len(), "coordinates are unique");
    prop_assert_eq!(t.graph.node_count(), t.nodes.len());
    let parts = t
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, BpKind::Part(_)))
        .count();
    prop_assert_eq!(t.by_name.len(), parts, "names are unique");
    if let Some(root) = t.nodes.first() {
        prop_assert_eq!(root.coord, Coord::new(1, 1));
        prop_assert!(root.parent.is_none());
        prop_assert!(matches!(root.kind, BpKind::Part(_)));
    }
    for (i, node) in t.nodes.iter().enumerate() {
        prop_assert_eq!(t.by_coord.get(node.coord), Some(i as u32));
        prop_assert!(node.coord.position <= t.max_col);
        if i > 0 {
            let p = node
                .parent
                .ok_or_else(|| TestCaseError::fail("a non-root without parent"))?;
            prop_assert_eq!(t.nodes[p].coord.level + 1, node.coord.level);
            prop_assert!(t.nodes[p].children.contains(&i));
        }
        match &node.kind {
            BpKind::Part(_) => {
                prop_assert!(node.children.len() <= 1);
                for &ch in &node.children {
                    prop_assert_eq!(t.nodes[ch].coord, node.coord.below());
                }
            }
            BpKind::Fork(_) => {
                prop_assert!(!node.children.is_empty());
                prop_assert_eq!(t.nodes[node.children[0]].coord, node.coord.below());
                let positions: Vec<u32> = node
                    .children
                    .iter()
                    .map(|&ch| t.nodes[ch].coord.position)
                    .collect();
                prop_assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "fork children ascend"
                );
                for &ch in &node.children {
                    prop_assert!(matches!(t.nodes[ch].kind, BpKind::Part(_)));
                }
            }
        }
    }
    // Open coordinates: below every leaf part (1-1 when empty).
    let mut below_leaves: Vec<Coord> = t
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, BpKind::Part(_)) && n.children.is_empty())
        .map(|n| n.coord.below())
        .collect();
    below_leaves.sort();
    if t.nodes.is_empty() {
        below_leaves.push(Coord::new(1, 1));
    }
    prop_assert_eq!(b.open_coords(), below_leaves);
    // Tree + after + pipe edges stay acyclic.
    let mut g = DiGraph::<(), ()>::new();
    let ids: Vec<_> = t.nodes.iter().map(|_| g.add_node(())).collect();
    for (i, node) in t.nodes.iter().enumerate() {
        if let Some(p) = node.parent {
            g.add_edge(ids[p], ids[i], ());
        }
    }
    for &(waiter, waits_for) in &t.after {
        g.add_edge(ids[waits_for], ids[waiter], ());
    }
    for &(from, to) in &t.pipes {
        g.add_edge(ids[from], ids[to], ());
    }
    prop_assert!(!is_cyclic_directed(&g));
    // Builds iff a part was placed.
    let copy = CycleBuilder {
        id: b.id,
        tree: t.clone(),
    };
    prop_assert_eq!(copy.build().is_ok(), !t.nodes.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let mut b = CycleBuilder::new("prop");
        check_invariants(&b)?;
        for op in &ops {
            let before = snapshot(&b);
            let before_coords = coords(&b);
            let max_col = b.tree.max_col;
            match op {
                Op::Add(t, n) => {
                    let at = resolve(&b, t);
                    let ok = b.add(part(*n), at).is_ok();
                    if ok {
                        let added: BTreeSet<Coord> = coords(&b).difference(&before_coords).copied().collect();
                        prop_assert_eq!(added, BTreeSet::from([at]));
                        prop_assert_eq!(b.coord_of(&format!("p{n}")), Some(at));
                    } else {
                        prop_assert_eq!(snapshot(&b), before);
                    }
                }
                Op::Split(t, ns) => {
                    let at = resolve(&b, t);
                    let ok = b.split(ns.iter().map(|&n| part(n)), at).is_ok();
                    if ok {
                        let added: BTreeSet<Coord> = coords(&b).difference(&before_coords).copied().collect();
                        let mut expected = BTreeSet::from([at, at.below()]);
                        for k in 1..ns.len() {
                            let col = max_col + u32::try_from(k).unwrap_or(u32::MAX);
                            expected.insert(Coord::new(at.level + 1, col));
                        }
                        prop_assert_eq!(added, expected);
                        prop_assert_eq!(b.tree.max_col, max_col + u32::try_from(ns.len()).unwrap_or(1) - 1);
                    } else {
                        prop_assert_eq!(snapshot(&b), before);
                    }
                }
                Op::After(x, y) | Op::Pipe(x, y) => {
                    let (waiter, other) = (name_at(&b, *x), name_at(&b, *y));
                    let res = if matches!(op, Op::After(..)) {
                        b.after(waiter.as_str(), other.as_str()).map(|_| ())
                    } else {
                        b.pipe(other.as_str(), waiter.as_str()).map(|_| ())
                    };
                    match res {
                        Ok(()) => prop_assert_eq!(&snapshot(&b).0, &before.0),
                        Err(_) => prop_assert_eq!(snapshot(&b), before),
                    }
                }
            }
            check_invariants(&b)?;
        }
    }
}
