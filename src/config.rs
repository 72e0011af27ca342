//! Layer configuration: sizes, stacking, direction, variant, bias.

use crate::error::{GruError, Result};

/// Most stacked layers a config may have (deeper stacks are typos or crafted files).
pub const MAX_LAYERS: usize = 4096;
/// Most parameters a model may have: 2^40 (4 TiB of f32), past any single machine, so
/// that sizes from a typo or a crafted file are refused before anything is allocated.
pub const MAX_PARAMS: u64 = 1 << 40;

/// Which candidate formula the layer uses (docs/design.md §1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum GruVariant {
    /// `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`: PyTorch, cuDNN, Keras `reset_after=True`.
    #[default]
    ResetAfter,
    /// `n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)`: Cho et al. 2014, Keras `reset_after=False`.
    ResetBefore,
}

/// Configuration of a (possibly stacked, possibly bidirectional) GRU, like PyTorch's `nn.GRU`.
///
/// ```
/// use gru_engine::{GruConfig, GruVariant};
/// let cfg = GruConfig::new(10, 32).layers(2).bidirectional(true).variant(GruVariant::ResetBefore);
/// assert_eq!(cfg.num_directions(), 2);
/// assert_eq!(cfg.layer_input_size(1), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GruConfig {
    /// I: features per timestep of the first layer's input.
    pub input_size: usize,
    /// H: units per direction.
    pub hidden_size: usize,
    /// Stacked layers; layer k > 0 reads the previous layer's output (dirs·H features).
    pub num_layers: usize,
    /// Adds a reverse-time direction whose output is concatenated after the forward one.
    pub bidirectional: bool,
    /// Candidate formula.
    pub variant: GruVariant,
    /// With `false` the layer has no bias vectors (PyTorch `bias=False`).
    pub bias: bool,
}

impl GruConfig {
    /// One layer, unidirectional, reset-after, with biases.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        GruConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            variant: GruVariant::ResetAfter,
            bias: true,
        }
    }
    /// Sets the number of stacked layers.
    pub fn layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    /// Makes every layer bidirectional.
    pub fn bidirectional(mut self, yes: bool) -> Self {
        self.bidirectional = yes;
        self
    }
    /// Sets the candidate formula.
    pub fn variant(mut self, v: GruVariant) -> Self {
        self.variant = v;
        self
    }
    /// Turns the bias vectors on or off.
    pub fn bias(mut self, yes: bool) -> Self {
        self.bias = yes;
        self
    }
    /// 1 or 2.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// Input features of layer `layer`: I for layer 0, dirs·H above.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.num_directions() * self.hidden_size
        }
    }
    /// Features of the output: dirs·H.
    pub fn output_size(&self) -> usize {
        self.num_directions() * self.hidden_size
    }
    /// Parameters in total, as PyTorch counts them: per layer and direction 3H(I+H) (+6H with bias).
    /// Meaningful for a config that passed [`GruConfig::validate`] (which refuses counts
    /// that overflow); see [`GruConfig::checked_param_count`].
    pub fn param_count(&self) -> usize {
        self.checked_param_count().unwrap_or(u64::MAX) as usize
    }
    /// [`GruConfig::param_count`] in u64, `None` when it overflows (sizes from a crafted
    /// file or a typo).
    pub fn checked_param_count(&self) -> Option<u64> {
        let h = self.hidden_size as u64;
        let mut total: u64 = 0;
        for l in 0..self.num_layers {
            let fan = (self.layer_input_size(l) as u64).checked_add(h)?;
            let mut per_dir = h.checked_mul(3)?.checked_mul(fan)?;
            if self.bias {
                per_dir = per_dir.checked_add(h.checked_mul(6)?)?;
            }
            total = total.checked_add(per_dir.checked_mul(self.num_directions() as u64)?)?;
        }
        Some(total)
    }
    /// Every parameter tensor, in PyTorch's `state_dict` order.
    pub fn tensor_ids(&self) -> Vec<TensorId> {
        let mut ids = Vec::new();
        for layer in 0..self.num_layers {
            for d in 0..self.num_directions() {
                let reverse = d == 1;
                let mut kinds = vec![TensorKind::WeightIh, TensorKind::WeightHh];
                if self.bias {
                    kinds.extend([TensorKind::BiasIh, TensorKind::BiasHh]);
                }
                ids.extend(kinds.into_iter().map(|kind| TensorId {
                    layer,
                    reverse,
                    kind,
                }));
            }
        }
        ids
    }
    /// The shape of a parameter: [3H, I_k], [3H, H] or `[3H]`.
    pub fn shape_of(&self, id: TensorId) -> Vec<usize> {
        let h = self.hidden_size;
        match id.kind {
            TensorKind::WeightIh => vec![3 * h, self.layer_input_size(id.layer)],
            TensorKind::WeightHh => vec![3 * h, h],
            TensorKind::BiasIh | TensorKind::BiasHh => vec![3 * h],
        }
    }
    /// Rejects zero sizes, more than [`MAX_LAYERS`] layers, and parameter counts above
    /// [`MAX_PARAMS`] (or that overflow), naming the value.
    pub fn validate(&self) -> Result<()> {
        if self.num_layers > MAX_LAYERS {
            return Err(GruError::Config(format!(
                "num_layers must be at most {MAX_LAYERS}, found {}",
                self.num_layers
            )));
        }
        match self.checked_param_count() {
            Some(n) if n <= MAX_PARAMS => {}
            found => {
                return Err(GruError::Config(format!(
                    "a GRU with input_size {}, hidden_size {} and {} layer(s) has {}, more than the {MAX_PARAMS} gru-engine supports",
                    self.input_size,
                    self.hidden_size,
                    self.num_layers,
                    found.map_or("a parameter count past 2^64".into(), |n| format!("{n} parameters"))
                )))
            }
        }
        if self.input_size == 0 {
            return Err(GruError::Config(
                "input_size must be at least 1, found 0".into(),
            ));
        }
        if self.hidden_size == 0 {
            return Err(GruError::Config(
                "hidden_size must be at least 1, found 0".into(),
            ));
        }
        if self.num_layers == 0 {
            return Err(GruError::Config(
                "num_layers must be at least 1, found 0".into(),
            ));
        }
        Ok(())
    }
}

