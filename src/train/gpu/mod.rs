//! The GPU trainer. A training step is one submission: the model plan of its (T, B)
//! (embedding, GRU layers, dropout, dense head, loss and running totals, backward through
//! all of it; `plan.rs`) followed by the update (global norm, optimiser, constraints;
//! `update.rs`). Lists are recorded once per shape; a step only writes its inputs and
//! one small uniform (learning rate, bias corrections, dropout seed).

mod awaited;
mod carry;
#[cfg(test)]
mod generate_routes;
mod lazy;
mod place;
pub(crate) mod plan;
mod run;
mod tensors;
mod update;

use std::sync::Arc;

use crate::gpu::wait::blocking;

use crate::config::GruConfig;
use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::{check_len, GruError, Result};
use crate::generate::Sampling;
use crate::gpu::abi::TrainStep;
use crate::gpu::bind::Range;
use crate::gpu::cache::ShapeCache;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{encode, Dispatch};
use crate::gpu::params::GpuParams;
use crate::model::{
    batch_first_logits, check_same_config, Batch, ModelConfig, ModelInput, ModelParams, ParamRole,
};
use crate::train::cpu::shared_batch;
use crate::train::options::{Optimizer, OptimizerState, TrainOptions};
use crate::train::trainer::{Metrics, Split, Trainer};

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
    update: Vec<Dispatch>,
    shapes: ShapeCache<ModelRun>,
    /// Most batch rows per plan (`None`: what the device holds).
    batch_chunk: Option<usize>,
    /// Readback of the flat gradient for data-parallel sums (made at the first).
    grad_staging: Option<wgpu::Buffer>,
    step: u64,
    /// Stateful training's carried state.
    carry: Option<Carry>,
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

impl Drop for GpuTrainer {
    fn drop(&mut self) {
        self.ctx.settle();
    }
}

