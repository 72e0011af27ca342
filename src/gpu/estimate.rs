//! Estimates for GPUs we cannot run on (design.md §9): the dispatch plan a class of
//! adapter gets, recorded on whatever adapter is at hand without running it, and read
//! as a roofline against a GPU's peak figures; cuDNN's standard algorithm read the same
//! way, for comparison.
//!
//! ```no_run
//! use gru_engine::gpu::estimate::{self, AdapterClass, Shape, GPUS};
//! # fn main() -> gru_engine::Result<()> {
//! let shape = Shape { batch: 64, seq_len: 100, input: 256, hidden: 1024, vocab: Some(100) };
//! let plan = estimate::record(AdapterClass::Discrete, &shape)?;
//! let h100 = &GPUS[0];
//! let ms = estimate::total(&plan.dispatches, h100) * 1e3;
//! println!("{} dispatches, {ms:.2} ms against cuDNN's {:.2}", plan.dispatches.len(), estimate::cudnn(&shape, h100) * 1e3);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::GruConfig;
use crate::error::{GruError, Result};
use crate::gpu::backward::BackwardNeeds;
use crate::gpu::context::{DeviceRequest, GpuContext};
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::Dispatch;
use crate::gpu::params::GpuParams;
use crate::gpu::plan::workspace;
use crate::model::{ModelConfig, ModelParams};
use crate::train::{GpuTrainer, TrainOptions};

/// Which builds a plan is recorded for: what the engine gives a discrete GPU, an
/// integrated one, or a software adapter (llvmpipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterClass {
    /// A discrete GPU.
    Discrete,
    /// An integrated GPU (Apple, Intel, AMD APUs): the step kernels in wide tiles.
    Integrated,
    /// A CPU rasterizer (llvmpipe, SwiftShader); recorded only on one.
    Software,
}

/// The shape of a plan: a one-layer GRU's forward and backward over [T, B, I] with H
/// units, or (with `vocab`) a training step of the language model embedding I,
/// GRU(H), dense to `vocab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// B.
    pub batch: usize,
    /// T.
    pub seq_len: usize,
    /// I: the layer's input size, or the embedding size.
    pub input: usize,
    /// H.
    pub hidden: usize,
    /// The vocabulary of the language model's training step; `None`: the layer only.
    pub vocab: Option<usize>,
}

/// One dispatch of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDispatch {
    /// `build:entry`, as `gru_step_fwd_split:step_fused`; every per-step recurrent kernel
    /// comes from a `gru_step_*` build.
    pub kernel: String,
    /// The grid; `[0, 0, 0]` where it is read from a buffer (`indirect`).
    pub workgroups: [u32; 3],
    /// Whether the grid is indirect (work that follows the tokens a batch holds).
    pub indirect: bool,
    /// Invocations per workgroup.
    pub threads_per_workgroup: u32,
    /// Workgroup memory its build declares, in bytes.
    pub workgroup_bytes: u32,
    /// Useful floating-point operations (0 where uncounted: elementwise kernels).
    pub flops: u64,
    /// Bytes read at least once.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes loaded from global memory by all its workgroups (shared operands once per
    /// workgroup that loads them).
    pub bytes_loaded: u64,
}

impl PlannedDispatch {
    /// Whether it is a per-step kernel of the recurrence (one dispatch per timestep, or
    /// per chunk of them).
    pub fn is_step(&self) -> bool {
        self.kernel.contains("step")
    }

    /// Workgroups in the grid.
    pub fn workgroup_count(&self) -> u64 {
        self.workgroups.iter().map(|&g| g as u64).product()
    }
}

