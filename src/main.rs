//! `gru`: the command line of gru-engine.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gru_engine::gpu::{best_adapter_index, list_adapters};

#[derive(Parser)]
#[command(
    name = "gru",
    version,
    about = "GRU training and inference on any Vulkan/Metal/DX12/GL GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters wgpu finds, with the limits and features that matter, and mark
    /// the one `--device auto` picks.
    #[command(after_help = "Examples:\n  gru devices\n  gru devices --backend vulkan")]
    Devices {
        /// Only this backend.
        #[arg(long, short, value_enum, default_value_t = Backend::All)]
        backend: Backend,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    All,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    fn to_wgpu(self) -> wgpu::Backends {
        match self {
            Backend::All => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

fn devices(backend: Backend) {
    let adapters = list_adapters(backend.to_wgpu());
    if adapters.is_empty() {
        println!("no GPU adapter found: device auto would run on the CPU reference path");
        return;
    }
    let primary: Vec<_> = adapters
        .iter()
        .filter(|a| a.backend != wgpu::Backend::Gl)
        .cloned()
        .collect();
    let best = best_adapter_index(if primary.is_empty() {
        &adapters
    } else {
        &primary
    });
    for a in &adapters {
        let mark = if Some(a.index) == best {
            "  <- auto"
        } else {
            ""
        };
        println!(
            "[{}] {} ({:?}, {:?}){mark}",
            a.index, a.name, a.backend, a.device_type
        );
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!(
            "    max storage buffer binding: {}, max buffer: {}, workgroup storage: {} KiB, storage buffers per stage: {}",
            mib(a.max_storage_buffer_binding_size),
            mib(a.max_buffer_size),
            a.max_compute_workgroup_storage_size / 1024,
            a.max_storage_buffers_per_shader_stage
        );
        println!(
            "    SHADER_F16: {}, SUBGROUP: {}",
            yes(a.shader_f16),
            yes(a.subgroup)
        );
    }
    if let Some(b) = best.map(|i| &adapters[i]) {
        if b.is_software() {
            println!("note: only a software adapter ({}) is available: correct but only a few GFLOP/s, not a GPU", b.name);
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Devices { backend } => devices(backend),
    }
    ExitCode::SUCCESS
}
