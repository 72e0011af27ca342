//! The GPU trainer's read-backs, awaited: the one implementation of what
//! [`Trainer`](crate::train::Trainer)'s blocking calls return (metrics, predictions,
//! parameters), and the form a browser has. Submitting work never waits, so
//! `train_step` and `evaluate` need no awaited form.

use super::{batch_first_logits, tensors, GpuTrainer, Pass};
use crate::error::Result;
use crate::model::{Batch, Loss, ModelParams};
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
        tensors::read_params(&self.ctx, self.config, &self.tensors, |t| &t.value).await
    }
}
