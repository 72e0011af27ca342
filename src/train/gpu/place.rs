//! Where one plan's batch rows sit in the whole training batch.

use crate::dist::shard::Shard;

/// Where a plan's rows sit in its training batch: `rows` rows from `row0` of `total`.
/// A batch too large for one workspace runs as several plans (chunks) in one
/// submission; later chunks add their gradients to the first's, and dropout masks
/// are drawn by the rows' places in the whole batch, so chunking changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub row0: usize,
    pub rows: usize,
    pub total: usize,
    /// Where this process's batch sits in the global batch of data-parallel training
    /// (dropout masks follow the global place); the whole batch otherwise.
    pub shard: Shard,
}

impl Place {
    /// The dropout kernel's (span, stride, offset) for values `width` wide per row,
    /// time-major (a [rows, width] buffer is one step).
    pub(crate) fn dropout(&self, width: usize) -> (usize, usize, usize) {
        let first = self.shard.first_row + self.row0;
        (
            self.rows * width,
            self.shard.global_rows * width,
            first * width,
        )
    }

    /// A chunk after the first: gradients add, the batch is already counted.
    pub(crate) fn later(&self) -> bool {
        self.row0 > 0
    }
}
