//! Sums in a fixed order: column sums (colsum.wgsl) and the adding of split slices
//! (reduce_slices.wgsl).

use crate::error::Result;
pub(crate) use crate::gpu::abi::ReduceParams;
use crate::gpu::abi::{ColsumParams, WG};
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{groups, param_dispatch, Dispatch, Traffic};

/// Rows per colsum slice on software adapters: each invocation's loop stays under
/// llvmpipe's 65,535 iterations, and few slices keep its dispatches few.
const COLSUM_ROWS_SOFTWARE: usize = 4096;

/// Rows per slice in the GPU builds: many short columns, so a [T·B, 3H] bias gradient
/// spreads over hundreds of workgroups (its columns times T·B / 256 slices) instead of
/// a few with 4,096 dependent loads each; reduce_slices then adds the slices in order.
const COLSUM_ROWS_GPU: usize = 256;

/// Rows per colsum slice on this device.
fn colsum_rows(ctx: &GpuContext) -> usize {
    if ctx.gpu_builds() {
        COLSUM_ROWS_GPU
    } else {
        COLSUM_ROWS_SOFTWARE
    }
}

/// f32 values of scratch a column sum over `m` rows of `n` columns needs on `ctx`.
pub(crate) fn colsum_scratch(ctx: &GpuContext, m: usize, n: usize) -> usize {
    match m.div_ceil(colsum_rows(ctx)) {
        0 | 1 => 0,
        s => s * n,
    }
}

/// out[off + m·ld + n] (+)= Σ_z part[z, m, n] (+ bias[n]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce_slices(
    ctx: &GpuContext,
    label: &str,
    r: ReduceParams,
    accumulate: bool,
    bias: Option<&dyn Bind>,
    part: &dyn Bind,
    out: &dyn Bind,
) -> Result<Dispatch> {
    let total = groups(r.m as usize * r.n as usize, WG);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    let constants = [
        ("ACCUMULATE", accumulate as u32),
        ("BIAS", bias.is_some() as u32),
    ];
    let buffers = [part, bias.unwrap_or(part), out];
    let mut d = param_dispatch(
        ctx,
        Kernel::ReduceSlices,
        &constants,
        label,
        bytemuck::bytes_of(&r),
        &buffers,
        [gx, total.div_ceil(gx), 1],
    )?;
    let (mn, n) = (r.m as u64 * r.n as u64, r.n as u64);
    let read = r.slices as u64 * mn + mn * accumulate as u64 + n * bias.is_some() as u64;
    d.traffic = Traffic::floats(read, mn);
    Ok(d)
}

/// out[N] (+)= column sums of x[M, N]; long columns run in slices through `scratch`
/// (at least [`colsum_scratch`] values).
#[allow(clippy::too_many_arguments)]
pub(crate) fn colsum(
    ctx: &GpuContext,
    label: &str,
    m: usize,
    n: usize,
    x: &dyn Bind,
    out: &dyn Bind,
    accumulate: bool,
    scratch: &dyn Bind,
) -> Result<Vec<Dispatch>> {
    colsums(ctx, label, (m, n), (x, None), out, accumulate, scratch)
}

/// Column sums of x[M, N] into out[0 .. N] and of x2[M, N] into out[second .. second +
/// N] in one dispatch (and one reduction of the slices), zeros between: a layer's two
/// bias gradients, whose tensors lie one after the other (`bind::span`). `scratch`
/// holds at least [`colsum_scratch`] of (M, second + N) values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn colsum_pair(
    ctx: &GpuContext,
    label: &str,
    (m, n): (usize, usize),
    (x, x2): (&dyn Bind, &dyn Bind),
    (out, second): (&dyn Bind, usize),
    accumulate: bool,
    scratch: &dyn Bind,
) -> Result<Vec<Dispatch>> {
    colsums(
        ctx,
        label,
        (m, n),
        (x, Some((x2, second))),
        out,
        accumulate,
        scratch,
    )
}

