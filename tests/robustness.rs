//! Nothing a user or a file can do makes `gru` crash, lose a model or eat the machine:
//! each case ends in one `error:` line and exit status 1, with the old checkpoint
//! byte-identical, and memory bounded where memory is the point (the child runs under
//! `ulimit -v`, so an allocation the loader did not refuse would abort it, exit 134).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use gru_engine::checkpoint::{Checkpoint, CheckpointDir};
use gru_engine::interop::{write_npz, write_safetensors, Tensor, Tensors};
use gru_engine::model::{ModelConfig, ModelParams};

const GRU: &str = env!("CARGO_BIN_EXE_gru");

/// Address-space limit for children that must stay small (KiB).
const ULIMIT_KIB: u64 = 3 << 20;

fn gru_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(GRU)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// `gru args` under `ulimit -v`: an unchecked large allocation aborts it.
fn gru_limited(cwd: &Path, args: &[&str]) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    Command::new("sh")
        .current_dir(cwd)
        .args([
            "-c",
            &format!("ulimit -v {ULIMIT_KIB}; exec '{GRU}' {}", quoted.join(" ")),
        ])
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Exit 1, exactly one `error:` line, containing one of `needles`, no panic.
#[track_caller]
fn failed(o: &Output, needles: &[&str]) -> String {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "panic:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    assert!(
        needles.iter().any(|n| lines[0].contains(n)),
        "`{}` should mention one of {needles:?}",
        lines[0]
    );
    lines[0].to_string()
}

#[track_caller]
fn succeeded(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "failed:\n{out}\n{err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small text to learn.
fn corpus(dir: &Path) -> PathBuf {
    let p = dir.join("small.txt");
    std::fs::write(
        &p,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    p
}

fn train_args<'a>(text: &'a Path, run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--text",
        s(text),
        "-c",
        s(run),
        "--device",
        "cpu",
        "--sample-length",
        "0",
        "-q",
    ];
    // Small defaults unless `extra` sets them.
    for (flag, v) in [
        ("--hidden", "8"),
        ("--embed", "4"),
        ("--seq-len", "8"),
        ("--batch", "4"),
    ] {
        if !extra.contains(&flag) {
            a.extend([flag, v]);
        }
    }
    a.extend_from_slice(extra);
    a
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["last.safetensors", "best.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

/// A trained language model in `dir/name`.
fn trained(dir: &Path, name: &str) -> PathBuf {
    let run = dir.join(name);
    let t = corpus(dir);
    succeeded(&gru_in(
        dir,
        &train_args(&t, &run, &["--steps", "20", "--eval-every", "10"]),
    ));
    run
}

#[test]
fn impossible_sizes_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let x = d.path().join("x");
    // 30 billion parameters: refused with the sizes, nothing created, no abort.
    let o = gru_limited(d.path(), &train_args(&t, &x, &["--hidden", "100000"]));
    let e = failed(&o, &["of memory"]);
    assert!(e.contains("parameters") && e.contains("available"), "{e}");
    assert!(!x.exists(), "a refused run must not leave a folder");
    // 1.6 billion activations per step.
    let o = gru_limited(
        d.path(),
        &train_args(&t, &x, &["--batch", "100000000", "--seq-len", "16"]),
    );
    failed(&o, &["of memory"]);
    // On the default device: the host check (software adapters share host memory) or
    // the device's buffer limit, before any batch is assembled.
    let o = Command::new(GRU)
        .current_dir(d.path())
        .args([
            "train",
            "--text",
            s(&t),
            "-c",
            s(&x),
            "--hidden",
            "16",
            "--batch",
            "10000000",
            "--seq-len",
            "16",
            "-q",
        ])
        .output()
        .unwrap();
    failed(&o, &["of memory", "allows at most"]);
    assert!(!x.exists());
}

#[test]
fn force_never_deletes_before_the_new_run_is_built() {
    let d = tempfile::tempdir().unwrap();
    let run = trained(d.path(), "good");
    let before = snapshot(&run);
    let t = corpus(d.path());
    for bad in [
        &["--force", "--lr=-1"][..],
        &["--force", "--lr", "-1"],
        &["--force", "--clip-norm", "-1"],
        &["--force", "--dropout", "1.5"],
        &["--force", "--seq-len", "0"],
    ] {
        let o = gru_in(d.path(), &train_args(&t, &run, bad));
        failed(&o, &["must be", "dropout"]);
        assert_eq!(snapshot(&run), before, "{bad:?} changed the checkpoint");
    }
    let o = gru_limited(
        d.path(),
        &train_args(&t, &run, &["--force", "--hidden", "100000"]),
    );
    failed(&o, &["of memory"]);
    assert_eq!(snapshot(&run), before);
    // Without --force the folder is refused as before.
    let o = gru_in(d.path(), &train_args(&t, &run, &["--steps", "2"]));
    failed(&o, &["already holds a checkpoint"]);
    assert_eq!(snapshot(&run), before);
}

#[test]
fn clip_norm_must_not_be_negative() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let run = d.path().join("r");
    let o = gru_in(d.path(), &train_args(&t, &run, &["--clip-norm", "-1"]));
    let e = failed(&o, &["--clip-norm must be >= 0"]);
    assert!(e.contains("-1"), "{e}");
    assert!(!run.exists());
}

