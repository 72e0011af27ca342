//! Parameters and their gradients on the device, one set of tensors per layer and
//! direction, each a range of a flat buffer (`crate::gpu::flat`).

use crate::config::GruConfig;
use crate::error::Result;
use crate::gpu::bind::Range;
use crate::gpu::context::GpuContext;
use crate::gpu::flat::{Flat, Layout};
use crate::gpu::workspace::slabs_as;
use crate::precision::device_bytes;
use crate::weights::{DirWeights, GruWeights};

/// Device tensors of one layer and direction.
pub(crate) struct DirParams {
    pub w_ih: Range,   // [3H, I_k]
    pub w_hh: Range,   // [3H, H]
    pub w_hh_t: Range, // [H, 3H], refreshed by every forward; a layer's directions share a buffer
    pub b_ih: Range,   // [3H]
    pub b_hh: Range,   // [3H]
    pub d_w_ih: Range, // [3H, I_k]
    pub d_w_hh: Range, // [3H, H]
    pub d_b_ih: Range, // [3H]
    pub d_b_hh: Range, // [3H]
}

/// Every parameter tensor of a stack, `dirs[layer * num_directions + direction]`.
pub(crate) struct GpuParams {
    pub dirs: Vec<DirParams>,
}

/// The tensor lengths of a stack in `GruWeights` order: per layer and direction
/// W_ih, W_hh, b_ih, b_hh.
pub(crate) fn tensor_lens(config: &GruConfig) -> Vec<usize> {
    let h = config.hidden_size;
    let nd = config.num_directions();
    (0..config.num_layers * nd)
        .flat_map(|idx| {
            let i = config.layer_input_size(idx / nd);
            [3 * h * i, 3 * h * h, 3 * h, 3 * h]
        })
        .collect()
}

impl GpuParams {
    /// A stack with its own flat value and gradient buffers.
    pub(crate) fn new(ctx: &GpuContext, config: &GruConfig) -> Result<Self> {
        let lens = tensor_lens(config);
        let layout = Layout::for_device(ctx, &lens, None);
        let values = Flat::new(ctx, "gru_weights", &layout)?.ranges(&layout, &lens);
        let grads = Flat::new(ctx, "gru_grads", &layout)?.ranges(&layout, &lens);
        Self::within(ctx, config, &values, &grads)
    }

    /// A stack whose values are f16, in one buffer (each tensor at a multiple of 256
    /// bytes), with f32 gradients in a flat buffer where `grads` (mixed precision).
    /// Without, it has none: its `d_*` ranges are its values, which nothing binds, since
    /// inference workspaces record no backward.
    pub(crate) fn new_f16(ctx: &GpuContext, config: &GruConfig, grads: bool) -> Result<Self> {
        let lens = tensor_lens(config);
        // 256 bytes: 128 f16 values.
        let align = 128;
        let mut firsts = Vec::with_capacity(lens.len());
        let mut total = 0;
        for &n in &lens {
            firsts.push(total);
            total += n.max(1).div_ceil(align) * align;
        }
        let buffer = ctx.storage_as("gru_weights_f16", total, true)?;
        let values: Vec<Range> = firsts
            .iter()
            .zip(&lens)
            .map(|(&first, &len)| Range {
                buffer: buffer.clone(),
                offset: 2 * first as u64,
                len,
                half: true,
            })
            .collect();
        if grads {
            let layout = Layout::for_device(ctx, &lens, None);
            let grads = Flat::new(ctx, "gru_grads", &layout)?.ranges(&layout, &lens);
            return Self::within(ctx, config, &values, &grads);
        }
        Self::within(ctx, config, &values, &values)
    }

    /// A stack whose tensors are `values` and `grads` (in [`tensor_lens`] order, ranges
    /// of a model's flat buffers); only W_hhᵀ gets a buffer of its own (f16 when the
    /// values are).
    pub(crate) fn within(
        ctx: &GpuContext,
        config: &GruConfig,
        values: &[Range],
        grads: &[Range],
    ) -> Result<Self> {
        let h = config.hidden_size;
        let nd = config.num_directions();
        let half = values.first().is_some_and(|v| v.half);
        let mut dirs = Vec::new();
        let mut w_hh_t = Vec::new();
        for l in 0..config.num_layers {
            let label = format!("weight_hh_t_l{l}");
            w_hh_t.extend(slabs_as(ctx, &label, nd, 3 * h * h, half)?);
        }
        for ((v, g), w_hh_t) in values.chunks(4).zip(grads.chunks(4)).zip(w_hh_t) {
            dirs.push(DirParams {
                w_ih: v[0].clone(),
                w_hh: v[1].clone(),
                w_hh_t,
                b_ih: v[2].clone(),
                b_hh: v[3].clone(),
                d_w_ih: g[0].clone(),
                d_w_hh: g[1].clone(),
                d_b_ih: g[2].clone(),
                d_b_hh: g[3].clone(),
            });
        }
        Ok(GpuParams { dirs })
    }

    /// Uploads `w` (shapes already checked against the config).
    pub(crate) fn upload(&self, ctx: &GpuContext, w: &GruWeights) {
        for (p, d) in self.dirs.iter().zip(&w.dirs) {
            let pairs = [
                (&p.w_ih, &d.w_ih),
                (&p.w_hh, &d.w_hh),
                (&p.b_ih, &d.b_ih),
                (&p.b_hh, &d.b_hh),
            ];
            for (r, data) in pairs {
                ctx.queue
                    .write_buffer(&r.buffer, r.offset, &device_bytes(data, r.half));
            }
        }
    }

    /// Whether the values are f16 (an inference stack, [`GpuParams::new_f16`]).
    pub(crate) fn half(&self) -> bool {
        self.dirs.first().is_some_and(|d| d.w_ih.half)
    }

    /// (buffer, first, len) of the four values or the four gradients of every direction,
    /// in `GruWeights` order, for one readback (values of their type: f16 where
    /// [`GpuParams::half`]).
    pub(crate) fn parts(&self, grads: bool) -> Vec<(&wgpu::Buffer, usize, usize)> {
        let mut parts = Vec::new();
        for p in &self.dirs {
            let ranges = if grads {
                [&p.d_w_ih, &p.d_w_hh, &p.d_b_ih, &p.d_b_hh]
            } else {
                [&p.w_ih, &p.w_hh, &p.b_ih, &p.b_hh]
            };
            parts.extend(ranges.into_iter().map(|r| (&r.buffer, r.first(), r.len)));
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
