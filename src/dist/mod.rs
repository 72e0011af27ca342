//! Data-parallel training: what ranks share ([`Communicator`]) and which rows of a
//! global batch a rank trains on ([`Shard`]).
//!
//! Every rank holds the whole model and trains on its shard of each global batch. Per
//! step, a sum across ranks gives the global count of targets (so each shard's gradient
//! is already divided by it), token models sum which embedding rows any shard holds (so
//! every rank updates the same rows), and one sum of the flat gradient turns the shards'
//! gradients into the whole batch's; every rank then applies the identical update.
//! [`SingleProcess`] is the one-rank communicator,
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

mod agree;
pub(crate) mod comm;
mod data_parallel;
#[cfg(feature = "mpi")]
mod mpi;
pub(crate) mod shard;
pub(crate) mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiCommunicator;
pub use agree::{agree, broadcast_bytes, Fingerprint};
pub use comm::{Communicator, SingleProcess};
pub use data_parallel::{check_in_sync, DataParallel};
pub use shard::Shard;
pub use threads::ThreadGroup;
