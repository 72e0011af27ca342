//! The `gru` binary as a user runs it: every subcommand on tiny settings (on the software
//! Vulkan device in CI), and bad input that must end in one clear error line and a
//! non-zero exit, never a panic, never a lost checkpoint.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::Batch;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};

fn gru(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .args(args)
        .output()
        .expect("the gru binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = gru(args);
    assert!(
        o.status.success(),
        "gru {args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    ran_on_the_expected_device(args, &o);
    stdout(&o)
}

/// A command that runs a model says where: the CPU reference for `--device cpu`, else
/// the adapter `auto` picks, which under `CI` must be Mesa's llvmpipe (so a silent
/// fallback to the CPU would fail every CLI test there).
#[track_caller]
fn ran_on_the_expected_device(args: &[&str], o: &Output) {
    let runs_a_model = matches!(
        args[0],
        "train" | "generate" | "classify" | "forecast" | "forward" | "bench"
    );
    let quiet = args
        .iter()
        .any(|a| matches!(*a, "-q" | "--quiet" | "--json"));
    if !runs_a_model || quiet || args.contains(&"--help") {
        return;
    }
    let all = format!("{}{}", stdout(o), stderr(o));
    let device = args
        .iter()
        .position(|a| *a == "--device")
        .map(|i| args[i + 1]);
    if device == Some("cpu") {
        assert!(all.contains("CPU reference"), "gru {args:?}:\n{all}");
    } else if std::env::var_os("CI").is_some() {
        assert!(
            all.contains("running on llvmpipe"),
            "gru {args:?} should say it runs on llvmpipe:\n{all}"
        );
    } else {
        assert!(
            all.contains("running on") || all.contains("GPU:") || all.contains("CPU reference"),
            "gru {args:?} does not say where it runs:\n{all}"
        );
    }
}

/// The command fails with exit 1, one `error:` line naming `needle`, and no panic.
#[track_caller]
fn fails(args: &[&str], needle: &str) {
    let o = gru(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "gru {args:?} should fail:\n{}\n{err}",
        stdout(&o)
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "gru {args:?} panicked:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line expected from {args:?}:\n{err}"
    );
    assert!(
        lines[0].contains(needle),
        "`{}` should mention `{needle}`",
        lines[0]
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The checkpoint a folder's commands use: best, else last.
fn best_checkpoint(dir: &Path) -> Checkpoint {
    let best = dir.join("best.safetensors");
    let file = if best.exists() {
        best
    } else {
        dir.join("last.safetensors")
    };
    Checkpoint::load(&file).unwrap()
}

/// Logits of the CPU reference for a checkpoint's model.
fn reference_predict(c: &Checkpoint, batch: &Batch) -> Vec<f32> {
    CpuTrainer::new(c.params.clone(), TrainOptions::default())
        .unwrap()
        .predict(batch)
        .unwrap()
}

#[test]
fn devices_lists_adapters_and_marks_the_auto_pick() {
    let text = ok(&["devices"]);
    if text.contains("no GPU adapter found") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but gru devices found no adapter"
        );
        assert!(text.contains("CPU reference path"), "{text}");
        return;
    }
    if text.contains("only software GL adapters") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but only software GL adapters were found:\n{text}"
        );
        assert_eq!(text.matches("<- auto").count(), 0, "{text}");
        return;
    }
    assert_eq!(
        text.matches("<- auto").count(),
        1,
        "exactly one adapter is marked auto:\n{text}"
    );
    for field in [
        "max storage buffer binding",
        "workgroup storage",
        "SHADER_F16",
        "SUBGROUP",
        "driver:",
        "kernels: ",
    ] {
        assert!(text.contains(field), "missing `{field}` in:\n{text}");
    }
    // The adapter auto picks runs every kernel.
    let auto = text.split("<- auto").nth(1).unwrap_or("");
    let block = auto.split("\n[").next().unwrap_or("");
    assert!(
        block.contains("kernels: every kernel fits"),
        "auto picked an adapter whose kernels do not fit:\n{text}"
    );
    if text.contains("(Vulkan, Cpu)  <- auto") {
        assert!(
            text.contains("only a software adapter"),
            "a software pick must say so:\n{text}"
        );
    }
}

