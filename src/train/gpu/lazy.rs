//! The embedding table's lazy exact update, on the host side: which rows a pass holds
//! (written with its inputs), the ring of each step's hyperparameters, and when every
//! row must be brought up to date (shaders/embed_update.wgsl says how).
//!
//! Dense Adam moves all of a 70,000-word table every step; on a software adapter that
//! is 60 MB of loads and stores a step. Lazily, a step moves the rows its batch holds,
//! and the rest replay the steps they sat out when next needed, to the same values.

use crate::error::Result;
use crate::gpu::abi::{TrainStep, EMBED_RING};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::embed_update::{self, LazyTable, ARGS_LEN};
use crate::gpu::ops::{encode, Dispatch};

use super::tensors::GpuTensor;

/// Most values of a table the GPU builds update densely. The lazy update costs a step
/// five dispatches (about 25 µs on a GPU); the dense one moves 32 bytes a value (the
/// norm's read, Adam's four reads and three writes), which at the smallest DRAM
/// bandwidth in the estimate's GPU table (400 GB/s, docs/design.md §9) takes as long
/// at about 310,000 values. Software adapters keep the lazy update at any size: their
/// dispatches are cheap and their loads slow.
const DENSE_TABLE_VALUES: usize = 1 << 18;

/// Whether an embedding table of `values` values takes the lazy update on `ctx`
/// (otherwise it joins the flat buffers' dense update, and the gradient pass writes all
/// its rows).
pub(crate) fn wanted(ctx: &GpuContext, values: usize) -> bool {
    !ctx.gpu_builds() || values > DENSE_TABLE_VALUES
}

/// The lazy update's buffers, lists and lag.
pub(crate) struct LazyEmbedding {
    pub vocab: usize,
    pub dim: usize,
    pub adam: bool,
    /// [D | rows] of the present pass: the rows its batch holds, ascending.
    pub rows: wgpu::Buffer,
    /// [Z | rows] to zero before the pass: its rows and the last pass's.
    zero: wgpu::Buffer,
    /// Indirect grids for both lists (`embed_update::args`).
    pub args: wgpu::Buffer,
    /// Uniform ring of the last [`EMBED_RING`] steps' `TrainStep`.
    pub history: wgpu::Buffer,
    /// u32 per row: the last step it has taken.
    pub last: wgpu::Buffer,
    /// Catch-up, mark and gradient zeroing, before a pass with a backward.
    pub before: Vec<Dispatch>,
    /// Every row up to the uniform's step.
    pub flush: Vec<Dispatch>,
    /// The rows of the last pass with a backward (their gradients are not zero).
    prev: Vec<u32>,
    /// Whether some row has not taken every step so far.
    pub lagging: bool,
}

impl LazyEmbedding {
    /// The lazy update of `table` (the embedding tensor, [vocab, dim]).
    pub(crate) fn new(
        ctx: &GpuContext,
        table: &GpuTensor,
        adam: bool,
        (step, norms): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<Self> {
        use wgpu::BufferUsages as U;
        let (vocab, dim) = (table.info.shape[0], table.info.shape[1]);
        let ring = EMBED_RING as usize * std::mem::size_of::<TrainStep>();
        let mut lazy = LazyEmbedding {
            vocab,
            dim,
            adam,
            rows: ctx.storage("embed_rows", vocab + 1)?,
            zero: ctx.storage("embed_zero_rows", vocab + 1)?,
            args: ctx.buffer(
                "embed_update_args",
                4 * ARGS_LEN as u64,
                U::INDIRECT | U::COPY_DST,
            )?,
            history: ctx.buffer(
                "embed_update_history",
                ring as u64,
                U::UNIFORM | U::COPY_DST,
            )?,
            last: ctx.storage("embed_last_step", vocab)?,
            before: Vec::new(),
            flush: Vec::new(),
            prev: Vec::new(),
            lagging: false,
        };
        let t = lazy.table(table, step, norms)?;
        let before = embed_update::before_pass(ctx, &t, adam, (&lazy.rows, &lazy.zero))?;
        let flush = embed_update::flush(ctx, &t, adam, &lazy.rows)?;
        lazy.before = before;
        lazy.flush = flush;
        Ok(lazy)
    }

    /// What the kernels bind.
    pub(crate) fn table<'a>(
        &'a self,
        t: &'a GpuTensor,
        step: &'a wgpu::Buffer,
        norms: &'a wgpu::Buffer,
    ) -> Result<LazyTable<'a>> {
        let train = t.train()?;
        Ok(LazyTable {
            dims: (self.vocab, self.dim),
            step,
            history: &self.history,
            norms,
            grad: &train.grad,
            table: &t.value,
            m: &train.m,
            v: &train.v,
            last: &self.last,
            args: &self.args,
        })
    }

    /// Writes the rows of a pass with a backward over `tokens` (ids already checked
    /// against the vocabulary), and the rows to zero (these and the last pass's).
    pub(crate) fn write_rows(&mut self, ctx: &GpuContext, tokens: &[u32]) {
        // Work in the batch's size, not the vocabulary's.
        let mut rows = tokens.to_vec();
        rows.sort_unstable();
        rows.dedup();
        let mut zero: Vec<u32> = rows.iter().chain(&self.prev).copied().collect();
        zero.sort_unstable();
        zero.dedup();
        let q = &ctx.queue;
        q.write_buffer(&self.rows, 0, bytemuck::cast_slice(&list(&rows)));
        q.write_buffer(&self.zero, 0, bytemuck::cast_slice(&list(&zero)));
        let args = embed_update::args(ctx, rows.len(), zero.len(), self.dim);
        q.write_buffer(&self.args, 0, bytemuck::cast_slice(&args));
        self.prev = rows;
    }

    /// Keeps step `u.index`'s hyperparameters for the rows that will replay it.
    pub(crate) fn write_history(&self, ctx: &GpuContext, u: &TrainStep) {
        let at = (u.index % EMBED_RING) as u64 * std::mem::size_of::<TrainStep>() as u64;
        ctx.queue
            .write_buffer(&self.history, at, bytemuck::bytes_of(u));
    }

    /// Whether step `index` must end with a flush: the ring holds no older step.
    pub(crate) fn flush_after(index: u64) -> bool {
        index.is_multiple_of(EMBED_RING as u64)
    }

    /// Records every row up to date (the host has just written the whole table or its
    /// moments at step `step`).
    pub(crate) fn set_current(&mut self, ctx: &GpuContext, step: u64) {
        let all = vec![step as u32; self.vocab];
        ctx.queue
            .write_buffer(&self.last, 0, bytemuck::cast_slice(&all));
        self.lagging = false;
    }

    /// Encodes the flush (the step uniform must hold the number of steps taken).
    pub(crate) fn encode_flush(&mut self, enc: &mut wgpu::CommandEncoder) {
        encode(enc, "embed_flush", &self.flush);
        self.lagging = false;
    }
}

/// [n | rows].
fn list(rows: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(rows.len() + 1);
    out.push(rows.len() as u32);
    out.extend_from_slice(rows);
    out
}
