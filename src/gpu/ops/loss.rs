//! Losses from logits and their running totals (loss.wgsl, metrics.wgsl).

use crate::error::Result;
use crate::gpu::abi::MetricParams;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{buffers_dispatch, flat_grid, param_dispatch, row_grid, Dispatch};
use crate::model::Loss;

/// Most classes the software build of the cross-entropy takes: its 8 lanes pass over a
/// row three times, at most 3 · 100,000 / 8 loop iterations, under llvmpipe's 65,535.
const SOFTWARE_CE_COLS: usize = 100_000;

/// Per-row loss statistics [rows, 3] and d_logits for `rows` rows of `cols` logits;
/// `params` is the `LossParams` uniform the caller writes per batch (it holds the count).
pub(crate) fn loss(
    ctx: &GpuContext,
    kind: Loss,
    (rows, cols): (usize, usize),
    params: &wgpu::Buffer,
    [logits, targets, d_logits, stats]: [&wgpu::Buffer; 4],
) -> Result<Dispatch> {
    let (kernel, grid) = match kind {
        // One workgroup per row: on a software adapter with its own builds one subgroup
        // of 8 lanes (its barriers switch nothing), where its passes over the row stay
        // under llvmpipe's loop-iteration cap.
        Loss::CrossEntropy if ctx.subgroup_builds() && cols <= SOFTWARE_CE_COLS => {
            (Kernel::CrossEntropySw, row_grid(ctx, rows))
        }
        Loss::CrossEntropy => (Kernel::CrossEntropy, row_grid(ctx, rows)),
        Loss::BinaryCrossEntropy => (Kernel::BinaryCrossEntropy, flat_grid(ctx, rows)),
        Loss::MeanSquaredError => (Kernel::MeanSquaredError, flat_grid(ctx, rows)),
    };
    buffers_dispatch(
        ctx,
        kernel,
        "loss",
        &[params, logits, targets, d_logits, stats],
        grid,
    )
}

/// totals += the batch's (loss sum, correct, counted, 1), in a fixed order; `first`
/// false for a later chunk of the batch, which adds 0 batches.
pub(crate) fn metrics_add(
    ctx: &GpuContext,
    (rows, first): (usize, bool),
    stats: &wgpu::Buffer,
    totals: &wgpu::Buffer,
) -> Result<Dispatch> {
    let q = MetricParams {
        rows: rows as u32,
        batches: first as u32,
        ..Default::default()
    };
    param_dispatch(
        ctx,
        Kernel::MetricsAdd,
        &[],
        "metrics_add",
        bytemuck::bytes_of(&q),
        &[stats, totals],
        [1, 1, 1],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;

    /// Totals add every row's statistics; a later chunk adds no batch.
    #[test]
    fn metrics_add_rows_and_counts_a_batch_once() {
        let Some(ctx) = ctx() else { return };
        let rows = 131;
        let stats: Vec<f32> = (0..rows * 3).map(|i| (i % 7) as f32 * 0.25).collect();
        let s = upload(&ctx, &stats);
        let totals = upload(&ctx, &[0.0; 4]);
        run(
            &ctx,
            &[
                metrics_add(&ctx, (rows, true), &s, &totals).unwrap(),
                metrics_add(&ctx, (rows, false), &s, &totals).unwrap(),
            ],
        );
        let mut want = [0.0f64, 0.0, 0.0, 1.0];
        for r in 0..rows {
            for c in 0..3 {
                want[c] += 2.0 * stats[r * 3 + c] as f64;
            }
        }
        close(&read(&ctx, &totals, 4), &want, "totals");
    }

    /// The binary cross-entropy at logits of ±100 and ±30: finite losses and gradients,
    /// equal to the closed forms (no result may rest on exp overflowing to infinity,
    /// which fast math leaves undefined).
    #[test]
    fn binary_cross_entropy_is_finite_at_large_logits() {
        let Some(ctx) = ctx() else { return };
        let x = [100.0f32, -100.0, 100.0, -100.0, 30.0, -30.0, 0.0];
        let y = [0.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let rows = x.len();
        let targets: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        let t = ctx.storage("targets", rows).unwrap();
        ctx.queue
            .write_buffer(&t, 0, bytemuck::cast_slice(&targets));
        let lp = crate::gpu::abi::LossParams {
            rows: rows as u32,
            cols: 1,
            inv_count: 0.5,
            _p0: 0,
        };
        let params = ctx.uniform("loss", bytemuck::bytes_of(&lp)).unwrap();
        let logits = upload(&ctx, &x);
        let d = upload(&ctx, &vec![7.0; rows]);
        let stats = upload(&ctx, &vec![7.0; 3 * rows]);
        let op = loss(
            &ctx,
            Loss::BinaryCrossEntropy,
            (rows, 1),
            &params,
            [&logits, &t, &d, &stats],
        );
        run(&ctx, &[op.unwrap()]);
        let (got_d, got_s) = (read(&ctx, &d, rows), read(&ctx, &stats, 3 * rows));
        for r in 0..rows {
            let (xr, yr) = (x[r] as f64, y[r] as f64);
            let sig = 1.0 / (1.0 + (-xr).exp());
            let want_d = (sig - yr) * 0.5;
            let want_l = xr.max(0.0) - xr * yr + (1.0 + (-xr.abs()).exp()).ln();
            let (gd, gl) = (got_d[r] as f64, got_s[3 * r] as f64);
            assert!(gd.is_finite() && gl.is_finite(), "row {r}: {gd} {gl}");
            assert!((gd - want_d).abs() <= 1e-6, "row {r}: d {gd} want {want_d}");
            assert!(
                (gl - want_l).abs() <= 1e-4 * want_l.max(1.0),
                "row {r}: loss {gl} want {want_l}"
            );
        }
    }
}
