//! The update after backward (grad_norm.wgsl, optimizer.wgsl, max_norm.wgsl): the global
//! gradient norm and clip factor, one optimiser step per tensor, Keras' max-norm.

use crate::error::Result;
use crate::gpu::abi::{NormParams, TensorParams, SUMSQ_SPAN};
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{
    flat_grid, param_dispatch, param_dispatch_as, row_grid, Dispatch, Traffic,
};

/// What one optimiser dispatch updates: `len` values of a value buffer, its gradient
/// and its moments (a segment of the model's flat buffers), and in mixed precision the
/// f16 copy it refreshes in the same pass.
pub(crate) struct UpdateTensor<'a> {
    pub len: usize,
    pub value: &'a dyn Bind,
    pub grad: &'a dyn Bind,
    pub m: &'a dyn Bind,
    pub v: &'a dyn Bind,
    /// The copy, and whether it holds f16.
    pub copy: Option<(&'a dyn Bind, bool)>,
}

fn tensor_params(t: &UpdateTensor, count: usize) -> TensorParams {
    TensorParams {
        n: t.len as u32,
        index: 0,
        count: count as u32,
        _p0: 0,
    }
}

/// Slots of `norms` the sum of squares of a tensor of `len` values fills: one per
/// workgroup of [`SUMSQ_SPAN`] values.
pub(crate) fn sumsq_slots(len: usize) -> usize {
    len.div_ceil(SUMSQ_SPAN as usize).max(1)
}

/// norms[first ..] = Σ grad² over each span of `t`'s gradient, one workgroup per span.
pub(crate) fn sum_squares(
    ctx: &GpuContext,
    step: &dyn Bind,
    (t, first): (&UpdateTensor, usize),
    slots: usize,
    norms: &dyn Bind,
) -> Result<Dispatch> {
    let q = TensorParams {
        n: t.len as u32,
        index: first as u32,
        count: slots as u32,
        _p0: 0,
    };
    param_dispatch(
        ctx,
        Kernel::SumSq,
        &[],
        "sumsq",
        bytemuck::bytes_of(&q),
        &[step, t.grad, norms],
        row_grid(ctx, sumsq_slots(t.len)),
    )
}

/// The partial sums of norms[.. count] (one workgroup, a fixed order): norms[count] = the clip factor,
/// norms[count + 1] = the norm before clipping.
pub(crate) fn clip_scale(
    ctx: &GpuContext,
    step: &dyn Bind,
    count: usize,
    any_grad: &dyn Bind,
    norms: &dyn Bind,
) -> Result<Dispatch> {
    let q = TensorParams {
        count: count as u32,
        ..Default::default()
    };
    let mut d = param_dispatch(
        ctx,
        Kernel::ClipScale,
        &[],
        "clip_scale",
        bytemuck::bytes_of(&q),
        &[step, any_grad, norms],
        [1, 1, 1],
    )?;
    // The partial sums in, the factor and the norm out; the gradient is bound only
    // for the layout.
    d.traffic = Traffic::floats(count as u64, 2);
    Ok(d)
}

/// One optimiser step over `t` (every tensor of a segment at once): `kernel` is `Sgd` or
/// `Adam` (AdamW by the uniform); with `t.copy`, its `_copy` entry, which also writes
/// each new value rounded to the f16 copy.
pub(crate) fn optimizer_step(
    ctx: &GpuContext,
    kernel: Kernel,
    step: &dyn Bind,
    norms: &dyn Bind,
    t: &UpdateTensor,
    count: usize,
) -> Result<Dispatch> {
    let q = tensor_params(t, count);
    let mut bufs = vec![step, norms, t.grad, t.value, t.m, t.v];
    let (kernel, elems) = match t.copy {
        Some((copy, half)) => {
            bufs.push(copy);
            let k = match kernel {
                Kernel::Sgd => Kernel::SgdCopy,
                _ => Kernel::AdamCopy,
            };
            let elems = Elems {
                out: half,
                ..Elems::F32
            };
            (k, elems)
        }
        None => (kernel, Elems::F32),
    };
    let mut d = param_dispatch_as(
        ctx,
        (kernel, elems),
        &[],
        "optimizer",
        bytemuck::bytes_of(&q),
        &bufs,
        flat_grid(ctx, t.len),
    )?;
    // Gradient, value and moments read, value and moments written (SGD: one moment),
    // and an f16 copy: half a float a value.
    let adam = matches!(kernel, Kernel::Adam | Kernel::AdamCopy);
    let (n, moments) = (t.len as u64, if adam { 2 } else { 1 });
    let copy = if t.copy.is_some() { n.div_ceil(2) } else { 0 };
    d.traffic = Traffic::floats((2 + moments) * n, (1 + moments) * n + copy);
    Ok(d)
}

