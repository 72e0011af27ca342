//! Every activation buffer for one (T, B), allocated once, and the recorded forward and
//! backward dispatch lists that bind them (recorded by `gpu::plan`).

use crate::config::GruConfig;
use crate::error::Result;
use crate::gpu::bind::Range;
use crate::gpu::context::{value_bytes, GpuContext};
use crate::gpu::flat::ALIGN;
use crate::gpu::ops::reduce::Slices;
use crate::gpu::ops::{step_slots, Dispatch};
use crate::precision::Precision;

/// Buffers of one layer and direction that backward needs from forward. A layer's
/// directions share each buffer (`slabs`), so that one step dispatch can bind both.
pub(crate) struct DirBuffers {
    pub hs: Range,    // [T+1, B, H] step order: hs[0] = h0, hs[T] = h_n
    pub saved: Range, // [T, B, 4H] step order: r, z, n, (W_hn h + b_hn | r*h)
    pub d_hs: Range,  // [T+1, B, H] step order: d_hs[T] = d h_n, d_hs[0] = d h0
}

/// `count` tensors of `len` f32 values in one buffer, each at an aligned offset.
pub(crate) fn slabs(ctx: &GpuContext, label: &str, count: usize, len: usize) -> Result<Vec<Range>> {
    slabs_as(ctx, label, count, len, false)
}

/// [`slabs`] of f16 values where `half`.
pub(crate) fn slabs_as(
    ctx: &GpuContext,
    label: &str,
    count: usize,
    len: usize,
    half: bool,
) -> Result<Vec<Range>> {
    // Empty slabs (an inference workspace's gradients) take no room.
    let stride = if len == 0 { 0 } else { slab_stride(len, half) };
    let buffer = ctx.storage_as(label, count * stride, half)?;
    let bytes = value_bytes(half);
    Ok((0..count)
        .map(|i| Range {
            buffer: buffer.clone(),
            offset: bytes * (i * stride) as u64,
            len,
            half,
        })
        .collect())
}

/// Values from one slab's start to the next's: whole multiples of 256 bytes.
fn slab_stride(len: usize, half: bool) -> usize {
    let align = ALIGN * 4 / value_bytes(half) as usize;
    len.max(1).div_ceil(align) * align
}

pub(crate) struct Workspace {
    pub t_len: usize,
    pub batch: usize,
    pub x: wgpu::Buffer,         // [T, B, I] time-major
    pub lengths: wgpu::Buffer,   // [B] u32
    pub outs: Vec<wgpu::Buffer>, // per layer [T, B, dirs*H]
    /// Per layer: dL/d(layer input) [T, B, I_k]; `d_ins[k]` is layer k-1's output gradient.
    pub d_ins: Vec<wgpu::Buffer>,
    pub d_out_top: wgpu::Buffer, // [T, B, dirs*H]
    /// Per direction [T, B, 3H] time order, shared by every layer.
    pub gx: Vec<Range>,
    /// Per direction [T, B, 3H] time order, shared by every layer.
    pub d_gx: Vec<Range>,
    /// Per direction [T, B, 3H] step order, shared by every layer.
    pub d_gh: Vec<Range>,
    pub scratch: wgpu::Buffer, // split-K partial products [slices, M, N], shared
    /// Where the backward leaves the first layer's input gradient in `scratch` as
    /// split-K slices instead of in `d_ins[0]` (`plan::BackwardNeeds::d_input_slices`).
    pub d_input_slices: Option<Slices>,
    pub dirs: Vec<DirBuffers>,
    pub step_slots: wgpu::Buffer,
    pub slot_stride: u32,
    pub staging: wgpu::Buffer,
    /// The input, outputs, gx, states and saved values are f16 (f16 inference and mixed
    /// precision; the gradients stay f32).
    pub half: bool,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

impl Workspace {
    /// The buffers, with empty dispatch lists; `scratch` f32 values of split-K scratch.
    /// f16 activations where `precision` is half ([`Workspace::half`]), and no room for
    /// the backward's buffers in an f16 inference workspace; an empty staging buffer
    /// without `readback`.
    pub(crate) fn alloc(
        ctx: &GpuContext,
        cfg: &GruConfig,
        (t_len, batch, readback): (usize, usize, bool),
        scratch: usize,
        precision: Precision,
    ) -> Result<Self> {
        let h = cfg.hidden_size;
        let nd = cfg.num_directions();
        let tb = t_len * batch;
        let half = precision.is_half();
        // The backward's buffers: none in an inference workspace.
        let grad = |n: usize| if precision.trains() { n } else { 0 };
        let mut outs = Vec::new();
        let mut d_ins = Vec::new();
        for l in 0..cfg.num_layers {
            outs.push(ctx.storage_as(&format!("output_l{l}"), tb * nd * h, half)?);
            d_ins.push(ctx.storage(&format!("d_input_l{l}"), grad(tb * cfg.layer_input_size(l)))?);
        }
        let mut dirs = Vec::new();
        for l in 0..cfg.num_layers {
            let hs = slabs_as(ctx, &format!("hs_l{l}"), nd, (t_len + 1) * batch * h, half)?;
            let saved = slabs_as(ctx, &format!("saved_l{l}"), nd, tb * 4 * h, half)?;
            let d_hs = slabs(
                ctx,
                &format!("d_hs_l{l}"),
                nd,
                grad((t_len + 1) * batch * h),
            )?;
            for ((hs, saved), d_hs) in hs.into_iter().zip(saved).zip(d_hs) {
                dirs.push(DirBuffers { hs, saved, d_hs });
            }
        }
        let param_total = cfg.param_count() + cfg.num_layers * nd * 6 * h; // biases even when off
        let ld_bh = cfg.num_layers * nd * batch * h;
        let staging_len = match readback {
            true => (tb * nd * h + ld_bh)
                .max(tb * cfg.input_size + ld_bh)
                .max(param_total),
            false => 0,
        };
        let (step_slots, slot_stride) = step_slots(ctx, t_len)?;
        Ok(Workspace {
            t_len,
            batch,
            x: ctx.storage_as("input", tb * cfg.input_size, half)?,
            lengths: ctx.storage("lengths", batch)?,
            outs,
            d_ins,
            d_out_top: ctx.storage("d_output", grad(tb * nd * h))?,
            gx: slabs_as(ctx, "gx", nd, tb * 3 * h, half)?,
            d_gx: slabs(ctx, "d_gx", nd, grad(tb * 3 * h))?,
            d_gh: slabs(ctx, "d_gh", nd, grad(tb * 3 * h))?,
            scratch: ctx.storage("scratch", scratch)?,
            d_input_slices: None,
            dirs,
            step_slots,
            slot_stride,
            staging: ctx.staging(staging_len)?,
            half,
            forward: Vec::new(),
            backward: Vec::new(),
        })
    }

