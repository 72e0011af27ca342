//! Strided copies of row blocks (strided_copy.wgsl).

use crate::error::Result;
use crate::gpu::abi::CopyParams;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch, Dispatch};

impl CopyParams {
    /// Between direction `d`'s final state, row T of its [T+1, B, H] state buffer, and
    /// columns [d·H, (d+1)·H) of the head's [B, dirs·H] input: `gather` copies the state
    /// to the head, otherwise the head's gradient goes back to that row of dh.
    pub(crate) fn last_state(
        (batch, h, nd, t_len): (usize, usize, usize, usize),
        d: usize,
        gather: bool,
    ) -> Self {
        let state = ((h as u32), (t_len * batch * h) as u32);
        let head = ((nd * h) as u32, (d * h) as u32);
        let ((src_stride, src_off), (dst_stride, dst_off)) =
            if gather { (state, head) } else { (head, state) };
        CopyParams {
            rows: batch as u32,
            width: h as u32,
            src_stride,
            src_off,
            dst_stride,
            dst_off,
            ..Default::default()
        }
    }
}

/// dst[r·dst_stride + dst_off + j] = src[r·src_stride + src_off + j].
pub(crate) fn strided_copy(
    ctx: &GpuContext,
    p: CopyParams,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let grid = flat_grid(ctx, (p.rows * p.width) as usize);
    param_dispatch(
        ctx,
        Kernel::StridedCopy,
        &[],
        "strided_copy",
        bytemuck::bytes_of(&p),
        &[src, dst],
        grid,
    )
}
