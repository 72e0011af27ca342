//! Parameters and their gradients on the device, one set of buffers per layer and direction.

use crate::config::GruConfig;
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::weights::{DirWeights, GruWeights};

/// Device buffers of one layer and direction.
pub(crate) struct DirParams {
    pub w_ih: wgpu::Buffer,   // [3H, I_k]
    pub w_hh: wgpu::Buffer,   // [3H, H]
    pub w_hh_t: wgpu::Buffer, // [H, 3H], refreshed by every forward
    pub b_ih: wgpu::Buffer,   // [3H]
    pub b_hh: wgpu::Buffer,   // [3H]
    pub d_w_ih: wgpu::Buffer, // [3H, I_k]
    pub d_w_hh: wgpu::Buffer, // [3H, H]
    pub d_b_ih: wgpu::Buffer, // [3H]
    pub d_b_hh: wgpu::Buffer, // [3H]
}

/// Every parameter buffer of a stack, `dirs[layer * num_directions + direction]`.
pub(crate) struct GpuParams {
    pub dirs: Vec<DirParams>,
}

impl GpuParams {
    pub(crate) fn new(ctx: &GpuContext, config: &GruConfig) -> Result<Self> {
        let h = config.hidden_size;
        let nd = config.num_directions();
        let mut dirs = Vec::new();
        for idx in 0..config.num_layers * nd {
            let layer = idx / nd;
            let i = config.layer_input_size(layer);
            let name = |base: &str| {
                format!(
                    "{base}_l{layer}{}",
                    if idx % nd == 1 { "_reverse" } else { "" }
                )
            };
            dirs.push(DirParams {
                w_ih: ctx.storage(&name("weight_ih"), 3 * h * i)?,
                w_hh: ctx.storage(&name("weight_hh"), 3 * h * h)?,
                w_hh_t: ctx.storage(&name("weight_hh_t"), 3 * h * h)?,
                b_ih: ctx.storage(&name("bias_ih"), 3 * h)?,
                b_hh: ctx.storage(&name("bias_hh"), 3 * h)?,
                d_w_ih: ctx.storage(&name("d_weight_ih"), 3 * h * i)?,
                d_w_hh: ctx.storage(&name("d_weight_hh"), 3 * h * h)?,
                d_b_ih: ctx.storage(&name("d_bias_ih"), 3 * h)?,
                d_b_hh: ctx.storage(&name("d_bias_hh"), 3 * h)?,
            });
        }
        Ok(GpuParams { dirs })
    }

    /// Uploads `w` (shapes already checked against the config).
    pub(crate) fn upload(&self, ctx: &GpuContext, w: &GruWeights) {
        for (p, d) in self.dirs.iter().zip(&w.dirs) {
            ctx.queue
                .write_buffer(&p.w_ih, 0, bytemuck::cast_slice(&d.w_ih));
            ctx.queue
                .write_buffer(&p.w_hh, 0, bytemuck::cast_slice(&d.w_hh));
            ctx.queue
                .write_buffer(&p.b_ih, 0, bytemuck::cast_slice(&d.b_ih));
            ctx.queue
                .write_buffer(&p.b_hh, 0, bytemuck::cast_slice(&d.b_hh));
        }
    }

    /// (buffer, first, len) of the four values or the four gradients of every direction,
    /// in `GruWeights` order, for one readback.
    pub(crate) fn parts<'a>(
        &'a self,
        template: &GruWeights,
        grads: bool,
    ) -> Vec<(&'a wgpu::Buffer, usize, usize)> {
        let mut parts = Vec::new();
        for (p, d) in self.dirs.iter().zip(&template.dirs) {
            let bufs = if grads {
                [&p.d_w_ih, &p.d_w_hh, &p.d_b_ih, &p.d_b_hh]
            } else {
                [&p.w_ih, &p.w_hh, &p.b_ih, &p.b_hh]
            };
            let lens = [d.w_ih.len(), d.w_hh.len(), d.b_ih.len(), d.b_hh.len()];
            parts.extend(bufs.into_iter().zip(lens).map(|(b, n)| (b, 0, n)));
        }
        parts
    }
}

/// Rebuilds `GruWeights` from readback parts in [`GpuParams::parts`] order.
pub(crate) fn weights_from_parts(
    config: GruConfig,
    mut parts: impl Iterator<Item = Vec<f32>>,
) -> GruWeights {
    let mut w = GruWeights::zeros(config);
    for d in &mut w.dirs {
        *d = DirWeights {
            w_ih: parts.next().unwrap_or_default(),
            w_hh: parts.next().unwrap_or_default(),
            b_ih: parts.next().unwrap_or_default(),
            b_hh: parts.next().unwrap_or_default(),
        };
    }
    w
}
