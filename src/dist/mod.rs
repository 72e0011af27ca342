//! Data-parallel training: what ranks share ([`Communicator`]) and which rows of a
//! global batch a rank trains on ([`Shard`]).
//!
//! Every rank holds the whole model and trains on its shard of each global batch; one
//! sum across ranks per step turns the shards' gradients (each already divided by the
//! *global* count of targets) into the gradient of the whole batch, and every rank then
//! applies the identical update. [`SingleProcess`] is the one-rank communicator,
//! [`ThreadGroup`] runs ranks as threads of one process (several devices in one
//! program, and the tests), and with the `mpi` feature `MpiCommunicator` spans
//! processes and machines. [`DataParallel`] wraps a trainer as one rank: whole global
//! batches in, its share trained.
//!
//! ```
//! use gru_engine::dist::{Communicator, SingleProcess};
//! let mut v = [1.0f32, 2.0];
//! SingleProcess.sum_f32(&mut v).unwrap(); // one rank: unchanged
//! assert_eq!((SingleProcess.rank(), SingleProcess.size(), v), (0, 1, [1.0, 2.0]));
//! ```

mod data_parallel;
#[cfg(feature = "mpi")]
mod mpi;
mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiCommunicator;
pub use data_parallel::DataParallel;
pub use threads::ThreadGroup;

use crate::error::{GruError, Result};

/// What data-parallel ranks share: element-wise sums and a barrier. Every rank must make
/// the same calls in the same order with the same lengths, and every rank gets the same
/// result (so parameters stay identical).
pub trait Communicator {
    /// This rank, from 0.
    fn rank(&self) -> usize;
    /// How many ranks.
    fn size(&self) -> usize;
    /// Replaces `data` on every rank by its element-wise sum over the ranks.
    fn sum_f32(&self, data: &mut [f32]) -> Result<()>;
    /// The same for f64 counters (loss sums, target counts).
    fn sum_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// The communicator of a process that trains alone: sums are the values themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// Where a rank's rows sit in the global batch: rows `first_row .. first_row + B` of
/// `global_rows`. Dropout masks are drawn by a value's place in the global batch, so they
/// do not depend on how the rows are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The global batch row of this rank's row 0.
    pub first_row: usize,
    /// Rows of the global batch.
    pub global_rows: usize,
}

impl Shard {
    /// Rank `rank` of `ranks`' equal share of a global batch of `global_rows`, or an error
    /// naming both when the rows do not divide evenly.
    ///
    /// ```
    /// use gru_engine::dist::Shard;
    /// let s = Shard::of(32, 1, 4).unwrap();
    /// assert_eq!((s.first_row, s.rows(4)), (8, 8));
    /// assert!(Shard::of(30, 0, 4).is_err());
    /// ```
    pub fn of(global_rows: usize, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(GruError::Config(format!(
                "rank {rank} of {ranks} ranks: expected a rank below the rank count"
            )));
        }
        if !global_rows.is_multiple_of(ranks) || global_rows == 0 {
            return Err(GruError::Config(format!(
                "a global batch of {global_rows} rows over {ranks} ranks: expected a positive multiple of {ranks} rows (each rank trains an equal shard)"
            )));
        }
        let rows = global_rows / ranks;
        Ok(Shard {
            first_row: rank * rows,
            global_rows,
        })
    }

    /// The shard of a process that trains alone on batches of `rows`.
    pub fn whole(rows: usize) -> Self {
        Shard {
            first_row: 0,
            global_rows: rows,
        }
    }

    /// Rows per rank when `ranks` share the global batch equally.
    pub fn rows(&self, ranks: usize) -> usize {
        self.global_rows / ranks.max(1)
    }

    /// Checks that a local batch of `rows` fits inside the global batch here.
    pub(crate) fn check(&self, rows: usize) -> Result<()> {
        if self.first_row + rows > self.global_rows {
            return Err(GruError::Config(format!(
                "a shard of {rows} rows from global row {}: expected it within the global batch of {} rows",
                self.first_row, self.global_rows
            )));
        }
        Ok(())
    }
}
