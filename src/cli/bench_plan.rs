//! `gru bench --plan`: the dispatches a class of adapter gets for a shape, recorded
//! without running them, and their roofline estimate on a known or described GPU, with
//! cuDNN's standard algorithm estimated the same way beside it (design.md §9).

use clap::ValueEnum;
use gru_engine::gpu::estimate::{self, AdapterClass, GpuSpec, PlannedDispatch, Shape, OURS};
use gru_engine::{GruError, Result};

use crate::cli::bench::BenchArgs;
use crate::cli::out::outln;

/// `--class`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ClassArg {
    Discrete,
    Integrated,
    Software,
}

impl From<ClassArg> for AdapterClass {
    fn from(c: ClassArg) -> Self {
        match c {
            ClassArg::Discrete => AdapterClass::Discrete,
            ClassArg::Integrated => AdapterClass::Integrated,
            ClassArg::Software => AdapterClass::Software,
        }
    }
}

/// The seed model's shape: B 64, T 100, embedding 256, H 1024.
const SEED: (usize, usize, usize, usize) = (64, 100, 256, 1024);

/// The GPU `--gpu` names (default the H100), with any of the figure flags replacing
/// its own.
fn spec(a: &BenchArgs) -> Result<GpuSpec> {
    let name = a.gpu.as_deref().unwrap_or("h100");
    let mut g = estimate::gpu(name).cloned().ok_or_else(|| {
        let ids: Vec<&str> = estimate::GPUS.iter().map(|g| g.id).collect();
        GruError::Input(format!(
            "--gpu: expected one of {}, found `{name}`",
            ids.join(", ")
        ))
    })?;
    let set = |v: Option<f64>, field: &mut f64| v.inspect(|&x| *field = x).is_some();
    let mut custom = set(a.peak_tflops, &mut g.fp32_tflops);
    custom |= set(a.dram_gbs, &mut g.dram_gbs);
    custom |= set(a.cache_gbs, &mut g.l2_gbs);
    custom |= set(a.dispatch_us, &mut g.dispatch_us);
    if let Some(u) = a.units {
        g.units = u;
        custom = true;
    }
    if custom {
        g.name = "the described GPU";
    }
    Ok(g)
}

/// Runs of equal consecutive dispatches (the step kernels), as (first index, count).
fn runs(list: &[PlannedDispatch]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        match out.last_mut() {
            Some((first, n)) if list[*first] == *d => *n += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

pub fn plan(a: &BenchArgs) -> Result<u8> {
    let (b, t, i, h) = a.shape.first().copied().unwrap_or(SEED);
    let shape = Shape {
        batch: b,
        seq_len: t,
        input: i,
        hidden: h,
        vocab: a.train.then(|| a.vocab.unwrap_or(100).max(2)),
    };
    let gpu = spec(a)?;
    let plan = estimate::record(a.class.into(), &shape)?;
    let list = &plan.dispatches;
    let times: Vec<_> = list
        .iter()
        .map(|d| estimate::dispatch_time(d, &gpu, &OURS))
        .collect();
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    let cudnn = estimate::cudnn(&shape, &gpu);
    let steps = list.iter().filter(|d| d.is_step()).count();
    let underfilled = list
        .iter()
        .zip(&times)
        .filter(|(d, t)| t.fill < 1.0 && !estimate::latency_bound(d, &gpu, &OURS))
        .count();
    let class = format!("{:?}", a.class).to_lowercase();
    if a.json {
        let dispatches: Vec<_> = list
            .iter()
            .zip(&times)
            .map(|(d, e)| {
                serde_json::json!({
                    "kernel": d.kernel,
                    "workgroups": d.workgroups,
                    "indirect": d.indirect,
                    "threads_per_workgroup": d.threads_per_workgroup,
                    "workgroup_bytes": d.workgroup_bytes,
                    "flops": d.flops,
                    "bytes_read": d.bytes_read,
                    "bytes_written": d.bytes_written,
                    "bytes_loaded": d.bytes_loaded,
                    "estimate_us": e.seconds * 1e6,
                    "bound": e.bound,
                    "fill": e.fill,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "class": class,
                "shape": {"B": b, "T": t, "I": i, "H": h, "vocab": shape.vocab},
                "recorded_on": plan.recorded_on,
                "dispatches": dispatches,
                "estimate": {
                    "gpu": gpu.name,
                    "ms": total * 1e3,
                    "cudnn_fp32_ms": cudnn * 1e3,
                    "ratio_to_cudnn": total / cudnn,
                    "dispatches": list.len(),
                    "step_dispatches": steps,
                    "underfilled_dispatches": underfilled,
                },
            })
        )?;
        return Ok(0);
    }
    let what = match shape.vocab {
        Some(v) => format!(
            "a training step of the language model (embedding {i}, GRU({h}), dense {v}, Adam), B {b}, T {t}"
        ),
        None => format!("forward and backward of one GRU layer, B {b}, T {t}, I {i}, H {h}"),
    };
    outln!(
        "plan: {class} builds, {what}; recorded on {}, not run",
        plan.recorded_on
    )?;
    outln!(
        "estimate on {}: {} TFLOP/s FP32 ({}% reached), {} GB/s DRAM, {} GB/s cache, {} units (full at {} workgroups each), {} µs a dispatch",
        gpu.name,
        gpu.fp32_tflops,
        OURS.fma * 100.0,
        gpu.dram_gbs,
        gpu.l2_gbs,
        gpu.units,
        estimate::WORKGROUPS_PER_UNIT,
        gpu.dispatch_us
    )?;
    outln!("| # | kernel | workgroups | threads | wg bytes | MFLOP | MB read | MB written | MB loaded | fill | bound | µs each |")?;
    outln!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    for (first, n) in runs(list) {
        let (d, e) = (&list[first], &times[first]);
        let at = match n {
            1 => format!("{first}"),
            n => format!("{first}-{} (x{n})", first + n - 1),
        };
        let grid = if d.indirect {
            "indirect".to_string()
        } else {
            format!(
                "{}x{}x{}",
                d.workgroups[0], d.workgroups[1], d.workgroups[2]
            )
        };
        let mb = |x: u64| x as f64 / 1e6;
        outln!(
            "| {at} | {} | {grid} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
            d.kernel,
            d.threads_per_workgroup,
            d.workgroup_bytes,
            d.flops as f64 / 1e6,
            mb(d.bytes_read),
            mb(d.bytes_written),
            mb(d.bytes_loaded),
            e.fill,
            e.bound,
            e.seconds * 1e6
        )?;
    }
    outln!(
        "{} dispatches ({steps} per-step); {underfilled} below {} workgroups per unit that are not latency-bound",
        list.len(),
        estimate::WORKGROUPS_PER_UNIT
    )?;
    outln!(
        "estimate: {:.2} ms; cuDNN FP32 (standard algorithm) estimate: {:.2} ms; ratio {:.2} (estimates, not measurements)",
        total * 1e3,
        cudnn * 1e3,
        total / cudnn
    )?;
    Ok(0)
}
