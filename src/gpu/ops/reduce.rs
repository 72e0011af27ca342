//! Sums in a fixed order: column sums (colsum.wgsl) and the adding of split slices
//! (reduce_slices.wgsl).

use crate::error::Result;
use crate::gpu::abi::{ColsumParams, ReduceParams, WG};
use crate::gpu::bind::{span, Bind, Range};
use crate::gpu::context::GpuContext;
use crate::gpu::flat::ALIGN;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{groups, param_dispatch, param_dispatch_as, Dispatch, Traffic};

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

/// One sum of split slices: out[off + m·ld + n] (+)= Σ_z part[src + z·M·N + m·N + n],
/// M = `m`, N = `n`, z < `slices`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slices {
    pub m: u32,
    pub n: u32,
    pub slices: u32,
    pub ld: u32,
    pub off: u32,
    pub src: u32,
}

impl Slices {
    fn values(&self) -> u64 {
        self.m as u64 * self.n as u64
    }

    /// Where another sum's slices may start in the same scratch: past these, at the
    /// next binding offset every adapter accepts (`flat::ALIGN` values).
    pub(crate) fn end(&self) -> usize {
        (self.src as usize + self.slices as usize * self.values() as usize).next_multiple_of(ALIGN)
    }
}

/// out[off + m·ld + n] (+)= Σ_z part[src + z·M·N + m·N + n] (+ bias[n]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce_slices(
    ctx: &GpuContext,
    label: &str,
    r: Slices,
    accumulate: bool,
    bias: Option<&dyn Bind>,
    part: &dyn Bind,
    out: &dyn Bind,
) -> Result<Dispatch> {
    reduce(
        ctx,
        label,
        (r, None),
        (accumulate, Elems::F32),
        bias,
        part,
        out,
    )
}

/// [`reduce_slices`] into an output (and from a bias) of the storage types `elems`
/// (`out`, `wt`): the sums stay f32 and round once, on the store.
pub(crate) fn reduce_slices_as(
    ctx: &GpuContext,
    label: &str,
    r: Slices,
    (accumulate, elems): (bool, Elems),
    bias: Option<&dyn Bind>,
    part: &dyn Bind,
    out: &dyn Bind,
) -> Result<Dispatch> {
    reduce(ctx, label, (r, None), (accumulate, elems), bias, part, out)
}

/// Sums left in slices of `part` (by `gemm_deferred`, [`colsum_deferred`]) into
/// two outputs: one dispatch where both outputs can be bound as one range (a weight
/// gradient and its bias's, `bind::span`), else one each; none for a sum that was not
/// split (its producer wrote its output).
pub(crate) fn reduce_pending(
    ctx: &GpuContext,
    label: &str,
    [(a, out_a), (b, out_b)]: [(Option<Slices>, &Range); 2],
    accumulate: bool,
    part: &dyn Bind,
) -> Result<Vec<Dispatch>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            if let Some((both, gap)) = span(out_a, out_b, ctx.storage_limit()) {
                let b = Slices {
                    off: b.off + gap,
                    ..b
                };
                return Ok(vec![reduce(
                    ctx,
                    label,
                    (a, Some(b)),
                    (accumulate, Elems::F32),
                    None,
                    part,
                    &both,
                )?]);
            }
            Ok(vec![
                reduce_slices(ctx, label, a, accumulate, None, part, out_a)?,
                reduce_slices(ctx, label, b, accumulate, None, part, out_b)?,
            ])
        }
        (Some(r), None) => Ok(vec![reduce_slices(
            ctx, label, r, accumulate, None, part, out_a,
        )?]),
        (None, Some(r)) => Ok(vec![reduce_slices(
            ctx, label, r, accumulate, None, part, out_b,
        )?]),
        (None, None) => Ok(Vec::new()),
    }
}

/// One reduce_slices dispatch over one or two sums.
fn reduce(
    ctx: &GpuContext,
    label: &str,
    (a, b): (Slices, Option<Slices>),
    (accumulate, elems): (bool, Elems),
    bias: Option<&dyn Bind>,
    part: &dyn Bind,
    out: &dyn Bind,
) -> Result<Dispatch> {
    let b2 = b.unwrap_or_default();
    let values = a.values() + b2.values();
    let total = groups(values as usize, WG);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    let constants = [
        ("ACCUMULATE", accumulate as u32),
        ("BIAS", bias.is_some() as u32),
    ];
    let q = ReduceParams {
        m: a.m,
        n: a.n,
        slices: a.slices,
        ld: a.ld,
        off: a.off,
        src: a.src,
        m2: b2.m,
        n2: b2.n,
        slices2: b2.slices,
        ld2: b2.ld,
        off2: b2.off,
        src2: b2.src,
        ..Default::default()
    };
    let buffers = [part, bias.unwrap_or(part), out];
    let mut d = param_dispatch_as(
        ctx,
        (Kernel::ReduceSlices, elems),
        &constants,
        label,
        bytemuck::bytes_of(&q),
        &buffers,
        [gx, total.div_ceil(gx), 1],
    )?;
    let read = a.slices as u64 * a.values()
        + b2.slices as u64 * b2.values()
        + values * accumulate as u64
        + a.n as u64 * bias.is_some() as u64;
    d.traffic = Traffic::floats(read, values);
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
    let (d, split) = colsum_deferred(ctx, label, (m, n), (x, None), out, accumulate, (scratch, 0))?;
    let mut list = vec![d];
    if let Some(r) = split {
        list.push(reduce_slices(
            ctx, label, r, accumulate, None, scratch, out,
        )?);
    }
    Ok(list)
}