/// Which of the four tensors of a layer and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// `weight_ih` [3H, I_k].
    WeightIh,
    /// `weight_hh` [3H, H].
    WeightHh,
    /// `bias_ih` `[3H]`.
    BiasIh,
    /// `bias_hh` `[3H]`.
    BiasHh,
}

/// A parameter's place in the stack, parsed from or printed as its PyTorch name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorId {
    /// Layer k of the stack.
    pub layer: usize,
    /// The reverse direction (`_reverse` suffix).
    pub reverse: bool,
    /// Which of the four tensors.
    pub kind: TensorKind,
}

impl TensorId {
    /// `weight_ih_l0`, `bias_hh_l1_reverse`, ...
    pub fn name(&self) -> String {
        let base = match self.kind {
            TensorKind::WeightIh => "weight_ih",
            TensorKind::WeightHh => "weight_hh",
            TensorKind::BiasIh => "bias_ih",
            TensorKind::BiasHh => "bias_hh",
        };
        let suffix = if self.reverse { "_reverse" } else { "" };
        format!("{base}_l{}{suffix}", self.layer)
    }
}

/// A standard layer shape for timing: name, B, T, I, H.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchShape {
    /// "small", "medium" or "large".
    pub name: &'static str,
    /// Batch rows.
    pub batch: usize,
    /// Timesteps.
    pub seq_len: usize,
    /// Input features.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
}

/// The shapes `gru bench` and `cargo bench --bench gru` time, smallest first (the
/// medium one is the shape of the Burn comparison).
pub const BENCH_SHAPES: [BenchShape; 3] = [
    BenchShape {
        name: "small",
        batch: 16,
        seq_len: 32,
        input: 64,
        hidden: 64,
    },
    BenchShape {
        name: "medium",
        batch: 32,
        seq_len: 64,
        input: 128,
        hidden: 128,
    },
    BenchShape {
        name: "large",
        batch: 64,
        seq_len: 100,
        input: 256,
        hidden: 512,
    },
];
