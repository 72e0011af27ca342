//! dst = srcᵀ (transpose.wgsl).

use crate::error::{GruError, Result};
use crate::gpu::abi::TransposeParams;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{groups, param_dispatch_as, Dispatch};

/// dst[C, R] = src[R, C]ᵀ.
pub(crate) fn transpose(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    src: &dyn Bind,
    dst: &dyn Bind,
) -> Result<Dispatch> {
    let params = TransposeParams {
        rows: rows as u32,
        cols: cols as u32,
        ..Default::default()
    };
    let grid = [groups(cols, 16), groups(rows, 16), 1];
    if src.half() != dst.half() {
        return Err(GruError::State(format!(
            "{label}: a transpose keeps the storage type (f16 source: {}, f16 destination: {})",
            src.half(),
            dst.half()
        )));
    }
    let elems = Elems {
        wt: src.half(),
        ..Elems::F32
    };
    param_dispatch_as(
        ctx,
        (Kernel::Transpose, elems),
        &[],
        label,
        bytemuck::bytes_of(&params),
        &[src, dst],
        grid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn transpose_odd_shapes() {
        let Some(ctx) = ctx() else { return };
        let mut rng = Rng::new(3);
        // Tiles cut at every edge: rows and columns below 8, between 8 and 16, past 16.
        for &(r, c) in &[
            (1, 1),
            (3, 17),
            (33, 5),
            (13, 29),
            (27, 10),
            (9, 9),
            (192, 64),
        ] {
            let x = rng.uniform_vec(r * c, -1.0, 1.0);
            let want: Vec<f64> = (0..c * r).map(|i| x[(i % r) * c + i / r] as f64).collect();
            let (xb, ob) = (upload(&ctx, &x), ctx.storage("t", r * c).unwrap());
            run(
                &ctx,
                &[transpose(&ctx, "transpose", r, c, &xb, &ob).unwrap()],
            );
            close(
                &read(&ctx, &ob, r * c),
                &want,
                &format!("transpose {r}x{c}"),
            );
        }
    }
}