#[test]
fn non_finite_losses_never_become_best() {
    let d = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::language_model(4, 2, 3);
    let mut c = Checkpoint::from_params(ModelParams::init(cfg, 1).unwrap());
    c.loss = Some(f64::NAN);
    let dir_path = d.path().join("run");
    let mut dir = CheckpointDir::open(&dir_path).unwrap();
    assert!(!dir.save(&c).unwrap(), "NaN must not be best");
    c.loss = None;
    assert!(!dir.save(&c).unwrap(), "no evaluation: last only");
    assert!(!dir.best_path().exists());
    // An old best recorded with a NaN loss is beaten by the next finite one.
    c.loss = Some(f64::NAN);
    c.save(&dir.best_path()).unwrap();
    let mut dir = CheckpointDir::open(&dir_path).unwrap();
    assert_eq!(dir.best_loss(), None);
    c.loss = Some(3.0);
    assert!(dir.save(&c).unwrap());
    c.loss = Some(f64::INFINITY);
    assert!(!dir.save(&c).unwrap());
    assert_eq!(Checkpoint::load(&dir.best_path()).unwrap().loss, Some(3.0));
}

/// The bytes of a safetensors file with `edit` applied to its metadata.
fn edit_meta(
    bytes: &[u8],
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header["__metadata__"].as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    out
}

fn set(m: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: String) {
    m.insert(k.into(), serde_json::Value::String(v));
}

#[test]
fn crafted_checkpoints_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let run = trained(d.path(), "lm");
    let good = std::fs::read(run.join("best.safetensors")).unwrap();
    let model: serde_json::Value = {
        let c = Checkpoint::load(&run.join("best.safetensors")).unwrap();
        serde_json::to_value(c.params.config).unwrap()
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let generate = |p: &Path| {
        gru_limited(
            d.path(),
            &["generate", "-c", s(p), "-n", "5", "--device", "cpu", "-q"],
        )
    };
    // hidden_size 2^34: 6.6 TB if allocated from the metadata.
    let mut m = model.clone();
    m["hidden_size"] = serde_json::json!(1u64 << 34);
    let p = write(
        "huge.safetensors",
        edit_meta(&good, |meta| set(meta, "model", m.to_string())),
    );
    failed(&generate(&p), &["bad file"]);
    // hidden_size 2^19: under the parameter cap, but the tensors are not there.
    let mut m = model.clone();
    m["hidden_size"] = serde_json::json!(1u64 << 19);
    let p = write(
        "big.safetensors",
        edit_meta(&good, |meta| set(meta, "model", m.to_string())),
    );
    failed(&generate(&p), &["has shape", "missing tensor"]);
    // Vocabularies that do not fit the model.
    for (name, vocab, needle) in [
        (
            "empty.safetensors",
            "[]".to_string(),
            "vocabulary lists 0 tokens",
        ),
        (
            "two.safetensors",
            r#"["a","b"]"#.to_string(),
            "vocabulary lists 2 tokens",
        ),
    ] {
        let p = write(name, edit_meta(&good, |meta| set(meta, "vocab", vocab)));
        failed(&generate(&p), &[needle]);
    }
    let c = Checkpoint::load(&run.join("best.safetensors")).unwrap();
    let mut v = c.vocab.clone().unwrap();
    v.reverse();
    let p = write(
        "unsorted.safetensors",
        edit_meta(&good, |meta| {
            set(meta, "vocab", serde_json::to_string(&v).unwrap())
        }),
    );
    failed(&generate(&p), &["sorted list of distinct characters"]);
    // The original still works.
    succeeded(&generate(&run.join("best.safetensors")));
}

fn tensor(shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape,
        data: vec![0.1; n],
    }
}

