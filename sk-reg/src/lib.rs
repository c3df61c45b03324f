//! Suitkaise registries: layered named stores, the project root, and the
//! global storage.
//!
//! - [`Registry<T>`]: a thread-safe store of named values in three
//!   [`Layer`]s that resolve in order **external (user) → internal
//!   (framework) → global**. Registering a name twice in one layer is a
//!   [`RegistryError::Duplicate`] unless it is [replaced](Registry::replace)
//!   on purpose. [`registry::<T>()`](registry) gives the process-wide
//!   registry of a type, created on first use.
//! - [`SkRoot`]: the project root, found from marker files (`.skroot`,
//!   `.git`, `Cargo.toml`); gives root-relative paths, safe joins and
//!   registries scoped to the root ([`SkRoot::registry`]).
//! - [`GlobalStorage`]: a typed key/value store whose values go through
//!   [`sk_cereal::Internal`], over a [`StorageBackend`]: a concurrent map in
//!   this process ([`InProcessBackend`]), or the parent process reached over
//!   IPC by its workers. [`GlobalStorage::update`] is an atomic
//!   read-modify-write in both cases.
//!
//! # Modules
//!
//! The modules are private; the items above are re-exported at the root.
//! Each module uses only modules listed before it:
//!
//! | module | holds | uses |
//! |---|---|---|
//! | `layer` | [`Layer`] and the resolution order | — |
//! | `error` | [`RegistryError`], [`RootError`], [`StorageError`] | layer |
//! | `registry` | [`Registry`], [`Entry`] | error, layer |
//! | `type_map` | [`registry`]: one registry per type (or per project root) | registry |
//! | `root` | [`SkRoot`], [`SkRootBuilder`] | error, registry, type_map |
//! | `backend` | [`StorageBackend`], [`StoredValue`], [`CasOutcome`], [`InProcessBackend`] | error |
//! | `storage` | [`GlobalStorage`], [`Key`] | backend, error |
//!
//! Tests sit beside their module (`mod tests`, in `<module>/tests.rs` when
//! long).
//!
//! # Examples
//!
//! ```
//! use sk_reg::{GlobalStorage, Layer, SkRoot, registry};
//!
//! // A registry of functions by name, reachable from anywhere.
//! type Op = fn(i64) -> i64;
//! let ops = registry::<Op>();
//! ops.register(Layer::Global, "step", |x| x + 1)?;
//! ops.register(Layer::External, "step", |x| x * 10)?; // the user overrides
//! assert_eq!(ops.require("step")?(4), 40);
//!
//! // Paths relative to the project this code lives in.
//! let root = SkRoot::current()?;
//! assert_eq!(root.relative(root.join("data/input.csv")?)?, std::path::Path::new("data/input.csv"));
//!
//! // A store shared by all threads (and, later, all worker processes).
//! let storage = GlobalStorage::global();
//! let n = storage.update("jobs-started", |n: Option<u32>| n.unwrap_or(0) + 1)?;
//! assert_eq!(n, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod backend;
mod error;
mod layer;
mod registry;
mod root;
mod storage;
mod type_map;

pub use backend::{CasOutcome, InProcessBackend, StorageBackend, StoredValue};
pub use error::{RegistryError, RootError, StorageError};
pub use layer::Layer;
pub use registry::{Entry, Registry};
pub use root::{SkRoot, SkRootBuilder};
pub use storage::{GlobalStorage, Key};
pub use type_map::registry;
