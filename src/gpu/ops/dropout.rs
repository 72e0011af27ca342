//! Dropout with a hashed mask (dropout.wgsl): the same dispatch maps an output gradient
//! back, since the mask is derived again from (step seed, site, index).

use crate::error::Result;
use crate::gpu::abi::DropoutSite;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch_as, Dispatch};
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
    dropout_as(
        ctx,
        step,
        (site, p, n),
        (span, stride, offset),
        (src, dst),
        false,
    )
}

/// [`dropout`] of f16 activations where `half` (mixed precision's forward).
pub(crate) fn dropout_as(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    (site, p, n): (u32, f32, usize),
    (span, stride, offset): (usize, usize, usize),
    (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
    half: bool,
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
    param_dispatch_as(
        ctx,
        (Kernel::Dropout, Elems::all(half)),
        &[],
        "dropout",
        bytemuck::bytes_of(&q),
        &[step, src, dst],
        grid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::abi::TrainStep;
    use crate::gpu::ops::testutil::*;
    use crate::rng::dropout_keeps;

    /// The mask is the CPU reference's, and a chunk of rows [1, 3) of a [T = 3, B = 5,
    /// F = 7] batch draws exactly the whole batch's mask at its places.
    #[test]
    fn masks_match_the_reference_whole_and_in_chunks() {
        let Some(ctx) = ctx() else { return };
        let (t, b, f, p, site) = (3, 5, 7, 0.4, 2u32);
        let step = TrainStep {
            seed: 12345,
            ..Default::default()
        };
        let step = ctx.uniform("step", bytemuck::bytes_of(&step)).unwrap();
        let n = t * b * f;
        let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32).collect();
        let src = upload(&ctx, &x);
        let dst = upload(&ctx, &vec![0.0; n]);
        run(
            &ctx,
            &[dropout(&ctx, &step, (site, p, n), (n, n, 0), &src, &dst).unwrap()],
        );
        let (threshold, scale) = dropout_threshold(p);
        let want: Vec<f64> = (0..n)
            .map(|i| match dropout_keeps(12345, site, i as u32, threshold) {
                true => x[i] as f64 * scale as f64,
                false => 0.0,
            })
            .collect();
        let whole = read(&ctx, &dst, n);
        close(&whole, &want, "whole batch");
        let (row0, rows) = (1, 2);
        let part: Vec<f32> = (0..t)
            .flat_map(|s| x[(s * b + row0) * f..(s * b + row0 + rows) * f].to_vec())
            .collect();
        let m = part.len();
        let (src, dst) = (upload(&ctx, &part), upload(&ctx, &vec![0.0; m]));
        let place = (rows * f, b * f, row0 * f);
        run(
            &ctx,
            &[dropout(&ctx, &step, (site, p, m), place, &src, &dst).unwrap()],
        );
        let got = read(&ctx, &dst, m);
        let want: Vec<f64> = (0..t)
            .flat_map(|s| whole[(s * b + row0) * f..(s * b + row0 + rows) * f].to_vec())
            .map(|v| v as f64)
            .collect();
        close(&got, &want, "chunk");
    }
}