#[test]
fn crafted_weight_files_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let mut input = Tensors::new();
    input.insert("input".into(), tensor(vec![2, 1, 3]));
    write_safetensors(&p("x.safetensors"), &input, Default::default()).unwrap();
    // Keras: a 0-byte kernel of shape (2^30, 0).
    let mut k = Tensors::new();
    k.insert(
        "kernel".into(),
        Tensor {
            shape: vec![1 << 30, 0],
            data: vec![],
        },
    );
    k.insert("recurrent_kernel".into(), tensor(vec![4, 12]));
    k.insert("bias".into(), tensor(vec![2, 12]));
    write_npz(&p("k.npz"), &k).unwrap();
    let o = gru_limited(
        d.path(),
        &[
            "forward",
            "-w",
            s(&p("k.npz")),
            "--format",
            "keras",
            "-i",
            s(&p("x.safetensors")),
            "-o",
            s(&p("y.safetensors")),
            "--device",
            "cpu",
            "-q",
        ],
    );
    failed(&o, &["has shape", "expected"]);
    let o = gru_limited(
        d.path(),
        &[
            "convert",
            "--from",
            "keras",
            "--to",
            "pytorch",
            s(&p("k.npz")),
            s(&p("c.safetensors")),
        ],
    );
    failed(&o, &["has shape", "expected"]);
    // PyTorch: weight_ih_l0 shaped [0, 2^30].
    let mut t = Tensors::new();
    t.insert(
        "weight_ih_l0".into(),
        Tensor {
            shape: vec![0, 1 << 30],
            data: vec![],
        },
    );
    t.insert("weight_hh_l0".into(), tensor(vec![12, 4]));
    t.insert("bias_ih_l0".into(), tensor(vec![12]));
    t.insert("bias_hh_l0".into(), tensor(vec![12]));
    write_safetensors(&p("t.safetensors"), &t, Default::default()).unwrap();
    let o = gru_limited(
        d.path(),
        &[
            "forward",
            "-w",
            s(&p("t.safetensors")),
            "-i",
            s(&p("x.safetensors")),
            "-o",
            s(&p("y.safetensors")),
            "--device",
            "cpu",
            "-q",
        ],
    );
    failed(&o, &["has shape", "expected"]);
}

/// A deflated `.npz` whose `kernel.npy` declares `shape` but holds `zeros` bytes of
/// data: a few hundred KB on disk.
fn bomb(path: &Path, shape: &str, zeros: usize) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("kernel.npy", opts).unwrap();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    zip.write_all(&npy).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..zeros >> 20 {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn zip_bombs_are_not_inflated() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    // 4 GiB of zeros behind a header that declares 4 values.
    bomb(&p("small.npz"), "(4, 12)", 4 << 30);
    assert!(std::fs::metadata(p("small.npz")).unwrap().len() < 8 << 20);
    let o = gru_limited(
        d.path(),
        &[
            "convert",
            "--from",
            "keras",
            "--to",
            "pytorch",
            s(&p("small.npz")),
            s(&p("o.safetensors")),
        ],
    );
    failed(&o, &["holds more data bytes"]);
    // A header declaring 2^40 values is refused before inflating anything.
    bomb(&p("huge.npz"), "(1099511627776,)", 1 << 20);
    let o = gru_limited(
        d.path(),
        &[
            "convert",
            "--from",
            "keras",
            "--to",
            "pytorch",
            s(&p("huge.npz")),
            s(&p("o.safetensors")),
        ],
    );
    failed(&o, &["of memory"]);
}

fn spawn_training(cwd: &Path, args: &[&str]) -> Child {
    Command::new(GRU)
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a spawned run prints its first line (the run folder is then locked).
fn wait_started(c: &mut Child) -> BufReader<std::process::ChildStderr> {
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("training on") {
        line.clear();
    }
    err
}

fn kill(c: &mut Child, signal: &str) {
    let pid = c.id();
    Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .unwrap();
}

#[test]
fn a_run_folder_is_locked_and_stale_temporaries_go() {
    let d = tempfile::tempdir().unwrap();
    let run = trained(d.path(), "lm");
    let t = corpus(d.path());
    let long: Vec<&str> = train_args(
        &t,
        &run,
        &["--resume", "--steps", "100000000", "--eval-every", "5"],
    )
    .into_iter()
    .filter(|a| *a != "-q")
    .collect();
    let mut first = spawn_training(d.path(), &long);
    let _err = wait_started(&mut first);
    for extra in [&["--resume"][..], &["--force"]] {
        let mut a = train_args(&t, &run, &["--steps", "30"]);
        a.extend_from_slice(extra);
        let e = failed(&gru_in(d.path(), &a), &["is in use by another gru run"]);
        assert!(e.contains(&format!("PID {}", first.id())), "{e}");
    }
    // kill -9 mid-run, with a temporary left behind as a crash mid-write leaves it.
    let pid = first.id();
    kill(&mut first, "KILL");
    first.wait().unwrap();
    let stale = run.join(format!(".last.safetensors.tmp-{pid}"));
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let before = Checkpoint::load(&run.join("last.safetensors")).unwrap();
    let step = before.optimizer.unwrap().step + 2;
    let o = gru_in(
        d.path(),
        &train_args(&t, &run, &["--resume", "--steps", &step.to_string()]),
    );
    succeeded(&o);
    assert!(!stale.exists(), "the stale temporary must be removed");
}

#[test]
fn runs_started_together_pick_different_folders() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let args = [
        "train",
        "--text",
        s(&t),
        "--hidden",
        "4",
        "--embed",
        "2",
        "--seq-len",
        "4",
        "--batch",
        "2",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--device",
        "cpu",
        "--sample-length",
        "0",
        "-q",
    ];
    let children: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(GRU)
                .current_dir(d.path())
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        succeeded(&c.wait_with_output().unwrap());
    }
    for name in ["lm", "lm-2", "lm-3"] {
        let m =
            std::fs::read_to_string(d.path().join("runs").join(name).join("metrics.csv")).unwrap();
        let steps: Vec<&str> = m
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(steps, ["10", "20", "30"], "{name}: every step once:\n{m}");
    }
}

