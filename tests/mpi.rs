//! Data-parallel training over MPI (feature `mpi`; `cargo test --release --features mpi
//! --test mpi`, with Open MPI's `mpirun`): `gru train`, `gru classify train` and
//! `gru forecast train` under `mpirun -np 2` equal the same command in one process (the
//! loss at every evaluation and every parameter of the checkpoint, within
//! 1e-5·max(1, |value|): only the order of the sums differs), on the CPU reference and
//! on the GPU; checkpoints resume across rank counts; a batch that does not divide over
//! the ranks is one clear error; a killed rank ends the job.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gru_engine::checkpoint::Checkpoint;

/// `gru args` in `dir`: alone (`ranks` 1, no launcher) or under `mpirun -np ranks`.
fn gru(ranks: usize, dir: &Path, args: &[&str]) -> Option<Output> {
    let bin = env!("CARGO_BIN_EXE_gru");
    let mut cmd = if ranks == 1 {
        Command::new(bin)
    } else {
        let mut c = Command::new("mpirun");
        let np = ranks.to_string();
        c.args(["--allow-run-as-root", "--oversubscribe", "-np", &np, bin]);
        c
    };
    match cmd.args(args).current_dir(dir).output() {
        Ok(o) => Some(o),
        Err(e) if std::env::var_os("CI").is_some() => panic!("mpirun could not start: {e}"),
        Err(e) => {
            eprintln!("skipping: mpirun could not start: {e}");
            None
        }
    }
}

#[track_caller]
fn ok(ranks: usize, dir: &Path, args: &[&str]) -> Option<String> {
    let o = gru(ranks, dir, args)?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{ranks} rank(s): gru {args:?} failed:\n{err}"
    );
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The (step, training loss, validation loss) of every `--json` evaluation line.
fn losses(stdout: &str) -> Vec<(u64, f64, Option<f64>)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("train_loss").is_some())
        .map(|v| {
            let step = v["step"].as_u64().unwrap();
            (
                step,
                v["train_loss"].as_f64().unwrap(),
                v["val_loss"].as_f64(),
            )
        })
        .collect()
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

/// The same losses and the same parameters in both runs' last checkpoints.
fn same_runs(case: &str, (a, a_dir): (&str, &Path), (b, b_dir): (&str, &Path)) {
    let (la, lb) = (losses(a), losses(b));
    assert!(
        !la.is_empty() && la.len() == lb.len(),
        "{case}: {la:?} vs {lb:?}"
    );
    for ((s, ta, va), (_, tb, vb)) in la.iter().zip(&lb) {
        close(&format!("{case}: training loss at step {s}"), *ta, *tb);
        if let (Some(va), Some(vb)) = (va, vb) {
            close(&format!("{case}: validation loss at step {s}"), *va, *vb);
        }
    }
    let pa = Checkpoint::load(&a_dir.join("last.safetensors"))
        .unwrap()
        .params;
    let pb = Checkpoint::load(&b_dir.join("last.safetensors"))
        .unwrap()
        .params;
    for (info, (x, y)) in pa.infos().iter().zip(pa.tensors().iter().zip(pb.tensors())) {
        for (i, (&u, &v)) in x.iter().zip(y).enumerate() {
            close(&format!("{case}: {}[{i}]", info.name), u as f64, v as f64);
        }
    }
}

/// `args` (with `-c` appended) in one process and on 2 ranks, compared.
fn one_and_two(case: &str, dir: &Path, args: &[&str]) {
    let run = |ranks: usize| {
        let out = dir.join(format!("{}-{ranks}", case.replace(' ', "-")));
        let mut all: Vec<&str> = args.to_vec();
        let path = out.to_str().unwrap().to_string();
        all.extend(["-c", &path]);
        ok(ranks, dir, &all).map(|s| (s, out))
    };
    let Some((one, one_dir)) = run(1) else { return };
    let Some((two, two_dir)) = run(2) else { return };
    same_runs(case, (&two, &two_dir), (&one, &one_dir));
}

