//! The kernel lab: what the device can do at all (register FMAs, streaming, broadcast
//! and workgroup-memory loads) and what each kernel family of a GRU layer achieves at a
//! shape, measured in the same run so the second reads as a share of the first.
//!
//! ```no_run
//! use gru_engine::gpu::lab;
//! use gru_engine::{GpuContext, GpuGru, GruConfig, GruWeights, SequenceInput};
//! # fn main() -> gru_engine::Result<()> {
//! let ctx = GpuContext::new_default()?;
//! let peak = lab::roofline(&ctx, 0.3)?;
//! let w = GruWeights::init(GruConfig::new(128, 128), 1);
//! let mut gru = GpuGru::new(ctx, &w)?;
//! let (x, dy) = (vec![0.1; 64 * 32 * 128], vec![0.1; 64 * 32 * 128]);
//! for k in lab::profile(&mut gru, &SequenceInput::new(&x, 64, 32), &dy, 0.3)? {
//!     println!("{} {:.1} ms {:?} GFLOP/s of {:.0}", k.kernel, k.seconds * 1e3, k.gflops(), peak.fma_gflops);
//! }
//! # Ok(()) }
//! ```

use std::time::Instant;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::layer::GpuGru;
use crate::gpu::ops::roofline::{probe, Probe};
use crate::gpu::ops::{encode, Dispatch};
use crate::model::Batch;
use crate::sequence::SequenceInput;
use crate::train::{GpuTrainer, Trainer};

/// The device's measured ceilings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// Register-only FMAs, GFLOP/s.
    pub fma_gflops: f64,
    /// Coalesced per-invocation vec4 loads, GB/s.
    pub stream_gbs: f64,
    /// FMAs fed by a vec4 the whole workgroup reads (16 per load), GFLOP/s.
    pub uniform_gflops: f64,
    /// Reads from workgroup memory, GB/s.
    pub workgroup_gbs: f64,
}

/// One kernel family's share of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The pass: "forward", "backward", or "train" (a whole training step).
    pub pass: &'static str,
    /// The kernel's entry point (`gemm`, `step_fused`, `bwd_state`, ...).
    pub kernel: &'static str,
    /// The shader build it comes from (`gru_step_fwd`, or `gru_step_fwd_subgroup` where
    /// the adapter takes the subgroup build).
    pub shader: &'static str,
    /// Its dispatches in one pass.
    pub dispatches: usize,
    /// Seconds per pass spent in them, each family run alone.
    pub seconds: f64,
    /// Useful FLOPs per pass (0 where the kernel is not counted: elementwise ones).
    pub flops: u64,
}

impl KernelTime {
    /// Achieved GFLOP/s, where FLOPs are counted.
    pub fn gflops(&self) -> Option<f64> {
        (self.flops > 0).then(|| self.flops as f64 / self.seconds / 1e9)
    }
}

/// Mean seconds of one submission of `list` (after one warm-up), over about `budget`
/// seconds and at least two runs.
fn time_list(ctx: &GpuContext, list: &[Dispatch], budget: f64) -> Result<f64> {
    let once = || -> Result<()> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        encode(&mut enc, "lab", list);
        ctx.queue.submit([enc.finish()]);
        ctx.wait_idle()
    };
    once()?;
    let start = Instant::now();
    let mut n = 0u32;
    while n < 2 || start.elapsed().as_secs_f64() < budget {
        once()?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() / n as f64)
}

/// Measures the four ceilings, about `budget` seconds each.
pub fn roofline(ctx: &GpuContext, budget: f64) -> Result<Roofline> {
    // 64 MiB to stream through (past any cache), 1024 workgroups of threads.
    let threads = 65_536usize;
    let src = ctx.storage("roofline_src", 16 << 20)?;
    let dst = ctx.storage("roofline_dst", 4 * threads)?;
    let rate = |which: Probe, iters: u32| -> Result<f64> {
        let lens = ((16 << 20) / 4, threads);
        let d = ctx.scoped(|| probe(ctx, which, (threads, iters), (&src, &dst), lens))?;
        let s = time_list(ctx, &[d], budget)?;
        Ok(threads as f64 * iters as f64 * which.work_per_iteration() as f64 / s / 1e9)
    };
    Ok(Roofline {
        fma_gflops: rate(Probe::Fma, 2048)?,
        stream_gbs: rate(Probe::Stream, 64)?,
        uniform_gflops: rate(Probe::Uniform, 1024)?,
        workgroup_gbs: rate(Probe::Workgroup, 1024)?,
    })
}

/// Seconds one dispatch costs on its own: 64 dispatches of one workgroup that does
/// almost nothing, in one submission, about `budget` seconds in all.
pub fn dispatch_seconds(ctx: &GpuContext, budget: f64) -> Result<f64> {
    let src = ctx.storage("dispatch_src", 64)?;
    let dst = ctx.storage("dispatch_dst", 64)?;
    let one = ctx.scoped(|| probe(ctx, Probe::Fma, (64, 1), (&src, &dst), (64, 64)))?;
    let list = vec![one; 64];
    Ok(time_list(ctx, &list, budget)? / list.len() as f64)
}

