//! Dropout with a hashed mask (dropout.wgsl): the same dispatch maps an output gradient
//! back, since the mask is derived again from (step seed, site, index).

use crate::error::Result;
use crate::gpu::abi::DropoutSite;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch, Dispatch};
use crate::rng::dropout_threshold;

/// dst = src ⊙ mask / (1 − p) over `n` values at dropout site `site`; `step` is the
/// training uniform holding the step's seed. p = 0 copies. `(span, stride, offset)`
/// place the values in the whole batch when they are a chunk of it (value i is the
/// batch's (i / span)·stride + offset + i % span); `(n, n, 0)` for a whole batch.
pub(crate) fn dropout(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    (site, p, n): (u32, f32, usize),
    (span, stride, offset): (usize, usize, usize),
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (threshold, scale) = dropout_threshold(p);
    let q = DropoutSite {
        n: n as u32,
        site,
        threshold,
        scale,
        span: span.max(1) as u32,
        stride: stride as u32,
        offset: offset as u32,
        _p0: 0,
    };
    let grid = flat_grid(ctx, n);
    param_dispatch(
        ctx,
        Kernel::Dropout,
        &[],
        "dropout",
        bytemuck::bytes_of(&q),
        &[step, src, dst],
        grid,
    )
}
