//! f16 storage (`Precision::F16`, `Precision::Mixed`) against the CPU reference that
//! rounds where the device stores (`cpu::forward_f16`, and `cpu::backward` on its
//! result), over awkward shapes, both variants, 1-3 layers, both directions, lengths,
//! h0 and batch-first input, on every build the adapter can run (its own, the portable
//! ones, the GPU split builds in both tiles).
//!
//! Tolerances (largest distances measured on llvmpipe over these cases in brackets):
//! - against `cpu::forward_f16`: |gpu - ref| <= 1e-3 (3.2e-4). Both sum in f32 in
//!   different orders, so a stored value can round to the neighbouring f16 (one step is
//!   2^-11 ≈ 4.9e-4 at magnitudes in [0.5, 1)), and a flipped state carries on;
//! - against f32 (`cpu::forward` in f64): |f16 - f32| <= 4e-3 (7.2e-4), the distance f16
//!   storage itself puts between the two (README, "Half precision").
//!
//! Mixed precision (`Precision::Mixed`: the same f16 forward, f32 gradients) on the same
//! cases, every gradient scaled by max(1, max|reference|):
//! - against `cpu::backward` on the f16 forward's saved values with the f16-rounded
//!   weights (what the device's backward reads): <= 2e-3 (6.4e-4);
//! - against the f32 gradients: <= 4e-3 (2.0e-3).

mod common;

use common::*;
use gru_engine::precision::round_f16;
use gru_engine::rng::Rng;
use gru_engine::*;

const TO_ROUNDED_REFERENCE: f64 = 1e-3;
const TO_F32: f64 = 4e-3;
const GRAD_TO_ROUNDED_REFERENCE: f64 = 2e-3;
const GRAD_TO_F32: f64 = 4e-3;

#[derive(Debug, Clone, Copy)]
struct Case {
    variant: GruVariant,
    i: usize,
    h: usize,
    t: usize,
    b: usize,
    layers: usize,
    bidir: bool,
    lengths: bool,
    h0: bool,
    batch_first: bool,
}

/// The largest |a - b| seen, for the report.
fn worst(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// One case's weights and data: input, h0, lengths, and the gradients backward starts
/// from.
struct CaseData {
    w: GruWeights,
    x: Vec<f32>,
    h0: Vec<f32>,
    lengths: Vec<usize>,
    dy: Vec<f32>,
    dhn: Vec<f32>,
}

impl CaseData {
    fn new(c: &Case, seed: u64) -> Self {
        let cfg = GruConfig::new(c.i, c.h)
            .layers(c.layers)
            .bidirectional(c.bidir)
            .variant(c.variant);
        let mut rng = Rng::new(seed ^ 0x5EED);
        let ld = c.layers * cfg.num_directions();
        CaseData {
            w: GruWeights::init(cfg, seed),
            x: random(&mut rng, c.t * c.b * c.i, 1.0),
            h0: random(&mut rng, ld * c.b * c.h, 0.5),
            lengths: (0..c.b)
                .map(|r| if r == 0 { c.t } else { 1 + (r * 7 + 3) % c.t })
                .collect(),
            dy: random(&mut rng, c.t * c.b * cfg.output_size(), 1.0),
            dhn: random(&mut rng, ld * c.b * c.h, 1.0),
        }
    }

    /// The input as the case's flags say (h0, lengths, layout).
    fn input(&self, c: &Case) -> SequenceInput<'_> {
        let mut input = SequenceInput::new(&self.x[..], c.t, c.b).batch_first(c.batch_first);
        if c.h0 {
            input = input.h0(&self.h0);
        }
        if c.lengths {
            input = input.lengths(&self.lengths);
        }
        input
    }
}

