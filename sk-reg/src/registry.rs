//! `Registry<T>`: a thread-safe named store with three layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

use crate::error::RegistryError;
use crate::layer::Layer;

/// A thread-safe store of named values in three [`Layer`]s.
///
/// Each layer is its own concurrent map (dashmap), so readers never block
/// each other and writers only contend on the shard holding their name.
/// Values are kept as `Arc<T>`: a lookup hands out a cheap clone that stays
/// valid after the entry is removed or replaced.
///
/// A lookup by name ([`get`](Registry::get), [`resolve`](Registry::resolve))
/// checks the layers in [`Layer::RESOLUTION_ORDER`]: external, then
/// internal, then global. Registering a name that the layer already holds is
/// a [`RegistryError::Duplicate`]; [`replace`](Registry::replace) overwrites
/// on purpose.
///
/// `T` may be unsized (`Registry<dyn Fn() + Send + Sync>`); such values are
/// added with [`register_arc`](Registry::register_arc) /
/// [`replace_arc`](Registry::replace_arc).
///
/// # Examples
///
/// ```
/// use sk_reg::{Layer, Registry};
///
/// let sizes: Registry<u32> = Registry::new("sizes");
/// sizes.register(Layer::Global, "width", 640)?;
/// sizes.register(Layer::External, "width", 1024)?;
///
/// // The user's value shadows the default ...
/// assert_eq!(sizes.resolve("width").map(|(l, v)| (l, *v)), Some((Layer::External, 1024)));
/// // ... until it is removed.
/// sizes.remove(Layer::External, "width");
/// assert_eq!(sizes.get("width").as_deref(), Some(&640));
///
/// let err = sizes.register(Layer::Global, "width", 800).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "\"width\" is already registered in the global layer of registry \"sizes\""
/// );
/// # Ok::<(), sk_reg::RegistryError>(())
/// ```
pub struct Registry<T: ?Sized> {
    name: String,
    /// One map per layer, indexed by [`Layer::index`].
    layers: [DashMap<String, Arc<T>>; 3],
    /// Bumped after every change (see [`generation`](Registry::generation)).
    generation: AtomicU64,
}

/// One entry of a [`Registry`] snapshot.
#[derive(Debug)]
pub struct Entry<T: ?Sized> {
    /// The layer holding the entry.
    pub layer: Layer,
    /// The entry's name.
    pub name: String,
    /// The registered value.
    pub value: Arc<T>,
}

impl<T: ?Sized> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            layer: self.layer,
            name: self.name.clone(),
            value: Arc::clone(&self.value),
        }
    }
}

/// Shards per layer map. A fixed number: dashmap's default asks the OS how
/// many CPUs there are (reading cgroup files), which costs a new worker
/// process ~0.1 ms on its first lookup.
pub(crate) const SHARDS: usize = 16;

