//! The GPU path: device context, kernels and their cache, workspaces, and the layer.

pub(crate) mod abi;
mod backward;
pub(crate) mod bind;
pub(crate) mod cache;
pub mod context;
pub mod estimate;
pub(crate) mod flat;
mod forward;
pub(crate) mod kernels;
pub mod lab;
mod layer;
pub(crate) mod ops;
pub(crate) mod params;
pub(crate) mod plan;
pub(crate) mod wait;
pub(crate) mod workspace;

#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use context::UNIFORM_BUFFERS_PER_STAGE;
pub use context::{
    best_adapter_index, list_adapters_async, AdapterSummary, DeviceRequest, GpuContext,
};
pub use layer::GpuGru;

/// Every shader as the device compiles it (the shared declarations of `abi` followed by
/// the file), by file name: for tools and tests that check WGSL without a device.
#[doc(hidden)]
pub fn shader_sources() -> Vec<(&'static str, &'static str)> {
    kernels::ALL_SHADERS
        .iter()
        .map(|s| (s.label(), s.source()))
        .collect()
}

/// Every entry point the engine builds a pipeline from: (build label, as in
/// [`shader_sources`], entry point name, whether the build calls subgroup operations
/// and so needs `enable subgroups;` outside naga). For validators outside the engine
/// (Dawn's, in CI: scripts/dawn_validate.mjs).
#[doc(hidden)]
pub fn kernel_entry_points() -> Vec<(&'static str, &'static str, bool)> {
    kernels::ALL_KERNELS
        .iter()
        .map(|k| {
            let src = k.shader().source();
            let subgroups =
                src.starts_with(abi::SUBGROUPS_MARKER) || src.starts_with("enable subgroups;");
            (k.shader().label(), k.entry(), subgroups)
        })
        .collect()
}

/// One f16 storage build: its label, its source, and its entry points with whether each
/// needs `enable subgroups;`.
#[doc(hidden)]
pub type HalfBuild = (String, String, Vec<(&'static str, bool)>);

/// The f16 storage builds ([`crate::Precision::F16`]) of every shader, in each mix of
/// f16 roles the ops ask for: (build label `<label>__<mix>`, source, entry points with
/// whether they need `enable subgroups;`). For validators outside the engine (Dawn's,
/// on a device with shader-f16, in CI).
#[doc(hidden)]
pub fn half_builds() -> Vec<HalfBuild> {
    let mut out = Vec::new();
    for s in kernels::ALL_SHADERS {
        let entries: Vec<(&'static str, bool)> = kernel_entry_points()
            .into_iter()
            .filter(|k| k.0 == s.label())
            .map(|k| (k.1, k.2))
            .collect();
        for (mix, elems) in kernels::Elems::HALF_MIXES {
            out.push((
                format!("{}__{mix}", s.label()),
                s.source_as(elems).into_owned(),
                entries.clone(),
            ));
        }
    }
    out
}
