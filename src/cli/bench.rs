//! `gru bench`: the standard GRU shapes (or `--shape`s), forward and forward+backward,
//! on the chosen device and on the CPU reference in the same run; with `--roofline`
//! also the device's measured ceilings and each kernel family's share of them.

use crate::cli::out::outln;
use std::time::Instant;

use clap::Args;
use gru_engine::config::BENCH_SHAPES;
use gru_engine::generate::Sampling;
use gru_engine::gpu::lab::{self, KernelTime, Roofline};
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::{cpu, GpuGru, GruConfig, GruError, GruWeights, Precision, Result, SequenceInput};

use crate::cli::args::{PrecisionArg, StackArgs};
use crate::cli::device::{Choice, DeviceArgs};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru bench --quick
  gru bench --roofline --shape 32,64,128,128
  gru bench --device 0 --json > bench.json
  gru bench --plan --class discrete --shape 64,100,256,1024 --train --gpu h100")]
pub struct BenchArgs {
    /// Only the two smaller shapes.
    #[arg(long)]
    pub quick: bool,
    /// A shape B,T,I,H to time instead of the standard ones (repeatable).
    #[arg(long, value_name = "B,T,I,H", value_parser = parse_shape)]
    pub shape: Vec<(usize, usize, usize, usize)>,
    /// The layer shapes with both directions per layer (--layers and --variant apply to
    /// them too).
    #[arg(long, conflicts_with_all = ["train", "generate"])]
    pub bidirectional: bool,
    /// Also measure the device's ceilings (register FMAs, loads) and time every kernel
    /// family of each shape as a share of them.
    #[arg(long)]
    pub roofline: bool,
    /// Time full training steps of a character language model (the model flags below)
    /// instead of the GRU layer: steps/s, tokens/s and dispatches per step.
    #[arg(long)]
    pub train: bool,
    /// Time text generation from a language model (the model flags below): tokens/s of
    /// each route on the adapter (one dispatch for many tokens, one pass per token) and
    /// of the CPU reference.
    #[arg(long, conflicts_with = "train")]
    pub generate: bool,
    /// --generate: tokens to draw per measurement.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tokens: u32,
    /// --train, --generate: vocabulary size [default: 113; 100 with --plan].
    #[arg(long)]
    pub vocab: Option<usize>,
    #[command(flatten)]
    pub plan: crate::cli::bench_plan::PlanArgs,
    /// --train, --generate: embedding size.
    #[arg(long, short = 'E', default_value_t = 32)]
    pub embed: usize,
    #[command(flatten)]
    pub stack: StackArgs,
    /// --train: characters per sequence (T).
    #[arg(long, short = 'T', default_value_t = 64)]
    pub seq_len: usize,
    /// --train: sequences per batch (B).
    #[arg(long, short = 'B', default_value_t = 32)]
    pub batch: usize,
    /// Layer shapes: with f16, also time the forward with f16 storage on the device;
    /// with mixed, the forward and forward+backward in mixed precision (f16 weights
    /// and activations, f32 gradients). Each alternates with its f32 twin in the same
    /// run (three rounds each, the best round of each reported), and the ratios are
    /// printed.
    /// --train with mixed: the mixed-precision trainer beside the f32 one, in
    /// alternating rounds. --generate with f16 (or mixed): also the f16 trainer's
    /// routes (the one-dispatch kernel's f16 build, the per-token passes).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32, conflicts_with_all = ["roofline", "plan"])]
    pub precision: PrecisionArg,
    /// Skip the CPU reference.
    #[arg(long)]
    pub no_cpu: bool,
    /// Seconds to spend per measurement (at least one run each).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// A JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// "B,T,I,H" as four sizes of at least 1.
fn parse_shape(s: &str) -> std::result::Result<(usize, usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("expected B,T,I,H (four integers), found `{s}`: {e}"))?;
    match v[..] {
        [b, t, i, h]
            if v.iter().all(|&x| x > 0)
                && b.checked_mul(t)
                    .and_then(|n| n.checked_mul(i.max(h)))
                    .is_some_and(|n| n <= 1 << 28) =>
        {
            Ok((b, t, i, h))
        }
        [_, _, _, _] => Err(format!(
            "expected B,T,I,H of at least 1 with B·T·max(I, H) at most 2^28, found `{s}`"
        )),
        _ => Err(format!("expected B,T,I,H (four integers), found `{s}`")),
    }
}