/// Runs one case in f16 on the device and checks it against both references; returns
/// the largest distances (to the rounded reference, to f32).
fn run_case(ctx: &std::sync::Arc<GpuContext>, c: Case, seed: u64) -> (f64, f64) {
    let name = format!("{c:?} seed {seed}");
    let data = CaseData::new(&c, seed);
    let (w, input) = (&data.w, data.input(&c));
    let mut gpu = GpuGru::with_precision(ctx.clone(), w, Precision::F16).unwrap();
    assert_eq!(gpu.precision(), Precision::F16);
    gpu.forward(&input).unwrap();
    let out = gpu.read_output().unwrap();
    let h_n = gpu.read_h_n().unwrap();
    // What came back was stored as f16: every value is one.
    for (what, v) in [("output", &out), ("h_n", &h_n)] {
        if let Some(i) = v.iter().position(|&x| round_f16(x) != x) {
            panic!("{what}[{i}] = {} is no f16 value ({name})", v[i]);
        }
    }

    let half = cpu::forward_f16(w, &input).unwrap();
    near_rounded("output", &out, &half.output, &name);
    near_rounded("h_n", &h_n, &half.h_n, &name);

    let w64 = w.cast::<f64>();
    let (x64, h064) = (to_f64(&data.x), to_f64(&data.h0));
    let mut input64 = SequenceInput::new(&x64[..], c.t, c.b).batch_first(c.batch_first);
    if c.h0 {
        input64 = input64.h0(&h064);
    }
    if c.lengths {
        input64 = input64.lengths(&data.lengths);
    }
    let full = cpu::forward(&w64, &input64).unwrap();
    assert_close("output vs f32", &out, &full.output, TO_F32, 0.0, &name);
    assert_close("h_n vs f32", &h_n, &full.h_n, TO_F32, 0.0, &name);
    (
        worst(&out, &to_f64(&half.output)).max(worst(&h_n, &to_f64(&half.h_n))),
        worst(&out, &full.output).max(worst(&h_n, &full.h_n)),
    )
}

/// `got` within [`TO_ROUNDED_REFERENCE`] of the rounding reference's `want`.
#[track_caller]
fn near_rounded(what: &str, got: &[f32], want: &[f32], case: &str) {
    assert_close(what, got, &to_f64(want), TO_ROUNDED_REFERENCE, 0.0, case);
}

/// The worst |got - want| relative to the tensor's scale max(1, max|want|).
fn scaled_worst(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(1.0f64, |m, &v| m.max(v.abs() as f64));
    worst(got, &to_f64(want)) / scale
}

/// One case in mixed precision: the forward as in f16, then every gradient (f32)
/// against `cpu::backward` run on the f16 forward's saved values with the rounded
/// weights (what the device's backward reads); returns the largest scaled distances
/// (to that reference, to the f32 reference's gradients).
fn mixed_case(ctx: &std::sync::Arc<GpuContext>, c: Case, seed: u64) -> (f64, f64) {
    let name = format!("mixed {c:?} seed {seed}");
    let data = CaseData::new(&c, seed);
    let (w, input) = (&data.w, data.input(&c));
    let (dy, dhn) = (&data.dy, &data.dhn);
    let mut gpu = GpuGru::with_precision(ctx.clone(), w, Precision::Mixed).unwrap();
    gpu.forward(&input).unwrap();
    let out = gpu.read_output().unwrap();
    let grads = gpu.backward(dy, Some(dhn)).unwrap();

    let half = cpu::forward_f16(w, &input).unwrap();
    near_rounded("output", &out, &half.output, &name);
    let w16 = w.rounded_to_f16();
    let want = cpu::backward(&w16, &half, dy, Some(dhn)).unwrap();
    let full = cpu::forward(w, &input).unwrap();
    let want32 = cpu::backward(w, &full, dy, Some(dhn)).unwrap();
    // (what, device, rounding reference, f32 reference)
    type Pair<'a> = (String, &'a [f32], &'a [f32], &'a [f32]);
    let mut pairs: Vec<Pair> = vec![
        (
            "d_input".to_string(),
            &grads.d_input,
            &want.d_input,
            &want32.d_input,
        ),
        ("d_h0".to_string(), &grads.d_h0, &want.d_h0, &want32.d_h0),
    ];
    for id in want.d_weights.tensor_ids() {
        pairs.push((
            format!("d_{}", id.name()),
            grads.d_weights.get(&id.name()).unwrap(),
            want.d_weights.get(&id.name()).unwrap(),
            want32.d_weights.get(&id.name()).unwrap(),
        ));
    }
    let (mut to_ref, mut to_f32) = (0.0f64, 0.0f64);
    for (what, got, reference, f32_ref) in pairs {
        let scale = reference.iter().fold(1.0f64, |m, &v| m.max(v.abs() as f64));
        assert_close(
            &what,
            got,
            &to_f64(reference),
            GRAD_TO_ROUNDED_REFERENCE * scale,
            0.0,
            &name,
        );
        assert_close(
            &format!("{what} vs f32"),
            got,
            &to_f64(f32_ref),
            GRAD_TO_F32 * scale,
            0.0,
            &name,
        );
        to_ref = to_ref.max(scaled_worst(got, reference));
        to_f32 = to_f32.max(scaled_worst(got, f32_ref));
    }
    (to_ref, to_f32)
}

