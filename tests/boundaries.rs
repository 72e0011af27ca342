//! What the model and trainers refuse, and the limits they handle: bad batches on both
//! trainers, non-finite checkpoints, training shapes past the device, models that cannot
//! generate or carry state, dispatches past 65,535 workgroups, and the best checkpoint
//! chosen by validation loss.

mod common;

use std::process::Command;

use common::{assert_close, gpu, to_f64};
use gru_engine::checkpoint::Checkpoint;
use gru_engine::generate::Sampling;
use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams};
use gru_engine::train::{model_pass, CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::GruError;

fn trainers(params: &ModelParams, opts: TrainOptions) -> Vec<Box<dyn Trainer>> {
    let mut v: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(params.clone(), opts).unwrap())];
    if let Some(ctx) = gpu() {
        v.push(Box::new(GpuTrainer::new(ctx, params, opts).unwrap()));
    }
    v
}

#[track_caller]
fn refused(r: gru_engine::Result<()>, needle: &str, case: &str) {
    match r {
        Err(e) => assert!(
            e.to_string().contains(needle),
            "{case}: `{e}` lacks `{needle}`"
        ),
        Ok(()) => panic!("{case}: accepted, expected an error with `{needle}`"),
    }
}

#[test]
fn bad_batches_are_refused_by_both_trainers() {
    let lm = ModelParams::init(ModelConfig::language_model(5, 3, 4), 1).unwrap();
    for mut t in trainers(&lm, TrainOptions::adam(1e-2)) {
        let case = t.device_name();
        refused(
            t.train_step(&Batch::tokens(&[0, 5, 1], 1, 3).classes(&[1, 2, 3])),
            "token id 5 at position 1 is outside the vocabulary of 5",
            &case,
        );
        refused(
            t.train_step(&Batch::tokens(&[0, 1, 2], 1, 3).classes(&[1, 9, 3])),
            "target class 9 of row 0 is outside the 5 classes",
            &case,
        );
        refused(
            t.train_step(
                &Batch::tokens(&[0, 1, 2], 1, 3)
                    .classes(&[1, 2, 3])
                    .lengths(&[0]),
            ),
            "row 0 has length 0",
            &case,
        );
        refused(
            t.evaluate(&Batch::tokens(&[0, 1, 2], 1, 3)),
            "need targets",
            &case,
        );
        refused(
            t.train_step(&Batch::features(&[0.0; 3], 1, 3).classes(&[1, 2, 3])),
            "reads token ids",
            &case,
        );
        // Nothing was applied by the refused steps.
        assert_eq!(t.params().unwrap(), lm, "{case}");
        assert_eq!(t.take_metrics(Split::Train).unwrap().batches, 0, "{case}");
    }
    let fc = ModelParams::init(ModelConfig::forecaster(2, 3, 1), 1).unwrap();
    for mut t in trainers(&fc, TrainOptions::adam(1e-2)) {
        let case = t.device_name();
        let x = [0.1f32, 0.2, 0.3, 0.4];
        refused(
            t.train_step(&Batch::features(&x, 1, 2).values(&[f32::NAN])),
            "target value NaN at position 0 is not finite",
            &case,
        );
        let inf = [0.1f32, f32::INFINITY, 0.3, 0.4];
        refused(
            t.train_step(&Batch::features(&inf, 1, 2).values(&[1.0])),
            "feature value inf at position 1 is not finite",
            &case,
        );
        refused(
            t.predict(&Batch::features(&[0.1, f32::NEG_INFINITY, 0.0, 0.0], 1, 2))
                .map(|_| ()),
            "not finite",
            &case,
        );
        refused(
            t.train_step(&Batch::features(&x, 1, 2).classes(&[0])),
            "needs value targets",
            &case,
        );
    }
    let bin = ModelParams::init(ModelConfig::classifier(ModelInput::Features(1), 3, 1), 1).unwrap();
    for mut t in trainers(&bin, TrainOptions::adam(1e-2)) {
        refused(
            t.train_step(&Batch::features(&[0.5, 0.5], 2, 1).values(&[1.0, 1.5])),
            "binary cross-entropy targets must be in [0, 1], found 1.5",
            &t.device_name(),
        );
    }
}

#[test]
fn checkpoints_with_non_finite_values_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut p = ModelParams::init(ModelConfig::language_model(4, 2, 3), 1).unwrap();
    let mut w = p.get("gru.weight_hh_l0").unwrap().to_vec();
    w[5] = f32::INFINITY;
    p.set("gru.weight_hh_l0", &w).unwrap();
    let path = d.path().join("inf.safetensors");
    Checkpoint::from_params(p).save(&path).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("tensor `gru.weight_hh_l0` holds a non-finite value at index 5"),
        "{e}"
    );
}

