//! Lazily created, leaked registries: one per type (per process, or per
//! project root).

use std::any::{Any, TypeId, type_name};
use std::path::PathBuf;
use std::sync::OnceLock;

use dashmap::DashMap;

use crate::registry::Registry;

type Leaked = &'static (dyn Any + Send + Sync);

/// Returns the registry stored under `key`, creating (and leaking) it with
/// `name` on first use.
fn get_or_create<K, T>(
    map: &'static OnceLock<DashMap<K, Leaked>>,
    key: K,
    name: impl FnOnce() -> String,
) -> &'static Registry<T>
where
    K: Eq + std::hash::Hash,
    T: ?Sized + Send + Sync + 'static,
{
    let map = map.get_or_init(|| DashMap::with_shard_amount(crate::registry::SHARDS));
    // The entry API makes creation atomic: racing first callers all get
    // the same registry. The guard is dropped before downcasting.
    let leaked: Leaked = *map.entry(key).or_insert_with(|| {
        let registry: &'static Registry<T> = Box::leak(Box::new(Registry::new(name())));
        registry
    });
    match leaked.downcast_ref::<Registry<T>>() {
        Some(registry) => registry,
        // Every key includes `TypeId::of::<T>()` and the value inserted
        // under it is a `Registry<T>`, so the downcast cannot fail.
        None => unreachable!(
            "registry type map holds a foreign type under the key of {}",
            type_name::<T>()
        ),
    }
}

/// The process-wide registry of `T`.
///
/// Created empty on first use and shared by every thread of the process
/// afterwards; its [`name`](Registry::name) is `std::any::type_name::<T>()`.
/// Each registry is allocated once and intentionally leaked (one small
/// allocation per registry type for the life of the process), which is what
/// makes the `&'static` reference possible.
///
/// Another process (a spawned worker) has its own registries; it rebuilds
/// them by running the same registration code.
///
/// # Examples
///
/// ```
/// use sk_reg::{Layer, registry};
///
/// struct Greeting(&'static str);
///
/// registry::<Greeting>().register(Layer::External, "hello", Greeting("hi"))?;
/// // Any other code of the process sees the same registry.
/// let found = registry::<Greeting>().require("hello")?;
/// assert_eq!(found.0, "hi");
/// assert!(registry::<Greeting>().name().ends_with("Greeting"));
/// # Ok::<(), sk_reg::RegistryError>(())
/// ```
pub fn registry<T: ?Sized + Send + Sync + 'static>() -> &'static Registry<T> {
    static REGISTRIES: OnceLock<DashMap<TypeId, Leaked>> = OnceLock::new();
    get_or_create(&REGISTRIES, TypeId::of::<T>(), || {
        type_name::<T>().to_owned()
    })
}

/// The registry of `T` scoped to the project root `root` (a canonical path).
pub(crate) fn root_registry<T: ?Sized + Send + Sync + 'static>(
    root: &std::path::Path,
) -> &'static Registry<T> {
    static REGISTRIES: OnceLock<DashMap<(PathBuf, TypeId), Leaked>> = OnceLock::new();
    get_or_create(&REGISTRIES, (root.to_path_buf(), TypeId::of::<T>()), || {
        format!("{} in {}", type_name::<T>(), root.display())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::layer::Layer;

    #[test]
    fn one_registry_per_type() {
        struct Marker;
        let a: *const Registry<Marker> = registry::<Marker>();
        let b: *const Registry<Marker> = registry::<Marker>();
        assert_eq!(a, b);
        assert_eq!(registry::<Marker>().name(), type_name::<Marker>());
    }

    #[test]
    fn different_types_are_independent() {
        struct A;
        struct B;
        registry::<A>().register(Layer::Internal, "x", A).unwrap();
        assert!(registry::<A>().contains("x"));
        assert!(!registry::<B>().contains("x"));
    }

    #[test]
    fn unsized_values() {
        type Hook = dyn Fn(u32) -> u32 + Send + Sync;
        let hooks = registry::<Hook>();
        hooks
            .register_arc(Layer::External, "double", std::sync::Arc::new(|x| x * 2))
            .unwrap();
        assert_eq!(hooks.require("double").unwrap()(21), 42);
    }

    #[test]
    fn racing_first_use_yields_one_registry() {
        struct Raced;
        let addrs = sk_testkit::guarded(|| {
            let handles: Vec<_> = (0..8)
                .map(|_| std::thread::spawn(|| registry::<Raced>() as *const _ as usize))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert!(addrs.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn root_registries_are_per_root_and_type() {
        struct R;
        let a = root_registry::<R>(Path::new("/a"));
        let b = root_registry::<R>(Path::new("/b"));
        assert!(!std::ptr::eq(a, b));
        assert!(std::ptr::eq(a, root_registry::<R>(Path::new("/a"))));
        assert!(!std::ptr::eq(a, registry::<R>()));
        assert!(a.name().ends_with("in /a"));
    }
}
