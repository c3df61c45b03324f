//! Cycles: parts placed by level and position, run by an engine with sync
//! and error modes. (Documentation grows with the engine.)

#![warn(missing_docs)]

mod blueprint;
mod builder;
mod coord;
mod ctrl_c;
mod cycle;
mod cycle_render;
mod engine;
mod error;
mod mode;
mod part;
mod plan;
mod registry;
mod render;
mod report;
mod run;
mod store;
mod trace;

pub use blueprint::Split;
pub use builder::{CycleBuilder, PartHandle, PartRef, PartSource, SplitItem, SubCycle};
pub use coord::Coord;
pub use cycle::Cycle;
pub use error::{BuildError, RunError};
pub use mode::{ErrorMode, PartState, Placement, SyncMode};
pub use part::{CyclePart, Input, PartContext, PartError};
pub use registry::CycleRegistry;
pub use report::{CycleStats, IterationReport, PartStats, RunReport, StopReason};
pub use run::{Run, RunHandle};
pub use store::Store;
pub use trace::{Trace, TraceEvent};
