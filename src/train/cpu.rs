//! The CPU reference trainer: the whole model in plain loops, generic over the float
//! type so gradient checks run it in f64, and an optimiser that mirrors the kernels.

use crate::cpu::{self, sigmoid};
use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::{GruError, Result};
use crate::generate::{check_lm, Sampling};
use crate::model::batch::Prepared;
use crate::model::{
    batch_first_logits, check_same_config, Batch, Head, Loss, ModelConfig, ModelInput, ModelParams,
    ParamRole, HEAD_SITE, IGNORE,
};
use crate::real::Real;
use crate::rng::{dropout_keeps, dropout_threshold};
use crate::sequence::SequenceInput;
use crate::train::options::{Optimizer, OptimizerState, TrainOptions};
use crate::train::trainer::{Metrics, Split, Totals, Trainer};

/// What one pass of the model computed.
#[derive(Debug, Clone)]
pub struct ModelPass<R = f32> {
    /// Logits, time-major rows: [T·B, outputs] per step, [B, outputs] for the last state.
    pub logits: Vec<R>,
    /// (loss sum, correct, counted, 1); the mean loss is `totals[0] / totals[2]`.
    pub totals: [f64; 4],
    /// Gradient of the mean loss for every parameter (when asked for).
    pub grads: Option<ModelParams<R>>,
    /// Final state [layers·dirs, B, H].
    pub h_n: Vec<R>,
}

/// Dropout at `site` on time-major values, `width` per batch row, of `prep`'s rows: a
/// value's mask is drawn by its place in the global batch (`prep.shard`), as the kernel
/// draws a chunk's.
fn apply_dropout<R: Real>(
    x: &mut [R],
    (seed, site, p): (u32, u32, f32),
    width: usize,
    prep: &Prepared,
) {
    let (threshold, scale) = dropout_threshold(p);
    let scale = R::from_f64(scale as f64);
    let span = prep.batch * width;
    let (stride, offset) = (prep.shard.global_rows * width, prep.shard.first_row * width);
    for (i, v) in x.iter_mut().enumerate() {
        let at = (i / span) * stride + offset + i % span;
        *v = if dropout_keeps(seed, site, at as u32, threshold) {
            *v * scale
        } else {
            R::default()
        };
    }
}

/// This rank's rows of a global batch, checked, placed by `shard`, with the loss counted
/// over every rank's targets (one sum across ranks).
pub(crate) fn shared_batch(
    config: &ModelConfig,
    batch: &Batch,
    shard: Shard,
    comm: &dyn Communicator,
) -> Result<Prepared> {
    let mut prep = batch.prepare(config, true)?;
    shard.check(prep.batch)?;
    prep.shard = shard;
    let mut count = [prep.count as f64];
    comm.sum_f64(&mut count)?;
    prep.count = count[0] as usize;
    Ok(prep)
}

/// Runs the model on `batch` (already checked). `dropout_seed`: training mode with that
/// step seed; `h0`: [layers·dirs, B, H] initial state; `grads`: also run backward.
pub fn model_pass<R: Real>(
    params: &ModelParams<R>,
    batch: &Batch,
    dropout_seed: Option<u32>,
    h0: Option<&[R]>,
    grads: bool,
) -> Result<ModelPass<R>> {
    let prep = batch.prepare(&params.config, grads)?;
    pass(params, &prep, dropout_seed, h0, grads)
}

