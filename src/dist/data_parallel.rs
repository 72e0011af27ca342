//! A trainer as one rank of data-parallel training: whole global batches in, this
//! rank's rows trained, metrics summed over the ranks.

use super::comm::Communicator;
use super::shard::Shard;
use crate::error::{GruError, Result};
use crate::generate::Sampling;
use crate::model::{Batch, Loss, ModelConfig, ModelParams};
use crate::train::{Metrics, OptimizerState, Split, TrainOptions, Trainer};

/// One rank's [`Trainer`] in data-parallel training: every rank is given the same global
/// batches (the same data order) and trains on its equal share of each
/// ([`Trainer::train_step_shared`]); evaluation batches are shared the same way (or
/// evaluated by rank 0 alone where their rows do not divide), and metrics come back
/// summed over the ranks. Every rank must call the same methods in the same order, as
/// with any collective.
///
/// ```no_run
/// use gru_engine::dist::{DataParallel, SingleProcess};
/// # use gru_engine::model::{Batch, ModelConfig, ModelParams};
/// # use gru_engine::train::{CpuTrainer, Split, TrainOptions, Trainer};
/// # fn main() -> gru_engine::Result<()> {
/// # let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
/// let comm = SingleProcess; // an MpiCommunicator under mpirun
/// let mut t = DataParallel::new(Box::new(CpuTrainer::new(params, TrainOptions::adam(1e-2))?), &comm);
/// let x = [0u32, 1, 2, 3, 2, 1];
/// t.train_step(&Batch::tokens(&x, 2, 3).classes(&x))?; // the global batch
/// println!("loss over every rank's rows: {}", t.take_metrics(Split::Train)?.loss);
/// t.check_in_sync()?;
/// # Ok(()) }
/// ```
pub struct DataParallel<'c> {
    inner: Box<dyn Trainer + 'c>,
    comm: &'c dyn Communicator,
}

impl<'c> DataParallel<'c> {
    /// `inner` as rank `comm.rank()` of `comm.size()`.
    pub fn new(inner: Box<dyn Trainer + 'c>, comm: &'c dyn Communicator) -> Self {
        DataParallel { inner, comm }
    }

    /// Checks that every rank holds the same parameters ([`check_in_sync`]).
    pub fn check_in_sync(&mut self) -> Result<()> {
        check_in_sync(self.inner.as_mut(), self.comm)
    }

    fn shard(&self, rows: usize) -> Result<Shard> {
        Shard::of(rows, self.comm.rank(), self.comm.size())
    }
}

/// Checks that every rank's `trainer` holds the same parameters (a checksum compared
/// across ranks); an error, on every rank, names the first rank that differs.
pub fn check_in_sync(trainer: &mut dyn Trainer, comm: &dyn Communicator) -> Result<()> {
    let p = trainer.params()?;
    // Position-weighted, so that swapped values change it too.
    let sum: f64 = p
        .tensors()
        .iter()
        .flat_map(|t| t.iter())
        .enumerate()
        .map(|(i, &v)| v as f64 * ((i % 1021) + 1) as f64)
        .sum();
    // Rank 0's checksum, bit for bit (a sum with zeros would turn -0.0 into 0.0).
    let first = super::agree::broadcast_bytes(comm, 0, &sum.to_bits().to_le_bytes())?;
    let mut off = vec![0.0; comm.size()];
    if sum.to_bits().to_le_bytes()[..] != first[..] {
        off[comm.rank()] = 1.0;
    }
    comm.sum_f64(&mut off)?;
    match off.iter().position(|&o| o > 0.0) {
        Some(r) => Err(GruError::State(format!(
            "rank {r}'s parameters differ from rank 0's: the ranks are out of step (a rank saw other data or another device diverged)"
        ))),
        None => Ok(()),
    }
}

impl Trainer for DataParallel<'_> {
    fn config(&self) -> &ModelConfig {
        self.inner.config()
    }
    fn options(&self) -> &TrainOptions {
        self.inner.options()
    }
    fn device_name(&self) -> String {
        let (r, n) = (self.comm.rank(), self.comm.size());
        format!("{} (rank {r} of {n})", self.inner.device_name())
    }
    fn prepare(&mut self, seq_len: usize, batch: usize) -> Result<()> {
        let rows = Shard::of(batch, self.comm.rank(), self.comm.size()).map_or(batch, |s| s.rows);
        self.inner.prepare(seq_len, rows)
    }
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let shard = self.shard(batch.batch)?;
        let mine = batch.rows(shard.first_row, shard.rows)?;
        self.inner.train_step_shared(&mine, shard, self.comm)
    }
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()> {
        self.inner.train_step_shared(batch, shard, comm)
    }
    /// The whole batch's gradients on this rank alone (not shared).
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        self.inner.gradients(batch)
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        if batch.batch >= self.comm.size() {
            let shard = self.shard(batch.batch)?;
            self.inner
                .evaluate(&batch.rows(shard.first_row, shard.rows)?)
        } else if self.comm.rank() == 0 {
            self.inner.evaluate(batch)
        } else {
            Ok(())
        }
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        let mut m = self.inner.take_metrics(split)?;
        // A rank that evaluated nothing still sums as a classifier if the model is one.
        if self.inner.config().loss != Loss::MeanSquaredError {
            m.accuracy = m.accuracy.or(Some(0.0));
        }
        m.summed(self.comm)
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        self.inner.predict(batch)
    }
    fn params(&mut self) -> Result<ModelParams> {
        self.inner.params()
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        self.inner.set_params(params)
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        self.inner.optimizer_state()
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        self.inner.set_optimizer_state(state)
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        self.inner.carried_state()
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        self.inner.set_carried_state(state)
    }
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        self.inner.generate_stream(prompt, n, sampling, on_token)
    }
}
