//! The GPU trainer. A training step is one submission: embedding lookup, the GRU layers
//! (their own recorded plans), dropout, the dense head, the loss and its running totals,
//! then backward through all of it, the global gradient norm, the optimiser and the
//! constraints. Dispatch lists are recorded once per (T, B); a step only writes its
//! inputs and one small uniform (learning rate, bias corrections, dropout seed).

use std::sync::Arc;

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::generate::{check_lm, Sampling};
use crate::gpu::abi::{
    CopyParams, DropoutSite, EmbedParams, LossParams, MetricParams, NormParams, SampleParams,
    TensorParams, TrainStep,
};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::{
    colsum, colsum_scratch, encode, flat_grid, gemm, gemm_scratch, param_dispatch, row_grid,
    Dispatch, GemmFlags, GemmParams,
};
use crate::gpu::params::GpuParams;
use crate::gpu::workspace::Workspace;
use crate::model::batch::Prepared;
use crate::model::{Batch, Head, Loss, ModelConfig, ModelInput, ModelParams, ParamInfo, ParamRole};
use crate::rng::dropout_threshold;
use crate::train::cpu::{batch_first_logits, check_same_config, HEAD_SITE};
use crate::train::options::{Optimizer, OptimizerState, TrainOptions};
use crate::train::{Metrics, Split, Trainer};

/// Tokens drawn per submission while generating: each chunk is read back and streamed.
const GEN_CHUNK: usize = 64;

impl CopyParams {
    /// Between direction `d`'s final state, row T of its [T+1, B, H] state buffer, and
    /// columns [d·H, (d+1)·H) of the head's [B, dirs·H] input: `gather` copies the state
    /// to the head, otherwise the head's gradient goes back to that row of dh.
    fn last_state(batch: usize, h: usize, nd: usize, t_len: usize, d: usize, gather: bool) -> Self {
        let state = ((h as u32), (t_len * batch * h) as u32);
        let head = ((nd * h) as u32, (d * h) as u32);
        let ((src_stride, src_off), (dst_stride, dst_off)) =
            if gather { (state, head) } else { (head, state) };
        CopyParams {
            rows: batch as u32,
            width: h as u32,
            src_stride,
            src_off,
            dst_stride,
            dst_off,
            ..Default::default()
        }
    }
}

const _: () = assert!(std::mem::size_of::<TrainStep>() == 48);

/// One parameter tensor on the device with its gradient and optimiser moments.
struct GpuTensor {
    info: ParamInfo,
    value: wgpu::Buffer,
    grad: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
}

/// Everything of one (T, B): the GRU layers' workspaces, the head's buffers, and the
/// recorded dispatch lists.
struct Shape {
    t_len: usize,
    batch: usize,
    layers: Vec<Workspace>,
    /// Token ids [T, B] (token models).
    tokens: wgpu::Buffer,
    /// [offsets (V+1) | positions (T·B)]: where each token occurs, for the embedding
    /// gradient.
    token_index: wgpu::Buffer,
    targets: wgpu::Buffer,
    logits: wgpu::Buffer,
    loss_params: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Forward (dropout on), loss and backward: the gradients, before the update.
    train: Vec<Dispatch>,
    eval: Vec<Dispatch>,
    predict: Vec<Dispatch>,
}

/// What one submission over a shape runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Gradients, then the update; a stateful model reads and advances its carry.
    Train,
    /// Gradients only; a stateful model reads its carry but does not advance it.
    Gradients,
    /// Forward and loss, counted under [`Split::Eval`].
    Eval,
    /// Forward only.
    Predict,
}

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
    tensors: Vec<GpuTensor>,
    step_uniform: wgpu::Buffer,
    /// [tensors + 2]: per-tensor sum of squares, then the clip factor and the norm.
    norms: wgpu::Buffer,
    /// Running (loss sum, correct, counted, batches) for training and evaluation.
    metrics: [wgpu::Buffer; 2],
    /// Readback of the metrics and the norm, without a buffer per call.
    small_staging: wgpu::Buffer,
    update: Vec<Dispatch>,
    shapes: Vec<Shape>,
    step: u64,
    /// Stateful training's carried state.
    carry: Option<Carry>,
}

