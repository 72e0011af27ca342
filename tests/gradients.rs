//! The training math pinned directly, not through an optimiser: the gradients of every
//! model tensor from the GPU trainer and the CPU trainer against the f64 reference pass
//! (every loss, head, dropout site, bidirectional and stacked case, lengths, ignored
//! targets), the gradient norm, dropout's rate and scale on both paths, and the state a
//! stateful model carries into its next batch.

mod common;

use common::{assert_close, data, gpu, gpu_portable, Data};
use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{model_pass, CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::GruVariant;

/// The reference gradients (f64) of the mean loss at `params`, with the dropout masks
/// of update `step` and initial state `h0`; also the mean loss and the final state.
fn reference(
    params: &ModelParams,
    opts: &TrainOptions,
    step: u64,
    batch: &Batch,
    h0: Option<&[f32]>,
) -> (ModelParams<f64>, f64, Vec<f64>) {
    let h0: Option<Vec<f64>> = h0.map(|h| h.iter().map(|&v| v as f64).collect());
    let out = model_pass(
        &params.cast::<f64>(),
        batch,
        Some(opts.step_seed(step)),
        h0.as_deref(),
        true,
    )
    .unwrap();
    (out.grads.unwrap(), out.totals[0] / out.totals[2], out.h_n)
}

/// Every tensor of `got` against the reference: |diff| <= 1e-4·max|want| + 1e-6 + 1e-3·|want|.
#[track_caller]
fn same_grads(got: &ModelParams, want: &ModelParams<f64>, case: &str) {
    for ((info, g), w) in got.infos().iter().zip(got.tensors()).zip(want.tensors()) {
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("d {}", info.name),
            g,
            w,
            1e-4 * scale + 1e-6,
            1e-3,
            case,
        );
    }
}

fn norm(g: &ModelParams<f64>) -> f64 {
    g.tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

/// Both trainers' gradients at two successive steps (so the second step's dropout
/// masks and updated weights are checked too), the loss they count, and the GPU's
/// global gradient norm after the update.
fn check(name: &str, cfg: ModelConfig, b: usize, t: usize, lengths: bool) {
    let params = ModelParams::init(cfg, 11).unwrap();
    let opts = TrainOptions::sgd(0.05, 0.0).seed(9);
    let mut trainers: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(params.clone(), opts).unwrap())];
    let ctx = gpu();
    if let Some(ctx) = &ctx {
        trainers.push(Box::new(
            GpuTrainer::new(ctx.clone(), &params, opts).unwrap(),
        ));
        // The same batch in chunks of rows, as a batch too large for one workspace runs.
        let mut chunked = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
        chunked.set_batch_chunk(Some(if b > 2 { 2 } else { 1 }));
        trainers.push(Box::new(chunked));
    }
    // What a GPU runs, where the adapter has builds of its own.
    if let Some(portable) = gpu_portable() {
        trainers.push(Box::new(GpuTrainer::new(portable, &params, opts).unwrap()));
    }
    for (k, tr) in trainers.iter_mut().enumerate() {
        let mut rng = Rng::new(5);
        for step in 1..=2u64 {
            let d: Data = data(&cfg, b, t, lengths, &mut rng);
            let case = format!("{name}, {} #{k}, step {step}", tr.device_name());
            let now = tr.params().unwrap();
            let (want, loss, _) = reference(&now, &opts, step, &d.batch(), None);
            let got = tr.gradients(&d.batch()).unwrap();
            same_grads(&got, &want, &case);
            let m = tr.take_metrics(Split::Train).unwrap();
            assert_close("loss", &[m.loss as f32], &[loss], 1e-5, 1e-4, &case);
            assert_eq!(m.batches, 1, "{case}: batches counted");
            // The step applies exactly these gradients: SGD moves w by -lr·g.
            tr.train_step(&d.batch()).unwrap();
            tr.take_metrics(Split::Train).unwrap();
            let after = tr.params().unwrap();
            for (((info, a), w0), g) in after
                .infos()
                .iter()
                .zip(after.tensors())
                .zip(now.tensors())
                .zip(want.tensors())
            {
                let expect: Vec<f64> = w0
                    .iter()
                    .zip(g)
                    .map(|(&w, &g)| w as f64 - 0.05 * g)
                    .collect();
                assert_close(&info.name, a, &expect, 1e-6, 1e-5, &case);
            }
        }
    }
    if let Some(ctx) = ctx {
        let d = data(&cfg, b, t, lengths, &mut Rng::new(5));
        let (want, _, _) = reference(&params, &opts, 1, &d.batch(), None);
        let mut outputs = Vec::new();
        for chunk in [None, Some(1)] {
            let mut g = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
            g.set_batch_chunk(chunk);
            g.train_step(&d.batch()).unwrap();
            let n = g.last_grad_norm().unwrap();
            let case = format!("{name}, chunks of {chunk:?}");
            assert_close("gradient norm", &[n], &[norm(&want)], 1e-6, 1e-4, &case);
            outputs.push(g.predict(&d.batch()).unwrap());
        }
        let one: Vec<f64> = outputs[0].iter().map(|&v| v as f64).collect();
        assert_close("chunked predict", &outputs[1], &one, 1e-6, 1e-5, name);
    }
}

