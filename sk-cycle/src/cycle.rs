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
