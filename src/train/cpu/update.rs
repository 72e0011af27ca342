//! The CPU reference's update: clipping, one optimiser step and the max-norm constraint,
//! in f32 and in the order the GPU kernels apply them.

use crate::model::{ModelParams, ParamRole};
use crate::train::options::{Optimizer, OptimizerState, TrainOptions};

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
