//! Pictures of a built [`Cycle`]: DOT and Mermaid.

use crate::cycle::Cycle;
use crate::render;

impl Cycle {
    /// The cycle as a Graphviz DOT digraph: parts labelled with name and
    /// coordinate (plus placement and error mode when not the default),
    /// splits as small diamonds labelled `split` (plus their sync mode),
    /// tree edges solid, `after` edges dashed, `pipe` edges bold, all in
    /// run order; the cycle-wide sync mode and concurrency limit in the graph
    /// label. Deterministic: nodes in coordinate order.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cycle::{CycleBuilder, CyclePart};
    /// let mut b = CycleBuilder::new("one");
    /// b.add(CyclePart::new("tick", |_ctx| ()), 1)?;
    /// assert!(b.build()?.to_dot().contains("n1_1 [label=\"tick\\n1-1\"];"));
    /// # Ok::<(), sk_cycle::BuildError>(())
    /// ```
    pub fn to_dot(&self) -> String {
        render::dot(&self.blueprint)
    }

    /// The cycle as a Mermaid flowchart (the same picture as
    /// [`to_dot`](Cycle::to_dot); `after` edges dotted, `pipe` edges thick,
    /// the title in the front matter).
    pub fn to_mermaid(&self) -> String {
        render::mermaid(&self.blueprint)
    }
}
