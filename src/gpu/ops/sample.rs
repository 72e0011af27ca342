//! Drawing the next token on the device (sample.wgsl).

use crate::error::Result;
use crate::generate::Sampling;
use crate::gpu::abi::SampleParams;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{param_dispatch, Dispatch};

/// Picks a token from the `cols` logits at `offset`, writes it to `tokens[0]` (the next
/// step's input) and appends it to `generated` ([count, ring of `ring` tokens]).
pub(crate) fn sample(
    ctx: &GpuContext,
    sampling: &Sampling,
    (cols, offset): (usize, usize),
    ring: usize,
    logits: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
    generated: &wgpu::Buffer,
) -> Result<Dispatch> {
    let sp = SampleParams {
        cols: cols as u32,
        top_k: sampling.top_k.min(cols) as u32,
        temperature: sampling.temperature,
        offset: offset as u32,
        ring: ring as u32,
        seed_lo: sampling.seed as u32,
        seed_hi: (sampling.seed >> 32) as u32,
        ..Default::default()
    };
    param_dispatch(
        ctx,
        Kernel::Sample,
        &[],
        "sample",
        bytemuck::bytes_of(&sp),
        &[logits, tokens, generated],
        [1, 1, 1],
    )
}
