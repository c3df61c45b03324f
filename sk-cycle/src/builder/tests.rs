use std::num::NonZeroUsize;

use super::*;
use crate::mode::ErrorMode;
use crate::part::CyclePart;

fn part(name: &str) -> CyclePart {
    CyclePart::new(name.to_owned(), |_ctx| ())
}

fn c(level: u32, position: u32) -> Coord {
    Coord::new(level, position)
}

/// What fills each coordinate: a part's name or `<split>`.
fn filled(b: &CycleBuilder) -> Vec<(Coord, String)> {
    let mut by_coord: Vec<_> = b.tree.by_coord.iter().collect();
    by_coord.sort_unstable();
    by_coord
        .into_iter()
        .map(|(coord, idx)| {
            let what = match &b.tree.nodes[idx as usize].kind {
                BpKind::Part(p) => p.name().to_owned(),
                BpKind::Fork(_) => "<split>".to_owned(),
            };
            (coord, what)
        })
        .collect()
}

/// Root at 1-1 and a split of a, b, c at 2-1.
fn notes_prefix() -> CycleBuilder {
    let mut b = CycleBuilder::new("notes");
    b.add(part("p"), 1).unwrap();
    b.split([part("a"), part("b"), part("c")], 2).unwrap();
    b
}

#[test]
fn the_notes_example_fills_and_opens_the_documented_coordinates() {
    let mut b = notes_prefix();
    let expected = [
        (c(1, 1), "p"),
        (c(2, 1), "<split>"),
        (c(3, 1), "a"),
        (c(3, 2), "b"),
        (c(3, 3), "c"),
    ];
    let expected: Vec<(Coord, String)> = expected.iter().map(|&(k, n)| (k, n.to_owned())).collect();
    assert_eq!(filled(&b), expected);
    assert_eq!(b.open_coords(), [c(4, 1), c(4, 2), c(4, 3)]);

    let [x, y]: [PartHandle; 2] = b
        .split([part("x"), part("y")], (4, 1))
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(x.coord(), c(5, 1));
    assert_eq!(y.coord(), c(5, 4));
    assert_eq!(b.coord_of("y"), Some(c(5, 4)));
    assert_eq!(b.open_coords(), [c(4, 2), c(4, 3), c(6, 1), c(6, 4)]);
    assert_eq!(b.len(), 6);
}

#[test]
fn an_empty_builder_is_open_at_the_root_only() {
    let b = CycleBuilder::new("empty");
    assert!(b.is_empty());
    assert_eq!(b.len(), 0);
    assert_eq!(b.name(), "empty");
    assert_eq!(b.open_coords(), [c(1, 1)]);
}

#[test]
fn a_split_first_is_must_start_with_add() {
    let mut b = CycleBuilder::new("t");
    let err = b.split([part("a")], 1).unwrap_err();
    assert!(matches!(
        err,
        BuildError::MustStartWithAdd { coord, action: "split" } if coord == c(1, 1)
    ));
    assert_eq!(
        err.to_string(),
        "cannot split at 1-1: a cycle starts with an add of one part at level 1"
    );
    let err = b.add(part("a"), (2, 1)).unwrap_err();
    assert!(
        matches!(err, BuildError::MustStartWithAdd { coord, action: "add" } if coord == c(2, 1))
    );
    assert!(err.to_string().contains("2-1"));
    assert!(b.is_empty());
}

#[test]
fn a_second_placement_at_level_one_is_second_root() {
    let mut b = CycleBuilder::new("t");
    b.add(part("r"), 1).unwrap();
    for at in [c(1, 1), c(1, 2)] {
        let err = b.add(part("s"), at).unwrap_err();
        assert!(matches!(err, BuildError::SecondRoot { coord } if coord == at));
        assert_eq!(
            err.to_string(),
            format!("cannot place at {at}: level 1 holds only the root part")
        );
    }
    let err = b.split([part("s")], (1, 3)).unwrap_err();
    assert!(matches!(err, BuildError::SecondRoot { .. }));
}