#[test]
fn an_unwritable_run_folder_fails_before_training() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let file = d.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let run = file.join("run");
    let start = std::time::Instant::now();
    let o = gru_in(
        d.path(),
        &train_args(
            &t,
            &run,
            &["--steps", "100000000", "--eval-every", "100000000"],
        ),
    );
    failed(&o, &["plain-file"]);
    assert!(start.elapsed().as_secs() < 60);
}

/// Rows `label,v1,v2,v3` for `n` classes of `per` rows each.
fn numeric_classes(path: &Path, n: usize, per: usize, header: bool) {
    let mut s = String::new();
    if header {
        s.push_str("label,a,b,c\n");
    }
    for r in 0..per {
        for c in 0..n {
            s.push_str(&format!(
                "class{c},{},{},{}\n",
                c as f32 * 0.1,
                r as f32 * 0.01,
                0.5
            ));
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn classify_metadata_header_and_many_classes() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    numeric_classes(&p("data.csv"), 25, 6, true);
    numeric_classes(&p("val.csv"), 25, 2, false);
    let o = gru_in(
        d.path(),
        &[
            "classify",
            "train",
            "--data",
            s(&p("data.csv")),
            "--val",
            s(&p("val.csv")),
            "--features",
            "3",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "-c",
            s(&p("clf")),
            "--device",
            "cpu",
        ],
    );
    let (_, err) = text(&o);
    succeeded(&o);
    assert!(
        err.contains("first row `label,a,b,c` taken as a header (detected"),
        "{err}"
    );
    assert!(
        err.contains("150 training rows, 50 validation rows (from") && err.contains("(25 labels)"),
        "{err}"
    );
    // 25 classes: per-class figures, not a 25 x 25 matrix.
    let o = gru_in(
        d.path(),
        &[
            "classify",
            "eval",
            "-c",
            s(&p("clf")),
            "--data",
            s(&p("val.csv")),
            "--device",
            "cpu",
            "-q",
        ],
    );
    let out = succeeded(&o);
    assert!(
        out.starts_with("checkpoint: ") && out.contains("best.safetensors (best, epoch 1"),
        "{out}"
    );
    assert!(
        out.contains("50 rows: loss") && out.contains("25 classes"),
        "{out}"
    );
    assert!(!out.contains("rows: true label"), "no matrix:\n{out}");
    assert!(out.contains("precision") && out.contains("recall"), "{out}");
    let acc = out
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    assert_eq!(
        acc.split('.').nth(1).map(str::len),
        Some(4),
        "4 decimals: {acc}"
    );
    // Labels metadata shorter than the model's outputs.
    let good = std::fs::read(p("clf").join("best.safetensors")).unwrap();
    let bad = edit_meta(&good, |m| {
        let mut f: serde_json::Value =
            serde_json::from_str(m["classify"].as_str().unwrap()).unwrap();
        f["labels"] = serde_json::json!(["class0", "class1"]);
        set(m, "classify", f.to_string());
    });
    std::fs::write(p("bad.safetensors"), bad).unwrap();
    std::fs::write(p("new.csv"), "0.1,0.2,0.3\n").unwrap();
    let o = gru_in(
        d.path(),
        &[
            "classify",
            "predict",
            "-c",
            s(&p("bad.safetensors")),
            "--input",
            s(&p("new.csv")),
            "--device",
            "cpu",
        ],
    );
    failed(&o, &["2 labels for a model with 25 classes"]);
}

#[test]
fn classify_word_vocabulary_is_capped() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let mut s_ = String::new();
    for i in 0..40 {
        s_.push_str(&format!(
            "{},common words here rare{i}\n",
            if i % 2 == 0 { "a" } else { "b" }
        ));
    }
    std::fs::write(p("t.csv"), s_).unwrap();
    let o = gru_in(
        d.path(),
        &[
            "classify",
            "train",
            "--data",
            s(&p("t.csv")),
            "--tokens",
            "words",
            "--max-vocab",
            "3",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "-c",
            s(&p("c1")),
            "--device",
            "cpu",
        ],
    );
    let (_, err) = text(&o);
    succeeded(&o);
    assert!(err.contains("vocabulary 3)"), "{err}");
    let o = gru_in(
        d.path(),
        &[
            "classify",
            "train",
            "--data",
            s(&p("t.csv")),
            "--tokens",
            "words",
            "--min-count",
            "2",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "-c",
            s(&p("c2")),
            "--device",
            "cpu",
        ],
    );
    let (_, err) = text(&o);
    succeeded(&o);
    // <unk>, common, words, here: every rare word occurs once.
    assert!(err.contains("vocabulary 4)"), "{err}");
}

#[test]
fn forecast_normalisation_is_checked_at_load() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let series: String = (0..60)
        .map(|i| format!("{},{}\n", (i as f32 * 0.3).sin(), i % 7))
        .collect();
    std::fs::write(p("s.csv"), series).unwrap();
    succeeded(&gru_in(
        d.path(),
        &[
            "forecast",
            "train",
            "--data",
            s(&p("s.csv")),
            "--window",
            "5",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "-c",
            s(&p("f")),
            "--device",
            "cpu",
            "-q",
        ],
    ));
    let good = std::fs::read(p("f").join("best.safetensors")).unwrap();
    let bad = edit_meta(&good, |m| {
        let mut f: serde_json::Value =
            serde_json::from_str(m["forecast"].as_str().unwrap()).unwrap();
        f["mean"] = serde_json::json!([0.0]);
        set(m, "forecast", f.to_string());
    });
    std::fs::write(p("bad.safetensors"), bad).unwrap();
    let o = gru_in(
        d.path(),
        &[
            "forecast",
            "predict",
            "-c",
            s(&p("bad.safetensors")),
            "--data",
            s(&p("s.csv")),
            "--device",
            "cpu",
        ],
    );
    failed(&o, &["normalisation for 1 / 2 columns"]);
}

