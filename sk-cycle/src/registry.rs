//! [`CycleRegistry`]: the process-wide registries of named cycle parts and
//! cycles.

use std::sync::{Arc, OnceLock};

use sk_reg::{Layer, Registry};

use crate::cycle::Cycle;
use crate::error::BuildError;
use crate::part::CyclePart;

/// The process-wide registries of [`CyclePart`]s and [`Cycle`]s, by name.
///
/// Both are [`sk_reg::Registry`]s with its three layers; the `register_*`
/// helpers use the external (user) layer. A registered part can be placed
/// by name: [`CycleBuilder::add`](crate::CycleBuilder::add) with a `&str`
/// looks it up and places a copy. Registering is never automatic.
///
/// # Examples
///
/// ```
/// use sk_cycle::{CycleBuilder, CyclePart, CycleRegistry};
///
/// CycleRegistry::register_part(CyclePart::new("docs-tick", |_ctx| ()))?;
/// let mut b = CycleBuilder::new("docs-ticker");
/// b.add("docs-tick", 1)?;
/// let cycle = b.build_and_register()?;
/// assert!(CycleRegistry::cycle("docs-ticker").is_some());
/// # let _ = cycle;
/// # Ok::<(), sk_cycle::BuildError>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct CycleRegistry;

impl CycleRegistry {
    /// The registry of parts, named `cycle parts`.
    pub fn parts() -> &'static Registry<CyclePart> {
        static PARTS: OnceLock<Registry<CyclePart>> = OnceLock::new();
        PARTS.get_or_init(|| Registry::new("cycle parts"))
    }

    /// The registry of cycles, named `cycles`.
    pub fn cycles() -> &'static Registry<Cycle> {
        static CYCLES: OnceLock<Registry<Cycle>> = OnceLock::new();
        CYCLES.get_or_init(|| Registry::new("cycles"))
    }

    /// Registers `part` under its name in the external layer.
    ///
    /// # Errors
    ///
    /// [`BuildError::Registry`] when the name is already registered there.
    pub fn register_part(part: CyclePart) -> Result<Arc<CyclePart>, BuildError> {
        let name = part.name().to_owned();
        Ok(Self::parts().register(Layer::External, name, part)?)
    }

    /// Registers `cycle` under its name in the external layer.
    ///
    /// # Errors
    ///
    /// [`BuildError::Registry`] when the name is already registered there.
    pub fn register_cycle(cycle: Cycle) -> Result<Arc<Cycle>, BuildError> {
        let name = cycle.name().to_owned();
        Ok(Self::cycles().register(Layer::External, name, cycle)?)
    }

    /// The registered part `name` (external, then internal, then global
    /// layer).
    pub fn part(name: &str) -> Option<Arc<CyclePart>> {
        Self::parts().get(name)
    }

    /// The registered cycle `name` (external, then internal, then global
    /// layer).
    pub fn cycle(name: &str) -> Option<Arc<Cycle>> {
        Self::cycles().get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Coord, CycleBuilder};

    #[test]
    fn a_registered_part_is_placed_by_name() {
        CycleRegistry::register_part(CyclePart::new("reg-test-fetch", |_ctx| 7u32)).unwrap();
        let mut b = CycleBuilder::new("reg-test");
        b.add("reg-test-fetch", 1).unwrap();
        assert_eq!(b.coord_of("reg-test-fetch"), Some(Coord::new(1, 1)));

        let err = b.add("reg-test-missing", 2).unwrap_err();
        assert!(matches!(
            &err,
            BuildError::UnknownPart { name, context }
                if name == "reg-test-missing" && context == "not in the cycle registry"
        ));
        assert_eq!(
            err.to_string(),
            "unknown part \"reg-test-missing\" (not in the cycle registry)"
        );
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn registering_twice_is_a_registry_error() {
        CycleRegistry::register_part(CyclePart::new("reg-test-twice", |_ctx| ())).unwrap();
        let err =
            CycleRegistry::register_part(CyclePart::new("reg-test-twice", |_ctx| ())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"reg-test-twice\" is already registered in the external layer of registry \"cycle parts\""
        );
    }

    #[test]
    fn built_cycles_are_found_by_name() {
        let mut b = CycleBuilder::new("reg-test-cycle");
        b.add(CyclePart::new("only", |_ctx| ()), 1).unwrap();
        let cycle = b.build_and_register().unwrap();
        let found = CycleRegistry::cycle("reg-test-cycle").unwrap();
        assert!(Arc::ptr_eq(&cycle, &found));
        assert_eq!(CycleRegistry::cycles().name(), "cycles");
        assert!(CycleRegistry::cycle("reg-test-nope").is_none());
    }
}
