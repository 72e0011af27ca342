//! GRU forward and forward+backward throughput, GPU against the CPU reference in the same
//! run. FLOPs per sequence batch: 6·B·T·H·(I+H) forward, three times that for
//! forward+backward (the matmuls only; the gate arithmetic is not counted).
//!
//! `cargo bench --bench gru` runs every shape; `GRU_BENCH_QUICK=1` only the two small
//! ones; `GRU_BENCH_NO_CPU=1` skips the reference. A table with GFLOP/s and the ratio to
//! the CPU reference is printed at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gru_engine::rng::Rng;
use gru_engine::{cpu, GpuContext, GpuGru, GruConfig, GruWeights, SequenceInput};

/// (name, B, T, I, H).
/// (name, B, T, I, H) of the shared table.
fn shapes() -> Vec<(&'static str, usize, usize, usize, usize)> {
    gru_engine::config::BENCH_SHAPES
        .iter()
        .map(|s| (s.name, s.batch, s.seq_len, s.input, s.hidden))
        .collect()
}

/// (shape index, pass, device).
type Key = (usize, &'static str, &'static str);

/// Total time and iterations, by key.
static RESULTS: Mutex<BTreeMap<Key, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(shape: usize, pass: &'static str, device: &'static str, d: Duration, iters: u64) {
    let mut r = RESULTS.lock().unwrap();
    let e = r
        .entry((shape, pass, device))
        .or_insert((Duration::ZERO, 0));
    e.0 += d;
    e.1 += iters;
}

fn flops(b: usize, t: usize, i: usize, h: usize) -> u64 {
    6 * (b * t * h * (i + h)) as u64
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("GRU_BENCH_QUICK").is_some();
    let with_cpu = std::env::var_os("GRU_BENCH_NO_CPU").is_none();
    let ctx = match GpuContext::new_default() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("no GPU adapter ({e}); timing the CPU reference only");
            None
        }
    };
    let device_name = ctx.as_ref().map_or("none".to_string(), |c| {
        format!("{} ({:?})", c.adapter_info().name, c.adapter_info().backend)
    });
    for (si, (name, b, t, i, h)) in shapes().into_iter().enumerate() {
        if quick && si == 2 {
            continue;
        }
        let cfg = GruConfig::new(i, h);
        let w = GruWeights::init(cfg, 1);
        let mut rng = Rng::new(2);
        let x = rng.uniform_vec(t * b * i, -1.0, 1.0);
        let dy = rng.uniform_vec(t * b * h, -1.0, 1.0);
        let input = SequenceInput::new(&x, t, b);
        let f = flops(b, t, i, h);
        let mut group = c.benchmark_group(format!("gru_{name}_B{b}_T{t}_I{i}_H{h}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        if si == 2 {
            group.measurement_time(Duration::from_secs(1));
        }
        // One timed case: `run` does one iteration, `sync` waits for the device once.
        let mut case = |name: &str,
                        pass: &'static str,
                        dev: &'static str,
                        mult: u64,
                        run: &mut dyn FnMut(),
                        sync: &dyn Fn()| {
            group.throughput(Throughput::Elements(mult * f));
            group.bench_function(name, |bn| {
                bn.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run();
                    }
                    sync();
                    let d = start.elapsed();
                    record(si, pass, dev, d, iters);
                    d
                })
            });
        };
        if let Some(ctx) = &ctx {
            let gru = std::cell::RefCell::new(GpuGru::new(ctx.clone(), &w).unwrap());
            gru.borrow_mut().forward(&input).unwrap(); // builds the workspace and pipelines once
            ctx.wait_idle().unwrap();
            let sync = || ctx.wait_idle().unwrap();
            case(
                "gpu_forward",
                "forward",
                "gpu",
                1,
                &mut || gru.borrow_mut().forward(&input).unwrap(),
                &sync,
            );
            let mut fb = || {
                let mut g = gru.borrow_mut();
                g.forward(&input).unwrap();
                g.backward_on_device(&dy, None).unwrap();
            };
            case(
                "gpu_forward_backward",
                "forward+backward",
                "gpu",
                3,
                &mut fb,
                &sync,
            );
            // The same forward with f16 storage, where the adapter has SHADER_F16; its
            // row's ratio column compares it with the f32 forward of this run.
            if ctx.supports_f16() {
                let half =
                    GpuGru::with_precision(ctx.clone(), &w, gru_engine::Precision::F16).unwrap();
                let half = std::cell::RefCell::new(half);
                half.borrow_mut().forward(&input).unwrap();
                ctx.wait_idle().unwrap();
                case(
                    "gpu_forward_f16",
                    "forward, f16 storage",
                    "gpu",
                    1,
                    &mut || half.borrow_mut().forward(&input).unwrap(),
                    &sync,
                );
            }
        }
        if with_cpu {
            let none = || {};
            let mut fwd = || {
                std::hint::black_box(cpu::forward(&w, &input).unwrap());
            };
            case("cpu_forward", "forward", "cpu", 1, &mut fwd, &none);
            let mut fb = || {
                let fwd = cpu::forward(&w, &input).unwrap();
                std::hint::black_box(cpu::backward(&w, &fwd, &dy, None).unwrap());
            };
            case(
                "cpu_forward_backward",
                "forward+backward",
                "cpu",
                3,
                &mut fb,
                &none,
            );
        }
        group.finish();
    }
    print_table(&device_name);
}

fn print_table(device: &str) {
    let r = RESULTS.lock().unwrap();
    println!("\nGPU: {device}; CPU: the reference (one thread, f32); in the f16 rows, the CPU columns hold the f32 forward on the GPU (the ratio is f32 time / f16 time)");
    println!("| shape (B, T, I, H) | pass | GPU ms/seq | GPU GFLOP/s | CPU ms/seq | CPU GFLOP/s | GPU/CPU speed-up |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (si, (_, b, t, i, h)) in shapes().into_iter().enumerate() {
        let passes = [
            ("forward", 1),
            ("forward+backward", 3),
            ("forward, f16 storage", 1),
        ];
        for (pass, mult) in passes {
            let f = (mult * flops(b, t, i, h)) as f64;
            let mean = |dev| {
                r.get(&(si, pass, dev))
                    .map(|(d, n)| d.as_secs_f64() / *n as f64)
            };
            let (g, c) = (mean("gpu"), mean("cpu"));
            if g.is_none() && c.is_none() {
                continue;
            }
            // The f16 row: the CPU columns hold the f32 forward on the device instead.
            let c = if pass.contains("f16") {
                r.get(&(si, "forward", "gpu"))
                    .map(|(d, n)| d.as_secs_f64() / *n as f64)
            } else {
                c
            };
            let ms = |v: Option<f64>| v.map_or("-".into(), |s| format!("{:.2}", s * 1e3));
            let gf = |v: Option<f64>| v.map_or("-".into(), |s| format!("{:.2}", f / s / 1e9));
            let ratio = match (g, c) {
                (Some(g), Some(c)) => format!("{:.1}x", c / g),
                _ => "-".into(),
            };
            println!(
                "| ({b}, {t}, {i}, {h}) | {pass} | {} | {} | {} | {} | {ratio} |",
                ms(g),
                gf(g),
                ms(c),
                gf(c)
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
