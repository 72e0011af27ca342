//! The GPU trainer. A training step is one submission: the model plan of its (T, B)
//! (embedding, GRU layers, dropout, dense head, loss and running totals, backward through
//! all of it; `plan.rs`) followed by the update (global norm, optimiser, constraints;
//! `update.rs`). Lists are recorded once per shape; a step only writes its inputs and
//! one small uniform (learning rate, bias corrections, dropout seed).

mod as_trainer;
mod awaited;
mod carry;
#[cfg(test)]
mod generate_routes;
mod lazy;
mod place;
pub(crate) mod plan;
mod run;
mod submit;
mod tensors;
mod update;

use std::sync::Arc;

use crate::gpu::wait::blocking;

use crate::config::GruConfig;
use crate::dist::shard::Shard;
use crate::error::{GruError, Result};
use crate::generate::Sampling;
use crate::gpu::abi::TrainStep;
use crate::gpu::bind::Range;
use crate::gpu::cache::ShapeCache;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::embed::TableRows;
use crate::gpu::ops::Dispatch;
use crate::gpu::params::GpuParams;
use crate::model::{batch_first_logits, check_same_config, ModelConfig, ModelParams, ParamRole};
use crate::precision::Precision;
use crate::train::options::{Optimizer, TrainOptions};
use crate::train::trainer::Trainer;

use carry::Carry;
use lazy::LazyEmbedding;
pub(crate) use plan::ModelBuffers;
use run::{ModelRun, Pass};
use tensors::{Flats, GpuTensor};

const _: () = assert!(std::mem::size_of::<TrainStep>() == 64);

/// A model training on the GPU; see [`Trainer`].
///
/// ```no_run
/// use gru_engine::model::{Batch, ModelConfig, ModelParams};
/// use gru_engine::train::{GpuTrainer, Split, TrainOptions, Trainer};
/// use gru_engine::GpuContext;
/// # fn main() -> gru_engine::Result<()> {
/// let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
/// let mut t = GpuTrainer::new(GpuContext::new_default()?, &params, TrainOptions::adam(1e-2))?;
/// let (x, y) = ([0u32, 1, 2, 3], [1u32, 2, 3, 0]);
/// for _ in 0..10 {
///     t.train_step(&Batch::tokens(&x, 1, 4).classes(&y))?;
/// }
/// println!("loss {}", t.take_metrics(Split::Train)?.loss);
/// # Ok(()) }
/// ```
pub struct GpuTrainer {
    ctx: Arc<GpuContext>,
    config: ModelConfig,
    options: TrainOptions,
    layers: Vec<(GruConfig, GpuParams)>,
    /// Every tensor's value, gradient and moments, in flat buffers.
    flats: Flats,
    /// Each tensor's ranges of `flats`, in `ModelParams::infos` order.
    tensors: Vec<GpuTensor>,
    /// The embedding table's lazy update (token models).
    lazy: Option<LazyEmbedding>,
    step_uniform: wgpu::Buffer,
    /// [slots + 2]: partial sums of squares (`update::norm_slots`), then the clip factor
    /// and the norm.
    norms: wgpu::Buffer,
    /// Running (loss sum, correct, counted, batches) for training and evaluation.
    metrics: [wgpu::Buffer; 2],
    /// Readback of the metrics and the norm, without a buffer per call.
    small_staging: wgpu::Buffer,
    /// Copies of the running training metrics after each of up to [`HISTORY`] steps,
    /// and their read-back: per-step losses with one read-back for many steps.
    history: (wgpu::Buffer, wgpu::Buffer),
    update: Vec<Dispatch>,
    shapes: ShapeCache<ModelRun>,
    /// Most batch rows per plan (`None`: what the device holds).
    batch_chunk: Option<usize>,
    /// Readback of the flat gradient for data-parallel sums (made at the first).
    grad_staging: Option<wgpu::Buffer>,
    step: u64,
    /// Stateful training's carried state.
    carry: Option<Carry>,
    /// f32, mixed precision, or f16 inference.
    precision: Precision,
    /// Mixed precision: the refresh of the f16 weight copies after a write of the
    /// values (the update's optimiser writes them itself).
    refresh: Vec<Dispatch>,
}

impl std::fmt::Debug for GpuTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTrainer")
            .field("config", &self.config)
            .field("device", &self.ctx)
            .field("step", &self.step)
            .finish()
    }
}

/// Shapes whose buffers are kept (training, evaluation and a last batch, typically).
const MAX_SHAPES: usize = 4;

/// Snapshots of the running training metrics one read-back can hold: the state before
/// a run of steps, then one after each ([`GpuTrainer::train_steps_async`]).
pub(crate) const HISTORY: usize = 64;

