//! [`NameIndex`]: ids by name, with the names kept by the index's owner.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Ids (a builder's node indices, a plan's part ids) by name.
///
/// The table holds each id beside a 32-bit hash of its name, not the
/// name: growing it moves 8-byte entries and hashes nothing, where a map
/// keyed by the names hashed every name again (one cache miss per name,
/// in a large cycle) and held three times the bytes. The owner keeps the
/// names; lookups compare through its `name_of`, called only for an entry
/// whose hash matches.
#[derive(Clone, Default)]
pub(crate) struct NameIndex {
    table: HashTable<Entry>,
    state: foldhash::fast::RandomState,
}

#[derive(Clone, Copy)]
struct Entry {
    id: u32,
    hash: u32,
}

/// The table's 64-bit hash of an entry: its 32 bits in both halves (the
/// table takes a bucket from the low bits and a tag from the top ones).
fn spread(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

impl NameIndex {
    fn hash(&self, name: &str) -> u32 {
        let h = self.state.hash_one(name);
        (h ^ (h >> 32)) as u32
    }

    /// How many names it holds.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Room for `additional` more names without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |e| spread(e.hash));
    }

    /// The id of `name`; `name_of` gives the name of an id it holds.
    pub(crate) fn get<'n>(&self, name: &str, name_of: impl Fn(u32) -> &'n str) -> Option<u32> {
        let hash = self.hash(name);
        self.table
            .find(spread(hash), |e| e.hash == hash && name_of(e.id) == name)
            .map(|e| e.id)
    }

    /// The id of `name`, where id `i` is named `names[i]` (a plan's and a
    /// report's names by part id).
    pub(crate) fn get_among(&self, name: &str, names: &[std::sync::Arc<str>]) -> Option<u32> {
        self.get(name, |id| &names[id as usize])
    }

    /// Adds `name` with `id`, unless it holds `name` already: then the id
    /// it has (and nothing changes).
    pub(crate) fn insert<'n>(
        &mut self,
        name: &str,
        id: u32,
        name_of: impl Fn(u32) -> &'n str,
    ) -> Result<(), u32> {
        let hash = self.hash(name);
        match self.table.entry(
            spread(hash),
            |e| e.hash == hash && name_of(e.id) == name,
            |e| spread(e.hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(first) => Err(first.get().id),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(Entry { id, hash });
                Ok(())
            }
        }
    }

    /// Gives each id the id `to` maps it to, and drops the ids `to` maps
    /// to `None`; the names stay (the owner keeps them under the new ids).
    pub(crate) fn remap(&mut self, mut to: impl FnMut(u32) -> Option<u32>) {
        self.table.retain(|e| match to(e.id) {
            Some(id) => {
                e.id = id;
                true
            }
            None => false,
        });
    }

    /// Every id it holds, in no order.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().map(|e| e.id)
    }
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::NameIndex;

    #[test]
    fn names_are_found_by_their_ids_names_and_kept_unique() {
        let names: Vec<String> = (0..5000).map(|i| format!("part{i}")).collect();
        let name_of = |id: u32| names[id as usize].as_str();
        let mut index = NameIndex::default();
        for id in 0..names.len() as u32 {
            assert_eq!(index.insert(name_of(id), id, name_of), Ok(()));
        }
        assert_eq!(index.len(), names.len());
        // A name already held keeps its id; the index is unchanged.
        assert_eq!(index.insert("part42", 7, name_of), Err(42));
        assert_eq!(index.len(), names.len());
        for (id, name) in names.iter().enumerate() {
            assert_eq!(index.get(name, name_of), Some(id as u32));
        }
        assert_eq!(index.get("part5000", name_of), None);
        assert_eq!(index.get("", name_of), None);
    }

    #[test]
    fn remapping_moves_ids_and_drops_unmapped_ones() {
        let names = ["a", "fork", "b", "c"];
        let mut index = NameIndex::default();
        for (id, name) in names.iter().enumerate() {
            index
                .insert(name, id as u32, |i| names[i as usize])
                .unwrap();
        }
        // Node 1 goes; the rest close up, as a plan's part ids do.
        index.remap(|id| match id {
            1 => None,
            0 => Some(0),
            n => Some(n - 1),
        });
        let parts = ["a", "b", "c"];
        let name_of = |id: u32| parts[id as usize];
        assert_eq!(index.len(), 3);
        assert_eq!(index.get("b", name_of), Some(1));
        assert_eq!(index.get("c", name_of), Some(2));
        assert_eq!(index.get("fork", name_of), None);
        let mut ids: Vec<u32> = index.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2]);
    }
}
