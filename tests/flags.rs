//! Every flag of `gru` and its subcommands, each in a test whose assertion depends on the
//! value it was given: a flag that is parsed but has no effect fails here. The last test
//! reads every subcommand's `--help` and fails if a flag appears in no test file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::ModelInput;
use gru_engine::train::Optimizer;
use gru_engine::GruVariant;

fn gru(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .args(args)
        .output()
        .expect("the gru binary runs")
}

/// Runs `gru args`, which must succeed; returns stdout and stderr together.
#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = gru(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "gru {args:?} failed:\n{text}");
    text
}

#[track_caller]
fn stdout_of(args: &[&str]) -> String {
    let o = gru(args);
    assert!(
        o.status.success(),
        "gru {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `gru args`, which must fail; its stderr.
#[track_caller]
fn stderr_of(args: &[&str]) -> String {
    let o = gru(args);
    assert!(!o.status.success(), "gru {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn last(dir: &Path) -> Checkpoint {
    Checkpoint::load(&dir.join("last.safetensors")).unwrap()
}

fn corpus(dir: &Path) -> PathBuf {
    let p = dir.join("c.txt");
    std::fs::write(
        &p,
        "the quick brown fox jumps over the lazy dog. ".repeat(30),
    )
    .unwrap();
    p
}

/// A language model small enough for a few steps in any test: `train`'s flags.
const SMALL_LM: [&str; 8] = [
    "--hidden",
    "6",
    "--embed",
    "4",
    "--seq-len",
    "5",
    "--batch",
    "2",
];

/// `--save-precision f16`: the run's checkpoints hold F16 parameters (the moments F32),
/// a resume reads them, and without the flag the resumed run saves F32 again; an
/// unknown value is refused in one line.
#[test]
fn save_precision_stores_the_parameters_as_asked() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let run = d.path().join("run");
    let dtypes = || -> Vec<(String, safetensors::Dtype)> {
        let bytes = std::fs::read(run.join("last.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .into_iter()
            .map(|(n, v)| (n, v.dtype()))
            .collect()
    };
    let base = ["train", "--text", s(&text), "--checkpoint-dir", s(&run)];
    let mut args: Vec<&str> = base.iter().chain(&SMALL_LM).copied().collect();
    args.extend(["--steps", "3", "--save-precision", "f16"]);
    let out = ok(&args);
    // On a device, the memory its buffers take, before the first step.
    if common::cli_device() == "gpu" {
        assert!(out.contains("device memory: "), "{out}");
    }
    for (name, dtype) in dtypes() {
        let want = if name.starts_with("optimizer.") {
            safetensors::Dtype::F32
        } else {
            safetensors::Dtype::F16
        };
        assert_eq!(dtype, want, "{name}");
    }
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--resume", "--steps", "5"]);
    ok(&args);
    assert_eq!(last(&run).optimizer.unwrap().step, 5);
    assert!(dtypes().iter().all(|(_, d)| *d == safetensors::Dtype::F32));
    let err = stderr_of(&["train", "--save-precision", "f8"]);
    assert!(err.contains("f8") && err.contains("f16"), "{err}");
}

/// `train --precision mixed` on a device: it says so in the memory line, saves f32
/// master weights, resumes from an F16 checkpoint (which it reads widened); the same
/// run differs from f32's. f16 is refused for training, and mixed on the CPU reference,
/// each in one line.
#[test]
fn train_precision_mixed_trains_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let small = [&["train", "--text", s(&text)][..], &SMALL_LM].concat();
    let e = stderr_of(&[&small[..], &["--precision", "f16", "--steps", "1"]].concat());
    assert!(
        e.contains("--precision mixed") && e.contains("inference"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let e = stderr_of(&[&small[..], &["--precision", "mixed", "--device", "cpu"]].concat());
    assert!(e.contains("CPU reference") && e.contains("f32"), "{e}");
    let dev = common::cli_device();
    if dev != "gpu" || !common::gpu().is_some_and(|c| c.supports_f16()) {
        return;
    }
    let (mixed, full) = (d.path().join("mixed"), d.path().join("full"));
    let run = |dir: &Path, extra: &[&str]| {
        let a = [
            &small[..],
            &["--device", dev, "--checkpoint-dir", s(dir)],
            extra,
        ]
        .concat();
        ok(&a)
    };
    let out = run(
        &mixed,
        &[
            "--precision",
            "mixed",
            "--steps",
            "3",
            "--save-precision",
            "f16",
        ],
    );
    assert!(
        out.contains("device memory: ") && out.contains("mixed precision"),
        "{out}"
    );
    run(&full, &["--steps", "3", "--save-precision", "f16"]);
    let (a, b) = (last(&mixed), last(&full));
    assert_ne!(a.params.tensors(), b.params.tensors());
    // Resume the F16 checkpoint in mixed precision.
    run(
        &mixed,
        &["--resume", "--precision", "mixed", "--steps", "5"],
    );
    let c = last(&mixed);
    assert_eq!(c.optimizer.unwrap().step, 5);
    assert!(c
        .params
        .tensors()
        .into_iter()
        .flatten()
        .all(|v| v.is_finite()));
}

/// The language model's flags land in the saved model, optimiser and options.
#[test]
fn train_flags_reach_the_model_and_the_optimiser() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let run = d.path().join("run");
    let out = ok(&[
        "train",
        "--text",
        s(&text),
        "--checkpoint-dir",
        s(&run),
        "--embed",
        "5",
        "--hidden",
        "7",
        "--layers",
        "2",
        "--variant",
        "reset-before",
        "--dropout",
        "0.25",
        "--seq-len",
        "6",
        "--batch",
        "3",
        "--steps",
        "4",
        "--lr",
        "0.02",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.7",
        "--weight-decay",
        "0.01",
        "--clip-norm",
        "2",
        "--clip-value",
        "0.3",
        "--max-norm",
        "3",
        "--seed",
        "5",
        "--val-split",
        "0.2",
        "--eval-every",
        "2",
        "--stateful",
        "--sample-length",
        "0",
        "--device",
        "cpu",
    ]);
    // 1350 characters, 20% held out.
    assert!(out.contains("(270 for validation)"), "{out}");
    let c = last(&run);
    let cfg = c.params.config;
    assert_eq!(
        cfg.input,
        ModelInput::Tokens {
            vocab: 28,
            embed_dim: 5
        }
    );
    assert_eq!(
        (cfg.hidden_size, cfg.num_layers, cfg.variant, cfg.dropout),
        (7, 2, GruVariant::ResetBefore, 0.25)
    );
    let o = c.options.unwrap();
    assert_eq!(o.optimizer, Optimizer::Sgd { momentum: 0.7 });
    assert_eq!(
        (
            o.learning_rate,
            o.weight_decay,
            o.clip_norm,
            o.clip_value,
            o.max_norm
        ),
        (0.02, 0.01, Some(2.0), Some(0.3), Some(3.0))
    );
    assert!(o.stateful);
    assert_eq!(o.seed, 5);
    assert_eq!(c.optimizer.as_ref().unwrap().step, 4);
    // Momentum buffers are in use (non-zero) with SGD momentum.
    assert!(c.optimizer.unwrap().m.iter().flatten().any(|&v| v != 0.0));
    // The carried state of batches of 3 rows.
    let (h, b) = c.carried_state.unwrap();
    assert_eq!((h.len(), b), (2 * 3 * 7, 3));
    // --eval-every 2 over 4 steps: two evaluation rows.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // --optimizer adamw / adam reach the options too; --epochs sets the step count.
    let mut steps = Vec::new();
    for (name, want, epochs) in [
        ("adamw", Optimizer::AdamW, "1"),
        ("adam", Optimizer::Adam, "2"),
    ] {
        let run = d.path().join(name);
        ok(&[
            "train",
            "--text",
            s(&text),
            "-c",
            s(&run),
            "--hidden",
            "4",
            "--embed",
            "3",
            "--seq-len",
            "8",
            "--batch",
            "4",
            "--epochs",
            epochs,
            "--optimizer",
            name,
            "--sample-length",
            "0",
            "--device",
            "cpu",
            "-q",
        ]);
        let c = last(&run);
        assert_eq!(c.options.unwrap().optimizer, want);
        steps.push(c.optimizer.unwrap().step);
    }
    assert!(
        steps[0] > 10 && steps[1] == 2 * steps[0],
        "--epochs 1 and 2: {steps:?} steps"
    );
}

/// Same seed, same model; another seed, another one. Stopping and resuming gives the
/// very same parameters and optimiser state as one uninterrupted run.
#[test]
fn seed_is_reproducible_and_resume_is_exact() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let train = |dir: &Path, seed: &str, steps: &str, extra: &[&str], device: &str| {
        let mut a = vec![
            "train",
            "--text",
            s(&text),
            "-c",
            s(dir),
            "--hidden",
            "6",
            "--embed",
            "4",
            "--seq-len",
            "8",
            "--batch",
            "4",
            "--dropout",
            "0.2",
            "--layers",
            "2",
            "--seed",
            seed,
            "--steps",
            steps,
            "--eval-every",
            "2",
            "--sample-length",
            "0",
            "--device",
            device,
            "-q",
        ];
        a.extend_from_slice(extra);
        ok(&a);
        last(dir)
    };
    for device in ["cpu", common::cli_device()] {
        let a = train(&d.path().join(format!("a-{device}")), "1", "6", &[], device);
        let b = train(&d.path().join(format!("b-{device}")), "1", "6", &[], device);
        let other = train(&d.path().join(format!("o-{device}")), "2", "6", &[], device);
        assert_eq!(a.params, b.params, "{device}: same seed, same model");
        assert_ne!(a.params, other.params, "{device}: --seed 2 changed nothing");
        let r = d.path().join(format!("r-{device}"));
        train(&r, "1", "3", &[], device);
        let resumed = train(&r, "1", "6", &["--resume"], device);
        assert_eq!(resumed.params, a.params, "{device}: resumed run differs");
        assert_eq!(resumed.optimizer, a.optimizer, "{device}: optimiser state");
        assert_eq!(resumed.rng_state, a.rng_state, "{device}: data order");
    }
}

/// `--top-k 1` is greedy: the seed no longer matters; without it, it does.
#[test]
fn generate_top_k_seed_and_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let run = d.path().join("run");
    ok(&[
        "train",
        "--text",
        s(&text),
        "-c",
        s(&run),
        "--hidden",
        "8",
        "--embed",
        "4",
        "--seq-len",
        "8",
        "--batch",
        "4",
        "--steps",
        "20",
        "--sample-length",
        "0",
        "-q",
    ]);
    let gen = |extra: &[&str]| {
        let mut a = vec!["generate", "--checkpoint", s(&run), "-n", "60", "-q"];
        a.extend_from_slice(extra);
        stdout_of(&a)
    };
    let greedy = gen(&["--top-k", "1", "--seed", "1", "--temperature", "1.5"]);
    assert_eq!(
        greedy,
        gen(&["--top-k", "1", "--seed", "2", "--temperature", "1.5"])
    );
    let (s1, s2) = (
        gen(&["--seed", "1", "--temperature", "1.5"]),
        gen(&["--seed", "2", "--temperature", "1.5"]),
    );
    assert_ne!(s1, s2, "--seed changed nothing");
    assert_eq!(s1, gen(&["--seed", "1", "--temperature", "1.5"]));
    assert_ne!(greedy, s1, "--top-k 1 changed nothing");
}

fn write(p: &Path, text: &str) -> PathBuf {
    std::fs::write(p, text).unwrap();
    p.to_path_buf()
}

/// A small text data set: label, text.
fn reviews(dir: &Path) -> PathBuf {
    let mut t = String::new();
    for i in 0..40 {
        let (label, body) = if i % 2 == 0 {
            ("pos", "good fine great")
        } else {
            ("neg", "bad awful poor")
        };
        t += &format!("{label},{body} {i}\n");
    }
    write(&dir.join("reviews.csv"), &t)
}

#[test]
fn classify_flags_reach_the_model_and_the_data() {
    let d = tempfile::tempdir().unwrap();
    let data = reviews(d.path());
    let run = d.path().join("clf");
    let out = ok(&[
        "classify",
        "train",
        "--data",
        s(&data),
        "--checkpoint-dir",
        s(&run),
        "--hidden",
        "5",
        "--embed",
        "3",
        "--bidirectional",
        "--variant",
        "reset-before",
        "--max-len",
        "6",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--weight-decay",
        "0.02",
        "--clip-value",
        "0.4",
        "--val-split",
        "0.25",
        "--epochs",
        "1",
        "--header",
        "no",
        "--device",
        "cpu",
    ]);
    assert!(
        out.contains("30 training rows, 10 validation rows"),
        "{out}"
    );
    let c = last(&run);
    let cfg = c.params.config;
    assert!(cfg.bidirectional);
    assert_eq!(cfg.variant, GruVariant::ResetBefore);
    let o = c.options.unwrap();
    assert_eq!(o.optimizer, Optimizer::Sgd { momentum: 0.5 });
    assert_eq!((o.weight_decay, o.clip_value), (0.02, Some(0.4)));
    let meta: serde_json::Value = serde_json::from_str(&c.extra["classify"]).unwrap();
    assert_eq!(meta["max_len"], 6);
    // --header yes drops the first row as a header: one training row fewer.
    let out = ok(&[
        "classify",
        "train",
        "--data",
        s(&data),
        "-c",
        s(&d.path().join("h")),
        "--hidden",
        "3",
        "--epochs",
        "1",
        "--val-split",
        "0.25",
        "--header",
        "yes",
        "--device",
        "cpu",
    ]);
    assert!(out.contains("30 training rows, 9 validation rows"), "{out}");

    // --input text: numbers read as characters, so the model embeds tokens.
    let nums = write(&d.path().join("nums.csv"), &"a,1,2\nb,3,4\n".repeat(10));
    let run_t = d.path().join("as-text");
    ok(&[
        "classify",
        "train",
        "--data",
        s(&nums),
        "--input",
        "text",
        "-c",
        s(&run_t),
        "--hidden",
        "3",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
    ]);
    assert!(matches!(
        last(&run_t).params.config.input,
        ModelInput::Tokens { .. }
    ));
    let run_n = d.path().join("as-numbers");
    ok(&[
        "classify",
        "train",
        "--data",
        s(&nums),
        "--input",
        "numeric",
        "--features",
        "2",
        "-c",
        s(&run_n),
        "--hidden",
        "3",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
    ]);
    assert_eq!(last(&run_n).params.config.input, ModelInput::Features(2));

    // --max-len 6: characters past the sixth do not change a prediction.
    let input = write(&d.path().join("in.csv"), "good fXXXXXXXX\ngood fYYYYYY\n");
    let pred = stdout_of(&[
        "classify",
        "predict",
        "--checkpoint",
        s(&run),
        "--input",
        s(&input),
    ]);
    let rows: Vec<&str> = pred
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1)
        .collect();
    assert_eq!(rows[0], rows[1], "{pred}");
    // Unknown characters map to <unk>: two different ones predict the same.
    let input = write(&d.path().join("unk.csv"), "goo☃\ngoo✈\ngood\n");
    let pred = stdout_of(&[
        "classify",
        "predict",
        "--checkpoint",
        s(&run),
        "--input",
        s(&input),
        "--header",
        "no",
    ]);
    let rows: Vec<&str> = pred
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1)
        .collect();
    assert_eq!(rows[0], rows[1], "{pred}");
    assert_ne!(
        rows[0], rows[2],
        "an unknown character predicts like a known one:\n{pred}"
    );
    // eval --header: with `yes` the first row is not counted.
    let n = |h: &str| {
        stdout_of(&[
            "classify",
            "eval",
            "--checkpoint",
            s(&run),
            "--data",
            s(&data),
            "--header",
            h,
        ])
    };
    assert!(n("no").contains("40 rows"), "{}", n("no"));
    assert!(n("yes").contains("39 rows"), "{}", n("yes"));
}