/// Sizes of 1, primes, past one workgroup of units (64) and batch tile (8 or 16), both
/// variants, with layers, directions, lengths, h0 and layout rotating.
fn matrix(ctx: &std::sync::Arc<GpuContext>, hs: &[usize], seed: u64) {
    if !ctx.supports_f16() {
        eprintln!("skipping: {} has no SHADER_F16", ctx.adapter_info().name);
        return;
    }
    let (mut to_ref, mut to_f32) = (0.0f64, 0.0f64);
    let (mut g_ref, mut g_f32) = (0.0f64, 0.0f64);
    let mut n = 0;
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        for &h in hs {
            for &(b, t) in &[(1, 7), (5, 33), (17, 2)] {
                let c = Case {
                    variant,
                    i: if h == 3 { 5 } else { h + 2 },
                    h,
                    t,
                    b,
                    layers: 1 + n % 3,
                    bidir: n % 2 == 1,
                    lengths: n % 4 != 0,
                    h0: n % 3 != 1,
                    batch_first: n % 7 == 3,
                };
                let (a, b) = run_case(ctx, c, seed + n as u64);
                (to_ref, to_f32) = (to_ref.max(a), to_f32.max(b));
                let (a, b) = mixed_case(ctx, c, seed + n as u64);
                (g_ref, g_f32) = (g_ref.max(a), g_f32.max(b));
                n += 1;
            }
        }
    }
    eprintln!(
        "{} f16 cases on {}: largest distance {to_ref:.2e} to the rounded reference, {to_f32:.2e} to f32; mixed gradients (scaled by max(1, max|ref|)) {g_ref:.2e} to the rounded reference, {g_f32:.2e} to f32",
        n,
        ctx.adapter_info().name
    );
}

fn context(request: gpu::DeviceRequest) -> Option<std::sync::Arc<GpuContext>> {
    match GpuContext::new(&request) {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => panic!("no adapter under CI: {e}"),
        Err(_) => None,
    }
}

/// The adapter's own builds (on llvmpipe: subgroup GEMMs and steps, whole chunks of
/// steps per dispatch; the f16 builds read weights from storage, not uniform windows).
#[test]
fn f16_forward_matches_the_rounded_reference() {
    let Some(ctx) = gpu() else { return };
    matrix(&ctx, &[1, 3, 17, 64, 130], 900);
}

/// The portable builds (what GPUs and browsers run): one dispatch per step past H 64.
#[test]
fn f16_portable_builds_match_the_rounded_reference() {
    let Some(ctx) = context(gpu::DeviceRequest {
        subgroup_kernels: false,
        sequence_kernels: false,
        ..Default::default()
    }) else {
        return;
    };
    matrix(&ctx, &[1, 17, 130], 1000);
}

/// The GPU split builds in both tiles (split-K GEMMs whose f32 slices a reduction
/// rounds once; the step's k loop over many threads).
#[test]
fn f16_split_builds_match_the_rounded_reference() {
    for wide in [false, true] {
        let Some(ctx) = context(gpu::DeviceRequest {
            subgroup_kernels: false,
            sequence_kernels: false,
            split_steps: Some(true),
            wide_steps: Some(wide),
            ..Default::default()
        }) else {
            return;
        };
        matrix(&ctx, &[3, 67, 130], 1100 + wide as u64);
    }
}

