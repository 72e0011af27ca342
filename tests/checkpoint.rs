//! Checkpoints: round trip, exact resume, best/last bookkeeping, and clear errors for
//! broken or mismatched files.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{assert_close, gpu, to_f64};
use gru_engine::checkpoint::{Checkpoint, CheckpointDir, SavePrecision};
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, TrainOptions, Trainer};
use gru_engine::GruError;
use safetensors::tensor::{Dtype, TensorView};

fn cfg() -> ModelConfig {
    ModelConfig::language_model(6, 4, 5).layers(2).dropout(0.2)
}

fn opts() -> TrainOptions {
    TrainOptions::adam(1e-2)
        .clip_norm(1.0)
        .stateful(true)
        .seed(9)
}

/// One batch drawn from `rng`: the data order is part of what a resume must restore.
fn step(t: &mut dyn Trainer, rng: &mut Rng) {
    let x: Vec<u32> = (0..2 * 5).map(|_| (rng.next_u64() % 6) as u32).collect();
    let y: Vec<u32> = (0..2 * 5).map(|_| (rng.next_u64() % 6) as u32).collect();
    t.train_step(&Batch::tokens(&x, 2, 5).classes(&y)).unwrap();
}

/// N steps, checkpoint to disk, a fresh trainer from the file, M more steps; returns the
/// parameters, and those of N + M steps straight through.
fn resume_vs_straight(
    make: &dyn Fn(&ModelParams, TrainOptions) -> Box<dyn Trainer>,
    dir: &Path,
) -> (ModelParams, ModelParams) {
    let init = ModelParams::init(cfg(), 4).unwrap();
    let mut straight = make(&init, opts());
    let mut rng = Rng::new(1);
    for _ in 0..6 {
        step(straight.as_mut(), &mut rng);
    }
    let mut first = make(&init, opts());
    let mut rng = Rng::new(1);
    for _ in 0..3 {
        step(first.as_mut(), &mut rng);
    }
    let mut c = Checkpoint::from_trainer(first.as_mut()).unwrap();
    c.rng_state = Some(rng.state());
    let path = dir.join("mid.safetensors");
    c.save(&path).unwrap();
    drop(first);
    let loaded = Checkpoint::load(&path).unwrap();
    let mut resumed = make(&loaded.params, loaded.options.unwrap());
    loaded.restore(resumed.as_mut()).unwrap();
    let mut rng = Rng::new(loaded.rng_state.unwrap());
    for _ in 0..3 {
        step(resumed.as_mut(), &mut rng);
    }
    (resumed.params().unwrap(), straight.params().unwrap())
}

#[test]
fn resume_on_the_cpu_reference_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let make = |p: &ModelParams, o: TrainOptions| -> Box<dyn Trainer> {
        Box::new(CpuTrainer::new(p.clone(), o).unwrap())
    };
    let (resumed, straight) = resume_vs_straight(&make, dir.path());
    assert_eq!(resumed, straight);
}

#[test]
fn resume_on_the_gpu_matches_straight_training() {
    let Some(ctx) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let make = move |p: &ModelParams, o: TrainOptions| -> Box<dyn Trainer> {
        Box::new(GpuTrainer::new(ctx.clone(), p, o).unwrap())
    };
    let (resumed, straight) = resume_vs_straight(&make, dir.path());
    for ((info, a), b) in straight
        .infos()
        .iter()
        .zip(straight.tensors())
        .zip(resumed.tensors())
    {
        assert_close(&info.name, b, &to_f64(a), 1e-6, 1e-6, "gpu resume");
    }
}

#[test]
fn round_trip_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = CpuTrainer::new(ModelParams::init(cfg(), 2).unwrap(), opts()).unwrap();
    step(&mut t, &mut Rng::new(3));
    let mut c = Checkpoint::from_trainer(&mut t).unwrap();
    c.vocab = Some(["a", "b", "c", "d", "e", "\n"].map(String::from).to_vec());
    c.rng_state = Some(77);
    c.loss = Some(1.5);
    c.extra.insert("epoch".into(), "3".into());
    assert!(c.carried_state.is_some());
    let path = dir.path().join("c.safetensors");
    c.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), c);
}