#[test]
fn forecast_flags_reach_the_model() {
    let d = tempfile::tempdir().unwrap();
    let series: String = (0..120)
        .map(|i| format!("{}\n", (i as f32 * 0.2).sin()))
        .collect();
    let data = write(&d.path().join("s.csv"), &series);
    let run = d.path().join("fc");
    let out = ok(&[
        "forecast",
        "train",
        "--data",
        s(&data),
        "--checkpoint-dir",
        s(&run),
        "--window",
        "10",
        "--hidden",
        "4",
        "--variant",
        "reset-before",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.3",
        "--weight-decay",
        "0.05",
        "--clip-value",
        "0.2",
        "--val-split",
        "0.5",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]);
    // 110 windows of 10 + 1 in 120 rows, half for validation.
    assert!(out.contains("110 windows (55 for validation)"), "{out}");
    let c = last(&run);
    assert_eq!(c.params.config.variant, GruVariant::ResetBefore);
    let o = c.options.unwrap();
    assert_eq!(o.optimizer, Optimizer::Sgd { momentum: 0.3 });
    assert_eq!((o.weight_decay, o.clip_value), (0.05, Some(0.2)));
    let pred = stdout_of(&[
        "forecast",
        "predict",
        "--checkpoint",
        s(&run),
        "--data",
        s(&data),
    ]);
    assert!(
        pred.starts_with("step,") && pred.contains("\n121,"),
        "{pred}"
    );
}

