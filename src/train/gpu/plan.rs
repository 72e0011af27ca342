//! One (T, B) of a model on the device: the GRU layers' workspaces, the head's buffers,
//! and the recorded lists `forward`, `loss`, `backward` assembled from the ops. Built
//! once per shape; a pass only writes its inputs and replays a list.

use crate::config::GruConfig;
use crate::error::{GruError, Result};
use crate::gpu::abi::{CopyParams, LossParams};
use crate::gpu::bind::Bind;
use crate::gpu::bind::Range;
use crate::gpu::context::GpuContext;
use crate::gpu::flat::ALIGN;
use crate::gpu::kernels::Elems;
use crate::gpu::ops::copy::{strided_copy, strided_copy_as};
use crate::gpu::ops::dropout::{dropout, dropout_as};
use crate::gpu::ops::embed::{
    embed_backward, embed_forward, token_index, token_index_len, TableRows,
};
use crate::gpu::ops::gemm::gemm_deferred;
use crate::gpu::ops::loss::{loss, metrics_add};
use crate::gpu::ops::reduce::{colsum_deferred, reduce_pending};
use crate::gpu::ops::{colsum_scratch, gemm, gemm_scratch, Dispatch, GemmFlags, GemmParams};
use crate::gpu::params::GpuParams;
use crate::gpu::plan::BackwardNeeds;
use crate::gpu::workspace::Workspace;
use crate::model::batch::Prepared;
use crate::model::{Head, Loss, ModelConfig, ModelInput, HEAD_SITE};
use crate::precision::device_bytes;

use super::place::Place;

/// The device buffers a model plan reads and writes besides its own: parameters (value
/// and gradient of the embedding and the dense head; no gradients for an f16 inference
/// model, whose plans record no training pass), the training uniform, the running
/// totals of each split.
pub(crate) struct ModelBuffers<'a> {
    pub layers: &'a [(GruConfig, GpuParams)],
    pub embedding: Option<(&'a Range, Option<&'a Range>)>,
    /// The embedding gradient's rows: those a batch holds (the lazy update) or all.
    pub table_rows: TableRows,
    pub fc_weight: (&'a Range, Option<&'a Range>),
    pub fc_bias: (&'a Range, Option<&'a Range>),
    pub step: &'a wgpu::Buffer,
    pub totals: [&'a wgpu::Buffer; 2],
}

/// Everything of one (T, B), or of one chunk of its rows.
pub(crate) struct ModelPlan {
    pub t_len: usize,
    /// Mixed precision and f16: the layers read f16 weights and keep f16 activations,
    /// and so do the embedding's output, the gathered last states and the head's input.
    half: bool,
    /// Rows of this plan (`place.rows`).
    pub batch: usize,
    pub place: Place,
    pub layers: Vec<Workspace>,
    /// Token ids [T, B] (token models).
    pub tokens: wgpu::Buffer,
    /// Where each token occurs, for the embedding gradient (`embed::token_index`;
    /// empty without a backward).
    token_index: Option<wgpu::Buffer>,
    table_rows: TableRows,
    targets: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    loss_params: wgpu::Buffer,
    pub staging: wgpu::Buffer,
    /// Forward with dropout, loss counted under training, backward: the gradients
    /// (empty for an f16 inference model).
    pub train: Vec<Dispatch>,
    /// Forward without dropout and the loss counted under evaluation.
    pub eval: Vec<Dispatch>,
    /// Forward without dropout.
    pub predict: Vec<Dispatch>,
}

/// The head's buffers, between the top layer and the logits.
struct Head_ {
    rows: usize,
    /// The last states of both directions [B, dirs·H] and their gradient (last-state
    /// head only; a per-step head reads the top layer's output).
    last: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// After head dropout, and its gradient (the gathered buffers when p = 0).
    input: (wgpu::Buffer, wgpu::Buffer),
    d_logits: wgpu::Buffer,
    stats: wgpu::Buffer,
    scratch: wgpu::Buffer,
}

