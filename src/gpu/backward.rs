//! Records the backward pass: per layer (top first) and direction, the reverse loop of
//! step kernels, then the weight gradients as single GEMMs over all timesteps, the bias
//! gradients as column sums, and dX as one GEMM.

use crate::config::{GruConfig, GruVariant};
use crate::error::Result;
use crate::gpu::bind::span;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::flat::ALIGN;
use crate::gpu::forward::step_runs;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::gemm::gemm_deferred;
use crate::gpu::ops::reduce::{colsum_deferred, reduce_pending, reduce_slices, Slices};
use crate::gpu::ops::{
    colsum, colsum_scratch, gemm, gemm_scratch, step, Dispatch, GemmFlags, GemmParams, StepDims,
    StepKernel,
};
use crate::gpu::params::GpuParams;
use crate::gpu::workspace::Workspace;

/// What a workspace's backward computes and how it leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackwardNeeds {
    /// This workspace is a later batch chunk whose parameter gradients add to those of
    /// the chunks before it.
    pub accumulate_grads: bool,
    /// The gradient of the initial states (the layer API returns it; training, whose
    /// initial states are no parameters, does not need it).
    pub d_h0: bool,
    /// The first layer's input gradient may stay in split-K slices in the scratch
    /// (`Workspace::d_input_slices`) for a consumer that adds them as it reads them
    /// (the embedding's gradient): one reduction dispatch fewer. One-way layers only.
    pub d_input_slices: bool,
}

impl BackwardNeeds {
    /// What the layer API returns: every gradient, reduced; `accumulate_grads` for a
    /// later batch chunk.
    pub(crate) fn layer(accumulate_grads: bool) -> Self {
        BackwardNeeds {
            accumulate_grads,
            d_h0: true,
            d_input_slices: false,
        }
    }
}

/// f32 values of split-K / long-colsum scratch the plans of this shape need.
pub(crate) fn scratch_len(ctx: &GpuContext, cfg: &GruConfig, tb: usize) -> usize {
    let h = cfg.hidden_size;
    let backward = (0..cfg.num_layers)
        .flat_map(|l| {
            let i = cfg.layer_input_size(l);
            [
                gemm_scratch(ctx, 3 * h, i, tb),
                gemm_scratch(ctx, 3 * h, h, tb),
                gemm_scratch(ctx, tb, i, 3 * h),
                // d_w_ih's slices, then both biases' (up to two tensors and their
                // padding), reduced together.
                gemm_scratch(ctx, 3 * h, i, tb).next_multiple_of(ALIGN)
                    + colsum_scratch(ctx, tb, 2 * (3 * h).next_multiple_of(64)),
            ]
        })
        .max()
        .unwrap_or(0);
    // The forward's input projections share the scratch.
    backward.max(crate::gpu::forward::scratch_len(ctx, cfg, tb))
}

/// The backward dispatch list of a workspace: per layer from the top, its reverse steps
/// ([`steps`]) and then its weight gradients and input gradient ([`weight_grads`]). With
/// `accumulate_grads` the parameter gradients are added to what the buffers hold (batch
/// chunks after the first); otherwise they overwrite it. Without `d_h0` the reset-after
/// loop leaves out the state gradient of step 0 (the initial states' gradient, which
/// nothing else reads); reset-before's step 0 also holds gate gradients and stays.
/// With `d_input_slices` a one-way first layer may leave its input gradient in split-K
/// slices: they are returned, and `d_ins[0]` is not written.
pub(crate) fn plan(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    ws: &Workspace,
    needs: BackwardNeeds,
) -> Result<(Vec<Dispatch>, Option<Slices>)> {
    let mut list = Vec::new();
    let mut slices = None;
    for l in (0..cfg.num_layers).rev() {
        steps(ctx, cfg, params, ws, (l, needs.d_h0), &mut list)?;
        let keep = needs.d_input_slices && l == 0 && cfg.num_directions() == 1;
        slices = weight_grads(
            ctx,
            cfg,
            params,
            ws,
            (l, keep),
            needs.accumulate_grads,
            &mut list,
        )?;
    }
    Ok((list, slices))
}