/// An f16 layer reads its weights back as their f16 rounding, refuses backward with a
/// message that says why, and takes half the parameter bytes of an f32 one.
#[test]
fn an_f16_layer_holds_rounded_weights_and_runs_no_backward() {
    // A context of its own: the others' tests allocate on the shared one meanwhile.
    let Some(ctx) = context(gpu::DeviceRequest::default()) else {
        return;
    };
    if !ctx.supports_f16() {
        return;
    }
    let cfg = GruConfig::new(7, 33).layers(2).bidirectional(true);
    let w = GruWeights::init(cfg, 4);
    let before = ctx.allocated_bytes();
    let mut g = GpuGru::with_precision(ctx.clone(), &w, Precision::F16).unwrap();
    let half_bytes = ctx.allocated_bytes() - before;
    let back = g.read_weights().unwrap();
    for id in w.tensor_ids() {
        let want: Vec<f32> = w.tensor(id).iter().map(|&x| round_f16(x)).collect();
        assert_eq!(back.tensor(id), &want[..], "{}", id.name());
    }
    let x = vec![0.25f32; 4 * 3 * 7];
    g.forward(&SequenceInput::new(&x, 4, 3)).unwrap();
    let e = g.backward(&vec![1.0; 4 * 3 * 66], None).unwrap_err();
    assert!(
        e.to_string().contains("f16") && e.to_string().contains("inference"),
        "{e}"
    );
    // A weight past f16's range is refused by name, not stored as infinity.
    let mut big = w.clone();
    let id = big.tensor_ids()[1];
    big.tensor_mut(id)[2] = -7e4;
    let e = g.set_weights(&big).unwrap_err().to_string();
    assert!(e.contains(&id.name()) && e.contains("-70000"), "{e}");
    let before = ctx.allocated_bytes();
    let _full = GpuGru::new(ctx.clone(), &w).unwrap();
    let full_bytes = ctx.allocated_bytes() - before;
    // f32: values and gradients; f16: values only, at half the bytes.
    assert!(
        half_bytes * 3 < full_bytes,
        "f16 layer {half_bytes} bytes, f32 {full_bytes}"
    );
}

/// The typed error of an adapter without SHADER_F16 names the feature and the way out.
#[test]
fn the_missing_feature_error_names_it() {
    let e = GruError::MissingFeature {
        adapter: "SwiftShader Device".into(),
        feature: "SHADER_F16",
        needed_by: "--precision f16".into(),
    };
    let s = e.to_string();
    assert!(
        s.contains("SHADER_F16") && s.contains("SwiftShader") && s.contains("--precision f32"),
        "{s}"
    );
    assert!("f64"
        .parse::<Precision>()
        .unwrap_err()
        .to_string()
        .contains("f32, f16"));
}

/// Mixed-precision training (`GpuTrainer::with_precision(.., Precision::Mixed)`) beside
/// the f32 trainer from the same start: `steps` steps of the same batch each; returns
/// the largest relative difference of the losses and of the parameters (scaled by each
/// tensor's max(1, max|f32|)).
fn mixed_vs_f32(
    ctx: &std::sync::Arc<GpuContext>,
    cfg: gru_engine::model::ModelConfig,
    (b, t, steps): (usize, usize, usize),
    seed: u64,
) -> (f64, f64) {
    use gru_engine::model::ModelParams;
    use gru_engine::train::{GpuTrainer, Split, TrainOptions, Trainer};
    let params = ModelParams::init(cfg, seed).unwrap();
    let mut rng = Rng::new(seed);
    let d = data(&cfg, b, t, true, &mut rng);
    let opts = TrainOptions::adam(1e-2).clip_norm(1.0);
    let mut full = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
    let mut mixed =
        GpuTrainer::with_precision(ctx.clone(), &params, opts, Precision::Mixed).unwrap();
    assert_eq!(mixed.precision(), Precision::Mixed);
    let mut worst_loss = 0.0f64;
    for step in 0..steps {
        full.train_step(&d.batch()).unwrap();
        mixed.train_step(&d.batch()).unwrap();
        let (a, m) = (
            full.take_metrics(Split::Train).unwrap().loss,
            mixed.take_metrics(Split::Train).unwrap().loss,
        );
        assert!(m.is_finite(), "mixed loss {m} at step {step} ({cfg:?})");
        worst_loss = worst_loss.max(((a - m) / a.abs().max(1e-3)).abs());
    }
    let (pa, pm) = (full.params().unwrap(), mixed.params().unwrap());
    let mut worst_param = 0.0f64;
    for (x, y) in pa.tensors().iter().zip(pm.tensors()) {
        worst_param = worst_param.max(scaled_worst(y, x));
    }
    // Mixed is not f32 under another name: its parameters differ.
    assert_ne!(pa.tensors(), pm.tensors(), "{cfg:?}");
    (worst_loss, worst_param)
}

