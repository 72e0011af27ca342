//! One (T, B) of the trainer: the model plans of its chunks of batch rows (one chunk
//! unless a workspace for the whole batch would pass the device's storage binding
//! limit, as in the layer's own chunking), written and encoded together so that a pass
//! stays one submission.

use crate::budget::{activation_bytes, available_host_memory, human_bytes};
use crate::error::{GruError, Result};
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{encode, Dispatch};
use crate::gpu::workspace::Workspace;
use crate::memory::approx_bytes;
use crate::model::batch::Prepared;
use crate::model::{Head, ModelConfig};

use super::carry::Carry;
use super::place::Place;
use super::plan::{ModelBuffers, ModelPlan};
use crate::dist::shard::Shard;

/// What one submission over a shape runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Gradients, then the update; a stateful model reads and advances its carry.
    Train,
    /// Gradients only; a stateful model reads its carry but does not advance it.
    Gradients,
    /// Forward and loss, counted under [`crate::train::Split::Eval`].
    Eval,
    /// Forward only.
    Predict,
}

/// The plans of one (T, B), in row order.
pub(crate) struct ModelRun {
    pub batch: usize,
    /// Where the rows sit in the global batch (dropout masks follow it).
    pub shard: Shard,
    chunks: Vec<ModelPlan>,
}

impl ModelRun {
    /// Plans for (T, B), in chunks of at most `cap` rows (and at most what one workspace
    /// of the device holds).
    pub(crate) fn new(
        ctx: &GpuContext,
        cfg: &ModelConfig,
        bufs: &ModelBuffers,
        (t_len, batch): (usize, usize),
        cap: Option<usize>,
        shard: Option<Shard>,
    ) -> Result<Self> {
        check_host_memory(ctx, cfg, (t_len, batch))?;
        let shard = shard.unwrap_or(Shard::whole(batch));
        shard.check(batch)?;
        let rows = max_rows(ctx, cfg, bufs, t_len).min(cap.unwrap_or(usize::MAX));
        if rows == 0 {
            let width = cfg.hidden_size.max(cfg.outputs);
            return Err(GruError::TooLarge {
                what: format!("one batch row of T = {t_len} steps (activations [T, 1, 4H] with H = {}, logits [T, 1, {}])", cfg.hidden_size, cfg.outputs),
                bytes: 16 * (t_len * width) as u64,
                limit: ctx.storage_limit(),
            });
        }
        let chunks = (0..batch)
            .step_by(rows)
            .map(|row0| {
                let place = Place {
                    row0,
                    rows: rows.min(batch - row0),
                    total: batch,
                    shard,
                };
                ModelPlan::new(ctx, cfg, bufs, t_len, place)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelRun {
            batch,
            shard,
            chunks,
        })
    }

    /// The plan of a batch that fits one workspace (generation's B = 1).
    pub(crate) fn single(&self) -> Result<&ModelPlan> {
        match self.chunks.as_slice() {
            [plan] => Ok(plan),
            _ => Err(GruError::State(format!(
                "a batch of {} rows runs in {} chunks, where one was expected",
                self.batch,
                self.chunks.len()
            ))),
        }
    }

    /// Dispatches of a training pass over every chunk (the update not included).
    pub(crate) fn train_dispatches(&self) -> usize {
        self.chunks.iter().map(|p| p.train.len()).sum()
    }

    /// The training pass's dispatches over every chunk, in order.
    pub(crate) fn train_list(&self) -> Vec<Dispatch> {
        self.chunks
            .iter()
            .flat_map(|p| p.train.iter().cloned())
            .collect()
    }

    /// Writes a checked batch's inputs, each chunk its rows.
    pub(crate) fn write_inputs(&self, ctx: &GpuContext, cfg: &ModelConfig, prep: &Prepared) {
        if let [plan] = self.chunks.as_slice() {
            return plan.write_inputs(ctx, cfg, prep);
        }
        for plan in &self.chunks {
            let part = prep.rows(cfg.head, plan.place.row0, plan.place.rows);
            plan.write_inputs(ctx, cfg, &part);
        }
    }

    /// Records `pass` over every chunk: initial states (zeros, or `carry_in`'s rows),
    /// the pass's list, and the copy of the final states into `carry_out`.
    pub(crate) fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        cfg: &ModelConfig,
        pass: Pass,
        (carry_in, carry_out): (Option<&Carry>, Option<&Carry>),
    ) {
        let h = cfg.hidden_size;
        let nd = cfg.gru_config().num_directions();
        // Byte offset and length of a chunk's rows of direction d in a carry [dirs, B, H].
        let at = |plan: &ModelPlan, d: usize| {
            let row = d * self.batch + plan.place.row0;
            (4 * (row * h) as u64, 4 * (plan.batch * h) as u64)
        };
        for plan in &self.chunks {
            for (l, ws) in plan.layers.iter().enumerate() {
                for d in 0..nd {
                    let (off, len) = at(plan, d);
                    let st = ws.states(d);
                    match carry_in {
                        Some(c) => {
                            enc.copy_buffer_to_buffer(&c.layers[l], off, st.raw(), st.start(), len)
                        }
                        None => enc.clear_buffer(st.raw(), st.start(), Some(len)),
                    }
                }
            }
            let list: &[Dispatch] = match pass {
                Pass::Train | Pass::Gradients => &plan.train,
                Pass::Eval => &plan.eval,
                Pass::Predict => &plan.predict,
            };
            encode(enc, "model", list);
            if let Some(c) = carry_out {
                for (l, ws) in plan.layers.iter().enumerate() {
                    let last = ws.final_state_offset(h);
                    for d in 0..nd {
                        let (off, len) = at(plan, d);
                        let st = ws.states(d);
                        let at = st.start() + last;
                        enc.copy_buffer_to_buffer(st.raw(), at, &c.layers[l], off, len);
                    }
                }
            }
        }
    }

