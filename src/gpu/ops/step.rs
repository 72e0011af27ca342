//! The per-step kernels of the recurrence (gru_step_fwd.wgsl, gru_step_bwd.wgsl): the
//! step slots and a kernel bound once, replayed for every step.

use std::sync::Arc;

use crate::error::Result;
pub(crate) use crate::gpu::abi::{StepDims, StepParams};
use crate::gpu::abi::{TB, TB_SPLIT, TB_SUBGROUP, UT, WG, WG_SPLIT, WG_SPLIT_WIDE};
use crate::gpu::bind::{span, Bind, Range};
use crate::gpu::context::{GpuContext, UNIFORM_WINDOW};
use crate::gpu::kernels::{Elems, Kernel, Pipeline, Shader, STEP_PARAMS_BYTES};
use crate::gpu::ops::dispatch::{bind, groups, Dispatch, Traffic};

/// The uniform array of step slots `[T]` at `stride` bytes apart, written once per shape.
pub(crate) fn step_slots(ctx: &GpuContext, t_len: usize) -> Result<(wgpu::Buffer, u32)> {
    let stride =
        (ctx.limits.min_uniform_buffer_offset_alignment as usize).max(STEP_PARAMS_BYTES as usize);
    let mut bytes = vec![0u8; t_len * stride];
    for s in 0..t_len {
        let slot = StepParams {
            step: s as u32,
            time_fwd: s as u32,
            time_rev: (t_len - 1 - s) as u32,
            _p0: 0,
        };
        bytes[s * stride..s * stride + 16].copy_from_slice(bytemuck::bytes_of(&slot));
    }
    Ok((ctx.uniform("step_slots", &bytes)?, stride as u32))
}

/// `kernel`, or its subgroup build on a software adapter with subgroups of 8 or more
/// lanes, whose matvec loads each state value (or gate gradient) once per subgroup
/// (shaders/parts/*_subgroup.wgsl). Only the reset-after matvec kernels have one.
/// The fused forward step (W_hhᵀ) and the backward state kernels (W_hh) also read the
/// recurrent weights through uniform windows where the adapter takes them
/// ([`GpuContext::uniform_windows`]) and `hidden` fits them, but never where `half`
/// (f16 weights): the windows read f32 (a uniform array's stride is 16 bytes), so f16
/// weights are read from storage, at half the bytes.
pub(crate) fn for_device(ctx: &GpuContext, kernel: Kernel, hidden: usize, half: bool) -> Kernel {
    let subgroups = ctx.subgroup_builds();
    let windows =
        !half && ctx.uniform_windows() && 3 * hidden * hidden <= W_WINDOWS * WINDOW_FLOATS;
    match kernel {
        Kernel::StepFused if windows => Kernel::StepFusedUb,
        Kernel::StepFused if subgroups => Kernel::StepFusedSg,
        Kernel::BwdState if windows => Kernel::BwdStateUb,
        Kernel::BwdState if subgroups => Kernel::BwdStateSg,
        Kernel::BwdStateGates if windows => Kernel::BwdStateGatesUb,
        Kernel::BwdStateGates if subgroups => Kernel::BwdStateGatesSg,
        k => k,
    }
}

/// Whether `kernels` (as [`split_of`] resolved them) run split builds, which read the
/// recurrent weights the other way round: the forward W_hh [3H, H] and the backward
/// W_hhᵀ [H, 3H], each along its matvec's sum (shaders/parts/*_matvec_split.wgsl). A
/// run's kernels share their bindings, so a run is split throughout or not at all.
pub(crate) fn split_layout(kernels: &[Kernel]) -> bool {
    kernels.iter().any(|k| k.shader().is_split())
}

