//! Submitting the GPU trainer's work: a model pass over one batch shape (with the
//! initial states, the update and the carried state), the update alone, the embedding's
//! lazy catch-up, and the data-parallel sum of the flat gradient. Nothing here waits for
//! the device except that sum, which needs the other ranks' values.

use super::lazy::LazyEmbedding;
use super::run::Pass;
use super::{update, GpuTrainer};
use crate::dist::comm::Communicator;
use crate::error::{GruError, Result};
use crate::gpu::ops::encode;

impl GpuTrainer {
    /// Records and submits one pass over shape `i`: initial states (zeros, or carried
    /// for a stateful model's training passes), the list, the update, and the copy of the
    /// final states into the carry.
    pub(super) fn submit(&mut self, i: usize, pass: Pass) -> Result<()> {
        self.submit_with(i, pass, true)
    }

    /// [`Self::submit`]; a training pass without `update` leaves its gradients for
    /// [`Self::submit_update`] (data-parallel training sums them across ranks between).
    pub(super) fn submit_with(&mut self, i: usize, pass: Pass, update: bool) -> Result<()> {
        let training = matches!(pass, Pass::Train | Pass::Gradients);
        if training && !self.precision.trains() {
            return Err(super::tensors::inference_only());
        }
        let carry = self.options.stateful && pass == Pass::Train;
        if carry {
            self.carry_for(self.shapes.get(i).batch)?;
        }
        if !training {
            // The forward reads every row the batch holds: all must be up to date.
            self.flush_embedding()?;
        }
        let updates = pass == Pass::Train && update;
        let flush = updates && LazyEmbedding::flush_after(self.step + 1);
        let ctx = &self.ctx;
        let run = self.shapes.get(i);
        let held = self
            .carry
            .as_ref()
            .filter(|c| self.options.stateful && training && c.valid && c.batch == run.batch);
        let out = self.carry.as_ref().filter(|_| carry);
        ctx.scoped(|| {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("model_pass"),
                });
            if let Some(l) = self.lazy.as_ref().filter(|_| training) {
                encode(&mut enc, "embed_before", &l.before);
            }
            run.encode(&mut enc, &self.config, pass, (held, out));
            if updates {
                self.encode_update(&mut enc, flush);
            }
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })?;
        if updates {
            self.updated(flush);
        }
        if let Some(c) = self.carry.as_mut().filter(|_| carry) {
            c.valid = true;
        }
        Ok(())
    }

    /// The update of a training pass submitted without it.
    pub(super) fn submit_update(&mut self) -> Result<()> {
        let flush = LazyEmbedding::flush_after(self.step + 1);
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            self.encode_update(&mut enc, flush);
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })?;
        self.updated(flush);
        Ok(())
    }

    /// Records the update (norm, clip, optimiser, max-norm) and, with `flush`, the
    /// embedding's catch-up of every row.
    pub(super) fn encode_update(&self, enc: &mut wgpu::CommandEncoder, flush: bool) {
        encode(enc, "update", &self.update);
        if let Some(l) = self.lazy.as_ref().filter(|_| flush) {
            encode(enc, "embed_flush", &l.flush);
        }
    }

    /// After an update: the embedding's rows lag unless it was flushed.
    pub(super) fn updated(&mut self, flush: bool) {
        if let Some(l) = self.lazy.as_mut() {
            l.lagging = !flush;
        }
    }

    /// Sums the flat gradient across ranks: read back, summed, written back.
    pub(super) fn sum_gradients(&mut self, comm: &dyn Communicator) -> Result<()> {
        let segments = &self.flats.layout.segments;
        let total: usize = segments.iter().sum();
        if self.grad_staging.is_none() {
            self.grad_staging = Some(self.ctx.staging(total)?);
        }
        let staging = self
            .grad_staging
            .as_ref()
            .ok_or_else(|| GruError::State("no staging buffer for the gradient".into()))?;
        let grads = &self.flats.train()?.grad;
        let parts: Vec<_> = grads
            .buffers
            .iter()
            .zip(segments)
            .map(|(b, &n)| (b, 0, n))
            .collect();
        let mut flat = self.ctx.read_f32(staging, &parts)?.concat();
        comm.sum_f32(&mut flat)?;
        let mut at = 0;
        for (b, &n) in grads.buffers.iter().zip(segments) {
            self.ctx
                .queue
                .write_buffer(b, 0, bytemuck::cast_slice(&flat[at..at + n]));
            at += n;
        }
        Ok(())
    }

    /// Writes the training uniform of update `step` (and keeps it for the embedding's
    /// lagging rows).
    pub(super) fn write_step_uniform(&self, step: u64) {
        let u = update::step_uniform(&self.options, step);
        self.ctx
            .queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&u));
        if let Some(l) = &self.lazy {
            l.write_history(&self.ctx, &u);
        }
    }

    /// Writes the rows a pass with a backward holds, for the embedding's lazy update.
    pub(super) fn write_rows(&mut self, prep: &crate::model::batch::Prepared) {
        if let Some(l) = &mut self.lazy {
            l.write_rows(&self.ctx, &prep.tokens);
        }
    }

    /// Brings every embedding row up to date with the steps taken (one submission, where
    /// some row lags): before anything reads the whole table or its moments.
    pub(super) fn flush_embedding(&mut self) -> Result<()> {
        let Some(l) = self.lazy.as_mut().filter(|l| l.lagging) else {
            return Ok(());
        };
        // The flush reads the step number from the uniform; the next pass rewrites it.
        let u = update::step_uniform(&self.options, self.step);
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&u));
        ctx.scoped(|| {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            l.encode_flush(&mut enc);
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })
    }
}