// Long by choice: the reference reads top to bottom as the math (embedding, layers,
// head, loss, then backward in reverse), which splitting would scatter.
pub(crate) fn pass<R: Real>(
    params: &ModelParams<R>,
    prep: &Prepared,
    dropout_seed: Option<u32>,
    h0: Option<&[R]>,
    want_grads: bool,
) -> Result<ModelPass<R>> {
    let cfg = &params.config;
    let gcfg = cfg.gru_config();
    let (t_len, b_len, h) = (prep.seq_len, prep.batch, cfg.hidden_size);
    let nd = gcfg.num_directions();
    let f = cfg.head_input_size();
    let c = cfg.outputs;
    let p_drop = if dropout_seed.is_some() {
        cfg.dropout
    } else {
        0.0
    };
    let seed = dropout_seed.unwrap_or(0);
    if let Some(h0) = h0 {
        crate::error::check_len(
            "h0",
            h0.len(),
            &[cfg.num_layers * nd, b_len, h],
            "[layers*dirs, B, H]",
        )?;
    }

    // Input [T, B, I].
    let x0: Vec<R> = match cfg.input {
        ModelInput::Tokens { embed_dim, .. } => prep
            .tokens
            .iter()
            .flat_map(|&t| {
                params.embedding[t as usize * embed_dim..(t as usize + 1) * embed_dim]
                    .iter()
                    .copied()
            })
            .collect(),
        ModelInput::Features(_) => prep
            .features
            .iter()
            .map(|&v| R::from_f64(v as f64))
            .collect(),
    };

    // The stack, one layer at a time so dropout can sit between layers.
    let layer_w: Vec<_> = (0..cfg.num_layers).map(|l| params.gru_layer(l)).collect();
    let mut inputs = vec![x0];
    let mut fwds = Vec::new();
    let mut h_n = Vec::new();
    let ldbh = nd * b_len * h;
    for (l, w) in layer_w.iter().enumerate() {
        let mut x = inputs[l].clone();
        if l > 0 && p_drop > 0.0 {
            let width = x.len() / (t_len * b_len);
            apply_dropout(&mut x, (seed, l as u32, p_drop), width, prep);
            inputs[l] = x.clone();
        }
        let mut seq = SequenceInput::new(&x, t_len, b_len).lengths(&prep.lengths);
        if let Some(h0) = h0 {
            seq = seq.h0(&h0[l * ldbh..(l + 1) * ldbh]);
        }
        let fwd = cpu::forward(w, &seq)?;
        h_n.extend_from_slice(&fwd.h_n);
        inputs.push(fwd.output.clone());
        fwds.push(fwd);
    }
    let top = fwds
        .last()
        .ok_or_else(|| GruError::Config("no GRU layers".into()))?;
    let rows = prep.head_rows(cfg.head);
    let mut head_in: Vec<R> = match cfg.head {
        Head::EveryStep => top.output.clone(),
        Head::LastState => {
            let mut v = vec![R::default(); b_len * f];
            for b in 0..b_len {
                for d in 0..nd {
                    v[b * f + d * h..b * f + (d + 1) * h]
                        .copy_from_slice(&top.h_n[(d * b_len + b) * h..(d * b_len + b + 1) * h]);
                }
            }
            v
        }
    };
    if p_drop > 0.0 {
        apply_dropout(&mut head_in, (seed, HEAD_SITE, p_drop), f, prep);
    }
    // Dense head.
    let mut logits = vec![R::default(); rows * c];
    for r in 0..rows {
        let out = &mut logits[r * c..(r + 1) * c];
        out.copy_from_slice(&params.fc_bias);
        cpu::matvec_acc(&params.fc_weight, &head_in[r * f..(r + 1) * f], out);
    }
    // Loss.
    let mut totals: Totals = [0.0, 0.0, 0.0, 1.0];
    let mut d_logits = vec![R::default(); rows * c];
    if !prep.targets.is_empty() {
        let inv = R::from_f64(1.0 / prep.count as f64);
        let one = R::from_f64(1.0);
        for r in 0..rows {
            let x = &logits[r * c..(r + 1) * c];
            let d = &mut d_logits[r * c..(r + 1) * c];
            match cfg.loss {
                Loss::CrossEntropy => {
                    let t = prep.targets[r];
                    if t == IGNORE {
                        continue;
                    }
                    let (mut mx, mut arg) = (x[0], 0);
                    for (k, &v) in x.iter().enumerate().skip(1) {
                        if v > mx {
                            mx = v;
                            arg = k;
                        }
                    }
                    let mut sum = R::default();
                    for &v in x {
                        sum += (v - mx).exp();
                    }
                    let lse = mx + sum.ln();
                    for k in 0..c {
                        let prob = (x[k] - lse).exp();
                        let hot = if k == t as usize { one } else { R::default() };
                        d[k] = (prob - hot) * inv;
                    }
                    totals[0] += (lse - x[t as usize]).to_f64();
                    totals[1] += (arg == t as usize) as u8 as f64;
                    totals[2] += 1.0;
                }
                Loss::BinaryCrossEntropy => {
                    let t = prep.targets[r];
                    if t == IGNORE {
                        continue;
                    }
                    let (xv, y) = (x[0].to_f64(), f32::from_bits(t) as f64);
                    totals[0] += xv.max(0.0) - xv * y + (1.0 + (-xv.abs()).exp()).ln();
                    totals[1] += ((xv > 0.0) == (y > 0.5)) as u8 as f64;
                    totals[2] += 1.0;
                    d[0] = (sigmoid(x[0]) - R::from_f64(y)) * inv;
                }
                Loss::MeanSquaredError => {
                    for k in 0..c {
                        let t = prep.targets[r * c + k];
                        if t == IGNORE {
                            continue;
                        }
                        let e = x[k] - R::from_f64(f32::from_bits(t) as f64);
                        totals[0] += (e * e).to_f64();
                        totals[2] += 1.0;
                        d[k] = R::from_f64(2.0) * e * inv;
                    }
                }
            }
        }
    }
    if !want_grads {
        return Ok(ModelPass {
            logits,
            totals,
            grads: None,
            h_n,
        });
    }

    let mut g = ModelParams::<R>::zeros(*cfg);
    // Dense backward.
    let mut d_head_in = vec![R::default(); rows * f];
    for r in 0..rows {
        let dl = &d_logits[r * c..(r + 1) * c];
        cpu::outer_acc(&mut g.fc_weight, dl, &head_in[r * f..(r + 1) * f]);
        for (gb, &v) in g.fc_bias.iter_mut().zip(dl) {
            *gb += v;
        }
        cpu::matvec_t_acc(&params.fc_weight, dl, &mut d_head_in[r * f..(r + 1) * f]);
    }
    if p_drop > 0.0 {
        apply_dropout(&mut d_head_in, (seed, HEAD_SITE, p_drop), f, prep);
    }
    let (mut d_out, mut d_hn) = match cfg.head {
        Head::EveryStep => (d_head_in, None),
        Head::LastState => {
            let mut dh = vec![R::default(); nd * b_len * h];
            for b in 0..b_len {
                for d in 0..nd {
                    dh[(d * b_len + b) * h..(d * b_len + b + 1) * h]
                        .copy_from_slice(&d_head_in[b * f + d * h..b * f + (d + 1) * h]);
                }
            }
            (vec![R::default(); t_len * b_len * f], Some(dh))
        }
    };
    for l in (0..cfg.num_layers).rev() {
        let lg = cpu::backward(&layer_w[l], &fwds[l], &d_out, d_hn.as_deref())?;
        g.gru.dirs[l * nd..(l + 1) * nd].clone_from_slice(&lg.d_weights.dirs);
        d_out = lg.d_input;
        if l > 0 && p_drop > 0.0 {
            let width = d_out.len() / (t_len * b_len);
            apply_dropout(&mut d_out, (seed, l as u32, p_drop), width, prep);
        }
        d_hn = None;
    }
    if let ModelInput::Tokens { embed_dim, .. } = cfg.input {
        // Positions in order, as the kernel sums them.
        for (pos, &t) in prep.tokens.iter().enumerate() {
            let row = &mut g.embedding[t as usize * embed_dim..(t as usize + 1) * embed_dim];
            for (gv, &dv) in row
                .iter_mut()
                .zip(&d_out[pos * embed_dim..(pos + 1) * embed_dim])
            {
                *gv += dv;
            }
        }
    }
    Ok(ModelPass {
        logits,
        totals,
        grads: Some(g),
        h_n,
    })
}

