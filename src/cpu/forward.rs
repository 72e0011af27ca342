//! Reference forward pass.

use super::math::{matvec_acc, sigmoid};
use crate::config::GruVariant;
use crate::error::Result;
use crate::real::Real;
use crate::sequence::{swap_leading_axes, validate_cell, SequenceInput};
use crate::weights::GruWeights;

/// What one layer and direction saved for backward, indexed by step s
/// (s = t forward, s = T-1-t reverse).
#[derive(Debug, Clone)]
pub(crate) struct DirCache<R> {
    /// [T+1, B, H]: hs[s] is the state before step s; hs[T] is h_n.
    pub hs: Vec<R>,
    /// [T, B, H] each.
    pub r: Vec<R>,
    pub z: Vec<R>,
    pub n: Vec<R>,
    /// Reset-after: W_hn h + b_hn. Reset-before: r * h. [T, B, H].
    pub extra: Vec<R>,
}

/// Result of [`forward`]: the output, the final state, and what backward needs.
#[derive(Debug, Clone)]
pub struct CpuForward<R = f32> {
    /// [T, B, dirs·H] (or [B, T, dirs·H] for batch-first input).
    pub output: Vec<R>,
    /// [layers·dirs, B, H].
    pub h_n: Vec<R>,
    pub(crate) seq_len: usize,
    pub(crate) batch: usize,
    pub(crate) batch_first: bool,
    pub(crate) lengths: Vec<usize>,
    /// Input of each layer, time-major [T, B, I_k].
    pub(crate) layer_inputs: Vec<Vec<R>>,
    pub(crate) caches: Vec<DirCache<R>>,
}

/// Runs the whole stack over a batch of sequences.
///
/// ```
/// use gru_engine::{cpu, GruConfig, GruWeights, SequenceInput};
/// let w = GruWeights::init(GruConfig::new(2, 3), 0);
/// let x = vec![0.1f32; 4 * 1 * 2];
/// let out = cpu::forward(&w, &SequenceInput::new(&x, 4, 1)).unwrap();
/// assert_eq!(out.output.len(), 4 * 3);
/// ```
pub fn forward<R: Real>(w: &GruWeights<R>, input: &SequenceInput<R>) -> Result<CpuForward<R>> {
    run(w, input, &|x| x)
}

/// [`forward`] as a device with f16 storage runs it ([`crate::Precision::F16`]): the
/// weights, the input and h0 rounded to f16, and every value the device stores rounded
/// where it stores it (gx after its sum and bias; each new state; the saved gate values,
/// of which reset-before reads z and r*h back), every sum and gate in f32 between.
///
/// ```
/// use gru_engine::{cpu, GruConfig, GruWeights, SequenceInput};
/// let w = GruWeights::init(GruConfig::new(2, 3), 0);
/// let x = vec![0.1f32; 4 * 1 * 2];
/// let half = cpu::forward_f16(&w, &SequenceInput::new(&x, 4, 1)).unwrap();
/// let full = cpu::forward(&w, &SequenceInput::new(&x, 4, 1)).unwrap();
/// assert!(half.output.iter().zip(&full.output).all(|(a, b)| (a - b).abs() < 1e-2));
/// ```
pub fn forward_f16(w: &GruWeights, input: &SequenceInput) -> Result<CpuForward> {
    let q = crate::precision::round_all_f16;
    let w16 = w.rounded_to_f16();
    let x = q(input.data);
    let h0 = input.h0.map(q);
    let mut rounded = SequenceInput { data: &x, ..*input };
    rounded.h0 = h0.as_deref();
    run(&w16, &rounded, &crate::precision::round_f16)
}

