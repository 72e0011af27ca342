//! The embedding table: lookup and gradient (embedding.wgsl).

use crate::error::Result;
use crate::gpu::abi::EmbedParams;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch, Dispatch};

fn params(n: usize, dim: usize, vocab: usize, accumulate: bool) -> EmbedParams {
    EmbedParams {
        n: n as u32,
        dim: dim as u32,
        vocab: vocab as u32,
        accumulate: accumulate as u32,
    }
}

/// out[n, j] = table[tokens[n], j] for `n` positions of `dim` values.
pub(crate) fn embed_forward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    tokens: &wgpu::Buffer,
    table: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, false);
    let grid = flat_grid(ctx, n * dim);
    let bufs = [tokens, table, out];
    param_dispatch(
        ctx,
        Kernel::EmbedFwd,
        &[],
        "embed_fwd",
        bytemuck::bytes_of(&q),
        &bufs,
        grid,
    )
}

/// d_table[v, j] (+)= Σ d_x[p, j] over the positions p of token v, in the order `index`
/// ([offsets (V+1) | positions (N)]) lists them; `accumulate` adds (a later chunk).
pub(crate) fn embed_backward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    accumulate: bool,
    index: &wgpu::Buffer,
    d_x: &wgpu::Buffer,
    d_table: &wgpu::Buffer,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, accumulate);
    let grid = flat_grid(ctx, vocab * dim);
    let bufs = [index, d_x, d_table];
    param_dispatch(
        ctx,
        Kernel::EmbedBwd,
        &[],
        "embed_bwd",
        bytemuck::bytes_of(&q),
        &bufs,
        grid,
    )
}