#[test]
fn best_and_last_follow_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(dir.path()).unwrap();
    let mut c = Checkpoint::from_params(ModelParams::init(cfg(), 1).unwrap());
    for (loss, improves) in [(2.0, true), (1.0, true), (1.5, false)] {
        c.loss = Some(loss);
        assert_eq!(d.save(&c).unwrap(), improves, "loss {loss}");
    }
    assert_eq!(Checkpoint::load(&d.best_path()).unwrap().loss, Some(1.0));
    assert_eq!(Checkpoint::load(&d.last_path()).unwrap().loss, Some(1.5));
    // Reopening remembers the best; no temporary files are left behind.
    assert_eq!(
        CheckpointDir::open(dir.path()).unwrap().best_loss(),
        Some(1.0)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The library refuses to save parameters holding NaN or infinity, checked on the host
/// whatever the kernels' NaN arithmetic: `last` and `best` stay the finite ones,
/// byte for byte, and the error names the tensor and the index.
#[test]
fn a_non_finite_checkpoint_is_never_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(dir.path()).unwrap();
    let mut c = Checkpoint::from_params(ModelParams::init(cfg(), 1).unwrap());
    c.loss = Some(2.0);
    d.save(&c).unwrap();
    let (last, best) = (
        std::fs::read(d.last_path()).unwrap(),
        std::fs::read(d.best_path()).unwrap(),
    );
    for bad in [f32::NAN, f32::INFINITY] {
        let mut broken = c.clone();
        broken.params.fc_bias[3] = bad;
        broken.loss = Some(0.5);
        assert_eq!(
            broken.first_non_finite().map(|f| (f.0, f.2)),
            Some(("fc.bias".into(), 3))
        );
        let e = d.save(&broken).unwrap_err().to_string();
        assert!(
            e.contains("`fc.bias`") && e.contains("index 3") && e.contains("diverged"),
            "{e}"
        );
        assert_eq!(std::fs::read(d.last_path()).unwrap(), last);
        assert_eq!(std::fs::read(d.best_path()).unwrap(), best);
    }
    assert_eq!(c.first_non_finite(), None);
}

/// An F16 checkpoint: the parameters and the carried state stored as F16 (each value
/// f16-rounded, the file smaller), the moments as F32 (exact), every loader reading it,
/// a trainer resuming from it; a parameter past f16's range refused by name, from a
/// checkpoint folder too, where the last good file stays.
#[test]
fn f16_checkpoints_round_the_weights_and_keep_the_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = CpuTrainer::new(ModelParams::init(cfg(), 2).unwrap(), opts()).unwrap();
    step(&mut t, &mut Rng::new(3));
    let c = Checkpoint::from_trainer(&mut t).unwrap();
    let (p32, p16) = (
        dir.path().join("f32.safetensors"),
        dir.path().join("f16.safetensors"),
    );
    c.save(&p32).unwrap();
    c.save_as(&p16, SavePrecision::F16).unwrap();
    let bytes = std::fs::read(&p16).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in st.tensors() {
        let want = if name.starts_with("optimizer.") {
            Dtype::F32
        } else {
            Dtype::F16
        };
        assert_eq!(view.dtype(), want, "{name}");
    }
    let params_bytes: usize = c.params.tensors().iter().map(|t| 4 * t.len()).sum();
    let sizes = (std::fs::metadata(&p32).unwrap().len(), bytes.len() as u64);
    assert!(sizes.0 - sizes.1 >= params_bytes as u64 / 2, "{sizes:?}");
    let back = Checkpoint::load(&p16).unwrap();
    let round =
        |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() };
    for (a, b) in back.params.tensors().iter().zip(c.params.tensors()) {
        assert_eq!(*a, round(b).as_slice());
    }
    let (h_back, h) = (
        &back.carried_state.as_ref().unwrap().0,
        &c.carried_state.as_ref().unwrap().0,
    );
    assert_eq!(*h_back, round(h));
    assert_eq!(back.optimizer, c.optimizer);
    assert_eq!(back.options, c.options);
    // Resuming from it: the trainer takes the rounded weights and the exact moments.
    let mut r = CpuTrainer::new(ModelParams::init(cfg(), 5).unwrap(), opts()).unwrap();
    back.restore(&mut r).unwrap();
    assert_eq!(r.params().unwrap(), back.params);
    step(&mut r, &mut Rng::new(4));

    // Past f16's range: refused with the tensor's name; the folder keeps its last file.
    let mut big = c.clone();
    big.params.tensors_mut()[3][7] = 70_000.0;
    let name = big.params.infos()[3].name.clone();
    let err = big.to_bytes_as(SavePrecision::F16).unwrap_err().to_string();
    assert!(
        err.contains(&name) && err.contains("65504") && err.contains("index 7"),
        "{err}"
    );
    // 65,504 itself, and f32 files, are fine.
    big.params.tensors_mut()[3][7] = 65_504.0;
    big.to_bytes_as(SavePrecision::F16).unwrap();
    let mut d = CheckpointDir::open(&dir.path().join("run")).unwrap();
    d.set_precision(SavePrecision::F16);
    d.save(&c).unwrap();
    let kept = std::fs::read(d.last_path()).unwrap();
    big.params.tensors_mut()[3][7] = -1e6;
    assert!(d.save(&big).unwrap_err().to_string().contains(&name));
    assert_eq!(std::fs::read(d.last_path()).unwrap(), kept);
    big.to_bytes_as(SavePrecision::F32).unwrap();
}

