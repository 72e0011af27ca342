//! What data-parallel ranks share, and the communicator of a process alone.

use crate::error::Result;

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