/// Mean seconds per call of `f`, over at least one call and about `budget` seconds.
fn time(budget: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up: pipelines, workspaces, caches
    let start = Instant::now();
    let mut n = 0u32;
    while n == 0 || (start.elapsed().as_secs_f64() < budget && n < 1000) {
        f()?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() / n as f64)
}

/// Mean seconds per call of each of `runs`, timed in three alternating rounds of a third
/// of `budget` each (so that drift in the machine's speed reaches them all), the best
/// round of each.
fn alternate(budget: f64, runs: &mut [&mut dyn FnMut() -> Result<()>]) -> Result<Vec<f64>> {
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..3 {
        for (run, b) in runs.iter_mut().zip(&mut best) {
            *b = b.min(time(budget / 3.0, &mut **run)?);
        }
    }
    Ok(best)
}

/// `gru bench` in one process (under mpirun: `bench_ranks::bench`).
pub fn bench(a: BenchArgs) -> Result<u8> {
    if a.plan.plan {
        let shape = a.shape.first().copied();
        return crate::cli::bench_plan::plan(&a.plan, (shape, a.train, a.vocab), a.json, a.seconds);
    }
    let precision = a.precision.to_lib();
    let half = precision.is_half();
    if half && a.device.device == "cpu" {
        return Err(cpu_has_no_f16(precision));
    }
    let choice = a.device.open_adapter(a.json)?;
    if a.train {
        return bench_train(&a, &choice);
    }
    if a.generate {
        return bench_generate(&a, &choice);
    }
    let device = match &choice {
        Choice::Gpu(ctx) => adapter_label(ctx),
        Choice::Cpu => "CPU reference".into(),
    };
    match &choice {
        Choice::Gpu(ctx) => ctx.check_precision(precision)?,
        Choice::Cpu if half => return Err(cpu_has_no_f16(precision)),
        Choice::Cpu => {}
    }
    let mut ratios = Vec::new();
    let shapes: Vec<(usize, usize, usize, usize)> = if a.shape.is_empty() {
        let n = if a.quick { 2 } else { 3 };
        BENCH_SHAPES[..n]
            .iter()
            .map(|s| (s.batch, s.seq_len, s.input, s.hidden))
            .collect()
    } else {
        a.shape.clone()
    };
    let roofline = match (&choice, a.roofline) {
        (Choice::Gpu(ctx), true) => Some(lab::roofline(ctx, a.seconds.min(1.0))?),
        _ => None,
    };
    let mut rows = Vec::new();
    let mut kernels = Vec::new();
    for &(b, t, i, h) in &shapes {
        let cfg = GruConfig::new(i, h)
            .layers(a.stack.layers)
            .variant(a.stack.gru_variant())
            .bidirectional(a.bidirectional);
        let w = GruWeights::init(cfg, 1);
        let mut rng = Rng::new(2);
        let x = rng.uniform_vec(t * b * i, -1.0, 1.0);
        let dy = rng.uniform_vec(t * b * cfg.output_size(), -1.0, 1.0);
        let input = SequenceInput::new(&x, t, b);
        let nd = cfg.num_directions();
        let flops: f64 = (0..cfg.num_layers)
            .map(|l| 6.0 * (nd * b * t * h * (cfg.layer_input_size(l) + h)) as f64)
            .sum();
        let mut gpu_times = [None, None];
        let mut half_times = [None, None];
        let mut memory = [None, None];
        if let Choice::Gpu(ctx) = &choice {
            let before = ctx.allocated_bytes();
            let mut g = GpuGru::new(ctx.clone(), &w)?;
            g.forward(&input)?;
            g.backward_on_device(&dy, None)?;
            memory[0] = Some(ctx.allocated_bytes() - before);
            if roofline.is_some() {
                for k in lab::profile(&mut g, &input, &dy, a.seconds.min(1.0))? {
                    kernels.push(((b, t, i, h), k));
                }
            }
            if half {
                // The device memory of each: its parameters and its workspace for this
                // shape (the f32 layer's has the backward's buffers too, as a mixed one).
                let before = ctx.allocated_bytes();
                let mut h16 = GpuGru::with_precision(ctx.clone(), &w, precision)?;
                h16.forward(&input)?;
                if precision.trains() {
                    h16.backward_on_device(&dy, None)?;
                }
                memory[1] = Some(ctx.allocated_bytes() - before);
                // f32 and f16 in alternating rounds: the forward, and with mixed the
                // forward+backward.
                let passes: &[(usize, &str)] = if precision.trains() {
                    &[(0, "forward"), (1, "forward+backward")]
                } else {
                    &[(0, "forward")]
                };
                for &(pass, label) in passes {
                    let run = |layer: &mut GpuGru| -> Result<()> {
                        layer.forward(&input)?;
                        if pass == 1 {
                            layer.backward_on_device(&dy, None)?;
                        }
                        ctx.wait_idle()
                    };
                    let (g, h16) = (&mut g, &mut h16);
                    let best = alternate(a.seconds, &mut [&mut || run(g), &mut || run(h16)])?;
                    gpu_times[pass] = Some(best[0]);
                    half_times[pass] = Some(best[1]);
                    ratios.push(((b, t, i, h), label, best[1] / best[0]));
                }
            } else {
                gpu_times[0] = Some(time(a.seconds, || {
                    g.forward(&input)?;
                    ctx.wait_idle()
                })?);
            }
            if gpu_times[1].is_none() {
                gpu_times[1] = Some(time(a.seconds, || {
                    g.forward(&input)?;
                    g.backward_on_device(&dy, None)?;
                    ctx.wait_idle()
                })?);
            }
        }
        let mut cpu_times = [None, None];
        if !a.no_cpu {
            cpu_times[0] = Some(time(a.seconds, || cpu::forward(&w, &input).map(|_| ()))?);
            cpu_times[1] = Some(time(a.seconds, || {
                let f = cpu::forward(&w, &input)?;
                cpu::backward(&w, &f, &dy, None).map(|_| ())
            })?);
        }
        let name = precision.to_string();
        let passes = [
            ("forward", "f32", gpu_times[0], cpu_times[0], memory[0]),
            (
                "forward+backward",
                "f32",
                gpu_times[1],
                cpu_times[1],
                memory[0],
            ),
            (
                "forward",
                name.as_str(),
                half_times[0],
                cpu_times[0],
                memory[1],
            ),
            (
                "forward+backward",
                name.as_str(),
                half_times[1],
                cpu_times[1],
                memory[1],
            ),
        ];
        let rows_here = match precision {
            Precision::F32 => 2,
            Precision::F16 => 3,
            Precision::Mixed => 4,
        };
        for &(pass, storage, device_s, cpu_s, bytes) in &passes[..rows_here] {
            let fl = flops * if pass == "forward" { 1.0 } else { 3.0 };
            rows.push(serde_json::json!({
                "shape": {"B": b, "T": t, "I": i, "H": h},
                "layers": cfg.num_layers,
                "directions": nd,
                "variant": format!("{:?}", cfg.variant),
                "pass": pass,
                "precision": storage,
                "device_memory_bytes": bytes,
                "device_ms": device_s.map(|s| s * 1e3),
                "device_gflops": device_s.map(|s| fl / s / 1e9),
                "device_tokens_per_s": device_s.map(|s| (b * t) as f64 / s),
                "cpu_ms": cpu_s.map(|s| s * 1e3),
                "cpu_gflops": cpu_s.map(|s| fl / s / 1e9),
                "speedup_vs_cpu": match (device_s, cpu_s) { (Some(g), Some(c)) => Some(c / g), _ => None },
            }));
        }
    }
    if a.json {
        let lab = roofline.map(|r| lab_json(&r, &kernels));
        outln!(
            "{}",
            serde_json::json!({"device": device, "results": rows, "roofline": lab})
        )?;
        return Ok(0);
    }
    if let Some(r) = &roofline {
        print_lab(r, &kernels)?;
    }
    let (layers, nd) = (a.stack.layers, if a.bidirectional { 2 } else { 1 });
    outln!(
        "device: {device}; CPU: the reference (one thread, f32); {layers} layer(s) x {nd} direction(s), {:?}; FLOPs 6·B·T·H·(I+H) forward per layer and direction, x3 with backward",
        a.stack.gru_variant()
    )?;
    if half {
        outln!("f32 and {precision} timed in three alternating rounds each, the best round shown; device memory: the layer's parameters and its buffers for the shape (gradients and the backward's buffers included, but for the f16 layer, which runs forward only)")?;
    }
    outln!("| shape (B, T, I, H) | pass | storage | device ms | GFLOP/s | tokens/s | device MB | CPU ms | CPU GFLOP/s | vs CPU |")?;
    outln!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    let num =
        |v: &serde_json::Value, p: usize| v.as_f64().map_or("-".into(), |x| format!("{x:.p$}"));
    for r in &rows {
        let s = &r["shape"];
        outln!(
            "| ({}, {}, {}, {}) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s["B"],
            s["T"],
            s["I"],
            s["H"],
            r["pass"].as_str().unwrap_or(""),
            r["precision"].as_str().unwrap_or(""),
            num(&r["device_ms"], 2),
            num(&r["device_gflops"], 2),
            num(&r["device_tokens_per_s"], 0),
            r["device_memory_bytes"]
                .as_f64()
                .map_or("-".into(), |b| format!("{:.1}", b / 1e6)),
            num(&r["cpu_ms"], 2),
            num(&r["cpu_gflops"], 2),
            r["speedup_vs_cpu"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.2}x")),
        )?;
    }
    for ((b, t, i, h), pass, ratio) in ratios {
        outln!("{precision} / f32 {pass} time at ({b}, {t}, {i}, {h}): {ratio:.2}")?;
    }
    Ok(0)
}