#[test]
fn training_shapes_past_the_device_are_refused_before_allocating() {
    let Some(ctx) = gpu() else { return };
    let cfg = ModelConfig::language_model(8, 4, 64);
    let p = ModelParams::init(cfg, 1).unwrap();
    let software = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let mut t = GpuTrainer::new(ctx, &p, TrainOptions::adam(1e-3)).unwrap();
    // A batch past one workspace runs in chunks; one past the memory is refused. On a
    // software adapter the device memory is the host's, checked before allocating; a
    // GPU reports running out when the buffers are made.
    match t.prepare(1000, 1_000_000) {
        Err(GruError::HostMemory { what, .. }) if software => {
            assert!(what.contains("B = 1000000 rows x T = 1000 steps"), "{what}");
            assert!(what.contains("rows fit"), "{what}");
        }
        Err(GruError::OutOfMemory(_)) if !software => {}
        other => panic!("expected HostMemory, got {other:?}"),
    }
    // The trainer still works at a shape that fits.
    t.train_step(&Batch::tokens(&[1, 2, 3], 1, 3).classes(&[2, 3, 4]))
        .unwrap();
}

#[test]
fn bidirectional_models_neither_generate_nor_carry_state() {
    let bi =
        ModelParams::init(ModelConfig::language_model(5, 3, 4).bidirectional(true), 1).unwrap();
    let stateful = TrainOptions::adam(1e-2).stateful(true);
    let e = CpuTrainer::new(bi.clone(), stateful)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stateful model must be unidirectional"), "{e}");
    if let Some(ctx) = gpu() {
        let e = GpuTrainer::new(ctx, &bi, stateful).unwrap_err().to_string();
        assert!(e.contains("stateful model must be unidirectional"), "{e}");
    }
    for mut t in trainers(&bi, TrainOptions::adam(1e-2)) {
        let e = t
            .generate(&[1], 3, &Sampling::new(1.0), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unidirectional language model"),
            "{}: {e}",
            t.device_name()
        );
    }
    // A classifier cannot generate either.
    let clf = ModelParams::init(
        ModelConfig::classifier(
            ModelInput::Tokens {
                vocab: 5,
                embed_dim: 2,
            },
            3,
            2,
        ),
        1,
    )
    .unwrap();
    for mut t in trainers(&clf, TrainOptions::adam(1e-2)) {
        assert!(t
            .generate(&[1], 3, &Sampling::new(1.0), &mut |_| {})
            .is_err());
    }
}

/// An embedding of 70,000 x 64 = 4,480,000 values needs 70,000 workgroups of 64: more
/// than one grid dimension holds (65,535), so the update runs on a 2-D grid. SGD with
/// weight decay moves every value; all of them must match the CPU. The 70,000-class
/// loss and the norm of a 4.5M-value tensor pass llvmpipe's 65,535 loop iterations per
/// invocation unless the kernels split the work.
#[test]
fn updates_past_65535_workgroups_reach_every_value() {
    let Some(ctx) = gpu() else { return };
    let cfg = ModelConfig::language_model(70_000, 64, 2);
    let p = ModelParams::init(cfg, 3).unwrap();
    let opts = TrainOptions::sgd(0.1, 0.0).weight_decay(0.5);
    let mut cpu = CpuTrainer::new(p.clone(), opts).unwrap();
    let mut gpu = GpuTrainer::new(ctx, &p, opts).unwrap();
    let batch = Batch::tokens(&[1, 69_999], 1, 2).classes(&[69_999, 0]);
    // 70,000 classes: the loss reads rows far longer than one invocation may loop.
    let want = model_pass(
        &p.cast::<f64>(),
        &batch,
        Some(opts.step_seed(1)),
        None,
        true,
    )
    .unwrap()
    .grads
    .unwrap();
    let got = gpu.gradients(&batch).unwrap();
    gpu.take_metrics(Split::Train).unwrap();
    for (info, g) in got.infos().iter().zip(got.tensors()) {
        let w = want.get(&info.name).unwrap();
        assert_close(
            &format!("d {}", info.name),
            g,
            w,
            1e-6,
            1e-3,
            "70,000 classes",
        );
    }
    cpu.train_step(&batch).unwrap();
    gpu.train_step(&batch).unwrap();
    // The gradient norm sums all 4,480,000 embedding gradients (and the rest).
    let norm = want
        .tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    assert_close(
        "gradient norm",
        &[gpu.last_grad_norm().unwrap()],
        &[norm],
        1e-6,
        1e-4,
        "",
    );
    let (c, g) = (cpu.params().unwrap(), gpu.params().unwrap());
    let (ce, ge) = (
        c.get("embedding.weight").unwrap(),
        g.get("embedding.weight").unwrap(),
    );
    assert_close("embedding", ge, &to_f64(ce), 1e-6, 1e-5, "70,000 x 64");
    // A row no token used moved by the decay alone: 1 - 0.1·0.5.
    let i = 5 * 64 + 63;
    assert!((ge[i] - 0.95 * p.get("embedding.weight").unwrap()[i]).abs() < 1e-6);
}

