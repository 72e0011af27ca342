//! A stateful model's carried state: per layer [dirs, B, H] on the device, the final
//! states of one training batch, read as the next batch's initial states.

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::model::ModelConfig;

/// The carry of one batch size; `valid` once a training pass (or the caller) filled it.
pub(crate) struct Carry {
    pub batch: usize,
    pub layers: Vec<wgpu::Buffer>,
    pub valid: bool,
}

impl Carry {
    /// Buffers for batch size `batch`, not yet valid.
    pub(crate) fn new(ctx: &GpuContext, cfg: &ModelConfig, batch: usize) -> Result<Self> {
        let per = Self::per_layer(cfg, batch);
        let layers = (0..cfg.num_layers)
            .map(|l| ctx.storage(&format!("carry_l{l}"), per))
            .collect::<Result<Vec<_>>>()?;
        Ok(Carry {
            batch,
            layers,
            valid: false,
        })
    }

    fn per_layer(cfg: &ModelConfig, batch: usize) -> usize {
        cfg.gru_config().num_directions() * batch * cfg.hidden_size
    }

    /// The state as [layers·dirs, B, H] (a readback).
    pub(crate) fn read(&self, ctx: &GpuContext, cfg: &ModelConfig) -> Result<Vec<f32>> {
        let per = Self::per_layer(cfg, self.batch);
        let parts: Vec<_> = self.layers.iter().map(|b| (b, 0, per)).collect();
        let staging = ctx.staging(parts.len() * per)?;
        Ok(ctx.read_f32(&staging, &parts)?.concat())
    }

    /// Sets the state from [layers·dirs, B, H] (length already checked) and marks it valid.
    pub(crate) fn write(&mut self, ctx: &GpuContext, h: &[f32]) {
        let per = h.len() / self.layers.len().max(1);
        for (l, buf) in self.layers.iter().enumerate() {
            ctx.queue
                .write_buffer(buf, 0, bytemuck::cast_slice(&h[l * per..(l + 1) * per]));
        }
        self.valid = true;
    }
}
