//! The GPU trainer's read-backs, awaited: the one implementation of what
//! [`Trainer`](crate::train::Trainer)'s blocking calls return (metrics, predictions,
//! parameters), and the form a browser has. Submitting work never waits, so
//! `train_step` and `evaluate` need no awaited form.

use super::{batch_first_logits, tensors, GpuTrainer, Pass};
use crate::error::GruError;
use crate::error::Result;
use crate::generate::{check_lm, Sampling};
use crate::gpu::bind::Range;
use crate::model::{Batch, Loss, ModelParams};
use crate::train::options::OptimizerState;
use crate::train::trainer::{Metrics, Split};

impl GpuTrainer {
    /// [`Trainer::take_metrics`](crate::train::Trainer::take_metrics), awaited: the loss
    /// and accuracy summed since the last call for `split`, which starts over.
    pub async fn take_metrics_async(&mut self, split: Split) -> Result<Metrics> {
        let buf = &self.metrics[split as usize];
        let t = self
            .ctx
            .read_f32_async(&self.small_staging, &[(buf, 0, 4)])
            .await?
            .concat();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        enc.clear_buffer(buf, 0, None);
        self.ctx.queue.submit([enc.finish()]);
        let t = [t[0] as f64, t[1] as f64, t[2] as f64, t[3] as f64];
        Ok(Metrics::from_totals(
            t,
            self.config.loss != Loss::MeanSquaredError,
        ))
    }

    /// Trains on each of `batches` in turn and returns each step's metrics, read back
    /// once per [`HISTORY`](super::HISTORY) − 1 steps rather than after every step: a
    /// copy of the running sums is recorded after each step (no read-back), and the
    /// step's metrics are the difference of consecutive copies. The training sums start
    /// over afterwards, as after [`GpuTrainer::take_metrics_async`].
    pub async fn train_steps_async(&mut self, batches: &[Batch<'_>]) -> Result<Vec<Metrics>> {
        use crate::train::Trainer;
        let mut out = Vec::with_capacity(batches.len());
        for chunk in batches.chunks(super::HISTORY - 1) {
            self.snapshot_train_metrics(0);
            for (k, b) in chunk.iter().enumerate() {
                self.train_step(b)?;
                self.snapshot_train_metrics(k + 1);
            }
            let (history, staging) = (&self.history.0, &self.history.1);
            let sums = self
                .ctx
                .read_f32_async(staging, &[(history, 0, 4 * (chunk.len() + 1))])
                .await?
                .concat();
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            enc.clear_buffer(&self.metrics[Split::Train as usize], 0, None);
            self.ctx.queue.submit([enc.finish()]);
            let classification = self.config.loss != Loss::MeanSquaredError;
            out.extend(sums.chunks(4).collect::<Vec<_>>().windows(2).map(|w| {
                let t: [f64; 4] = std::array::from_fn(|i| w[1][i] as f64 - w[0][i] as f64);
                Metrics::from_totals(t, classification)
            }));
        }
        Ok(out)
    }

    /// Records a copy of the running training sums into slot `k` of the history.
    fn snapshot_train_metrics(&self, k: usize) {
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let from = &self.metrics[Split::Train as usize];
        enc.copy_buffer_to_buffer(from, 0, &self.history.0, 16 * k as u64, 16);
        self.ctx.queue.submit([enc.finish()]);
    }

    /// [`Trainer::predict`](crate::train::Trainer::predict), awaited.
    pub async fn predict_async(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        let prep = batch.prepare(&self.config, false)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.submit(i, Pass::Predict)?;
        let logits = self
            .shapes
            .get(i)
            .read_logits(&self.ctx, &self.config)
            .await?;
        Ok(batch_first_logits(
            &self.config,
            logits,
            prep.batch,
            prep.seq_len,
        ))
    }

    /// [`Trainer::params`](crate::train::Trainer::params), awaited.
    pub async fn params_async(&mut self) -> Result<ModelParams> {
        self.flush_embedding()?;
        tensors::read_params(&self.ctx, self.config, &self.tensors, |t| Ok(&t.value)).await
    }

    /// [`Trainer::optimizer_state`](crate::train::Trainer::optimizer_state), awaited.
    pub async fn optimizer_state_async(&mut self) -> Result<OptimizerState> {
        self.flush_embedding()?;
        Ok(OptimizerState {
            step: self.step,
            m: tensors::read(&self.ctx, &self.tensors, |t| Ok(&t.train()?.m)).await?,
            v: tensors::read(&self.ctx, &self.tensors, |t| Ok(&t.train()?.v)).await?,
        })
    }

    /// [`Trainer::generate_stream`](crate::train::Trainer::generate_stream) by a chosen route: `fused` (generate.wgsl) or, with
    /// `None`, one pass of the model's kernels per token.
    pub(crate) async fn generate_with_async(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        fused: Option<crate::gpu::ops::generate::Fused>,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        use crate::generate::gpu::{generate, Route};
        self.flush_embedding()?;
        // The step shape first: building the prompt's shape can then only evict older ones.
        if fused.is_none() {
            self.shape_index(1, 1)?;
        }
        let wi = self.shape_index(prompt.len(), 1)?;
        let si = match fused {
            None => Some(self.shape_index(1, 1)?),
            Some(_) => None,
        };
        let prep = Batch::tokens(prompt, 1, prompt.len()).prepare(&self.config, false)?;
        self.write_inputs(wi, &prep);
        let warm = self.shapes.get(wi).single()?;
        // What the kernels read: an f16 or mixed trainer's f16 values take the f16 build.
        let tensors: Vec<&Range> = self.tensors.iter().map(|t| t.kernel_value()).collect();
        let route = match (fused, si) {
            (Some(f), _) => Route::Fused(f, &tensors),
            (None, Some(si)) => Route::Steps(self.shapes.get(si).single()?),
            (None, None) => return Err(GruError::State("generation without a route".into())),
        };
        self.ctx
            .scoped_async(generate(
                &self.ctx,
                &self.config,
                warm,
                route,
                n,
                sampling,
                on_token,
            ))
            .await
    }

    /// [`Trainer::generate_stream`](crate::train::Trainer::generate_stream), awaited: up
    /// to `n` tokens after `prompt`, each handed to `on_token` as it is read back (`false`
    /// stops); returns how many.
    pub async fn generate_stream_async(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        check_lm(&self.config, prompt)?;
        sampling.validate()?;
        if n == 0 {
            return Ok(0);
        }
        // f16 and mixed trainers generate from their f16 weights.
        let half = self.precision.is_half();
        let fused = crate::generate::gpu::fused_for(&self.ctx, &self.config, sampling, half);
        self.generate_with_async(prompt, n, sampling, fused, on_token)
            .await
    }
}
