//! Strided copies of row blocks (strided_copy.wgsl).

use crate::error::Result;
use crate::gpu::abi::CopyParams;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch_as, Dispatch};

impl CopyParams {
    /// One contiguous run: `len` values from value `from` of the source to value `to`
    /// of the destination.
    pub(crate) fn run(len: usize, from: usize, to: usize) -> Self {
        CopyParams {
            rows: 1,
            width: len as u32,
            src_stride: len as u32,
            src_off: from as u32,
            dst_stride: len as u32,
            dst_off: to as u32,
            ..Default::default()
        }
    }

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
    src: &dyn Bind,
    dst: &dyn Bind,
) -> Result<Dispatch> {
    strided_copy_as(ctx, p, (src, dst), (false, false))
}

/// [`strided_copy`] from f16 values where `src_half`, into f16 ones where `dst_half`
/// (rounding to nearest: the refresh of mixed precision's f16 weight copies).
pub(crate) fn strided_copy_as(
    ctx: &GpuContext,
    p: CopyParams,
    (src, dst): (&dyn Bind, &dyn Bind),
    (src_half, dst_half): (bool, bool),
) -> Result<Dispatch> {
    let grid = flat_grid(ctx, (p.rows * p.width) as usize);
    let elems = Elems {
        act: src_half,
        out: dst_half,
        ..Elems::F32
    };
    param_dispatch_as(
        ctx,
        (Kernel::StridedCopy, elems),
        &[],
        "strided_copy",
        bytemuck::bytes_of(&p),
        &[src, dst],
        grid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;

    /// Direction 1's final state (row T of [T+1, B, H]) goes to columns [H, 2H) of the
    /// head's [B, 2H] input, and the head's gradient comes back to that row.
    #[test]
    fn last_state_gathers_and_scatters_one_direction() {
        let Some(ctx) = ctx() else { return };
        let (b, h, nd, t) = (3, 4, 2, 2);
        let states: Vec<f32> = (0..(t + 1) * b * h).map(|i| i as f32).collect();
        let (src, head) = (upload(&ctx, &states), upload(&ctx, &vec![-1.0; b * nd * h]));
        let gather = CopyParams::last_state((b, h, nd, t), 1, true);
        run(&ctx, &[strided_copy(&ctx, gather, &src, &head).unwrap()]);
        let mut want = vec![-1.0f64; b * nd * h];
        for r in 0..b {
            for j in 0..h {
                want[r * nd * h + h + j] = states[(t * b + r) * h + j] as f64;
            }
        }
        close(&read(&ctx, &head, b * nd * h), &want, "gather");
        let back = upload(&ctx, &vec![0.0; (t + 1) * b * h]);
        let scatter = CopyParams::last_state((b, h, nd, t), 1, false);
        run(&ctx, &[strided_copy(&ctx, scatter, &head, &back).unwrap()]);
        let mut want = vec![0.0f64; (t + 1) * b * h];
        want[t * b * h..].copy_from_slice(
            &states[t * b * h..]
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>(),
        );
        close(&read(&ctx, &back, (t + 1) * b * h), &want, "scatter");
    }
}
