//! `gru bench --plan`: the dispatches a class of adapter gets for a shape, recorded
//! without running them, and their roofline estimate on a known or described GPU, with
//! cuDNN's standard algorithm estimated the same way beside it (design.md §9).

use clap::{Args, ValueEnum};
use gru_engine::gpu::estimate::{self, AdapterClass, GpuSpec, PlannedDispatch, Shape, OURS};
use gru_engine::gpu::lab::{self, KernelTime};
use gru_engine::gpu::DeviceRequest;
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::GpuTrainer;
use gru_engine::{GpuContext, GpuGru, GruConfig, GruError, GruWeights, Result, SequenceInput};

use crate::cli::out::outln;

/// `gru bench --plan` and its flags (the shape, `--train`, `--vocab`, `--json` and
/// `--seconds` are `gru bench`'s own).
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Print the dispatches a class of adapter gets for the first --shape (default the
    /// seed model's 64,100,256,1024), recorded without running them, with a roofline
    /// estimate on --gpu and cuDNN's estimate beside it; with --train, a training step
    /// of the language model embedding I, GRU(H), dense --vocab.
    #[arg(long, conflicts_with_all = ["generate", "roofline", "bidirectional"])]
    pub plan: bool,
    /// --plan: the class of adapter whose builds to record.
    #[arg(long, value_enum, default_value = "discrete", requires = "plan")]
    pub class: ClassArg,
    /// --plan: the GPU to estimate on (h100, a100, rtx4090, rx7900xtx, m2max, a770).
    #[arg(long, requires = "plan")]
    pub gpu: Option<String>,
    /// --plan: FP32 TFLOP/s, replacing --gpu's.
    #[arg(long, requires = "plan", value_parser = positive)]
    pub peak_tflops: Option<f64>,
    /// --plan: DRAM bandwidth in GB/s, replacing --gpu's.
    #[arg(long, requires = "plan", value_parser = positive)]
    pub dram_gbs: Option<f64>,
    /// --plan: cache bandwidth in GB/s, replacing --gpu's.
    #[arg(long, requires = "plan", value_parser = positive)]
    pub cache_gbs: Option<f64>,
    /// --plan: streaming multiprocessors or compute units, replacing --gpu's.
    #[arg(long, requires = "plan", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub units: Option<u32>,
    /// --plan --class software: check the estimate on this adapter, from its measured
    /// ceilings, against each kernel family's measured time.
    #[arg(long, requires = "plan")]
    pub measure: bool,
    /// --plan: µs per dispatch, replacing --gpu's.
    #[arg(long, requires = "plan", value_parser = positive)]
    pub dispatch_us: Option<f64>,
}

/// A finite number above 0.
fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("expected a number above 0, found `{s}`")),
    }
}

