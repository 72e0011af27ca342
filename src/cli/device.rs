//! `--device` and `--backend`: where a command runs, said in one line when it is not a
//! hardware GPU.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use gru_engine::budget::{Footprint, Placement};
use gru_engine::checkpoint::Checkpoint;
use gru_engine::gpu::{
    best_adapter_index, list_adapters, AdapterSummary, DeviceRequest, GpuContext,
};
use gru_engine::model::{ModelConfig, ModelParams};
use gru_engine::train::{CpuTrainer, GpuTrainer, TrainOptions, Trainer};
use gru_engine::{GruError, Result};

/// A graphics API wgpu can use.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// Every backend this build has.
    All,
    /// Vulkan (Linux, Windows, Android).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES.
    Gl,
}

impl Backend {
    pub fn to_wgpu(self) -> wgpu::Backends {
        match self {
            Backend::All => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

/// The adapter `--device auto` uses: the best by type and backend, leaving out software
/// rasterisers behind GL, which are no faster than the CPU reference and are what a
/// machine without a Vulkan driver still offers, and adapters whose limits some kernel
/// would not fit.
pub fn auto_pick(adapters: &[AdapterSummary]) -> Option<usize> {
    let usable: Vec<_> = adapters
        .iter()
        .filter(|a| !(a.is_software() && a.backend == wgpu::Backend::Gl))
        .filter(|a| a.unfit.is_none())
        .cloned()
        .collect();
    best_adapter_index(&usable)
}

/// The adapter local rank `rank` takes where `best` is the auto pick: the machine's
/// hardware GPUs on the best one's backend in turn (rank modulo their count), so that
/// ranks sharing a machine share its GPUs; the best itself for rank 0 or without
/// hardware GPUs.
pub fn rank_pick(adapters: &[AdapterSummary], best: usize, rank: usize) -> usize {
    let Some(backend) = adapters.iter().find(|a| a.index == best).map(|a| a.backend) else {
        return best;
    };
    let gpus: Vec<usize> = adapters
        .iter()
        .filter(|a| a.backend == backend && !a.is_software() && a.unfit.is_none())
        .map(|a| a.index)
        .collect();
    match gpus.len() {
        0 => best,
        n => gpus[rank % n],
    }
}

/// Whether a software adapter runs models faster than the CPU reference: llvmpipe on
/// Vulkan from Mesa 25 on, with two cores or more. Measured on 2 cores (README,
/// "Benchmarks"): Mesa 25.0 trains the default model 2x and a 70,000-word classifier
/// 1.36x faster than the CPU reference, Mesa 22.3 1.5x and 2x slower; llvmpipe spreads
/// workgroups over the cores, the reference runs on one.
pub fn software_beats_cpu(a: &AdapterSummary, cores: usize) -> bool {
    a.is_software()
        && a.backend == wgpu::Backend::Vulkan
        && cores >= 2
        && mesa_major(&a.driver_info).is_some_and(|m| m >= 25)
}

/// The major version in a driver string such as "Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)".
fn mesa_major(driver_info: &str) -> Option<u32> {
    let rest = &driver_info[driver_info.find("Mesa ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Device flags shared by every command that computes.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto (a hardware GPU if there is one, else the CPU reference, which is faster
    /// than a software adapter such as llvmpipe), gpu (the best adapter, software ones
    /// included, or fail), cpu (the CPU reference), or an adapter index from
    /// `gru devices`. `gru bench` with auto times the best adapter.
    #[arg(long, short = 'd', default_value = "auto", env = "GRU_DEVICE")]
    pub device: String,
    /// Restrict adapters to one backend.
    #[arg(long, value_enum, default_value_t = Backend::All)]
    pub backend: Backend,
    /// Data-parallel training: this rank's number on its machine; `auto` takes the
    /// machine's hardware GPU of that number (modulo their count).
    #[arg(skip)]
    pub local_rank: usize,
    /// What a training run computes in (`RunArgs::precision`; f32 elsewhere).
    #[arg(skip)]
    pub precision: gru_engine::Precision,
}

/// Where to run.
pub enum Choice {
    Gpu(Arc<GpuContext>),
    Cpu,
}

impl DeviceArgs {
    /// These choices for a command that only predicts, computing in `precision`
    /// (`PrecisionArg::inference`).
    pub fn inferring(&self, precision: gru_engine::Precision) -> Self {
        DeviceArgs {
            precision,
            ..self.clone()
        }
    }

    /// Opens the device to run models on. Unless `quiet`, says in one line (stderr) when
    /// the pick is a software adapter or the CPU reference, so nobody mistakes it for
    /// their GPU.
    pub fn open(&self, quiet: bool) -> Result<Choice> {
        self.open_with(quiet, false)
    }

    /// [`DeviceArgs::open`], but `auto` keeps a software adapter (what `gru bench` times).
    pub fn open_adapter(&self, quiet: bool) -> Result<Choice> {
        self.open_with(quiet, true)
    }

    fn open_with(&self, quiet: bool, keep_software: bool) -> Result<Choice> {
        let backends = self.backend.to_wgpu();
        let say = |line: String| {
            if !quiet {
                eprintln!("{line}");
            }
        };
        let request = |index: Option<usize>| DeviceRequest {
            backends,
            adapter_index: index,
            ..Default::default()
        };
        // GRU_DEVICE="" is GRU_DEVICE unset.
        let device = match self.device.trim() {
            "" => "auto",
            d => d,
        };
        let ctx = match device {
            "cpu" => {
                say("device: the CPU reference (--device cpu)".into());
                return Ok(Choice::Cpu);
            }
            "auto" => {
                let adapters = list_adapters(backends);
                match auto_pick(&adapters).map(|i| rank_pick(&adapters, i, self.local_rank)) {
                    Some(i) => {
                        let ctx = GpuContext::new(&request(Some(i)))?;
                        let faster = software_beats_cpu(&adapters[i], cores());
                        if ctx.is_software() && !keep_software && !faster {
                            // Measured: llvmpipe before Mesa 25 trains the default model
                            // 1.5x slower than the CPU reference on 2 cores (README).
                            say(format!("note: the only GPU adapter is a software one ({}), usually slower than the CPU reference; running on the CPU reference path (--device gpu uses the adapter)", ctx.adapter_info().name));
                            return Ok(Choice::Cpu);
                        }
                        if ctx.is_software() && !keep_software {
                            say(format!("note: running on {}, a software adapter: from Mesa 25 on it trains faster than the CPU reference (--device cpu uses the CPU reference)", ctx.adapter_info().name));
                            return Ok(Choice::Gpu(ctx));
                        }
                        ctx
                    }
                    None => {
                        say("note: no GPU adapter found; running on the CPU reference path".into());
                        return Ok(Choice::Cpu);
                    }
                }
            }
            "gpu" => GpuContext::new(&request(None))?,
            n => {
                let index = n.parse::<usize>().map_err(|_| {
                    // Name where the value came from: the flag, or the variable.
                    let from = if crate::cli::args::given("device") {
                        "--device"
                    } else {
                        "the GRU_DEVICE environment variable"
                    };
                    GruError::Config(format!(
                        "{from} must be auto, gpu, cpu or an adapter index, found `{n}`"
                    ))
                })?;
                GpuContext::new(&request(Some(index)))?
            }
        };
        let info = ctx.adapter_info();
        if ctx.is_software() {
            say(format!(
                "note: running on {} ({:?}), a software adapter: correct but slow, not a GPU",
                info.name, info.backend
            ));
        } else {
            say(format!("device: {} ({:?})", info.name, info.backend));
        }
        Ok(Choice::Gpu(ctx))
    }

    /// A training run's trainer: a new model of `cfg` (initialised from `seed`), or the
    /// resumed checkpoint's parameters, optimiser state and carried state; see
    /// [`DeviceArgs::build`] for the checks made first.
    pub fn train_from(
        &self,
        cfg: &ModelConfig,
        resumed: Option<&Checkpoint>,
        seed: u64,
        opts: TrainOptions,
        quiet: bool,
        shape: (usize, usize),
    ) -> Result<Box<dyn Trainer>> {
        let cfg = *cfg;
        let mut t = self.build(
            &cfg,
            || match resumed {
                Some(c) => Ok(c.params.clone()),
                None => ModelParams::init(cfg, seed),
            },
            opts,
            quiet,
            shape,
        )?;
        if let Some(c) = resumed {
            c.restore(t.as_mut())?;
        }
        Ok(t)
    }

    /// A trainer on the chosen device, built only once the run is known to fit: the
    /// memory a run of `cfg` on batches of `batch` x `seq_len` needs is compared with
    /// what the host (and a software adapter, whose buffers are host memory) can give
    /// *before* `params` makes the parameters; then the trainer reserves its buffers for
    /// that shape, so a too-large batch fails here, before any batch is assembled.
    pub fn build(
        &self,
        cfg: &ModelConfig,
        params: impl FnOnce() -> Result<ModelParams>,
        opts: TrainOptions,
        quiet: bool,
        (batch, seq_len): (usize, usize),
    ) -> Result<Box<dyn Trainer>> {
        cfg.validate()?;
        let choice = self.open(quiet)?;
        let at = match &choice {
            Choice::Cpu => Placement::Cpu,
            Choice::Gpu(ctx) => Placement::Gpu {
                shares_host: ctx.is_software(),
            },
        };
        Footprint::check_training(
            cfg,
            batch,
            seq_len,
            at,
            "use a smaller --hidden, --embed, --layers, --batch or sequence length",
        )?;
        let params = params()?;
        let gpu = match &choice {
            Choice::Gpu(ctx) => Some((ctx.clone(), ctx.allocated_bytes())),
            Choice::Cpu => None,
        };
        let precision = self.precision;
        let mut t: Box<dyn Trainer> = match choice {
            Choice::Gpu(ctx) => Box::new(GpuTrainer::with_precision(ctx, &params, opts, precision)?),
            Choice::Cpu if precision != gru_engine::Precision::F32 => {
                return Err(GruError::Input(format!(
                    "--precision {precision} runs on a device with SHADER_F16, and this run is on the CPU reference, which computes in f32: use --precision f32 or a GPU (see `gru devices`)"
                )))
            }
            Choice::Cpu => Box::new(CpuTrainer::new(params, opts)?),
        };
        t.prepare(seq_len, batch)?;
        if let Some((ctx, before)) = gpu.filter(|_| !quiet) {
            let mb = (ctx.allocated_bytes() - before) as f64 / 1e6;
            let what = match precision {
                gru_engine::Precision::Mixed => "mixed precision: f32 parameters, gradients and optimiser state, their f16 copies, and the workspace of f16 activations and f32 gradients",
                gru_engine::Precision::F16 => "f16 inference: f16 parameters and the workspace of f16 activations, no gradients or optimiser state",
                gru_engine::Precision::F32 => "parameters, gradients, optimiser state, and the workspace",
            };
            eprintln!(
                "device memory: {mb:.1} MB of buffers ({what} of batches of {batch} x {seq_len})"
            );
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(driver_info: &str, backend: wgpu::Backend) -> AdapterSummary {
        AdapterSummary {
            index: 0,
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            backend,
            device_type: wgpu::DeviceType::Cpu,
            driver: "llvmpipe".into(),
            driver_info: driver_info.into(),
            max_storage_buffer_binding_size: 1 << 27,
            max_buffer_size: 1 << 31,
            max_compute_workgroup_storage_size: 1 << 15,
            max_storage_buffers_per_shader_stage: 32,
            shader_f16: true,
            subgroup: true,
            unfit: None,
        }
    }

    /// Ranks sharing a machine take its hardware GPUs in turn, on the best one's
    /// backend; without hardware GPUs every rank takes the best adapter.
    #[test]
    fn local_ranks_take_the_hardware_gpus_in_turn() {
        use wgpu::Backend::{Gl, Vulkan};
        let gpu = |index, backend| AdapterSummary {
            index,
            device_type: wgpu::DeviceType::DiscreteGpu,
            name: format!("GPU {index}"),
            ..info("", backend)
        };
        let soft = AdapterSummary {
            index: 3,
            ..info("Mesa 22.3.6", Vulkan)
        };
        let adapters = [gpu(0, Vulkan), gpu(1, Gl), gpu(2, Vulkan), soft.clone()];
        let best = auto_pick(&adapters).unwrap();
        let picks: Vec<usize> = (0..4).map(|r| rank_pick(&adapters, best, r)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        let alone = [AdapterSummary { index: 0, ..soft }];
        assert_eq!(rank_pick(&alone, 0, 3), 0);
    }

    #[test]
    fn llvmpipe_from_mesa_25_on_two_cores_beats_the_cpu_reference() {
        use wgpu::Backend::{Gl, Vulkan};
        assert!(software_beats_cpu(
            &info("Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)", Vulkan),
            2
        ));
        assert!(software_beats_cpu(&info("Mesa 26.1.0", Vulkan), 16));
        assert!(!software_beats_cpu(
            &info("Mesa 22.3.6 (LLVM 15.0.6)", Vulkan),
            2
        ));
        assert!(!software_beats_cpu(&info("Mesa 25.0.7", Vulkan), 1));
        assert!(!software_beats_cpu(&info("Mesa 25.0.7", Gl), 2));
        assert!(!software_beats_cpu(&info("SwiftShader driver", Vulkan), 8));
        assert_eq!(mesa_major("4.5 (Core Profile) Mesa 22.3.6"), Some(22));
        assert_eq!(mesa_major("no version"), None);
    }
}