/// A GPU's peak figures, as its vendor states them (approximate, public).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSpec {
    /// What `--gpu` matches (lower case, no spaces).
    pub id: &'static str,
    /// A readable name.
    pub name: &'static str,
    /// FP32 FLOP/s without tensor cores or dual issue, in TFLOP/s.
    pub fp32_tflops: f64,
    /// DRAM bandwidth, GB/s.
    pub dram_gbs: f64,
    /// Bandwidth from the last-level cache to the cores, GB/s.
    pub l2_gbs: f64,
    /// Streaming multiprocessors, compute units or cores (the unit a workgroup runs on).
    pub units: u32,
    /// Seconds a dispatch costs on its own (launch and the barrier after it), µs.
    pub dispatch_us: f64,
}

/// Known GPUs. FP32 rates count one FMA per lane per clock (the 7900 XTX's dual issue,
/// which generic code rarely gets, is left out); cache bandwidths are approximate
/// figures from public microbenchmarks; dispatch costs are what wgpu adds per compute
/// dispatch with a barrier after it. See design.md §9.
pub const GPUS: &[GpuSpec] = &[
    GpuSpec {
        id: "h100",
        name: "NVIDIA H100 SXM",
        fp32_tflops: 66.9,
        dram_gbs: 3350.0,
        l2_gbs: 7000.0,
        units: 132,
        dispatch_us: 5.0,
    },
    GpuSpec {
        id: "a100",
        name: "NVIDIA A100 SXM",
        fp32_tflops: 19.5,
        dram_gbs: 2039.0,
        l2_gbs: 4800.0,
        units: 108,
        dispatch_us: 5.0,
    },
    GpuSpec {
        id: "rtx4090",
        name: "NVIDIA GeForce RTX 4090",
        fp32_tflops: 82.6,
        dram_gbs: 1008.0,
        l2_gbs: 5000.0,
        units: 128,
        dispatch_us: 5.0,
    },
    GpuSpec {
        id: "rx7900xtx",
        name: "AMD Radeon RX 7900 XTX",
        fp32_tflops: 30.7,
        dram_gbs: 960.0,
        l2_gbs: 3500.0,
        units: 96,
        dispatch_us: 6.0,
    },
    GpuSpec {
        id: "m2max",
        name: "Apple M2 Max (38-core GPU)",
        fp32_tflops: 13.6,
        dram_gbs: 400.0,
        l2_gbs: 1000.0,
        units: 38,
        dispatch_us: 8.0,
    },
    GpuSpec {
        id: "a770",
        name: "Intel Arc A770",
        fp32_tflops: 19.7,
        dram_gbs: 560.0,
        l2_gbs: 1800.0,
        units: 32,
        dispatch_us: 8.0,
    },
];

/// The known GPU whose id or name contains `name` (case and spaces ignored).
pub fn gpu(name: &str) -> Option<&'static GpuSpec> {
    let key: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_lowercase();
    GPUS.iter().find(|g| {
        let n: String = g.name.chars().filter(|c| !c.is_whitespace()).collect();
        g.id == key || n.to_lowercase().contains(&key)
    })
}

/// How well a family of kernels uses a GPU's FP32 rate and how much a dispatch costs:
/// the engine's WGSL kernels, or cuBLAS/cuDNN on CUDA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Efficiency {
    /// Share of the FP32 peak its FMAs reach when the GPU is full.
    pub fma: f64,
    /// Seconds per dispatch, as a multiple of the GPU's `dispatch_us`.
    pub dispatch: f64,
}

/// The engine's kernels: register-blocked SIMT FMAs, about half the FP32 peak (no
/// tensor cores, vec4 loads, 8 x 8 blocks at best).
pub const OURS: Efficiency = Efficiency {
    fma: 0.5,
    dispatch: 1.0,
};

/// cuBLAS's SGEMM and cuDNN's kernels: 80% of the FP32 peak, a CUDA launch in a stream
/// at 2 µs where wgpu's dispatch takes 5.
pub const CUDA: Efficiency = Efficiency {
    fma: 0.8,
    dispatch: 0.4,
};

/// Workgroups per unit the estimate wants before it counts the GPU as full: with
/// fewer, latency is not hidden and the rates below scale down with the share filled.
pub const WORKGROUPS_PER_UNIT: u64 = 4;

