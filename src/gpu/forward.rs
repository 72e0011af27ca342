//! Records the forward pass: per layer and direction, W_hhᵀ, the hoisted input GEMM,
//! then one fused step kernel per timestep (two for reset-before), or one sequence entry
//! per chunk of timesteps (`step::sequence_of`).

use crate::config::{GruConfig, GruVariant};
use crate::error::Result;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
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

pub(crate) fn plan(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    ws: &Workspace,
) -> Result<Vec<Dispatch>> {
    let h = cfg.hidden_size;
    let nd = cfg.num_directions();
    let tb = ws.t_len * ws.batch;
    let mut list = Vec::new();
    for l in 0..cfg.num_layers {
        let i = cfg.layer_input_size(l);
        for d in 0..nd {
            let idx = l * nd + d;
            let p = &params.dirs[idx];
            let buf = &ws.dirs[idx];
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
                &ws.gx,
                &ws.scratch,
            )?);
            let per_step = match cfg.variant {
                GruVariant::ResetAfter => {
                    vec![step::for_device(ctx, Kernel::StepFused, cfg.hidden_size)]
                }
                GruVariant::ResetBefore => vec![Kernel::StepGates, Kernel::StepCandidate],
            };
            let sequence = step::sequence_of(ctx, per_step[0], h);
            let mut dims = step_dims(cfg, ws, d);
            if let Some(k) = sequence {
                dims.steps = step::steps_per_dispatch(ctx, k, h) as u32;
            }
            let dims_buf = ctx.uniform("step_dims", bytemuck::bytes_of(&dims))?;
            let bufs: [&dyn Bind; 7] = [
                &ws.gx,
                &p.w_hh_t,
                &p.b_hh,
                &ws.lengths,
                &buf.hs,
                &ws.outs[l],
                &buf.saved,
            ];
            let kernels = sequence.map_or(per_step, |k| vec![k]);
            let kernels = kernels
                .into_iter()
                .map(|k| StepKernel::new(ctx, k, &[], &ws.step_slots, &dims_buf, &dims, &bufs))
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
