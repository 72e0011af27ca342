//! The per-step kernels of the recurrence (gru_step_fwd.wgsl, gru_step_bwd.wgsl): the
//! step slots and a kernel bound once, replayed for every step.

use std::sync::Arc;

use crate::error::Result;
pub(crate) use crate::gpu::abi::{StepDims, StepParams};
use crate::gpu::abi::{TB, TB_SUBGROUP, WG};
use crate::gpu::context::{GpuContext, UNIFORM_WINDOW};
use crate::gpu::kernels::{Kernel, Pipeline, Shader, STEP_PARAMS_BYTES};
use crate::gpu::ops::dispatch::{bind, groups, Dispatch};

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
/// The fused forward step also reads W_hhᵀ through uniform windows where the adapter
/// takes them ([`GpuContext::uniform_windows`]) and `hidden` fits them.
pub(crate) fn for_device(ctx: &GpuContext, kernel: Kernel, hidden: usize) -> Kernel {
    let subgroups = ctx.subgroup_builds();
    let windows = ctx.uniform_windows() && 3 * hidden * hidden <= W_WINDOWS * WINDOW_FLOATS;
    match kernel {
        Kernel::StepFused if windows => Kernel::StepFusedUb,
        Kernel::StepFused if subgroups => Kernel::StepFusedSg,
        Kernel::BwdState if subgroups => Kernel::BwdStateSg,
        Kernel::BwdStateGates if subgroups => Kernel::BwdStateGatesSg,
        k => k,
    }
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
}

/// Multiply-adds of one step's recurrent matvec, as gate rows of W_hh (of H each) per
/// batch row and unit: 3 for the fused forward and the state gradient, 2 for the
/// reset-before r and z rows, 1 for its candidate; the gate kernel is elementwise.
fn matvec_rows(kernel: Kernel) -> u64 {
    match kernel {
        Kernel::StepFused
        | Kernel::StepFusedSg
        | Kernel::StepFusedUb
        | Kernel::BwdState
        | Kernel::BwdStateSg
        | Kernel::BwdStateGates
        | Kernel::BwdStateGatesSg => 3,
        Kernel::StepGates | Kernel::BwdRz => 2,
        Kernel::StepCandidate | Kernel::BwdCandidate => 1,
        _ => 0,
    }
}

impl StepKernel {
    /// `buffers` are bindings 2.. of the shader, in order.
    pub(crate) fn new(
        ctx: &GpuContext,
        kernel: Kernel,
        constants: &[(&'static str, u32)],
        slots: &wgpu::Buffer,
        dims: &wgpu::Buffer,
        d: &StepDims,
        buffers: &[&wgpu::Buffer],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(kernel, constants)?;
        let mut res = vec![
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: slots,
                offset: 0,
                size: wgpu::BufferSize::new(STEP_PARAMS_BYTES),
            }),
            dims.as_entire_binding(),
        ];
        res.extend(buffers.iter().map(|b| b.as_entire_binding()));
        if kernel == Kernel::StepFusedUb {
            // Windows past W_hhᵀ's values stay inside the buffer's slack or repeat the
            // first; the shader never reads them.
            let w = buffers[1];
            let used = (3 * d.hidden as u64 * d.hidden as u64 * 4).div_ceil(UNIFORM_WINDOW);
            res.extend((0..W_WINDOWS as u64).map(|i| {
                let offset = if i < used { i * UNIFORM_WINDOW } else { 0 };
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: w,
                    offset,
                    size: wgpu::BufferSize::new(UNIFORM_WINDOW),
                })
            }));
        }
        let bind_group = bind(ctx, &pipeline, kernel.entry(), res);
        // Workgroups of WG units x TB batch rows (the shaders' WG and TB; the subgroup
        // builds' TB is TB_SUBGROUP).
        let rows = match kernel.shader() {
            Shader::StepFwdSg | Shader::StepFwdUb | Shader::StepBwdSg => TB_SUBGROUP,
            _ => TB,
        };
        let groups = [
            groups(d.hidden as usize, WG),
            groups(d.batch as usize, rows),
            1,
        ];
        let (b, h) = (d.batch as u64, d.hidden as u64);
        Ok(StepKernel {
            pipeline,
            bind_group,
            groups,
            flops: 2 * matvec_rows(kernel) * b * h * h,
        })
    }

    /// The dispatch for step `s`, reading slot `s` of the step array.
    pub(crate) fn at(&self, s: usize, stride: u32) -> Dispatch {
        Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_group.clone(),
            offset: Some(s as u32 * stride),
            groups: self.groups,
            flops: self.flops,
        }
    }
}
