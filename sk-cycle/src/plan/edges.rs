//! The plan's successor arrays: the marks on their entries, how they are
//! made from a list of edges, and reachability along them.

/// Marks a data edge in [`Plan::succ`](super::Plan::succ).
pub(crate) const DATA: u32 = 1 << 31;

/// Marks an edge in [`Plan::succ`](super::Plan::succ) into a node that
/// has no other predecessor: it is ready as soon as this edge's source
/// ends, with no count to take down (a chain's link, a tree's child).
/// Node ids stay below it.
pub(crate) const SOLE: u32 = 1 << 30;

/// The node an entry of [`Plan::succ`](super::Plan::succ) leads to
/// (without its marks).
#[inline(always)]
pub(crate) const fn edge_target(edge: u32) -> u32 {
    edge & !(DATA | SOLE)
}

/// Each node's successors from `edges` (`(from, to, data)`), in order of
/// node id, one edge per pair (a data edge if either was): the successor
/// lists, as `succ[succ_start[n]..succ_start[n + 1]]` (with [`SOLE`] set
/// on the edges into a node of one predecessor), and each node's
/// predecessor count. Bucketed by node (no sort of all edges: a large
/// cycle has a few edges per node, sorted and deduplicated in place).
/// Node ids are below [`SOLE`].
pub(super) fn successor_lists(
    n: usize,
    edges: &[(u32, u32, bool)],
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    // `ends[i]`: first where node `i`'s edges go, then (once they are
    // placed) where they end, which is where node `i + 1`'s begin.
    let mut ends = vec![0u32; n + 1];
    for &(from, _, _) in edges {
        ends[from as usize + 1] += 1;
    }
    for i in 0..n {
        ends[i + 1] += ends[i];
    }
    // Each edge as `to << 1 | data`: sorting these sorts by target, a
    // data edge after a plain one to the same target.
    let mut bucketed = vec![0u32; edges.len()];
    for &(from, to, data) in edges {
        let slot = &mut ends[from as usize];
        bucketed[*slot as usize] = to << 1 | u32::from(data);
        *slot += 1;
    }
    let mut succ_start = Vec::with_capacity(n + 1);
    let mut succ: Vec<u32> = Vec::with_capacity(edges.len());
    let mut pred_count = vec![0u32; n];
    succ_start.push(0);
    let mut begin = 0;
    for &end in &ends[..n] {
        let list = &mut bucketed[begin as usize..end as usize];
        begin = end;
        // Most lists hold one edge or two: no sort for those.
        match list {
            [] => {}
            [_] => {}
            [a, b] => {
                if *a > *b {
                    std::mem::swap(a, b);
                }
            }
            _ => list.sort_unstable(),
        }
        let first = succ.len();
        for &packed in list.iter() {
            let (to, data) = (packed >> 1, packed & 1 == 1);
            match succ[first..].last_mut() {
                // The same pair again (sorted: a data edge comes last).
                Some(last) if edge_target(*last) == to => *last |= if data { DATA } else { 0 },
                _ => {
                    succ.push(if data { to | DATA } else { to });
                    pred_count[to as usize] += 1;
                }
            }
        }
        succ_start.push(succ.len() as u32);
    }
    for edge in &mut succ {
        if pred_count[edge_target(*edge) as usize] == 1 {
            *edge |= SOLE;
        }
    }
    (succ_start, succ, pred_count)
}

/// Whether a path of plan edges leads from `from` to `to`.
pub(super) fn reaches(from: usize, to: usize, n: usize, succ_start: &[u32], succ: &[u32]) -> bool {
    let mut seen = vec![false; n];
    let mut stack = vec![from];
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        for &next in &succ[succ_start[node] as usize..succ_start[node + 1] as usize] {
            let next = edge_target(next) as usize;
            if !std::mem::replace(&mut seen[next], true) {
                stack.push(next);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_lists_merge_repeats_and_mark_sole_predecessors() {
        // 0 -> 1 twice (once as data), 1 -> 2, 1 -> 3 (data), and 2 and 3
        // both -> 4.
        let edges = [
            (0, 1, false),
            (1, 2, false),
            (0, 1, true),
            (1, 3, true),
            (2, 4, false),
            (3, 4, true),
        ];
        let (start, succ, preds) = successor_lists(5, &edges);
        let of = |n: usize| &succ[start[n] as usize..start[n + 1] as usize];
        assert_eq!(preds, [0, 1, 1, 1, 2]);
        assert_eq!(of(0), [1 | DATA | SOLE]);
        assert_eq!(of(1), [2 | SOLE, 3 | DATA | SOLE]);
        // 4 waits for two: its edges keep the count.
        assert_eq!(of(2), [4]);
        assert_eq!(of(3), [4 | DATA]);
        assert_eq!(of(4), [] as [u32; 0]);
        assert!(succ.iter().all(|&e| edge_target(e) < 5));
    }

    #[test]
    fn lists_of_every_length_come_out_sorted_and_merged() {
        // Node 0: five edges out of order, 3 twice (once as data); node 1:
        // two, reversed; node 2: the same edge twice, the data one first.
        let edges = [
            (0, 5, false),
            (0, 3, true),
            (0, 1, false),
            (0, 3, false),
            (0, 4, false),
            (1, 5, false),
            (1, 2, true),
            (2, 4, true),
            (2, 4, false),
        ];
        let (start, succ, preds) = successor_lists(6, &edges);
        let of = |n: usize| &succ[start[n] as usize..start[n + 1] as usize];
        assert_eq!(of(0), [1 | SOLE, 3 | DATA | SOLE, 4, 5]);
        assert_eq!(of(1), [2 | DATA | SOLE, 5]);
        assert_eq!(of(2), [4 | DATA]);
        assert_eq!(preds, [0, 1, 1, 1, 2, 2]);
    }
}