fn devices() -> Vec<&'static str> {
    let gpu = common::cli_device() == "gpu";
    if gpu {
        vec!["cpu", "gpu"]
    } else {
        vec!["cpu"]
    }
}

#[test]
fn language_model_on_two_ranks_equals_one_process() {
    for device in devices() {
        let dir = tempfile::tempdir().unwrap();
        let args_line = format!(
            "train --steps 10 --batch 8 --seq-len 12 --hidden 16 --layers 2 --dropout 0.2 \
             --clip-norm 1 --eval-every 1 --json --sample-length 0 --device {device}"
        );
        let args: Vec<&str> = args_line.split_whitespace().collect();
        one_and_two(&format!("language model on {device}"), dir.path(), &args);
    }
}

/// Rank 0 alone prints, and names the ranks the training runs on; the other rank
/// writes nothing.
#[test]
fn rank_zero_alone_reports() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = "train --steps 4 --batch 4 --seq-len 8 --hidden 8 --eval-every 2 \
                           --sample-length 0 --device cpu -c run"
        .split_whitespace()
        .collect();
    let Some(o) = gru(2, dir.path(), &args) else {
        return;
    };
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(err.contains("on CPU reference (rank 0 of 2)"), "{err}");
    assert_eq!(err.matches("training on").count(), 1, "{err}");
    assert_eq!(out.matches("step 4:").count(), 1, "{out}");
    assert!(dir.path().join("run/last.safetensors").exists());
}

#[test]
fn bidirectional_classifier_and_forecaster_on_two_ranks_equal_one_process() {
    for device in devices() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 100 rows: 90 to train in batches of 8, the last of 2 rows (one per rank).
        ok(
            1,
            d,
            &[
                "example-data",
                "classify-text",
                "--rows",
                "100",
                "--out",
                "reviews.csv",
            ],
        );
        let args_line = format!(
            "classify train --data reviews.csv --bidirectional --epochs 2 --batch 8 \
             --hidden 8 --json --device {device}"
        );
        let args: Vec<&str> = args_line.split_whitespace().collect();
        one_and_two(&format!("classifier on {device}"), d, &args);
        ok(
            1,
            d,
            &[
                "example-data",
                "forecast",
                "--rows",
                "300",
                "--out",
                "load.csv",
            ],
        );
        let args = [
            "forecast", "train", "--data", "load.csv", "--target", "load", "--epochs", "2",
            "--batch", "8", "--hidden", "8", "--json", "--device", device,
        ];
        one_and_two(&format!("forecaster on {device}"), d, &args);
    }
}

/// A checkpoint of 2 ranks resumes in one process and one of a single process on 2
/// ranks, both ending where 20 steps in one process end.
#[test]
fn checkpoints_resume_across_rank_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |steps: &'static str, dir: &'static str| {
        vec![
            "train",
            "--steps",
            steps,
            "--batch",
            "8",
            "--seq-len",
            "12",
            "--hidden",
            "16",
            "--eval-every",
            "5",
            "--json",
            "--sample-length",
            "0",
            "--device",
            "cpu",
            "-c",
            dir,
        ]
    };
    let Some(straight) = ok(1, d, &args("20", "straight")) else {
        return;
    };
    for (first, then, dir) in [(2, 1, "two_then_one"), (1, 2, "one_then_two")] {
        let _ = ok(first, d, &args("10", dir));
        let mut resume = args("20", dir);
        resume.push("--resume");
        let Some(out) = ok(then, d, &resume) else {
            return;
        };
        // The resumed run reports steps 15 and 20, as the straight one's last two.
        let tail = losses(&straight).split_off(2);
        let got = losses(&out);
        assert_eq!(got.len(), tail.len(), "{dir}: {got:?}");
        for ((s, a, _), (_, b, _)) in got.iter().zip(&tail) {
            close(&format!("{dir}: loss at step {s}"), *a, *b);
        }
        same_runs(dir, (&out, &d.join(dir)), (&out, &d.join("straight")));
    }
}

