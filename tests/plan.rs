//! The dispatch plan and its estimates (`gru bench --plan`, design.md §9): what a GPU
//! gets, recorded on the adapter at hand without running it.

use std::process::Command;

use gru_engine::gpu::estimate::{self, AdapterClass, Plan, Shape};

/// The seed model: embedding 256, GRU(1024), dense 100, B 64, T 100.
const SEED: Shape = Shape {
    batch: 64,
    seq_len: 100,
    input: 256,
    hidden: 1024,
    vocab: Some(100),
};

/// `shape`'s plan for `class`, `None` without an adapter (a failure under CI).
fn record(class: AdapterClass, shape: &Shape) -> Option<Plan> {
    match estimate::record(class, shape) {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_some() => panic!("no plan under CI: {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// At the seed shape on the H100 entry: every dispatch that is not latency-bound by
/// nature has at least four workgroups per SM, the per-step kernels are the 2T of a
/// reset-after layer in training (no gradient for the initial state) among at most
/// 2T + 20 dispatches, and the estimated step is within 2x of cuDNN's estimate.
#[test]
fn the_seed_models_gpu_plan_fills_an_h100_within_twice_cudnn() {
    let Some(plan) = record(AdapterClass::Discrete, &SEED) else {
        return;
    };
    let h100 = estimate::gpu("h100").unwrap();
    let t = SEED.seq_len;
    for d in &plan.dispatches {
        let e = estimate::dispatch_time(d, h100, &estimate::OURS);
        assert!(
            e.fill >= 1.0 || estimate::latency_bound(d, h100, &estimate::OURS),
            "{d:?} fills {:.2} of the GPU",
            e.fill
        );
        assert!(
            d.threads_per_workgroup > 0 && d.threads_per_workgroup <= 128,
            "{d:?}"
        );
        assert!(d.workgroup_bytes <= 16384, "{d:?}");
    }
    let steps: Vec<_> = plan.dispatches.iter().filter(|d| d.is_step()).collect();
    assert_eq!(steps.len(), 2 * t);
    let n = plan.dispatches.len();
    assert!(n <= 2 * t + 20, "{n} dispatches a training step");
    // The recurrent products, 2·B·H·3H each: T forward, T - 1 state gradients.
    let (b, h) = (SEED.batch as u64, SEED.hidden as u64);
    let flops: u64 = steps.iter().map(|d| d.flops).sum();
    assert_eq!(flops, (2 * t as u64 - 1) * 2 * b * h * 3 * h);
    let ours = estimate::total(&plan.dispatches, h100);
    let cudnn = estimate::cudnn(&SEED, h100);
    assert!(ours <= 2.0 * cudnn, "{ours} s against cuDNN's {cudnn} s");
}

/// A one-layer forward and backward takes at most 2T + 20 dispatches on the GPU plan,
/// and the per-step kernels are the split builds, paired where the layer has two
/// directions.
#[test]
fn a_layers_gpu_plan_takes_two_dispatches_a_step() {
    let shape = Shape {
        vocab: None,
        ..SEED
    };
    let Some(plan) = record(AdapterClass::Discrete, &shape) else {
        return;
    };
    let t = shape.seq_len;
    assert!(
        plan.dispatches.len() <= 2 * t + 20,
        "{}",
        plan.dispatches.len()
    );
    let fused: Vec<_> = plan
        .dispatches
        .iter()
        .filter(|d| d.kernel == "gru_step_fwd_split:step_fused")
        .collect();
    assert_eq!(fused.len(), t);
    // 4 units x 16 rows a workgroup: 256 x 4 at B 64, H 1024.
    assert_eq!(fused[0].workgroups, [256, 4, 1]);
    assert_eq!(fused[0].threads_per_workgroup, 128);
}

/// The software plan is what the adapter runs: as many dispatches as the trainer
/// counts, with a chunk of steps per dispatch.
#[test]
fn the_software_plan_is_what_the_trainer_records() {
    let shape = Shape {
        batch: 8,
        seq_len: 16,
        input: 8,
        hidden: 32,
        vocab: Some(20),
    };
    let Some(plan) = record(AdapterClass::Software, &shape) else {
        return;
    };
    let ctx = gru_engine::GpuContext::new_default().unwrap();
    if !ctx.is_software() {
        return;
    }
    let cfg = gru_engine::model::ModelConfig::language_model(20, 8, 32);
    let params = gru_engine::model::ModelParams::init(cfg, 1).unwrap();
    let options = gru_engine::train::TrainOptions::adam(2e-3).clip_norm(1.0);
    let mut trainer = gru_engine::train::GpuTrainer::new(ctx, &params, options).unwrap();
    let n = trainer.dispatches_per_step(16, 8).unwrap();
    assert_eq!(plan.dispatches.len(), n);
    assert!(plan.dispatches.iter().filter(|d| d.is_step()).count() < 16);
}

fn gru(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(args)
        .output()
        .unwrap()
}

/// `--json` carries every dispatch with its grid, threads, FLOPs and bytes, and the
/// estimate with cuDNN's beside it.
#[test]
fn bench_plan_prints_json_a_tool_can_read() {
    let o = gru(&[
        "bench",
        "--plan",
        "--class",
        "discrete",
        "--shape",
        "8,12,16,96",
        "--train",
        "--vocab",
        "30",
        "--gpu",
        "m2max",
        "--json",
    ]);
    if !o.status.success() && std::env::var_os("CI").is_none() {
        return;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = v["dispatches"].as_array().unwrap();
    assert!(!list.is_empty());
    for d in list {
        for key in [
            "kernel",
            "workgroups",
            "threads_per_workgroup",
            "flops",
            "bytes_read",
            "bytes_written",
        ] {
            assert!(!d[key].is_null(), "{key} missing in {d}");
        }
        assert_eq!(d["workgroups"].as_array().unwrap().len(), 3);
    }
    let steps = list
        .iter()
        .filter(|d| d["kernel"].as_str().unwrap().contains("step"))
        .count();
    assert_eq!(steps, 2 * 12);
    let e = &v["estimate"];
    assert_eq!(e["gpu"], "Apple M2 Max (38-core GPU)");
    assert!(e["ms"].as_f64().unwrap() > 0.0 && e["cudnn_fp32_ms"].as_f64().unwrap() > 0.0);
}

/// Bad flags fail with one line that names what was expected.
#[test]
fn bench_plan_refuses_bad_flags_in_one_line() {
    let o = gru(&["bench", "--plan", "--gpu", "voodoo3"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("h100") && err.contains("voodoo3"), "{err}");
    let o = gru(&["bench", "--plan", "--class", "discrete", "--measure"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--class software"));
    let o = gru(&["bench", "--class", "discrete"]);
    assert!(!o.status.success());
    let o = gru(&["bench", "--plan", "--peak-tflops", "-3"]);
    assert!(!o.status.success());
}

/// A GPU described by its figures: each flag replaces the table's, and a slower GPU
/// gets a longer estimate.
#[test]
fn bench_plan_takes_a_described_gpu() {
    let ms = |extra: &[&str]| -> Option<(f64, String)> {
        let mut args = vec!["bench", "--plan", "--shape", "8,12,16,96", "--json"];
        args.extend_from_slice(extra);
        let o = gru(&args);
        if !o.status.success() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let e = &v["estimate"];
        Some((
            e["ms"].as_f64().unwrap(),
            e["gpu"].as_str().unwrap().to_string(),
        ))
    };
    let Some((h100, name)) = ms(&[]) else { return };
    assert_eq!(name, "NVIDIA H100 SXM");
    let (slow, name) = ms(&[
        "--peak-tflops",
        "1",
        "--dram-gbs",
        "50",
        "--cache-gbs",
        "100",
        "--units",
        "4",
        "--dispatch-us",
        "20",
    ])
    .unwrap();
    assert_eq!(name, "the described GPU");
    assert!(slow > 3.0 * h100, "{slow} ms against {h100}");
    // The dispatch cost alone: every dispatch pays it.
    let (more, _) = ms(&["--dispatch-us", "50"]).unwrap();
    assert!(more > h100 + 45.0 * 25.0 / 1e3, "{more} against {h100}");
}
