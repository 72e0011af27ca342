//! A trainer on either device whose waiting calls are `async`: what a browser (or any
//! embedder on an executor) drives, where the blocking [`Trainer`] calls of the GPU
//! trainer cannot wait. Submitting work never waits, so `train_step`, `evaluate` and
//! the settings go through [`AwaitableTrainer::trainer`].

use crate::error::Result;
use crate::generate::Sampling;
use crate::model::{Batch, ModelParams};
use crate::train::cpu::CpuTrainer;
use crate::train::gpu::GpuTrainer;
use crate::train::options::OptimizerState;
use crate::train::trainer::{Metrics, Split, Trainer};

/// The GPU trainer or the CPU reference, awaited.
///
/// ```no_run
/// use gru_engine::model::{Batch, ModelConfig, ModelParams};
/// use gru_engine::train::{AwaitableTrainer, CpuTrainer, Split, TrainOptions};
/// # async fn run() -> gru_engine::Result<()> {
/// let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
/// let mut t = AwaitableTrainer::Cpu(Box::new(CpuTrainer::new(params, TrainOptions::adam(1e-2))?));
/// t.trainer().train_step(&Batch::tokens(&[0, 1, 2], 1, 3).classes(&[1, 2, 3]))?;
/// println!("loss {}", t.take_metrics(Split::Train).await?.loss);
/// # Ok(()) }
/// ```
pub enum AwaitableTrainer {
    /// On a GPU (WebGPU in a browser).
    Gpu(Box<GpuTrainer>),
    /// On the CPU reference.
    Cpu(Box<CpuTrainer>),
}

impl AwaitableTrainer {
    /// The trainer, for the calls that do not wait (steps, evaluation, settings).
    pub fn trainer(&mut self) -> &mut dyn Trainer {
        match self {
            AwaitableTrainer::Gpu(t) => t.as_mut(),
            AwaitableTrainer::Cpu(t) => t.as_mut(),
        }
    }

    /// Whether it runs on the CPU reference.
    pub fn is_cpu(&self) -> bool {
        matches!(self, AwaitableTrainer::Cpu(_))
    }

    /// [`Trainer::take_metrics`], awaited.
    pub async fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        match self {
            AwaitableTrainer::Gpu(t) => t.take_metrics_async(split).await,
            AwaitableTrainer::Cpu(t) => t.take_metrics(split),
        }
    }

    /// Trains on each of `batches` in turn; each step's metrics. On the GPU they are
    /// read back once for many steps ([`GpuTrainer::train_steps_async`]); either way
    /// the training sums start over afterwards.
    pub async fn train_steps(&mut self, batches: &[Batch<'_>]) -> Result<Vec<Metrics>> {
        match self {
            AwaitableTrainer::Gpu(t) => t.train_steps_async(batches).await,
            AwaitableTrainer::Cpu(t) => batches
                .iter()
                .map(|b| {
                    t.train_step(b)?;
                    t.take_metrics(Split::Train)
                })
                .collect(),
        }
    }

    /// [`Trainer::params`], awaited.
    pub async fn params(&mut self) -> Result<ModelParams> {
        match self {
            AwaitableTrainer::Gpu(t) => t.params_async().await,
            AwaitableTrainer::Cpu(t) => t.params(),
        }
    }

    /// [`Trainer::optimizer_state`], awaited.
    pub async fn optimizer_state(&mut self) -> Result<OptimizerState> {
        match self {
            AwaitableTrainer::Gpu(t) => t.optimizer_state_async().await,
            AwaitableTrainer::Cpu(t) => t.optimizer_state(),
        }
    }

    /// [`Trainer::predict`], awaited.
    pub async fn predict(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        match self {
            AwaitableTrainer::Gpu(t) => t.predict_async(batch).await,
            AwaitableTrainer::Cpu(t) => t.predict(batch),
        }
    }

    /// [`Trainer::generate_stream`], awaited.
    pub async fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        match self {
            AwaitableTrainer::Gpu(t) => {
                t.generate_stream_async(prompt, n, sampling, on_token).await
            }
            AwaitableTrainer::Cpu(t) => t.generate_stream(prompt, n, sampling, on_token),
        }
    }
}