/// An F16 file whose values overflowed (infinity) is refused with the tensor's name and
/// why; F16 and BF16 files of finite values load widened.
#[test]
fn f16_and_bf16_files_load_and_an_overflowed_one_is_refused() {
    let to = |dtype: Dtype, b: &[u8]| -> Vec<u8> {
        let v: &[f32] = bytemuck::cast_slice(b);
        match dtype {
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
        }
    };
    for dtype in [Dtype::F16, Dtype::BF16] {
        let bytes = tampered(|t, _| {
            for (_, d, _, b) in t.iter_mut() {
                *b = to(dtype, b);
                *d = dtype;
            }
        });
        let c = Checkpoint::from_bytes(&bytes, Path::new("x.safetensors")).unwrap();
        assert!(c
            .params
            .tensors()
            .iter()
            .all(|t| t.iter().all(|v| v.is_finite())));
    }
    let bytes = tampered(|t, _| {
        let (_, d, _, b) = t.iter_mut().find(|t| t.0 == "embedding.weight").unwrap();
        *b = to(Dtype::F16, b);
        b[2..4].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
        *d = Dtype::F16;
    });
    expect_error(
        &bytes,
        "tensor `embedding.weight` holds a non-finite value at index 1",
    );
    expect_error(&bytes, "F16 value past 65,504");
}

