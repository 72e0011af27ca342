//! Standard output and signals: every command that prints ends quietly with status 0
//! when its reader closes the pipe (`gru ... | head -1`) and fails with one `error:`
//! line and status 1 when the write fails otherwise (`> /dev/full`), never with a panic;
//! SIGTERM during training saves like Ctrl-C and exits 143; Ctrl-C ends the end-of-run
//! sample; generation streams in memory that does not grow with its length.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use gru_engine::generate::Sampling;
use gru_engine::model::{ModelConfig, ModelParams};
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};

const GRU: &str = env!("CARGO_BIN_EXE_gru");

#[path = "counting/mod.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

fn run(dir: &Path, args: &[&str], stdout: Stdio) -> Output {
    Command::new(GRU)
        .current_dir(dir)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[track_caller]
fn ok(dir: &Path, args: &[&str]) {
    let o = run(dir, args, Stdio::null());
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A small language model, classifier and forecaster in `dir` (runs `lm`, `clf`, `fc`).
fn models(dir: &Path) {
    text_in(dir);
    ok(
        dir,
        &[
            "example-data",
            "classify-text",
            "--rows",
            "40",
            "--out",
            "c.csv",
        ],
    );
    ok(
        dir,
        &[
            "example-data",
            "forecast",
            "--rows",
            "120",
            "--out",
            "f.csv",
        ],
    );
    ok(dir, &lm_args("lm"));
    ok(
        dir,
        &[
            "classify", "train", "--data", "c.csv", "--epochs", "1", "--batch", "8", "--hidden",
            "8", "--device", "cpu", "-c", "clf", "-q",
        ],
    );
    ok(
        dir,
        &[
            "forecast", "train", "--data", "f.csv", "--target", "load", "--epochs", "1", "--batch",
            "8", "--hidden", "8", "--window", "8", "--device", "cpu", "-c", "fc", "-q",
        ],
    );
}

/// `gru train` of a tiny model on a.txt into `run` on the CPU reference, then `extra`.
fn tiny_train<'a>(run: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--text",
        "a.txt",
        "--hidden",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "8",
        "--device",
        "cpu",
        "-c",
        run,
    ];
    a.extend_from_slice(extra);
    a
}

/// A small text to learn, as a.txt in `dir`.
fn text_in(dir: &Path) {
    std::fs::write(
        dir.join("a.txt"),
        "the quick brown fox jumps over it\n".repeat(30),
    )
    .unwrap();
}

fn lm_args(run: &str) -> Vec<&str> {
    vec![
        "train",
        "--text",
        "a.txt",
        "--steps",
        "4",
        "--hidden",
        "8",
        "--embed",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "8",
        "--device",
        "cpu",
        "--sample-length",
        "40",
        "-c",
        run,
        "--force",
    ]
}

/// Every command that prints to standard output.
fn printing_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["summary", "--kind", "lm", "--vocab", "10", "--hidden", "8"],
        vec!["summary", "--checkpoint", "lm"],
        vec!["devices"],
        vec!["example-data", "forecast", "--rows", "30", "--out", "g.csv"],
        lm_args("lm2"),
        vec!["generate", "-c", "lm", "-n", "300", "--device", "cpu", "-q"],
        vec![
            "classify", "eval", "-c", "clf", "--data", "c.csv", "--device", "cpu", "-q",
        ],
        vec![
            "classify", "predict", "-c", "clf", "--input", "c.csv", "--device", "cpu", "-q",
        ],
        vec![
            "forecast", "predict", "-c", "fc", "--data", "f.csv", "--device", "cpu", "-q",
        ],
        vec!["export", "-c", "lm", "-o", "lm.onnx"],
        vec!["bench", "--quick", "--seconds", "0.01", "--device", "cpu"],
        // What clap prints: it would exit 0 whatever became of the write.
        vec!["--help"],
        vec!["train", "--help"],
        vec!["--version"],
    ]
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_failed_write_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    models(d);
    for args in printing_commands() {
        // The reader is gone before the command writes its first byte.
        let mut child = Command::new(GRU)
            .current_dir(d)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?} into a closed pipe:\n{err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?} into a closed pipe:\n{err}"
        );

        let full = std::fs::File::create("/dev/full").unwrap();
        let o = run(d, &args, full.into());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?} > /dev/full:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} > /dev/full:\n{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{args:?} > /dev/full:\n{err}");
        assert!(
            lines[0].contains("standard output"),
            "{args:?}: {}",
            lines[0]
        );
    }
}