impl ModelPlan {
    /// Allocates the buffers of (T, rows of `place`) and records its lists.
    pub(crate) fn new(
        ctx: &GpuContext,
        cfg: &ModelConfig,
        bufs: &ModelBuffers,
        t_len: usize,
        place: Place,
    ) -> Result<Self> {
        let batch = place.rows;
        let tb = t_len * batch;
        let (f, c) = (cfg.head_input_size(), cfg.outputs);
        let half = bufs.layers.first().is_some_and(|(_, p)| p.half());
        // An f16 inference model: no backward, so no gradient buffers (as in an
        // inference workspace, they are allocated empty).
        let trains = bufs.fc_weight.1.is_some();
        let grad = |n: usize| if trains { n } else { 0 };
        let rows = match cfg.head {
            Head::EveryStep => tb,
            Head::LastState => batch,
        };
        let mut layers = Vec::new();
        for (lc, p) in bufs.layers {
            let later = place.row0 > 0;
            // The initial states are no parameters: no gradient for them. On a GPU a
            // token model's first layer may leave its input gradient in slices, which
            // the embedding's gradient adds as it reads (not on a software adapter,
            // whose loop cap the extra loop per position would bring nearer).
            let tokens = matches!(cfg.input, ModelInput::Tokens { .. });
            let needs = BackwardNeeds {
                accumulate_grads: later,
                d_h0: false,
                d_input_slices: layers.is_empty() && tokens && ctx.gpu_builds(),
            };
            // The plan reads back its logits, not the layers' outputs.
            let shape = (t_len, batch, false);
            layers.push(match trains {
                true => crate::gpu::plan::workspace(ctx, lc, p, shape, needs)?,
                false => crate::gpu::plan::inference_workspace(ctx, lc, p, shape)?,
            });
        }
        let top = layers
            .last()
            .ok_or_else(|| GruError::Config("no GRU layers".into()))?;
        let last = match cfg.head {
            Head::EveryStep => None,
            Head::LastState => Some((
                ctx.storage_as("last_state", rows * f, half)?,
                ctx.storage("d_last_state", grad(rows * f))?,
            )),
        };
        let gathered = match &last {
            Some((a, b)) => (a.clone(), b.clone()),
            None => (top.output().clone(), top.d_output().clone()),
        };
        let input = if cfg.dropout > 0.0 {
            (
                ctx.storage_as("head_input", rows * f, half)?,
                ctx.storage("d_head_input", grad(rows * f))?,
            )
        } else {
            gathered
        };
        let head = Head_ {
            rows,
            last,
            input,
            d_logits: ctx.storage("d_logits", rows * c)?,
            stats: ctx.storage("loss_stats", rows * 3)?,
            scratch: ctx.storage(
                "head_scratch",
                // The weight gradient's slices, then the bias's, reduced together.
                grad(
                    (gemm_scratch(ctx, c, f, rows).next_multiple_of(ALIGN)
                        + colsum_scratch(ctx, rows, c))
                    .max(gemm_scratch(ctx, rows, f, c)),
                )
                .max(gemm_scratch(ctx, rows, c, f)),
            )?,
        };
        let vocab = match cfg.input {
            ModelInput::Tokens { vocab, .. } => vocab,
            ModelInput::Features(_) => 0,
        };
        let target_len = match cfg.loss {
            Loss::CrossEntropy => rows,
            _ => rows * c,
        };
        let mut plan = ModelPlan {
            t_len,
            half,
            batch,
            place,
            layers,
            tokens: ctx.storage("tokens", tb)?,
            token_index: trains
                .then(|| {
                    let n = token_index_len(tb, vocab, bufs.table_rows);
                    ctx.storage("token_index", n)
                })
                .transpose()?,
            table_rows: bufs.table_rows,
            targets: ctx.storage("targets", target_len)?,
            logits: ctx.storage("logits", rows * c)?,
            loss_params: ctx.uniform(
                "loss_params",
                bytemuck::bytes_of(&LossParams {
                    rows: rows as u32,
                    cols: c as u32,
                    ..Default::default()
                }),
            )?,
            staging: ctx.staging(rows * c)?,
            train: Vec::new(),
            eval: Vec::new(),
            predict: Vec::new(),
        };
        if trains {
            plan.train = plan.forward(ctx, cfg, bufs, &head, true)?;
            plan.train
                .extend(plan.loss(ctx, cfg, &head, bufs.totals[0])?);
            plan.train.extend(plan.backward(ctx, cfg, bufs, &head)?);
        }
        plan.eval = plan.forward(ctx, cfg, bufs, &head, false)?;
        plan.eval
            .extend(plan.loss(ctx, cfg, &head, bufs.totals[1])?);
        plan.predict = plan.forward(ctx, cfg, bufs, &head, false)?;
        Ok(plan)
    }

