//! [`PartRecord`]: one finished part as the journal keeps it, and the
//! conversions between its fields and SQLite's. A leaf: the journal and
//! its writer both use it.

/// An iteration number as SQLite stores it (an `i64`; numbers past it,
/// never reached, are kept at the largest).
pub(crate) fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One finished part of one iteration, as the journal keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartRecord {
    /// The iteration, from 1.
    pub iteration: u64,
    /// The part's name.
    pub part: String,
    /// Its lane (see [`Resume`](crate::Resume)): its records are pruned as its lane's
    /// iterations end.
    pub lane: u32,
    /// Its end state, by name (`succeeded`, `failed`, ...).
    pub state: String,
    /// How many attempts it took.
    pub attempts: u32,
    /// Its error's text, if it failed.
    pub error: Option<String>,
    /// Its output in the external format, if it has one.
    pub output: Option<Vec<u8>>,
    /// The run-store writes the part made (`None`: removed), committed
    /// in the same transaction as the record.
    pub store: Vec<(String, Option<Vec<u8>>)>,
}

/// A part's record from a row of `SELECT iteration, part, state,
/// attempts, error, output, lane FROM parts` (without its store writes,
/// which the store table keeps).
pub(crate) fn part_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PartRecord> {
    Ok(PartRecord {
        iteration: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
        part: row.get(1)?,
        lane: row.get(6)?,
        state: row.get(2)?,
        attempts: row.get(3)?,
        error: row.get(4)?,
        output: row.get(5)?,
        store: Vec::new(),
    })
}
