//! Memory budgets: what a model or a training run will allocate, computed from its sizes
//! *before* anything is allocated and compared with the memory this process can really
//! get, so an impossible configuration is an error naming the sizes instead of an abort
//! or a visit from the kernel's OOM killer.
//!
//! ```
//! use gru_engine::budget::{Footprint, Placement};
//! use gru_engine::model::ModelConfig;
//! let cfg = ModelConfig::language_model(65, 32, 128);
//! let f = Footprint::training(&cfg, 32, 64, Placement::Cpu);
//! assert!(f.host > 4 * cfg.param_count() as u64);
//! assert_eq!(f.device, 0);
//! ```

use crate::error::{GruError, Result};
// The allocation helpers live in `memory`, which needs no model; re-exported here.
use crate::memory::approx_bytes;
pub use crate::memory::{
    available_host_memory, check_host_bytes, human_bytes, try_vec, try_with_capacity,
};
use crate::model::{Head, ModelConfig, ModelInput};

/// Where a run's tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The CPU reference: everything in host memory.
    Cpu,
    /// A GPU; `shares_host` when its memory is the host's (software adapters such as
    /// llvmpipe), so device buffers count against host memory too.
    Gpu {
        /// Device allocations come out of host memory.
        shares_host: bool,
    },
}

/// Bytes a configuration needs, on the host and on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// Host bytes (parameters and their copies, batches, and every tensor of the CPU path).
    pub host: u64,
    /// Device bytes (0 on the CPU path).
    pub device: u64,
    /// Whether device bytes come out of host memory.
    pub shares_host: bool,
}

/// `a * b` in u64, saturating (a saturated figure is refused like any too-large one).
fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

/// Activation values (f32) one training step of (`batch`, `seq_len`) keeps: per GRU layer
/// the outputs, their gradients, gate pre-activations and their gradients, the saved
/// states; the embedding's output and gradient; the head's logits and their gradient.
fn activation_values(cfg: &ModelConfig, batch: usize, seq_len: usize) -> u64 {
    let g = cfg.gru_config();
    let (h, nd) = (g.hidden_size as u64, g.num_directions() as u64);
    let tb = mul(batch as u64, seq_len as u64);
    let per_layer: u64 = (0..g.num_layers)
        .map(|l| {
            let width = mul(8, mul(nd, h))
                .saturating_add(mul(9, h))
                .saturating_add(g.layer_input_size(l) as u64);
            mul(tb, width)
        })
        .fold(0, u64::saturating_add);
    let embed = match cfg.input {
        ModelInput::Tokens { embed_dim, .. } => mul(mul(2, tb), embed_dim as u64),
        ModelInput::Features(n) => mul(tb, n as u64),
    };
    let rows = match cfg.head {
        Head::EveryStep => tb,
        Head::LastState => batch as u64,
    };
    let head = mul(rows, mul(2, cfg.outputs as u64))
        .saturating_add(mul(rows, mul(2, cfg.head_input_size() as u64)));
    per_layer.saturating_add(embed).saturating_add(head)
}

/// Device bytes of the activations of one training step of (`batch`, `seq_len`): what a
/// GPU trainer allocates per shape.
pub(crate) fn activation_bytes(cfg: &ModelConfig, batch: usize, seq_len: usize) -> u64 {
    mul(4, activation_values(cfg, batch, seq_len))
}

impl Footprint {
    /// A training (or evaluation) run of `cfg` on batches of `batch` rows of `seq_len`
    /// steps: parameters, gradients and two optimiser moments; the activations of one
    /// step; on the host also the batch itself and the copies a checkpoint write makes
    /// (parameters and moments read back, then serialised).
    pub fn training(cfg: &ModelConfig, batch: usize, seq_len: usize, at: Placement) -> Self {
        let params = mul(4, cfg.checked_param_count().unwrap_or(u64::MAX));
        let state = mul(4, params); // parameters, gradients, m, v
        let act = mul(4, activation_values(cfg, batch, seq_len));
        // Token ids and targets of one batch, and the lists they are cut from.
        let batch_bytes = mul(16, mul(batch as u64, seq_len as u64));
        let checkpoint = mul(6, params);
        match at {
            Placement::Cpu => Footprint {
                host: state
                    .saturating_add(act)
                    .saturating_add(batch_bytes)
                    .saturating_add(checkpoint),
                device: 0,
                shares_host: false,
            },
            Placement::Gpu { shares_host } => Footprint {
                host: params
                    .saturating_add(batch_bytes)
                    .saturating_add(checkpoint),
                device: state.saturating_add(act),
                shares_host,
            },
        }
    }

    /// Checks that training `cfg` on batches of `batch` x `seq_len` at `at` fits, before
    /// anything is allocated; the error names the model and the shape, then `hint`.
    pub fn check_training(
        cfg: &ModelConfig,
        batch: usize,
        seq_len: usize,
        at: Placement,
        hint: &str,
    ) -> Result<()> {
        let what = format!(
            "a model of {} parameters on batches of {batch} x {seq_len}",
            crate::model::group_digits(cfg.param_count())
        );
        Self::training(cfg, batch, seq_len, at).check(&what, hint)
    }

    /// Host bytes in all: host allocations, plus device ones where they share the host.
    pub fn host_total(&self) -> u64 {
        if self.shares_host {
            self.host.saturating_add(self.device)
        } else {
            self.host
        }
    }

    /// Refuses the footprint when it does not fit the memory this process can get;
    /// `what` names the run and `hint` what to shrink.
    pub fn check(&self, what: &str, hint: &str) -> Result<()> {
        let need = self.host_total();
        if let Some(avail) = available_host_memory() {
            if need > avail {
                let device = if self.shares_host && self.device > 0 {
                    format!(
                        " ({} for the software adapter's buffers)",
                        human_bytes(self.device)
                    )
                } else {
                    String::new()
                };
                return Err(GruError::HostMemory {
                    what: what.into(),
                    needed: format!("{}{device}", approx_bytes(need)),
                    available: human_bytes(avail),
                    hint: hint.into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_models_do_not_fit() {
        let cfg = ModelConfig::language_model(60, 32, 100_000);
        let f = Footprint::training(&cfg, 32, 64, Placement::Cpu);
        assert!(f.host > 100 * (1 << 30), "{}", f.host);
        assert!(f.check("x", "y").is_err());
        let f = Footprint::training(&cfg, 32, 64, Placement::Gpu { shares_host: false });
        assert!(f.device > 100 * (1 << 30) && f.host > 100 * (1 << 30));
    }

    #[test]
    fn batch_counts_activations() {
        let cfg = ModelConfig::language_model(60, 32, 16);
        let small = Footprint::training(&cfg, 16, 16, Placement::Gpu { shares_host: true });
        let big = Footprint::training(&cfg, 100_000_000, 16, Placement::Gpu { shares_host: true });
        assert!(small.host_total() < 1 << 24);
        assert!(big.host_total() > 100 * (1 << 30));
        assert!(big.check("x", "y").is_err());
    }
}