/// `--precision f16` or `mixed` where the bench would time the CPU reference.
fn cpu_has_no_f16(precision: Precision) -> GruError {
    GruError::Input(format!(
        "--precision {precision} times the device's f16 storage, and the CPU reference computes in f32: choose a device (see `gru devices`)"
    ))
}

/// A kernel family's time at a shape (B, T, I, H).
type ShapeKernel = ((usize, usize, usize, usize), KernelTime);

/// Percent of `peak`.
fn share(x: f64, peak: f64) -> f64 {
    100.0 * x / peak
}

fn lab_json(r: &Roofline, kernels: &[ShapeKernel]) -> serde_json::Value {
    let rows: Vec<_> = kernels
        .iter()
        .map(|((b, t, i, h), k)| {
            serde_json::json!({
                "shape": {"B": b, "T": t, "I": i, "H": h},
                "pass": k.pass,
                "kernel": k.kernel,
                "shader": k.shader,
                "dispatches": k.dispatches,
                "ms": k.seconds * 1e3,
                "gflops": k.gflops(),
                "percent_of_fma_peak": k.gflops().map(|g| share(g, r.fma_gflops)),
            })
        })
        .collect();
    serde_json::json!({
        "fma_gflops": r.fma_gflops,
        "stream_gbs": r.stream_gbs,
        "uniform_load_gflops": r.uniform_gflops,
        "workgroup_memory_gbs": r.workgroup_gbs,
        "kernels": rows,
    })
}