    /// The most batch rows one workspace of `t_len` steps can hold on this device: every
    /// buffer must fit in one storage binding and every GEMM grid in one dispatch.
    pub(crate) fn max_rows(ctx: &GpuContext, cfg: &GruConfig, t_len: usize) -> usize {
        let h = cfg.hidden_size;
        let widest_input = (0..cfg.num_layers)
            .map(|l| cfg.layer_input_size(l))
            .max()
            .unwrap_or(0);
        // A layer's directions share their buffers (each direction's slab padded by
        // less than ALIGN values).
        let nd = cfg.num_directions();
        let floats_per_row = (t_len * (nd * 4 * h).max(cfg.output_size()).max(widest_input))
            .max(nd * (t_len + 1) * h);
        let limit = ((ctx.storage_limit() / 4) as usize).saturating_sub(nd * ALIGN);
        let by_memory = limit / floats_per_row.max(1);
        by_memory.min(grid_rows(
            ctx.limits.max_compute_workgroups_per_dimension,
            t_len,
        ))
    }

    /// The sequence input [T, B, I] (time-major).
    pub(crate) fn input(&self) -> &wgpu::Buffer {
        &self.x
    }
    /// Per-row lengths [B] (u32).
    pub(crate) fn lengths(&self) -> &wgpu::Buffer {
        &self.lengths
    }
    /// The top layer's output [T, B, dirs·H].
    pub(crate) fn output(&self) -> &wgpu::Buffer {
        &self.outs[self.outs.len() - 1]
    }
    /// The gradient of the top layer's output, what backward starts from.
    pub(crate) fn d_output(&self) -> &wgpu::Buffer {
        &self.d_out_top
    }
    /// The gradient of the sequence input, what backward ends with.
    pub(crate) fn d_input(&self) -> &wgpu::Buffer {
        &self.d_ins[0]
    }
    /// The input gradient as the backward left it: `d_ins[0]` (one slice), or its
    /// split-K slices from the scratch's start (`d_input_slices`).
    pub(crate) fn d_input_slices(&self) -> (&wgpu::Buffer, usize) {
        match self.d_input_slices {
            Some(r) => (&self.scratch, r.slices as usize),
            None => (&self.d_ins[0], 1),
        }
    }
    /// The top layer's states of direction `d`, [T+1, B, H] in step order: h0 first,
    /// h_n at [`Workspace::final_state_offset`].
    pub(crate) fn states(&self, d: usize) -> &Range {
        &self.dirs[self.top_dir(d)].hs
    }
    /// Their gradients, same layout: d h_n is read at the final-state offset, d h0 is
    /// written at 0.
    pub(crate) fn d_states(&self, d: usize) -> &Range {
        &self.dirs[self.top_dir(d)].d_hs
    }
    /// Byte offset of the final state (row T) from the start of a states range.
    pub(crate) fn final_state_offset(&self, hidden: usize) -> u64 {
        value_bytes(self.half) * (self.t_len * self.batch * hidden) as u64
    }
    fn top_dir(&self, d: usize) -> usize {
        let nd = self.dirs.len() / self.outs.len();
        self.dirs.len() - nd + d
    }

    /// The input buffer of layer `l`: the sequence for layer 0, else the layer below's output.
    pub(crate) fn layer_input(&self, l: usize) -> &wgpu::Buffer {
        if l == 0 {
            &self.x
        } else {
            &self.outs[l - 1]
        }
    }
}

/// The most batch rows of `t_len` steps whose grids fit `max_dim` workgroups per
/// dimension: a step kernel's y is one workgroup per TB (8) rows, and a GEMM's y one
/// per tile of at least 16 of its T·B rows.
pub(crate) fn grid_rows(max_dim: u32, t_len: usize) -> usize {
    let max_dim = max_dim as usize;
    let steps = max_dim * crate::gpu::abi::TB as usize;
    let gemm = max_dim * crate::gpu::ops::gemm::MIN_TILE_ROWS as usize / t_len.max(1);
    steps.min(gemm)
}

#[cfg(test)]
mod tests {
    use super::grid_rows;

    /// WebGPU's 65,535 workgroups per dimension: one step takes at most 524,280 rows
    /// (8 per workgroup), T steps at most 65,535 · 16 / T.
    #[test]
    fn rows_per_chunk_keep_every_grid_within_the_limit() {
        assert_eq!(grid_rows(65_535, 1), 524_280);
        assert_eq!(grid_rows(65_535, 2), 524_280);
        assert_eq!(grid_rows(65_535, 64), 16_383);
        assert_eq!(grid_rows(65_535, 2_000_000), 0);
    }
}