#[test]
fn summary_bidirectional_variant_and_checkpoint() {
    let base = [
        "summary",
        "--kind",
        "classifier",
        "--features",
        "3",
        "--hidden",
        "4",
        "--outputs",
        "2",
    ];
    let plain = stdout_of(&base);
    assert!(plain.contains("Total params: 118"), "{plain}");
    let mut bi = base.to_vec();
    bi.push("--bidirectional");
    let out = stdout_of(&bi);
    assert!(out.contains("Total params: 234"), "{out}");
    let mut rb = base.to_vec();
    rb.extend(["--variant", "reset-before"]);
    let out = stdout_of(&rb);
    assert!(
        out.contains("reset_after=False keeps one bias vector: 96"),
        "{out}"
    );
    assert!(!plain.contains("reset_after=False keeps"), "{plain}");
    // --checkpoint / -c: the saved model's counts, not the flags'.
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let run = d.path().join("run");
    ok(&[
        "train",
        "--text",
        s(&text),
        "-c",
        s(&run),
        "--hidden",
        "6",
        "--embed",
        "4",
        "--steps",
        "1",
        "--sample-length",
        "0",
        "--device",
        "cpu",
        "-q",
    ]);
    // 28·4 + 3·6·(4+6) + 6·6 + 6·28 + 28 = 112 + 180 + 36 + 196 = 524.
    for flag in ["--checkpoint", "-c"] {
        let out = stdout_of(&["summary", flag, s(&run)]);
        assert!(out.contains("Total params: 524"), "{out}");
    }
}

