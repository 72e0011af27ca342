//! Golden tests: outputs and every gradient computed by PyTorch and Keras themselves
//! (scripts/make_fixtures.py, versions in its header and in each file's metadata), against
//! the engine's GPU path and CPU reference. Also a 20-step PyTorch training run.
//!
//! Tolerance: |engine - framework| <= 1e-4 + 1e-4·|framework| per value (f32 against f32
//! computed in a different order).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, gpu, to_f64};
use gru_engine::interop::{from_keras, from_pytorch, read_tensors, to_keras, Tensors};
use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams};
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::{cpu, GpuGru, GruGrads, GruVariant, GruWeights, SequenceInput};

fn fixture(name: &str) -> (PathBuf, Tensors) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    let t = read_tensors(&p, true).unwrap();
    (p, t)
}

fn get<'a>(t: &'a Tensors, name: &str) -> &'a [f32] {
    &t.get(name)
        .unwrap_or_else(|| panic!("fixture lacks `{name}`"))
        .data
}

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32], case: &str) {
    assert_close(what, got, &to_f64(want), 1e-4, 1e-4, case);
}

/// Forward and backward on both devices for one fixture; `keras`: names and layout.
fn check(name: &str, keras: bool) {
    let (path, t) = fixture(name);
    let weights: GruWeights = if keras {
        let w: Tensors = t
            .iter()
            .filter(|(k, _)| k.starts_with("layer"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        from_keras(&w, &path).unwrap()
    } else {
        let w: Tensors = t
            .iter()
            .filter(|(k, _)| k.starts_with("weight_") || k.starts_with("bias_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        from_pytorch(&w, &path).unwrap()
    };
    let cfg = weights.config;
    let shape = &t["input"].shape;
    let (t_len, b) = if keras {
        (shape[1], shape[0])
    } else {
        (shape[0], shape[1])
    };
    let lengths: Option<Vec<usize>> = t
        .get("lengths")
        .map(|l| l.data.iter().map(|&v| v as usize).collect());
    let x = get(&t, "input");
    let mut input = SequenceInput::new(x, t_len, b).batch_first(keras);
    if let Some(h0) = t.get("h0") {
        input = input.h0(&h0.data);
    }
    if let Some(l) = &lengths {
        input = input.lengths(l);
    }
    let (r1, r2) = (get(&t, "r_output"), get(&t, "r_h_n"));
    let mut runs: Vec<(&str, Vec<f32>, Vec<f32>, GruGrads)> = Vec::new();
    let f = cpu::forward(&weights, &input).unwrap();
    let g = cpu::backward(&weights, &f, r1, Some(r2)).unwrap();
    runs.push(("cpu", f.output, f.h_n, g));
    if let Some(ctx) = gpu() {
        let mut gru = GpuGru::new(ctx, &weights).unwrap();
        gru.forward(&input).unwrap();
        let (out, hn) = (gru.read_output().unwrap(), gru.read_h_n().unwrap());
        runs.push(("gpu", out, hn, gru.backward(r1, Some(r2)).unwrap()));
    }
    for (dev, out, hn, g) in runs {
        let case = format!("{name} on {dev}");
        close("output", &out, get(&t, "output"), &case);
        close("h_n", &hn, get(&t, "h_n"), &case);
        close("d input", &g.d_input, get(&t, "grad.input"), &case);
        if t.contains_key("grad.h0") {
            close("d h0", &g.d_h0, get(&t, "grad.h0"), &case);
        }
        let named: Tensors = if keras {
            let mut d = g.d_weights.clone();
            if cfg.variant == GruVariant::ResetBefore {
                // Keras has one bias where the engine has two with equal gradients.
                d.dirs
                    .iter_mut()
                    .for_each(|x| x.b_hh.iter_mut().for_each(|v| *v = 0.0));
            }
            to_keras(&d)
        } else {
            g.d_weights
                .tensor_ids()
                .into_iter()
                .map(|id| {
                    (
                        id.name(),
                        gru_engine::interop::Tensor {
                            shape: vec![],
                            data: g.d_weights.tensor(id).to_vec(),
                        },
                    )
                })
                .collect()
        };
        let mut n = 0;
        for (k, v) in &named {
            close(
                &format!("d {k}"),
                &v.data,
                get(&t, &format!("grad.{k}")),
                &case,
            );
            n += 1;
        }
        assert_eq!(
            n,
            t.keys()
                .filter(|k| k.starts_with("grad.") && *k != "grad.input" && *k != "grad.h0")
                .count(),
            "{case}: every weight gradient compared"
        );
    }
}

#[test]
fn pytorch_single_step_single_row() {
    check("torch_t1_b1", false);
}

#[test]
fn pytorch_two_layers_packed_lengths() {
    check("torch_2layer_lengths", false);
}

#[test]
fn pytorch_three_bidirectional_layers_packed_h67() {
    check("torch_3layer_bidir_lengths", false);
}

#[test]
fn keras_reset_after_single_step() {
    check("keras_reset_after_t1_b1", true);
}

#[test]
fn keras_reset_after_two_layers() {
    check("keras_reset_after_2layer", true);
}

#[test]
fn keras_reset_before() {
    check("keras_reset_before", true);
}

#[test]
fn keras_reset_before_bidirectional() {
    check("keras_reset_before_bidir", true);
}

/// PyTorch: Embedding -> GRU -> Linear, cross-entropy, Adam, clip_grad_norm_, 20 steps.
#[test]
fn training_matches_pytorch_for_twenty_steps() {
    let (_, t) = fixture("torch_training_adam_clip");
    let (v, e, h, b, tl, steps) = (11, 6, 13, 4, 9, 20);
    let mut init = ModelParams::zeros(ModelConfig::language_model(v, e, h));
    let mut want = init.clone();
    for info in init.infos() {
        init.set(&info.name, get(&t, &format!("init.{}", info.name)))
            .unwrap();
        want.set(&info.name, get(&t, &format!("final.{}", info.name)))
            .unwrap();
    }
    let tokens: Vec<u32> = get(&t, "tokens").iter().map(|&x| x as u32).collect();
    let losses = get(&t, "losses");
    let opts = TrainOptions::adam(1e-2).clip_norm(0.5);
    let mut trainers: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(init.clone(), opts).unwrap())];
    if let Some(ctx) = gpu() {
        trainers.push(Box::new(GpuTrainer::new(ctx, &init, opts).unwrap()));
    }
    for tr in &mut trainers {
        let case = tr.device_name();
        for s in 0..steps {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for r in 0..b {
                let row = &tokens[(s * b + r) * (tl + 1)..(s * b + r + 1) * (tl + 1)];
                x.extend_from_slice(&row[..tl]);
                y.extend_from_slice(&row[1..]);
            }
            tr.train_step(&Batch::tokens(&x, b, tl).classes(&y))
                .unwrap();
            let m = tr.take_metrics(gru_engine::train::Split::Train).unwrap();
            close(
                "loss",
                &[m.loss as f32],
                &losses[s..s + 1],
                &format!("{case}, step {s}"),
            );
        }
        let got = tr.params().unwrap();
        for ((info, g), w) in got.infos().iter().zip(got.tensors()).zip(want.tensors()) {
            assert_close(
                &info.name,
                g,
                &to_f64(w),
                2e-4,
                1e-3,
                &format!("{case}, after {steps} steps"),
            );
        }
    }
}

/// Three steps of one optimiser or loss as PyTorch ran them (Keras' own `MaxNorm` for the
/// constraint): at every step the gradients before the update, the loss, and every
/// parameter after it, on both trainers. Tolerances: gradients 1e-6 + 1e-4·|g| (+1e-4 of
/// the tensor's largest entry), parameters 1e-5 + 1e-4·|w|.
fn optim(name: &str, cfg: ModelConfig, opts: TrainOptions) {
    let (_, t) = fixture(name);
    let steps = get(&t, "losses").len();
    let mut init = ModelParams::zeros(cfg);
    for info in init.infos() {
        init.set(&info.name, get(&t, &format!("init.{}", info.name)))
            .unwrap();
    }
    let inputs = &t["inputs"];
    let (b, tl) = (inputs.shape[1], inputs.shape[2]);
    let per_step = inputs.data.len() / steps;
    let mut trainers: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(init.clone(), opts).unwrap())];
    if let Some(ctx) = gpu() {
        trainers.push(Box::new(GpuTrainer::new(ctx, &init, opts).unwrap()));
    }
    for tr in &mut trainers {
        for s in 0..steps {
            let case = format!("{name}, {}, step {s}", tr.device_name());
            let step_in = &inputs.data[s * per_step..(s + 1) * per_step];
            let (tokens, classes): (Vec<u32>, Vec<u32>) = if inputs.shape.len() == 3 {
                // [steps, B, T + 1] token ids: inputs and next-token targets.
                let rows: Vec<&[f32]> = step_in.chunks(tl).collect();
                (
                    rows.iter()
                        .flat_map(|r| r[..tl - 1].iter().map(|&v| v as u32))
                        .collect(),
                    rows.iter()
                        .flat_map(|r| r[1..].iter().map(|&v| v as u32))
                        .collect(),
                )
            } else {
                (vec![], vec![])
            };
            let targets = t.get("targets").map(|y| {
                let n = y.data.len() / steps;
                &y.data[s * n..(s + 1) * n]
            });
            let batch = match targets {
                None => Batch::tokens(&tokens, b, tl - 1).classes(&classes),
                Some(y) => Batch::features(step_in, b, tl).values(y),
            };
            let g = tr.gradients(&batch).unwrap();
            let loss = tr.take_metrics(Split::Train).unwrap().loss;
            close("loss", &[loss as f32], &get(&t, "losses")[s..s + 1], &case);
            for (info, got) in g.infos().iter().zip(g.tensors()) {
                let want = get(&t, &format!("grad.{s}.{}", info.name));
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                assert_close(
                    &format!("d {}", info.name),
                    got,
                    &to_f64(want),
                    1e-6 + 1e-4 * scale,
                    1e-4,
                    &case,
                );
            }
            tr.train_step(&batch).unwrap();
            tr.take_metrics(Split::Train).unwrap();
            let p = tr.params().unwrap();
            for (info, got) in p.infos().iter().zip(p.tensors()) {
                let want = get(&t, &format!("param.{s}.{}", info.name));
                assert_close(&info.name, got, &to_f64(want), 1e-5, 1e-4, &case);
            }
        }
    }
}

