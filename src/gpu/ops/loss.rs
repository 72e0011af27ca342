//! Losses from logits and their running totals (loss.wgsl, metrics.wgsl).

use crate::error::Result;
use crate::gpu::abi::MetricParams;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{buffers_dispatch, flat_grid, param_dispatch, row_grid, Dispatch};
use crate::model::Loss;

/// Per-row loss statistics [rows, 3] and d_logits for `rows` rows; `params` is the
/// `LossParams` uniform the caller writes per batch (it holds the count).
pub(crate) fn loss(
    ctx: &GpuContext,
    kind: Loss,
    rows: usize,
    params: &wgpu::Buffer,
    [logits, targets, d_logits, stats]: [&wgpu::Buffer; 4],
) -> Result<Dispatch> {
    let (kernel, grid) = match kind {
        // One workgroup per row.
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