#[test]
fn a_batch_that_does_not_divide_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(o) = gru(
        3,
        dir.path(),
        &["train", "--steps", "2", "--batch", "8", "--device", "cpu"],
    ) else {
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("--batch 8 over 3 ranks: expected a multiple of 3"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists(), "nothing is written");
}

/// `gru train ARGS` started under `mpirun -np 2` in `dir`, stderr piped; `None` where
/// mpirun cannot start outside CI.
fn start_job(dir: &Path, args: &str) -> Option<std::process::Child> {
    let bin = env!("CARGO_BIN_EXE_gru");
    let mut all = vec![
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        "2",
        bin,
        "train",
    ];
    all.extend(args.split_whitespace());
    match Command::new("mpirun")
        .args(all)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(j) => Some(j),
        Err(e) if std::env::var_os("CI").is_some() => panic!("mpirun could not start: {e}"),
        Err(_) => None,
    }
}

/// Waits up to 60 s for `path` to exist.
fn wait_for(path: &Path) -> bool {
    let start = Instant::now();
    while !path.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    path.exists()
}

/// Sends `signal` to one of the job's ranks, then waits (at most 30 s) for the job to
/// end and returns its status.
fn signal_a_rank(job: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let ranks = Command::new("pgrep")
        .args(["-P", &job.id().to_string()])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&ranks.stdout).to_string();
    let one = pids
        .lines()
        .last()
        .expect("a rank process")
        .trim()
        .to_string();
    Command::new("kill").args([signal, &one]).status().unwrap();
    let sent = Instant::now();
    loop {
        if let Some(s) = job.try_wait().unwrap() {
            return s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "the job still runs 30 s after {signal}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A rank killed mid-run ends the job, non-zero, within seconds; the checkpoint written
/// before stays readable.
#[test]
fn a_killed_rank_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut job) = start_job(
        dir.path(),
        "--steps 1000000 --batch 8 --seq-len 12 --hidden 16 --eval-every 20 --device cpu \
         --quiet -c run",
    ) else {
        return;
    };
    // Wait for the first checkpoint, then kill one rank.
    let last = dir.path().join("run/last.safetensors");
    assert!(wait_for(&last), "no checkpoint within 60 s");
    let status = signal_a_rank(&mut job, "-9");
    assert!(!status.success());
    Checkpoint::load(&last).unwrap();
}

/// `gru bench --train` under mpirun times data-parallel steps on every rank and reports
/// rank 0's figures: 2 ranks, the sums' share of a step, and at least the flat gradient
/// summed per step; without --train it is one clear error.
#[test]
fn bench_times_data_parallel_training() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> =
        "bench --train --device cpu --vocab 20 -H 8 --batch 4 -T 8 --seconds 0.1 --json"
            .split_whitespace()
            .collect();
    let Some(out) = ok(2, dir.path(), &args) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let row = &v["train_ranks"][0];
    assert_eq!(row["ranks"], 2, "{out}");
    assert!(row["steps"].as_u64().unwrap() >= 2, "{out}");
    let share = row["sums_share"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&share), "{out}");
    let params = v["model"]["parameters"].as_u64().unwrap();
    assert!(
        row["bytes_summed_per_step"].as_u64().unwrap() >= 4 * params,
        "{out}"
    );
    let Some(o) = gru(2, dir.path(), &["bench", "--quick"]) else {
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("add --train"), "{err}");
}