fn tiny_lm() -> ModelConfig {
    ModelConfig::language_model(7, 4, 5)
}

#[test]
fn sgd_with_momentum_and_l2_matches_pytorch() {
    optim(
        "torch_sgd_momentum_l2",
        tiny_lm(),
        TrainOptions::sgd(0.5, 0.9).weight_decay(0.05),
    );
}

#[test]
fn adam_with_l2_matches_pytorch() {
    optim(
        "torch_adam_l2",
        tiny_lm(),
        TrainOptions::adam(0.05).weight_decay(0.1),
    );
}

#[test]
fn adamw_decoupled_decay_matches_pytorch() {
    optim(
        "torch_adamw",
        tiny_lm(),
        TrainOptions::adamw(0.05).weight_decay(0.5),
    );
}

#[test]
fn clip_value_matches_pytorch_clip_grad_value() {
    optim(
        "torch_clip_value",
        tiny_lm(),
        TrainOptions::sgd(1.0, 0.0).clip_value(0.02),
    );
}

#[test]
fn binary_cross_entropy_matches_pytorch_bce_with_logits() {
    optim(
        "torch_bce",
        ModelConfig::classifier(ModelInput::Features(3), 6, 1),
        TrainOptions::sgd(0.5, 0.5),
    );
}

#[test]
fn mean_squared_error_matches_pytorch() {
    optim(
        "torch_mse",
        ModelConfig::forecaster(3, 6, 2),
        TrainOptions::adam(0.05),
    );
}

#[test]
fn max_norm_matches_keras_max_norm() {
    optim(
        "keras_max_norm",
        tiny_lm(),
        TrainOptions::sgd(1.0, 0.0).max_norm(0.3),
    );
}
