//! One pass of the whole model on the CPU, in plain loops and any float type (f64 for
//! gradient checks): embedding, the GRU stack with dropout, the head, the loss and,
//! when training, every gradient.

use crate::cpu::{self, sigmoid};
use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::{GruError, Result};
use crate::model::batch::Prepared;
use crate::model::{Batch, Head, Loss, ModelConfig, ModelInput, ModelParams, HEAD_SITE, IGNORE};
use crate::real::Real;
use crate::rng::{dropout_keeps, dropout_threshold};
use crate::sequence::SequenceInput;
use crate::train::trainer::Totals;

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

/// One pass of the whole model: the reference reads top to bottom as the math
/// (embedding, layers, head, loss, then backward in reverse).
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
    let x0 = model_input(params, prep);

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
    let (totals, d_logits) = loss(cfg, prep, &logits, rows);
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

/// The model's input [T, B, I]: embedding rows of the tokens, or the features.
fn model_input<R: Real>(params: &ModelParams<R>, prep: &Prepared) -> Vec<R> {
    match params.config.input {
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
    }
}

/// The loss totals (sum, correct, counted, 1) of `logits` [rows, C] and their gradient,
/// each target's share divided by the batch's count.
fn loss<R: Real>(
    cfg: &ModelConfig,
    prep: &Prepared,
    logits: &[R],
    rows: usize,
) -> (Totals, Vec<R>) {
    let c = cfg.outputs;
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
    (totals, d_logits)
}