#[test]
fn a_filled_coordinate_is_occupied() {
    let mut b = notes_prefix();
    let err = b.add(part("d"), (3, 2)).unwrap_err();
    assert!(
        matches!(&err, BuildError::Occupied { coord, by } if *coord == c(3, 2) && by == "part \"b\"")
    );
    assert_eq!(
        err.to_string(),
        "cannot place at 3-2: it is already filled by part \"b\""
    );
    let err = b.split([part("d")], 2).unwrap_err();
    assert!(
        matches!(&err, BuildError::Occupied { coord, by } if *coord == c(2, 1) && by == "a split")
    );
    assert_eq!(
        err.to_string(),
        "cannot place at 2-1: it is already filled by a split"
    );
}

#[test]
fn an_empty_coordinate_above_is_a_level_gap() {
    let mut b = notes_prefix();
    let err = b.add(part("d"), (5, 2)).unwrap_err();
    assert!(
        matches!(err, BuildError::LevelGap { coord, missing } if coord == c(5, 2) && missing == c(4, 2))
    );
    assert_eq!(
        err.to_string(),
        "cannot place at 5-2: 4-2 is empty (fill each branch level by level)"
    );
    // A column that does not exist yet.
    let err = b.add(part("d"), (4, 9)).unwrap_err();
    assert!(matches!(err, BuildError::LevelGap { missing, .. } if missing == c(3, 9)));
}

#[test]
fn below_a_split_is_not_a_leaf() {
    let mut b = notes_prefix();
    let err = b.add(part("d"), (3, 1)).unwrap_err();
    assert!(matches!(
        &err,
        BuildError::NotALeaf { coord, above, reason }
            if *coord == c(3, 1) && *above == c(2, 1) && reason.contains("split")
    ));
    assert_eq!(
        err.to_string(),
        "cannot place at 3-1: 2-1 is not the end of its branch \
         (it is a split; its parts are at 3-1, 3-2, 3-3)"
    );
}

#[test]
fn a_split_without_parts_is_empty_split() {
    let mut b = notes_prefix();
    let err = b.split(Vec::<CyclePart>::new(), (4, 3)).unwrap_err();
    assert!(matches!(err, BuildError::EmptySplit { coord } if coord == c(4, 3)));
    assert_eq!(
        err.to_string(),
        "cannot split at 4-3: a split needs at least one part"
    );
}

#[test]
fn level_or_position_zero_is_an_invalid_coordinate() {
    let mut b = notes_prefix();
    for at in [c(0, 1), c(4, 0)] {
        let err = b.add(part("d"), at).unwrap_err();
        assert!(matches!(err, BuildError::InvalidCoord { coord } if coord == at));
        assert_eq!(
            err.to_string(),
            format!("cannot place at {at}: levels and positions start at 1")
        );
    }
}

#[test]
fn a_name_used_twice_is_a_duplicate_part() {
    let mut b = notes_prefix();
    let err = b.add(part("a"), (4, 2)).unwrap_err();
    assert!(matches!(
        &err,
        BuildError::DuplicatePart { name, first, second }
            if name == "a" && *first == c(3, 1) && *second == c(4, 2)
    ));
    assert_eq!(
        err.to_string(),
        "part name \"a\" is used twice: at 3-1 and at 4-2"
    );
    // Within one split.
    let err = b.split([part("q"), part("q")], (4, 3)).unwrap_err();
    assert!(matches!(
        &err,
        BuildError::DuplicatePart { name, first, second }
            if name == "q" && *first == c(5, 3) && *second == c(5, 4)
    ));
}