/// 70,000 rows in one batch, all the same token: the embedding gradient of that token
/// sums 70,000 positions, the loss runs 70,000 workgroups (a 2-D grid), and the
/// max-norm constraint rescales rows of 40,000 columns: each past llvmpipe's 65,535
/// loop iterations per invocation if done one value per iteration.
#[test]
fn long_sums_match_the_reference() {
    let Some(ctx) = gpu() else { return };
    let cfg = ModelConfig::language_model(3, 2, 2);
    let p = ModelParams::init(cfg, 4).unwrap();
    let opts = TrainOptions::sgd(0.1, 0.0);
    let (x, y) = (vec![1u32; 70_000], vec![2u32; 70_000]);
    let batch = Batch::tokens(&x, 70_000, 1).classes(&y);
    let want = model_pass(
        &p.cast::<f64>(),
        &batch,
        Some(opts.step_seed(1)),
        None,
        true,
    )
    .unwrap()
    .grads
    .unwrap();
    let mut g = GpuTrainer::new(ctx.clone(), &p, opts).unwrap();
    let got = g.gradients(&batch).unwrap();
    for (info, v) in got.infos().iter().zip(got.tensors()) {
        let w = want.get(&info.name).unwrap();
        assert_close(&format!("d {}", info.name), v, w, 1e-6, 1e-3, "70,000 rows");
    }
    let m = g.take_metrics(Split::Train).unwrap();
    assert_eq!(m.count, 70_000.0);
    // Max-norm over rows of 40,000 inputs, on the GPU and the CPU.
    let cfg = ModelConfig::forecaster(40_000, 2, 1);
    let p = ModelParams::init(cfg, 5).unwrap();
    let opts = TrainOptions::sgd(0.1, 0.0).max_norm(0.05);
    let mut cpu = CpuTrainer::new(p.clone(), opts).unwrap();
    let mut gpu = GpuTrainer::new(ctx, &p, opts).unwrap();
    let xs = vec![0.01f32; 40_000];
    let batch = Batch::features(&xs, 1, 1).values(&[0.5]);
    cpu.train_step(&batch).unwrap();
    gpu.train_step(&batch).unwrap();
    let (c, g) = (cpu.params().unwrap(), gpu.params().unwrap());
    let (cw, gw) = (
        c.get("gru.weight_ih_l0").unwrap(),
        g.get("gru.weight_ih_l0").unwrap(),
    );
    assert_close(
        "max-norm rows",
        gw,
        &to_f64(cw),
        1e-7,
        1e-4,
        "40,000 columns",
    );
    let row: f32 = gw[..40_000].iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((row - 0.05).abs() < 1e-4, "row norm {row}");
}

/// The CLI keeps as `best` the evaluation with the lowest validation loss, whichever
/// step it came at.
#[test]
fn best_is_the_lowest_validation_loss() {
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("t.txt");
    std::fs::write(&text, "abcabcabd abd abcab ".repeat(30)).unwrap();
    let run = d.path().join("run");
    // A large SGD step makes the validation loss rise and fall.
    let o = Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .args([
            "train",
            "--text",
            text.to_str().unwrap(),
            "-c",
            run.to_str().unwrap(),
            "--hidden",
            "6",
            "--embed",
            "3",
            "--seq-len",
            "8",
            "--batch",
            "4",
            "--steps",
            "12",
            "--eval-every",
            "1",
            "--optimizer",
            "sgd",
            "--lr",
            "3",
            "--sample-length",
            "0",
            "--device",
            "cpu",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<(u64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 12, "{csv}");
    let (step, loss) = rows
        .iter()
        .cloned()
        .fold((0, f64::INFINITY), |a, r| if r.1 < a.1 { r } else { a });
    let best = Checkpoint::load(&run.join("best.safetensors")).unwrap();
    assert_eq!(best.optimizer.unwrap().step, step, "{csv}");
    assert!((best.loss.unwrap() - loss).abs() < 1e-5, "{csv}");
    // The test means something only if the best was not simply the last evaluation.
    let last_loss = rows.last().unwrap().1;
    assert!(loss < last_loss || step == 12, "{csv}");
}