/// Layer `l`'s reverse steps, in recording order, with their buffer offsets (step 0's
/// state gradient only with `d_h0`).
fn steps(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    ws: &Workspace,
    (l, d_h0): (usize, bool),
    list: &mut Vec<Dispatch>,
) -> Result<()> {
    let nd = cfg.num_directions();
    let d_out = if l + 1 == cfg.num_layers {
        &ws.d_out_top
    } else {
        &ws.d_ins[l + 1]
    };
    let hid = cfg.hidden_size;
    // Mixed precision: the saved values, states and W_hh f16, the gradients f32.
    let half = ws.half;
    let elems = Elems {
        act: half,
        wt: half,
        out: false,
    };
    let for_device = |k| step::for_device(ctx, k, hid, half);
    let sequence = match cfg.variant {
        GruVariant::ResetAfter => step::sequence_of(ctx, for_device(Kernel::BwdStateGates), hid),
        GruVariant::ResetBefore => step::sequence_of(ctx, Kernel::BwdCandidate, hid),
    };
    let reset_before = cfg.variant == GruVariant::ResetBefore;
    let kernels = match (cfg.variant, sequence) {
        (GruVariant::ResetAfter, Some(k)) => {
            vec![Kernel::BwdGates, k, for_device(Kernel::BwdState)]
        }
        (GruVariant::ResetAfter, None) => [
            Kernel::BwdGates,
            for_device(Kernel::BwdStateGates),
            for_device(Kernel::BwdState),
        ]
        .map(|k| step::split_of(ctx, k))
        .to_vec(),
        (GruVariant::ResetBefore, Some(k)) => vec![k],
        (GruVariant::ResetBefore, None) => [Kernel::BwdGates, Kernel::BwdCandidate, Kernel::BwdRz]
            .map(|k| step::split_of(ctx, k))
            .to_vec(),
    };
    // Direction d's tensors: saved, hs, W_hh (W_hhᵀ for the split builds, which the
    // forward pass has just refreshed), d_hs, d_gx, d_gh.
    let split = step::split_layout(&kernels);
    let tensors = |d: usize| {
        let (p, buf) = (&params.dirs[l * nd + d], &ws.dirs[l * nd + d]);
        [
            &buf.saved,
            &buf.hs,
            if split { &p.w_hh_t } else { &p.w_hh },
            &buf.d_hs,
            &ws.d_gx[d],
            &ws.d_gh[d],
        ]
    };
    let place = |d: &mut StepDims, o: [u32; 6]| {
        (d.off_saved, d.off_hs, d.off_w) = (o[0], o[1], o[2]);
        (d.off_d_hs, d.off_d_gx, d.off_d_gh) = (o[3], o[4], o[5]);
    };
    for (mut dims, t, paired) in step_runs(ctx, cfg, ws, &kernels, tensors, place) {
        if let Some(k) = sequence {
            dims.steps = step::steps_per_dispatch(ctx, k, hid) as u32;
        }
        let dims_buf = ctx.uniform("step_dims", bytemuck::bytes_of(&dims))?;
        let bufs: [&dyn Bind; 8] = [d_out, &t[0], &t[1], &t[2], &ws.lengths, &t[3], &t[4], &t[5]];
        let kernels = kernels
            .iter()
            .map(|&k| {
                let gates = matches!(k, Kernel::BwdGates | Kernel::SeqBefore);
                let constants: &[(&'static str, u32)] = if gates {
                    &[("RESET_BEFORE", reset_before as u32)]
                } else {
                    &[]
                };
                let slots = &ws.step_slots;
                StepKernel::new(
                    ctx,
                    (k, elems),
                    constants,
                    slots,
                    &dims_buf,
                    &dims,
                    &bufs,
                    paired,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let stride = ws.slot_stride;
        // A sequence entry takes a chunk of steps, from the top one down.
        let chunk = dims.steps.max(1) as usize;
        match cfg.variant {
            // Gates of the last step, then per step its state gradient fused with
            // the gates of the step before (T - 1 dispatches, or one per chunk),
            // then step 0's state where d_h0 is wanted.
            GruVariant::ResetAfter => {
                let t_last = ws.t_len - 1;
                list.push(kernels[0].at(t_last, stride));
                let tops = (1..ws.t_len).rev().step_by(chunk);
                list.extend(tops.map(|s| kernels[1].at_steps(s, stride, chunk.min(s))));
                if d_h0 {
                    list.push(kernels[2].at(0, stride));
                }
            }
            GruVariant::ResetBefore => {
                for s in (0..ws.t_len).rev().step_by(chunk) {
                    let steps = chunk.min(s + 1);
                    list.extend(kernels.iter().map(|k| k.at_steps(s, stride, steps)));
                }
            }
        }
    }
    Ok(())
}

/// Layer `l`'s parameter gradients (GEMMs and column sums per direction) and the
/// gradient of its input; with `keep_slices` (a one-way layer) that gradient's split-K
/// slices are left in the scratch and returned, not reduced.
fn weight_grads(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    ws: &Workspace,
    (l, keep_slices): (usize, bool),
    accumulate_grads: bool,
    list: &mut Vec<Dispatch>,
) -> Result<Option<Slices>> {
    let h = cfg.hidden_size as u32;
    let nd = cfg.num_directions();
    let tb = (ws.t_len * ws.batch) as u32;
    let i = cfg.layer_input_size(l) as u32;
    for d in 0..nd {
        let idx = l * nd + d;
        let p = &params.dirs[idx];
        let buf = &ws.dirs[idx];
        let (d_gx, d_gh) = (&ws.d_gx[d], &ws.d_gh[d]);
        // Mixed precision: op(B) (the layer input, the states, r*h, W_ih) is f16, the
        // gradients and their sums f32.
        let elems = Elems {
            wt: ws.half,
            ..Elems::F32
        };
        let at = GemmFlags {
            trans_a: true,
            accumulate: accumulate_grads,
            elems,
            ..Default::default()
        };
        // d_w_ih [3H, I] = d_gxᵀ [3H, T·B] · X [T·B, I]
        let gp = GemmParams {
            m: 3 * h,
            n: i,
            k: tb,
            lda: 3 * h,
            ldb: i,
            ldc: i,
            ..Default::default()
        };
        let (gemm_list, w_ih_slices) = gemm_deferred(
            ctx,
            "gemm_d_w_ih",
            gp,
            at,
            d_gx,
            ws.layer_input(l),
            &p.d_w_ih,
            (&ws.scratch, 0),
        )?;
        list.extend(gemm_list);
        // Both bias gradients in one column sum where their tensors lie one after the
        // other (flat buffers), its slices reduced in one dispatch with d_w_ih's; else
        // one each.
        let padded = (3 * h as usize).next_multiple_of(64);
        let biases = span(&p.d_b_ih, &p.d_b_hh, ctx.storage_limit())
            .filter(|(_, second)| *second as usize <= padded);
        match &biases {
            Some((both, second)) => {
                let src = w_ih_slices.map_or(0, |r| r.end());
                let (d, bias_slices) = colsum_deferred(
                    ctx,
                    "colsum_d_biases",
                    (tb as usize, 3 * h as usize),
                    (d_gx, Some((d_gh, *second as usize))),
                    both,
                    accumulate_grads,
                    (&ws.scratch, src),
                )?;
                list.push(d);
                list.extend(reduce_pending(
                    ctx,
                    "reduce_d_w_ih_biases",
                    [(w_ih_slices, &p.d_w_ih), (bias_slices, both)],
                    accumulate_grads,
                    &ws.scratch,
                )?);
            }
            None => {
                if let Some(r) = w_ih_slices {
                    let label = "reduce_d_w_ih";
                    list.push(reduce_slices(
                        ctx,
                        label,
                        r,
                        accumulate_grads,
                        None,
                        &ws.scratch,
                        &p.d_w_ih,
                    )?);
                }
                for (label, g, out) in [
                    ("colsum_d_b_ih", d_gx, &p.d_b_ih),
                    ("colsum_d_b_hh", d_gh, &p.d_b_hh),
                ] {
                    list.extend(colsum(
                        ctx,
                        label,
                        tb as usize,
                        3 * h as usize,
                        g,
                        out,
                        accumulate_grads,
                        &ws.scratch,
                    )?);
                }
            }
        }
        // d_w_hh [3H, H] = d_ghᵀ · H_prev; for reset-before the n rows see r*h instead.
        let rz_rows = if cfg.variant == GruVariant::ResetAfter {
            3 * h
        } else {
            2 * h
        };
        let gp = GemmParams {
            m: rz_rows,
            n: h,
            k: tb,
            lda: 3 * h,
            ldb: h,
            ldc: h,
            ..Default::default()
        };
        list.extend(gemm(
            ctx,
            "gemm_d_w_hh",
            gp,
            at,
            d_gh,
            &buf.hs,
            None,
            &p.d_w_hh,
            &ws.scratch,
        )?);
        if cfg.variant == GruVariant::ResetBefore {
            let gp = GemmParams {
                m: h,
                n: h,
                k: tb,
                lda: 3 * h,
                ldb: 4 * h,
                ldc: h,
                off_a: 2 * h,
                off_b: 3 * h,
                off_c: 2 * h * h,
                ..Default::default()
            };
            list.extend(gemm(
                ctx,
                "gemm_d_w_hn",
                gp,
                at,
                d_gh,
                &buf.saved,
                None,
                &p.d_w_hh,
                &ws.scratch,
            )?);
        }
        // dX [T·B, I] (+)= d_gx [T·B, 3H] · W_ih [3H, I]; the reverse direction adds.
        let gp = GemmParams {
            m: tb,
            n: i,
            k: 3 * h,
            lda: 3 * h,
            ldb: i,
            ldc: i,
            ..Default::default()
        };
        let flags = GemmFlags {
            accumulate: d == 1,
            elems,
            ..Default::default()
        };
        let (gemm_list, slices) = gemm_deferred(
            ctx,
            "gemm_d_input",
            gp,
            flags,
            d_gx,
            &p.w_ih,
            &ws.d_ins[l],
            (&ws.scratch, 0),
        )?;
        list.extend(gemm_list);
        match slices {
            Some(r) if keep_slices => return Ok(Some(r)),
            Some(r) => list.push(reduce_slices(
                ctx,
                "gemm_d_input",
                r,
                flags.accumulate,
                None,
                &ws.scratch,
                &ws.d_ins[l],
            )?),
            None => {}
        }
    }
    Ok(None)
}
