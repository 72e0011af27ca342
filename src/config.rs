//! Layer configuration: sizes, stacking, direction, variant, bias.

use crate::error::{GruError, Result};

/// Which candidate formula the layer uses (DESIGN.md section 1).
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
    pub fn param_count(&self) -> usize {
        let h = self.hidden_size;
        (0..self.num_layers)
            .map(|l| {
                let per_dir =
                    3 * h * (self.layer_input_size(l) + h) + if self.bias { 6 * h } else { 0 };
                per_dir * self.num_directions()
            })
            .sum()
    }
    /// Rejects zero sizes.
    pub fn validate(&self) -> Result<()> {
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
