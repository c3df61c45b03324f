//! [`Coord`]: where a part sits in a cycle, as level and position.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A place in a cycle: a level (1 is the root) and a position on that
/// level (a column, starting at 1). Displayed as `level-position`, e.g.
/// `3-2`.
///
/// `Coord::from(3)` is level 3 at position 1; `Coord::from((3, 2))` is
/// level 3 at position 2.
///
/// # Examples
///
/// ```
/// use sk_cycle::Coord;
/// assert_eq!(Coord::from((3, 2)).to_string(), "3-2");
/// assert_eq!(Coord::from(4), Coord::new(4, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Coord {
    /// The level, from 1.
    pub level: u32,
    /// The position on the level, from 1.
    pub position: u32,
}

impl Coord {
    /// The coordinate `level-position`.
    pub const fn new(level: u32, position: u32) -> Self {
        Coord { level, position }
    }

    /// The coordinate directly above (same position, previous level), if
    /// any.
    pub const fn above(self) -> Option<Coord> {
        if self.level > 1 {
            Some(Coord::new(self.level - 1, self.position))
        } else {
            None
        }
    }

    /// The coordinate directly below (same position, next level).
    pub const fn below(self) -> Coord {
        Coord::new(self.level + 1, self.position)
    }
}

impl fmt::Display for Coord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.level, self.position)
    }
}

impl From<u32> for Coord {
    fn from(level: u32) -> Self {
        Coord::new(level, 1)
    }
}

impl From<(u32, u32)> for Coord {
    fn from((level, position): (u32, u32)) -> Self {
        Coord::new(level, position)
    }
}