impl<T: ?Sized + Send + Sync + 'static> Registry<T> {
    /// An empty registry called `name` (the name appears in errors).
    pub fn new(name: impl Into<String>) -> Self {
        Registry {
            name: name.into(),
            layers: [
                DashMap::with_shard_amount(SHARDS),
                DashMap::with_shard_amount(SHARDS),
                DashMap::with_shard_amount(SHARDS),
            ],
            generation: AtomicU64::new(0),
        }
    }

    /// A number that changes whenever an entry is added, replaced or
    /// removed: a lookup's result remembered along with the generation
    /// read *before* the lookup is still what a lookup would give while
    /// the generation is the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_reg::{Layer, Registry};
    ///
    /// let sizes: Registry<u32> = Registry::new("sizes");
    /// let before = sizes.generation();
    /// sizes.register(Layer::Global, "width", 640)?;
    /// assert_ne!(sizes.generation(), before);
    /// # Ok::<(), sk_reg::RegistryError>(())
    /// ```
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records a change (after it is made).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The registry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn layer(&self, layer: Layer) -> &DashMap<String, Arc<T>> {
        &self.layers[layer.index()]
    }

    /// Adds `value` under `name` in `layer` and returns the stored handle.
    ///
    /// The check and the insertion are one atomic step: of several threads
    /// registering the same name in the same layer, exactly one succeeds.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Duplicate`] when `layer` already holds `name`; the
    /// registered value is left unchanged.
    pub fn register(
        &self,
        layer: Layer,
        name: impl Into<String>,
        value: T,
    ) -> Result<Arc<T>, RegistryError>
    where
        T: Sized,
    {
        self.register_arc(layer, name, Arc::new(value))
    }

    /// [`register`](Registry::register) for a value that is already shared
    /// (or unsized, such as `Arc<dyn Fn()>`).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Duplicate`] when `layer` already holds `name`.
    pub fn register_arc(
        &self,
        layer: Layer,
        name: impl Into<String>,
        value: Arc<T>,
    ) -> Result<Arc<T>, RegistryError> {
        match self.layer(layer).entry(name.into()) {
            MapEntry::Occupied(occupied) => Err(RegistryError::Duplicate {
                registry: self.name.clone(),
                layer,
                name: occupied.key().clone(),
            }),
            MapEntry::Vacant(vacant) => {
                vacant.insert(Arc::clone(&value));
                self.changed();
                Ok(value)
            }
        }
    }

    /// Stores `value` under `name` in `layer`, overwriting any previous
    /// value, and returns the previous value.
    pub fn replace(&self, layer: Layer, name: impl Into<String>, value: T) -> Option<Arc<T>>
    where
        T: Sized,
    {
        self.replace_arc(layer, name, Arc::new(value))
    }

    /// [`replace`](Registry::replace) for a shared or unsized value.
    pub fn replace_arc(
        &self,
        layer: Layer,
        name: impl Into<String>,
        value: Arc<T>,
    ) -> Option<Arc<T>> {
        let previous = self.layer(layer).insert(name.into(), value);
        self.changed();
        previous
    }

    /// The value visible under `name`: the first layer in
    /// [`Layer::RESOLUTION_ORDER`] that holds it wins.
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.resolve(name).map(|(_, value)| value)
    }

    /// Like [`get`](Registry::get), and also says which layer answered.
    pub fn resolve(&self, name: &str) -> Option<(Layer, Arc<T>)> {
        Layer::RESOLUTION_ORDER
            .into_iter()
            .find_map(|layer| self.get_in(layer, name).map(|value| (layer, value)))
    }

    /// The value registered under `name` in `layer` only.
    pub fn get_in(&self, layer: Layer, name: &str) -> Option<Arc<T>> {
        self.layer(layer).get(name).map(|r| Arc::clone(r.value()))
    }

    /// The value visible under `name`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] when no layer holds `name`.
    pub fn require(&self, name: &str) -> Result<Arc<T>, RegistryError> {
        self.get(name).ok_or_else(|| RegistryError::NotFound {
            registry: self.name.clone(),
            name: name.to_owned(),
        })
    }

    /// Removes `name` from `layer` and returns its value. Other layers are
    /// untouched, so a value of a lower layer may become visible.
    pub fn remove(&self, layer: Layer, name: &str) -> Option<Arc<T>> {
        let removed = self.layer(layer).remove(name).map(|(_, value)| value);
        if removed.is_some() {
            self.changed();
        }
        removed
    }

    /// Removes every entry of `layer`.
    pub fn clear_layer(&self, layer: Layer) {
        self.layer(layer).clear();
        self.changed();
    }

    /// Removes every entry of every layer.
    pub fn clear(&self) {
        for layer in Layer::RESOLUTION_ORDER {
            self.clear_layer(layer);
        }
    }

    /// Whether any layer holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        Layer::RESOLUTION_ORDER
            .into_iter()
            .any(|layer| self.contains_in(layer, name))
    }

    /// Whether `layer` holds `name`.
    pub fn contains_in(&self, layer: Layer, name: &str) -> bool {
        self.layer(layer).contains_key(name)
    }

    /// Number of entries across all layers (a name held by two layers
    /// counts twice).
    pub fn len(&self) -> usize {
        self.layers.iter().map(DashMap::len).sum()
    }

    /// Number of entries in `layer`.
    pub fn len_in(&self, layer: Layer) -> usize {
        self.layer(layer).len()
    }

    /// Whether every layer is empty.
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(DashMap::is_empty)
    }

    /// A snapshot of every entry of every layer, sorted by (layer, name).
    ///
    /// Each layer is read shard by shard, so an entry added or removed
    /// while the snapshot is taken may or may not appear; every entry that
    /// is present for the whole call does appear.
    pub fn entries(&self) -> Vec<Entry<T>> {
        let mut entries = Vec::with_capacity(self.len());
        for layer in Layer::RESOLUTION_ORDER {
            self.collect_layer(layer, &mut entries);
        }
        entries
    }

    /// A snapshot of the entries of `layer`, sorted by name.
    pub fn entries_in(&self, layer: Layer) -> Vec<Entry<T>> {
        let mut entries = Vec::with_capacity(self.len_in(layer));
        self.collect_layer(layer, &mut entries);
        entries
    }

    fn collect_layer(&self, layer: Layer, out: &mut Vec<Entry<T>>) {
        let start = out.len();
        out.extend(self.layer(layer).iter().map(|r| Entry {
            layer,
            name: r.key().clone(),
            value: Arc::clone(r.value()),
        }));
        out[start..].sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// A snapshot of the entries a lookup would return: one per visible
    /// name, from the layer that wins for it, sorted by name.
    pub fn resolved(&self) -> Vec<Entry<T>> {
        let mut winners: BTreeMap<String, Entry<T>> = BTreeMap::new();
        for entry in self.entries() {
            // `entries` is sorted by layer first, so the first entry seen
            // for a name comes from the winning layer.
            winners.entry(entry.name.clone()).or_insert(entry);
        }
        winners.into_values().collect()
    }

    /// The distinct names visible in the registry, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for map in &self.layers {
            names.extend(map.iter().map(|r| r.key().clone()));
        }
        names.into_iter().collect()
    }

    /// The names held by `layer`, sorted.
    pub fn names_in(&self, layer: Layer) -> Vec<String> {
        let mut names: Vec<String> = self.layer(layer).iter().map(|r| r.key().clone()).collect();
        names.sort();
        names
    }

    /// Iterates over a snapshot of [`entries`](Registry::entries).
    pub fn iter(&self) -> std::vec::IntoIter<Entry<T>> {
        self.entries().into_iter()
    }
}

impl<T: ?Sized + Send + Sync + 'static> IntoIterator for &Registry<T> {
    type Item = Entry<T>;
    type IntoIter = std::vec::IntoIter<Entry<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: ?Sized + Send + Sync + 'static> fmt::Debug for Registry<T> {
    /// Shows the registry's name and the names in each layer (values are
    /// not shown, so `T` need not be `Debug`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("name", &self.name)
            .field("external", &self.names_in(Layer::External))
            .field("internal", &self.names_in(Layer::Internal))
            .field("global", &self.names_in(Layer::Global))
            .finish()
    }
}

#[cfg(test)]
mod tests;
