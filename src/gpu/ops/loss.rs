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
}