#[test]
fn failed_placements_change_nothing() {
    let mut b = notes_prefix();
    let before = filled(&b);
    let open = b.open_coords();
    let max_col = b.tree.max_col;
    assert!(b.split([part("x"), part("a")], (4, 1)).is_err());
    assert!(b.add(part("x"), (9, 9)).is_err());
    assert!(b.add("no-such-registered-part", (4, 1)).is_err());
    assert_eq!(filled(&b), before);
    assert_eq!(b.open_coords(), open);
    assert_eq!(b.tree.max_col, max_col);
    assert_eq!(b.tree.graph.node_count(), b.tree.nodes.len());
    // The failed split did not use up fresh columns.
    let handles = b.split([part("x"), part("y")], (4, 1)).unwrap();
    assert_eq!(handles[1].coord(), c(5, 4));
}

#[test]
fn edges_to_unknown_parts_say_which_edge() {
    let mut b = notes_prefix();
    let err = b.after("a", "nope").unwrap_err();
    assert!(
        matches!(&err, BuildError::UnknownPart { name, context } if name == "nope" && context == "after edge")
    );
    assert_eq!(err.to_string(), "unknown part \"nope\" (after edge)");
    let err = b.pipe("nope", "a").unwrap_err();
    assert_eq!(err.to_string(), "unknown part \"nope\" (pipe edge)");
}

#[test]
fn a_part_cannot_wait_for_itself() {
    let mut b = notes_prefix();
    let err = b.after("b", "b").unwrap_err();
    assert!(
        matches!(&err, BuildError::SelfEdge { name, coord } if name == "b" && *coord == c(3, 2))
    );
    assert_eq!(err.to_string(), "part \"b\" at 3-2 cannot wait for itself");
    assert!(matches!(b.pipe("b", "b"), Err(BuildError::SelfEdge { .. })));
}

#[test]
fn loops_through_after_edges_are_rejected_with_their_path() {
    let mut b = notes_prefix();
    b.after("b", "a").unwrap();
    b.after("c", "b").unwrap();
    let err = b.after("a", "c").unwrap_err();
    assert!(matches!(&err, BuildError::OrderingLoop { path } if path == &["a", "b", "c", "a"]));
    assert_eq!(err.to_string(), "ordering loop: a -> b -> c -> a");
    assert_eq!(b.tree.after.len(), 2);
    // The pipe graph counts too.
    let err = b.pipe("c", "a").unwrap_err();
    assert!(matches!(err, BuildError::OrderingLoop { .. }));
    assert!(b.tree.pipes.is_empty());
}

#[test]
fn waiting_for_a_descendant_is_a_loop_through_the_tree() {
    let mut b = notes_prefix();
    b.add(part("d"), (4, 2)).unwrap();
    let err = b.after("p", "d").unwrap_err();
    // The split at 2-1 is on the path but has no name to show.
    assert_eq!(err.to_string(), "ordering loop: p -> b -> d -> p");
    // Waiting for an ancestor only repeats the tree: fine.
    b.after("d", "p").unwrap();
    b.after("d", "p").unwrap();
    assert_eq!(b.tree.after.len(), 1);
}