fn print_lab(r: &Roofline, kernels: &[ShapeKernel]) -> Result<()> {
    outln!("ceilings: register FMAs {:.1} GFLOP/s; streaming loads {:.2} GB/s; broadcast loads feeding 16 FMAs {:.1} GFLOP/s; workgroup memory {:.1} GB/s", r.fma_gflops, r.stream_gbs, r.uniform_gflops, r.workgroup_gbs)?;
    outln!("| shape (B, T, I, H) | pass | kernel (shader) | dispatches | ms | GFLOP/s | % of FMA peak |")?;
    outln!("| --- | --- | --- | --- | --- | --- | --- |")?;
    for ((b, t, i, h), k) in kernels {
        let g = k.gflops();
        outln!(
            "| ({b}, {t}, {i}, {h}) | {} | {} ({}) | {} | {:.2} | {} | {} |",
            k.pass,
            k.kernel,
            k.shader,
            k.dispatches,
            k.seconds * 1e3,
            g.map_or("-".into(), |g| format!("{g:.2}")),
            g.map_or("-".into(), |g| format!("{:.1}%", share(g, r.fma_gflops))),
        )?;
    }
    outln!()
}

/// The adapter as the bench tables name it.
pub fn adapter_label(ctx: &gru_engine::GpuContext) -> String {
    format!(
        "{} ({:?})",
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    )
}