/// Applies clipping, one optimiser update and the constraints to `params` in place,
/// exactly as the GPU kernels do (in f32).
pub(crate) fn update(
    params: &mut ModelParams,
    grads: &ModelParams,
    state: &mut OptimizerState,
    opts: &TrainOptions,
) {
    state.step += 1;
    let infos = params.infos();
    let grads = grads.tensors();
    let total: f32 = grads
        .iter()
        .map(|g| g.iter().map(|v| v * v).sum::<f32>())
        .sum();
    let scale = match opts.clip_norm {
        Some(c) => (c / (total.sqrt() + 1e-6)).min(1.0),
        None => 1.0,
    };
    let (bc1, bc2) = opts.bias_corrections(state.step);
    let wd = opts.weight_decay;
    let lr = opts.learning_rate;
    for (i, p) in params.tensors_mut().into_iter().enumerate() {
        let (m, v) = (&mut state.m[i], &mut state.v[i]);
        for (k, w) in p.iter_mut().enumerate() {
            let mut g = grads[i][k] * scale;
            if let Some(cv) = opts.clip_value {
                g = g.clamp(-cv, cv);
            }
            match opts.optimizer {
                Optimizer::Sgd { momentum } => {
                    let g = g + wd * *w;
                    let d = if momentum > 0.0 {
                        m[k] = momentum * m[k] + g;
                        m[k]
                    } else {
                        g
                    };
                    *w -= lr * d;
                }
                Optimizer::Adam | Optimizer::AdamW => {
                    let mut wv = *w;
                    if opts.optimizer == Optimizer::AdamW {
                        wv *= 1.0 - lr * wd;
                    } else {
                        g += wd * wv;
                    }
                    m[k] = opts.beta1 * m[k] + (1.0 - opts.beta1) * g;
                    v[k] = opts.beta2 * v[k] + (1.0 - opts.beta2) * g * g;
                    *w = wv - lr * (m[k] / bc1) / ((v[k] / bc2).sqrt() + opts.eps);
                }
            }
        }
    }
    if let Some(c) = opts.max_norm {
        apply_max_norm(params, &infos, c);
    }
}