impl Drop for GpuTrainer {
    fn drop(&mut self) {
        self.ctx.settle();
    }
}

impl GpuTrainer {
    /// Uploads `params` to `ctx` and prepares the optimiser (fresh state).
    pub fn new(ctx: Arc<GpuContext>, params: &ModelParams, options: TrainOptions) -> Result<Self> {
        Self::with_precision(ctx, params, options, Precision::F32)
    }

    /// [`GpuTrainer::new`] training in `precision`: f32, or [`Precision::Mixed`], where
    /// the optimiser updates f32 master weights with f32 moments and, in the same
    /// pass, their f16 copies, which the model's kernels read (the embedding, the GRU
    /// layers and the head); activations are f16 and every gradient f32, so no loss
    /// scaling is needed. Parameters and checkpoints are the f32 master weights;
    /// generation reads the f16 copies. With [`Precision::F16`] the trainer is for
    /// inference: it holds the values in f16 and no gradients or moments, runs f16
    /// activations with f32 logits, predicts, evaluates and generates, and refuses to
    /// train. Parameters that f16 cannot hold (past 65,504) are refused by tensor name
    /// in both. A stateful model in either and a device without `SHADER_F16` are
    /// refused.
    ///
    /// ```no_run
    /// use gru_engine::model::{Batch, ModelConfig, ModelParams};
    /// use gru_engine::train::{GpuTrainer, TrainOptions, Trainer};
    /// use gru_engine::{GpuContext, Precision};
    /// # fn main() -> gru_engine::Result<()> {
    /// let params = ModelParams::init(ModelConfig::language_model(4, 8, 16), 1)?;
    /// let ctx = GpuContext::new_default()?;
    /// let mut t = GpuTrainer::with_precision(ctx, &params, TrainOptions::adam(1e-2), Precision::Mixed)?;
    /// let (x, y) = ([0u32, 1, 2, 3], [1u32, 2, 3, 0]);
    /// t.train_step(&Batch::tokens(&x, 1, 4).classes(&y))?;
    /// # Ok(()) }
    /// ```
    pub fn with_precision(
        ctx: Arc<GpuContext>,
        params: &ModelParams,
        options: TrainOptions,
        precision: Precision,
    ) -> Result<Self> {
        let config = params.config;
        config.validate()?;
        options.validate()?;
        let half = precision.is_half();
        ctx.check_precision(precision)?;
        if half && options.stateful {
            return Err(GruError::Config(format!(
                "a stateful model in {precision} precision is not supported yet; run it in f32"
            )));
        }
        if options.stateful && config.bidirectional {
            return Err(GruError::Config(
                "a stateful model must be unidirectional (the reverse direction has no next batch to carry into)".into(),
            ));
        }
        let infos = params.infos();
        let gcfg = config.gru_config();
        let built = ctx.scoped(|| {
            let layer_configs: Vec<GruConfig> = (0..config.num_layers)
                .map(|l| {
                    GruConfig::new(gcfg.layer_input_size(l), gcfg.hidden_size)
                        .bidirectional(gcfg.bidirectional)
                        .variant(gcfg.variant)
                })
                .collect();
            let table = infos.iter().find(|i| i.role == ParamRole::Embedding);
            // Mixed precision takes the dense update for the table: its rows' f16
            // copies are written with every other value's by the optimiser.
            let lazy_table = !half && table.is_some_and(|t| lazy::wanted(&ctx, t.len()));
            let (flats, tensors, layers) =
                tensors::allocate(&ctx, &layer_configs, &infos, (lazy_table, precision))?;
            let step_uniform =
                ctx.uniform("train_step", bytemuck::bytes_of(&TrainStep::default()))?;
            let norms = ctx.storage("grad_norms", update::norm_slots(&flats) + 2)?;
            let metrics = [
                ctx.storage("train_metrics", 4)?,
                ctx.storage("eval_metrics", 4)?,
            ];
            let small_staging = (
                ctx.staging(4)?,
                ctx.storage("metric_history", 4 * HISTORY)?,
                ctx.staging(4 * HISTORY)?,
            );
            let adam = !matches!(options.optimizer, Optimizer::Sgd { .. });
            // The table's own segment means the lazy update (`tensors::allocate`).
            let lazy = flats
                .lazy
                .map(|_| LazyEmbedding::new(&ctx, &tensors[0], adam, (&step_uniform, &norms)))
                .transpose()?;
            Ok((
                (layers, flats, tensors, lazy),
                step_uniform,
                norms,
                metrics,
                small_staging,
            ))
        })?;
        let ((layers, flats, tensors, lazy), step_uniform, norms, metrics, staging) = built;
        let (small_staging, history, history_staging) = staging;
        let mut t = GpuTrainer {
            ctx,
            config,
            options,
            layers,
            flats,
            tensors,
            lazy,
            step_uniform,
            norms,
            metrics,
            small_staging,
            history: (history, history_staging),
            update: Vec::new(),
            shapes: ShapeCache::new(MAX_SHAPES),
            batch_chunk: None,
            grad_staging: None,
            step: 0,
            carry: None,
            precision,
            refresh: Vec::new(),
        };
        // An f16 inference trainer has no update.
        t.update = t.ctx.scoped(|| {
            if !precision.trains() {
                return Ok(Vec::new());
            }
            update::plan(
                &t.ctx,
                (&t.flats, &t.tensors, t.lazy.as_ref()),
                &t.options,
                &t.step_uniform,
                &t.norms,
            )
        })?;
        t.refresh = t.ctx.scoped(|| update::refresh(&t.ctx, &t.flats))?;
        t.set_params(params)?;
        Ok(t)
    }