#[test]
fn bad_flags_give_one_error_and_a_nonzero_exit() {
    let out = gru(&["devices", "--backend", "quantum"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value 'quantum'"),
        "{}",
        stderr(&out)
    );
    assert!(!gru(&["frobnicate"]).status.success());
}

#[test]
fn every_subcommand_has_help_with_examples() {
    for cmd in [
        vec!["train"],
        vec!["generate"],
        vec!["classify", "train"],
        vec!["classify", "eval"],
        vec!["classify", "predict"],
        vec!["forecast", "train"],
        vec!["forecast", "predict"],
        vec!["summary"],
        vec!["devices"],
        vec!["bench"],
        vec!["example-data"],
        vec!["forward"],
        vec!["convert"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let text = ok(&args);
        assert!(
            text.contains("Example"),
            "gru {cmd:?} --help has no examples:\n{text}"
        );
    }
}

#[test]
fn train_checkpoint_generate_resume() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "hello gru engine. ".repeat(40)).unwrap();
    let run = dir.path().join("run");
    let base = [
        "train",
        "--text",
        s(&text),
        "-c",
        s(&run),
        "--hidden",
        "16",
        "--embed",
        "8",
        "--seq-len",
        "12",
        "--batch",
        "4",
        "--eval-every",
        "5",
        "--sample-length",
        "20",
        "--seed",
        "3",
    ];
    let mut first = base.to_vec();
    first.extend(["--steps", "10"]);
    let out = ok(&first);
    assert!(out.contains("step 10: training loss"), "{out}");
    assert!(out.contains("sample (temperature 0.8"), "{out}");
    for f in [
        "last.safetensors",
        "best.safetensors",
        "metrics.csv",
        "loss.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header + 2 evaluations:\n{csv}");
    assert!(std::fs::read_to_string(run.join("loss.svg"))
        .unwrap()
        .contains("<svg"));
    // A second run into the same folder without --resume must not overwrite it.
    let before = std::fs::read(run.join("last.safetensors")).unwrap();
    fails(&first, "already holds a checkpoint");
    assert_eq!(before, std::fs::read(run.join("last.safetensors")).unwrap());
    // Resume to 15 steps: 3 evaluation rows, step count continues.
    let mut resume = base.to_vec();
    resume.extend(["--steps", "15", "--resume"]);
    let out = ok(&resume);
    assert!(out.contains("step 15: training loss"), "{out}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // Generation streams text from the folder's best checkpoint.
    let out = ok(&[
        "generate",
        "-c",
        s(&run),
        "--prompt",
        "hel",
        "--length",
        "30",
        "--temperature",
        "0",
    ]);
    assert!(
        out.starts_with("hel") && out.trim_end().chars().count() >= 30,
        "{out:?}"
    );
    // JSON logs for scripts.
    let mut json = base.to_vec();
    json.extend(["--steps", "5", "--json", "--force"]);
    let out = ok(&json);
    let first_line = out.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first_line).unwrap();
    assert_eq!(v["step"], 5);
    // Generation errors.
    fails(
        &["generate", "-c", s(&run), "--prompt", "Z"],
        "not in the model's vocabulary",
    );
    fails(
        &["generate", "-c", s(&run), "--temperature", "-1"],
        "temperature",
    );
}