/// The state carried between batches of one batch size: per layer [dirs, B, H].
struct Carry {
    batch: usize,
    layers: Vec<wgpu::Buffer>,
    valid: bool,
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
        let count = infos.len();
        let gcfg = config.gru_config();
        let built = ctx.scoped(|| {
            let mut layers = Vec::new();
            for l in 0..config.num_layers {
                let lc = GruConfig::new(gcfg.layer_input_size(l), gcfg.hidden_size)
                    .bidirectional(gcfg.bidirectional)
                    .variant(gcfg.variant);
                let p = GpuParams::new(&ctx, &lc)?;
                layers.push((lc, p));
            }
            let mut tensors = Vec::new();
            let mut gru = layers.iter().flat_map(|(_, p)| {
                p.dirs.iter().flat_map(|d| {
                    [
                        (d.w_ih.clone(), d.d_w_ih.clone()),
                        (d.w_hh.clone(), d.d_w_hh.clone()),
                        (d.b_ih.clone(), d.d_b_ih.clone()),
                        (d.b_hh.clone(), d.d_b_hh.clone()),
                    ]
                })
            });
            for info in &infos {
                let n = info.len();
                let (value, grad) = match info.role {
                    ParamRole::Embedding | ParamRole::DenseWeight | ParamRole::DenseBias => (
                        ctx.storage(&info.name, n)?,
                        ctx.storage(&format!("d_{}", info.name), n)?,
                    ),
                    _ => gru
                        .next()
                        .ok_or_else(|| GruError::State("GRU tensors out of step".into()))?,
                };
                tensors.push(GpuTensor {
                    info: info.clone(),
                    value,
                    grad,
                    m: ctx.storage(&format!("m_{}", info.name), n)?,
                    v: ctx.storage(&format!("v_{}", info.name), n)?,
                });
            }
            let step_uniform =
                ctx.uniform("train_step", bytemuck::bytes_of(&TrainStep::default()))?;
            let norms = ctx.storage("grad_norms", count + 2)?;
            let metrics = [
                ctx.storage("train_metrics", 4)?,
                ctx.storage("eval_metrics", 4)?,
            ];
            let small_staging = ctx.staging(4)?;
            Ok((layers, tensors, step_uniform, norms, metrics, small_staging))
        })?;
        let (layers, tensors, step_uniform, norms, metrics, small_staging) = built;
        let mut t = GpuTrainer {
            ctx,
            config,
            options,
            layers,
            tensors,
            step_uniform,
            norms,
            metrics,
            small_staging,
            update: Vec::new(),
            shapes: Vec::new(),
            step: 0,
            carry: None,
        };
        t.update = t.ctx.scoped(|| t.plan_update())?;
        t.set_params(params)?;
        Ok(t)
    }

    /// The device the trainer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Global gradient norm, clipping, optimiser and constraints: the same for every shape.
    fn plan_update(&self) -> Result<Vec<Dispatch>> {
        let ctx = &*self.ctx;
        let count = self.tensors.len() as u32;
        let mut list = Vec::new();
        for (i, t) in self.tensors.iter().enumerate() {
            let q = TensorParams {
                n: t.info.len() as u32,
                index: i as u32,
                count,
                _p0: 0,
            };
            list.push(param_dispatch(
                ctx,
                Kernel::SumSq,
                &[],
                "sumsq",
                bytemuck::bytes_of(&q),
                &[&self.step_uniform, &t.grad, &self.norms],
                [1, 1, 1],
            )?);
        }
        let q = TensorParams {
            count,
            ..Default::default()
        };
        list.push(param_dispatch(
            ctx,
            Kernel::ClipScale,
            &[],
            "clip_scale",
            bytemuck::bytes_of(&q),
            &[&self.step_uniform, &self.tensors[0].grad, &self.norms],
            [1, 1, 1],
        )?);
        let kernel = match self.options.optimizer {
            Optimizer::Sgd { .. } => Kernel::Sgd,
            Optimizer::Adam | Optimizer::AdamW => Kernel::Adam,
        };
        for (i, t) in self.tensors.iter().enumerate() {
            let q = TensorParams {
                n: t.info.len() as u32,
                index: i as u32,
                count,
                _p0: 0,
            };
            list.push(param_dispatch(
                ctx,
                kernel,
                &[],
                "optimizer",
                bytemuck::bytes_of(&q),
                &[
                    &self.step_uniform,
                    &self.norms,
                    &t.grad,
                    &t.value,
                    &t.m,
                    &t.v,
                ],
                flat_grid(ctx, t.info.len()),
            )?);
        }
        if let Some(c) = self.options.max_norm {
            for (i, t) in self.tensors.iter().enumerate() {
                let rows = t.info.shape[0];
                match t.info.role {
                    ParamRole::GruKernel | ParamRole::GruRecurrent => {
                        let q = NormParams {
                            rows: rows as u32,
                            cols: t.info.shape[1] as u32,
                            c,
                            _p0: 0,
                        };
                        list.push(param_dispatch(
                            ctx,
                            Kernel::MaxNormRows,
                            &[],
                            "max_norm_rows",
                            bytemuck::bytes_of(&q),
                            &[&t.value],
                            flat_grid(ctx, rows),
                        )?);
                    }
                    ParamRole::GruBiasIh => {
                        let q = NormParams {
                            rows: rows as u32,
                            cols: 1,
                            c,
                            _p0: 0,
                        };
                        list.push(param_dispatch(
                            ctx,
                            Kernel::MaxNormPairs,
                            &[],
                            "max_norm_pairs",
                            bytemuck::bytes_of(&q),
                            &[&t.value, &self.tensors[i + 1].value],
                            flat_grid(ctx, rows),
                        )?);
                    }
                    _ => {}
                }
            }
        }
        Ok(list)
    }

    fn dropout(
        &self,
        site: u32,
        p: f32,
        n: usize,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let (threshold, scale) = dropout_threshold(p);
        let q = DropoutSite {
            n: n as u32,
            site,
            threshold,
            scale,
        };
        param_dispatch(
            &self.ctx,
            Kernel::Dropout,
            &[],
            "dropout",
            bytemuck::bytes_of(&q),
            &[&self.step_uniform, src, dst],
            flat_grid(&self.ctx, n),
        )
    }

    fn strided_copy(
        &self,
        p: CopyParams,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        param_dispatch(
            &self.ctx,
            Kernel::StridedCopy,
            &[],
            "strided_copy",
            bytemuck::bytes_of(&p),
            &[src, dst],
            flat_grid(&self.ctx, (p.rows * p.width) as usize),
        )
    }

    /// Allocates the buffers of (T, B) and records its three dispatch lists.
    fn build_shape(&self, t_len: usize, batch: usize) -> Result<Shape> {
        let ctx = &*self.ctx;
        let cfg = &self.config;
        let (h, f, c) = (cfg.hidden_size, cfg.head_input_size(), cfg.outputs);
        let nd = if cfg.bidirectional { 2 } else { 1 };
        let tb = t_len * batch;
        let rows = match cfg.head {
            Head::EveryStep => tb,
            Head::LastState => batch,
        };
        let mut layers = Vec::new();
        for (lc, p) in &self.layers {
            let fits = Workspace::max_rows(ctx, lc, t_len);
            if fits < batch {
                return Err(GruError::TooLarge {
                    what: format!("a training batch of B = {batch} rows x T = {t_len} steps (at most {fits} rows fit)"),
                    bytes: 16 * (tb * h) as u64,
                    limit: ctx.storage_limit(),
                });
            }
            layers.push(crate::gpu::plan::workspace(
                ctx, lc, p, t_len, batch, false,
            )?);
        }
        let vocab = match cfg.input {
            ModelInput::Tokens { vocab, .. } => vocab,
            ModelInput::Features(_) => 0,
        };
        let tokens = ctx.storage("tokens", tb)?;
        let token_index = ctx.storage("token_index", vocab + 1 + tb)?;
        let target_len = match cfg.loss {
            Loss::CrossEntropy => rows,
            _ => rows * c,
        };
        let targets = ctx.storage("targets", target_len)?;
        let logits = ctx.storage("logits", rows * c)?;
        let d_logits = ctx.storage("d_logits", rows * c)?;
        let stats = ctx.storage("loss_stats", rows * 3)?;
        let loss_params = ctx.uniform(
            "loss_params",
            bytemuck::bytes_of(&LossParams {
                rows: rows as u32,
                cols: c as u32,
                ..Default::default()
            }),
        )?;
        let scratch = ctx.storage(
            "head_scratch",
            gemm_scratch(c, f, rows)
                .max(gemm_scratch(rows, f, c))
                .max(gemm_scratch(rows, c, f))
                .max(colsum_scratch(rows, c)),
        )?;
        let top = layers
            .last()
            .ok_or_else(|| GruError::Config("no GRU layers".into()))?;
        let dropout = cfg.dropout > 0.0;
        // The head's input: every step's output, or both directions' last states.
        let feat = match cfg.head {
            Head::EveryStep => None,
            Head::LastState => Some((
                ctx.storage("last_state", rows * f)?,
                ctx.storage("d_last_state", rows * f)?,
            )),
        };
        let (gathered, d_gathered) = match &feat {
            Some((a, b)) => (a.clone(), b.clone()),
            None => (top.outs[0].clone(), top.d_out_top.clone()),
        };
        let (head_in, d_head_in) = if dropout {
            (
                ctx.storage("head_input", rows * f)?,
                ctx.storage("d_head_input", rows * f)?,
            )
        } else {
            (gathered.clone(), d_gathered.clone())
        };
        let fc_w = &self.tensors[self.tensors.len() - 2];
        let fc_b = &self.tensors[self.tensors.len() - 1];

        let forward = |train: bool| -> Result<Vec<Dispatch>> {
            let p = if train { cfg.dropout } else { 0.0 };
            let mut list = Vec::new();
            if let ModelInput::Tokens { embed_dim, .. } = cfg.input {
                let q = EmbedParams {
                    n: tb as u32,
                    dim: embed_dim as u32,
                    vocab: vocab as u32,
                    _p0: 0,
                };
                list.push(param_dispatch(
                    ctx,
                    Kernel::EmbedFwd,
                    &[],
                    "embed_fwd",
                    bytemuck::bytes_of(&q),
                    &[&tokens, &self.tensors[0].value, &layers[0].x],
                    flat_grid(ctx, tb * embed_dim),
                )?);
            }
            for (l, ws) in layers.iter().enumerate() {
                if l > 0 {
                    list.push(self.dropout(l as u32, p, tb * f, &layers[l - 1].outs[0], &ws.x)?);
                }
                list.extend(ws.forward.iter().cloned());
            }
            if feat.is_some() {
                for d in 0..nd {
                    let cp = CopyParams::last_state(batch, h, nd, t_len, d, true);
                    list.push(self.strided_copy(cp, &top.dirs[d].hs, &gathered)?);
                }
            }
            if dropout {
                list.push(self.dropout(HEAD_SITE, p, rows * f, &gathered, &head_in)?);
            }
            // logits [rows, C] = head_in [rows, F] · fc_wᵀ + fc_b
            let gp = GemmParams::dims(rows, c, f, f, f, c);
            let flags = GemmFlags {
                trans_b: true,
                ..Default::default()
            };
            list.extend(gemm(
                ctx,
                "gemm_dense",
                gp,
                flags,
                &head_in,
                &fc_w.value,
                Some(&fc_b.value),
                &logits,
                &scratch,
            )?);
            Ok(list)
        };
        let loss = |split: Split| -> Result<Vec<Dispatch>> {
            let kernel = match cfg.loss {
                Loss::CrossEntropy => Kernel::CrossEntropy,
                Loss::BinaryCrossEntropy => Kernel::BinaryCrossEntropy,
                Loss::MeanSquaredError => Kernel::MeanSquaredError,
            };
            let pipeline = ctx.pipeline(kernel, &[])?;
            let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("loss"),
                layout: &pipeline.layout,
                entries: &[&loss_params, &logits, &targets, &d_logits, &stats]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: b.as_entire_binding(),
                    })
                    .collect::<Vec<_>>(),
            });
            let q = MetricParams {
                rows: rows as u32,
                ..Default::default()
            };
            Ok(vec![
                Dispatch {
                    pipeline,
                    bind_group,
                    offset: None,
                    groups: match cfg.loss {
                        // One workgroup per row.
                        Loss::CrossEntropy => row_grid(ctx, rows),
                        _ => flat_grid(ctx, rows),
                    },
                },
                param_dispatch(
                    ctx,
                    Kernel::MetricsAdd,
                    &[],
                    "metrics_add",
                    bytemuck::bytes_of(&q),
                    &[&stats, &self.metrics[split as usize]],
                    [1, 1, 1],
                )?,
            ])
        };
        let backward = || -> Result<Vec<Dispatch>> {
            let mut list = Vec::new();
            // d_fc_w [C, F] = d_logitsᵀ · head_in; d_fc_b = column sums; d_head_in = d_logits · fc_w
            let gp = GemmParams::dims(c, f, rows, c, f, f);
            let ta = GemmFlags {
                trans_a: true,
                ..Default::default()
            };
            list.extend(gemm(
                ctx,
                "gemm_d_dense_w",
                gp,
                ta,
                &d_logits,
                &head_in,
                None,
                &fc_w.grad,
                &scratch,
            )?);
            list.extend(colsum(
                ctx,
                "colsum_d_dense_b",
                rows,
                c,
                &d_logits,
                &fc_b.grad,
                false,
                &scratch,
            )?);
            let gp = GemmParams::dims(rows, f, c, c, f, f);
            list.extend(gemm(
                ctx,
                "gemm_d_head_input",
                gp,
                GemmFlags::default(),
                &d_logits,
                &fc_w.value,
                None,
                &d_head_in,
                &scratch,
            )?);
            if dropout {
                list.push(self.dropout(
                    HEAD_SITE,
                    cfg.dropout,
                    rows * f,
                    &d_head_in,
                    &d_gathered,
                )?);
            }
            if feat.is_some() {
                for d in 0..nd {
                    let cp = CopyParams::last_state(batch, h, nd, t_len, d, false);
                    list.push(self.strided_copy(cp, &d_gathered, &top.dirs[d].d_hs)?);
                }
            }
            for l in (0..layers.len()).rev() {
                list.extend(layers[l].backward.iter().cloned());
                if l > 0 {
                    list.push(self.dropout(
                        l as u32,
                        cfg.dropout,
                        tb * f,
                        &layers[l].d_ins[0],
                        &layers[l - 1].d_out_top,
                    )?);
                }
            }
            if let ModelInput::Tokens { embed_dim, .. } = cfg.input {
                let q = EmbedParams {
                    n: tb as u32,
                    dim: embed_dim as u32,
                    vocab: vocab as u32,
                    _p0: 0,
                };
                list.push(param_dispatch(
                    ctx,
                    Kernel::EmbedBwd,
                    &[],
                    "embed_bwd",
                    bytemuck::bytes_of(&q),
                    &[&token_index, &layers[0].d_ins[0], &self.tensors[0].grad],
                    flat_grid(ctx, vocab * embed_dim),
                )?);
            }
            Ok(list)
        };
        let mut train = forward(true)?;
        train.extend(loss(Split::Train)?);
        train.extend(backward()?);
        let mut eval = forward(false)?;
        eval.extend(loss(Split::Eval)?);
        let predict = forward(false)?;
        let staging = ctx.staging(rows * c)?;
        Ok(Shape {
            t_len,
            batch,
            layers,
            tokens,
            token_index,
            targets,
            logits,
            loss_params,
            staging,
            train,
            eval,
            predict,
        })
    }

    fn shape_index(&mut self, t_len: usize, batch: usize) -> Result<usize> {
        if let Some(i) = self
            .shapes
            .iter()
            .position(|s| s.t_len == t_len && s.batch == batch)
        {
            return Ok(i);
        }
        let shape = self.ctx.scoped(|| self.build_shape(t_len, batch))?;
        if self.shapes.len() == MAX_SHAPES {
            self.shapes.remove(0);
        }
        self.shapes.push(shape);
        Ok(self.shapes.len() - 1)
    }

    /// Writes a checked batch's inputs into shape `i`.
    fn write_inputs(&self, i: usize, prep: &Prepared) {
        let q = &self.ctx.queue;
        let s = &self.shapes[i];
        match self.config.input {
            ModelInput::Tokens { vocab, .. } => {
                q.write_buffer(&s.tokens, 0, bytemuck::cast_slice(&prep.tokens));
                // Positions grouped by token, in order: the embedding gradient's summation order.
                let mut offsets = vec![0u32; vocab + 1];
                for &t in &prep.tokens {
                    offsets[t as usize + 1] += 1;
                }
                for v in 0..vocab {
                    offsets[v + 1] += offsets[v];
                }
                let mut next = offsets.clone();
                let mut index = offsets.clone();
                index.resize(vocab + 1 + prep.tokens.len(), 0);
                for (pos, &t) in prep.tokens.iter().enumerate() {
                    index[vocab + 1 + next[t as usize] as usize] = pos as u32;
                    next[t as usize] += 1;
                }
                q.write_buffer(&s.token_index, 0, bytemuck::cast_slice(&index));
            }
            ModelInput::Features(_) => {
                q.write_buffer(&s.layers[0].x, 0, bytemuck::cast_slice(&prep.features));
            }
        }
        let lengths: Vec<u32> = prep.lengths.iter().map(|&l| l as u32).collect();
        for ws in &s.layers {
            q.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lengths));
        }
        if !prep.targets.is_empty() {
            q.write_buffer(&s.targets, 0, bytemuck::cast_slice(&prep.targets));
            let rows = prep.head_rows(self.config.head) as u32;
            let inv = 1.0f32 / prep.count as f32;
            let lp = LossParams {
                rows,
                cols: self.config.outputs as u32,
                inv_count: inv,
                _p0: 0,
            };
            q.write_buffer(&s.loss_params, 0, bytemuck::bytes_of(&lp));
        }
    }

    /// The carry buffers for batch size `batch`, (re)allocated (invalid) when B changed.
    fn carry_for(&mut self, batch: usize) -> Result<()> {
        if self.carry.as_ref().is_some_and(|c| c.batch == batch) {
            return Ok(());
        }
        let per = self.config.gru_config().num_directions() * batch * self.config.hidden_size;
        let layers = self.ctx.scoped(|| {
            (0..self.config.num_layers)
                .map(|l| self.ctx.storage(&format!("carry_l{l}"), per))
                .collect::<Result<Vec<_>>>()
        })?;
        self.carry = Some(Carry {
            batch,
            layers,
            valid: false,
        });
        Ok(())
    }

    /// Records and submits one pass over shape `i`: initial states (zeros, or carried
    /// for a stateful model's training passes), the list, the update, and the copy of the
    /// final states into the carry.
    fn submit(&mut self, i: usize, pass: Pass) -> Result<()> {
        let training = matches!(pass, Pass::Train | Pass::Gradients);
        let carry = self.options.stateful && pass == Pass::Train;
        if carry {
            self.carry_for(self.shapes[i].batch)?;
        }
        let ctx = &self.ctx;
        let s = &self.shapes[i];
        let held = self
            .carry
            .as_ref()
            .filter(|c| self.options.stateful && training && c.valid && c.batch == s.batch);
        ctx.scoped(|| {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("model_pass"),
                });
            let bh = 4 * (s.batch * self.config.hidden_size) as u64;
            for (l, ws) in s.layers.iter().enumerate() {
                for (d, dir) in ws.dirs.iter().enumerate() {
                    match held {
                        Some(c) => {
                            enc.copy_buffer_to_buffer(&c.layers[l], d as u64 * bh, &dir.hs, 0, bh)
                        }
                        None => enc.clear_buffer(&dir.hs, 0, Some(bh)),
                    }
                }
            }
            let list = match pass {
                Pass::Train | Pass::Gradients => &s.train,
                Pass::Eval => &s.eval,
                Pass::Predict => &s.predict,
            };
            encode(&mut enc, "model", list);
            if pass == Pass::Train {
                encode(&mut enc, "update", &self.update);
            }
            if let Some(c) = self.carry.as_ref().filter(|_| carry) {
                let at = (s.t_len as u64) * bh;
                for (l, ws) in s.layers.iter().enumerate() {
                    for (d, dir) in ws.dirs.iter().enumerate() {
                        enc.copy_buffer_to_buffer(&dir.hs, at, &c.layers[l], d as u64 * bh, bh);
                    }
                }
            }
            ctx.queue.submit([enc.finish()]);
            Ok(())
        })?;
        if let Some(c) = self.carry.as_mut().filter(|_| carry) {
            c.valid = true;
        }
        Ok(())
    }

    fn write_step_uniform(&self, step: u64) {
        let o = &self.options;
        let (bc1, bc2) = o.bias_corrections(step);
        let u = TrainStep {
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
            clip_norm: o.clip_norm.unwrap_or(f32::MAX),
            seed: o.step_seed(step),
            decoupled: (o.optimizer == Optimizer::AdamW) as u32,
        };
        self.ctx
            .queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&u));
    }

    /// The global gradient norm of the last training step, before clipping (a readback).
    pub fn last_grad_norm(&self) -> Result<f32> {
        let n = self.tensors.len();
        Ok(self
            .ctx
            .read_f32(&self.small_staging, &[(&self.norms, n + 1, 1)])?
            .concat()[0])
    }

    /// One buffer of every tensor (values or gradients), read back as parameters.
    fn tensors_as_params(&self, pick: impl Fn(&GpuTensor) -> &wgpu::Buffer) -> Result<ModelParams> {
        let data = self.read_tensors(pick)?;
        let mut p = ModelParams::zeros(self.config);
        for (dst, src) in p.tensors_mut().into_iter().zip(data) {
            *dst = src;
        }
        Ok(p)
    }

    fn read_tensors(&self, pick: impl Fn(&GpuTensor) -> &wgpu::Buffer) -> Result<Vec<Vec<f32>>> {
        let total: usize = self.tensors.iter().map(|t| t.info.len()).sum();
        let staging = self.ctx.staging(total)?;
        let parts: Vec<_> = self
            .tensors
            .iter()
            .map(|t| (pick(t), 0, t.info.len()))
            .collect();
        self.ctx.read_f32(&staging, &parts)
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
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Train)?;
        self.step += 1;
        Ok(())
    }
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.write_step_uniform(self.step + 1);
        self.submit(i, Pass::Gradients)?;
        self.tensors_as_params(|t| &t.grad)
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        let prep = batch.prepare(&self.config, true)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.submit(i, Pass::Eval)
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        let buf = &self.metrics[split as usize];
        let t = self
            .ctx
            .read_f32(&self.small_staging, &[(buf, 0, 4)])?
            .concat();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        enc.clear_buffer(buf, 0, None);
        self.ctx.queue.submit([enc.finish()]);
        let t = [t[0] as f64, t[1] as f64, t[2] as f64, t[3] as f64];
        Ok(Metrics::from_totals(
            t,
            self.config.loss != Loss::MeanSquaredError,
        ))
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        let prep = batch.prepare(&self.config, false)?;
        let i = self.shape_index(prep.seq_len, prep.batch)?;
        self.write_inputs(i, &prep);
        self.submit(i, Pass::Predict)?;
        let s = &self.shapes[i];
        let n = prep.head_rows(self.config.head) * self.config.outputs;
        let logits = self
            .ctx
            .read_f32(&s.staging, &[(&s.logits, 0, n)])?
            .concat();
        Ok(batch_first_logits(
            &self.config,
            logits,
            prep.batch,
            prep.seq_len,
        ))
    }
    fn params(&mut self) -> Result<ModelParams> {
        self.tensors_as_params(|t| &t.value)
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        check_same_config(&self.config, &params.config)?;
        for (t, data) in self.tensors.iter().zip(params.tensors()) {
            check_len(
                &t.info.name,
                data.len(),
                &t.info.shape,
                &format!("{:?}", t.info.shape),
            )?;
        }
        for (t, data) in self.tensors.iter().zip(params.tensors()) {
            self.ctx
                .queue
                .write_buffer(&t.value, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(OptimizerState {
            step: self.step,
            m: self.read_tensors(|t| &t.m)?,
            v: self.read_tensors(|t| &t.v)?,
        })
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.tensors.iter().map(|t| t.info.len()).collect();
        state.check(&lens)?;
        for (t, (m, v)) in self.tensors.iter().zip(state.m.iter().zip(&state.v)) {
            self.ctx
                .queue
                .write_buffer(&t.m, 0, bytemuck::cast_slice(m));
            self.ctx
                .queue
                .write_buffer(&t.v, 0, bytemuck::cast_slice(v));
        }
        self.step = state.step;
        Ok(())
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        let Some(c) = self.carry.as_ref().filter(|c| c.valid) else {
            return Ok(None);
        };
        let per = self.config.gru_config().num_directions() * c.batch * self.config.hidden_size;
        let parts: Vec<_> = c.layers.iter().map(|b| (b, 0, per)).collect();
        let staging = self.ctx.staging(parts.len() * per)?;
        Ok(Some(self.ctx.read_f32(&staging, &parts)?.concat()))
    }
    fn generate(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Vec<u32>> {
        check_lm(&self.config, prompt)?;
        sampling.validate()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        // The step shape first: building the prompt's shape can then only evict older ones.
        self.shape_index(1, 1)?;
        let wi = self.shape_index(prompt.len(), 1)?;
        let si = self.shape_index(1, 1)?;
        let prep = Batch::tokens(prompt, 1, prompt.len()).prepare(&self.config, false)?;
        self.write_inputs(wi, &prep);
        self.ctx
            .scoped(|| self.generate_on_device(wi, si, n, sampling, on_token))
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        let Some((h, batch)) = state else {
            if let Some(c) = &mut self.carry {
                c.valid = false;
            }
            return Ok(());
        };
        let gcfg = self.config.gru_config();
        let per = gcfg.num_directions() * batch * gcfg.hidden_size;
        check_len(
            "carried state",
            h.len(),
            &[gcfg.num_layers, per],
            "[layers*dirs, B, H]",
        )?;
        self.carry_for(batch)?;
        if let Some(c) = &mut self.carry {
            for (l, buf) in c.layers.iter().enumerate() {
                self.ctx.queue.write_buffer(
                    buf,
                    0,
                    bytemuck::cast_slice(&h[l * per..(l + 1) * per]),
                );
            }
            c.valid = true;
        }
        Ok(())
    }
}

impl GpuTrainer {
    /// Generation after the prompt's tokens are written to shape `wi`: one pass over the
    /// prompt, then one pass per token over shape `si`, the sampled token fed back on the
    /// device. `GEN_CHUNK` tokens per submission.
    fn generate_on_device(
        &self,
        wi: usize,
        si: usize,
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Vec<u32>> {
        let ctx = &*self.ctx;
        let (warm, step) = (&self.shapes[wi], &self.shapes[si]);
        let (h, c) = (self.config.hidden_size, self.config.outputs);
        for ws in &step.layers {
            ctx.queue
                .write_buffer(&ws.lengths, 0, bytemuck::bytes_of(&1u32));
        }
        let gen = ctx.storage("generated", n + 1)?;
        let carry = (0..self.layers.len())
            .map(|l| ctx.storage(&format!("gen_carry_l{l}"), h))
            .collect::<Result<Vec<_>>>()?;
        let sample = |logits: &wgpu::Buffer, offset: usize| {
            let sp = SampleParams {
                cols: c as u32,
                top_k: sampling.top_k.min(c) as u32,
                temperature: sampling.temperature,
                offset: offset as u32,
                seed_lo: sampling.seed as u32,
                seed_hi: (sampling.seed >> 32) as u32,
                ..Default::default()
            };
            param_dispatch(
                ctx,
                Kernel::Sample,
                &[],
                "sample",
                bytemuck::bytes_of(&sp),
                &[logits, &step.tokens, &gen],
                [1, 1, 1],
            )
        };
        let mut warm_list = warm.predict.clone();
        warm_list.push(sample(&warm.logits, (warm.t_len - 1) * c)?);
        let mut step_list = step.predict.clone();
        step_list.push(sample(&step.logits, 0)?);
        let bytes = 4 * h as u64;
        let staging = ctx.staging(GEN_CHUNK)?;
        // Grown as tokens arrive: `n` is a request, not memory to reserve up front.
        let mut out = Vec::with_capacity(n.min(1 << 16));
        while out.len() < n {
            let k = GEN_CHUNK.min(n - out.len());
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("generate"),
                });
            for i in out.len()..out.len() + k {
                let (shape, list) = if i == 0 {
                    (warm, &warm_list)
                } else {
                    (step, &step_list)
                };
                for (l, ws) in shape.layers.iter().enumerate() {
                    if i == 0 {
                        enc.clear_buffer(&ws.dirs[0].hs, 0, Some(bytes));
                    } else {
                        enc.copy_buffer_to_buffer(&carry[l], 0, &ws.dirs[0].hs, 0, bytes);
                    }
                }
                encode(&mut enc, "generate_step", list);
                for (l, ws) in shape.layers.iter().enumerate() {
                    enc.copy_buffer_to_buffer(
                        &ws.dirs[0].hs,
                        shape.t_len as u64 * bytes,
                        &carry[l],
                        0,
                        bytes,
                    );
                }
            }
            ctx.queue.submit([enc.finish()]);
            let got = ctx
                .read_f32(&staging, &[(&gen, 1 + out.len(), k)])?
                .concat();
            for v in got {
                let tok = v.to_bits();
                on_token(tok);
                out.push(tok);
            }
        }
        Ok(out)
    }
}