/// Times every kernel family of `gru`'s forward and backward at the shape of `input`
/// (`d_output` as for [`GpuGru::backward_on_device`]): each family's dispatches of one
/// pass, in their recorded order, run alone, about `budget` seconds each. The sum is
/// close to the pass's time (the families do not overlap within a pass).
pub fn profile(
    gru: &mut GpuGru,
    input: &SequenceInput,
    d_output: &[f32],
    budget: f64,
) -> Result<Vec<KernelTime>> {
    gru.forward(input)?;
    gru.backward_on_device(d_output, None)?;
    let ctx = gru.context().clone();
    let (forward, backward) = gru.recorded()?;
    let mut out = by_kernel(&ctx, "forward", &forward, budget)?;
    out.extend(by_kernel(&ctx, "backward", &backward, budget)?);
    Ok(out)
}

/// Times every kernel family of one training step of `trainer` on `batch` (after one
/// real step, so buffers hold real values): the model's forward, loss and backward and
/// the update, each family alone, about `budget` seconds each. Pass "train".
pub fn profile_training(
    trainer: &mut GpuTrainer,
    batch: &Batch,
    budget: f64,
) -> Result<Vec<KernelTime>> {
    trainer.train_step(batch)?;
    let (t, b) = (batch.seq_len, batch.batch);
    let list = trainer.recorded_step(t, b)?;
    let ctx = trainer.context().clone();
    by_kernel(&ctx, "train", &list, budget)
}

/// `list`'s dispatches grouped by entry point in order of first use, each group timed
/// alone.
fn by_kernel(
    ctx: &GpuContext,
    pass: &'static str,
    list: &[Dispatch],
    budget: f64,
) -> Result<Vec<KernelTime>> {
    let mut kernels: Vec<&'static str> = Vec::new();
    for d in list {
        let k = d.pipeline.kernel.entry();
        if !kernels.contains(&k) {
            kernels.push(k);
        }
    }
    let mut out = Vec::new();
    for kernel in kernels {
        let part: Vec<Dispatch> = list
            .iter()
            .filter(|d| d.pipeline.kernel.entry() == kernel)
            .cloned()
            .collect();
        let seconds = time_list(ctx, &part, budget)?;
        out.push(KernelTime {
            pass,
            kernel,
            shader: part[0].pipeline.kernel.shader().label(),
            dispatches: part.len(),
            seconds,
            flops: part.iter().map(|d| d.flops).sum(),
        });
    }
    Ok(out)
}

/// One way of drawing tokens and how fast it went.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationTime {
    /// The build of generate.wgsl (`generate`, `generate_subgroup`, `generate_uniform`),
    /// or `per-token passes` (the model's own kernels, one pass per token).
    pub route: String,
    /// Mean seconds per token over `tokens` drawn after the prompt's pass.
    pub seconds_per_token: f64,
}

/// Times `gru generate`'s routes on `trainer`'s model in one run: the route the device
/// takes (one dispatch for many tokens, where the model fits one workgroup) and one
/// pass of the model's kernels per token, `n` tokens each at temperature 0.8 from a
/// one-token prompt (each route's first call compiles its pipelines and is not
/// counted). Both draw the same tokens.
pub fn generation_routes(trainer: &mut GpuTrainer, n: usize) -> Result<Vec<GenerationTime>> {
    use crate::generate::gpu::fused_for;
    use crate::generate::Sampling;
    let sampling = Sampling::new(0.8).seed(1);
    // An f16 or mixed trainer's routes read its f16 weights.
    let half = trainer.precision().is_half();
    let fused = fused_for(trainer.context(), trainer.config(), &sampling, half);
    let mut out = Vec::new();
    let routes = fused.map(Some).into_iter().chain([None]);
    for route in routes {
        let name = match route {
            Some(f) if half => format!("{}, {}", f.kernel.shader().label(), trainer.precision()),
            Some(f) => f.kernel.shader().label().to_string(),
            None if half => format!("per-token passes, {}", trainer.precision()),
            None => "per-token passes".to_string(),
        };
        let mut run = |k: usize| trainer.generate_with(&[0], k, &sampling, route, &mut |_| true);
        run(2)?;
        // The prompt's pass and first draw, timed alone, come off the total.
        let start = Instant::now();
        run(1)?;
        let first = start.elapsed().as_secs_f64();
        let start = Instant::now();
        run(n + 1)?;
        let total = start.elapsed().as_secs_f64();
        out.push(GenerationTime {
            route: name,
            seconds_per_token: ((total - first) / n as f64).max(0.0),
        });
    }
    Ok(out)
}