#[test]
fn bench_no_cpu_skips_the_reference() {
    let with = stdout_of(&["bench", "--quick", "--seconds", "0.01", "--json"]);
    let without = stdout_of(&[
        "bench",
        "--quick",
        "--seconds",
        "0.01",
        "--json",
        "--no-cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(with.trim()).unwrap();
    let w: serde_json::Value = serde_json::from_str(without.trim()).unwrap();
    assert!(v["results"][0]["cpu_ms"].as_f64().unwrap() > 0.0);
    assert!(w["results"][0]["cpu_ms"].is_null(), "{without}");
}

/// `gru bench --shape` times exactly the shapes asked for, and `--roofline` adds the
/// device's ceilings and every kernel family of both passes, their FLOPs as counted
/// from the shape.
#[test]
fn bench_shape_and_roofline() {
    let out = stdout_of(&[
        "bench",
        "--shape",
        "3,5,7,11",
        "--shape",
        "2,2,2,2",
        "--roofline",
        "--no-cpu",
        "--seconds",
        "0.01",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let shapes: Vec<_> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["shape"]["B"].as_u64().unwrap(),
                r["shape"]["H"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shapes, [(3, 11), (3, 11), (2, 2), (2, 2)], "{out}");
    let lab = &v["roofline"];
    for k in [
        "fma_gflops",
        "stream_gbs",
        "uniform_load_gflops",
        "workgroup_memory_gbs",
    ] {
        assert!(lab[k].as_f64().unwrap() > 0.0, "{k}: {out}");
    }
    let kernels = lab["kernels"].as_array().unwrap();
    // A family by its entry name; the GEMM is `gemm` or, on software adapters with
    // subgroups, `gemm_sg`; a step entry `step_*`/`bwd_*` per step or its sequence
    // entry `seq_*`, a chunk of steps per dispatch (software adapters).
    let flops = |pass: &str, kernel: &str| -> u64 {
        kernels
            .iter()
            .filter(|k| {
                let name = k["kernel"].as_str().unwrap();
                let seq = kernel
                    .strip_prefix("step_")
                    .or(kernel.strip_prefix("bwd_"))
                    .map(|rest| format!("seq_{rest}"));
                let family = name == kernel
                    || name == format!("{kernel}_sg")
                    || seq.is_some_and(|s| name == s);
                k["shape"]["B"] == 3 && k["pass"] == pass && family
            })
            .map(|k| {
                assert!(k["ms"].as_f64().unwrap() > 0.0, "{k}");
                (k["gflops"].as_f64().unwrap_or(0.0) * k["ms"].as_f64().unwrap() * 1e6).round()
                    as u64
            })
            .sum()
    };
    let (b, t, i, h) = (3u64, 5u64, 7u64, 11u64);
    let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= 1e-6 * want as f64 + 2.0;
    // Forward: the input projection, then T steps of h·W_hhᵀ over 3H gate rows.
    assert!(
        near(flops("forward", "gemm"), 2 * b * t * 3 * h * i),
        "{out}"
    );
    assert!(
        near(flops("forward", "step_fused"), 2 * t * b * 3 * h * h),
        "{out}"
    );
    // Backward: d_w_ih, d_w_hh and dX, and T state gradients (T - 1 of them fused with
    // the gates of the step before, the last alone).
    let gemms = 2 * b * t * 3 * h * (i + h + i);
    assert!(near(flops("backward", "gemm"), gemms), "{out}");
    let states = flops("backward", "bwd_state") + flops("backward", "bwd_state_gates");
    assert!(near(states, 2 * t * b * 3 * h * h), "{out}");
    let count = |kernel: &str| -> u64 {
        kernels
            .iter()
            .filter(|k| k["shape"]["B"] == 3 && k["kernel"] == kernel)
            .map(|k| k["dispatches"].as_u64().unwrap())
            .sum()
    };
    // One backward dispatch per step, plus one, or the last step's gates, one sequence
    // dispatch for the T - 1 steps that fit one, and step 0's state.
    let steps = count("bwd_gates") + count("bwd_state_gates") + count("bwd_state");
    let seq = count("seq_state_gates");
    assert!(
        (seq == 0 && steps == t + 1) || (seq == 1 && steps == 2),
        "{out}"
    );
    assert!(kernels
        .iter()
        .any(|k| k["kernel"] == "bwd_gates" && k["gflops"].is_null()));
    for bad in ["3,5,7", "0,1,1,1", "a,b,c,d"] {
        let e = stderr_of(&["bench", "--shape", bad]);
        assert!(e.contains("expected B,T,I,H"), "{bad}: {e}");
    }
}

/// `--bidirectional`, `--layers` and `--variant` shape the layer bench's stack: its rows
/// name it, and the forward step kernels' FLOPs, as counted from their dispatches, are
/// those of every layer and direction (a pair of directions in one dispatch counts
/// both).
#[test]
fn bench_shapes_take_the_stack_flags() {
    let stacks: [(&[&str], u64, u64, &str); 2] = [
        (&[], 1, 1, "ResetAfter"),
        (
            &[
                "--bidirectional",
                "--layers",
                "2",
                "--variant",
                "reset-before",
            ],
            2,
            2,
            "ResetBefore",
        ),
    ];
    for (flags, layers, nd, variant) in stacks {
        let mut args = vec![
            "bench",
            "--shape",
            "3,5,7,11",
            "--roofline",
            "--no-cpu",
            "--seconds",
            "0.01",
            "--json",
        ];
        args.extend(flags);
        let out = stdout_of(&args);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let row = &v["results"][0];
        assert_eq!(row["layers"], layers, "{out}");
        assert_eq!(row["directions"], nd, "{out}");
        assert_eq!(row["variant"], variant, "{out}");
        let steps: f64 = v["roofline"]["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| {
                let name = k["kernel"].as_str().unwrap();
                k["pass"] == "forward" && (name.starts_with("step_") || name.starts_with("seq_"))
            })
            .map(|k| k["gflops"].as_f64().unwrap_or(0.0) * k["ms"].as_f64().unwrap() * 1e6)
            .sum();
        let (b, t, h) = (3u64, 5u64, 11u64);
        let want = (layers * nd * 2 * t * b * 3 * h * h) as f64;
        assert!(
            (steps - want).abs() <= 1e-6 * want + 2.0,
            "{steps} vs {want}: {out}"
        );
    }
    let e = stderr_of(&["bench", "--train", "--bidirectional"]);
    assert!(e.contains("--bidirectional"), "{e}");
}

/// `gru bench --train` times training steps of the model its flags describe, on the
/// adapter and the CPU reference, with the adapter's dispatches per step; with
/// `--roofline` it also times each kernel family of the step.
#[test]
fn bench_train_times_the_model_the_flags_describe() {
    let out = stdout_of(&[
        "bench",
        "--train",
        "--vocab",
        "7",
        "--embed",
        "3",
        "--hidden",
        "5",
        "--layers",
        "2",
        "--variant",
        "reset-before",
        "--dropout",
        "0.1",
        "--seq-len",
        "4",
        "--batch",
        "3",
        "--roofline",
        "--seconds",
        "0.01",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let m = &v["model"];
    let cfg = gru_engine::model::ModelConfig::language_model(7, 3, 5)
        .layers(2)
        .variant(GruVariant::ResetBefore);
    assert_eq!(
        m["parameters"].as_u64().unwrap(),
        cfg.param_count() as u64,
        "{out}"
    );
    assert_eq!(
        (m["batch"].as_u64(), m["seq_len"].as_u64()),
        (Some(3), Some(4))
    );
    let rows = v["train"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "adapter and CPU reference: {out}");
    for r in rows {
        assert!(r["steps_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let tokens = r["tokens_per_s"].as_f64().unwrap() / r["steps_per_s"].as_f64().unwrap();
        assert!((tokens - 12.0).abs() < 1e-6, "B·T tokens per step: {r}");
    }
    // Reset-before takes two forward and three backward step dispatches per step and
    // layer on a GPU (H 5 <= 64: or one sequence dispatch per chunk of steps, as on
    // llvmpipe), besides the model's other kernels.
    let n = rows[0]["dispatches_per_step"].as_u64().unwrap();
    assert!(n >= 2 * 2 + 10, "{n} dispatches");
    assert!(rows[1]["dispatches_per_step"].is_null());
    let kernels = v["roofline"]["kernels"].as_array().unwrap();
    for k in ["embed_fwd", "cross_entropy", "dropout", "embed_bwd", "adam"] {
        assert!(
            kernels.iter().any(|x| x["kernel"] == k),
            "{k} missing: {out}"
        );
    }
    let total: u64 = kernels
        .iter()
        .map(|x| x["dispatches"].as_u64().unwrap())
        .sum();
    assert_eq!(total, n, "every dispatch of the step is in one family");
}

/// `gru bench --generate` times each generation route of the model its flags describe
/// on the adapter (one dispatch for many tokens where the model fits, one pass per
/// token) and the CPU reference, in one run.
#[test]
fn bench_generate_times_each_route() {
    let out = stdout_of(&[
        "bench",
        "--generate",
        "--tokens",
        "40",
        "--vocab",
        "13",
        "--embed",
        "5",
        "--hidden",
        "9",
        "--layers",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let cfg = gru_engine::model::ModelConfig::language_model(13, 5, 9).layers(2);
    assert_eq!(
        v["model"]["parameters"].as_u64(),
        Some(cfg.param_count() as u64)
    );
    assert_eq!(v["model"]["tokens"].as_u64(), Some(40));
    let rows = v["generate"].as_array().unwrap();
    let routes: Vec<&str> = rows.iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert!(routes.contains(&"reference"), "{out}");
    if routes.len() > 1 {
        // An adapter: the fused build this model takes, then the per-token passes.
        assert_eq!(routes.len(), 3, "{out}");
        assert!(routes[0].starts_with("generate"), "{out}");
        assert_eq!(routes[1], "per-token passes", "{out}");
    }
    for r in rows {
        assert!(r["ms_per_token"].as_f64().unwrap() >= 0.0, "{r}");
    }
    let e = stderr_of(&["bench", "--generate", "--tokens", "0"]);
    assert!(e.contains("--tokens"), "{e}");
}

/// `gru forward --h0`, `--lengths` and `--batch-first` against the CPU reference.
#[test]
fn forward_h0_lengths_and_batch_first() {
    use gru_engine::interop::{
        read_tensors, save_gru, write_safetensors, Tensor, Tensors, WeightFormat,
    };
    use gru_engine::{cpu, GruConfig, GruWeights, SequenceInput};
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let w = GruWeights::init(GruConfig::new(3, 4).layers(2), 7);
    save_gru(&p("w.safetensors"), &w, WeightFormat::PyTorch).unwrap();
    let (t, b) = (5, 3);
    let mut rng = gru_engine::rng::Rng::new(1);
    let x = rng.uniform_vec(t * b * 3, -1.0, 1.0);
    let h0 = rng.uniform_vec(2 * b * 4, -0.5, 0.5);
    let one = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        let mut m = Tensors::new();
        m.insert(name.into(), Tensor { shape, data });
        m
    };
    let save = |n: &str, m: &Tensors| write_safetensors(&p(n), m, Default::default()).unwrap();
    save("x.safetensors", &one("input", vec![t, b, 3], x.clone()));
    save("h0.safetensors", &one("h0", vec![2, b, 4], h0.clone()));
    save(
        "len.safetensors",
        &one("lengths", vec![b], vec![5.0, 2.0, 4.0]),
    );
    let xb = gru_engine::sequence::swap_leading_axes(&x, t, b, 3);
    save("xb.safetensors", &one("input", vec![b, t, 3], xb));
    let run = |extra: &[&str], input: &str| {
        let (i, o, wf) = (p(input), p("y.safetensors"), p("w.safetensors"));
        let mut a = vec![
            "forward",
            "--weights",
            s(&wf),
            "--input",
            s(&i),
            "--output",
            s(&o),
            "-q",
        ];
        a.extend_from_slice(extra);
        ok(&a);
        read_tensors(&o, false).unwrap()
    };
    let close = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{what}: {g} vs {w}");
        }
    };
    let (h0p, lp) = (p("h0.safetensors"), p("len.safetensors"));
    let y = run(&["--h0", s(&h0p), "--lengths", s(&lp)], "x.safetensors");
    let want = cpu::forward(
        &w,
        &SequenceInput::new(&x, t, b).h0(&h0).lengths(&[5, 2, 4]),
    )
    .unwrap();
    close(&y["output"].data, &want.output, "--h0 --lengths output");
    close(&y["h_n"].data, &want.h_n, "--h0 --lengths h_n");
    // Without them the answer is another one.
    let plain = run(&[], "x.safetensors");
    assert!(plain["h_n"]
        .data
        .iter()
        .zip(&want.h_n)
        .any(|(a, b)| (a - b).abs() > 1e-3));
    // --batch-first: [B, T, I] in, [B, T, H] out, the same numbers.
    let yb = run(&["--batch-first"], "xb.safetensors");
    assert_eq!(yb["output"].shape, vec![b, t, 4]);
    let full = cpu::forward(&w, &SequenceInput::new(&x, t, b)).unwrap();
    close(
        &yb["output"].data,
        &gru_engine::sequence::swap_leading_axes(&full.output, t, b, 4),
        "--batch-first output",
    );
}

/// `gru <args> --json --no-cpu` (a bench), parsed, and its text.
fn bench_json(args: &[&str]) -> (serde_json::Value, String) {
    let js = stdout_of(&[args, &["--json", "--no-cpu"]].concat());
    (serde_json::from_str(&js).unwrap(), js)
}

/// `gru <args> --json --no-cpu` (a bench): `field` of every entry of its list `list`,
/// and the JSON.
fn bench_field(args: &[&str], list: &str, field: &str) -> (Vec<String>, String) {
    let (v, js) = bench_json(args);
    let values = v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {js}"))
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect();
    (values, js)
}

/// `gru forward --precision f16`:/// `gru forward --precision f16`: f16 storage on the device (every value an f16, within
/// 1e-3 of the reference that rounds where the device stores), the emulated reference
/// with --device cpu (said in one line), an unknown value refused with the choices;
/// `gru bench --precision f16` adds f16 forward rows and refuses the CPU reference.
#[test]
fn forward_and_bench_precision() {
    use gru_engine::interop::{
        read_tensors, save_gru, write_safetensors, Tensor, Tensors, WeightFormat,
    };
    use gru_engine::precision::round_f16;
    use gru_engine::{cpu, GruConfig, GruWeights, SequenceInput};
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let w = GruWeights::init(GruConfig::new(3, 5).bidirectional(true), 9);
    save_gru(&p("w.safetensors"), &w, WeightFormat::PyTorch).unwrap();
    let (t, b) = (6, 2);
    let x = gru_engine::rng::Rng::new(3).uniform_vec(t * b * 3, -1.0, 1.0);
    let mut m = Tensors::new();
    m.insert(
        "input".into(),
        Tensor {
            shape: vec![t, b, 3],
            data: x.clone(),
        },
    );
    write_safetensors(&p("x.safetensors"), &m, Default::default()).unwrap();
    let (wf, xf, yf) = (p("w.safetensors"), p("x.safetensors"), p("y.safetensors"));
    let base = [
        "forward",
        "--weights",
        s(&wf),
        "--input",
        s(&xf),
        "--output",
        s(&yf),
    ];
    let half = cpu::forward_f16(&w, &SequenceInput::new(&x, t, b)).unwrap();
    let full = cpu::forward(&w, &SequenceInput::new(&x, t, b)).unwrap();
    // On the CPU: the emulation, exactly, and said.
    let out = ok(&[&base[..], &["--device", "cpu", "--precision", "f16"]].concat());
    assert!(out.contains("emulated"), "{out}");
    let y = read_tensors(&yf, false).unwrap();
    assert_eq!(y["output"].data, half.output);
    assert_ne!(half.output, full.output);
    // On the device (where it has SHADER_F16): f16 values near the emulation.
    let dev = common::cli_device();
    if dev == "gpu" && common::gpu().is_some_and(|c| c.supports_f16()) {
        let out = ok(&[&base[..], &["--device", dev, "--precision", "f16"]].concat());
        assert!(out.contains("f16)"), "{out}");
        let y = read_tensors(&yf, false).unwrap();
        for (g, h) in y["output"].data.iter().zip(&half.output) {
            assert_eq!(round_f16(*g), *g);
            assert!((g - h).abs() <= 1e-3, "{g} vs {h}");
        }
        let layer = |p: &str| {
            let args = [
                "bench",
                "--shape",
                "2,3,4,5",
                "--seconds",
                "0.01",
                "--device",
                dev,
            ];
            bench_json(&[&args[..], &["--precision", p]].concat())
        };
        let (v, js) = layer("f16");
        let rows = v["results"].as_array().unwrap();
        let f16: Vec<_> = rows.iter().filter(|r| r["precision"] == "f16").collect();
        assert_eq!((rows.len(), f16.len()), (3, 1), "{js}");
        assert_eq!(f16[0]["pass"], "forward");
        assert!(f16[0]["device_ms"].as_f64().unwrap() > 0.0, "{js}");
        // mixed: forward and forward+backward, each beside its f32 twin.
        let (v, js) = layer("mixed");
        let rows = v["results"].as_array().unwrap();
        let mixed: Vec<_> = rows.iter().filter(|r| r["precision"] == "mixed").collect();
        assert_eq!((rows.len(), mixed.len()), (4, 2), "{js}");
        assert_eq!(mixed[1]["pass"], "forward+backward", "{js}");
        // --train: the mixed trainer beside the f32 one.
        let train = [
            "bench",
            "--train",
            "--precision",
            "mixed",
            "--seconds",
            "0.01",
            "-B",
            "2",
            "-T",
            "3",
            "--hidden",
            "5",
        ];
        let (names, js) = bench_field(
            &[&train[..], &["--device", dev]].concat(),
            "train",
            "device",
        );
        assert_eq!(names.len(), 2, "{js}");
        assert!(
            names[0].ends_with(", f32") && names[1].ends_with(", mixed"),
            "{js}"
        );
        // --generate: the f16 trainer's routes after the f32 routes: the f16 build of the
        // one-dispatch kernel, then its per-token passes.
        let generate = [
            "bench",
            "--generate",
            "--precision",
            "f16",
            "--tokens",
            "5",
            "--hidden",
            "5",
            "--vocab",
            "7",
        ];
        let args = [&generate[..], &["--device", dev]].concat();
        let (routes, js) = bench_field(&args, "generate", "route");
        let n = routes.len();
        assert!(n >= 4, "{js}");
        assert!(
            routes[n - 2].starts_with("generate") && routes[n - 2].ends_with(", f16"),
            "{js}"
        );
        assert_eq!(routes[n - 1], "per-token passes, f16", "{js}");
        // A forward-only command runs mixed as f16.
        ok(&[&base[..], &["--device", dev, "--precision", "mixed"]].concat());
        let again = read_tensors(&yf, false).unwrap();
        assert_eq!(again["output"].data, y["output"].data);
    }
    let e = stderr_of(&[&base[..], &["--precision", "f8"]].concat());
    assert!(
        e.contains("f8") && e.contains("f32") && e.contains("f16") && e.contains("mixed"),
        "{e}"
    );
    let e = stderr_of(&["bench", "--quick", "--precision", "f16", "--device", "cpu"]);
    assert!(
        e.contains("--precision f16") && e.contains("CPU reference"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

/// `--quiet` drops the device line and the progress rows; `--json` prints one JSON
/// object per evaluation with the step and losses.
#[test]
fn quiet_and_json_output() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let run = |dir: &str, flag: &str| {
        let o = gru(&[
            "train",
            "--text",
            s(&text),
            "-c",
            s(&d.path().join(dir)),
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--hidden",
            "4",
            "--embed",
            "3",
            "--seq-len",
            "8",
            "--batch",
            "4",
            "--sample-length",
            "0",
            "--device",
            "cpu",
            flag,
        ]);
        assert!(o.status.success());
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (out, err) = run("loud", "--seed=1");
    assert!(err.contains("device: the CPU reference"), "{err}");
    assert!(
        out.contains("step 2 (epoch") || err.contains("step 2 (epoch"),
        "{out}{err}"
    );
    let (out, err) = run("quiet", "--quiet");
    assert!(
        !err.contains("device:") && !out.contains("training on"),
        "{out}{err}"
    );
    assert!(
        !out.contains("step 2 (epoch") && !err.contains("step 2 (epoch"),
        "{out}{err}"
    );
    assert!(out.contains("step 4: training loss"), "{out}");
    let (out, _) = run("json", "--json");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1]["step"], 4);
    assert!(rows[1]["val_loss"].as_f64().unwrap() > 0.0);
}

/// `--log-every N`: a point of the running training loss every N steps in
/// train_loss.csv, drawn in loss.svg with whole-number step labels; by default about 50
/// points over the run; 0 is refused.
#[test]
fn log_every_writes_the_training_curve() {
    let d = tempfile::tempdir().unwrap();
    let text = corpus(d.path());
    let train = |dir: &str, extra: &[&str]| {
        let dir = d.path().join(dir);
        let mut a = vec![
            "train",
            "--text",
            s(&text),
            "-c",
            s(&dir),
            "--hidden",
            "4",
            "--embed",
            "3",
            "--seq-len",
            "8",
            "--batch",
            "4",
            "--eval-every",
            "50",
            "--sample-length",
            "0",
            "--device",
            "cpu",
            "-q",
        ];
        a.extend_from_slice(extra);
        gru(&a)
    };
    let rows = |dir: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(d.path().join(dir).join("train_loss.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    assert!(train("every3", &["--steps", "12", "--log-every", "3"])
        .status
        .success());
    let r = rows("every3");
    let steps: Vec<&str> = r.iter().map(|f| f[0].as_str()).collect();
    assert_eq!(steps, ["3", "6", "9", "12"]);
    assert!(r.iter().all(|f| f[2].parse::<f64>().unwrap() > 0.0));
    // Evaluations stay in metrics.csv: one, at step 12.
    let metrics = std::fs::read_to_string(d.path().join("every3/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    let svg = std::fs::read_to_string(d.path().join("every3/loss.svg")).unwrap();
    let svg = svg.split_whitespace().collect::<Vec<_>>().join(" ");
    // Step ticks are whole numbers: 12, never 12.0.
    assert!(svg.contains("> 12 <"), "integer step labels expected");
    assert!(!svg.contains("> 12.0 <"), "step labels with decimals");
    assert!(train("default", &["--steps", "100"]).status.success());
    assert_eq!(rows("default").len(), 50);
    let o = train("zero", &["--steps", "4", "--log-every", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--log-every must be at least 1"));
    assert!(!d.path().join("zero").exists());
}

/// `summary --kind forecaster` reads features and keeps the last state (no embedding,
/// output (None, H)); `--kind lm` embeds tokens and reads every step.
#[test]
fn summary_kind_forecaster_and_example_data_seed() {
    let fc = stdout_of(&[
        "summary",
        "--kind",
        "forecaster",
        "--features",
        "3",
        "--hidden",
        "4",
        "--outputs",
        "2",
    ]);
    assert!(
        fc.contains("gru (GRU)      (None, 4)") && !fc.contains("embedding"),
        "{fc}"
    );
    assert!(fc.contains("Total params: 118"), "{fc}");
    let lm = stdout_of(&[
        "summary", "--kind", "lm", "--vocab", "5", "--embed", "3", "--hidden", "4",
    ]);
    assert!(
        lm.contains("embedding") && lm.contains("(None, None, 4)"),
        "{lm}"
    );
    // example-data --seed: the same seed writes the same file, another seed another.
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, seed: &str| {
        let p = d.path().join(name);
        ok(&[
            "example-data",
            "forecast",
            "--out",
            s(&p),
            "--rows",
            "20",
            "--seed",
            seed,
        ]);
        std::fs::read(p).unwrap()
    };
    assert_eq!(write("a.csv", "1"), write("b.csv", "1"));
    assert_ne!(write("a.csv", "1"), write("c.csv", "2"));
}

/// Every long flag in every subcommand's help appears, quoted, in some test file.
#[test]
fn every_flag_is_exercised_by_a_test() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut tests = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // This function's own text would count every flag; leave it out.
        tests += match text.find("fn every_flag_is_exercised_by_a_test") {
            Some(own) => &text[..own],
            None => &text,
        };
    }
    let mut missing = Vec::new();
    for cmd in [
        &["train"][..],
        &["generate"],
        &["classify", "train"],
        &["classify", "eval"],
        &["classify", "predict"],
        &["forecast", "train"],
        &["forecast", "predict"],
        &["forward"],
        &["convert"],
        &["summary"],
        &["devices"],
        &["bench"],
        &["example-data"],
    ] {
        let mut a = cmd.to_vec();
        a.push("--help");
        let help = stdout_of(&a);
        for line in help.lines() {
            let t = line.trim_start();
            let flag = t
                .strip_prefix("-")
                .and_then(|_| t.split([' ', ',', '=']).find(|w| w.starts_with("--")))
                .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()));
            if let Some(f) = flag {
                if f != "--help" && !tests.contains(&format!("\"{f}\"")) {
                    missing.push(format!("{} {f}", cmd.join(" ")));
                }
            }
        }
    }
    assert!(missing.is_empty(), "flags no test passes: {missing:?}");
}
