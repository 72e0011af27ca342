//! Models built around the GRU stack: configuration, parameters and batches.

pub(crate) mod batch;
mod config;
mod params;
mod summary;

use crate::error::{GruError, Result};

pub use batch::{Batch, BatchInputs, BatchTargets, IGNORE};
pub use config::{Head, Loss, ModelConfig, ModelInput};
pub use params::{param_infos, ModelParams, ParamInfo, ParamRole};
pub use summary::{group_digits, LayerSummary};

/// Dropout site of the head's input; layer `l` > 0 uses site `l`.
pub(crate) const HEAD_SITE: u32 = 1000;

pub(crate) fn check_same_config(have: &ModelConfig, got: &ModelConfig) -> Result<()> {
    if have != got {
        return Err(GruError::shape(
            "model config",
            format!("{have:?}"),
            format!("{got:?}"),
        ));
    }
    Ok(())
}

/// Time-major head rows to batch-first logits.
pub(crate) fn batch_first_logits<R: Copy>(
    cfg: &ModelConfig,
    logits: Vec<R>,
    b: usize,
    t: usize,
) -> Vec<R> {
    match cfg.head {
        Head::EveryStep => crate::sequence::swap_leading_axes(&logits, t, b, cfg.outputs),
        Head::LastState => logits,
    }
}