#[test]
fn classify_train_eval_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ramps.csv");
    ok(&[
        "example-data",
        "classify-numeric",
        "--out",
        s(&data),
        "--rows",
        "120",
    ]);
    let run = dir.path().join("clf");
    let out = ok(&[
        "classify",
        "train",
        "--data",
        s(&data),
        "--features",
        "3",
        "--hidden",
        "12",
        "--epochs",
        "3",
        "--max-norm",
        "3",
        "-c",
        s(&run),
        "--lr",
        "0.01",
    ]);
    assert!(out.contains("epoch 3: training loss"), "{out}");
    let out = ok(&["classify", "eval", "-c", s(&run), "--data", s(&data)]);
    assert!(
        out.contains("120 rows: loss") && out.contains("confusion matrix"),
        "{out}"
    );
    assert!(out.contains("falling") && out.contains("rising"), "{out}");
    let input = dir.path().join("new.csv");
    std::fs::write(
        &input,
        "0.1,0,0,0.3,0,0,0.5,0,0\n0.5,0,0,0.2,0,0,-0.1,0,0\n",
    )
    .unwrap();
    let out = ok(&["classify", "predict", "-c", s(&run), "--input", s(&input)]);
    // Each row's label and probability are the CPU reference's softmax of the best model.
    let (c, labels) = {
        let c = best_checkpoint(&run);
        let meta: serde_json::Value = serde_json::from_str(&c.extra["classify"]).unwrap();
        let labels: Vec<String> = serde_json::from_value(meta["labels"].clone()).unwrap();
        (c, labels)
    };
    let rows = [
        [0.1f32, 0., 0., 0.3, 0., 0., 0.5, 0., 0.],
        [0.5, 0., 0., 0.2, 0., 0., -0.1, 0., 0.],
    ];
    let mut want = String::from("row,label,probability\n");
    for (i, r) in rows.iter().enumerate() {
        let logits = reference_predict(&c, &Batch::features(r, 1, 3));
        let mx = logits.iter().cloned().fold(f32::MIN, f32::max);
        let z: f64 = logits.iter().map(|&v| ((v - mx) as f64).exp()).sum();
        let arg = (0..logits.len()).fold(0, |a, k| if logits[k] > logits[a] { k } else { a });
        want += &format!("{},{},{:.4}\n", i + 1, labels[arg], 1.0 / z);
    }
    assert_eq!(out, want);
    // --precision f16: the same labels, probabilities within 1e-2 of f32's (f16 weight
    // copies and activations on the device); refused on the CPU reference.
    let f16 = ["--precision", "f16"];
    let args = [
        &["classify", "predict", "-c", s(&run), "--input", s(&input)][..],
        &f16,
    ]
    .concat();
    if common::cli_device() == "gpu" && common::gpu().is_some_and(|c| c.supports_f16()) {
        let half = ok(&args);
        for (a, b) in half.lines().zip(want.lines()).skip(1) {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
            assert_eq!(a[..2], b[..2], "{half}");
            let (pa, pb): (f32, f32) = (a[2].parse().unwrap(), b[2].parse().unwrap());
            assert!((pa - pb).abs() <= 1e-2, "{half}");
        }
        let ev = ok(&[
            &["classify", "eval", "-c", s(&run), "--data", s(&data)][..],
            &f16,
        ]
        .concat());
        assert!(ev.contains("120 rows: loss"), "{ev}");
    }
    fails(&[&args[..], &["--device", "cpu"]].concat(), "CPU reference");
    // Text rows, word tokens, a binary head.
    let text = dir.path().join("reviews.csv");
    ok(&[
        "example-data",
        "classify-text",
        "--out",
        s(&text),
        "--rows",
        "60",
    ]);
    let run2 = dir.path().join("txt");
    let out = ok(&[
        "classify",
        "train",
        "--data",
        s(&text),
        "--tokens",
        "words",
        "--binary",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "-c",
        s(&run2),
    ]);
    assert!(out.contains("epoch 2"), "{out}");
    // Unknown labels, ragged numeric rows, NaN, bad CSV quoting, a checkpoint of another task.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "sideways,1,2,3\n").unwrap();
    fails(
        &["classify", "eval", "-c", s(&run), "--data", s(&bad)],
        "label `sideways` was not in the training data",
    );
    std::fs::write(&bad, "rising,1,2,3,4\n").unwrap();
    fails(
        &["classify", "eval", "-c", s(&run), "--data", s(&bad)],
        "not a multiple of --features 3",
    );
    std::fs::write(&bad, "rising,1,NaN,3\n").unwrap();
    fails(
        &["classify", "eval", "-c", s(&run), "--data", s(&bad)],
        "not a finite number",
    );
    std::fs::write(&bad, "a,\"unterminated\nb,2\n").unwrap();
    fails(
        &[
            "classify",
            "train",
            "--data",
            s(&bad),
            "-c",
            s(&dir.path().join("x")),
        ],
        "label",
    );
}

