//! Records the forward pass: per layer and direction, W_hhᵀ, the hoisted input GEMM,
//! then one fused step kernel per timestep (two for reset-before), or one sequence entry
//! per chunk of timesteps (`step::sequence_of`).

use crate::config::{GruConfig, GruVariant};
use crate::error::Result;
use crate::gpu::bind::{Bind, Range};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::gemm::gemm_scratch;
use crate::gpu::ops::{
    gemm, step, transpose, Dispatch, GemmFlags, GemmParams, StepDims, StepKernel,
};
use crate::gpu::params::GpuParams;
use crate::gpu::workspace::Workspace;

pub(crate) fn step_dims(cfg: &GruConfig, ws: &Workspace, dir: usize) -> StepDims {
    let h = cfg.hidden_size as u32;
    StepDims {
        batch: ws.batch as u32,
        hidden: h,
        out_stride: cfg.num_directions() as u32 * h,
        out_offset: dir as u32 * h,
        reverse: dir as u32,
        t_len: ws.t_len as u32,
        ..Default::default()
    }
}

/// f32 values of split-K scratch the forward of this shape needs (its input GEMMs).
pub(crate) fn scratch_len(ctx: &GpuContext, cfg: &GruConfig, tb: usize) -> usize {
    let h = cfg.hidden_size;
    (0..cfg.num_layers)
        .map(|l| gemm_scratch(ctx, tb, 3 * h, cfg.layer_input_size(l)))
        .max()
        .unwrap_or(0)
}

/// The forward list of `ws`: f32 throughout, or every tensor f16 where the workspace
/// is an f16 one (`Workspace::half`; `params` then f16 too).
pub(crate) fn plan(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    ws: &Workspace,
) -> Result<Vec<Dispatch>> {
    let h = cfg.hidden_size;
    let nd = cfg.num_directions();
    let tb = ws.t_len * ws.batch;
    let elems = Elems::all(ws.half);
    let mut list = Vec::new();
    for l in 0..cfg.num_layers {
        let i = cfg.layer_input_size(l);
        for d in 0..nd {
            let p = &params.dirs[l * nd + d];
            list.push(transpose(
                ctx,
                "transpose_w_hh",
                3 * h,
                h,
                &p.w_hh,
                &p.w_hh_t,
            )?);
            // gx [T·B, 3H] = X [T·B, I] · W_ihᵀ + b_ih
            let gp = GemmParams {
                m: tb as u32,
                n: 3 * h as u32,
                k: i as u32,
                lda: i as u32,
                ldb: i as u32,
                ldc: 3 * h as u32,
                ..Default::default()
            };
            let flags = GemmFlags {
                trans_b: true,
                elems,
                ..Default::default()
            };
            list.extend(gemm(
                ctx,
                "gemm_input_projection",
                gp,
                flags,
                ws.layer_input(l),
                &p.w_ih,
                Some(&p.b_ih),
                &ws.gx[d],
                &ws.scratch,
            )?);
        }
        let per_step = match cfg.variant {
            GruVariant::ResetAfter => {
                vec![step::for_device(
                    ctx,
                    Kernel::StepFused,
                    cfg.hidden_size,
                    ws.half,
                )]
            }
            GruVariant::ResetBefore => vec![Kernel::StepGates, Kernel::StepCandidate],
        };
        let sequence = step::sequence_of(ctx, per_step[0], h);
        let kernels = match sequence {
            Some(k) => vec![k],
            None => per_step.iter().map(|&k| step::split_of(ctx, k)).collect(),
        };
        // Direction d's tensors: gx, W_hhᵀ (W_hh for the split builds), b_hh, hs, saved.
        let split = step::split_layout(&kernels);
        let tensors = |d: usize| {
            let (p, buf) = (&params.dirs[l * nd + d], &ws.dirs[l * nd + d]);
            let w = if split { &p.w_hh } else { &p.w_hh_t };
            [&ws.gx[d], w, &p.b_hh, &buf.hs, &buf.saved]
        };
        let place = |d: &mut StepDims, o: [u32; 5]| {
            (d.off_gx, d.off_w, d.off_b, d.off_hs, d.off_saved) = (o[0], o[1], o[2], o[3], o[4]);
        };
        for (mut dims, t, paired) in step_runs(ctx, cfg, ws, &kernels, tensors, place) {
            if let Some(k) = sequence {
                dims.steps = step::steps_per_dispatch(ctx, k, h) as u32;
            }
            let dims_buf = ctx.uniform("step_dims", bytemuck::bytes_of(&dims))?;
            let bufs: [&dyn Bind; 7] =
                [&t[0], &t[1], &t[2], &ws.lengths, &t[3], &ws.outs[l], &t[4]];
            let kernels = kernels
                .iter()
                .map(|&k| {
                    StepKernel::new(
                        ctx,
                        (k, elems),
                        &[],
                        &ws.step_slots,
                        &dims_buf,
                        &dims,
                        &bufs,
                        paired,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            // One dispatch per step, or per chunk of steps for a sequence entry.
            let chunk = dims.steps.max(1) as usize;
            for s in (0..ws.t_len).step_by(chunk) {
                let steps = chunk.min(ws.t_len - s);
                list.extend(kernels.iter().map(|k| k.at_steps(s, ws.slot_stride, steps)));
            }
        }
    }
    Ok(list)
}

/// The step kernels' runs over a layer: both directions in one (paired, each binding
/// spanning both directions' tensors, `step::pair`) where they can, else one per
/// direction. `tensors(d)`: direction d's tensors; `place` puts the reverse's offsets in
/// the same order into the dims.
pub(crate) fn step_runs<'a, const N: usize>(
    ctx: &GpuContext,
    cfg: &GruConfig,
    ws: &Workspace,
    kernels: &[Kernel],
    tensors: impl Fn(usize) -> [&'a Range; N],
    place: impl Fn(&mut StepDims, [u32; N]),
) -> Vec<(StepDims, [Range; N], bool)> {
    let nd = cfg.num_directions();
    if nd == 2 {
        let (f, r) = (tensors(0), tensors(1));
        let pairs: Vec<_> = f.into_iter().zip(r).collect();
        if let Some(spans) = step::pair(ctx, &pairs) {
            let mut dims = step_dims(cfg, ws, 0);
            place(&mut dims, std::array::from_fn(|i| spans[i].1));
            if step::pair_fits(ctx, kernels, &dims) {
                return vec![(dims, std::array::from_fn(|i| spans[i].0.clone()), true)];
            }
        }
    }
    (0..nd)
        .map(|d| (step_dims(cfg, ws, d), tensors(d).map(Range::clone), false))
        .collect()
}
