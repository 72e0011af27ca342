//! The GPU path: device context, kernels and their cache, workspaces, and the layer.

mod backward;
pub mod context;
mod forward;
pub(crate) mod kernels;
mod layer;
pub(crate) mod ops;
pub(crate) mod params;
pub(crate) mod plan;
pub(crate) mod workspace;

pub use context::{best_adapter_index, list_adapters, AdapterSummary, DeviceRequest, GpuContext};
pub use layer::GpuGru;
