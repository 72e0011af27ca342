//! `gru bench`: the standard GRU shapes, forward and forward+backward, on the chosen
//! device and on the CPU reference in the same run.

use std::time::Instant;

use clap::Args;
use gru_engine::config::BENCH_SHAPES;
use gru_engine::rng::Rng;
use gru_engine::{cpu, GpuGru, GruConfig, GruWeights, Result, SequenceInput};

use crate::cli::device::{Choice, DeviceArgs};

/// (B, T, I, H), as in benches/gru.rs.

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru bench --quick
  gru bench --device 0 --json > bench.json")]
pub struct BenchArgs {
    /// Only the two smaller shapes.
    #[arg(long)]
    pub quick: bool,
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

pub fn bench(a: BenchArgs) -> Result<u8> {
    let choice = a.device.open(a.json)?;
    let device = match &choice {
        Choice::Gpu(ctx) => format!(
            "{} ({:?})",
            ctx.adapter_info().name,
            ctx.adapter_info().backend
        ),
        Choice::Cpu => "CPU reference".into(),
    };
    let mut rows = Vec::new();
    for s in BENCH_SHAPES.iter().take(if a.quick { 2 } else { 3 }) {
        let (b, t, i, h) = (s.batch, s.seq_len, s.input, s.hidden);
        let w = GruWeights::init(GruConfig::new(i, h), 1);
        let mut rng = Rng::new(2);
        let x = rng.uniform_vec(t * b * i, -1.0, 1.0);
        let dy = rng.uniform_vec(t * b * h, -1.0, 1.0);
        let input = SequenceInput::new(&x, t, b);
        let flops = 6.0 * (b * t * h * (i + h)) as f64;
        let mut gpu_times = [None, None];
        if let Choice::Gpu(ctx) = &choice {
            let mut g = GpuGru::new(ctx.clone(), &w)?;
            gpu_times[0] = Some(time(a.seconds, || {
                g.forward(&input)?;
                ctx.wait_idle()
            })?);
            gpu_times[1] = Some(time(a.seconds, || {
                g.forward(&input)?;
                g.backward_on_device(&dy, None)?;
                ctx.wait_idle()
            })?);
        }
        let mut cpu_times = [None, None];
        if !a.no_cpu {
            cpu_times[0] = Some(time(a.seconds, || cpu::forward(&w, &input).map(|_| ()))?);
            cpu_times[1] = Some(time(a.seconds, || {
                let f = cpu::forward(&w, &input)?;
                cpu::backward(&w, &f, &dy, None).map(|_| ())
            })?);
        }
        for (k, pass) in ["forward", "forward+backward"].into_iter().enumerate() {
            let fl = flops * if k == 0 { 1.0 } else { 3.0 };
            rows.push(serde_json::json!({
                "shape": {"B": b, "T": t, "I": i, "H": h},
                "pass": pass,
                "device_ms": gpu_times[k].map(|s| s * 1e3),
                "device_gflops": gpu_times[k].map(|s| fl / s / 1e9),
                "device_tokens_per_s": gpu_times[k].map(|s| (b * t) as f64 / s),
                "cpu_ms": cpu_times[k].map(|s| s * 1e3),
                "cpu_gflops": cpu_times[k].map(|s| fl / s / 1e9),
                "speedup_vs_cpu": match (gpu_times[k], cpu_times[k]) { (Some(g), Some(c)) => Some(c / g), _ => None },
            }));
        }
    }
    if a.json {
        println!("{}", serde_json::json!({"device": device, "results": rows}));
        return Ok(0);
    }
    println!("device: {device}; CPU: the reference (one thread, f32); FLOPs 6·B·T·H·(I+H) forward, x3 with backward");
    println!("| shape (B, T, I, H) | pass | device ms | GFLOP/s | tokens/s | CPU ms | CPU GFLOP/s | vs CPU |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let num =
        |v: &serde_json::Value, p: usize| v.as_f64().map_or("-".into(), |x| format!("{x:.p$}"));
    for r in &rows {
        let s = &r["shape"];
        println!(
            "| ({}, {}, {}, {}) | {} | {} | {} | {} | {} | {} | {} |",
            s["B"],
            s["T"],
            s["I"],
            s["H"],
            r["pass"].as_str().unwrap_or(""),
            num(&r["device_ms"], 2),
            num(&r["device_gflops"], 2),
            num(&r["device_tokens_per_s"], 0),
            num(&r["cpu_ms"], 2),
            num(&r["cpu_gflops"], 2),
            r["speedup_vs_cpu"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.2}x")),
        );
    }
    Ok(0)
}