#[test]
fn an_after_edge_added_again_is_kept_once_whatever_the_edges_of_its_ends() {
    let mut b = CycleBuilder::new("hub");
    b.add(part("hub"), 1).unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let ps = b.split(names.iter().map(|n| part(n)), 2).unwrap();
    let sink = b.then(ps[0], part("sink")).unwrap();
    let mut expected = std::collections::BTreeSet::new();
    type Pairs = std::collections::BTreeSet<(String, String)>;
    let after = |b: &mut CycleBuilder, expected: &mut Pairs, waiter: &str, waits_for: &str| {
        b.after(waiter, waits_for).unwrap();
        expected.insert((waiter.to_owned(), waits_for.to_owned()));
    };
    // The sink waits for every part (for p0 too, its tree parent: an
    // `after` edge of its own), and every other part for the hub: the
    // hub has 40 edges out and the sink 40 in.
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|p| ("sink", p.as_str())).collect();
    pairs.extend(names[1..].iter().map(|p| (p.as_str(), "hub")));
    for &(w, f) in &pairs {
        after(&mut b, &mut expected, w, f);
    }
    let recorded = |b: &CycleBuilder| {
        let t = &b.tree;
        let names: Vec<_> = t
            .after
            .iter()
            .map(|&(w, f)| (t.name_of(w).to_owned(), t.name_of(f).to_owned()))
            .collect();
        let unique: std::collections::BTreeSet<_> = names.iter().cloned().collect();
        assert_eq!(unique.len(), names.len(), "an edge is recorded twice");
        unique
    };
    // Again, in the other order: found by reading a few edges.
    for &(w, f) in pairs.iter().rev() {
        b.after(w, f).unwrap();
    }
    assert_eq!(recorded(&b), expected);
    assert!(!b.tree.after_set_made());
    // Both ends have many edges: the set is made, holding the edges
    // recorded so far, and takes every edge from then on.
    after(&mut b, &mut expected, "sink", "hub");
    assert!(b.tree.after_set_made());
    for &(w, f) in &pairs {
        b.after(w, f).unwrap();
    }
    b.after("sink", "hub").unwrap();
    for p in &names[1..] {
        after(&mut b, &mut expected, p, "p0");
    }
    for p in &names[1..] {
        b.after(p.as_str(), "p0").unwrap();
    }
    // A refused edge is not recorded.
    assert!(matches!(
        b.after("hub", sink),
        Err(BuildError::OrderingLoop { .. })
    ));
    assert_eq!(recorded(&b), expected);
    // The cycle is built with each edge once.
    assert_eq!(b.build().unwrap().blueprint.after.len(), expected.len());
}

#[test]
fn a_part_takes_at_most_one_pipe() {
    let mut b = notes_prefix();
    b.pipe("a", "c").unwrap();
    b.pipe("a", "c").unwrap();
    let err = b.pipe("b", "c").unwrap_err();
    assert_eq!(
        err.to_string(),
        "part \"c\" at 3-3 already receives a pipe from \"a\"; it cannot also take one from \"b\""
    );
    assert_eq!(b.tree.pipes.len(), 1);
}

#[test]
fn a_handle_of_another_builder_is_foreign() {
    let mut one = CycleBuilder::new("one");
    let mut two = CycleBuilder::new("two");
    let r1 = one.root(part("r")).unwrap();
    two.root(part("r")).unwrap();
    let err = two.then(r1, part("x")).unwrap_err();
    assert!(matches!(err, BuildError::ForeignHandle { index: 0 }));
    assert_eq!(
        err.to_string(),
        "part handle #0 does not belong to this builder"
    );
    assert!(matches!(
        two.after(r1, "r"),
        Err(BuildError::ForeignHandle { .. })
    ));
}

/// The same cycle, through coordinates.
fn by_coordinates() -> CycleBuilder {
    let mut b = CycleBuilder::new("same");
    b.add(part("load"), 1).unwrap();
    b.split([part("a"), part("b"), part("c")], 2).unwrap();
    b.add(part("a2"), (4, 1)).unwrap();
    b.split_with(
        [part("b1"), part("b2")],
        (4, 2),
        Split::new().sync(SyncMode::Level),
    )
    .unwrap();
    b.add(part("end"), (5, 1)).unwrap();
    b.after("c", "a").unwrap();
    b.pipe("a2", "b2").unwrap();
    b
}

/// The same cycle, through handles.
fn by_handles() -> CycleBuilder {
    let mut b = CycleBuilder::new("same");
    let load = b.root(part("load")).unwrap();
    let [a, bh, ch] = b.fork(load, [part("a"), part("b"), part("c")]).unwrap();
    let a2 = b.then(a, part("a2")).unwrap();
    let b12 = b
        .fork_with(
            bh,
            [part("b1"), part("b2")],
            Split::new().sync(SyncMode::Level),
        )
        .unwrap();
    b.then(a2, part("end")).unwrap();
    b.after(ch, a).unwrap();
    b.pipe(a2, b12[1]).unwrap();
    b
}