/// Starts `gru args` in `dir`, waits for a stderr line containing `ready` (for 1.5 s
/// where `ready` is empty), sends
/// `signal`, and returns the exit status and stderr.
fn signal_after(dir: &Path, args: &[&str], ready: &str, signal: &str) -> (Option<i32>, String) {
    let mut child = Command::new(GRU)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = ready.to_string();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut sent = false;
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            if !sent && line.contains(&needle) {
                let _ = tx.send(());
                sent = true;
            }
            seen += &line;
            seen.push('\n');
        }
        seen
    });
    // No line to wait for: give the command a moment to start.
    let started = if ready.is_empty() {
        std::thread::sleep(Duration::from_millis(1500));
        true
    } else {
        rx.recv_timeout(Duration::from_secs(60)).is_ok()
    };
    let pid = child.id().to_string();
    assert!(Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(started, "{args:?} never printed `{ready}`:\n{text}");
    (status.code(), text)
}

#[test]
fn sigterm_saves_like_ctrl_c_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    text_in(d);
    let (code, text) = signal_after(
        d,
        &tiny_train("run", &["--steps", "1000000"]),
        "training on",
        "TERM",
    );
    assert_eq!(code, Some(143), "{text}");
    assert!(
        text.contains("interrupted") && text.contains("--resume"),
        "{text}"
    );
    assert!(d.join("run/last.safetensors").exists(), "{text}");
    // The lock is released: the run resumes at once.
    ok(
        d,
        &[
            "train",
            "--text",
            "a.txt",
            "--steps",
            "1",
            "--device",
            "cpu",
            "-c",
            "run",
            "--resume",
            "--sample-length",
            "0",
        ],
    );
}

#[test]
fn ctrl_c_ends_the_end_of_run_sample() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    text_in(d);
    let start = std::time::Instant::now();
    let (code, text) = signal_after(
        d,
        &tiny_train("run", &["--steps", "2", "--sample-length", "100000000"]),
        // The last evaluation's line: the sample starts right after it.
        "val loss",
        "INT",
    );
    // The run had finished and saved: the sample is cut short, the run still succeeds.
    assert_eq!(code, Some(0), "{text}");
    assert!(start.elapsed() < Duration::from_secs(60), "{text}");
    assert!(d.join("run/last.safetensors").exists());
}

/// Streamed generation keeps no tokens: 100,000 tokens peak where 1,000 do (the CPU
/// reference; the GPU route is checked in the library's route tests).
#[test]
fn streamed_generation_does_not_grow_with_its_length() {
    let params = ModelParams::init(ModelConfig::language_model(7, 4, 8), 3).unwrap();
    let mut t = CpuTrainer::new(params, TrainOptions::adam(1e-3)).unwrap();
    let s = Sampling::new(1.0).seed(5);
    let mut peak = |n: usize| {
        let (done, bytes) =
            counting::peak_during(|| t.generate_stream(&[1, 2], n, &s, &mut |_| true).unwrap());
        assert_eq!(done, n);
        bytes
    };
    let (small, large) = (peak(1_000), peak(100_000));
    assert!(
        large < small + (64 << 10),
        "1,000 tokens peak at {small} bytes, 100,000 at {large}"
    );
}

/// Ctrl-C while a text is still being read (a FIFO fed slowly, so reading never ends by
/// itself) stops the command at once: status 130, nothing written.
#[test]
fn ctrl_c_while_a_text_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("slow.txt");
    if !Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        return;
    }
    let feeding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (fifo, feeding) = (fifo.clone(), feeding.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            while feeding.load(Ordering::Relaxed) {
                if f.write_all(&b"some text to learn\n".repeat(100)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let fifo_arg = fifo.to_str().unwrap().to_string();
    let (code, text) = signal_after(
        d,
        &["train", "--text", &fifo_arg, "--device", "cpu", "-c", "run"],
        "",
        "INT",
    );
    feeding.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    assert_eq!(code, Some(130), "{text}");
    assert!(text.contains("interrupted while reading"), "{text}");
    assert!(!d.join("run").exists(), "{text}");
}