/// What `gru bench` says of the plan's model: the shape, `--train`, `--vocab`.
pub type Model = (Option<(usize, usize, usize, usize)>, bool, Option<usize>);

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
fn spec(a: &PlanArgs) -> Result<GpuSpec> {
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

pub fn plan(a: &PlanArgs, (shape, train, vocab): Model, json: bool, seconds: f64) -> Result<u8> {
    let (b, t, i, h) = shape.unwrap_or(SEED);
    let shape = Shape {
        batch: b,
        seq_len: t,
        input: i,
        hidden: h,
        vocab: train.then(|| vocab.unwrap_or(100).max(2)),
    };
    if a.measure {
        return measure(a, &shape, json, seconds);
    }
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
    if json {
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

/// `--measure`: the software plan's estimate on this adapter, from the lab's measured
/// ceilings and dispatch cost, against each kernel family's measured time.
fn measure(a: &PlanArgs, shape: &Shape, json: bool, seconds: f64) -> Result<u8> {
    if !matches!(a.class, ClassArg::Software) {
        return Err(GruError::Input(
            "--measure checks the estimate against this adapter's own builds: add --class software"
                .into(),
        ));
    }
    let plan = estimate::record(AdapterClass::Software, shape)?;
    let ctx = GpuContext::new(&DeviceRequest::default())?;
    let budget = seconds.min(1.0);
    let roof = lab::roofline(&ctx, budget)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let spec = GpuSpec {
        id: "measured",
        name: "this adapter (measured ceilings)",
        fp32_tflops: roof.fma_gflops / 1e3,
        dram_gbs: roof.stream_gbs,
        // Every load costs llvmpipe the same, cached or not.
        l2_gbs: roof.stream_gbs,
        units: cores,
        dispatch_us: lab::dispatch_seconds(&ctx, budget)? * 1e6,
    };
    let measured = measured_families(&ctx, shape, budget)?;
    // Estimated seconds per entry point, in the plan's order.
    let mut est: Vec<(String, usize, f64)> = Vec::new();
    for d in &plan.dispatches {
        let entry = d.kernel.rsplit(':').next().unwrap_or(&d.kernel).to_string();
        let t = estimate::dispatch_time(d, &spec, &OURS).seconds;
        match est.iter_mut().find(|e| e.0 == entry) {
            Some(e) => (e.1, e.2) = (e.1 + 1, e.2 + t),
            None => est.push((entry, 1, t)),
        }
    }
    let rows: Vec<(String, usize, f64, f64)> = est
        .into_iter()
        .map(|(k, n, e)| {
            let m: f64 = measured
                .iter()
                .filter(|t| t.kernel == k)
                .map(|t| t.seconds)
                .sum();
            (k, n, e, m)
        })
        .collect();
    let (te, tm): (f64, f64) = rows.iter().fold((0.0, 0.0), |s, r| (s.0 + r.2, s.1 + r.3));
    if json {
        let kernels: Vec<_> = rows
            .iter()
            .map(|(k, n, e, m)| serde_json::json!({"kernel": k, "dispatches": n, "estimate_ms": e * 1e3, "measured_ms": m * 1e3}))
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "adapter": plan.recorded_on,
                "ceilings": {"fma_gflops": roof.fma_gflops, "stream_gbs": roof.stream_gbs, "dispatch_us": spec.dispatch_us, "units": cores},
                "kernels": kernels,
                "estimate_ms": te * 1e3,
                "measured_ms": tm * 1e3,
                "error": (te - tm) / tm,
            })
        )?;
        return Ok(0);
    }
    outln!(
        "estimate against measurement on {}: ceilings {:.1} GFLOP/s FMA, {:.2} GB/s loads, {:.0} µs a dispatch, {cores} cores",
        plan.recorded_on,
        roof.fma_gflops,
        roof.stream_gbs,
        spec.dispatch_us
    )?;
    outln!("| kernel | dispatches | estimate ms | measured ms | estimate / measured |")?;
    outln!("| --- | --- | --- | --- | --- |")?;
    for (k, n, e, m) in &rows {
        outln!(
            "| {k} | {n} | {:.2} | {:.2} | {:.2} |",
            e * 1e3,
            m * 1e3,
            e / m
        )?;
    }
    outln!(
        "total: estimate {:.2} ms, measured {:.2} ms (each family timed alone), error {:+.0}%",
        te * 1e3,
        tm * 1e3,
        (te - tm) / tm * 100.0
    )?;
    Ok(0)
}

/// Each kernel family of `shape` timed alone on `ctx`: a layer's forward and backward,
/// or the language model's training step.
fn measured_families(
    ctx: &std::sync::Arc<GpuContext>,
    s: &Shape,
    budget: f64,
) -> Result<Vec<KernelTime>> {
    let mut rng = Rng::new(2);
    match s.vocab {
        Some(v) => {
            let cfg = ModelConfig::language_model(v, s.input, s.hidden);
            let params = ModelParams::init(cfg, 1)?;
            let mut trainer = GpuTrainer::new(ctx.clone(), &params, estimate::training_options())?;
            let n = s.batch * s.seq_len;
            let mut draw =
                || -> Vec<u32> { (0..n).map(|_| (rng.next_u64() % v as u64) as u32).collect() };
            let (x, y) = (draw(), draw());
            let batch = Batch::tokens(&x, s.batch, s.seq_len).classes(&y);
            lab::profile_training(&mut trainer, &batch, budget)
        }
        None => {
            let cfg = GruConfig::new(s.input, s.hidden);
            let w = GruWeights::init(cfg, 1);
            let mut gru = GpuGru::new(ctx.clone(), &w)?;
            let x = rng.uniform_vec(s.seq_len * s.batch * s.input, -1.0, 1.0);
            let dy = rng.uniform_vec(s.seq_len * s.batch * s.hidden, -1.0, 1.0);
            lab::profile(
                &mut gru,
                &SequenceInput::new(&x, s.seq_len, s.batch),
                &dy,
                budget,
            )
        }
    }
}