#[test]
fn negative_and_nan_lengths_are_reported_as_they_are() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let w = gru_engine::GruWeights::init(gru_engine::GruConfig::new(3, 4), 1);
    write_safetensors(
        &p("w.safetensors"),
        &gru_engine::interop::to_pytorch(&w).unwrap(),
        Default::default(),
    )
    .unwrap();
    for (v, shown) in [(-1.0, "lengths[1] = -1"), (f32::NAN, "lengths[1] = NaN")] {
        let mut input = Tensors::new();
        input.insert("input".into(), tensor(vec![2, 2, 3]));
        input.insert(
            "lengths".into(),
            Tensor {
                shape: vec![2],
                data: vec![2.0, v],
            },
        );
        write_safetensors(&p("x.safetensors"), &input, Default::default()).unwrap();
        let o = gru_in(
            d.path(),
            &[
                "forward",
                "-w",
                s(&p("w.safetensors")),
                "-i",
                s(&p("x.safetensors")),
                "-o",
                s(&p("y.safetensors")),
                "--device",
                "cpu",
                "-q",
            ],
        );
        failed(&o, &[shown]);
    }
}

/// With a Vulkan adapter present, GL is not probed, so Mesa's windowing noise
/// ("XDG_RUNTIME_DIR is invalid") is not printed.
#[test]
fn no_gl_noise_when_vulkan_exists() {
    let d = tempfile::tempdir().unwrap();
    let o = gru_in(d.path(), &["devices"]);
    let (out, err) = text(&o);
    if out.contains("(Vulkan,") {
        assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
        let t = corpus(d.path());
        let o = gru_in(
            d.path(),
            &[
                "train",
                "--text",
                s(&t),
                "--steps",
                "2",
                "--hidden",
                "4",
                "--sample-length",
                "0",
                "-c",
                s(&d.path().join("r")),
            ],
        );
        let (_, err) = text(&o);
        succeeded(&o);
        assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    }
}

#[test]
fn ctrl_c_before_the_first_evaluation_saves_last_only() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let run = d.path().join("r");
    let args = train_args(
        &t,
        &run,
        &["--steps", "100000000", "--eval-every", "100000000"],
    );
    let args: Vec<&str> = args.into_iter().filter(|a| *a != "-q").collect();
    let mut c = spawn_training(d.path(), &args);
    let _err = wait_started(&mut c);
    std::thread::sleep(std::time::Duration::from_millis(500));
    kill(&mut c, "INT");
    assert_eq!(c.wait().unwrap().code(), Some(130));
    assert!(run.join("last.safetensors").exists());
    assert!(
        !run.join("best.safetensors").exists(),
        "an unevaluated model is not best"
    );
    assert_eq!(
        Checkpoint::load(&run.join("last.safetensors"))
            .unwrap()
            .loss,
        None
    );
    // generate then uses `last`.
    succeeded(&gru_in(
        d.path(),
        &[
            "generate",
            "-c",
            s(&run),
            "-n",
            "3",
            "--device",
            "cpu",
            "-q",
        ],
    ));
}

