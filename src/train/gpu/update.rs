//! The update after backward, the same for every shape: the global gradient norm and
//! clip factor, then the optimiser over each segment of the flat buffers (one dispatch
//! for most models, whatever their tensor count; the embedding table's segment takes
//! the lazy update over the rows its batch holds), then Keras' max-norm per tensor. In
//! mixed precision the optimiser also writes the f16 copies, which max-norm, where it
//! is on, makes refresh again.

use super::lazy::LazyEmbedding;
use super::tensors::{Flats, GpuTensor};

use crate::error::Result;
use crate::gpu::abi::{CopyParams, TrainStep};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::copy::strided_copy_as;
use crate::gpu::ops::embed_update::{rows_sumsq, rows_update};
use crate::gpu::ops::optim::{
    clip_scale, max_norm_pairs, max_norm_rows, optimizer_step, sum_squares, sumsq_slots,
};
use crate::gpu::ops::Dispatch;
use crate::model::ParamRole;
use crate::train::options::{Optimizer, TrainOptions};

/// Slots of partial sums of squares of every segment: `norms` holds them, then the clip
/// factor and the norm.
pub(crate) fn norm_slots(flats: &Flats) -> usize {
    flats.layout.segments.iter().map(|&n| sumsq_slots(n)).sum()
}

/// The update list; `step` is the training uniform, `norms` [norm_slots + 2].
pub(crate) fn plan(
    ctx: &GpuContext,
    (flats, tensors, lazy): (&Flats, &[GpuTensor], Option<&LazyEmbedding>),
    options: &TrainOptions,
    step: &wgpu::Buffer,
    norms: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let count = norm_slots(flats);
    let segments = flats.layout.segments.len();
    // The embedding's segment holds the table alone (tensor 0).
    let lazy = lazy
        .zip(flats.lazy)
        .map(|(l, s)| Ok::<_, crate::error::GruError>((s, l.table(&tensors[0], step, norms)?, l)))
        .transpose()?;
    let mut list = Vec::new();
    let mut first = 0;
    for s in 0..segments {
        let t = flats.segment(s)?;
        let slots = sumsq_slots(t.len);
        list.push(match &lazy {
            Some((ls, table, l)) if *ls == s => rows_sumsq(ctx, table, (first, slots), &l.rows)?,
            _ => sum_squares(ctx, step, (&t, first), count, norms)?,
        });
        first += slots;
    }
    let grads = &flats.train()?.grad;
    list.push(clip_scale(ctx, step, count, &grads.buffers[0], norms)?);
    let kernel = match options.optimizer {
        Optimizer::Sgd { .. } => Kernel::Sgd,
        Optimizer::Adam | Optimizer::AdamW => Kernel::Adam,
    };
    for s in 0..segments {
        let t = flats.segment(s)?;
        list.push(match &lazy {
            Some((ls, table, l)) if *ls == s => rows_update(ctx, table, l.adam, count, &l.rows)?,
            _ => optimizer_step(ctx, kernel, step, norms, &t, count)?,
        });
    }
    if let Some(c) = options.max_norm {
        for (i, t) in tensors.iter().enumerate() {
            let rows = t.info.shape[0];
            match t.info.role {
                ParamRole::GruKernel | ParamRole::GruRecurrent => {
                    list.push(max_norm_rows(ctx, (rows, t.info.shape[1], c), &t.value)?);
                }
                ParamRole::GruBiasIh => {
                    // Keras' reset-after bias [2, 3H]: each (b_ih[j], b_hh[j]) together.
                    let b_hh = &tensors[i + 1].value;
                    list.push(max_norm_pairs(ctx, (rows, c), &t.value, b_hh)?);
                }
                _ => {}
            }
        }
        // Max-norm changed values the optimiser already copied.
        list.extend(refresh(ctx, flats)?);
    }
    Ok(list)
}

/// Mixed precision: the f16 copies of every segment of values refreshed from the f32
/// master values (one rounding copy per segment): what follows a write of the values,
/// and max-norm; nothing in f32.
pub(crate) fn refresh(ctx: &GpuContext, flats: &Flats) -> Result<Vec<Dispatch>> {
    let Some(value16) = &flats.value16 else {
        return Ok(Vec::new());
    };
    flats
        .layout
        .segments
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let p = CopyParams::run(n, 0, 0);
            let (src, dst) = (&flats.value.buffers[s], &value16.buffers[s]);
            strided_copy_as(ctx, p, (src, dst), (false, true))
        })
        .collect()
}

/// The training uniform of update number `step`: hyperparameters, Adam's bias
/// corrections, the dropout seed.
pub(crate) fn step_uniform(options: &TrainOptions, step: u64) -> TrainStep {
    let o = options;
    let (bc1, bc2) = o.bias_corrections(step);
    TrainStep {
        lr: o.learning_rate,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weight_decay: o.weight_decay,
        momentum: match o.optimizer {
            Optimizer::Sgd { momentum } => momentum,
            _ => 0.0,
        },
        bc1,
        bc2,
        clip_value: o.clip_value.unwrap_or(0.0),
        clip_norm: o.clip_norm.unwrap_or(0.0),
        clip: o.clip_norm.is_some() as u32,
        seed: o.step_seed(step),
        decoupled: (o.optimizer == Optimizer::AdamW) as u32,
        index: step as u32,
        ..Default::default()
    }
}