/// One dispatch's estimated time and what bounds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchTime {
    /// Seconds, dispatch cost included.
    pub seconds: f64,
    /// "compute", "dram", "cache" or "dispatch".
    pub bound: &'static str,
    /// Share of the GPU its grid fills (workgroups over units times
    /// [`WORKGROUPS_PER_UNIT`], at most 1).
    pub fill: f64,
}

/// The roofline of one dispatch on `gpu`: the longest of its FMAs at the kernels' rate,
/// its bytes at DRAM bandwidth and its loads at cache bandwidth, each scaled by the
/// share of the GPU its grid fills, plus the dispatch's own cost.
pub fn dispatch_time(d: &PlannedDispatch, gpu: &GpuSpec, eff: &Efficiency) -> DispatchTime {
    let full = WORKGROUPS_PER_UNIT * gpu.units as u64;
    let fill = if d.indirect {
        1.0
    } else {
        (d.workgroup_count() as f64 / full as f64).min(1.0)
    };
    let compute = d.flops as f64 / (gpu.fp32_tflops * 1e12 * eff.fma * fill);
    let dram = (d.bytes_read + d.bytes_written) as f64 / (gpu.dram_gbs * 1e9 * fill);
    let cache = d.bytes_loaded as f64 / (gpu.l2_gbs * 1e9 * fill);
    let launch = gpu.dispatch_us * 1e-6 * eff.dispatch;
    let (work, bound) = [(compute, "compute"), (dram, "dram"), (cache, "cache")]
        .into_iter()
        .fold((0.0, "dispatch"), |m, x| if x.0 > m.0 { x } else { m });
    let bound = if launch > work { "dispatch" } else { bound };
    DispatchTime {
        seconds: work + launch,
        bound,
        fill,
    }
}

/// A recorded plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The adapter it was recorded on (name and backend).
    pub recorded_on: String,
    /// Its dispatches in order.
    pub dispatches: Vec<PlannedDispatch>,
}

/// Records (never runs) the dispatches `class` gets for `shape` on the best adapter at
/// hand: a software plan needs a software adapter; the GPU classes' builds are forced
/// on any adapter. A shape past the adapter's binding limit fails with `TooLarge`.
pub fn record(class: AdapterClass, shape: &Shape) -> Result<Plan> {
    let request = match class {
        AdapterClass::Software => DeviceRequest::default(),
        AdapterClass::Discrete | AdapterClass::Integrated => DeviceRequest {
            subgroup_kernels: false,
            sequence_kernels: false,
            split_steps: Some(true),
            wide_steps: Some(class == AdapterClass::Integrated),
            record_only: true,
            ..Default::default()
        },
    };
    let ctx = GpuContext::new(&request).map_err(|e| match e {
        GruError::NoAdapter(why) => GruError::NoAdapter(format!(
            "{why} (a plan is only recorded, not run, so any adapter serves, llvmpipe included)"
        )),
        e => e,
    })?;
    if class == AdapterClass::Software && !ctx.is_software() {
        return Err(GruError::NoAdapter(format!(
            "the software plan is recorded on a software adapter (llvmpipe), found only {}",
            ctx.adapter_info().name
        )));
    }
    let list = match shape.vocab {
        None => layer_list(&ctx, shape)?,
        Some(vocab) => training_list(&ctx, shape, vocab)?,
    };
    let info = ctx.adapter_info();
    Ok(Plan {
        recorded_on: format!("{} ({:?})", info.name, info.backend),
        dispatches: list.iter().map(planned).collect(),
    })
}