/// Keras' max_norm(c) on each of `rows` rows of `cols` values.
pub(crate) fn max_norm_rows(
    ctx: &GpuContext,
    (rows, cols, c): (usize, usize, f32),
    w: &dyn Bind,
) -> Result<Dispatch> {
    let q = NormParams {
        rows: rows as u32,
        cols: cols as u32,
        c,
        _p0: 0,
    };
    param_dispatch(
        ctx,
        Kernel::MaxNormRows,
        &[],
        "max_norm_rows",
        bytemuck::bytes_of(&q),
        &[w],
        flat_grid(ctx, rows),
    )
}

/// Keras' max_norm(c) on each pair (a[j], b[j]) of two bias vectors of `rows` values.
pub(crate) fn max_norm_pairs(
    ctx: &GpuContext,
    (rows, c): (usize, f32),
    a: &dyn Bind,
    b: &dyn Bind,
) -> Result<Dispatch> {
    let q = NormParams {
        rows: rows as u32,
        cols: 1,
        c,
        _p0: 0,
    };
    param_dispatch(
        ctx,
        Kernel::MaxNormPairs,
        &[],
        "max_norm_pairs",
        bytemuck::bytes_of(&q),
        &[a, b],
        flat_grid(ctx, rows),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::abi::TrainStep;
    use crate::gpu::ops::testutil::*;

    /// The clip factor: exactly 1 with clipping off, whatever the norm (no infinite
    /// threshold stands for "off"), and PyTorch's min(1, c / (norm + 1e-6)) with it on;
    /// the norm before clipping comes after it.
    #[test]
    fn clip_factor_with_clipping_off_and_on() {
        let Some(ctx) = ctx() else { return };
        let sums = [3.0e30f32, 1.0e30, 0.0, 0.0];
        for (clip, c, want) in [(0u32, 0.0f32, 1.0f64), (1, 1.0, 1.0 / 2.0e15)] {
            let u = TrainStep {
                clip,
                clip_norm: c,
                ..Default::default()
            };
            let step = ctx.uniform("step", bytemuck::bytes_of(&u)).unwrap();
            let norms = upload(&ctx, &sums);
            let any = upload(&ctx, &[0.0]);
            run(&ctx, &[clip_scale(&ctx, &step, 2, &any, &norms).unwrap()]);
            let got = read(&ctx, &norms, 4);
            assert!(got[2].is_finite() && got[3].is_finite(), "{got:?}");
            assert!(
                (got[2] as f64 - want).abs() <= 1e-6 * want,
                "clip {clip}: {got:?}"
            );
            assert!((got[3] as f64 - 2.0e15).abs() <= 1e-6 * 2.0e15, "{got:?}");
        }
    }

    /// Every partial sum counts once, across the workgroup's lanes and its tree: slot
    /// counts of 1, below, at and past the 64 lanes, up to 1,000 slots.
    #[test]
    fn the_norm_sums_every_slot() {
        let Some(ctx) = ctx() else { return };
        let u = TrainStep {
            clip: 1,
            clip_norm: 1.0,
            ..Default::default()
        };
        let step = ctx.uniform("step", bytemuck::bytes_of(&u)).unwrap();
        let any = upload(&ctx, &[0.0]);
        for count in [1usize, 7, 63, 64, 65, 130, 1000] {
            // Slot i holds i + 1: the total is count (count + 1) / 2.
            let mut sums: Vec<f32> = (0..count).map(|i| (i + 1) as f32).collect();
            sums.extend([0.0, 0.0]);
            let norms = upload(&ctx, &sums);
            run(
                &ctx,
                &[clip_scale(&ctx, &step, count, &any, &norms).unwrap()],
            );
            let got = read(&ctx, &norms, count + 2);
            let norm = ((count * (count + 1) / 2) as f64).sqrt();
            assert!(
                (got[count + 1] as f64 - norm).abs() <= 1e-6 * norm,
                "{count} slots: norm {} for {norm}",
                got[count + 1]
            );
            let scale = (1.0 / (norm + 1e-6)).min(1.0);
            assert!(
                (got[count] as f64 - scale).abs() <= 1e-6 * scale,
                "{count} slots"
            );
        }
    }
}