#[test]
fn huge_requests_stream_or_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let run = trained(d.path(), "lm");
    // 10^11 tokens: streamed, never reserved up front; the reader leaving ends it.
    let mut c = Command::new("sh")
        .current_dir(d.path())
        .args([
            "-c",
            &format!(
                "ulimit -v {ULIMIT_KIB}; exec '{GRU}' generate -c '{}' -n 100000000000 --device cpu -q",
                run.display()
            ),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    std::io::Read::read_exact(c.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // 10^11 rows of example data would be terabytes in memory.
    let o = gru_limited(
        d.path(),
        &[
            "example-data",
            "forecast",
            "--out",
            "x.csv",
            "--rows",
            "100000000000",
        ],
    );
    failed(&o, &["of memory"]);
    assert!(!d.path().join("x.csv").exists());
}

/// u64::MAX in every size flag: one error each, nothing created (in a debug build an
/// unchecked product would panic on overflow; in release it would wrap).
#[test]
fn absurd_flag_values_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let t = corpus(d.path());
    let run = d.path().join("r");
    const MAX: &str = "18446744073709551615";
    for flag in [
        "--epochs",
        "--batch",
        "--embed",
        "--layers",
        "--hidden",
        "--seq-len",
    ] {
        let o = gru_limited(d.path(), &train_args(&t, &run, &[flag, MAX]));
        failed(
            &o,
            &[
                "must be",
                "memory",
                "more steps",
                "fewer than one sequence",
                "supports",
            ],
        );
        assert!(!run.exists(), "{flag}");
    }
    let data = d.path().join("s.csv");
    let series: String = (0..40)
        .map(|i| format!("{}\n", (i as f32 * 0.3).sin()))
        .collect();
    std::fs::write(&data, series).unwrap();
    for extra in [
        &["--window", MAX][..],
        &["--horizon", MAX],
        // One window per batch, so the step count overflows.
        &["--epochs", MAX, "--batch", "1"],
        &["--batch", MAX],
    ] {
        let mut a = vec![
            "forecast",
            "train",
            "--data",
            s(&data),
            "-c",
            s(&run),
            "--device",
            "cpu",
            "-q",
        ];
        a.extend_from_slice(extra);
        let o = gru_limited(d.path(), &a);
        failed(&o, &["too few", "memory", "more steps"]);
        assert!(!run.exists(), "{extra:?}");
    }
}

/// A large but ordinary text (60 MB, 60 million characters with multi-byte ones) trains
/// under a 3 GiB address-space cap: the vocabulary and the ids are built in one
/// streaming pass at 4 bytes a character (one String a character needed 4 GB), and
/// the first line says how long reading took.
#[test]
fn large_texts_load_in_one_streaming_pass() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&large).unwrap());
        let line = "naïve café 日本 the quick brown fox jumps over the lazy dog\n";
        for _ in 0..60_000_000 / line.len() {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let run = dir.path().join("run");
    let mut args = train_args(&large, &run, &["--steps", "1"]);
    args.retain(|a| *a != "-q");
    let start = std::time::Instant::now();
    let o = gru_limited(dir.path(), &args);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("(read in "), "{err}");
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
}

fn forecast_train(d: &Path, data: &str, run: &str, extra: &[&str]) -> Output {
    let mut a = vec![
        "forecast", "train", "--data", data, "--window", "5", "--hidden", "4", "--epochs", "2",
        "-c", run, "--device", "cpu", "-q",
    ];
    a.extend_from_slice(extra);
    gru_in(d, &a)
}

fn forecast_predict(d: &Path, run: &str, data: &str) -> Output {
    gru_in(
        d,
        &[
            "forecast", "predict", "-c", run, "--data", data, "--device", "cpu",
        ],
    )
}