impl GpuTrainer {
    /// Uploads `params` to `ctx` and prepares the optimiser (fresh state).
    pub fn new(ctx: Arc<GpuContext>, params: &ModelParams, options: TrainOptions) -> Result<Self> {
        let config = params.config;
        config.validate()?;
        options.validate()?;
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
            let (flats, tensors, layers) = tensors::allocate(&ctx, &layer_configs, &infos)?;
            let step_uniform =
                ctx.uniform("train_step", bytemuck::bytes_of(&TrainStep::default()))?;
            let norms = ctx.storage("grad_norms", update::norm_slots(&flats) + 2)?;
            let metrics = [
                ctx.storage("train_metrics", 4)?,
                ctx.storage("eval_metrics", 4)?,
            ];
            let small_staging = ctx.staging(4)?;
            let adam = !matches!(options.optimizer, Optimizer::Sgd { .. });
            let lazy = (tensors[0].info.role == ParamRole::Embedding)
                .then(|| LazyEmbedding::new(&ctx, &tensors[0], adam, (&step_uniform, &norms)))
                .transpose()?;
            Ok((
                (layers, flats, tensors, lazy),
                step_uniform,
                norms,
                metrics,
                small_staging,
            ))
        })?;
        let ((layers, flats, tensors, lazy), step_uniform, norms, metrics, small_staging) = built;
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
            update: Vec::new(),
            shapes: ShapeCache::new(MAX_SHAPES),
            batch_chunk: None,
            grad_staging: None,
            step: 0,
            carry: None,
        };
        t.update = t.ctx.scoped(|| {
            update::plan(
                &t.ctx,
                (&t.flats, &t.tensors, t.lazy.as_ref()),
                &t.options,
                &t.step_uniform,
                &t.norms,
            )
        })?;
        t.set_params(params)?;
        Ok(t)
    }

    /// The device the trainer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
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
        fn pair(t: &GpuTensor) -> (&Range, &Range) {
            (&t.value, &t.grad)
        }
        ModelBuffers {
            layers: &self.layers,
            embedding: (self.tensors[0].info.role == ParamRole::Embedding)
                .then(|| pair(&self.tensors[0])),
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

    /// Records and submits one pass over shape `i`: initial states (zeros, or carried
    /// for a stateful model's training passes), the list, the update, and the copy of the
    /// final states into the carry.
    fn submit(&mut self, i: usize, pass: Pass) -> Result<()> {
        self.submit_with(i, pass, true)
    }

    /// [`Self::submit`]; a training pass without `update` leaves its gradients for
    /// [`Self::submit_update`] (data-parallel training sums them across ranks between).
    fn submit_with(&mut self, i: usize, pass: Pass, update: bool) -> Result<()> {
        let training = matches!(pass, Pass::Train | Pass::Gradients);
        let carry = self.options.stateful && pass == Pass::Train;
        if carry {
            self.carry_for(self.shapes.get(i).batch)?;
        }
        if !training {
            // The forward reads every row the batch holds: all must be up to date.
            self.flush_embedding()?;
        }
        let updates = pass == Pass::Train && update;
        let flush = updates && LazyEmbedding::flush_after(self.step + 1);
        let ctx = &self.ctx;
        let run = self.shapes.get(i);
        let held = self
            .carry
            .as_ref()
            .filter(|c| self.options.stateful && training && c.valid && c.batch == run.batch);
        let out = self.carry.as_ref().filter(|_| carry);
        ctx.scoped(|| {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("model_pass"),
                });
            if let Some(l) = self.lazy.as_ref().filter(|_| training) {
                encode(&mut enc, "embed_before", &l.before);
            }
            run.encode(&mut enc, &self.config, pass, (held, out));
            if updates {
                self.encode_update(&mut enc, flush);
            }
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })?;
        if updates {
            self.updated(flush);
        }
        if let Some(c) = self.carry.as_mut().filter(|_| carry) {
            c.valid = true;
        }
        Ok(())
    }

    /// The update of a training pass submitted without it.
    fn submit_update(&mut self) -> Result<()> {
        let flush = LazyEmbedding::flush_after(self.step + 1);
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            self.encode_update(&mut enc, flush);
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })?;
        self.updated(flush);
        Ok(())
    }

    /// Records the update (norm, clip, optimiser, max-norm) and, with `flush`, the
    /// embedding's catch-up of every row.
    fn encode_update(&self, enc: &mut wgpu::CommandEncoder, flush: bool) {
        encode(enc, "update", &self.update);
        if let Some(l) = self.lazy.as_ref().filter(|_| flush) {
            encode(enc, "embed_flush", &l.flush);
        }
    }

    /// After an update: the embedding's rows lag unless it was flushed.
    fn updated(&mut self, flush: bool) {
        if let Some(l) = self.lazy.as_mut() {
            l.lagging = !flush;
        }
    }

    /// Sums the flat gradient across ranks: read back, summed, written back.
    fn sum_gradients(&mut self, comm: &dyn Communicator) -> Result<()> {
        let segments = &self.flats.layout.segments;
        let total: usize = segments.iter().sum();
        if self.grad_staging.is_none() {
            self.grad_staging = Some(self.ctx.staging(total)?);
        }
        let staging = self
            .grad_staging
            .as_ref()
            .ok_or_else(|| GruError::State("no staging buffer for the gradient".into()))?;
        let parts: Vec<_> = self
            .flats
            .grad
            .buffers
            .iter()
            .zip(segments)
            .map(|(b, &n)| (b, 0, n))
            .collect();
        let mut flat = self.ctx.read_f32(staging, &parts)?.concat();
        comm.sum_f32(&mut flat)?;
        let mut at = 0;
        for (b, &n) in self.flats.grad.buffers.iter().zip(segments) {
            self.ctx
                .queue
                .write_buffer(b, 0, bytemuck::cast_slice(&flat[at..at + n]));
            at += n;
        }
        Ok(())
    }

    /// Writes the training uniform of update `step` (and keeps it for the embedding's
    /// lagging rows).
    fn write_step_uniform(&self, step: u64) {
        let u = update::step_uniform(&self.options, step);
        self.ctx
            .queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&u));
        if let Some(l) = &self.lazy {
            l.write_history(&self.ctx, &u);
        }
    }

    /// Writes the rows a pass with a backward holds, for the embedding's lazy update.
    fn write_rows(&mut self, prep: &crate::model::batch::Prepared) {
        if let Some(l) = &mut self.lazy {
            l.write_rows(&self.ctx, &prep.tokens);
        }
    }

    /// Brings every embedding row up to date with the steps taken (one submission, where
    /// some row lags): before anything reads the whole table or its moments.
    fn flush_embedding(&mut self) -> Result<()> {
        let Some(l) = self.lazy.as_mut().filter(|l| l.lagging) else {
            return Ok(());
        };
        // The flush reads the step number from the uniform; the next pass rewrites it.
        let u = update::step_uniform(&self.options, self.step);
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&u));
        ctx.scoped(|| {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            l.encode_flush(&mut enc);
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })
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