/// The language model of `--train` and `--generate`: the model flags, hidden size 128
/// unless given, initialised with seed 1.
pub fn language_model(a: &BenchArgs) -> Result<(ModelConfig, ModelParams)> {
    let hidden = a.stack.hidden.unwrap_or(128);
    let cfg = a.stack.apply(ModelConfig::language_model(
        a.vocab.unwrap_or(113).max(2),
        a.embed,
        hidden,
    ));
    cfg.validate()?;
    Ok((cfg, ModelParams::init(cfg, 1)?))
}

/// The optimiser `--train` times: Adam, global-norm clipping at 1.
pub fn train_options() -> TrainOptions {
    gru_engine::gpu::estimate::training_options()
}

/// Random token ids and next-token targets, [B, T] each, for `--train`.
pub fn random_tokens(a: &BenchArgs) -> (Vec<u32>, Vec<u32>) {
    let (v, n) = (a.vocab.unwrap_or(113).max(2) as u64, a.batch * a.seq_len);
    let mut rng = Rng::new(2);
    let mut draw = || (0..n).map(|_| (rng.next_u64() % v) as u32).collect();
    (draw(), draw())
}

/// `gru bench --generate`: tokens/s of each generation route on the adapter and of the
/// CPU reference, in the same run, for the language model the flags give.
fn bench_generate(a: &BenchArgs, choice: &Choice) -> Result<u8> {
    let (cfg, params) = language_model(a)?;
    let (v, hidden) = (a.vocab.unwrap_or(113).max(2), cfg.hidden_size);
    let n = a.tokens as usize;
    let mut rows = Vec::new();
    let mut push = |device: String, route: String, s: f64| {
        rows.push(serde_json::json!({
            "device": device,
            "route": route,
            // Too fast to time at this length: no rate.
            "tokens_per_s": (s > 0.0).then(|| 1.0 / s),
            "ms_per_token": s * 1e3,
        }));
    };
    let precision = a.precision.inference();
    if let Choice::Gpu(ctx) = choice {
        let name = adapter_label(ctx);
        // With --precision f16, the f16 trainer's routes after the f32 routes.
        let mut precisions = vec![Precision::F32];
        if precision.is_half() {
            precisions.push(precision);
        }
        for p in precisions {
            let mut g =
                GpuTrainer::with_precision(ctx.clone(), &params, TrainOptions::default(), p)?;
            for r in lab::generation_routes(&mut g, n)? {
                push(name.clone(), r.route, r.seconds_per_token);
            }
        }
    } else if precision.is_half() {
        return Err(cpu_has_no_f16(precision));
    }
    if !a.no_cpu || matches!(choice, Choice::Cpu) {
        let mut c = CpuTrainer::new(params.clone(), TrainOptions::default())?;
        let s = Sampling::new(0.8).seed(1);
        let start = Instant::now();
        c.generate(&[0], 1, &s, &mut |_| {})?;
        let first = start.elapsed().as_secs_f64();
        let start = Instant::now();
        c.generate(&[0], n + 1, &s, &mut |_| {})?;
        let per = ((start.elapsed().as_secs_f64() - first) / n as f64).max(0.0);
        push("CPU reference".into(), "reference".into(), per);
    }
    let model = serde_json::json!({
        "vocab": v, "embed": a.embed, "hidden": hidden, "layers": cfg.num_layers,
        "parameters": cfg.param_count(), "tokens": n,
    });
    if a.json {
        outln!("{}", serde_json::json!({"model": model, "generate": rows}))?;
        return Ok(0);
    }
    outln!(
        "generation from a language model (V {v}, E {}, H {hidden}, {} layer(s); {} parameters; {n} tokens, temperature 0.8)",
        a.embed,
        cfg.num_layers,
        gru_engine::model::group_digits(cfg.param_count())
    )?;
    outln!("| device | route | tokens/s | ms/token |")?;
    outln!("| --- | --- | --- | --- |")?;
    for r in &rows {
        outln!(
            "| {} | {} | {} | {:.3} |",
            r["device"].as_str().unwrap_or(""),
            r["route"].as_str().unwrap_or(""),
            r["tokens_per_s"]
                .as_f64()
                .map_or("-".into(), |t| format!("{t:.0}")),
            r["ms_per_token"].as_f64().unwrap_or(0.0),
        )?;
    }
    Ok(0)
}