    /// Embedding, the layers with dropout between them, the head's input, the logits.
    fn forward(
        &self,
        ctx: &GpuContext,
        cfg: &ModelConfig,
        bufs: &ModelBuffers,
        head: &Head_,
        train: bool,
    ) -> Result<Vec<Dispatch>> {
        let p = if train { cfg.dropout } else { 0.0 };
        let (tb, f, c) = (self.t_len * self.batch, cfg.head_input_size(), cfg.outputs);
        let mut list = Vec::new();
        if let (ModelInput::Tokens { embed_dim, vocab }, Some((table, _))) =
            (cfg.input, bufs.embedding)
        {
            let dims = (tb, embed_dim, vocab);
            let out = self.layers[0].input();
            let bufs: (&dyn Bind, &dyn Bind, &dyn Bind) = (&self.tokens, table, out);
            list.push(embed_forward(ctx, dims, bufs, self.half)?);
        }
        for (l, ws) in self.layers.iter().enumerate() {
            if l > 0 {
                let below = self.layers[l - 1].output();
                list.push(dropout_as(
                    ctx,
                    bufs.step,
                    (l as u32, p, tb * f),
                    self.place.dropout(f),
                    (below, ws.input()),
                    self.half,
                )?);
            }
            list.extend(ws.forward.iter().cloned());
        }
        let top = &self.layers[self.layers.len() - 1];
        let gathered = match &head.last {
            Some((last, _)) => {
                for d in 0..cfg.gru_config().num_directions() {
                    let cp = CopyParams::last_state(self.copy_dims(cfg), d, true);
                    let half = (self.half, self.half);
                    list.push(strided_copy_as(ctx, cp, (top.states(d), last), half)?);
                }
                last
            }
            None => top.output(),
        };
        if cfg.dropout > 0.0 {
            list.push(dropout_as(
                ctx,
                bufs.step,
                (HEAD_SITE, p, head.rows * f),
                self.place.dropout(f),
                (gathered, &head.input.0),
                self.half,
            )?);
        }
        // logits [rows, C] = head_in [rows, F] · fc_wᵀ + fc_b (f32 logits in mixed
        // precision, from the f16 input, weight and bias)
        let gp = GemmParams::dims(head.rows, c, f, f, f, c);
        let flags = GemmFlags {
            trans_b: true,
            elems: Elems {
                act: self.half,
                wt: self.half,
                out: false,
            },
            ..Default::default()
        };
        let (w, b) = (bufs.fc_weight.0, bufs.fc_bias.0);
        list.extend(gemm(
            ctx,
            "gemm_dense",
            gp,
            flags,
            &head.input.0,
            w,
            Some(b),
            &self.logits,
            &head.scratch,
        )?);
        Ok(list)
    }

    /// The loss and its running totals (`totals`: the split's buffer).
    fn loss(
        &self,
        ctx: &GpuContext,
        cfg: &ModelConfig,
        head: &Head_,
        totals: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        let bufs = [&self.logits, &self.targets, &head.d_logits, &head.stats];
        Ok(vec![
            loss(
                ctx,
                cfg.loss,
                (head.rows, cfg.outputs),
                &self.loss_params,
                bufs,
            )?,
            metrics_add(ctx, (head.rows, !self.place.later()), &head.stats, totals)?,
        ])
    }

