//! Which rows of a global batch a rank trains on.

use crate::error::{GruError, Result};

/// Where a rank's rows sit in the global batch: `rows` rows from `first_row` of
/// `global_rows`. Dropout masks are drawn by a value's place in the global batch, so they
/// do not depend on how the rows are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The global batch row of this rank's row 0.
    pub first_row: usize,
    /// This rank's rows.
    pub rows: usize,
    /// Rows of the global batch.
    pub global_rows: usize,
}

impl Shard {
    /// Rank `rank`'s share of a global batch of `global_rows` split over `ranks`: equal
    /// shares where the rows divide, else shares that differ by one row (the first
    /// ranks' smaller), so an epoch's last, shorter batch still trains exactly; an error
    /// names both sizes where some rank would get no row.
    ///
    /// ```
    /// use gru_engine::dist::Shard;
    /// let s = Shard::of(32, 1, 4).unwrap();
    /// assert_eq!((s.first_row, s.rows), (8, 8));
    /// assert_eq!(Shard::of(10, 0, 4).unwrap().rows, 2);
    /// assert!(Shard::of(3, 0, 4).is_err());
    /// ```
    pub fn of(global_rows: usize, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(GruError::Config(format!(
                "rank {rank} of {ranks} ranks: expected a rank below the rank count"
            )));
        }
        if global_rows < ranks {
            return Err(GruError::Config(format!(
                "a global batch of {global_rows} rows over {ranks} ranks: expected at least one row per rank"
            )));
        }
        let edge = |r: usize| r * global_rows / ranks;
        Ok(Shard {
            first_row: edge(rank),
            rows: edge(rank + 1) - edge(rank),
            global_rows,
        })
    }

    /// The shard of a process that trains alone on batches of `rows`.
    pub fn whole(rows: usize) -> Self {
        Shard {
            first_row: 0,
            rows,
            global_rows: rows,
        }
    }

    /// Checks that a local batch of `rows` is this shard's and lies inside the global
    /// batch.
    pub(crate) fn check(&self, rows: usize) -> Result<()> {
        if rows != self.rows || self.first_row + rows > self.global_rows {
            return Err(GruError::Config(format!(
                "a batch of {rows} rows for the shard of {} rows from global row {} of {}: expected the shard's rows, within the global batch",
                self.rows, self.first_row, self.global_rows
            )));
        }
        Ok(())
    }
}
