//! Pictures of a cycle: Graphviz DOT and Mermaid flowcharts of a
//! [`Blueprint`].
//!
//! Both are deterministic: nodes come in coordinate order (level, then
//! position), edges in the order of their ends' coordinates. Every edge
//! points in run order: tree edges from parent to child, `after` edges from
//! the part waited for to the waiter, `pipe` edges from the producer to the
//! consumer.

use std::fmt::Write as _;

use crate::blueprint::{Blueprint, BpKind, BpNode, NodeIdx};
use crate::coord::Coord;
use crate::mode::{ErrorMode, Placement};

/// What kind of line an edge is drawn with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EdgeKind {
    Tree,
    After,
    Pipe,
}

/// The graph's title lines: the name, then the cycle-wide options.
fn title_lines(bp: &Blueprint) -> Vec<String> {
    let mut lines = vec![bp.name.clone()];
    if let Some(sync) = bp.sync {
        lines.push(format!("sync: {sync}"));
    }
    if let Some(limit) = bp.concurrency_limit {
        lines.push(format!("concurrency limit: {limit}"));
    }
    if let Some(per_sec) = bp.rate_limit {
        lines.push(format!("rate limit: {per_sec}/s"));
    }
    lines
}

/// A node's label lines.
fn label_lines(node: &BpNode) -> Vec<String> {
    match &node.kind {
        BpKind::Part(part) => {
            let mut lines = vec![part.name().to_owned(), node.coord.to_string()];
            if part.placement != Placement::Pool {
                lines.push(part.placement.to_string());
            }
            if part.error_mode != ErrorMode::default() {
                lines.push(part.error_mode.to_string());
            }
            if part.settings().condition.is_some() {
                lines.push("conditional".to_owned());
            }
            if let Some(per_sec) = part.settings().rate_limit {
                lines.push(format!("{per_sec}/s"));
            }
            lines
        }
        BpKind::Fork(split) => {
            let mut lines = vec!["split".to_owned()];
            if let Some(sync) = split.sync {
                lines.push(sync.to_string());
            }
            if let Some(limit) = split.concurrency_limit {
                lines.push(format!("limit {limit}"));
            }
            if let Some(per_sec) = split.rate_limit {
                lines.push(format!("{per_sec}/s"));
            }
            if split.condition.is_some() {
                lines.push("conditional".to_owned());
            }
            lines
        }
    }
}

/// Node ids in coordinate order, and every edge as `(from, to, kind)` in
/// coordinate order.
fn layout(bp: &Blueprint) -> (Vec<NodeIdx>, Vec<(Coord, Coord, EdgeKind)>) {
    let mut order: Vec<NodeIdx> = (0..bp.nodes.len()).collect();
    order.sort_by_key(|&i| bp.nodes[i].coord);
    let coord = |i: NodeIdx| bp.nodes[i].coord;
    let mut edges: Vec<(Coord, Coord, EdgeKind)> = Vec::new();
    for node in &bp.nodes {
        if let Some(p) = node.parent {
            edges.push((coord(p), node.coord, EdgeKind::Tree));
        }
    }
    for &(waiter, waits_for) in &bp.after {
        edges.push((coord(waits_for), coord(waiter), EdgeKind::After));
    }
    for &(from, to) in &bp.pipes {
        edges.push((coord(from), coord(to), EdgeKind::Pipe));
    }
    edges.sort_unstable_by_key(|&(a, b, kind)| (kind, a, b));
    (order, edges)
}

fn node_id(coord: Coord) -> String {
    format!("n{}_{}", coord.level, coord.position)
}

/// Escapes a DOT double-quoted string.
fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Escapes Mermaid label text (Mermaid's entity codes).
fn mermaid_escape(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// The cycle as a Graphviz DOT digraph.
pub(crate) fn dot(bp: &Blueprint) -> String {
    let mut out = String::new();
    let join = |lines: Vec<String>| {
        lines
            .iter()
            .map(|l| dot_escape(l))
            .collect::<Vec<_>>()
            .join("\\n")
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&bp.name));
    let _ = writeln!(out, "    label=\"{}\";", join(title_lines(bp)));
    out.push_str("    labelloc=t;\n");
    out.push_str("    node [shape=box, style=rounded];\n");
    let (order, edges) = layout(bp);
    for &idx in &order {
        let node = &bp.nodes[idx];
        let extra = match node.kind {
            BpKind::Part(_) => "",
            BpKind::Fork(_) => ", shape=diamond, style=solid, fontsize=10",
        };
        let _ = writeln!(
            out,
            "    {} [label=\"{}\"{extra}];",
            node_id(node.coord),
            join(label_lines(node))
        );
    }
    // One rank per level, its columns left to right in position order
    // (held by invisible edges).
    let mut level_start = 0;
    while level_start < order.len() {
        let level = bp.nodes[order[level_start]].coord.level;
        let level_end = order[level_start..]
            .iter()
            .position(|&i| bp.nodes[i].coord.level != level)
            .map_or(order.len(), |n| level_start + n);
        let ids: Vec<String> = order[level_start..level_end]
            .iter()
            .map(|&i| node_id(bp.nodes[i].coord))
            .collect();
        let _ = write!(out, "    {{ rank=same; {};", ids.join("; "));
        if ids.len() > 1 {
            let _ = write!(out, " {} [style=invis];", ids.join(" -> "));
        }
        out.push_str(" }\n");
        level_start = level_end;
    }
    for (from, to, kind) in edges {
        let style = match kind {
            EdgeKind::Tree => "",
            EdgeKind::After => " [style=dashed, label=\"after\"]",
            EdgeKind::Pipe => " [style=bold, label=\"pipe\"]",
        };
        let _ = writeln!(out, "    {} -> {}{style};", node_id(from), node_id(to));
    }
    out.push_str(DOT_LEGEND);
    out.push_str("}\n");
    out
}

/// What the shapes and edges of a DOT picture mean.
const DOT_LEGEND: &str = r#"    subgraph cluster_legend {
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
"#;

/// The cycle as a Mermaid flowchart, titled in its front matter.
pub(crate) fn mermaid(bp: &Blueprint) -> String {
    let mut out = String::new();
    let mut lines = title_lines(bp).into_iter();
    let mut title = lines.next().unwrap_or_default();
    let options: Vec<String> = lines.collect();
    if !options.is_empty() {
        let _ = write!(title, " ({})", options.join(", "));
    }
    let _ = writeln!(
        out,
        "---\ntitle: \"{}\"\n---\nflowchart TD",
        title.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let (order, edges) = layout(bp);
    for idx in order {
        let node = &bp.nodes[idx];
        let label = label_lines(node)
            .iter()
            .map(|l| mermaid_escape(l))
            .collect::<Vec<_>>()
            .join("<br/>");
        let id = node_id(node.coord);
        let _ = match node.kind {
            BpKind::Part(_) => writeln!(out, "    {id}[\"{label}\"]"),
            BpKind::Fork(_) => writeln!(out, "    {id}{{\"{label}\"}}"),
        };
    }
    for (from, to, kind) in edges {
        let arrow = match kind {
            EdgeKind::Tree => "-->",
            EdgeKind::After => "-.->|after|",
            EdgeKind::Pipe => "==>|pipe|",
        };
        let _ = writeln!(out, "    {} {arrow} {}", node_id(from), node_id(to));
    }
    out
}