    /// The logits of the last predict pass, [head rows, C] time-major over the whole
    /// batch (a readback per chunk).
    pub(crate) async fn read_logits(
        &self,
        ctx: &GpuContext,
        cfg: &ModelConfig,
    ) -> Result<Vec<f32>> {
        let c = cfg.outputs;
        let steps = match cfg.head {
            Head::EveryStep => self.chunks[0].t_len,
            Head::LastState => 1,
        };
        let mut out = vec![0.0; steps * self.batch * c];
        for plan in &self.chunks {
            let (row0, rows) = (plan.place.row0, plan.batch);
            let part = ctx
                .read_f32_async(&plan.staging, &[(&plan.logits, 0, steps * rows * c)])
                .await?
                .concat();
            for t in 0..steps {
                let dst = (t * self.batch + row0) * c;
                out[dst..dst + rows * c].copy_from_slice(&part[t * rows * c..(t + 1) * rows * c]);
            }
        }
        Ok(out)
    }
}

/// A software adapter's buffers are host memory, which it maps lazily: a shape past what
/// the host has would allocate without complaint and end in the OOM killer, so it is
/// refused first. (A GPU reports running out as an error when the buffers are made.)
fn check_host_memory(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    (t_len, batch): (usize, usize),
) -> Result<()> {
    if ctx.adapter_info().device_type != wgpu::DeviceType::Cpu {
        return Ok(());
    }
    let need = activation_bytes(cfg, batch, t_len);
    match available_host_memory() {
        Some(avail) if need > avail => {
            let fit = avail / activation_bytes(cfg, 1, t_len).max(1);
            Err(GruError::HostMemory {
                what: format!("a training batch of B = {batch} rows x T = {t_len} steps on the software adapter (at most {fit} rows fit)"),
                needed: approx_bytes(need),
                available: human_bytes(avail),
                hint: "use a smaller batch or sequence".into(),
            })
        }
        _ => Ok(()),
    }
}

/// The most batch rows one plan of `t_len` steps holds: every layer's workspace and the
/// head's buffers (logits, head input) within one storage binding.
fn max_rows(ctx: &GpuContext, cfg: &ModelConfig, bufs: &ModelBuffers, t_len: usize) -> usize {
    let layers = bufs
        .layers
        .iter()
        .map(|(lc, _)| Workspace::max_rows(ctx, lc, t_len))
        .min()
        .unwrap_or(0);
    let steps = match cfg.head {
        Head::EveryStep => t_len,
        Head::LastState => 1,
    };
    let per_row = steps * cfg.outputs.max(cfg.head_input_size()).max(1);
    let head = (ctx.storage_limit() / 4) as usize / per_row;
    layers.min(head)
}

#[cfg(test)]
mod tests {
    use crate::model::{Batch, ModelConfig};

    /// A chunk's rows, taken time-major, are the whole batch's rows.
    #[test]
    fn chunk_rows_are_the_batchs_rows() {
        let (t, b) = (3, 5);
        let cfg = ModelConfig::language_model(7, 2, 3);
        let x: Vec<u32> = (0..t * b).map(|i| (i % 7) as u32).collect();
        let prep = Batch::tokens(&x, b, t)
            .classes(&x)
            .prepare(&cfg, true)
            .unwrap();
        let part = prep.rows(cfg.head, 1, 3);
        assert_eq!((part.seq_len, part.batch, part.count), (t, 3, prep.count));
        for s in 0..t {
            for r in 0..3 {
                assert_eq!(part.tokens[s * 3 + r], prep.tokens[s * b + 1 + r]);
                assert_eq!(part.targets[s * 3 + r], prep.targets[s * b + 1 + r]);
            }
        }
        assert_eq!(part.lengths, prep.lengths[1..4]);
    }
}