#[test]
fn the_handle_api_and_the_coordinate_api_build_the_same_tree() {
    let (x, y) = (by_coordinates(), by_handles());
    assert_eq!(filled(&x), filled(&y));
    assert_eq!(x.tree.after, y.tree.after);
    assert_eq!(x.tree.pipes, y.tree.pipes);
    assert_eq!(x.open_coords(), y.open_coords());
    assert_eq!(x.to_dot(), y.to_dot());
    assert_eq!(x.to_mermaid(), y.to_mermaid());
    assert_eq!(y.coord_of("b2"), Some(c(5, 4)));
    let (x, y) = (x.build().unwrap(), y.build().unwrap());
    assert_eq!(x.to_dot(), y.to_dot());
}

#[test]
fn fork_vec_returns_a_handle_per_part_and_rejects_none() {
    let mut b = CycleBuilder::new("t");
    let r = b.root(part("r")).unwrap();
    let err = b.fork_vec(r, Vec::<CyclePart>::new()).unwrap_err();
    assert!(matches!(err, BuildError::EmptySplit { coord } if coord == c(2, 1)));
    let hs = b
        .fork_vec(r, (0..4).map(|i| part(&format!("w{i}"))))
        .unwrap();
    let coords: Vec<Coord> = hs.iter().map(|h| h.coord()).collect();
    assert_eq!(coords, [c(3, 1), c(3, 2), c(3, 3), c(3, 4)]);
    assert_eq!(b.handle_of("w3"), Some(hs[3]));
}

/// A sub-cycle: `s1`, split (level sync) into `s2`, `s3`; `s3` after `s2`;
/// cycle-wide sync independent, concurrency limit 2.
fn sub_cycle() -> CycleBuilder {
    let mut sub = CycleBuilder::new("sub");
    sub.add(part("s1"), 1).unwrap();
    sub.split_with(
        [part("s2"), part("s3")],
        2,
        Split::new().sync(SyncMode::Level).concurrency_limit(5),
    )
    .unwrap();
    sub.add(part("s4"), (4, 2)).unwrap();
    sub.split_with([part("s5")], (5, 2), Split::new().concurrency_limit(3))
        .unwrap();
    sub.after("s3", "s2").unwrap();
    sub.pipe("s2", "s4").unwrap();
    sub.sync(SyncMode::Independent).concurrency_limit(2)
}