/// The forward pass with `store` applied to every value where a device stores it.
fn run<R: Real>(
    w: &GruWeights<R>,
    input: &SequenceInput<R>,
    store: &dyn Fn(R) -> R,
) -> Result<CpuForward<R>> {
    input.validate(&w.config)?;
    let cfg = w.config;
    let (t_len, b_len, h) = (input.seq_len, input.batch, cfg.hidden_size);
    let nd = cfg.num_directions();
    let lengths: Vec<usize> = (0..b_len).map(|b| input.length_of(b)).collect();
    let mut x = if input.batch_first {
        swap_leading_axes(input.data, b_len, t_len, cfg.input_size)
    } else {
        input.data.to_vec()
    };
    let mut h_n = vec![R::default(); cfg.num_layers * nd * b_len * h];
    let mut layer_inputs = Vec::new();
    let mut caches = Vec::new();
    for layer in 0..cfg.num_layers {
        let i_len = cfg.layer_input_size(layer);
        let mut out = vec![R::default(); t_len * b_len * nd * h];
        for d in 0..nd {
            let idx = layer * nd + d;
            let p = &w.dirs[idx];
            let bh = b_len * h;
            let mut c = DirCache {
                hs: vec![R::default(); (t_len + 1) * bh],
                r: vec![R::default(); t_len * bh],
                z: vec![R::default(); t_len * bh],
                n: vec![R::default(); t_len * bh],
                extra: vec![R::default(); t_len * bh],
            };
            if let Some(h0) = input.h0 {
                c.hs[..bh].copy_from_slice(&h0[idx * bh..(idx + 1) * bh]);
            }
            for s in 0..t_len {
                let t = if d == 0 { s } else { t_len - 1 - s };
                for b in 0..b_len {
                    let row = s * bh + b * h;
                    let h_prev = c.hs[row..row + h].to_vec();
                    if t >= lengths[b] {
                        // Past the row's length: state frozen, output zero, nothing saved.
                        c.hs[row + bh..row + bh + h].copy_from_slice(&h_prev);
                        continue;
                    }
                    let x_t = &x[(t * b_len + b) * i_len..(t * b_len + b + 1) * i_len];
                    let mut gx = p.b_ih.clone();
                    matvec_acc(&p.w_ih, x_t, &mut gx);
                    gx.iter_mut().for_each(|v| *v = store(*v));
                    let mut gh = p.b_hh.clone();
                    // r and z rows of W_hh always see h; the n rows depend on the variant.
                    matvec_acc(&p.w_hh[..2 * h * h], &h_prev, &mut gh[..2 * h]);
                    let r: Vec<R> = (0..h).map(|j| sigmoid(gx[j] + gh[j])).collect();
                    let mut z: Vec<R> = (0..h).map(|j| sigmoid(gx[h + j] + gh[h + j])).collect();
                    let extra: Vec<R> = match cfg.variant {
                        GruVariant::ResetAfter => {
                            matvec_acc(&p.w_hh[2 * h * h..], &h_prev, &mut gh[2 * h..]);
                            gh[2 * h..].to_vec()
                        }
                        GruVariant::ResetBefore => {
                            // The device's second phase reads z and r*h back as stored.
                            z.iter_mut().for_each(|v| *v = store(*v));
                            let rh: Vec<R> = (0..h).map(|j| store(r[j] * h_prev[j])).collect();
                            matvec_acc(&p.w_hh[2 * h * h..], &rh, &mut gh[2 * h..]);
                            rh
                        }
                    };
                    let one = R::from_f64(1.0);
                    for j in 0..h {
                        let pre = match cfg.variant {
                            GruVariant::ResetAfter => gx[2 * h + j] + r[j] * gh[2 * h + j],
                            GruVariant::ResetBefore => gx[2 * h + j] + gh[2 * h + j],
                        };
                        let n = pre.tanh();
                        let h_new = store((one - z[j]) * n + z[j] * h_prev[j]);
                        let k = s * bh + b * h + j;
                        c.r[k] = store(r[j]);
                        c.z[k] = store(z[j]);
                        c.n[k] = store(n);
                        c.extra[k] = store(extra[j]);
                        c.hs[k + bh] = h_new;
                        out[(t * b_len + b) * nd * h + d * h + j] = h_new;
                    }
                }
            }
            h_n[idx * bh..(idx + 1) * bh].copy_from_slice(&c.hs[t_len * bh..]);
            caches.push(c);
        }
        layer_inputs.push(std::mem::replace(&mut x, out));
    }
    let output = if input.batch_first {
        swap_leading_axes(&x, t_len, b_len, nd * h)
    } else {
        x
    };
    Ok(CpuForward {
        output,
        h_n,
        seq_len: t_len,
        batch: b_len,
        batch_first: input.batch_first,
        lengths,
        layer_inputs,
        caches,
    })
}

/// One timestep through every layer (a stacked `GRUCell`): `x` [B, I], `h` [layers, B, H]
/// in, the new state [layers, B, H] out. The last layer's slice is the output.
pub fn cell_step<R: Real>(w: &GruWeights<R>, x: &[R], h: &[R], batch: usize) -> Result<Vec<R>> {
    validate_cell(&w.config, x, h, batch)?;
    let input = SequenceInput::new(x, 1, batch).h0(h);
    Ok(forward(w, &input)?.h_n)
}