/// Finite but huge values (±1e20) train with finite losses: the statistics are f64
/// (their f32 variance was inf, every MSE NaN, no best checkpoint); the forecast comes
/// back on the data's scale, and `gru export` takes the checkpoint.
#[test]
fn forecasts_of_huge_values_normalise_in_f64() {
    let d = tempfile::tempdir().unwrap();
    let series: String = std::iter::once("load,temp\n".to_string())
        .chain((0..80).map(|i| format!("{:e},{}\n", ((i as f64) * 0.4).sin() * 1e20, i % 5)))
        .collect();
    std::fs::write(d.path().join("huge.csv"), series).unwrap();
    let o = forecast_train(d.path(), "huge.csv", "f", &["--target", "load", "--json"]);
    let out = succeeded(&o);
    let losses: Vec<f64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["val_loss"].as_f64())
        .collect();
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{out}"
    );
    assert!(d.path().join("f/best.safetensors").exists());
    let out = succeeded(&forecast_predict(d.path(), "f", "huge.csv"));
    let v: f64 = out
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(v.is_finite() && v.abs() > 1e15 && v.abs() < 1e22, "{out}");
    succeeded(&gru_in(d.path(), &["export", "-c", "f", "-o", "f.onnx"]));
}

/// `forecast predict` matches columns by their header names: the same data with its
/// columns swapped gives the same forecast; a missing or an extra column is an error
/// naming it.
#[test]
fn forecast_columns_are_matched_by_name() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let rows: Vec<(f32, f32, f32)> = (0..60)
        .map(|i| {
            (
                (i as f32 * 0.3).sin(),
                (i % 7) as f32,
                (i as f32 * 0.1).cos(),
            )
        })
        .collect();
    let write = |name: &str, header: &str, f: &dyn Fn(&(f32, f32, f32)) -> String| {
        let body: String = rows.iter().map(|r| f(r) + "\n").collect();
        std::fs::write(p(name), format!("{header}\n{body}")).unwrap();
    };
    write("ab.csv", "load,temp", &|r| format!("{},{}", r.0, r.1));
    write("ba.csv", "temp,load", &|r| format!("{},{}", r.1, r.0));
    write("ac.csv", "load,wind", &|r| format!("{},{}", r.0, r.2));
    write("abc.csv", "load,temp,wind", &|r| {
        format!("{},{},{}", r.0, r.1, r.2)
    });
    succeeded(&forecast_train(
        d.path(),
        "ab.csv",
        "f",
        &["--target", "load"],
    ));
    let same = succeeded(&forecast_predict(d.path(), "f", "ab.csv"));
    let swapped = succeeded(&forecast_predict(d.path(), "f", "ba.csv"));
    assert_eq!(same, swapped);
    failed(
        &forecast_predict(d.path(), "f", "ac.csv"),
        &["missing `temp`, extra `wind`"],
    );
    failed(
        &forecast_predict(d.path(), "f", "abc.csv"),
        &["extra `wind`"],
    );
}

/// `--resume` with a flag that contradicts the checkpoint is an error naming the flag
/// and both values (the flags were ignored: the loss equalled the old run's); the same
/// value given again is fine, and a flag left out takes the checkpoint's value (a
/// default `--batch` no longer replaces the run's batch).
#[test]
fn resume_refuses_flags_that_contradict_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = corpus(d);
    let run = d.join("run");
    succeeded(&gru_in(
        d,
        &train_args(&t, &run, &["--steps", "4", "--lr", "0.01"]),
    ));
    let before = snapshot(&run);
    for (flag, value, saved) in [
        ("--hidden", "16", "8"),
        ("--layers", "2", "1"),
        ("--lr", "0.5", "0.01"),
        ("--optimizer", "sgd", "adam"),
        ("--variant", "reset-before", "reset-after"),
        ("--dropout", "0.3", "0"),
        ("--batch", "8", "4"),
        ("--seq-len", "16", "8"),
        ("--seed", "7", "42"),
    ] {
        let extra = vec!["--resume", "--steps", "8", flag, value];
        let o = gru_in(d, &train_args(&t, &run, &extra));
        failed(
            &o,
            &[&format!(
                "{flag} {value} conflicts with the checkpoint being resumed, which has {} {saved}",
                &flag[2..]
            )],
        );
        assert_eq!(snapshot(&run), before, "{flag}: nothing written");
    }
    let o = gru_in(
        d,
        &train_args(&t, &run, &["--resume", "--steps", "8", "--stateful"]),
    );
    failed(&o, &["--stateful true conflicts"]);
    // The same values again, and a batch left at its default: the run continues with
    // its own batch.
    let mut args = train_args(
        &t,
        &run,
        &["--resume", "--steps", "8", "--lr", "0.01", "--hidden", "8"],
    );
    let at = args.iter().position(|a| *a == "--batch").unwrap();
    args.drain(at..at + 2);
    succeeded(&gru_in(d, &args));
    let c = Checkpoint::load(&run.join("last.safetensors")).unwrap();
    assert_eq!(c.optimizer.unwrap().step, 8);
    assert_eq!(c.extra["batch"], "4");
}

