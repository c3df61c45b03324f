//! [`CoordIndex`]: ids by coordinate, one array per column.

use smallvec::SmallVec;

use crate::FastMap;
use crate::coord::Coord;

/// No id: a removed entry.
const NONE: u32 = u32::MAX;

/// Ids (a builder's node indices, a plan's part ids) by coordinate.
///
/// A builder fills each column from its top down, one level at a time
/// (`add` continues the part right above; a split's parts start fresh
/// columns, numbered in order), so a column is an array from its top
/// level: a lookup or an insert is an index, with nothing hashed and no
/// table to grow. A coordinate off that pattern (not placed by a
/// builder's rules) is kept in a map beside the columns, so the index
/// holds any coordinates.
#[derive(Clone, Debug, Default)]
pub(crate) struct CoordIndex {
    /// Column `p` at index `p - 1`.
    columns: Vec<Column>,
    others: FastMap<Coord, u32>,
    len: usize,
}

#[derive(Clone, Debug)]
struct Column {
    top: u32,
    /// The ids at levels `top..`, [`NONE`] where removed.
    ids: SmallVec<[u32; 2]>,
}

impl CoordIndex {
    /// How many coordinates it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where `coord` is in the columns: its column's index, and its
    /// level's index in that column (which may be past the column's end).
    fn place(&self, coord: Coord) -> Option<(usize, usize)> {
        let column = (coord.position as usize).checked_sub(1)?;
        let below_top = coord.level.checked_sub(self.columns.get(column)?.top)?;
        Some((column, below_top as usize))
    }

    /// The slot of `coord` in its column, if it is there.
    fn slot(&self, coord: Coord) -> Option<&u32> {
        let (column, level) = self.place(coord)?;
        self.columns[column].ids.get(level)
    }

    /// The id at `coord`.
    pub(crate) fn get(&self, coord: Coord) -> Option<u32> {
        match self.slot(coord) {
            Some(&id) if id != NONE => Some(id),
            _ => self.others.get(&coord).copied(),
        }
    }

    /// Puts `id` at `coord`, which holds nothing yet (the builder checks
    /// that before placing).
    pub(crate) fn insert(&mut self, coord: Coord, id: u32) {
        debug_assert!(self.get(coord).is_none() && id != NONE);
        match self.place(coord) {
            // A slot whose id was removed, or the next level down.
            Some((column, level)) => {
                let ids = &mut self.columns[column].ids;
                if ids.get(level) == Some(&NONE) {
                    ids[level] = id;
                } else if level == ids.len() {
                    ids.push(id);
                } else {
                    self.others.insert(coord, id);
                }
            }
            // The next column.
            None if coord.position as usize == self.columns.len() + 1 && coord.level > 0 => {
                self.columns.push(Column {
                    top: coord.level,
                    ids: smallvec::smallvec![id],
                });
            }
            None => {
                self.others.insert(coord, id);
            }
        }
        self.len += 1;
    }

    /// Gives each id the id `to` maps it to, and drops the coordinates
    /// whose ids `to` maps to `None`.
    pub(crate) fn remap(&mut self, mut to: impl FnMut(u32) -> Option<u32>) {
        let mut len = 0;
        for column in &mut self.columns {
            for id in column.ids.iter_mut().filter(|id| **id != NONE) {
                *id = to(*id).unwrap_or(NONE);
                len += usize::from(*id != NONE);
            }
        }
        self.others.retain(|_, id| match to(*id) {
            Some(new) => {
                *id = new;
                true
            }
            None => false,
        });
        self.len = len + self.others.len();
    }

    /// Every coordinate and its id, in no order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Coord, u32)> + '_ {
        let in_columns = self.columns.iter().enumerate().flat_map(|(p, c)| {
            c.ids
                .iter()
                .enumerate()
                .filter(|&(_, &id)| id != NONE)
                .map(move |(l, &id)| (Coord::new(c.top + l as u32, p as u32 + 1), id))
        });
        in_columns.chain(self.others.iter().map(|(&c, &id)| (c, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::CoordIndex;
    use crate::coord::Coord;

    #[test]
    fn coordinates_down_columns_and_off_them_are_found() {
        let mut index = CoordIndex::default();
        // A root, a split into three columns, a chain down the second.
        let placed = [(1, 1), (2, 1), (3, 1), (3, 2), (3, 3), (4, 2), (5, 2)];
        for (id, &(l, p)) in placed.iter().enumerate() {
            index.insert(Coord::new(l, p), id as u32);
        }
        // Off the pattern: a gap in a column, a column skipped.
        index.insert(Coord::new(7, 2), 100);
        index.insert(Coord::new(1, 9), 101);
        assert_eq!(index.len(), placed.len() + 2);
        for (id, &(l, p)) in placed.iter().enumerate() {
            assert_eq!(index.get(Coord::new(l, p)), Some(id as u32));
        }
        assert_eq!(index.get(Coord::new(7, 2)), Some(100));
        assert_eq!(index.get(Coord::new(1, 9)), Some(101));
        for (l, p) in [(6, 2), (2, 2), (4, 1), (0, 1), (1, 0), (4, 3), (1, 4)] {
            assert_eq!(index.get(Coord::new(l, p)), None, "{l}-{p}");
        }
        let mut all: Vec<(Coord, u32)> = index.iter().collect();
        all.sort_unstable_by_key(|&(_, id)| id);
        assert_eq!(all.len(), index.len());
        assert_eq!(all[8], (Coord::new(1, 9), 101));
    }

    #[test]
    fn remapping_drops_unmapped_ids_in_and_off_columns() {
        let mut index = CoordIndex::default();
        for (id, (l, p)) in [(1, 1), (2, 1), (3, 1), (3, 2)].into_iter().enumerate() {
            index.insert(Coord::new(l, p), id as u32);
        }
        index.insert(Coord::new(9, 9), 4);
        // Node 1 (a fork) goes; the others close up; the one off the
        // columns goes too.
        index.remap(|id| match id {
            1 | 4 => None,
            0 => Some(0),
            n => Some(n - 1),
        });
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(Coord::new(2, 1)), None);
        assert_eq!(index.get(Coord::new(3, 1)), Some(1));
        assert_eq!(index.get(Coord::new(3, 2)), Some(2));
        assert_eq!(index.get(Coord::new(9, 9)), None);
        assert_eq!(index.iter().count(), 3);
    }

    #[test]
    fn a_coordinate_whose_id_was_removed_takes_a_new_one() {
        let mut index = CoordIndex::default();
        for (id, l) in [1, 2, 3].into_iter().enumerate() {
            index.insert(Coord::new(l, 1), id as u32);
        }
        index.insert(Coord::new(9, 9), 3);
        index.remap(|id| (id != 1 && id != 3).then_some(id));
        index.insert(Coord::new(2, 1), 7);
        index.insert(Coord::new(9, 9), 8);
        assert_eq!(index.get(Coord::new(2, 1)), Some(7));
        assert_eq!(index.get(Coord::new(9, 9)), Some(8));
        assert_eq!(index.len(), 4);
        assert_eq!(index.iter().count(), 4);
    }
}
