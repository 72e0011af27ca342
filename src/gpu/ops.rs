//! Recorded dispatches: the uniform structs that mirror the WGSL ones, and builders that
//! bind buffers to a kernel once so each pass only replays a list.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, Pipeline, STEP_PARAMS_BYTES};

/// `GemmParams` in gemm.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub off_a: u32,
    pub off_b: u32,
    pub off_c: u32,
    pub _pad: [u32; 3],
}

/// `ColsumParams` in colsum.wgsl and `TransposeParams` in transpose.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct Dims4 {
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub _pad: u32,
}

/// `StepParams` in the step shaders: one slot per step, read at a dynamic offset.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct StepParams {
    pub step: u32,
    pub time_fwd: u32,
    pub time_rev: u32,
    pub _pad: u32,
}

/// `StepDims` in the step shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct StepDims {
    pub batch: u32,
    pub hidden: u32,
    pub out_stride: u32,
    pub out_offset: u32,
    pub reverse: u32,
    pub seq_len: u32,
    pub _pad: [u32; 2],
}

const _: () = assert!(std::mem::size_of::<GemmParams>() == 48);
const _: () = assert!(std::mem::size_of::<Dims4>() == 16);
const _: () = assert!(std::mem::size_of::<StepParams>() as u64 == STEP_PARAMS_BYTES);
const _: () = assert!(std::mem::size_of::<StepDims>() == 32);

/// One recorded dispatch: pipeline, bind group, optional dynamic offset, grid.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub pipeline: Arc<Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub offset: Option<u32>,
    pub groups: [u32; 3],
}

/// Replays `list` into one compute pass (wgpu orders the dispatches and their barriers).
pub(crate) fn encode(enc: &mut wgpu::CommandEncoder, label: &str, list: &[Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
    for d in list {
        pass.set_pipeline(&d.pipeline.pipeline);
        match d.offset {
            Some(o) => pass.set_bind_group(0, &d.bind_group, &[o]),
            None => pass.set_bind_group(0, &d.bind_group, &[]),
        }
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per).max(1)
}

fn bind(ctx: &GpuContext, p: &Pipeline, label: &str, resources: Vec<wgpu::BindingResource<'_>>) -> wgpu::BindGroup {
    let entries: Vec<_> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &p.layout, entries: &entries })
}

/// Options of a GEMM, each a pipeline override.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GemmFlags {
    pub trans_a: bool,
    pub trans_b: bool,
    pub accumulate: bool,
    pub bias: bool,
}

/// C = op(A) · op(B) (+ bias) (+ C); see gemm.wgsl for the meaning of `p`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    ctx: &GpuContext,
    label: &str,
    p: GemmParams,
    f: GemmFlags,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Result<Dispatch> {
    let pipeline = ctx.pipeline(
        Kernel::Gemm,
        &[
            ("TRANS_A", f.trans_a as u32),
            ("TRANS_B", f.trans_b as u32),
            ("ACCUMULATE", f.accumulate as u32),
            ("BIAS", f.bias as u32),
        ],
    )?;
    let params = ctx.uniform(label, bytemuck::bytes_of(&p))?;
    let bind_group = bind(
        ctx,
        &pipeline,
        label,
        vec![params.as_entire_binding(), a.as_entire_binding(), b.as_entire_binding(), bias.as_entire_binding(), c.as_entire_binding()],
    );
    Ok(Dispatch { pipeline, bind_group, offset: None, groups: [groups(p.n as usize, 64), groups(p.m as usize, 64), 1] })
}

/// out[N] = column sums of x[M, ld].
pub(crate) fn colsum(ctx: &GpuContext, label: &str, m: usize, n: usize, ld: usize, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Dispatch> {
    let pipeline = ctx.pipeline(Kernel::Colsum, &[("ACCUMULATE", 0)])?;
    let params = ctx.uniform(label, bytemuck::bytes_of(&Dims4 { a: m as u32, b: n as u32, c: ld as u32, _pad: 0 }))?;
    let bind_group = bind(ctx, &pipeline, label, vec![params.as_entire_binding(), x.as_entire_binding(), out.as_entire_binding()]);
    Ok(Dispatch { pipeline, bind_group, offset: None, groups: [groups(n, 64), 1, 1] })
}

/// dst[C, R] = src[R, C]ᵀ.
pub(crate) fn transpose(ctx: &GpuContext, label: &str, rows: usize, cols: usize, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<Dispatch> {
    let pipeline = ctx.pipeline(Kernel::Transpose, &[])?;
    let params = ctx.uniform(label, bytemuck::bytes_of(&Dims4 { a: rows as u32, b: cols as u32, c: 0, _pad: 0 }))?;
    let bind_group = bind(ctx, &pipeline, label, vec![params.as_entire_binding(), src.as_entire_binding(), dst.as_entire_binding()]);
    Ok(Dispatch { pipeline, bind_group, offset: None, groups: [groups(cols, 16), groups(rows, 16), 1] })
}

/// The uniform array of step slots [T] at `stride` bytes apart, written once per shape.
pub(crate) fn step_slots(ctx: &GpuContext, t_len: usize) -> Result<(wgpu::Buffer, u32)> {
    let stride = (ctx.limits.min_uniform_buffer_offset_alignment as usize).max(STEP_PARAMS_BYTES as usize);
    let mut bytes = vec![0u8; t_len * stride];
    for s in 0..t_len {
        let slot = StepParams { step: s as u32, time_fwd: s as u32, time_rev: (t_len - 1 - s) as u32, _pad: 0 };
        bytes[s * stride..s * stride + 16].copy_from_slice(bytemuck::bytes_of(&slot));
    }
    Ok((ctx.uniform("step_slots", &bytes)?, stride as u32))
}

/// A step kernel bound to its buffers; `dispatches` expands it into one entry per step.
pub(crate) struct StepKernel {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl StepKernel {
    /// `buffers` are bindings 2.. of the shader, in order.
    pub(crate) fn new(
        ctx: &GpuContext,
        kernel: Kernel,
        slots: &wgpu::Buffer,
        dims: &wgpu::Buffer,
        d: &StepDims,
        buffers: &[&wgpu::Buffer],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(kernel, &[])?;
        let mut res = vec![
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: slots,
                offset: 0,
                size: wgpu::BufferSize::new(STEP_PARAMS_BYTES),
            }),
            dims.as_entire_binding(),
        ];
        res.extend(buffers.iter().map(|b| b.as_entire_binding()));
        let bind_group = bind(ctx, &pipeline, kernel.entry(), res);
        // Workgroups: 64 units x 4 batch rows (WG and TB in the shaders).
        let groups = [groups(d.hidden as usize, 64), groups(d.batch as usize, 4), 1];
        Ok(StepKernel { pipeline, bind_group, groups })
    }

    /// The dispatch for step `s`, reading slot `s` of the step array.
    pub(crate) fn at(&self, s: usize, stride: u32) -> Dispatch {
        Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_group.clone(),
            offset: Some(s as u32 * stride),
            groups: self.groups,
        }
    }
}
