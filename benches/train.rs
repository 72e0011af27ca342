//! Training throughput: one full training step of a character language model
//! (embedding, GRU, dense head, cross-entropy, backward, global-norm clipping, Adam),
//! GPU against the CPU reference trainer in the same run. Prints steps/s and tokens/s.
//!
//! `cargo bench --bench train`; `GRU_BENCH_QUICK=1` runs only the small model,
//! `GRU_BENCH_NO_CPU=1` skips the reference.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::GpuContext;

/// (name, vocab, embed, hidden, B, T).
const MODELS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("small", 65, 16, 64, 16, 32),
    ("medium", 65, 32, 128, 32, 64),
];

/// Total time and iterations by (model, device).
type Results = BTreeMap<(usize, &'static str), (Duration, u64)>;

static RESULTS: Mutex<Results> = Mutex::new(BTreeMap::new());

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("GRU_BENCH_QUICK").is_some();
    let with_cpu = std::env::var_os("GRU_BENCH_NO_CPU").is_none();
    let ctx = GpuContext::new_default().ok();
    let device = ctx.as_ref().map_or("none".into(), |c| {
        format!("{} ({:?})", c.adapter_info().name, c.adapter_info().backend)
    });
    for (mi, &(name, vocab, e, h, b, t)) in MODELS.iter().enumerate() {
        if quick && mi > 0 {
            continue;
        }
        let cfg = ModelConfig::language_model(vocab, e, h);
        let params = ModelParams::init(cfg, 1).unwrap();
        let opts = TrainOptions::adam(1e-3).clip_norm(1.0);
        let mut rng = Rng::new(2);
        let x: Vec<u32> = (0..b * t)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect();
        let y: Vec<u32> = (0..b * t)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect();
        let batch = Batch::tokens(&x, b, t).classes(&y);
        let mut group = c.benchmark_group(format!("train_{name}_V{vocab}_E{e}_H{h}_B{b}_T{t}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        group.throughput(Throughput::Elements((b * t) as u64));
        let mut run = |dev: &'static str, trainer: &mut dyn Trainer, sync: &dyn Fn()| {
            trainer.train_step(&batch).unwrap();
            sync();
            group.bench_function(dev, |bn| {
                bn.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        trainer.train_step(&batch).unwrap();
                    }
                    sync();
                    let d = start.elapsed();
                    let mut r = RESULTS.lock().unwrap();
                    let e = r.entry((mi, dev)).or_insert((Duration::ZERO, 0));
                    e.0 += d;
                    e.1 += iters;
                    d
                })
            });
            // The loss is read once, at the end: training itself never waits on the host.
            std::hint::black_box(trainer.take_metrics(Split::Train).unwrap());
        };
        if let Some(ctx) = &ctx {
            let mut g = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
            run("gpu", &mut g, &|| ctx.wait_idle().unwrap());
        }
        if with_cpu {
            let mut cpu = CpuTrainer::new(params.clone(), opts).unwrap();
            run("cpu", &mut cpu, &|| {});
        }
        group.finish();
    }
    let r = RESULTS.lock().unwrap();
    println!("\nGPU: {device}; CPU: the reference trainer (one thread, f32)");
    println!("| model (V, E, H, B, T) | GPU steps/s | GPU tokens/s | CPU steps/s | CPU tokens/s | GPU/CPU |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (mi, &(_, v, e, h, b, t)) in MODELS.iter().enumerate() {
        let rate = |dev| r.get(&(mi, dev)).map(|(d, n)| *n as f64 / d.as_secs_f64());
        let (g, c) = (rate("gpu"), rate("cpu"));
        if g.is_none() && c.is_none() {
            continue;
        }
        let f = |v: Option<f64>, k: f64| v.map_or("-".into(), |s| format!("{:.1}", s * k));
        let ratio = match (g, c) {
            (Some(g), Some(c)) => format!("{:.1}x", g / c),
            _ => "-".into(),
        };
        let tok = (b * t) as f64;
        println!(
            "| ({v}, {e}, {h}, {b}, {t}) | {} | {} | {} | {} | {ratio} |",
            f(g, 1.0),
            f(g, tok),
            f(c, 1.0),
            f(c, tok)
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
