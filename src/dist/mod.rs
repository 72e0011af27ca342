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
pub use data_parallel::{check_in_sync, DataParallel};
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