/// The split build of a per-step `kernel` where the device takes them
/// ([`GpuContext::split_steps`]): tiles of 4 units x 16 rows, the matvec's k loop over
/// 64 threads per unit lane.
pub(crate) fn split_of(ctx: &GpuContext, kernel: Kernel) -> Kernel {
    if !ctx.split_steps() {
        return kernel;
    }
    let wide = ctx.wide_steps();
    match kernel {
        Kernel::StepFused if wide => Kernel::StepFusedSplitWide,
        Kernel::StepGates if wide => Kernel::StepGatesSplitWide,
        Kernel::StepCandidate if wide => Kernel::StepCandidateSplitWide,
        Kernel::BwdState if wide => Kernel::BwdStateSplitWide,
        Kernel::BwdStateGates if wide => Kernel::BwdStateGatesSplitWide,
        Kernel::BwdCandidate if wide => Kernel::BwdCandidateSplitWide,
        Kernel::BwdRz if wide => Kernel::BwdRzSplitWide,
        Kernel::StepFused => Kernel::StepFusedSplit,
        Kernel::StepGates => Kernel::StepGatesSplit,
        Kernel::StepCandidate => Kernel::StepCandidateSplit,
        Kernel::BwdState => Kernel::BwdStateSplit,
        Kernel::BwdStateGates => Kernel::BwdStateGatesSplit,
        Kernel::BwdCandidate => Kernel::BwdCandidateSplit,
        Kernel::BwdRz => Kernel::BwdRzSplit,
        k => k,
    }
}

/// The sequence entry that replaces the per-step `kernel` (as [`for_device`] picks it),
/// or `None` where the per-step kernels run: software adapters always take them (a
/// dispatch costs about 100 µs there; [`GpuContext::sequence_everywhere`]), GPUs where
/// H <= WG, so that the sequence grid, one workgroup per TB rows, loses none of the
/// per-step grid's workgroups.
pub(crate) fn sequence_of(ctx: &GpuContext, kernel: Kernel, hidden: usize) -> Option<Kernel> {
    if !(ctx.sequence_everywhere() || hidden <= WG as usize) {
        return None;
    }
    Some(match kernel {
        Kernel::StepFused => Kernel::SeqFused,
        Kernel::StepFusedSg => Kernel::SeqFusedSg,
        Kernel::StepFusedUb => Kernel::SeqFusedUb,
        Kernel::StepGates => Kernel::SeqGatesCandidate,
        Kernel::BwdStateGates => Kernel::SeqStateGates,
        Kernel::BwdStateGatesSg => Kernel::SeqStateGatesSg,
        Kernel::BwdStateGatesUb => Kernel::SeqStateGatesUb,
        Kernel::BwdCandidate => Kernel::SeqBefore,
        _ => return None,
    })
}

/// Loop iterations one invocation may run on a software adapter: llvmpipe stops an
/// invocation after 65535, counted over all its loops, and silently skips the rest.
/// The bound below is 61% of that: the per-step counts are fitted to measurements.
const LOOP_BUDGET: u64 = 40_000;

/// Steps per dispatch of a sequence entry: on a software adapter as many as keep an
/// invocation within [`LOOP_BUDGET`]; on a GPU at most 256, so that no dispatch runs
/// long enough to trip a watchdog.
pub(crate) fn steps_per_dispatch(ctx: &GpuContext, kernel: Kernel, hidden: usize) -> usize {
    if !ctx.loop_capped() {
        return 256;
    }
    let per_step = sequence_iterations(kernel, hidden as u64);
    ((LOOP_BUDGET / per_step.max(1)) as usize).max(1)
}

/// Loop iterations per step of a sequence entry, per invocation, as llvmpipe 22.3 and
/// 25.0 count them: loops with a constant trip count and no exit (the TB-row FMA loops)
/// are unrolled and do not count; every other loop counts its trips plus its exit test.
/// Fitted to where whole sequences in one dispatch began to come out wrong (H 64, 128,
/// 256 x T 8 to 256, both variants): the forward subgroup step at H = 128 counts about
/// 415 per step, the backward one about 1,060, the reset-before ones about 665 and
/// 1,005; this model gives each within a few percent.
pub(crate) fn sequence_iterations(kernel: Kernel, h: u64) -> u64 {
    let (ut, wg) = (u64::from(UT), u64::from(WG));
    // The row loops after a matvec: UT units (with exit) x TB rows (with break).
    let rows = |tb: u64| (ut + 1) + ut * (tb + 1);
    // A subgroup matvec over k values: blocks of 8, each an 8-trip shuffle loop.
    let sub = |k: u64| (k / 8 + 1) * 10;
    // A plain matvec: one k per trip (its TB loop unrolled).
    let plain = |k: u64| k + 1;
    let (tb16, tb8) = (u64::from(TB_SUBGROUP), u64::from(TB));
    let blocks = h.div_ceil(wg);
    let per_step = match kernel {
        Kernel::SeqFusedSg | Kernel::SeqFusedUb => blocks * (sub(h) + rows(tb16)),
        Kernel::SeqStateGatesSg | Kernel::SeqStateGatesUb => blocks * (sub(3 * h) + rows(tb16)),
        Kernel::SeqFused => blocks * (plain(h) + rows(tb8)),
        Kernel::SeqStateGates => blocks * (plain(3 * h) + rows(tb8)),
        Kernel::SeqGatesCandidate => 2 * blocks * (plain(h) + rows(tb8)),
        // Gates (a unit per thread, TB rows each), candidate (the n rows), r and z rows.
        Kernel::SeqBefore => {
            h.div_ceil(wg / ut) * (tb8 + 1)
                + blocks * (plain(h) + rows(tb8))
                + blocks * (plain(2 * h) + rows(tb8))
        }
        _ => 0,
    };
    // Each unit-block loop's exit and the step loop's own trip.
    per_step + 4
}