#[test]
fn forecast_train_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("load.csv");
    ok(&[
        "example-data",
        "forecast",
        "--out",
        s(&data),
        "--rows",
        "300",
    ]);
    let run = dir.path().join("fc");
    let out = ok(&[
        "forecast",
        "train",
        "--data",
        s(&data),
        "--target",
        "load",
        "--window",
        "12",
        "--horizon",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "-c",
        s(&run),
    ]);
    assert!(out.contains("naive last value MSE"), "{out}");
    let out = ok(&["forecast", "predict", "-c", s(&run), "--data", s(&data)]);
    // --precision f16 on the device: as many forecasts, each near f32's.
    if common::cli_device() == "gpu" && common::gpu().is_some_and(|c| c.supports_f16()) {
        let half = ok(&[
            "forecast",
            "predict",
            "-c",
            s(&run),
            "--data",
            s(&data),
            "--precision",
            "f16",
        ]);
        assert_eq!(half.lines().count(), out.lines().count(), "{half}");
        for (a, b) in half.lines().zip(out.lines()).skip(1) {
            let v = |l: &str| -> f32 { l.split(',').nth(1).unwrap().parse().unwrap() };
            assert!(
                (v(a) - v(b)).abs() <= 2e-2 * v(b).abs().max(1.0),
                "{half}\n{out}"
            );
        }
    }
    // The last 12 rows, normalised with the saved statistics, through the CPU reference.
    let c = best_checkpoint(&run);
    let meta: serde_json::Value = serde_json::from_str(&c.extra["forecast"]).unwrap();
    let stat = |k: &str| -> Vec<f32> { serde_json::from_value(meta[k].clone()).unwrap() };
    let (mean, std) = (stat("mean"), stat("std"));
    let series: Vec<Vec<f32>> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let x: Vec<f32> = series[series.len() - 12..]
        .iter()
        .flat_map(|r| r.iter().enumerate().map(|(k, &v)| (v - mean[k]) / std[k]))
        .collect();
    let pred = reference_predict(&c, &Batch::features(&x, 1, 12));
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 3, "header + 2 forecasts:\n{out}");
    assert_eq!(got[0], "step,load");
    for (h, p) in pred.iter().enumerate() {
        let (step, value) = got[h + 1].split_once(',').unwrap();
        assert_eq!(step, (301 + h).to_string());
        let want = *p as f64 * std[0] as f64 + mean[0] as f64;
        let v: f64 = value.parse().unwrap();
        assert!(
            (v - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "step {step}: {v} vs reference {want}"
        );
    }
    let bad = dir.path().join("ragged.csv");
    std::fs::write(&bad, "a,b\n1,2\n3\n").unwrap();
    fails(
        &[
            "forecast",
            "train",
            "--data",
            s(&bad),
            "-c",
            s(&dir.path().join("y")),
        ],
        "row 3 has 1 columns",
    );
    fails(
        &[
            "forecast",
            "train",
            "--data",
            s(&data),
            "--target",
            "nope",
            "-c",
            s(&dir.path().join("z")),
        ],
        "--target `nope` is not a column",
    );
    fails(
        &["classify", "eval", "-c", s(&run), "--data", s(&data)],
        "not a classifier checkpoint",
    );
}