/// Mixed precision trains like f32: a 2-layer language model with dropout (tokens,
/// every-step head, the embedding's f16 copy), a bidirectional classifier on features
/// with lengths (last-state head), both variants; 30 Adam steps each with clipping.
/// Losses within 2% of f32's at every step, parameters within 5e-2 of each tensor's
/// scale (measured in the message).
#[test]
fn mixed_precision_trains_like_f32() {
    use gru_engine::model::{ModelConfig, ModelInput};
    let Some(ctx) = gpu() else { return };
    if !ctx.supports_f16() {
        return;
    }
    let cases = [
        ModelConfig::language_model(23, 8, 24)
            .layers(2)
            .dropout(0.2),
        ModelConfig::classifier(ModelInput::Features(5), 17, 3)
            .bidirectional(true)
            .variant(GruVariant::ResetBefore),
    ];
    let (mut loss, mut param) = (0.0f64, 0.0f64);
    for (k, cfg) in cases.into_iter().enumerate() {
        let (l, p) = mixed_vs_f32(&ctx, cfg, (6, 11, 30), 40 + k as u64);
        assert!(l <= 2e-2, "{cfg:?}: losses {l:.2e} apart");
        assert!(p <= 5e-2, "{cfg:?}: parameters {p:.2e} apart");
        (loss, param) = (loss.max(l), param.max(p));
    }
    eprintln!("mixed vs f32 over 30 steps: losses {loss:.2e} apart (relative), parameters {param:.2e} (scaled)");
}

/// A mixed trainer reads its f16 copies fresh after `set_params` (its predictions follow
/// the new values), generates (from its f32 master weights), and refuses what it does
/// not do: training an f16 trainer (which predicts like it), stateful mixed training.
#[test]
fn a_mixed_trainer_refreshes_its_copies_and_refuses_the_rest() {
    use gru_engine::generate::Sampling;
    use gru_engine::model::{Batch, ModelConfig, ModelParams};
    use gru_engine::train::{GpuTrainer, TrainOptions, Trainer};
    let Some(ctx) = gpu() else { return };
    if !ctx.supports_f16() {
        return;
    }
    let cfg = ModelConfig::language_model(11, 6, 9);
    let (a, b) = (
        ModelParams::init(cfg, 1).unwrap(),
        ModelParams::init(cfg, 2).unwrap(),
    );
    let opts = TrainOptions::adam(1e-2);
    let mut mixed = GpuTrainer::with_precision(ctx.clone(), &a, opts, Precision::Mixed).unwrap();
    let x = [1u32, 4, 2, 9, 0, 3];
    let batch = Batch::tokens(&x, 1, 6);
    let before = mixed.predict(&batch).unwrap();
    mixed.set_params(&b).unwrap();
    let after = mixed.predict(&batch).unwrap();
    let want = GpuTrainer::new(ctx.clone(), &b, opts)
        .unwrap()
        .predict(&batch)
        .unwrap();
    assert_close(
        "logits after set_params",
        &after,
        &to_f64(&want),
        1e-2,
        0.0,
        "mixed",
    );
    assert!(before.iter().zip(&after).any(|(p, q)| (p - q).abs() > 1e-3));
    let mut got = Vec::new();
    let n = mixed
        .generate_stream(&[1, 2], 12, &Sampling::new(0.0), &mut |t| {
            got.push(t);
            true
        })
        .unwrap();
    assert_eq!((n, got.len()), (12, 12));
    // An f16 trainer predicts as the mixed one does (the same copies and activations)
    // and refuses to train.
    let mut f16 = GpuTrainer::with_precision(ctx.clone(), &b, opts, Precision::F16).unwrap();
    assert_eq!(f16.predict(&batch).unwrap(), after);
    let e = f16.train_step(&batch.classes(&x)).unwrap_err();
    assert!(e.to_string().contains("inference"), "{e}");
    let stateful = TrainOptions {
        stateful: true,
        ..opts
    };
    let e = GpuTrainer::with_precision(ctx.clone(), &a, stateful, Precision::Mixed).unwrap_err();
    assert!(e.to_string().contains("stateful"), "{e}");
}

