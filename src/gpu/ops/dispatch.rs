//! Recorded dispatches: a pipeline, a bind group and a grid, made once and replayed, and
//! the grids and the uniform-plus-buffers binding every op uses.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::abi::WG;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel, Pipeline, Slot};

/// One recorded dispatch: pipeline, bind group, optional dynamic offset, grid, and the
/// useful floating-point operations it does (0 where no one counts them; the kernel lab
/// reports GFLOP/s from them). With `indirect`, the grid is read from that buffer at that
/// byte offset instead (the host writes it with the step's inputs: work that follows the
/// tokens a batch holds).
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub pipeline: Arc<Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub offset: Option<u32>,
    pub groups: [u32; 3],
    pub flops: u64,
    pub indirect: Option<(wgpu::Buffer, u64)>,
    pub traffic: Traffic,
}

/// Bytes a dispatch moves, for the plan's estimates (`gru bench --plan`, design.md §9):
/// `read` and `written` count each value once (the least a memory system must deliver);
/// `loads` counts every load from global memory the workgroups issue, operands that
/// several tiles share once per tile (what a GPU's L2 serves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read at least once.
    pub read: u64,
    /// Bytes written.
    pub written: u64,
    /// Bytes loaded from global memory, counted per workgroup that loads them.
    pub loads: u64,
}

impl Traffic {
    /// `read` and `written` values of f32, each loaded once.
    pub(crate) fn floats(read: u64, written: u64) -> Self {
        Traffic {
            read: 4 * read,
            written: 4 * written,
            loads: 4 * read,
        }
    }

    /// `n` times this (a sequence entry's steps, a pair's two directions).
    pub(crate) fn times(self, n: u64) -> Self {
        Traffic {
            read: self.read * n,
            written: self.written * n,
            loads: self.loads * n,
        }
    }

    /// What `buffers` (bindings `first`.. of `kernel`) hold: the read-only ones read
    /// once, the read-write ones written once (ops that also read theirs say so).
    pub(crate) fn of_bindings(kernel: Kernel, first: usize, buffers: &[&dyn Bind]) -> Self {
        let mut t = Traffic::default();
        for (b, slot) in buffers.iter().zip(&kernel.slots()[first..]) {
            let bytes = b.bytes();
            match slot {
                Slot::Read => t.read += bytes,
                Slot::ReadWrite => t.written += bytes,
                _ => {}
            }
        }
        t.loads = t.read;
        t
    }
}

/// Replays `list` into one compute pass (wgpu orders the dispatches and their barriers).
pub(crate) fn encode(enc: &mut wgpu::CommandEncoder, label: &str, list: &[Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    for d in list {
        pass.set_pipeline(&d.pipeline.pipeline);
        match d.offset {
            Some(o) => pass.set_bind_group(0, &d.bind_group, &[o]),
            None => pass.set_bind_group(0, &d.bind_group, &[]),
        }
        match &d.indirect {
            Some((args, at)) => pass.dispatch_workgroups_indirect(args, *at),
            None => pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]),
        }
    }
}

pub(crate) fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per).max(1)
}

/// Grid for one workgroup per row, 2-D past the per-dimension limit (the kernels
/// flatten `workgroup_id.y * num_workgroups.x + workgroup_id.x`).
pub(crate) fn row_grid(ctx: &GpuContext, rows: usize) -> [u32; 3] {
    let total = (rows as u32).max(1);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    [gx, total.div_ceil(gx), 1]
}

/// Grid for one invocation per element in workgroups of `WG`, 2-D past the per-dimension
/// limit (the kernels flatten `gid.y * num_workgroups.x * WG + gid.x`).
pub(crate) fn flat_grid(ctx: &GpuContext, n: usize) -> [u32; 3] {
    let total = groups(n, WG);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    [gx, total.div_ceil(gx), 1]
}

pub(crate) fn bind(
    ctx: &GpuContext,
    p: &Pipeline,
    label: &str,
    resources: Vec<wgpu::BindingResource<'_>>,
) -> wgpu::BindGroup {
    let entries: Vec<_> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &p.layout,
        entries: &entries,
    })
}

/// A dispatch of `kernel` whose binding 0 is a uniform holding `params` and whose
/// bindings 1.. are `buffers`, in order.
pub(crate) fn param_dispatch(
    ctx: &GpuContext,
    kernel: Kernel,
    constants: &[(&'static str, u32)],
    label: &str,
    params: &[u8],
    buffers: &[&dyn Bind],
    groups: [u32; 3],
) -> Result<Dispatch> {
    param_dispatch_as(
        ctx,
        (kernel, Elems::F32),
        constants,
        label,
        params,
        buffers,
        groups,
    )
}

/// [`param_dispatch`] of the build of `kernel` with storage types `elems`.
pub(crate) fn param_dispatch_as(
    ctx: &GpuContext,
    (kernel, elems): (Kernel, Elems),
    constants: &[(&'static str, u32)],
    label: &str,
    params: &[u8],
    buffers: &[&dyn Bind],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let pipeline = ctx.pipeline_as(kernel, elems, constants)?;
    let params = ctx.uniform(label, params)?;
    let mut resources = vec![params.as_entire_binding()];
    resources.extend(buffers.iter().map(|b| b.binding()));
    let bind_group = bind(ctx, &pipeline, label, resources);
    Ok(Dispatch {
        pipeline,
        bind_group,
        offset: None,
        groups,
        flops: 0,
        indirect: None,
        traffic: Traffic::of_bindings(kernel, 1, buffers),
    })
}

/// A dispatch of `kernel` binding `buffers` (uniforms included) in order: for kernels
/// whose uniform is a buffer the caller rewrites (the loss's count, per batch).
pub(crate) fn buffers_dispatch(
    ctx: &GpuContext,
    kernel: Kernel,
    label: &str,
    buffers: &[&dyn Bind],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let pipeline = ctx.pipeline(kernel, &[])?;
    let bind_group = bind(
        ctx,
        &pipeline,
        label,
        buffers.iter().map(|b| b.binding()).collect(),
    );
    Ok(Dispatch {
        pipeline,
        bind_group,
        offset: None,
        groups,
        flops: 0,
        indirect: None,
        traffic: Traffic::of_bindings(kernel, 0, buffers),
    })
}