/// SIGINT to one rank stops every rank at the same step; rank 0 saves `last` and says
/// so, and the job ends non-zero.
#[test]
fn an_interrupted_rank_stops_every_rank_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut job) = start_job(
        dir.path(),
        "--steps 1000000 --batch 8 --seq-len 12 --hidden 16 --eval-every 1000000 \
         --device cpu -c run",
    ) else {
        return;
    };
    // The run has started once rank 0 wrote its metrics file.
    assert!(
        wait_for(&dir.path().join("run/metrics.csv")),
        "no metrics within 60 s"
    );
    std::thread::sleep(Duration::from_millis(500));
    let status = signal_a_rank(&mut job, "-INT");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("interrupted at step"), "{err}");
    Checkpoint::load(&dir.path().join("run/last.safetensors")).unwrap();
}

/// `mpirun -np 1 gru A : -np 1 gru B` in `dir`: two ranks that run different commands.
/// Ends within 30 s without a signal (killed and failed otherwise); returns stderr.
fn two_commands(dir: &Path, a: &str, b: &str) -> Option<(std::process::ExitStatus, String)> {
    let bin = env!("CARGO_BIN_EXE_gru");
    let mut all: Vec<&str> = vec!["--allow-run-as-root", "--oversubscribe", "-np", "1", bin];
    all.extend(a.split_whitespace());
    all.extend([":", "-np", "1", bin]);
    all.extend(b.split_whitespace());
    let mut job = match Command::new("mpirun")
        .args(&all)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(j) => j,
        Err(e) if std::env::var_os("CI").is_some() => panic!("mpirun could not start: {e}"),
        Err(_) => return None,
    };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = job.kill();
            panic!("ranks running `{a}` and `{b}` still ran after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut err).unwrap();
    Some((status, err))
}

/// Ranks that disagree on the model, the data, the steps or the window end non-zero
/// within seconds, by exit status (no rank aborts or waits in a sum of another length),
/// with one line from rank 0 naming the first difference and both values; nothing is
/// written.
#[test]
fn ranks_that_disagree_end_at_once_naming_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.txt"), "abcdefghijkl mnopq\n".repeat(40)).unwrap();
    std::fs::write(d.join("b.txt"), "abcdefghijkl mnopqz\n".repeat(40)).unwrap();
    ok(
        1,
        d,
        &[
            "example-data",
            "classify-text",
            "--rows",
            "60",
            "--out",
            "c.csv",
        ],
    );
    ok(
        1,
        d,
        &[
            "example-data",
            "forecast",
            "--rows",
            "200",
            "--out",
            "f.csv",
        ],
    );
    let lm = "train --device cpu --hidden 8 --batch 4 --seq-len 8 --sample-length 0 -c run";
    let clf = "classify train --data c.csv --device cpu --epochs 1 --batch 4 -c run";
    let fc = "forecast train --data f.csv --target load --device cpu --epochs 1 --batch 4 -c run";
    let cases = [
        (
            format!("{lm} --steps 5 --text a.txt"),
            format!("{lm} --steps 5 --text b.txt"),
            "rank 1's text is 800 characters",
        ),
        (
            format!("{clf} --hidden 8"),
            format!("{clf} --hidden 64"),
            "rank 1's model hidden_size is 64, rank 0's is 8",
        ),
        (
            format!("{lm} --steps 5 --text a.txt"),
            format!("{lm} --steps 7 --text a.txt"),
            "rank 1's steps is 0..7, rank 0's is 0..5",
        ),
        (
            format!("{fc} --hidden 8 --window 24"),
            format!("{fc} --hidden 8 --window 10"),
            "rank 1's window is 10, rank 0's is 24",
        ),
    ];
    for (a, b, want) in cases {
        let Some((status, err)) = two_commands(d, &a, &b) else {
            return;
        };
        assert_eq!(status.code(), Some(1), "`{a}` against `{b}`: {err}");
        assert!(err.contains(want), "`{a}` against `{b}`: {err}");
        assert_eq!(
            err.matches("the ranks disagree").count(),
            1,
            "one line, from rank 0: {err}"
        );
        assert!(!d.join("run").exists(), "nothing is written");
    }
}
