//! [`Cycle`]: a built cycle, ready to run.

use std::fmt;
use std::sync::Arc;

use crate::blueprint::{Blueprint, Indexes};
use crate::error::BuildError;
use crate::plan::{self, Plan};

/// A built cycle: its placed parts and the plan the engine runs.
#[derive(Clone)]
pub struct Cycle {
    pub(crate) blueprint: Arc<Blueprint>,
    pub(crate) plan: Arc<Plan>,
}

impl Cycle {
    /// Validates and compiles a blueprint.
    pub(crate) fn from_blueprint(
        blueprint: Blueprint,
        indexes: Indexes,
    ) -> Result<Cycle, BuildError> {
        check_process_parts(&blueprint)?;
        let plan = plan::compile(&blueprint, indexes)?;
        Ok(Cycle {
            blueprint: Arc::new(blueprint),
            plan: Arc::new(plan),
        })
    }

    /// The cycle's name.
    pub fn name(&self) -> &str {
        &self.blueprint.name
    }
}

impl fmt::Debug for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cycle")
            .field("name", &self.blueprint.name)
            .field("nodes", &self.blueprint.nodes.len())
            .finish_non_exhaustive()
    }
}

/// A part placed in a process must be a function handle: closures and
/// lambdas cannot cross a process boundary.
fn check_process_parts(blueprint: &Blueprint) -> Result<(), BuildError> {
    for node in &blueprint.nodes {
        let crate::blueprint::BpKind::Part(part) = &node.kind else {
            continue;
        };
        if !part.placement.is_process() {
            continue;
        }
        let what = match &part.work {
            crate::part::Work::Function(f) if f.as_handle().is_some() => continue,
            crate::part::Work::Function(f) => {
                format!("the local closure (SkLambda) \"{}\"", f.name())
            }
            crate::part::Work::Context(_) => "a closure over its context".to_owned(),
        };
        return Err(BuildError::LocalOnlyInProcess {
            name: part.name.to_string(),
            coord: node.coord,
            what,
        });
    }
    Ok(())
}