    /// The dense head's gradients, back through the head's dropout and gather, the
    /// layers (with dropout between them) and the embedding.
    fn backward(
        &self,
        ctx: &GpuContext,
        cfg: &ModelConfig,
        bufs: &ModelBuffers,
        head: &Head_,
    ) -> Result<Vec<Dispatch>> {
        let (tb, f, c, rows) = (
            self.t_len * self.batch,
            cfg.head_input_size(),
            cfg.outputs,
            head.rows,
        );
        let mut list = Vec::new();
        // d_fc_w [C, F] = d_logitsᵀ · head_in; d_fc_b = column sums; d_head_in = d_logits · fc_w
        let later = self.place.later();
        // Mixed precision: op(B) (the head's input, the weight) is f16.
        let elems = Elems {
            wt: self.half,
            ..Elems::F32
        };
        let ta = GemmFlags {
            trans_a: true,
            accumulate: later,
            elems,
            ..Default::default()
        };
        let no_grads = || GruError::State("a backward without gradient buffers".into());
        let d_w = bufs.fc_weight.1.ok_or_else(no_grads)?;
        let d_b = bufs.fc_bias.1.ok_or_else(no_grads)?;
        let gp = GemmParams::dims(c, f, rows, c, f, f);
        let (gemm_list, w_slices) = gemm_deferred(
            ctx,
            "gemm_d_dense_w",
            gp,
            ta,
            &head.d_logits,
            &head.input.0,
            d_w,
            (&head.scratch, 0),
        )?;
        list.extend(gemm_list);
        // The bias's slices after the weight's, both reduced in one dispatch.
        let (d, b_slices) = colsum_deferred(
            ctx,
            "colsum_d_dense_b",
            (rows, c),
            (&head.d_logits, None),
            d_b,
            later,
            (&head.scratch, w_slices.map_or(0, |r| r.end())),
        )?;
        list.push(d);
        list.extend(reduce_pending(
            ctx,
            "reduce_d_dense",
            [(w_slices, d_w), (b_slices, d_b)],
            later,
            &head.scratch,
        )?);
        let gp = GemmParams::dims(rows, f, c, c, f, f);
        let w = bufs.fc_weight.0;
        list.extend(gemm(
            ctx,
            "gemm_d_head_input",
            gp,
            GemmFlags {
                elems,
                ..Default::default()
            },
            &head.d_logits,
            w,
            None,
            &head.input.1,
            &head.scratch,
        )?);
        let top = &self.layers[self.layers.len() - 1];
        let d_gathered = match &head.last {
            Some((_, d_last)) => d_last,
            None => top.d_output(),
        };
        if cfg.dropout > 0.0 {
            list.push(dropout(
                ctx,
                bufs.step,
                (HEAD_SITE, cfg.dropout, rows * f),
                self.place.dropout(f),
                &head.input.1,
                d_gathered,
            )?);
        }
        if head.last.is_some() {
            for d in 0..cfg.gru_config().num_directions() {
                let cp = CopyParams::last_state(self.copy_dims(cfg), d, false);
                list.push(strided_copy(ctx, cp, d_gathered, top.d_states(d))?);
            }
        }
        for l in (0..self.layers.len()).rev() {
            list.extend(self.layers[l].backward.iter().cloned());
            if l > 0 {
                let (d_in, d_below) = (self.layers[l].d_input(), self.layers[l - 1].d_output());
                list.push(dropout(
                    ctx,
                    bufs.step,
                    (l as u32, cfg.dropout, tb * f),
                    self.place.dropout(f),
                    d_in,
                    d_below,
                )?);
            }
        }
        if let (ModelInput::Tokens { embed_dim, vocab }, Some((_, d_table))) =
            (cfg.input, bufs.embedding)
        {
            let d_table = d_table.ok_or_else(no_grads)?;
            let dims = (tb, embed_dim, vocab);
            let (d_x, slices) = self.layers[0].d_input_slices();
            list.push(embed_backward(
                ctx,
                dims,
                (self.table_rows, later),
                self.token_index.as_ref().ok_or_else(no_grads)?,
                (d_x, slices),
                d_table,
            )?);
        }
        Ok(list)
    }

    /// (B, H, directions, T) for the last-state copies.
    fn copy_dims(&self, cfg: &ModelConfig) -> (usize, usize, usize, usize) {
        let nd = cfg.gru_config().num_directions();
        (self.batch, cfg.hidden_size, nd, self.t_len)
    }

    /// Writes a checked batch's inputs.
    pub(crate) fn write_inputs(&self, ctx: &GpuContext, cfg: &ModelConfig, prep: &Prepared) {
        let q = &ctx.queue;
        match cfg.input {
            ModelInput::Tokens { vocab, .. } => {
                q.write_buffer(&self.tokens, 0, bytemuck::cast_slice(&prep.tokens));
                if let Some(buf) = &self.token_index {
                    let index = token_index(&prep.tokens, vocab, self.table_rows);
                    q.write_buffer(buf, 0, bytemuck::cast_slice(&index));
                }
            }
            ModelInput::Features(_) => {
                let bytes = device_bytes(&prep.features, self.half);
                q.write_buffer(self.layers[0].input(), 0, &bytes);
            }
        }
        let lengths: Vec<u32> = prep.lengths.iter().map(|&l| l as u32).collect();
        for ws in &self.layers {
            q.write_buffer(ws.lengths(), 0, bytemuck::cast_slice(&lengths));
        }
        if !prep.targets.is_empty() {
            q.write_buffer(&self.targets, 0, bytemuck::cast_slice(&prep.targets));
            let lp = LossParams {
                rows: prep.head_rows(cfg.head) as u32,
                cols: cfg.outputs as u32,
                inv_count: 1.0 / prep.count as f32,
                _p0: 0,
            };
            q.write_buffer(&self.loss_params, 0, bytemuck::bytes_of(&lp));
        }
    }
}
