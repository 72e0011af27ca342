//! The engine in a real browser (headless Chromium: WebGPU on SwiftShader, Tint's WGSL
//! compiler), against the CPU reference compiled into the same wasm:
//! - every GPU layer kernel the adapter picks: forward, h_n and every gradient over
//!   awkward shapes, both variants, bidirectional, lengths (the tolerances of
//!   tests/gpu_vs_cpu.rs);
//! - 20 training steps of a language model, losses and parameters (tests/training.rs's
//!   tolerances);
//! - the JavaScript API: a checkpoint `gru train` wrote generates greedily exactly what
//!   `gru generate` prints; `Trainer` ends 20 steps on the losses `gru train --json`
//!   printed; bad input is an `Error` with the CLI's message.
//!
//! Run: `bash scripts/test-web.sh` (`.ci/run` does). A missing WebGPU adapter fails
//! these tests; nothing is skipped.

use std::cell::RefCell;
use std::sync::Arc;

use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::task::lm::{data_rng, LmData};
use gru_engine::text::read_chars;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer as _};
use gru_engine::{cpu, DeviceRequest, GpuContext, GpuGru, GruConfig, GruVariant, GruWeights};
use gru_engine::{SequenceInput, TensorId};
use gru_web::{Engine, Model, Trainer};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CHECKPOINT: &[u8] = include_bytes!("fixtures/lm.safetensors");
const GENERATED: &str = include_str!("fixtures/lm.generate.txt");
const TEXT: &str = include_str!("fixtures/lm.txt");
const TRAIN_JSON: &str = include_str!("fixtures/lm.train.json");

thread_local! {
    static CTX: RefCell<Option<Arc<GpuContext>>> = const { RefCell::new(None) };
}

/// The page's WebGPU device; a test without one fails.
async fn ctx() -> Arc<GpuContext> {
    if let Some(c) = CTX.with(|c| c.borrow().clone()) {
        return c;
    }
    let c = GpuContext::new_async(&DeviceRequest::default())
        .await
        .expect("a WebGPU adapter (run Chromium with --enable-unsafe-webgpu)");
    CTX.with(|slot| slot.borrow_mut().get_or_insert(c).clone())
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// |got - want| <= abs + rel·|want| everywhere (tests/common's rule).
#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64, case: &str) {
    assert_eq!(got.len(), want.len(), "{case}: {what} length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= abs + rel * w.abs(),
            "{case}: {what}[{i}] = {g}, reference {w} (error {err:e})"
        );
    }
}

/// tests/gpu_vs_cpu.rs's tolerance: ATOL·max(1, max|cpu|) + RTOL·|cpu|.
#[track_caller]
fn check(what: &str, got: &[f32], want: &[f64], case: &str) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_close(what, got, want, 2e-5 * scale, 1e-4, case);
}