#[test]
fn summary_matches_pytorch_and_keras_counts() {
    let out = ok(&[
        "summary", "--kind", "lm", "--vocab", "65", "--embed", "256", "--hidden", "1024",
    ]);
    for n in ["16,640", "3,938,304", "66,625", "Total params: 4,021,569"] {
        assert!(out.contains(n), "missing {n}:\n{out}");
    }
    // LSTM of the same sizes: 4·1024·(256+1024) + 8·1024 in PyTorch.
    assert!(out.contains("5,251,072"), "{out}");
    let out = ok(&[
        "summary",
        "--kind",
        "classifier",
        "--features",
        "10",
        "--hidden",
        "256",
        "--outputs",
        "1",
    ]);
    assert!(
        out.contains("205,824") && out.contains("Total params: 206,081"),
        "{out}"
    );
}

#[test]
fn bench_prints_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let _ = dir;
    let out = ok(&["bench", "--quick", "--seconds", "0.01", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert!(v["results"][0]["cpu_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let c = d("run");
    fails(
        &["train", "--text", s(&d("missing.txt")), "-c", s(&c)],
        "missing.txt",
    );
    std::fs::write(d("empty.txt"), "").unwrap();
    fails(
        &["train", "--text", s(&d("empty.txt")), "-c", s(&c)],
        "is empty",
    );
    std::fs::write(d("bin.txt"), [0xffu8, 0xfe, 0x00, 0x41]).unwrap();
    fails(
        &["train", "--text", s(&d("bin.txt")), "-c", s(&c)],
        "not UTF-8",
    );
    std::fs::write(d("short.txt"), "tiny").unwrap();
    fails(
        &["train", "--text", s(&d("short.txt")), "-c", s(&c)],
        "fewer than one sequence",
    );
    fails(
        &["train", "--hidden", "0", "-c", s(&c)],
        "--hidden must be at least 1",
    );
    fails(
        &["train", "--seq-len", "0", "-c", s(&c)],
        "--seq-len must be at least 1",
    );
    fails(
        &[
            "classify",
            "train",
            "--data",
            s(&d("nope.csv")),
            "-c",
            s(&c),
        ],
        "nope.csv",
    );
    std::fs::write(d("empty.csv"), "").unwrap();
    fails(
        &[
            "classify",
            "train",
            "--data",
            s(&d("empty.csv")),
            "-c",
            s(&c),
        ],
        "is empty",
    );
    // A corrupt checkpoint, and a checkpoint of a different model when resuming.
    std::fs::create_dir_all(d("broken")).unwrap();
    std::fs::write(d("broken").join("last.safetensors"), b"garbage").unwrap();
    fails(
        &["generate", "-c", s(&d("broken"))],
        "not a safetensors file",
    );
    fails(
        &["train", "-c", s(&d("broken")), "--resume"],
        "not a safetensors file",
    );
    fails(&["generate", "-c", s(&d("nothing-here"))], "nothing-here");
    fails(
        &["train", "--device", "banana", "-c", s(&c)],
        "--device must be auto, gpu, cpu or an adapter index",
    );
    // The same value from the environment names the variable; an empty one is unset.
    let o = Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", "garbage")
        .args(["summary", "--kind", "lm", "--vocab", "5"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "summary computes nothing: {}",
        stderr(&o)
    );
    let with_env = |v: &str| {
        Command::new(env!("CARGO_BIN_EXE_gru"))
            .env("GRU_DEVICE", v)
            .args([
                "train", "--steps", "1", "--hidden", "4", "--embed", "4", "--batch", "2",
            ])
            .args([
                "--seq-len",
                "4",
                "--sample-length",
                "0",
                "-q",
                "--force",
                "-c",
                s(&c),
            ])
            .output()
            .unwrap()
    };
    let o = with_env("garbage");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the GRU_DEVICE environment variable must be auto, gpu, cpu or an adapter index, found `garbage`"),
        "{err}"
    );
    let o = with_env("");
    assert!(
        o.status.success(),
        "GRU_DEVICE=\"\" is unset: {}",
        stderr(&o)
    );
}

/// Starts `gru args`, waits (at most a minute) for a stderr line containing `ready`,
/// sends SIGINT, and returns the exit status and the rest of stderr.
#[cfg(unix)]
fn interrupt_after(args: &[&str], ready: &str) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let needle = ready.to_string();
    // A reader thread, so a line that never comes fails the test instead of hanging it.
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(err).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            let hit = line.contains(&needle);
            seen += &line;
            seen.push('\n');
            if hit {
                let _ = tx.send(());
                break;
            }
        }
        let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
        seen + &rest.join("\n")
    });
    let started = rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok();
    let pid = child.id().to_string();
    // The shell's built-in kill: no procps needed on slim CI images.
    assert!(Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(started, "gru {args:?} never printed `{ready}`:\n{text}");
    (status, text)
}

