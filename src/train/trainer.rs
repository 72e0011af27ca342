//! The [`Trainer`] trait both trainers implement, and the metrics they accumulate.

use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::Result;
use crate::generate::Sampling;
use crate::model::{Batch, ModelConfig, ModelParams};
use crate::train::options::{OptimizerState, TrainOptions};

/// Loss and accuracy accumulated over some batches.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Mean loss per counted target (per token, row or value).
    pub loss: f64,
    /// Fraction of correct predictions (classification losses only).
    pub accuracy: Option<f64>,
    /// Targets counted.
    pub count: f64,
    /// Batches accumulated.
    pub batches: u64,
}

impl Metrics {
    /// The metrics of every rank's rows together (data-parallel training): loss and
    /// accuracy re-weighted by each rank's count; `batches` stays this rank's (each rank
    /// saw every batch).
    pub fn summed(&self, comm: &dyn Communicator) -> Result<Metrics> {
        let mut t = [
            self.loss * self.count,
            self.accuracy.unwrap_or(0.0) * self.count,
            self.count,
        ];
        comm.sum_f64(&mut t)?;
        let total = [t[0], t[1], t[2], self.batches as f64];
        Ok(Metrics::from_totals(total, self.accuracy.is_some()))
    }

    /// From the raw totals (loss sum, correct, counted, batches).
    pub(crate) fn from_totals(t: [f64; 4], classification: bool) -> Self {
        let count = t[2];
        Metrics {
            loss: if count > 0.0 { t[0] / count } else { 0.0 },
            accuracy: (classification && count > 0.0).then(|| t[1] / count),
            count,
            batches: t[3] as u64,
        }
    }
}

/// Whether a metric set belongs to training or to evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Accumulated by [`Trainer::train_step`].
    Train,
    /// Accumulated by [`Trainer::evaluate`].
    Eval,
}

/// A model being trained, on the GPU ([`GpuTrainer`](crate::train::GpuTrainer)) or the CPU reference
/// ([`CpuTrainer`](crate::train::CpuTrainer)).
///
/// ```no_run
/// use gru_engine::model::{Batch, ModelConfig, ModelParams};
/// use gru_engine::train::{CpuTrainer, Split, TrainOptions, Trainer};
/// # fn main() -> gru_engine::Result<()> {
/// let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
/// let mut t = CpuTrainer::new(params, TrainOptions::adam(1e-2))?;
/// let (x, y) = ([0u32, 1, 2, 3], [1u32, 2, 3, 0]);
/// for _ in 0..10 {
///     t.train_step(&Batch::tokens(&x, 1, 4).classes(&y))?;
/// }
/// println!("loss {}", t.take_metrics(Split::Train)?.loss);
/// # Ok(()) }
/// ```
pub trait Trainer {
    /// The model.
    fn config(&self) -> &ModelConfig;
    /// The options training runs with.
    fn options(&self) -> &TrainOptions;
    /// Where it runs, in words.
    fn device_name(&self) -> String;
    /// Allocates what batches of `batch` rows of `seq_len` steps need, so a shape the
    /// device cannot hold fails here rather than at the first step (GPU; a no-op on
    /// the CPU, which allocates per step).
    fn prepare(&mut self, seq_len: usize, batch: usize) -> Result<()> {
        let _ = (seq_len, batch);
        Ok(())
    }
    /// One update: forward, loss, backward, clipping, optimiser, constraints. Loss and
    /// accuracy accumulate without a readback; see [`Trainer::take_metrics`].
    fn train_step(&mut self, batch: &Batch) -> Result<()>;
    /// One update of data-parallel training ([`crate::dist`]): `batch` holds this rank's
    /// rows of a global batch, placed by `shard`. The loss is the mean over every rank's
    /// targets, `comm` sums the gradients across ranks, and every rank applies the same
    /// update (clipping by the norm of the summed gradient), so that N ranks of B/N rows
    /// train as one process with B rows (up to the order of the sums). The metrics stay
    /// this rank's until [`Metrics::summed`].
    ///
    /// ```no_run
    /// use gru_engine::dist::{Communicator, Shard, SingleProcess};
    /// # use gru_engine::model::{Batch, ModelConfig, ModelParams};
    /// # use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
    /// # fn main() -> gru_engine::Result<()> {
    /// # let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
    /// let mut t = CpuTrainer::new(params, TrainOptions::adam(1e-2))?;
    /// let comm = SingleProcess; // or ThreadGroup / MpiCommunicator ranks
    /// let shard = Shard::of(2, comm.rank(), comm.size())?; // a global batch of 2 rows
    /// let rows = shard.rows;
    /// let x = [0u32, 1, 2, 3, 2, 1];
    /// t.train_step_shared(&Batch::tokens(&x[..rows * 3], rows, 3).classes(&x[..rows * 3]), shard, &comm)?;
    /// # Ok(()) }
    /// ```
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()>;
    /// The gradients of the mean loss on `batch` for every parameter, in
    /// [`crate::model::param_infos`] order, before clipping and without updating
    /// anything: the training-mode pass the next [`Trainer::train_step`] would run (the
    /// same dropout masks, the carried state of a stateful model, which is not advanced).
    /// The batch's loss accumulates under [`Split::Train`], as after `loss.backward()`.
    ///
    /// ```no_run
    /// # use gru_engine::model::{Batch, ModelConfig, ModelParams};
    /// # use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
    /// # fn main() -> gru_engine::Result<()> {
    /// let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
    /// let mut t = CpuTrainer::new(params, TrainOptions::adam(1e-2))?;
    /// let g = t.gradients(&Batch::tokens(&[0, 1, 2], 1, 3).classes(&[1, 2, 3]))?;
    /// println!("d fc.bias = {:?}", g.get("fc.bias")?);
    /// # Ok(()) }
    /// ```
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams>;
    /// Forward and loss without dropout or updates, accumulated under [`Split::Eval`].
    fn evaluate(&mut self, batch: &Batch) -> Result<()>;
    /// Reads and resets the accumulated metrics of `split`.
    fn take_metrics(&mut self, split: Split) -> Result<Metrics>;
    /// Logits without dropout, batch-first: [B, T, outputs] per step or [B, outputs].
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>>;
    /// The current parameters.
    fn params(&mut self) -> Result<ModelParams>;
    /// Replaces the parameters (same config).
    fn set_params(&mut self, params: &ModelParams) -> Result<()>;
    /// The optimiser's state.
    fn optimizer_state(&mut self) -> Result<OptimizerState>;
    /// Replaces the optimiser's state, e.g. from a checkpoint.
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;
    /// The carried state of a stateful model, [layers·dirs, B, H], if one is held.
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>>;
    /// Sets (Some) or drops (None) the carried state.
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()>;
    /// Generates up to `n` tokens from a language model after warming its state on
    /// `prompt`, step by step (the prefix is never re-run), handing each to `on_token`
    /// as it arrives and keeping none: memory does not grow with `n`. `on_token` returns
    /// whether to go on (`false`: stop, e.g. its output was closed or Ctrl-C was
    /// pressed). Returns how many tokens were handed over.
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize>;

    /// [`Trainer::generate_stream`] to the end, calling `on_token` as tokens arrive;
    /// returns the `n` tokens.
    fn generate(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(n.min(1 << 16));
        self.generate_stream(prompt, n, sampling, &mut |t| {
            on_token(t);
            out.push(t);
            true
        })?;
        Ok(out)
    }
}

/// Totals of one batch's loss statistics: (loss sum, correct, counted).
pub(crate) type Totals = [f64; 4];