fn max_norm_factor(sumsq: f32, c: f32) -> f32 {
    let norm = sumsq.sqrt();
    norm.clamp(0.0, c) / (1e-7 + norm)
}

/// Keras `max_norm(c)` on every GRU kernel and recurrent kernel (per row of the PyTorch
/// layout, i.e. per unit) and on each (b_ih[j], b_hh[j]) pair.
fn apply_max_norm(params: &mut ModelParams, infos: &[crate::model::ParamInfo], c: f32) {
    let mut tensors = params.tensors_mut();
    let mut i = 0;
    while i < infos.len() {
        match infos[i].role {
            ParamRole::GruKernel | ParamRole::GruRecurrent => {
                let cols = infos[i].shape[1];
                for row in tensors[i].chunks_mut(cols) {
                    let f = max_norm_factor(row.iter().map(|v| v * v).sum(), c);
                    row.iter_mut().for_each(|v| *v *= f);
                }
            }
            ParamRole::GruBiasIh => {
                let (lo, hi) = tensors.split_at_mut(i + 1);
                for (a, b) in lo[i].iter_mut().zip(hi[0].iter_mut()) {
                    let f = max_norm_factor(*a * *a + *b * *b, c);
                    *a *= f;
                    *b *= f;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The CPU reference trainer ([`Trainer`] in plain loops, f32).
#[derive(Debug, Clone)]
pub struct CpuTrainer {
    params: ModelParams,
    options: TrainOptions,
    state: OptimizerState,
    /// Stateful carry: ([layers·dirs, B, H], B).
    carry: Option<(Vec<f32>, usize)>,
    totals: [Totals; 2],
}

impl CpuTrainer {
    /// A trainer starting from `params` with a fresh optimiser.
    pub fn new(params: ModelParams, options: TrainOptions) -> Result<Self> {
        params.config.validate()?;
        options.validate()?;
        if options.stateful && params.config.bidirectional {
            return Err(GruError::Config(
                "a stateful model must be unidirectional (the reverse direction has no next batch to carry into)".into(),
            ));
        }
        let lens: Vec<usize> = params.infos().iter().map(|i| i.len()).collect();
        Ok(CpuTrainer {
            params,
            options,
            state: OptimizerState::zeros(&lens),
            carry: None,
            totals: [[0.0; 4]; 2],
        })
    }

    fn add(&mut self, split: Split, t: Totals) {
        let acc = &mut self.totals[split as usize];
        for (a, v) in acc.iter_mut().zip(t) {
            *a += v;
        }
    }
}

impl Trainer for CpuTrainer {
    fn config(&self) -> &ModelConfig {
        &self.params.config
    }
    fn options(&self) -> &TrainOptions {
        &self.options
    }
    fn device_name(&self) -> String {
        "CPU reference".into()
    }
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let (grads, h_n, b) = self.backward(batch)?;
        update(&mut self.params, &grads, &mut self.state, &self.options);
        if self.options.stateful {
            self.carry = Some((h_n, b));
        }
        Ok(())
    }
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()> {
        let prep = shared_batch(&self.params.config, batch, shard, comm)?;
        let (mut grads, h_n, b) = self.backward_prepared(&prep)?;
        let mut flat: Vec<f32> = grads.tensors().concat();
        comm.sum_f32(&mut flat)?;
        let mut at = 0;
        for t in grads.tensors_mut() {
            let n = t.len();
            t.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        update(&mut self.params, &grads, &mut self.state, &self.options);
        if self.options.stateful {
            self.carry = Some((h_n, b));
        }
        Ok(())
    }
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        Ok(self.backward(batch)?.0)
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        // Targets are required, as on the GPU: a loss needs them.
        let prep = batch.prepare(&self.params.config, true)?;
        let out = pass(&self.params, &prep, None, None, false)?;
        self.add(Split::Eval, out.totals);
        Ok(())
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        let t = std::mem::take(&mut self.totals[split as usize]);
        Ok(Metrics::from_totals(
            t,
            self.params.config.loss != Loss::MeanSquaredError,
        ))
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        let out = model_pass(&self.params, batch, None, None, false)?;
        Ok(batch_first_logits(
            &self.params.config,
            out.logits,
            batch.batch,
            batch.seq_len,
        ))
    }
    fn params(&mut self) -> Result<ModelParams> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        check_same_config(&self.params.config, &params.config)?;
        for (info, t) in params.infos().iter().zip(params.tensors()) {
            crate::error::check_len(
                &info.name,
                t.len(),
                &info.shape,
                &format!("{:?}", info.shape),
            )?;
        }
        self.params = params.clone();
        Ok(())
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(self.state.clone())
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.params.infos().iter().map(|i| i.len()).collect();
        state.check(&lens)?;
        self.state = state.clone();
        Ok(())
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        Ok(self.carry.as_ref().map(|c| c.0.clone()))
    }
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        check_lm(&self.params.config, prompt)?;
        sampling.validate()?;
        let (mut logits, mut h) = self.lm_step(prompt, None)?;
        for i in 0..n {
            let tok = sampling.pick(&logits, i as u32);
            if !on_token(tok) {
                return Ok(i + 1);
            }
            if i + 1 < n {
                (logits, h) = self.lm_step(&[tok], Some(&h))?;
            }
        }
        Ok(n)
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        self.carry = match state {
            Some((h, b)) => {
                let cfg = self.params.config.gru_config();
                let dims = [cfg.num_layers * cfg.num_directions(), b, cfg.hidden_size];
                crate::error::check_len("carried state", h.len(), &dims, "[layers*dirs, B, H]")?;
                Some((h.to_vec(), b))
            }
            None => None,
        };
        Ok(())
    }
}

impl CpuTrainer {
    /// The training-mode pass of the next step: (gradients, final state, batch size);
    /// the loss is counted under [`Split::Train`].
    fn backward(&mut self, batch: &Batch) -> Result<(ModelParams, Vec<f32>, usize)> {
        let prep = batch.prepare(&self.params.config, true)?;
        self.backward_prepared(&prep)
    }

    fn backward_prepared(&mut self, prep: &Prepared) -> Result<(ModelParams, Vec<f32>, usize)> {
        let seed = self.options.step_seed(self.state.step + 1);
        let h0 = match &self.carry {
            Some((h, b)) if self.options.stateful && *b == prep.batch => Some(h.as_slice()),
            _ => None,
        };
        let out = pass(&self.params, prep, Some(seed), h0, true)?;
        let grads = out
            .grads
            .ok_or_else(|| GruError::State("no gradients".into()))?;
        self.add(Split::Train, out.totals);
        Ok((grads, out.h_n, prep.batch))
    }

    /// Logits of the last step and the final state after running `tokens` from `h0`.
    fn lm_step(&self, tokens: &[u32], h0: Option<&[f32]>) -> Result<(Vec<f32>, Vec<f32>)> {
        let batch = Batch::tokens(tokens, 1, tokens.len());
        let prep = batch.prepare(&self.params.config, false)?;
        let out = pass(&self.params, &prep, None, h0, false)?;
        let c = self.params.config.outputs;
        Ok((out.logits[out.logits.len() - c..].to_vec(), out.h_n))
    }
}