fn colsums(
    ctx: &GpuContext,
    label: &str,
    (m, n): (usize, usize),
    (x, x2): (&dyn Bind, Option<(&dyn Bind, usize)>),
    out: &dyn Bind,
    accumulate: bool,
    scratch: &dyn Bind,
) -> Result<Vec<Dispatch>> {
    let rows = colsum_rows(ctx);
    let slices = m.div_ceil(rows).max(1);
    let split = slices > 1;
    let second = x2.map_or(0, |(_, s)| s);
    let width = if x2.is_some() { second + n } else { n };
    let params = ColsumParams {
        m: m as u32,
        n: n as u32,
        rows_per_slice: rows as u32,
        second: second as u32,
    };
    let constants = [("ACCUMULATE", (accumulate && !split) as u32)];
    let target = if split { scratch } else { out };
    let (kernel, buffers): (Kernel, Vec<&dyn Bind>) = match x2 {
        Some((x2, _)) => (Kernel::ColsumPair, vec![x, target, x2]),
        None => (Kernel::Colsum, vec![x, target]),
    };
    let grid = [groups(width, WG), slices as u32, 1];
    let mut list = vec![param_dispatch(
        ctx,
        kernel,
        &constants,
        label,
        bytemuck::bytes_of(&params),
        &buffers,
        grid,
    )?];
    let inputs = if x2.is_some() { 2 } else { 1 };
    list[0].traffic = Traffic::floats(inputs * (m * n) as u64, (slices * width) as u64);
    if split {
        let r = ReduceParams {
            m: 1,
            n: width as u32,
            slices: slices as u32,
            ld: width as u32,
            off: 0,
            ..Default::default()
        };
        list.push(reduce_slices(
            ctx, label, r, accumulate, None, scratch, out,
        )?);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn colsum_long_and_narrow() {
        let Some(ctx) = ctx() else { return };
        colsum_cases(&ctx, &[(1, 1), (7, 3), (1000, 65), (70_000, 12)]);
    }

    /// The GPU builds' slices of 256 rows, forced on this adapter: one slice, slices cut
    /// at 256 and past it, and many slices.
    #[test]
    fn colsum_in_the_gpu_slices() {
        let Some(ctx) = gpu_builds_ctx() else { return };
        assert_eq!(colsum_rows(&ctx), COLSUM_ROWS_GPU);
        colsum_cases(
            &ctx,
            &[
                (1, 1),
                (255, 3),
                (256, 67),
                (257, 130),
                (6400, 65),
                (70_000, 12),
            ],
        );
    }

    /// Two matrices' column sums into one output, the second's at an offset, the
    /// columns between written 0 (with and without accumulating; one slice and many,
    /// on the software and the GPU slices).
    #[test]
    fn colsum_pair_sums_both_and_zeroes_between() {
        for ctx in [ctx(), gpu_builds_ctx()].into_iter().flatten() {
            let mut rng = Rng::new(3);
            for &(m, n, gap) in &[(1, 1, 0), (7, 3, 5), (600, 67, 61), (5000, 12, 52)] {
                for acc in [false, true] {
                    let second = n + gap;
                    let x = rng.uniform_vec(m * n, -1.0, 1.0);
                    let x2 = rng.uniform_vec(m * n, -1.0, 1.0);
                    let mut o = rng.uniform_vec(second + n, -1.0, 1.0);
                    // The padding holds zeros, as the flat buffers' does.
                    o[n..second].iter_mut().for_each(|v| *v = 0.0);
                    let sum =
                        |a: &[f32], j: usize| (0..m).map(|i| a[i * n + j] as f64).sum::<f64>();
                    let want: Vec<f64> = (0..second + n)
                        .map(|c| {
                            let s = if c < n {
                                sum(&x, c)
                            } else if c >= second {
                                sum(&x2, c - second)
                            } else {
                                0.0
                            };
                            s + if acc { o[c] as f64 } else { 0.0 }
                        })
                        .collect();
                    let (xb, x2b, ob) = (upload(&ctx, &x), upload(&ctx, &x2), upload(&ctx, &o));
                    let len = colsum_scratch(&ctx, m, second + n).max(1);
                    let scratch = ctx.storage("scratch", len).unwrap();
                    let list = colsum_pair(
                        &ctx,
                        "pair",
                        (m, n),
                        (&xb, &x2b),
                        (&ob, second),
                        acc,
                        &scratch,
                    )
                    .unwrap();
                    run(&ctx, &list);
                    let got = read(&ctx, &ob, second + n);
                    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (*g as f64 - w).abs() <= 1e-4 * (m as f64).sqrt(),
                            "pair m{m} n{n} gap{gap}: column {c}: got {g} want {w}"
                        );
                    }
                }
            }
        }
    }

    fn colsum_cases(ctx: &GpuContext, shapes: &[(usize, usize)]) {
        let mut rng = Rng::new(2);
        for &(m, n) in shapes {
            for acc in [false, true] {
                let x = rng.uniform_vec(m * n, -1.0, 1.0);
                let o = rng.uniform_vec(n, -1.0, 1.0);
                let want: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..m).map(|i| x[i * n + j] as f64).sum::<f64>()
                            + if acc { o[j] as f64 } else { 0.0 }
                    })
                    .collect();
                let (xb, ob) = (upload(ctx, &x), upload(ctx, &o));
                let scratch = ctx
                    .storage("scratch", colsum_scratch(ctx, m, n).max(1))
                    .unwrap();
                run(
                    ctx,
                    &colsum(ctx, "colsum", m, n, &xb, &ob, acc, &scratch).unwrap(),
                );
                let got = read(ctx, &ob, n);
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    // f32 sums of m terms of size <= 1: error grows like sqrt(m)·eps·|partial sums|.
                    assert!(
                        (*g as f64 - w).abs() <= 1e-4 * (m as f64).sqrt(),
                        "colsum m{m} n{n}: column {j}: got {g} want {w}"
                    );
                }
            }
        }
    }
}