    /// The device the trainer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// What the trainer computes in: f32, mixed precision, or f16 (inference).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Mixed precision: submits the refresh of the f16 weight copies (after the f32
    /// values were written).
    fn refresh_copies(&self) -> Result<()> {
        if self.refresh.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            crate::gpu::ops::encode(&mut enc, "refresh_f16", &self.refresh);
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })
    }

    /// Caps the batch rows one device workspace holds (`None`: as many as the device's
    /// storage binding limit allows), like [`crate::GpuGru::set_batch_chunk`]. Larger
    /// batches run in chunks inside the same submission, their gradients added on the
    /// device; results do not change, only peak buffer sizes.
    pub fn set_batch_chunk(&mut self, rows: Option<usize>) {
        self.batch_chunk = rows.filter(|&r| r > 0);
        self.shapes.clear();
    }

    /// Compute dispatches one training step of (T, B) records: the model's forward,
    /// loss and backward over every chunk, then the update (what `gru bench --train`
    /// reports; each costs a software adapter tens of microseconds before any work).
    pub fn dispatches_per_step(&mut self, seq_len: usize, batch: usize) -> Result<usize> {
        let i = self.shape_index(seq_len, batch)?;
        let before = self.lazy.as_ref().map_or(0, |l| l.before.len());
        Ok(before + self.shapes.get(i).train_dispatches() + self.update.len())
    }

    /// A training step's dispatches of (T, B), in order (the kernel lab's input).
    pub(crate) fn recorded_step(&mut self, seq_len: usize, batch: usize) -> Result<Vec<Dispatch>> {
        let i = self.shape_index(seq_len, batch)?;
        let mut list = self.lazy.as_ref().map_or(Vec::new(), |l| l.before.clone());
        list.extend(self.shapes.get(i).train_list());
        list.extend(self.update.iter().cloned());
        Ok(list)
    }

    /// The index of (T, B)'s plans in the shape cache, built if absent: any plans of
    /// the shape for passes without dropout.
    fn shape_index(&mut self, t_len: usize, batch: usize) -> Result<usize> {
        self.plans(t_len, batch, None, false)
    }

    /// [`Self::shape_index`] for a training pass, whose dropout masks need plans that
    /// place the rows where `shard` says (`None`: a batch of their own).
    fn train_index(&mut self, t_len: usize, batch: usize, shard: Option<Shard>) -> Result<usize> {
        self.plans(t_len, batch, shard, true)
    }

    fn plans(
        &mut self,
        t_len: usize,
        batch: usize,
        shard: Option<Shard>,
        exact: bool,
    ) -> Result<usize> {
        let want = shard.unwrap_or(Shard::whole(batch));
        if let Some(i) = self.shapes.position(t_len, batch) {
            if !exact || self.shapes.get(i).shard == want {
                return Ok(i);
            }
            self.shapes.remove(i);
        }
        let shape = (t_len, batch);
        let run = self.ctx.scoped(|| {
            ModelRun::new(
                &self.ctx,
                &self.config,
                &self.buffers(),
                shape,
                self.batch_chunk,
                Some(want),
            )
        })?;
        Ok(self.shapes.insert(t_len, batch, run))
    }

    /// Writes a checked batch's inputs into shape `i`.
    fn write_inputs(&self, i: usize, prep: &crate::model::batch::Prepared) {
        self.shapes
            .get(i)
            .write_inputs(&self.ctx, &self.config, prep);
    }

    /// [`Trainer::generate`] by a chosen route: `fused` (generate.wgsl) or, with
    /// `None`, one pass of the model's kernels per token.
    pub(crate) fn generate_with(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        fused: Option<crate::gpu::ops::generate::Fused>,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        blocking(self.generate_with_async(prompt, n, sampling, fused, on_token))
    }

    /// What every model plan binds besides its own buffers.
    fn buffers(&self) -> ModelBuffers<'_> {
        let n = self.tensors.len();
        // The kernels read the f16 copies in mixed precision; an f16 inference
        // trainer has no gradients.
        fn pair(t: &GpuTensor) -> (&Range, Option<&Range>) {
            (t.kernel_value(), t.train.as_ref().map(|t| &t.grad))
        }
        ModelBuffers {
            layers: &self.layers,
            embedding: (self.tensors[0].info.role == ParamRole::Embedding)
                .then(|| pair(&self.tensors[0])),
            table_rows: match self.lazy {
                Some(_) => TableRows::Present,
                None => TableRows::All,
            },
            fc_weight: pair(&self.tensors[n - 2]),
            fc_bias: pair(&self.tensors[n - 1]),
            step: &self.step_uniform,
            totals: [&self.metrics[0], &self.metrics[1]],
        }
    }

    /// The carry buffers for batch size `batch`, (re)allocated (invalid) when B changed.
    fn carry_for(&mut self, batch: usize) -> Result<()> {
        if self.carry.as_ref().is_none_or(|c| c.batch != batch) {
            self.carry = Some(
                self.ctx
                    .scoped(|| Carry::new(&self.ctx, &self.config, batch))?,
            );
        }
        Ok(())
    }

    /// The global gradient norm of the last training step, before clipping (a readback).
    pub fn last_grad_norm(&self) -> Result<f32> {
        let n = update::norm_slots(&self.flats);
        Ok(self
            .ctx
            .read_f32(&self.small_staging, &[(&self.norms, n + 1, 1)])?
            .concat()[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil;
    use crate::model::{Batch, ModelParams};

    /// Mixed precision: after every update the f16 copies the kernels read are the
    /// master values rounded (the optimiser writes them, and max-norm's refresh after
    /// it), for Adam and SGD with momentum, with and without max-norm.
    #[test]
    fn mixed_copies_follow_every_update() {
        let Some(ctx) = testutil::ctx() else { return };
        if !ctx.supports_f16() {
            return;
        }
        let params = ModelParams::init(ModelConfig::language_model(13, 6, 9), 2).unwrap();
        let sgd = TrainOptions {
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            ..TrainOptions::adam(0.5)
        };
        for opts in [
            TrainOptions::adam(5e-2),
            TrainOptions::adam(5e-2).max_norm(0.3),
            sgd,
            sgd.max_norm(0.3),
        ] {
            let mut t =
                GpuTrainer::with_precision(ctx.clone(), &params, opts, Precision::Mixed).unwrap();
            let x: Vec<u32> = (0..24).map(|i| (i * 5 % 13) as u32).collect();
            for _ in 0..3 {
                t.train_step(&Batch::tokens(&x, 3, 8).classes(&x)).unwrap();
            }
            let values = blocking(tensors::read(&ctx, &t.tensors, |t| Ok(&t.value))).unwrap();
            let copies = blocking(tensors::read(&ctx, &t.tensors, |t| {
                t.value16
                    .as_ref()
                    .ok_or_else(|| GruError::State("no copy".into()))
            }))
            .unwrap();
            assert_ne!(values, params.tensors(), "{opts:?}: trained");
            for ((v, c), info) in values.iter().zip(&copies).zip(params.infos()) {
                let want = crate::precision::round_all_f16(v);
                assert_eq!(c, &want, "{opts:?}: {}", info.name);
            }
        }
    }

    /// As for `GpuGru`: a trainer's last step may still be queued when it is dropped.
    #[test]
    fn dropping_a_trainer_leaves_the_queue_idle() {
        let Some(ctx) = testutil::ctx() else { return };
        let params = ModelParams::init(ModelConfig::language_model(50, 32, 96), 1).unwrap();
        let mut t = GpuTrainer::new(ctx.clone(), &params, TrainOptions::adam(1e-3)).unwrap();
        let (b, s) = (8, 200);
        let x: Vec<u32> = (0..b * s).map(|i| (i * 7 % 50) as u32).collect();
        t.train_step(&Batch::tokens(&x, b, s).classes(&x)).unwrap();
        drop(t);
        let status = ctx.device.poll(wgpu::PollType::Poll).unwrap();
        assert!(status.is_queue_empty(), "work still queued: {status:?}");
    }
}
