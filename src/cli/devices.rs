//! `gru devices`: the adapters wgpu finds, their limits and features, and the auto pick.

use crate::cli::out::outln;
use clap::Args;
use gru_engine::gpu::list_adapters;

use crate::cli::device::{auto_pick, cores, software_beats_cpu, Backend};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  gru devices\n  gru devices --backend vulkan")]
pub struct DevicesArgs {
    /// Only this backend.
    #[arg(long, short, value_enum, default_value_t = Backend::All)]
    pub backend: Backend,
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn devices(a: DevicesArgs) -> gru_engine::Result<u8> {
    let adapters = list_adapters(a.backend.to_wgpu());
    if adapters.is_empty() {
        outln!("no GPU adapter found: device auto would run on the CPU reference path")?;
        return Ok(0);
    }
    let best = auto_pick(&adapters);
    for a in &adapters {
        let mark = if Some(a.index) == best {
            "  <- auto"
        } else {
            ""
        };
        outln!(
            "[{}] {} ({:?}, {:?}){mark}",
            a.index,
            a.name,
            a.backend,
            a.device_type
        )?;
        outln!("    driver: {} {}", a.driver, a.driver_info)?;
        outln!(
            "    max storage buffer binding: {}, max buffer: {}, workgroup storage: {} KiB, storage buffers per stage: {}",
            mib(a.max_storage_buffer_binding_size),
            mib(a.max_buffer_size),
            a.max_compute_workgroup_storage_size / 1024,
            a.max_storage_buffers_per_shader_stage
        )?;
        outln!(
            "    SHADER_F16: {}, SUBGROUP: {}",
            yes(a.shader_f16),
            yes(a.subgroup)
        )?;
        match &a.unfit {
            None => outln!("    kernels: every kernel fits the adapter's limits"),
            Some(why) => outln!("    kernels: do not fit, so auto passes it over: {why}"),
        }?;
    }
    if matches!(a.backend, Backend::All) && !adapters.iter().any(|x| x.backend == wgpu::Backend::Gl)
    {
        outln!("(GL adapters are probed only when no Vulkan/Metal/DX12 adapter exists; `--backend gl` lists them)")?;
    }
    match best.map(|i| &adapters[i]) {
        Some(b) if b.is_software() && software_beats_cpu(b, cores()) => outln!(
            "note: only a software adapter ({}) is available: correct but only a few GFLOP/s, not a GPU; from Mesa 25 on it trains faster than the CPU reference, so device auto runs models on it",
            b.name
        ),
        Some(b) if b.is_software() => outln!(
            "note: only a software adapter ({}) is available: correct but only a few GFLOP/s, not a GPU; device auto runs models on the CPU reference path (faster here), gru bench times the adapter",
            b.name
        ),
        Some(_) => Ok(()),
        None => outln!(
            "note: only software GL adapters: device auto would run on the CPU reference path"
        ),
    }?;
    Ok(0)
}