/// Uniform windows of W_hhᵀ the "gru_step_fwd_uniform" build binds
/// (shaders/parts/step_w_uniform.wgsl), and the floats in each.
const W_WINDOWS: usize = 4;
const WINDOW_FLOATS: usize = (UNIFORM_WINDOW / 4) as usize;

/// A step kernel bound to its buffers; `dispatches` expands it into one entry per step.
pub(crate) struct StepKernel {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    flops: u64,
    traffic: Traffic,
}

/// What one step of `kernel` moves for one direction, `b` rows, `h` units, in a grid
/// of `unit_tiles` x `row_tiles` workgroups (a sequence entry: 1 x row tiles): the
/// matvec's `g` gate blocks of the recurrent weights (each row tile loads them) and its
/// vector (each unit tile loads its rows of it), and the step's elementwise inputs and
/// outputs.
fn step_traffic(kernel: Kernel, b: u64, h: u64, unit_tiles: u64, row_tiles: u64) -> Traffic {
    let g = matvec_rows(kernel);
    // The matvec's vector per row: the state (forward) or g gate blocks of dGh (backward).
    let backward = matches!(
        kernel.shader(),
        Shader::StepBwd
            | Shader::StepBwdSplit
            | Shader::StepBwdSplitWide
            | Shader::StepBwdSg
            | Shader::StepBwdUb
    );
    let vector = if backward { b * g * h } else { b * h };
    let weights = g * h * h;
    // Elementwise values in and out per row and unit, beyond the matvec's operands.
    let (ins, outs) = match kernel.entry() {
        // gx, h_prev (b_hh per unit, negligible) -> h, out, saved.
        "step_fused" | "seq_fused" => (4, 6),
        "step_gates" => (3, 3),
        "step_candidate" => (3, 3),
        "seq_gates_candidate" => (5, 6),
        // d_out, d_hs, saved, h_prev -> d_gx, d_gh (and d_hs of the step below).
        "bwd_gates" => (7, 6),
        "bwd_state" => (2, 1),
        "bwd_state_gates" | "seq_state_gates" => (8, 7),
        "bwd_candidate" | "bwd_rz" => (4, 3),
        "seq_before" => (9, 7),
        _ => (0, 0),
    };
    let read = weights + vector + ins * b * h;
    Traffic {
        read: 4 * read,
        written: 4 * outs * b * h,
        loads: 4 * (weights * row_tiles + vector * unit_tiles + ins * b * h),
    }
}