/// Whether `d` is latency-bound by nature on `gpu`: even with the GPU full, its work
/// would take less than the dispatch itself costs (a reduction's last stage, a loss
/// over a few rows), so more workgroups would not shorten it.
pub fn latency_bound(d: &PlannedDispatch, gpu: &GpuSpec, eff: &Efficiency) -> bool {
    let full = PlannedDispatch {
        workgroups: [u32::MAX, 1, 1],
        ..d.clone()
    };
    let t = dispatch_time(&full, gpu, eff);
    let launch = gpu.dispatch_us * 1e-6 * eff.dispatch;
    t.seconds - launch <= launch
}

fn layer_list(ctx: &Arc<GpuContext>, s: &Shape) -> Result<Vec<Dispatch>> {
    let cfg = GruConfig::new(s.input, s.hidden);
    cfg.validate()?;
    let params = GpuParams::new(ctx, &cfg)?;
    let ws = workspace(
        ctx,
        &cfg,
        &params,
        (s.seq_len, s.batch, false),
        BackwardNeeds::layer(false),
    )?;
    Ok(ws.forward.iter().chain(&ws.backward).cloned().collect())
}

fn training_list(ctx: &Arc<GpuContext>, s: &Shape, vocab: usize) -> Result<Vec<Dispatch>> {
    let cfg = ModelConfig::language_model(vocab, s.input, s.hidden);
    cfg.validate()?;
    let params = ModelParams::init(cfg, 1)?;
    let mut trainer = GpuTrainer::new(ctx.clone(), &params, training_options())?;
    trainer.recorded_step(s.seq_len, s.batch)
}

/// The optimiser of the plan's training step, and of `gru bench --train`: Adam,
/// global-norm clipping at 1.
pub fn training_options() -> TrainOptions {
    TrainOptions::adam(2e-3).clip_norm(1.0)
}

fn planned(d: &Dispatch) -> PlannedDispatch {
    let k = d.pipeline.kernel;
    let (threads, workgroup_bytes) = entry_info(k);
    PlannedDispatch {
        kernel: format!("{}:{}", k.shader().label(), k.entry()),
        workgroups: d.groups,
        indirect: d.indirect.is_some(),
        threads_per_workgroup: threads,
        workgroup_bytes,
        flops: d.flops,
        bytes_read: d.traffic.read,
        bytes_written: d.traffic.written,
        bytes_loaded: d.traffic.loads,
    }
}

/// Invocations per workgroup of `kernel` and the workgroup memory its build declares,
/// as naga reads the build.
fn entry_info(kernel: Kernel) -> (u32, u32) {
    static CACHE: OnceLock<Mutex<HashMap<Kernel, (u32, u32)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&kernel).copied()) {
        return v;
    }
    let info = naga::front::wgsl::parse_str(kernel.shader().source())
        .ok()
        .map(|module| {
            let threads = module
                .entry_points
                .iter()
                .find(|e| e.name == kernel.entry())
                .map_or(0, |e| e.workgroup_size.iter().product());
            let mut layouter = naga::proc::Layouter::default();
            let bytes = match layouter.update(module.to_ctx()) {
                Ok(()) => module
                    .global_variables
                    .iter()
                    .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
                    .map(|(_, v)| layouter[v.ty].size)
                    .sum(),
                Err(_) => 0,
            };
            (threads, bytes)
        })
        .unwrap_or((0, 0));
    if let Ok(mut c) = cache.lock() {
        c.insert(kernel, info);
    }
    info
}

/// One kernel of cuDNN's plan, as [`cudnn_plan`] lists it.
fn op(
    kernel: &str,
    workgroups: u64,
    flops: u64,
    floats: (u64, u64),
    loads: u64,
) -> PlannedDispatch {
    PlannedDispatch {
        kernel: kernel.to_string(),
        workgroups: [workgroups.clamp(1, u32::MAX as u64) as u32, 1, 1],
        indirect: false,
        threads_per_workgroup: 256,
        workgroup_bytes: 0,
        flops,
        bytes_read: 4 * floats.0,
        bytes_written: 4 * floats.1,
        bytes_loaded: 4 * loads,
    }
}