async fn layer_case(
    ctx: &Arc<GpuContext>,
    variant: GruVariant,
    (i, h, t, b): (usize, usize, usize, usize),
    n: usize,
) {
    let (layers, bidir, lengths, h0) = (1 + n % 2, n % 3 == 1, n.is_multiple_of(2), n % 4 != 3);
    let case = format!("{variant:?} I={i} H={h} T={t} B={b} layers={layers} bidir={bidir} lengths={lengths} h0={h0}");
    let cfg = GruConfig::new(i, h)
        .layers(layers)
        .bidirectional(bidir)
        .variant(variant);
    let w = GruWeights::init(cfg, n as u64);
    let mut rng = Rng::new(n as u64 ^ 0xABCD);
    let ld = layers * cfg.num_directions();
    let x = rng.uniform_vec(t * b * i, -1.0, 1.0);
    let h0v = rng.uniform_vec(ld * b * h, -0.5, 0.5);
    let lens: Vec<usize> = (0..b)
        .map(|r| if r == 0 { t } else { 1 + (r * 7 + 3) % t })
        .collect();
    let dy = rng.uniform_vec(t * b * cfg.output_size(), -1.0, 1.0);
    let dhn = rng.uniform_vec(ld * b * h, -1.0, 1.0);

    let mut input = SequenceInput::new(&x[..], t, b);
    let (x64, h064) = (to_f64(&x), to_f64(&h0v));
    let mut input64 = SequenceInput::new(&x64[..], t, b);
    if h0 {
        input = input.h0(&h0v);
        input64 = input64.h0(&h064);
    }
    if lengths {
        input = input.lengths(&lens);
        input64 = input64.lengths(&lens);
    }
    let mut gpu = GpuGru::new(ctx.clone(), &w).unwrap();
    gpu.forward(&input).unwrap();
    let out = gpu.read_output_async().await.unwrap();
    let h_n = gpu.read_h_n_async().await.unwrap();
    let grads = gpu.backward_async(&dy, Some(&dhn)).await.unwrap();

    let w64 = w.cast::<f64>();
    let fwd = cpu::forward(&w64, &input64).unwrap();
    let want = cpu::backward(&w64, &fwd, &to_f64(&dy), Some(&to_f64(&dhn))).unwrap();
    check("output", &out, &fwd.output, &case);
    check("h_n", &h_n, &fwd.h_n, &case);
    check("d_input", &grads.d_input, &want.d_input, &case);
    check("d_h0", &grads.d_h0, &want.d_h0, &case);
    let ids: Vec<TensorId> = want.d_weights.tensor_ids();
    for id in ids {
        check(
            &format!("d_{}", id.name()),
            grads.d_weights.tensor(id),
            want.d_weights.tensor(id),
            &case,
        );
    }
}

/// Sizes of 1, primes, non-multiples of the workgroup sizes; layers, directions,
/// lengths and h0 rotate with the case number.
async fn layer_matrix(variant: GruVariant) {
    let ctx = ctx().await;
    let mut n = 0;
    for &h in &[1, 3, 17, 64, 130] {
        for &b in &[1, 5] {
            for &t in &[1, 7, 33] {
                let i = if h == 3 { 5 } else { h + 2 };
                layer_case(&ctx, variant, (i, h, t, b), n).await;
                n += 1;
            }
        }
    }
}

#[wasm_bindgen_test]
async fn reset_after_layers_match_the_reference() {
    layer_matrix(GruVariant::ResetAfter).await;
}

#[wasm_bindgen_test]
async fn reset_before_layers_match_the_reference() {
    layer_matrix(GruVariant::ResetBefore).await;
}