/// `gru bench --train`: training steps of the model the flags give, on the adapter and
/// on the CPU reference trainer in the same run (Adam, global-norm clipping at 1).
fn bench_train(a: &BenchArgs, choice: &Choice) -> Result<u8> {
    let (cfg, params) = language_model(a)?;
    let (v, b, t, hidden) = (
        a.vocab.unwrap_or(113).max(2),
        a.batch,
        a.seq_len,
        cfg.hidden_size,
    );
    let opts = train_options();
    let (x, y) = random_tokens(a);
    let batch = Batch::tokens(&x, b, t).classes(&y);
    let mut rows = Vec::new();
    // One row: seconds a step, dispatches a step and device memory where known.
    let row = |name: String, s: f64, dispatches: Option<usize>, bytes: Option<u64>| {
        let mut r = serde_json::json!({
            "device": name,
            "steps_per_s": 1.0 / s,
            "tokens_per_s": (b * t) as f64 / s,
            "ms_per_step": s * 1e3,
            "dispatches_per_step": dispatches,
        });
        if let Some(bytes) = bytes {
            r["device_memory_bytes"] = bytes.into();
        }
        r
    };
    let step = |name: String,
                tr: &mut dyn Trainer,
                dispatches: Option<usize>,
                sync: &dyn Fn() -> Result<()>|
     -> Result<serde_json::Value> {
        let s = time(a.seconds, || {
            tr.train_step(&batch)?;
            sync()
        })?;
        tr.take_metrics(Split::Train)?;
        Ok(row(name, s, dispatches, None))
    };
    let mut kernels = Vec::new();
    let precision = a.precision.to_lib();
    if let Choice::Gpu(ctx) = choice {
        // Each trainer's device memory: its buffers for this shape.
        let made = |p: Precision| -> Result<(GpuTrainer, u64, usize)> {
            let before = ctx.allocated_bytes();
            let mut tr = GpuTrainer::with_precision(ctx.clone(), &params, opts, p)?;
            tr.prepare(t, b)?;
            let bytes = ctx.allocated_bytes() - before;
            let n = tr.dispatches_per_step(t, b)?;
            Ok((tr, bytes, n))
        };
        let (mut g, g_bytes, n) = made(Precision::F32)?;
        let name = adapter_label(ctx);
        if precision == Precision::F32 {
            rows.push(step(name, &mut g, Some(n), &|| ctx.wait_idle())?);
        } else {
            // f32 and mixed in alternating rounds, the best round of each.
            let (mut m, m_bytes, m_n) = made(precision)?;
            let run = |tr: &mut GpuTrainer| -> Result<()> {
                tr.train_step(&batch)?;
                ctx.wait_idle()
            };
            let (gr, mr) = (&mut g, &mut m);
            let best = alternate(a.seconds, &mut [&mut || run(gr), &mut || run(mr)])?;
            // The running metrics, read once after the timing, not per step.
            g.take_metrics(Split::Train)?;
            m.take_metrics(Split::Train)?;
            let trainers = [
                (Precision::F32, g_bytes, n, best[0]),
                (precision, m_bytes, m_n, best[1]),
            ];
            for (p, bytes, n, s) in trainers {
                rows.push(row(format!("{name}, {p}"), s, Some(n), Some(bytes)));
            }
        }
        if a.roofline {
            kernels = lab::profile_training(&mut g, &batch, a.seconds.min(1.0))?;
        }
    } else if precision != Precision::F32 {
        return Err(cpu_has_no_f16(precision));
    }
    if !a.no_cpu || matches!(choice, Choice::Cpu) {
        let mut c = CpuTrainer::new(params.clone(), opts)?;
        rows.push(step("CPU reference".into(), &mut c, None, &|| Ok(()))?);
    }
    let model = serde_json::json!({
        "vocab": v, "embed": a.embed, "hidden": hidden, "layers": cfg.num_layers,
        "batch": b, "seq_len": t, "parameters": cfg.param_count(),
    });
    let shape = (b, t, a.embed, hidden);
    let kernels: Vec<ShapeKernel> = kernels.into_iter().map(|k| (shape, k)).collect();
    let roofline = match (choice, a.roofline) {
        (Choice::Gpu(ctx), true) => Some(lab::roofline(ctx, a.seconds.min(1.0))?),
        _ => None,
    };
    if a.json {
        let lab = roofline.map(|r| lab_json(&r, &kernels));
        outln!(
            "{}",
            serde_json::json!({"model": model, "train": rows, "roofline": lab})
        )?;
        return Ok(0);
    }
    if let Some(r) = &roofline {
        print_lab(r, &kernels)?;
    }
    outln!(
        "training steps of a language model (V {v}, E {}, H {hidden}, {} layer(s), B {b}, T {t}; {} parameters; Adam, clip-norm 1)",
        a.embed,
        cfg.num_layers,
        gru_engine::model::group_digits(cfg.param_count())
    )?;
    if precision != Precision::F32 {
        outln!("f32 and {precision} trainers timed in three alternating rounds each, the best round shown; device memory: the trainer's buffers for this shape")?;
    }
    outln!("| device | steps/s | tokens/s | ms/step | dispatches/step | device MB |")?;
    outln!("| --- | --- | --- | --- | --- | --- |")?;
    for r in &rows {
        outln!(
            "| {} | {:.2} | {:.0} | {:.1} | {} | {} |",
            r["device"].as_str().unwrap_or(""),
            r["steps_per_s"].as_f64().unwrap_or(0.0),
            r["tokens_per_s"].as_f64().unwrap_or(0.0),
            r["ms_per_step"].as_f64().unwrap_or(0.0),
            r["dispatches_per_step"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
            r["device_memory_bytes"]
                .as_f64()
                .map_or("-".into(), |b| format!("{:.1}", b / 1e6)),
        )?;
    }
    Ok(0)
}