/// Column sums of x[M, N] into out[0 .. N] and, with `x2 = Some((x2, second))`, of
/// x2[M, N] into out[second .. second + N] in the same dispatch, zeros between: a
/// layer's two bias gradients, whose tensors lie one after the other (`bind::span`).
/// Long columns leave their slices in `scratch` from value `src` (a multiple of
/// `flat::ALIGN`; at least [`colsum_scratch`] of (M, width) values past it) for a
/// reduction the caller records with another sum's ([`reduce_pending`]): the dispatch
/// and, when it slices, its slices (a single slice is written to `out` directly,
/// accumulating by `accumulate`).
pub(crate) fn colsum_deferred(
    ctx: &GpuContext,
    label: &str,
    (m, n): (usize, usize),
    (x, x2): (&dyn Bind, Option<(&dyn Bind, usize)>),
    out: &dyn Bind,
    accumulate: bool,
    (scratch, src): (&dyn Bind, usize),
) -> Result<(Dispatch, Option<Slices>)> {
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
    // The slices from value `src` of the scratch (256-byte aligned).
    let part = Range {
        buffer: scratch.raw().clone(),
        offset: scratch.start() + 4 * src as u64,
        len: slices * width,
        half: false,
    };
    let target: &dyn Bind = if split { &part } else { out };
    let (kernel, buffers): (Kernel, Vec<&dyn Bind>) = match x2 {
        Some((x2, _)) => (Kernel::ColsumPair, vec![x, target, x2]),
        None => (Kernel::Colsum, vec![x, target]),
    };
    let grid = [groups(width, WG), slices as u32, 1];
    let mut d = param_dispatch(
        ctx,
        kernel,
        &constants,
        label,
        bytemuck::bytes_of(&params),
        &buffers,
        grid,
    )?;
    let inputs = if x2.is_some() { 2 } else { 1 };
    d.traffic = Traffic::floats(inputs * (m * n) as u64, (slices * width) as u64);
    let r = split.then_some(Slices {
        m: 1,
        n: width as u32,
        slices: slices as u32,
        ld: width as u32,
        off: 0,
        src: src as u32,
    });
    Ok((d, r))
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
    /// on the software and the GPU slices), their slices after another sum's in the
    /// scratch, and both reduced together into one buffer (`reduce_pending`).
    #[test]
    fn colsum_pair_sums_both_and_zeroes_between() {
        for ctx in [ctx(), gpu_builds_ctx()].into_iter().flatten() {
            let mut rng = Rng::new(3);
            for &(m, n, gap) in &[(1, 1, 0), (7, 3, 5), (600, 67, 61), (5000, 12, 52)] {
                for acc in [false, true] {
                    let second = n + gap;
                    let width = second + n;
                    let x = rng.uniform_vec(m * n, -1.0, 1.0);
                    let x2 = rng.uniform_vec(m * n, -1.0, 1.0);
                    // The other sum: 3 slices of [2, 5] at the scratch's start, its
                    // output [2, 5] at the buffer's start, the pair's after it.
                    let first = Slices {
                        m: 2,
                        n: 5,
                        slices: 3,
                        ld: 5,
                        off: 0,
                        src: 0,
                    };
                    let at = first.end();
                    let other = rng.uniform_vec(30, -1.0, 1.0);
                    let mut o = rng.uniform_vec(ALIGN + width, -1.0, 1.0);
                    // The padding holds zeros, as the flat buffers' does.
                    o[ALIGN + n..ALIGN + second]
                        .iter_mut()
                        .for_each(|v| *v = 0.0);
                    let sum =
                        |a: &[f32], j: usize| (0..m).map(|i| a[i * n + j] as f64).sum::<f64>();
                    let held = |i: usize| if acc { o[i] as f64 } else { 0.0 };
                    let mut want: Vec<f64> = (0..10)
                        .map(|e| (0..3).map(|z| other[z * 10 + e] as f64).sum::<f64>() + held(e))
                        .collect();
                    want.extend((0..width).map(|c| {
                        let s = if c < n {
                            sum(&x, c)
                        } else if c >= second {
                            sum(&x2, c - second)
                        } else {
                            0.0
                        };
                        s + held(ALIGN + c)
                    }));
                    let (xb, x2b, ob) = (upload(&ctx, &x), upload(&ctx, &x2), upload(&ctx, &o));
                    let range = |offset: usize, len| Range {
                        buffer: ob.clone(),
                        offset: 4 * offset as u64,
                        len,
                        half: false,
                    };
                    let (out_a, out_b) = (range(0, 10), range(ALIGN, width));
                    let mut s = other.clone();
                    s.resize(at + colsum_scratch(&ctx, m, width).max(1), 0.0);
                    let scratch = upload(&ctx, &s);
                    let (d, slices) = colsum_deferred(
                        &ctx,
                        "pair",
                        (m, n),
                        (&xb, Some((&x2b, second))),
                        &out_b,
                        acc,
                        (&scratch, at),
                    )
                    .unwrap();
                    let pending = [(Some(first), &out_a), (slices, &out_b)];
                    let mut list = vec![d];
                    list.extend(reduce_pending(&ctx, "both", pending, acc, &scratch).unwrap());
                    // One reduction for both where the pair's columns were sliced.
                    assert_eq!(list.len(), 2, "m{m}");
                    run(&ctx, &list);
                    let got = read(&ctx, &ob, ALIGN + width);
                    let got: Vec<f32> = got[..10].iter().chain(&got[ALIGN..]).copied().collect();
                    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (*g as f64 - w).abs() <= 1e-4 * (m as f64).sqrt(),
                            "pair m{m} n{n} gap{gap}: value {c}: got {g} want {w}"
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