/// cuBLAS's SGEMM C[m, n] = A[m, k] · B[k, n] on `gpu`: 128 x 128 tiles, 64 x 64 where
/// that leaves the GPU less than full, then split-K until it is full (at most k / 128
/// slices), each tile loading its rows of A and columns of B.
fn sgemm(name: &str, (m, n, k): (u64, u64, u64), gpu: &GpuSpec) -> PlannedDispatch {
    let full = WORKGROUPS_PER_UNIT * gpu.units as u64;
    let tiles = |t: u64| m.div_ceil(t) * n.div_ceil(t);
    let tile = if tiles(128) >= full { 128 } else { 64 };
    let split = (full / tiles(tile).max(1)).clamp(1, (k / 128).max(1));
    let loads = m * k * n.div_ceil(tile) + k * n * m.div_ceil(tile);
    op(
        name,
        tiles(tile) * split,
        2 * m * n * k,
        (m * k + k * n, m * n * split),
        loads,
    )
}

/// An elementwise kernel over `n` values reading `ins` and writing `outs` per value.
fn elementwise(name: &str, n: u64, ins: u64, outs: u64) -> PlannedDispatch {
    op(name, n.div_ceil(256), 0, (ins * n, outs * n), ins * n)
}

/// What cuDNN's standard algorithm (`CUDNN_RNN_ALGO_STANDARD`, what PyTorch's
/// `nn.GRU` takes in FP32) launches for `shape`, as design.md §9 derives it: the input
/// projection as one SGEMM; per step an SGEMM [B, H] x [H, 3H] and an elementwise gate
/// kernel; backward per step an elementwise kernel and an SGEMM [B, 3H] x [3H, H]; then
/// the weight gradients and dX as single SGEMMs over all steps and the bias gradients
/// as column sums. With a vocabulary, the language model around it: embedding lookup
/// and gradient, the dense layer's three SGEMMs, softmax cross-entropy, and one fused
/// Adam over every parameter.
pub fn cudnn_plan(s: &Shape, gpu: &GpuSpec) -> Vec<PlannedDispatch> {
    let (b, t, i, h) = (
        s.batch as u64,
        s.seq_len as u64,
        s.input as u64,
        s.hidden as u64,
    );
    let tb = t * b;
    let mut list = Vec::new();
    if s.vocab.is_some() {
        list.push(elementwise("embedding", tb * i, 1, 1));
    }
    list.push(sgemm("sgemm_input", (tb, 3 * h, i), gpu));
    for _ in 0..t {
        list.push(sgemm("sgemm_step", (b, 3 * h, h), gpu));
        // gx, gh, h_prev -> h, reserve (r, z, n, W_hn h).
        list.push(elementwise("gates_step", b * h, 7, 5));
    }
    if let Some(v) = s.vocab {
        let v = v as u64;
        list.push(sgemm("sgemm_dense", (tb, v, h), gpu));
        list.push(elementwise("softmax_cross_entropy", tb * v, 1, 1));
        list.push(sgemm("sgemm_dense_dw", (v, h, tb), gpu));
        list.push(sgemm("sgemm_dense_dx", (tb, h, v), gpu));
    }
    for _ in 0..t {
        // dh, reserve, h_prev -> dGx, dGh, dh.
        list.push(elementwise("dgates_step", b * h, 7, 7));
        list.push(sgemm("sgemm_dh_step", (b, h, 3 * h), gpu));
    }
    list.push(sgemm("sgemm_dw_hh", (3 * h, h, tb), gpu));
    list.push(sgemm("sgemm_dw_ih", (3 * h, i, tb), gpu));
    list.push(elementwise("bias_sums", tb * 3 * h, 2, 0));
    list.push(sgemm("sgemm_dx", (tb, i, 3 * h), gpu));
    if let Some(v) = s.vocab {
        let v = v as u64;
        list.push(elementwise("embedding_grad", tb * i, 1, 1));
        let params = v * i + 3 * h * (i + h) + 6 * h + v * h + v;
        list.push(elementwise("adam", params, 4, 3));
    }
    list
}

