//! The browser tests' fixtures (web/tests/fixtures, written by its make.sh) are what the
//! native build prints today: `gru generate --temperature 0` from the checkpoint prints
//! exactly lm.generate.txt, with no near-tie deciding any of its characters (so a GPU's
//! different rounding picks the same ones), and a 20-step `gru train --json` run ends
//! on the losses of lm.train.json; `gru classify predict` and `gru forecast predict` print
//! classify.predict.csv and forecast.predict.csv.

use std::path::{Path, PathBuf};
use std::process::Command;

use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::Batch;
use gru_engine::text::CharVocab;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("web/tests/fixtures")
        .join(name)
}

fn gru(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gru {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn greedy_generation_prints_the_fixture_text() {
    assert_eq!(greedy_text(&["--device", "cpu"]), fixture_text());
}

/// The fixture's expected text.
fn fixture_text() -> String {
    std::fs::read_to_string(fixture("lm.generate.txt")).unwrap()
}

/// `gru generate` of 120 greedy characters after "The " from the fixture checkpoint,
/// with `extra` flags.
fn greedy_text(extra: &[&str]) -> String {
    let ckpt = fixture("lm.safetensors");
    let args = [
        "generate",
        "--quiet",
        "-c",
        ckpt.to_str().unwrap(),
        "--temperature",
        "0",
        "--prompt",
        "The ",
        "--length",
        "120",
    ];
    gru(&[&args[..], extra].concat())
}

/// The same text in f16 (`gru generate --precision f16`: f16 weights and states, the
/// one-dispatch kernel's f16 build), where the device has SHADER_F16: the
/// margins checked below leave f16's rounding far from any decision.
#[test]
fn greedy_generation_in_f16_prints_the_fixture_text() {
    let Ok(ctx) = gru_engine::GpuContext::new_default() else {
        assert!(std::env::var_os("CI").is_none(), "no adapter under CI");
        return;
    };
    if !ctx.supports_f16() {
        return;
    }
    let got = greedy_text(&["--device", "gpu", "--precision", "f16"]);
    assert_eq!(got, fixture_text());
}

#[test]
fn no_near_tie_decides_a_fixture_character() {
    let c = Checkpoint::load(&fixture("lm.safetensors")).unwrap();
    let vocab = CharVocab::from_checkpoint(&c, "lm.safetensors").unwrap();
    let text = fixture_text();
    let ids = vocab.encode(text.trim_end_matches('\n')).unwrap();
    let prompt = "The ".chars().count();
    let mut t = CpuTrainer::new(c.params, TrainOptions::default()).unwrap();
    let v = vocab.len();
    // Each generated character is the argmax of the logits after the text before it,
    // by a margin far above f32 rounding (the GPU sums in another order).
    let mut smallest = f32::MAX;
    for n in prompt..ids.len() {
        let logits = t.predict(&Batch::tokens(&ids[..n], 1, n)).unwrap();
        let last = &logits[(n - 1) * v..n * v];
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        assert_eq!(order[0] as u32, ids[n], "character {n}");
        smallest = smallest.min(last[order[0]] - last[order[1]]);
    }
    assert!(
        smallest > 1e-2,
        "a near tie: top-two logit margin {smallest}"
    );
}

#[test]
fn twenty_steps_of_gru_train_end_on_the_fixture_losses() {
    let dir = tempfile::tempdir().unwrap();
    let out = gru(&[
        "train",
        "--device",
        "cpu",
        "--text",
        fixture("lm.txt").to_str().unwrap(),
        "--hidden",
        "32",
        "--embed",
        "16",
        "--batch",
        "8",
        "--seq-len",
        "32",
        "--steps",
        "20",
        "--eval-every",
        "20",
        "--seed",
        "1",
        "--sample-length",
        "0",
        "--json",
        "--checkpoint-dir",
        dir.path().join("run").to_str().unwrap(),
    ]);
    let line = out.lines().rfind(|l| l.starts_with('{')).unwrap();
    let got: serde_json::Value = serde_json::from_str(line).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("lm.train.json")).unwrap()).unwrap();
    for k in [
        "step",
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    ] {
        assert_eq!(got[k], want[k], "{k}");
    }
}

#[test]
fn classify_and_forecast_predict_print_the_fixture_rows() {
    let got = gru(&[
        "classify",
        "predict",
        "--device",
        "cpu",
        "--quiet",
        "-c",
        fixture("classify.safetensors").to_str().unwrap(),
        "--header",
        "no",
        "--input",
        fixture("classify.input.csv").to_str().unwrap(),
    ]);
    assert_eq!(
        got,
        std::fs::read_to_string(fixture("classify.predict.csv")).unwrap()
    );
    let got = gru(&[
        "forecast",
        "predict",
        "--device",
        "cpu",
        "--quiet",
        "-c",
        fixture("forecast.safetensors").to_str().unwrap(),
        "--data",
        fixture("forecast.input.csv").to_str().unwrap(),
    ]);
    assert_eq!(
        got,
        std::fs::read_to_string(fixture("forecast.predict.csv")).unwrap()
    );
}