#[test]
fn a_sub_cycle_is_inlined_with_mapped_coordinates_and_renamed_parts() {
    let sub = sub_cycle();
    let mut b = CycleBuilder::new("main");
    b.add(part("m"), 1).unwrap();
    b.split([part("x"), part("y")], 2).unwrap(); // x 3-1, y 3-2
    let root = b.add_cycle(&sub, (4, 2)).unwrap();
    assert_eq!(root.coord(), c(4, 2));
    // Sub column 1 -> column 2, sub column 2 -> fresh column 3.
    assert_eq!(b.coord_of("sub/s1"), Some(c(4, 2)));
    assert_eq!(b.coord_of("sub/s2"), Some(c(6, 2)));
    assert_eq!(b.coord_of("sub/s3"), Some(c(6, 3)));
    assert_eq!(b.coord_of("sub/s4"), Some(c(7, 3)));
    assert_eq!(b.coord_of("sub/s5"), Some(c(9, 3)));
    let fork = &b.tree.nodes[b.tree.idx_at(c(5, 2)).unwrap()];
    let BpKind::Fork(split) = &fork.kind else {
        panic!("5-2 should be a split");
    };
    // The sub-cycle's sync overrides its splits'; its limit goes to the
    // topmost split, and the one below loses its own.
    assert_eq!(split.sync, Some(SyncMode::Independent));
    assert_eq!(split.concurrency_limit, NonZeroUsize::new(2));
    let BpKind::Fork(lower) = &b.tree.nodes[b.tree.idx_at(c(8, 3)).unwrap()].kind else {
        panic!("8-3 should be a split");
    };
    assert_eq!(lower.sync, Some(SyncMode::Independent));
    assert_eq!(lower.concurrency_limit, None);
    // The main cycle's own options are untouched.
    assert_eq!(b.tree.sync, None);

    // Edges come along, renamed.
    let name = |i: NodeIdx| b.tree.name_of(i).to_owned();
    let after: Vec<(String, String)> = b
        .tree
        .after
        .iter()
        .map(|&(w, f)| (name(w), name(f)))
        .collect();
    assert_eq!(after, [("sub/s3".to_owned(), "sub/s2".to_owned())]);
    let pipes: Vec<(String, String)> = b
        .tree
        .pipes
        .iter()
        .map(|&(f, t)| (name(f), name(t)))
        .collect();
    assert_eq!(pipes, [("sub/s2".to_owned(), "sub/s4".to_owned())]);

    // Inlined again, as a split element beside a part, from the built cycle.
    let built = sub.build().unwrap();
    let hs = b
        .split(
            [SplitItem::from(&built), SplitItem::from(part("z"))],
            (4, 1),
        )
        .unwrap();
    assert_eq!(hs[0].coord(), c(5, 1));
    assert_eq!(b.coord_of("sub#2/s1"), Some(c(5, 1)));
    assert_eq!(b.coord_of("sub#2/s3"), Some(c(7, 4)));
    assert_eq!(b.coord_of("sub#2/s5"), Some(c(10, 4)));
    assert_eq!(b.coord_of("z"), Some(c(5, 5)));
    assert_eq!(hs[1].coord(), c(5, 5));
    assert_eq!(b.tree.after.len(), 2);
    assert_eq!(b.len(), 3 + 5 + 5 + 1);
    // The ordering graph knows the inlined edges.
    let err = b.after("sub#2/s2", "sub#2/s3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "ordering loop: sub#2/s2 -> sub#2/s3 -> sub#2/s2"
    );
    b.build().unwrap();
}

#[test]
fn a_sub_cycle_can_be_the_root_and_an_empty_one_is_rejected() {
    let sub = sub_cycle();
    let mut b = CycleBuilder::new("main");
    let err = b.add_cycle(&CycleBuilder::new("nothing"), 1).unwrap_err();
    assert_eq!(err.to_string(), "cycle \"nothing\" has no parts");
    b.add_cycle(&sub, 1).unwrap();
    assert_eq!(b.coord_of("sub/s1"), Some(c(1, 1)));
    assert_eq!(b.coord_of("sub/s3"), Some(c(3, 2)));
    assert_eq!(b.open_coords(), sub.open_coords());
}

#[test]
fn an_empty_builder_does_not_build() {
    let err = CycleBuilder::new("void").build().unwrap_err();
    assert!(matches!(&err, BuildError::Empty { name } if name == "void"));
}

/// Root, a 3-way split with level sync, one part below a split child, one
/// after edge, one pipe; a component part, a retrying part, a cycle-wide
/// concurrency limit.
fn golden() -> Cycle {
    let mut b = CycleBuilder::new("golden");
    b.add(part("load").component("io"), 1).unwrap();
    b.split_with(
        [part("left"), part("mid"), part("right")],
        2,
        Split::new().sync(SyncMode::Level),
    )
    .unwrap();
    b.add(part("sum").error_mode(ErrorMode::Retry), (4, 2))
        .unwrap();
    b.after("right", "left").unwrap();
    b.pipe("left", "sum").unwrap();
    b.concurrency_limit(2).build().unwrap()
}