/// Multiply-adds of one step's recurrent matvec, as gate rows of W_hh (of H each) per
/// batch row and unit: 3 for the fused forward and the state gradient, 2 for the
/// reset-before r and z rows, 1 for its candidate; the gate kernel is elementwise.
fn matvec_rows(kernel: Kernel) -> u64 {
    match kernel {
        Kernel::StepFused
        | Kernel::StepFusedSg
        | Kernel::StepFusedUb
        | Kernel::SeqFused
        | Kernel::SeqFusedSg
        | Kernel::SeqFusedUb
        | Kernel::SeqStateGates
        | Kernel::SeqStateGatesSg
        | Kernel::SeqGatesCandidate
        | Kernel::SeqBefore
        | Kernel::BwdState
        | Kernel::BwdStateSg
        | Kernel::BwdStateGates
        | Kernel::BwdStateGatesSg
        | Kernel::BwdStateUb
        | Kernel::BwdStateGatesUb
        | Kernel::SeqStateGatesUb => 3,
        Kernel::StepFusedSplit | Kernel::BwdStateSplit | Kernel::BwdStateGatesSplit => 3,
        Kernel::StepFusedSplitWide | Kernel::BwdStateSplitWide | Kernel::BwdStateGatesSplitWide => {
            3
        }
        Kernel::StepGates | Kernel::BwdRz | Kernel::StepGatesSplit | Kernel::BwdRzSplit => 2,
        Kernel::StepGatesSplitWide | Kernel::BwdRzSplitWide => 2,
        Kernel::StepCandidate
        | Kernel::BwdCandidate
        | Kernel::StepCandidateSplit
        | Kernel::BwdCandidateSplit
        | Kernel::StepCandidateSplitWide
        | Kernel::BwdCandidateSplitWide => 1,
        _ => 0,
    }
}

/// Values the windowed builds read from the start of their weights' binding: one
/// direction's 3H·H, or a pair's from the forward direction's start to the reverse's end.
fn window_span(d: &StepDims) -> u64 {
    d.off_w as u64 + 3 * d.hidden as u64 * d.hidden as u64
}

/// Both directions' tensors of a step kernel bound together: for each pair of tensors
/// (forward, reverse), one range over both and where the reverse one starts in it, in
/// values. `None` where the device does not pair directions or some pair cannot be bound
/// as one range: then each direction takes its own dispatches.
pub(crate) fn pair(ctx: &GpuContext, tensors: &[(&Range, &Range)]) -> Option<Vec<(Range, u32)>> {
    if !ctx.pair_directions() {
        return None;
    }
    let limit = ctx.storage_limit();
    tensors.iter().map(|(f, r)| span(f, r, limit)).collect()
}

/// Whether `kernels` can run paired with the reverse direction's weights `off_w` values
/// from the forward's: the windowed builds read both through their four windows.
pub(crate) fn pair_fits(ctx: &GpuContext, kernels: &[Kernel], d: &StepDims) -> bool {
    let windowed = kernels.iter().any(|&k| {
        matches!(
            split_of(ctx, k),
            Kernel::StepFusedUb
                | Kernel::SeqFusedUb
                | Kernel::BwdStateUb
                | Kernel::BwdStateGatesUb
                | Kernel::SeqStateGatesUb
        )
    });
    !windowed || window_span(d) <= (W_WINDOWS * WINDOW_FLOATS) as u64
}

/// Whether `kernel` is a sequence entry (a chunk of steps per dispatch).
pub(crate) fn is_sequence(kernel: Kernel) -> bool {
    matches!(
        kernel,
        Kernel::SeqFused
            | Kernel::SeqFusedSg
            | Kernel::SeqFusedUb
            | Kernel::SeqGatesCandidate
            | Kernel::SeqStateGates
            | Kernel::SeqStateGatesSg
            | Kernel::SeqStateGatesUb
            | Kernel::SeqBefore
    )
}