#[test]
fn language_model_stacked_dropout_ignored_targets() {
    let cfg = ModelConfig::language_model(7, 5, 9).layers(2).dropout(0.3);
    check("lm", cfg, 3, 6, false);
}

#[test]
fn language_model_three_layers_reset_before_awkward_sizes() {
    // H = 65 and vocab 67: not multiples of the workgroup width.
    let cfg = ModelConfig::language_model(67, 3, 65)
        .layers(3)
        .variant(GruVariant::ResetBefore);
    check("lm reset-before", cfg, 5, 4, false);
}

#[test]
fn classifier_bidirectional_lengths_cross_entropy() {
    let cfg = ModelConfig::classifier(ModelInput::Features(3), 7, 3).bidirectional(true);
    check("classifier", cfg, 5, 4, true);
}

#[test]
fn binary_classifier_tokens_stacked_bidirectional_dropout_lengths() {
    let tokens = ModelInput::Tokens {
        vocab: 11,
        embed_dim: 3,
    };
    let cfg = ModelConfig::classifier(tokens, 5, 1)
        .layers(2)
        .bidirectional(true)
        .dropout(0.3);
    check("binary", cfg, 4, 5, true);
}

#[test]
fn binary_classifier_features_single_layer() {
    let cfg = ModelConfig::classifier(ModelInput::Features(2), 6, 1);
    check("binary features", cfg, 7, 3, false);
}

#[test]
fn forecaster_mean_squared_error_hidden_one_and_sixty_seven() {
    for h in [1, 67] {
        let cfg = ModelConfig::forecaster(2, h, 2);
        check(&format!("forecaster H={h}"), cfg, 3, 7, true);
    }
    let cfg = ModelConfig::forecaster(3, 4, 1).layers(2).dropout(0.5);
    check("forecaster dropout", cfg, 2, 5, false);
}

/// A forecaster whose GRU outputs exactly 1 everywhere (update gate shut, candidate
/// saturated), a zero head, and identity targets: the gradient of head weight [c][j] is
/// then -2/count times the dropped-out head input [c][j], one element per entry.
fn dropout_probe(p: f32, rows: usize) -> (ModelParams, Vec<f32>, Vec<f32>) {
    let h = rows;
    let cfg = ModelConfig::forecaster(1, h, rows).dropout(p);
    let mut params = ModelParams::zeros(cfg);
    let mut b_ih = vec![0.0f32; 3 * h];
    // PyTorch gate order (r, z, n): z = sigmoid(-100) = 0, n = tanh(100) = 1, so h = 1.
    b_ih[h..2 * h].fill(-100.0);
    b_ih[2 * h..].fill(100.0);
    params.set("gru.bias_ih_l0", &b_ih).unwrap();
    let x = vec![0.5f32; rows];
    let mut y = vec![0.0f32; rows * rows];
    for r in 0..rows {
        y[r * rows + r] = 1.0;
    }
    (params, x, y)
}

/// The head input after dropout divided by the input without it, from the gradients.
fn kept_ratios(tr: &mut dyn Trainer, x: &[f32], y: &[f32], rows: usize) -> Vec<f32> {
    let batch = Batch::features(x, rows, 1).values(y);
    let g = tr.gradients(&batch).unwrap();
    tr.take_metrics(Split::Train).unwrap();
    // Without dropout every entry is -2/count.
    let count = (rows * rows) as f32;
    g.get("fc.weight")
        .unwrap()
        .iter()
        .map(|v| v / (-2.0 / count))
        .collect()
}

