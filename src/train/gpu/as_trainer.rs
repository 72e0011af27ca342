//! [`Trainer`] for [`GpuTrainer`]: the common interface over the GPU trainer's passes,
//! its read-backs (each awaited once in `awaited`) and its state.

use super::{check_same_config, tensors, GpuTrainer, Pass};
use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::{check_len, Result};
use crate::generate::Sampling;
use crate::gpu::wait::blocking;
use crate::model::{Batch, ModelConfig, ModelInput, ModelParams};
use crate::precision::check_f16_range;
use crate::train::cpu::shared_batch;
use crate::train::options::{OptimizerState, TrainOptions};
use crate::train::trainer::{Metrics, Split, Trainer};

impl Trainer for GpuTrainer {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn options(&self) -> &TrainOptions {
        &self.options
    }
    fn device_name(&self) -> String {
        let info = self.ctx.adapter_info();
        format!("{} ({:?})", info.name, info.backend)
    }
    fn prepare(&mut self, seq_len: usize, batch: usize) -> Result<()> {
        self.shape_index(seq_len, batch).map(|_| ())
    }
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.train_index(prep.seq_len, prep.batch, None)?;
        self.write_inputs(i, &prep);
        self.write_rows(&prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Train)?;
        self.step += 1;
        Ok(())
    }
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()> {
        let prep = shared_batch(&self.config, batch, shard, comm)?;
        let i = self.train_index(prep.seq_len, prep.batch, Some(shard))?;
        self.write_inputs(i, &prep);
        let vocab = match self.config.input {
            ModelInput::Tokens { vocab, .. } if self.lazy.is_some() => Some(vocab),
            _ => None,
        };
        if let Some(vocab) = vocab {
            // Every rank moves the rows any rank's shard holds (and zeroes their
            // gradients first), so the summed gradient and the update agree everywhere.
            let mut held = vec![0.0f32; vocab];
            for &t in &prep.tokens {
                held[t as usize] = 1.0;
            }
            comm.sum_f32(&mut held)?;
            let rows: Vec<u32> = (0..vocab as u32)
                .filter(|&r| held[r as usize] > 0.0)
                .collect();
            if let Some(l) = &mut self.lazy {
                l.write_rows(&self.ctx, &rows);
            }
        }
        self.write_step_uniform(self.step + 1);
        self.submit_with(i, Pass::Train, false)?;
        self.sum_gradients(comm)?;
        self.submit_update()?;
        self.step += 1;
        Ok(())
    }
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.train_index(prep.seq_len, prep.batch, None)?;
        self.write_inputs(i, &prep);
        self.write_rows(&prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Gradients)?;
        blocking(tensors::read_params(
            &self.ctx,
            self.config,
            &self.tensors,
            |t| Ok(&t.train()?.grad),
        ))
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.submit(i, Pass::Eval)
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        blocking(self.take_metrics_async(split))
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        blocking(self.predict_async(batch))
    }
    fn params(&mut self) -> Result<ModelParams> {
        blocking(self.params_async())
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        check_same_config(&self.config, &params.config)?;
        // The moments of lagging rows first take the steps they missed.
        self.flush_embedding()?;
        if self.precision.is_half() {
            // An f16 value or copy would hold infinity.
            for (t, v) in self.tensors.iter().zip(params.tensors()) {
                check_f16_range(&t.info.name, v)?;
            }
        }
        tensors::write(
            &self.ctx,
            &self.tensors,
            &params.tensors(),
            |t| Ok(&t.value),
        )?;
        self.refresh_copies()
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        blocking(self.optimizer_state_async())
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.tensors.iter().map(|t| t.info.len()).collect();
        state.check(&lens)?;
        // The values of lagging rows first take the steps they missed.
        self.flush_embedding()?;
        let m: Vec<&[f32]> = state.m.iter().map(Vec::as_slice).collect();
        let v: Vec<&[f32]> = state.v.iter().map(Vec::as_slice).collect();
        tensors::write(&self.ctx, &self.tensors, &m, |t| Ok(&t.train()?.m))?;
        tensors::write(&self.ctx, &self.tensors, &v, |t| Ok(&t.train()?.v))?;
        self.step = state.step;
        if let Some(l) = &mut self.lazy {
            l.set_current(&self.ctx, state.step);
        }
        Ok(())
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        match self.carry.as_ref().filter(|c| c.valid) {
            Some(c) => Ok(Some(c.read(&self.ctx, &self.config)?)),
            None => Ok(None),
        }
    }
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        blocking(self.generate_stream_async(prompt, n, sampling, on_token))
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        let Some((h, batch)) = state else {
            if let Some(c) = &mut self.carry {
                c.valid = false;
            }
            return Ok(());
        };
        let gcfg = self.config.gru_config();
        let dims = [
            gcfg.num_layers * gcfg.num_directions(),
            batch,
            gcfg.hidden_size,
        ];
        check_len("carried state", h.len(), &dims, "[layers*dirs, B, H]")?;
        self.carry_for(batch)?;
        if let Some(c) = &mut self.carry {
            c.write(&self.ctx, h);
        }
        Ok(())
    }
}