/// cuDNN's estimated seconds for `shape` on `gpu` ([`cudnn_plan`] at [`CUDA`]'s rates).
pub fn cudnn(shape: &Shape, gpu: &GpuSpec) -> f64 {
    cudnn_plan(shape, gpu)
        .iter()
        .map(|d| dispatch_time(d, gpu, &CUDA).seconds)
        .sum()
}

/// The estimated seconds of `plan` on `gpu` at the engine's rates.
pub fn total(plan: &[PlannedDispatch], gpu: &GpuSpec) -> f64 {
    plan.iter()
        .map(|d| dispatch_time(d, gpu, &OURS).seconds)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(workgroups: u32, flops: u64, bytes: u64, loads: u64) -> PlannedDispatch {
        PlannedDispatch {
            kernel: "k".into(),
            workgroups: [workgroups, 1, 1],
            indirect: false,
            threads_per_workgroup: 128,
            workgroup_bytes: 0,
            flops,
            bytes_read: bytes,
            bytes_written: 0,
            bytes_loaded: loads,
        }
    }

    /// The roofline takes the slowest of its three terms, scales it by the share of the
    /// GPU the grid fills and adds the dispatch.
    #[test]
    fn the_roofline_takes_the_bound_and_the_fill() {
        let g = gpu("h100").unwrap();
        let full = 4 * 132;
        let t = dispatch_time(&one(full, 66_900_000_000, 0, 0), g, &OURS);
        assert!((t.seconds - (2e-3 + 5e-6)).abs() < 1e-9, "{t:?}");
        assert_eq!((t.bound, t.fill), ("compute", 1.0));
        let t = dispatch_time(&one(full / 4, 0, 3_350_000_000, 0), g, &OURS);
        assert!((t.seconds - (4e-3 + 5e-6)).abs() < 1e-9, "{t:?}");
        assert_eq!(t.bound, "dram");
        let t = dispatch_time(&one(full, 0, 0, 7_000_000_000), g, &OURS);
        assert_eq!(t.bound, "cache");
        let t = dispatch_time(&one(1, 1000, 4, 4), g, &CUDA);
        assert_eq!(t.bound, "dispatch");
        assert!((t.seconds - 2e-6).abs() < 1e-7, "{t:?}");
    }

    #[test]
    fn known_gpus_match_by_id_or_name() {
        assert_eq!(gpu("H100").unwrap().id, "h100");
        assert_eq!(gpu("RTX 4090").unwrap().id, "rtx4090");
        assert_eq!(gpu("7900xtx").unwrap().id, "rx7900xtx");
        assert_eq!(gpu("M2 Max").unwrap().id, "m2max");
        assert!(gpu("voodoo").is_none());
    }

    /// cuDNN's plan of the seed model's step: 2T + 2T step kernels and the FLOPs of
    /// the products (3 recurrent and 3 input-sized, the dense layer's 3).
    #[test]
    fn the_cudnn_plan_counts_its_kernels_and_flops() {
        let s = Shape {
            batch: 64,
            seq_len: 100,
            input: 256,
            hidden: 1024,
            vocab: Some(100),
        };
        let g = gpu("h100").unwrap();
        let plan = cudnn_plan(&s, g);
        let steps = plan.iter().filter(|d| d.kernel.contains("step")).count();
        assert_eq!(steps, 400);
        let flops: u64 = plan.iter().map(|d| d.flops).sum();
        let (tb, h, i, v) = (6400u64, 1024u64, 256u64, 100u64);
        assert_eq!(
            flops,
            3 * 2 * tb * 3 * h * h + 3 * 2 * tb * 3 * h * i + 3 * 2 * tb * h * v
        );
        let ms = cudnn(&s, g) * 1e3;
        assert!((1.5..6.0).contains(&ms), "{ms} ms");
    }
}