#[test]
fn golden_dot() {
    let expected = r##"digraph "golden" {
    label="golden\nconcurrency limit: 2";
    labelloc=t;
    node [shape=box, style=rounded];
    n1_1 [label="load\n1-1\ncomponent \"io\""];
    n2_1 [label="split\nlevel", shape=diamond, style=solid, fontsize=10];
    n3_1 [label="left\n3-1"];
    n3_2 [label="mid\n3-2"];
    n3_3 [label="right\n3-3"];
    n4_2 [label="sum\n4-2\nretry"];
    { rank=same; n1_1; }
    { rank=same; n2_1; }
    { rank=same; n3_1; n3_2; n3_3; n3_1 -> n3_2 -> n3_3 [style=invis]; }
    { rank=same; n4_2; }
    n1_1 -> n2_1;
    n2_1 -> n3_1;
    n2_1 -> n3_2;
    n2_1 -> n3_3;
    n3_2 -> n4_2;
    n3_1 -> n3_3 [style=dashed, label="after"];
    n3_1 -> n4_2 [style=bold, label="pipe"];
    subgraph cluster_legend {
        label="legend"; fontsize=10; style=dashed;
        node [shape=plaintext, fontsize=10];
        legend_part [label="part: name, level-position, placement, error mode, limits", shape=box, style=rounded];
        legend_split [label="split: sync mode, limits", shape=diamond, style=solid];
        legend_a [label=""]; legend_b [label="data: parent output to child"];
        legend_c [label=""]; legend_d [label="after: ordering only"];
        legend_e [label=""]; legend_f [label="pipe: source output to target"];
        legend_a -> legend_b;
        legend_c -> legend_d [style=dashed];
        legend_e -> legend_f [style=bold];
    }
}
"##;
    assert_eq!(golden().to_dot(), expected);
}

#[test]
fn golden_mermaid() {
    let expected = r##"---
title: "golden (concurrency limit: 2)"
---
flowchart TD
    n1_1["load<br/>1-1<br/>component #quot;io#quot;"]
    n2_1{"split<br/>level"}
    n3_1["left<br/>3-1"]
    n3_2["mid<br/>3-2"]
    n3_3["right<br/>3-3"]
    n4_2["sum<br/>4-2<br/>retry"]
    n1_1 --> n2_1
    n2_1 --> n3_1
    n2_1 --> n3_2
    n2_1 --> n3_3
    n3_2 --> n4_2
    n3_1 -.->|after| n3_3
    n3_1 ==>|pipe| n4_2
"##;
    assert_eq!(golden().to_mermaid(), expected);
}

#[test]
fn cycle_wide_sync_shows_in_the_title_and_names_are_escaped() {
    let mut b = CycleBuilder::new("q\"uote");
    b.add(part("a\"b"), 1).unwrap();
    let b = b.sync(SyncMode::Pipeline);
    let dot = b.to_dot();
    assert!(dot.starts_with("digraph \"q\\\"uote\" {\n    label=\"q\\\"uote\\nsync: pipeline\";"));
    assert!(dot.contains("n1_1 [label=\"a\\\"b\\n1-1\"];"));
    let mermaid = b.to_mermaid();
    assert!(mermaid.starts_with("---\ntitle: \"q\\\"uote (sync: pipeline)\"\n---\n"));
    assert!(mermaid.contains("n1_1[\"a#quot;b<br/>1-1\"]"));
}

#[test]
fn options_chain_from_new_and_build_takes_the_builder() {
    let err = CycleBuilder::new("chained")
        .sync(SyncMode::Level)
        .concurrency_limit(2)
        .rate_limit(10.0)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Empty { .. }), "{err}");
    let mut b = CycleBuilder::new("chained").sync(SyncMode::Level);
    b.add(part("a"), 1).unwrap();
    b.split([part("b"), part("c")], 2).unwrap();
    b.after("c", "b").unwrap();
    let cycle = b.build().unwrap();
    assert_eq!(cycle.name(), "chained");
}