/// `--resume --steps N` at or below the checkpoint's step has nothing to do: it says so,
/// exits 0, prints no NaN and leaves the checkpoints as they were.
#[test]
fn resume_past_the_last_step_has_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = corpus(d);
    let run = d.join("run");
    succeeded(&gru_in(d, &train_args(&t, &run, &["--steps", "6"])));
    let before = snapshot(&run);
    for steps in ["3", "6"] {
        let mut args = train_args(&t, &run, &["--resume", "--steps", steps]);
        args.retain(|a| *a != "-q");
        let o = gru_in(d, &args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}{err}");
        assert!(
            err.contains("nothing to do: the checkpoint is at step 6"),
            "{err}"
        );
        assert!(!out.contains("NaN") && !err.contains("NaN"), "{out}{err}");
        assert_eq!(snapshot(&run), before);
    }
}

/// A run whose loss stops being finite ends at once: exit 1, one error line saying it
/// diverged, the last finite checkpoint kept (generate and resume take it) and no file
/// named that does not exist (it exited 0 naming a best.safetensors that was never
/// written, beside a last.safetensors full of NaN).
#[test]
fn a_diverged_run_stops_and_keeps_its_last_finite_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = corpus(d);
    let diverge = |run: &Path, lr: &str| {
        gru_in(
            d,
            &train_args(
                &t,
                run,
                &[
                    "--steps",
                    "300",
                    "--eval-every",
                    "5",
                    "--lr",
                    lr,
                    "--optimizer",
                    "sgd",
                    "--clip-norm",
                    "0",
                ],
            ),
        )
    };
    // Diverges after two evaluations.
    let run = d.join("late");
    let o = diverge(&run, "3e20");
    failed(&o, &["training diverged"]);
    let (out, _) = text(&o);
    assert!(!out.contains("best"), "{out}");
    let c = Checkpoint::load(&run.join("last.safetensors")).unwrap();
    assert!(c
        .params
        .tensors()
        .iter()
        .all(|t| t.iter().all(|v| v.is_finite())));
    succeeded(&gru_in(
        d,
        &[
            "generate",
            "-c",
            s(&run),
            "-n",
            "5",
            "--device",
            "cpu",
            "-q",
        ],
    ));
    // Diverges before any evaluation: nothing is saved, and the error says so.
    let run = d.join("early");
    let o = diverge(&run, "1e28");
    let line = failed(&o, &["training diverged"]);
    assert!(line.contains("no checkpoint was saved"), "{line}");
    assert!(!run.join("last.safetensors").exists() && !run.join("best.safetensors").exists());
}

/// `classify train --resume` and `forecast train --resume` refuse flags that contradict
/// the checkpoint too (bidirectional, hidden, window, horizon), naming both values.
#[test]
fn classify_and_forecast_resume_refuse_contradicting_flags() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    numeric_classes(&p("c.csv"), 3, 20, true);
    let series: String = (0..80)
        .map(|i| format!("{},{}\n", (i as f32 * 0.3).sin(), i % 7))
        .collect();
    std::fs::write(p("s.csv"), series).unwrap();
    let classify = |extra: &[&str]| {
        let mut a = vec![
            "classify", "train", "--data", "c.csv", "-c", "c", "--device", "cpu", "-q",
        ];
        a.extend_from_slice(extra);
        gru_in(d.path(), &a)
    };
    succeeded(&classify(&["--epochs", "1", "--hidden", "4"]));
    failed(
        &classify(&["--resume", "--epochs", "2", "--bidirectional"]),
        &["--bidirectional true conflicts with the checkpoint being resumed, which has bidirectional false"],
    );
    failed(
        &classify(&["--resume", "--epochs", "2", "--hidden", "5"]),
        &["--hidden 5 conflicts"],
    );
    succeeded(&classify(&["--resume", "--epochs", "2"]));
    let forecast = |extra: &[&str]| {
        let mut a = vec![
            "forecast", "train", "--data", "s.csv", "--window", "5", "--hidden", "4", "-c", "f",
            "--device", "cpu", "-q",
        ];
        a.extend_from_slice(extra);
        gru_in(d.path(), &a)
    };
    succeeded(&forecast(&["--epochs", "1"]));
    failed(
        &forecast(&["--resume", "--epochs", "2", "--horizon", "3"]),
        &["--horizon 3 conflicts with the checkpoint being resumed, which has horizon 1"],
    );
    let mut args = vec![
        "forecast", "train", "--data", "s.csv", "--window", "9", "--epochs", "2",
    ];
    args.extend(["-c", "f", "--device", "cpu", "-q", "--resume"]);
    failed(&gru_in(d.path(), &args), &["--window 9 conflicts"]);
    let o = forecast(&["--resume", "--epochs", "1"]);
    let (_, err) = text(&o);
    assert!(o.status.success() && err.contains("nothing to do"), "{err}");
}
