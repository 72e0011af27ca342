//! The embedding table's lazy exact update (embed_update.wgsl): the rows a pass holds
//! are zeroed, caught up and updated; the others wait for a flush. The grids of the
//! row-list kernels come from an indirect-argument buffer the host writes with the list.

use crate::error::Result;
use crate::gpu::abi::{EmbedUpdateParams, SUMSQ_SPAN};
use crate::gpu::bind::{Bind, Range};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{bind, flat_grid, row_grid, Dispatch, Traffic};

/// Byte offsets of the grids in the indirect-argument buffer: the listed rows' values,
/// the zeroed rows' values, one thread per listed row, and the sum of squares' spans.
pub(crate) const ARGS_VALUES: u64 = 0;
pub(crate) const ARGS_ZERO: u64 = 16;
pub(crate) const ARGS_ROWS: u64 = 32;
pub(crate) const ARGS_SPANS: u64 = 48;
/// u32 values of the indirect-argument buffer.
pub(crate) const ARGS_LEN: usize = 16;

/// What every kernel of the lazy update binds.
pub(crate) struct LazyTable<'a> {
    /// (vocabulary, embedding size).
    pub dims: (usize, usize),
    pub step: &'a wgpu::Buffer,
    /// [`crate::gpu::abi::EMBED_RING`] `TrainStep`s, a uniform buffer.
    pub history: &'a wgpu::Buffer,
    pub norms: &'a wgpu::Buffer,
    pub grad: &'a Range,
    pub table: &'a Range,
    pub m: &'a Range,
    pub v: &'a Range,
    /// u32 per row: the last step the row has taken.
    pub last: &'a wgpu::Buffer,
    pub args: &'a wgpu::Buffer,
}

/// Where a dispatch's grid comes from.
enum Grid {
    Fixed([u32; 3]),
    Indirect(u64),
}

fn dispatch(
    ctx: &GpuContext,
    (kernel, adam, flush): (Kernel, bool, bool),
    t: &LazyTable,
    (count, first, slots): (usize, usize, usize),
    rows: &wgpu::Buffer,
    grid: Grid,
) -> Result<Dispatch> {
    let constants = [("ADAM", adam as u32), ("FLUSH", flush as u32)];
    let pipeline = ctx.pipeline(kernel, &constants)?;
    let q = EmbedUpdateParams {
        dim: t.dims.1 as u32,
        vocab: t.dims.0 as u32,
        count: count as u32,
        first: first as u32,
        slots: slots as u32,
        ..Default::default()
    };
    let params = ctx.uniform(kernel.entry(), bytemuck::bytes_of(&q))?;
    let resources = vec![
        params.as_entire_binding(),
        t.step.binding(),
        t.history.binding(),
        rows.binding(),
        t.norms.binding(),
        t.grad.binding(),
        t.table.binding(),
        t.m.binding(),
        t.v.binding(),
        t.last.binding(),
    ];
    let (groups, indirect) = match grid {
        Grid::Fixed(g) => (g, None),
        Grid::Indirect(at) => ([0; 3], Some((t.args.clone(), at))),
    };
    Ok(Dispatch {
        bind_group: bind(ctx, &pipeline, kernel.entry(), resources),
        pipeline,
        offset: None,
        groups,
        flops: 0,
        indirect,
        // Rows the batch lists, at most the table: counted as the whole table.
        traffic: Traffic::of_bindings(
            kernel,
            1,
            &[
                t.step, t.history, rows, t.norms, t.grad, t.table, t.m, t.v, t.last,
            ],
        ),
    })
}

/// Before a pass's forward: the listed rows (`rows`) catch up to the step before this
/// one and are marked so, and the rows of `zero` get a zero gradient.
pub(crate) fn before_pass(
    ctx: &GpuContext,
    t: &LazyTable,
    adam: bool,
    (rows, zero): (&wgpu::Buffer, &wgpu::Buffer),
) -> Result<Vec<Dispatch>> {
    [
        (Kernel::EmbedCatchUp, rows, ARGS_VALUES),
        (Kernel::EmbedMark, rows, ARGS_ROWS),
        (Kernel::EmbedRowsZero, zero, ARGS_ZERO),
    ]
    .into_iter()
    .map(|(k, list, at)| {
        dispatch(
            ctx,
            (k, adam, false),
            t,
            (0, 0, 0),
            list,
            Grid::Indirect(at),
        )
    })
    .collect()
}

/// Every row of the table up to the uniform's step (`rows` is bound but not read).
pub(crate) fn flush(
    ctx: &GpuContext,
    t: &LazyTable,
    adam: bool,
    rows: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let (vocab, dim) = t.dims;
    [
        (Kernel::EmbedCatchUp, flat_grid(ctx, vocab * dim)),
        (Kernel::EmbedMark, flat_grid(ctx, vocab)),
    ]
    .into_iter()
    .map(|(k, g)| dispatch(ctx, (k, adam, true), t, (0, 0, 0), rows, Grid::Fixed(g)))
    .collect()
}

/// The listed rows' sums of squares into norms[first .. first + slots].
pub(crate) fn rows_sumsq(
    ctx: &GpuContext,
    t: &LazyTable,
    (first, slots): (usize, usize),
    rows: &wgpu::Buffer,
) -> Result<Dispatch> {
    dispatch(
        ctx,
        (Kernel::EmbedRowsSumSq, true, false),
        t,
        (0, first, slots),
        rows,
        Grid::Indirect(ARGS_SPANS),
    )
}

/// The step on the listed rows, with the clip factor at norms[count].
pub(crate) fn rows_update(
    ctx: &GpuContext,
    t: &LazyTable,
    adam: bool,
    count: usize,
    rows: &wgpu::Buffer,
) -> Result<Dispatch> {
    dispatch(
        ctx,
        (Kernel::EmbedRowsUpdate, adam, false),
        t,
        (count, 0, 0),
        rows,
        Grid::Indirect(ARGS_VALUES),
    )
}

/// A grid of `n` invocations in workgroups of WG (none for 0), 2-D past the limit.
fn grid(ctx: &GpuContext, n: usize) -> [u32; 3] {
    if n == 0 {
        return [0, 1, 1];
    }
    flat_grid(ctx, n)
}

/// The indirect arguments for `listed` rows and `zeroed` rows of `dim` values.
pub(crate) fn args(ctx: &GpuContext, listed: usize, zeroed: usize, dim: usize) -> [u32; ARGS_LEN] {
    let spans = row_grid(ctx, (listed * dim).div_ceil(SUMSQ_SPAN as usize).max(1));
    let mut a = [0u32; ARGS_LEN];
    for (at, g) in [
        (ARGS_VALUES, grid(ctx, listed * dim)),
        (ARGS_ZERO, grid(ctx, zeroed * dim)),
        (ARGS_ROWS, grid(ctx, listed)),
        (ARGS_SPANS, spans),
    ] {
        let i = at as usize / 4;
        a[i..i + 3].copy_from_slice(&g);
    }
    a
}