/// The handler is in place before the first line, so Ctrl-C right after it saves `last`
/// (never `best`), exits 130 and says how to resume.
#[track_caller]
fn interrupted_cleanly(status: std::process::ExitStatus, text: &str, run: &Path) {
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains("interrupted") && text.contains("--resume"),
        "{text}"
    );
    assert!(run.join("last.safetensors").exists(), "{text}");
    assert!(!run.join("best.safetensors").exists(), "{text}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (status, rest) = interrupt_after(
        &[
            "train",
            "-c",
            s(&run),
            "--hidden",
            "16",
            "--embed",
            "8",
            "--seq-len",
            "16",
            "--batch",
            "4",
            "--steps",
            "1000000",
            "--eval-every",
            "1000000",
        ],
        "training on",
    );
    interrupted_cleanly(status, &rest, &run);
    let step: u64 = rest
        .split("interrupted at step ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let target = (step + 3).to_string();
    let out = ok(&[
        "train",
        "-c",
        s(&run),
        "--resume",
        "--steps",
        &target,
        "--sample-length",
        "0",
    ]);
    assert!(
        out.contains(&format!("step {target}: training loss")),
        "{out}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_classify_and_forecast_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ramps.csv");
    ok(&[
        "example-data",
        "classify-numeric",
        "--out",
        s(&data),
        "--rows",
        "400",
    ]);
    let run = dir.path().join("clf");
    let (status, text) = interrupt_after(
        &[
            "classify",
            "train",
            "--data",
            s(&data),
            "--features",
            "3",
            "--epochs",
            "100000",
            "--batch",
            "2",
            "-c",
            s(&run),
        ],
        "training rows",
    );
    interrupted_cleanly(status, &text, &run);
    ok(&[
        "classify",
        "train",
        "--data",
        s(&data),
        "--features",
        "3",
        "--epochs",
        "1",
        "--batch",
        "2",
        "-c",
        s(&run),
        "--resume",
        "-q",
    ]);
    let series = dir.path().join("load.csv");
    ok(&[
        "example-data",
        "forecast",
        "--out",
        s(&series),
        "--rows",
        "400",
    ]);
    let run = dir.path().join("fc");
    let (status, text) = interrupt_after(
        &[
            "forecast",
            "train",
            "--data",
            s(&series),
            "--epochs",
            "100000",
            "--batch",
            "1",
            "-c",
            s(&run),
        ],
        "forecasting",
    );
    interrupted_cleanly(status, &text, &run);
}

