//! The MPI communicator (feature `mpi`): ranks are the processes `mpirun` or `srun`
//! started, on one machine or many.

use mpi::collective::{CommunicatorCollectives, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};

use super::comm::Communicator;
use crate::error::{GruError, Result};

/// MPI's world communicator. MPI's default error handler aborts every rank on a failed
/// collective, so no rank waits forever for one that died.
pub struct MpiCommunicator {
    world: SimpleCommunicator,
    local_rank: usize,
    // Finalizes MPI when dropped, after the communicators above.
    _universe: Universe,
}

impl MpiCommunicator {
    /// Initialises MPI (once per process) and joins the world. A process started without
    /// a launcher is a world of one rank.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| GruError::State("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        // Ranks that share a machine (and its GPUs), numbered from 0 on each.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(MpiCommunicator {
            world,
            local_rank,
            _universe: universe,
        })
    }

    /// This rank's number among the ranks of its machine: which of the machine's GPUs it
    /// takes.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Ends every rank of the job with `code` (after an error on this one).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl MpiCommunicator {
    /// Checks that every rank sums `len` values before the sum itself: MPI reduces
    /// buffers of different lengths into corrupt memory, or waits forever. Every rank
    /// learns the smallest and largest length, so every rank returns the same error.
    fn same_length(&self, len: usize) -> Result<()> {
        let mine = [len as i64, -(len as i64)];
        let mut both = [0i64; 2];
        self.world
            .all_reduce_into(&mine[..], &mut both[..], SystemOperation::max());
        let (longest, shortest) = (both[0], -both[1]);
        if longest != shortest {
            return Err(GruError::RanksDisagree(format!(
                "a sum of {shortest} values on one rank met a sum of {longest} on another (rank {} has {len}): every rank must make the same calls",
                self.rank()
            )));
        }
        Ok(())
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn sum_f32(&self, data: &mut [f32]) -> Result<()> {
        self.same_length(data.len())?;
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
    fn sum_f64(&self, data: &mut [f64]) -> Result<()> {
        self.same_length(data.len())?;
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
}