/// An f16 trainer is for inference: f16 values and nothing else of the parameters (no
/// gradients, no moments), so it takes a fraction of an f32 trainer's device memory for
/// the same shape; it reads back the f16-rounded values, generates as the mixed trainer
/// does, refuses what needs gradients, and refuses values f16 cannot hold by name.
#[test]
fn an_f16_trainer_holds_f16_values_and_no_gradients() {
    use gru_engine::generate::Sampling;
    use gru_engine::model::{Batch, ModelConfig, ModelParams};
    use gru_engine::precision::round_all_f16;
    use gru_engine::train::{GpuTrainer, Split, TrainOptions, Trainer};
    // A context of its own: the others' tests allocate on the shared one meanwhile.
    let Some(ctx) = context(gpu::DeviceRequest::default()) else {
        return;
    };
    if !ctx.supports_f16() {
        return;
    }
    let cfg = ModelConfig::language_model(37, 16, 131).layers(2);
    let params = ModelParams::init(cfg, 3).unwrap();
    let opts = TrainOptions::adam(1e-2);
    let (t_len, b) = (13, 5);
    let mut bytes = Vec::new();
    let mut trainers = Vec::new();
    for p in [Precision::F32, Precision::Mixed, Precision::F16] {
        let before = ctx.allocated_bytes();
        let mut t = GpuTrainer::with_precision(ctx.clone(), &params, opts, p).unwrap();
        t.prepare(t_len, b).unwrap();
        bytes.push(ctx.allocated_bytes() - before);
        trainers.push(t);
    }
    let [f32_bytes, mixed_bytes, f16_bytes] = [bytes[0], bytes[1], bytes[2]];
    eprintln!("device bytes: f32 {f32_bytes}, mixed {mixed_bytes}, f16 {f16_bytes}");
    assert!(
        4 * f16_bytes < f32_bytes && 3 * f16_bytes < mixed_bytes,
        "f16 {f16_bytes} bytes against f32 {f32_bytes} and mixed {mixed_bytes}"
    );
    let [_, mut mixed, mut f16]: [GpuTrainer; 3] = trainers.try_into().unwrap();
    // The values it holds are the parameters rounded to f16.
    let got = f16.params().unwrap();
    for ((name, g), w) in cfg_names(&params)
        .iter()
        .zip(got.tensors())
        .zip(params.tensors())
    {
        assert_eq!(g, round_all_f16(w).as_slice(), "{name}");
    }
    // Prediction, evaluation and generation run on it as on the mixed trainer's copies.
    let x: Vec<u32> = (0..t_len * b).map(|i| (i * 7 % 37) as u32).collect();
    let batch = Batch::tokens(&x, b, t_len);
    assert_eq!(f16.predict(&batch).unwrap(), mixed.predict(&batch).unwrap());
    f16.evaluate(&batch.classes(&x)).unwrap();
    mixed.evaluate(&batch.classes(&x)).unwrap();
    let (lf, lm) = (
        f16.take_metrics(Split::Eval).unwrap().loss,
        mixed.take_metrics(Split::Eval).unwrap().loss,
    );
    assert!(lf.is_finite() && lf == lm, "eval loss f16 {lf}, mixed {lm}");
    let greedy = |t: &mut GpuTrainer| {
        let mut got = Vec::new();
        t.generate_stream(&[1, 2, 3], 20, &Sampling::new(0.0), &mut |k| {
            got.push(k);
            true
        })
        .unwrap();
        got
    };
    assert_eq!(greedy(&mut f16), greedy(&mut mixed));
    // Nothing that needs gradients or moments.
    for e in [
        f16.gradients(&batch.classes(&x)).unwrap_err(),
        f16.optimizer_state().unwrap_err(),
        f16.train_step(&batch.classes(&x)).unwrap_err(),
    ] {
        assert!(e.to_string().contains("inference"), "{e}");
    }
    // A value past f16's range is refused by name, in f16 and in mixed precision.
    let mut big = params.clone();
    big.tensors_mut()[3][5] = 1e5;
    let name = cfg_names(&params)[3].clone();
    for t in [&mut f16, &mut mixed] {
        let e = t.set_params(&big).unwrap_err().to_string();
        assert!(e.contains(&name) && e.contains("f16"), "{e}");
    }
}

/// The parameter names of `p`, in its tensors' order.
fn cfg_names(p: &gru_engine::model::ModelParams) -> Vec<String> {
    p.infos().into_iter().map(|i| i.name).collect()
}