/// Two steps of a tiny language model with `--device auto` (and `extra` flags) into a
/// run folder under `dir`; it must succeed.
fn tiny_auto_train(dir: &Path, extra: &[&str]) -> Output {
    let run = dir.join("r");
    let mut args = vec![
        "train",
        "--device",
        "auto",
        "--steps",
        "2",
        "--seq-len",
        "8",
        "--batch",
        "2",
        "--hidden",
        "8",
        "-c",
        s(&run),
    ];
    args.extend_from_slice(extra);
    let o = gru(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Where no usable adapter exists, `auto` trains on the CPU reference and says so in one
/// line (DX12 has no adapters on Linux, which stands in for a machine without a driver).
#[cfg(target_os = "linux")]
#[test]
fn auto_without_an_adapter_uses_the_cpu_reference() {
    let dir = tempfile::tempdir().unwrap();
    let o = tiny_auto_train(dir.path(), &["--backend", "dx12", "--sample-length", "5"]);
    let err = stderr(&o);
    assert_eq!(err.matches("CPU reference path").count(), 1, "{err}");
    assert!(stdout(&o).contains("step 2: training loss"));
}

/// Re-running a command with the default folder starts `runs/lm-2` instead of refusing
/// or clobbering `runs/lm`; generate and --resume pick the newest run.
#[test]
fn default_run_folders_never_clobber_and_the_newest_is_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "abcabcabd ".repeat(30)).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gru"))
            .env("GRU_DEVICE", common::cli_device())
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let train = [
        "train",
        "--text",
        "t.txt",
        "--hidden",
        "8",
        "--embed",
        "4",
        "--seq-len",
        "8",
        "--batch",
        "2",
        "--steps",
        "3",
        "--sample-length",
        "0",
    ];
    assert!(run(&train).contains("runs/lm/last.safetensors"));
    assert!(run(&train).contains("runs/lm-2/last.safetensors"));
    let mut resume = train[..train.len() - 4].to_vec();
    resume.extend(["--sample-length", "0", "--resume", "--steps", "5"]);
    let out = run(&resume);
    assert!(
        out.contains("step 5") && out.contains("runs/lm-2/last.safetensors"),
        "{out}"
    );
    assert!(run(&["generate", "--prompt", "ab", "--length", "5"]).starts_with("ab"));
    let o = Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .current_dir(dir.path())
        .args(["classify", "eval", "--data", "t.txt"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("no trained model under runs/classify*"),
        "{}",
        stderr(&o)
    );
}

/// With only a software adapter (llvmpipe, as under CI), `auto` runs models on the CPU
/// reference before Mesa 25 (faster there; see the README) and on the adapter from Mesa
/// 25 on (faster there), and says which in one line; `gru bench` still times the
/// adapter. With a hardware GPU, auto uses it.
#[test]
fn auto_prefers_the_cpu_reference_over_a_software_adapter() {
    let Some(ctx) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = tiny_auto_train(dir.path(), &["--sample-length", "0"]);
    let err = stderr(&o);
    // llvmpipe from Mesa 25 on (with 2 cores or more) is faster than the reference.
    let info = &ctx.adapter_info().driver_info;
    let mesa = info
        .find("Mesa ")
        .and_then(|at| info[at + 5..].split('.').next()?.parse::<u32>().ok());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let software_faster = mesa.is_some_and(|m| m >= 25) && cores >= 2;
    if ctx.is_software() && software_faster {
        assert_eq!(
            err.matches("trains faster than the CPU reference").count(),
            1,
            "{err}"
        );
        assert!(err.contains("--device cpu uses the CPU reference"), "{err}");
    } else if ctx.is_software() {
        assert_eq!(
            err.matches("slower than the CPU reference").count(),
            1,
            "{err}"
        );
        assert!(err.contains("--device gpu uses the adapter"), "{err}");
        let b = gru(&[
            "bench",
            "--device",
            "auto",
            "--shape",
            "1,2,2,2",
            "--no-cpu",
            "--seconds",
            "0.01",
        ]);
        let all = format!("{}{}", stdout(&b), stderr(&b));
        assert!(
            all.contains("running on") && all.contains("software adapter"),
            "{all}"
        );
    } else {
        assert!(
            err.contains("device:") && !err.contains("CPU reference"),
            "{err}"
        );
    }
    assert!(
        std::env::var_os("CI").is_none() || ctx.is_software(),
        "CI is expected to have only llvmpipe"
    );
}
