//! Models built around the GRU stack: configuration, parameters and batches.

pub(crate) mod batch;
mod config;
mod params;
mod summary;

pub use batch::{Batch, BatchInputs, BatchTargets, IGNORE};
pub use config::{Head, Loss, ModelConfig, ModelInput};
pub use params::{param_infos, ModelParams, ParamInfo, ParamRole};
pub use summary::{group_digits, LayerSummary};