/// Rewrites a valid checkpoint's tensors and metadata through `edit`.
fn tampered(
    edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) -> Vec<u8> {
    let c = Checkpoint::from_params(ModelParams::init(cfg(), 1).unwrap());
    let bytes = c.to_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[track_caller]
fn expect_error(bytes: &[u8], needle: &str) {
    match Checkpoint::from_bytes(bytes, Path::new("x.safetensors")) {
        Err(GruError::Checkpoint { reason, path }) => {
            assert_eq!(path, "x.safetensors");
            assert!(
                reason.contains(needle),
                "`{reason}` should mention `{needle}`"
            )
        }
        other => panic!("expected a checkpoint error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn broken_files_are_refused_with_the_reason() {
    expect_error(b"definitely not safetensors", "not a safetensors file");
    let good = Checkpoint::from_params(ModelParams::init(cfg(), 1).unwrap())
        .to_bytes()
        .unwrap();
    expect_error(&good[..good.len() - 7], "not a safetensors file");
    expect_error(
        &tampered(|t, _| t.retain(|x| x.0 != "gru.weight_hh_l1")),
        "missing tensor `gru.weight_hh_l1`",
    );
    expect_error(
        &tampered(|t, _| {
            let x = t.iter_mut().find(|x| x.0 == "fc.bias").unwrap();
            x.1 = Dtype::I32;
        }),
        "dtype I32",
    );
    expect_error(
        &tampered(|_, m| {
            let other = ModelConfig::language_model(6, 4, 7).layers(2);
            m.insert("model".into(), serde_json::to_string(&other).unwrap());
        }),
        "has shape [15, 4], this model expects [21, 4]",
    );
    expect_error(
        &tampered(|_, m| drop(m.remove("format"))),
        "not a gru-engine checkpoint",
    );
    expect_error(
        &tampered(|t, _| t.push(("extra.weight".into(), Dtype::F32, vec![1], vec![0; 4]))),
        "unexpected tensor `extra.weight`",
    );
    // F16 tensors are widened, not refused.
    let f16 = tampered(|t, _| {
        let x = t.iter_mut().find(|x| x.0 == "fc.bias").unwrap();
        x.1 = Dtype::F16;
        x.3 =
            x.3.chunks(4)
                .flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()
                })
                .collect();
    });
    assert!(Checkpoint::from_bytes(&f16, Path::new("x")).is_ok());
}

#[test]
fn a_checkpoint_of_another_model_is_refused_by_the_trainer() {
    let c = Checkpoint::from_params(ModelParams::init(cfg(), 1).unwrap());
    let other = ModelParams::init(ModelConfig::language_model(6, 4, 8), 1).unwrap();
    let mut t = CpuTrainer::new(other, opts()).unwrap();
    match c.restore(&mut t) {
        Err(GruError::Shape { what, .. }) => assert_eq!(what, "model config"),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

/// `ModelData::of` reads each training command's checkpoint as its kind, from bytes,
/// with the data that kind needs; a checkpoint of no known task is refused by name.
#[test]
fn model_data_reads_each_kind_from_bytes() {
    use gru_engine::task::ModelData;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gru = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_gru"))
            .current_dir(d)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    std::fs::write(d.join("a.txt"), "abc abd\n".repeat(40)).unwrap();
    gru(&[
        "train",
        "--text",
        "a.txt",
        "--steps",
        "2",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--seq-len",
        "4",
        "--device",
        "cpu",
        "--sample-length",
        "0",
        "-q",
        "-c",
        "lm",
    ]);
    gru(&[
        "example-data",
        "classify-text",
        "--rows",
        "40",
        "--out",
        "c.csv",
    ]);
    gru(&[
        "classify", "train", "--data", "c.csv", "--epochs", "1", "--hidden", "4", "--device",
        "cpu", "-q", "-c", "clf",
    ]);
    gru(&["example-data", "forecast", "--rows", "60", "--out", "f.csv"]);
    gru(&[
        "forecast", "train", "--data", "f.csv", "--target", "load", "--window", "4", "--epochs",
        "1", "--hidden", "4", "--device", "cpu", "-q", "-c", "fc",
    ]);
    let read = |run: &str| {
        let path = d.join(run).join("last.safetensors");
        let c = Checkpoint::from_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
        (ModelData::of(&c, &path), c)
    };
    let (lm, _) = read("lm");
    assert!(matches!(lm.unwrap(), ModelData::Language(v) if v.tokens().concat() == "\n abcd"));
    let (clf, _) = read("clf");
    let clf = clf.unwrap();
    assert_eq!(clf.kind(), "classifier");
    assert!(matches!(&clf, ModelData::Classifier(f, v) if f.labels.len() >= 2 && !v.is_empty()));
    let (fc, mut c) = read("fc");
    assert!(matches!(fc.unwrap(), ModelData::Forecaster(f) if f.columns[f.target] == "load"));
    c.extra.insert("task".into(), "translation".into());
    let e = ModelData::of(&c, Path::new("x")).unwrap_err().to_string();
    assert!(
        e.contains("task `translation` is not one gru-engine trains"),
        "{e}"
    );
}