#[test]
fn dropout_keeps_one_minus_p_and_scales_by_its_inverse() {
    let rows = 64;
    for p in [0.2f32, 0.5] {
        let (params, x, y) = dropout_probe(p, rows);
        let opts = TrainOptions::sgd(0.1, 0.0).seed(21);
        let mut trainers: Vec<Box<dyn Trainer>> =
            vec![Box::new(CpuTrainer::new(params.clone(), opts).unwrap())];
        if let Some(ctx) = gpu() {
            trainers.push(Box::new(GpuTrainer::new(ctx, &params, opts).unwrap()));
        }
        let mut masks = Vec::new();
        for tr in &mut trainers {
            let case = format!("p = {p}, {}", tr.device_name());
            let r = kept_ratios(tr.as_mut(), &x, &y, rows);
            let scale = 1.0 / (1.0 - p);
            for (i, v) in r.iter().enumerate() {
                assert!(
                    v.abs() < 1e-4 || (v - scale).abs() < 1e-4 * scale,
                    "{case}: entry {i} is {v}, neither dropped (0) nor kept and scaled ({scale})"
                );
            }
            let n = r.len() as f64;
            let kept = r.iter().filter(|v| v.abs() > 1e-4).count() as f64 / n;
            let se = (p as f64 * (1.0 - p as f64) / n).sqrt();
            assert!(
                (kept - (1.0 - p as f64)).abs() < 4.0 * se,
                "{case}: kept fraction {kept}, expected {} ± {:.4}",
                1.0 - p,
                4.0 * se
            );
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
            assert!(
                (mean - 1.0).abs() < 4.0 * se * scale as f64,
                "{case}: mean {mean} of the kept-and-scaled input, expected 1"
            );
            masks.push(r);
        }
        // Both paths draw the same masks.
        if masks.len() == 2 {
            assert_eq!(masks[0], masks[1], "p = {p}: CPU and GPU masks differ");
        }
    }
    // The mask changes from one update to the next.
    let (params, x, y) = dropout_probe(0.5, rows);
    let mut tr = CpuTrainer::new(params, TrainOptions::sgd(1e-9, 0.0)).unwrap();
    let first = kept_ratios(&mut tr, &x, &y, rows);
    tr.train_step(&Batch::features(&x, rows, 1).values(&y))
        .unwrap();
    let second = kept_ratios(&mut tr, &x, &y, rows);
    let changed = first
        .iter()
        .zip(&second)
        .filter(|(a, b)| (a.abs() > 1e-4) != (b.abs() > 1e-4))
        .count();
    assert!(
        changed > first.len() / 4,
        "only {changed} of {} mask entries changed between updates",
        first.len()
    );
}

#[test]
fn a_stateful_model_starts_each_batch_from_the_last_final_state() {
    let cfg = ModelConfig::language_model(6, 3, 5).layers(2);
    let params = ModelParams::init(cfg, 3).unwrap();
    let opts = TrainOptions::sgd(0.1, 0.0).stateful(true);
    let mut trainers: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(params.clone(), opts).unwrap())];
    if let Some(ctx) = gpu() {
        trainers.push(Box::new(
            GpuTrainer::new(ctx.clone(), &params, opts).unwrap(),
        ));
        let mut chunked = GpuTrainer::new(ctx, &params, opts).unwrap();
        chunked.set_batch_chunk(Some(2));
        trainers.push(Box::new(chunked));
    }
    let (b, t) = (3, 4);
    for tr in &mut trainers {
        let case = tr.device_name();
        let mut rng = Rng::new(8);
        let mut h0: Option<Vec<f32>> = None;
        for step in 1..=3u64 {
            let d = data(&cfg, b, t, false, &mut rng);
            let now = tr.params().unwrap();
            let (want, _, h_n) = reference(&now, &opts, step, &d.batch(), h0.as_deref());
            let got = tr.gradients(&d.batch()).unwrap();
            same_grads(&got, &want, &format!("{case}, step {step}"));
            if let Some(h) = &h0 {
                // The carry matters: from zeros the gradients are different.
                let (cold, _, _) = reference(&now, &opts, step, &d.batch(), None);
                let diff = cold
                    .tensors()
                    .iter()
                    .zip(want.tensors())
                    .flat_map(|(a, b)| a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()))
                    .fold(0.0, f64::max);
                assert!(
                    diff > 1e-3,
                    "{case}: the carried state {h:?} made no difference"
                );
            }
            // Asking for gradients does not advance the carry; the step does.
            tr.train_step(&d.batch()).unwrap();
            tr.take_metrics(Split::Train).unwrap();
            let carried = tr.carried_state().unwrap().expect("a carried state");
            assert_close(
                "carried state",
                &carried,
                &h_n,
                1e-5,
                1e-4,
                &format!("{case}, after step {step}"),
            );
            h0 = Some(carried);
        }
        // Dropping the carry starts the next batch from zeros again.
        tr.set_carried_state(None).unwrap();
        let d = data(&cfg, b, t, false, &mut rng);
        let now = tr.params().unwrap();
        let (want, _, _) = reference(&now, &opts, 4, &d.batch(), None);
        same_grads(
            &tr.gradients(&d.batch()).unwrap(),
            &want,
            &format!("{case}, after reset"),
        );
    }
}