impl StepKernel {
    /// `kernel` as [`split_of`] resolved it; `buffers` are bindings 2.. of the shader, in
    /// order; `paired`: both directions of a bidirectional layer, each binding spanning
    /// both (`pair`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ctx: &GpuContext,
        (kernel, elems): (Kernel, Elems),
        constants: &[(&'static str, u32)],
        slots: &wgpu::Buffer,
        dims: &wgpu::Buffer,
        d: &StepDims,
        buffers: &[&dyn Bind],
        paired: bool,
    ) -> Result<Self> {
        let pipeline = ctx.pipeline_as(kernel, elems, constants)?;
        let mut res = vec![
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: slots,
                offset: 0,
                size: wgpu::BufferSize::new(STEP_PARAMS_BYTES),
            }),
            dims.as_entire_binding(),
        ];
        res.extend(buffers.iter().map(|b| b.binding()));
        // The windowed builds' recurrent weights: W_hhᵀ (forward) or W_hh (backward).
        let windowed = match kernel {
            Kernel::StepFusedUb | Kernel::SeqFusedUb => Some(buffers[1]),
            Kernel::BwdStateUb | Kernel::BwdStateGatesUb | Kernel::SeqStateGatesUb => {
                Some(buffers[3])
            }
            _ => None,
        };
        if let Some(w) = windowed {
            // Windows past the weights stay inside the buffer's slack or repeat the
            // first; the shader never reads them. A pair's weights span both directions.
            let start = w.start();
            let used = (4 * window_span(d)).div_ceil(UNIFORM_WINDOW);
            res.extend((0..W_WINDOWS as u64).map(|i| {
                let offset = start + if i < used { i * UNIFORM_WINDOW } else { 0 };
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: w.raw(),
                    offset,
                    size: wgpu::BufferSize::new(UNIFORM_WINDOW),
                })
            }));
        }
        let bind_group = bind(ctx, &pipeline, kernel.entry(), res);
        // Workgroups of WG units x TB batch rows (the shaders' WG and TB: the subgroup
        // builds' TB is TB_SUBGROUP, the split builds' tile WG_SPLIT x TB_SPLIT).
        let (units, rows) = match kernel.shader() {
            Shader::StepFwdSg | Shader::StepFwdUb | Shader::StepBwdSg | Shader::StepBwdUb => {
                (WG, TB_SUBGROUP)
            }
            Shader::StepFwdSplit | Shader::StepBwdSplit => (WG_SPLIT, TB_SPLIT),
            Shader::StepFwdSplitWide | Shader::StepBwdSplitWide => (WG_SPLIT_WIDE, TB_SPLIT),
            _ => (WG, TB),
        };
        // A sequence entry's workgroup walks every unit of its rows.
        let unit_groups = if is_sequence(kernel) {
            1
        } else {
            groups(d.hidden as usize, units)
        };
        // A pair's workgroups run direction z.
        let pairs = if paired { 2 } else { 1 };
        let groups = [unit_groups, groups(d.batch as usize, rows), pairs];
        let (b, h) = (d.batch as u64, d.hidden as u64);
        let traffic =
            step_traffic(kernel, b, h, groups[0] as u64, groups[1] as u64).times(pairs as u64);
        Ok(StepKernel {
            pipeline,
            bind_group,
            groups,
            flops: 2 * matvec_rows(kernel) * b * h * h * pairs as u64,
            traffic,
        })
    }

    /// The dispatch for step `s`, reading slot `s` of the step array.
    pub(crate) fn at(&self, s: usize, stride: u32) -> Dispatch {
        self.at_steps(s, stride, 1)
    }

    /// The dispatch of a sequence entry from step `s` that covers `steps` steps (its
    /// FLOPs count them all).
    pub(crate) fn at_steps(&self, s: usize, stride: u32, steps: usize) -> Dispatch {
        Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_group.clone(),
            offset: Some(s as u32 * stride),
            groups: self.groups,
            flops: self.flops * steps as u64,
            indirect: None,
            traffic: self.traffic.times(steps as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model against the thresholds measured on llvmpipe (whole sequences in one
    /// dispatch, B 16): right at T where the count stays under 65535, wrong past it.
    #[test]
    fn the_iteration_model_fits_the_measured_thresholds() {
        let cap = 65_535u64;
        // (kernel, H, longest T that came out right, shortest that came out wrong)
        let measured = [
            (Kernel::SeqFusedSg, 64, 256, u64::MAX),
            (Kernel::SeqFusedSg, 128, 128, 256),
            (Kernel::SeqFusedSg, 256, 32, 64),
            (Kernel::SeqStateGatesSg, 64, 128, 256),
            (Kernel::SeqStateGatesSg, 128, 32, 64),
            (Kernel::SeqStateGatesSg, 256, 16, 32),
            (Kernel::SeqGatesCandidate, 128, 64, 128),
            (Kernel::SeqGatesCandidate, 256, 16, 32),
            (Kernel::SeqBefore, 128, 64, 128),
            (Kernel::SeqBefore, 256, 16, 32),
        ];
        for (k, h, ok, bad) in measured {
            let per = sequence_iterations(k, h);
            assert!(
                per * ok <= cap + cap / 20,
                "{k:?} H {h}: {per} x {ok} passed"
            );
            if bad != u64::MAX {
                assert!(
                    per * bad > cap - cap / 20,
                    "{k:?} H {h}: {per} x {bad} failed"
                );
            }
        }
    }
}