impl Trainer for GpuTrainer {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn options(&self) -> &TrainOptions {
        &self.options
    }
    fn device_name(&self) -> String {
        let info = self.ctx.adapter_info();
        format!("{} ({:?})", info.name, info.backend)
    }
    fn prepare(&mut self, seq_len: usize, batch: usize) -> Result<()> {
        self.shape_index(seq_len, batch).map(|_| ())
    }
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.train_index(prep.seq_len, prep.batch, None)?;
        self.write_inputs(i, &prep);
        self.write_rows(&prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Train)?;
        self.step += 1;
        Ok(())
    }
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()> {
        let prep = shared_batch(&self.config, batch, shard, comm)?;
        let i = self.train_index(prep.seq_len, prep.batch, Some(shard))?;
        self.write_inputs(i, &prep);
        let vocab = match self.config.input {
            ModelInput::Tokens { vocab, .. } if self.lazy.is_some() => Some(vocab),
            _ => None,
        };
        if let Some(vocab) = vocab {
            // Every rank moves the rows any rank's shard holds (and zeroes their
            // gradients first), so the summed gradient and the update agree everywhere.
            let mut held = vec![0.0f32; vocab];
            for &t in &prep.tokens {
                held[t as usize] = 1.0;
            }
            comm.sum_f32(&mut held)?;
            let rows: Vec<u32> = (0..vocab as u32)
                .filter(|&r| held[r as usize] > 0.0)
                .collect();
            if let Some(l) = &mut self.lazy {
                l.write_rows(&self.ctx, &rows);
            }
        }
        self.write_step_uniform(self.step + 1);
        self.submit_with(i, Pass::Train, false)?;
        self.sum_gradients(comm)?;
        self.submit_update()?;
        self.step += 1;
        Ok(())
    }
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.train_index(prep.seq_len, prep.batch, None)?;
        self.write_inputs(i, &prep);
        self.write_rows(&prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Gradients)?;
        blocking(tensors::read_params(
            &self.ctx,
            self.config,
            &self.tensors,
            |t| &t.grad,
        ))
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.submit(i, Pass::Eval)
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        blocking(self.take_metrics_async(split))
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        blocking(self.predict_async(batch))
    }
    fn params(&mut self) -> Result<ModelParams> {
        blocking(self.params_async())
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        check_same_config(&self.config, &params.config)?;
        // The moments of lagging rows first take the steps they missed.
        self.flush_embedding()?;
        tensors::write(&self.ctx, &self.tensors, &params.tensors(), |t| &t.value)
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        self.flush_embedding()?;
        Ok(OptimizerState {
            step: self.step,
            m: blocking(tensors::read(&self.ctx, &self.tensors, |t| &t.m))?,
            v: blocking(tensors::read(&self.ctx, &self.tensors, |t| &t.v))?,
        })
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.tensors.iter().map(|t| t.info.len()).collect();
        state.check(&lens)?;
        // The values of lagging rows first take the steps they missed.
        self.flush_embedding()?;
        let m: Vec<&[f32]> = state.m.iter().map(Vec::as_slice).collect();
        let v: Vec<&[f32]> = state.v.iter().map(Vec::as_slice).collect();
        tensors::write(&self.ctx, &self.tensors, &m, |t| &t.m)?;
        tensors::write(&self.ctx, &self.tensors, &v, |t| &t.v)?;
        self.step = state.step;
        if let Some(l) = &mut self.lazy {
            l.set_current(&self.ctx, state.step);
        }
        Ok(())
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        match self.carry.as_ref().filter(|c| c.valid) {
            Some(c) => Ok(Some(c.read(&self.ctx, &self.config)?)),
            None => Ok(None),
        }
    }
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        blocking(self.generate_stream_async(prompt, n, sampling, on_token))
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        let Some((h, batch)) = state else {
            if let Some(c) = &mut self.carry {
                c.valid = false;
            }
            return Ok(());
        };
        let gcfg = self.config.gru_config();
        let dims = [
            gcfg.num_layers * gcfg.num_directions(),
            batch,
            gcfg.hidden_size,
        ];
        check_len("carried state", h.len(), &dims, "[layers*dirs, B, H]")?;
        self.carry_for(batch)?;
        if let Some(c) = &mut self.carry {
            c.write(&self.ctx, h);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil;
    use crate::model::{Batch, ModelParams};

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