/// f16 storage where the adapter has SHADER_F16: the forward within tests/half.rs's
/// 1e-3 of the reference that rounds where the device stores, both variants,
/// bidirectional, lengths. Where it has not (Chromium's SwiftShader), the typed error
/// naming the feature, before any buffer is made.
#[wasm_bindgen_test]
async fn f16_storage_follows_the_adapters_shader_f16() {
    let ctx = ctx().await;
    let w = GruWeights::init(GruConfig::new(5, 17).bidirectional(true), 3);
    console_log!(
        "f16 storage on {}: SHADER_F16 {}",
        ctx.adapter_info().name,
        if ctx.supports_f16() {
            "yes, forward checked"
        } else {
            "no, refusal checked"
        }
    );
    if !ctx.supports_f16() {
        let e = GpuGru::with_precision(ctx.clone(), &w, gru_engine::Precision::F16).unwrap_err();
        assert!(
            matches!(
                e,
                gru_engine::GruError::MissingFeature {
                    feature: "SHADER_F16",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--precision f32"), "{e}");
        return;
    }
    for (n, variant) in [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .into_iter()
        .enumerate()
    {
        let cfg = GruConfig::new(5, 17).bidirectional(true).variant(variant);
        let w = GruWeights::init(cfg, 3 + n as u64);
        let (t, b) = (9, 5);
        let x = Rng::new(7).uniform_vec(t * b * 5, -1.0, 1.0);
        let lens = [9, 2, 5, 1, 8];
        let input = SequenceInput::new(&x[..], t, b).lengths(&lens);
        let mut g = GpuGru::with_precision(ctx.clone(), &w, gru_engine::Precision::F16).unwrap();
        g.forward(&input).unwrap();
        let out = g.read_output_async().await.unwrap();
        let want = cpu::forward_f16(&w, &input).unwrap();
        assert_close(
            "f16 output",
            &out,
            &to_f64(&want.output),
            1e-3,
            0.0,
            &format!("{variant:?}"),
        );
    }
}

#[wasm_bindgen_test]
async fn twenty_training_steps_match_the_reference() {
    let ctx = ctx().await;
    let text = read_chars(TEXT.as_bytes(), "lm.txt", TEXT.len() as u64, None, &|| {
        false
    })
    .unwrap()
    .unwrap();
    let data = LmData::new(text.ids, 0.05, 8, 24, "lm.txt").unwrap();
    for (variant, layers) in [(GruVariant::ResetAfter, 1), (GruVariant::ResetBefore, 2)] {
        let cfg = ModelConfig::language_model(text.vocab.len(), 16, 40)
            .layers(layers)
            .variant(variant);
        let opts = TrainOptions::adam(5e-3);
        let params = ModelParams::init(cfg, 7).unwrap();
        let mut cpu = CpuTrainer::new(params.clone(), opts).unwrap();
        let mut gpu = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
        let mut rng = data_rng(7);
        for step in 0..20 {
            let case = format!("{variant:?}, {layers} layer(s), step {step}");
            let bt = data.train_batch(&mut rng, step, false).unwrap();
            let batch = Batch::tokens(&bt.inputs, 8, 24).classes(&bt.targets);
            cpu.train_step(&batch).unwrap();
            gpu.train_step(&batch).unwrap();
            let mc = cpu.take_metrics(Split::Train).unwrap();
            let mg = gpu.take_metrics_async(Split::Train).await.unwrap();
            assert_close("loss", &[mg.loss as f32], &[mc.loss], 1e-4, 1e-4, &case);
            assert_eq!(mg.count, mc.count, "{case}");
        }
        let (pc, pg) = (cpu.params().unwrap(), gpu.params_async().await.unwrap());
        for ((info, a), g) in pc.infos().iter().zip(pc.tensors()).zip(pg.tensors()) {
            assert_close(
                &info.name,
                g,
                &to_f64(a),
                2e-4,
                1e-3,
                &format!("{variant:?}"),
            );
        }
    }
}

fn options(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        js_sys::Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

async fn settle(p: js_sys::Promise) -> Result<JsValue, String> {
    JsFuture::from(p).await.map_err(message)
}

fn message(e: JsValue) -> String {
    e.dyn_into::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|v| format!("not an Error: {v:?}"))
}

#[wasm_bindgen_test]
async fn a_native_checkpoint_generates_the_native_text_greedily() {
    let prompt = "The ";
    let want = GENERATED
        .strip_prefix(prompt)
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    for device in ["gpu", "cpu"] {
        let o = options(&[("device", device.into())]);
        let model = Model::load(CHECKPOINT.to_vec(), o)
            .await
            .map_err(message)
            .unwrap();
        assert_eq!(model.kind(), "language-model");
        let sampling = options(&[("temperature", 0.0.into())]);
        let got = settle(model.generate(Some(prompt.into()), 120.0, sampling))
            .await
            .unwrap();
        assert_eq!(got.as_string().unwrap(), want, "on {device}");
    }
}

#[wasm_bindgen_test]
async fn the_trainer_ends_twenty_steps_on_the_native_losses() {
    let want: serde_json::Value = serde_json::from_str(TRAIN_JSON).unwrap();
    let config = options(&[
        ("hidden", 32.into()),
        ("embed", 16.into()),
        ("batch", 8.into()),
        ("seqLen", 32.into()),
        ("seed", 1.into()),
        ("device", "gpu".into()),
    ]);
    let t = Trainer::create(TEXT.into(), config)
        .await
        .map_err(message)
        .unwrap();
    let losses = settle(t.step(20.0)).await.unwrap();
    assert_eq!(js_sys::Float64Array::from(losses).length(), 20);
    let r = settle(t.evaluate()).await.unwrap();
    let line: serde_json::Value = serde_json::from_str(
        &js_sys::Reflect::get(&r, &"json".into())
            .unwrap()
            .as_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["step"], want["step"]);
    assert_eq!(line["epoch"], want["epoch"]);
    for k in ["train_loss", "val_loss", "train_accuracy", "val_accuracy"] {
        let (g, w) = (line[k].as_f64().unwrap(), want[k].as_f64().unwrap());
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{k}: {g} in the browser, {w} natively"
        );
    }
    // Saved bytes are a checkpoint `gru generate` reads: a language model with its
    // characters, task and shape.
    let bytes = js_sys::Uint8Array::from(settle(t.save()).await.unwrap()).to_vec();
    let c = Checkpoint::from_bytes(&bytes, "saved".as_ref()).unwrap();
    assert_eq!(
        c.extra.get("task").map(String::as_str),
        Some("language-model")
    );
    assert_eq!(c.extra.get("seq_len").map(String::as_str), Some("32"));
    assert_eq!(c.optimizer.as_ref().map(|o| o.step), Some(20));
    let model = Model::load(bytes, JsValue::UNDEFINED)
        .await
        .map_err(message)
        .unwrap();
    let text = settle(model.generate(None, 10.0, JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(text.as_string().unwrap().chars().count(), 10);
}

#[wasm_bindgen_test]
async fn the_engine_names_a_webgpu_adapter() {
    let info = Engine::adapter_info().await.unwrap();
    let get = |k: &str| js_sys::Reflect::get(&info, &k.into()).unwrap();
    assert_eq!(get("gpu").as_bool(), Some(true), "{:?}", get("reason"));
    assert!(!get("name").as_string().unwrap().is_empty());
    console_log!(
        "WebGPU adapter: {} ({}, fallback {})",
        get("name").as_string().unwrap(),
        get("backend").as_string().unwrap_or_default(),
        get("fallback").as_bool().unwrap_or_default()
    );
}

#[wasm_bindgen_test]
async fn bad_input_is_an_error_with_the_clis_message() {
    // Not a checkpoint: the library's message for the same bytes.
    let junk = b"certainly not safetensors".to_vec();
    let want = Checkpoint::from_bytes(&junk, "the checkpoint".as_ref())
        .unwrap_err()
        .to_string();
    let got = Model::load(junk, JsValue::UNDEFINED)
        .await
        .map_err(message)
        .err()
        .unwrap();
    assert_eq!(got, want);
    // A vocabulary that does not match the model.
    let mut c = Checkpoint::from_bytes(CHECKPOINT, "x".as_ref()).unwrap();
    c.vocab.as_mut().unwrap().pop();
    let bytes = c.to_bytes().unwrap();
    let e = Model::load(bytes, JsValue::UNDEFINED)
        .await
        .map_err(message)
        .err()
        .unwrap();
    assert!(e.contains("vocabulary"), "{e}");

    let model = Model::load(CHECKPOINT.to_vec(), JsValue::UNDEFINED)
        .await
        .map_err(message)
        .unwrap();
    // Characters the model does not know.
    let e = settle(model.generate(Some("日本".into()), 5.0, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(e.contains('日'), "{e}");
    // A language model cannot classify or forecast.
    let e = settle(model.classify(js_sys::Array::of1(&"text".into())))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "invalid configuration: this checkpoint is a language model, which cannot classify"
    );
    let e = settle(model.forecast(js_sys::Array::new()))
        .await
        .unwrap_err();
    assert!(e.contains("cannot forecast"), "{e}");
    // Options of the wrong type or value.
    let e = settle(model.generate(None, 5.0, options(&[("temperature", "hot".into())])))
        .await
        .unwrap_err();
    assert!(e.contains("temperature must be a number"), "{e}");
    let e = settle(model.generate(None, 5.0, options(&[("temperature", (-1.0).into())])))
        .await
        .unwrap_err();
    assert!(e.contains("temperature"), "{e}");
    let e = settle(model.generate(None, 1.5, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(e.contains("length must be a whole number"), "{e}");
    // Trainer flags.
    for (config, needle) in [
        (
            options(&[("hidden", 0.into())]),
            "hidden must be a whole number of at least 1, found 0",
        ),
        (
            options(&[("optimizer", "rmsprop".into())]),
            "optimizer must be",
        ),
        (
            options(&[("seqLen", 100000.into())]),
            "fewer than one sequence of --seq-len 100000",
        ),
        (options(&[("device", "tpu".into())]), "device must be"),
        ("hidden".into(), "must be an object of options"),
    ] {
        let e = Trainer::create(TEXT.into(), config)
            .await
            .map_err(message)
            .err()
            .unwrap();
        assert!(e.contains(needle), "{e} (wanted {needle:?})");
    }
    // A second call while one is pending is refused, not interleaved.
    let first = model.generate(None, 50.0, JsValue::UNDEFINED);
    let e = settle(model.generate(None, 5.0, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(e.contains("busy"), "{e}");
    settle(first).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_native_classifier_and_forecaster_predict_what_the_cli_prints() {
    // `gru classify predict` printed row,label,probability (4 decimals) for these texts.
    let texts = include_str!("fixtures/classify.input.csv");
    let want = include_str!("fixtures/classify.predict.csv");
    let bytes = include_bytes!("fixtures/classify.safetensors").to_vec();
    let model = Model::load(bytes, JsValue::UNDEFINED)
        .await
        .map_err(message)
        .unwrap();
    assert_eq!(model.kind(), "classifier");
    let inputs: js_sys::Array = texts.lines().map(JsValue::from_str).collect();
    let got = js_sys::Array::from(&settle(model.classify(inputs)).await.unwrap());
    let rows: Vec<&str> = want.lines().skip(1).collect();
    assert_eq!(got.length() as usize, rows.len());
    for (i, row) in rows.iter().enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        let g = got.get(i as u32);
        let label = js_sys::Reflect::get(&g, &"label".into())
            .unwrap()
            .as_string()
            .unwrap();
        let p = js_sys::Reflect::get(&g, &"probability".into())
            .unwrap()
            .as_f64()
            .unwrap();
        assert_eq!(label, f[1], "row {}", i + 1);
        let want_p: f64 = f[2].parse().unwrap();
        assert!((p - want_p).abs() <= 6e-5, "row {}: {p} vs {want_p}", i + 1);
    }
    // `gru forecast predict` printed step,load for the next 3 steps after these rows.
    let series = include_str!("fixtures/forecast.input.csv");
    let want = include_str!("fixtures/forecast.predict.csv");
    let bytes = include_bytes!("fixtures/forecast.safetensors").to_vec();
    let model = Model::load(bytes, JsValue::UNDEFINED)
        .await
        .map_err(message)
        .unwrap();
    assert_eq!(model.kind(), "forecaster");
    let rows: js_sys::Array = series
        .lines()
        .skip(1)
        .map(|l| {
            let v: js_sys::Array = l
                .split(',')
                .map(|x| JsValue::from_f64(x.parse().unwrap()))
                .collect();
            JsValue::from(v)
        })
        .collect();
    let got = js_sys::Float64Array::from(settle(model.forecast(rows)).await.unwrap()).to_vec();
    let want: Vec<f64> = want
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
    }
    // Too few rows for the window: the CLI's message.
    let short: js_sys::Array = (0..3)
        .map(|_| JsValue::from(js_sys::Array::of2(&1.into(), &2.into())))
        .collect();
    let e = settle(model.forecast(short)).await.unwrap_err();
    assert!(e.contains("fewer than the model's window of 24"), "{e}");
}
