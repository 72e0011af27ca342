//! What a model is made of: its input, the GRU stack, the head and the loss.

use crate::config::{GruConfig, GruVariant, MAX_PARAMS};
use crate::error::{GruError, Result};

/// What the model reads at each timestep.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ModelInput {
    /// Token ids through an `Embedding(vocab, embed_dim)` table.
    Tokens {
        /// Number of distinct tokens.
        vocab: usize,
        /// Features per token fed to the GRU.
        embed_dim: usize,
    },
    /// `features` numbers per timestep, fed to the GRU as they are.
    Features(usize),
}

/// Which GRU outputs the dense head sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Head {
    /// Every timestep (Keras `return_sequences=True`): a language model.
    EveryStep,
    /// The last valid state of each row; both directions' final states when
    /// bidirectional (Keras `return_sequences=False`).
    LastState,
}

/// The training loss; each is computed from logits, numerically stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Sparse softmax cross-entropy over `outputs` classes, mean over valid targets.
    CrossEntropy,
    /// Binary cross-entropy of one logit (`outputs` = 1), mean over rows.
    BinaryCrossEntropy,
    /// Mean squared error over every output value.
    MeanSquaredError,
}

/// A whole model: input -> GRU stack -> dropout -> Dense(outputs) -> loss.
///
/// ```
/// use gru_engine::model::{ModelConfig, ModelInput};
/// let lm = ModelConfig::language_model(65, 32, 128).layers(2).dropout(0.1);
/// let clf = ModelConfig::classifier(ModelInput::Features(10), 256, 2);
/// assert_eq!(lm.gru_config().input_size, 32);
/// assert_eq!(clf.outputs, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Tokens or numeric features.
    pub input: ModelInput,
    /// H: GRU units per direction.
    pub hidden_size: usize,
    /// Stacked GRU layers.
    pub num_layers: usize,
    /// Bidirectional GRU layers.
    pub bidirectional: bool,
    /// Candidate formula of the GRU.
    pub variant: GruVariant,
    /// Which GRU outputs feed the head.
    pub head: Head,
    /// Width of the dense head: classes, 1 for binary, or forecast values.
    pub outputs: usize,
    /// The loss.
    pub loss: Loss,
    /// Dropout rate between GRU layers and before the head, in training only.
    pub dropout: f32,
}

impl ModelConfig {
    /// Character/token language model: Embedding -> GRU -> Dense(vocab) at every step,
    /// cross-entropy.
    pub fn language_model(vocab: usize, embed_dim: usize, hidden_size: usize) -> Self {
        ModelConfig {
            input: ModelInput::Tokens { vocab, embed_dim },
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            variant: GruVariant::ResetAfter,
            head: Head::EveryStep,
            outputs: vocab,
            loss: Loss::CrossEntropy,
            dropout: 0.0,
        }
    }

    /// Sequence classifier over the last valid state: `classes` >= 2 uses softmax
    /// cross-entropy, `classes` = 1 one logit with binary cross-entropy.
    pub fn classifier(input: ModelInput, hidden_size: usize, classes: usize) -> Self {
        ModelConfig {
            input,
            head: Head::LastState,
            outputs: classes,
            loss: if classes == 1 {
                Loss::BinaryCrossEntropy
            } else {
                Loss::CrossEntropy
            },
            ..Self::language_model(0, 0, hidden_size)
        }
    }

    /// Forecaster: numeric features -> GRU -> Dense(outputs) on the last state, MSE.
    pub fn forecaster(features: usize, hidden_size: usize, outputs: usize) -> Self {
        ModelConfig {
            loss: Loss::MeanSquaredError,
            ..Self::classifier(ModelInput::Features(features), hidden_size, outputs)
        }
    }

    /// Sets the number of stacked GRU layers.
    pub fn layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    /// Makes every GRU layer bidirectional.
    pub fn bidirectional(mut self, yes: bool) -> Self {
        self.bidirectional = yes;
        self
    }
    /// Sets the GRU's candidate formula.
    pub fn variant(mut self, v: GruVariant) -> Self {
        self.variant = v;
        self
    }
    /// Sets the dropout rate (between GRU layers and before the head).
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// Features per timestep the first GRU layer reads.
    pub fn gru_input_size(&self) -> usize {
        match self.input {
            ModelInput::Tokens { embed_dim, .. } => embed_dim,
            ModelInput::Features(n) => n,
        }
    }

    /// The GRU stack (always with biases, like PyTorch's default).
    pub fn gru_config(&self) -> GruConfig {
        GruConfig::new(self.gru_input_size(), self.hidden_size)
            .layers(self.num_layers)
            .bidirectional(self.bidirectional)
            .variant(self.variant)
    }

    /// Features the head reads: dirs·H.
    pub fn head_input_size(&self) -> usize {
        self.gru_config().output_size()
    }

    /// Rejects impossible combinations, naming the value.
    pub fn validate(&self) -> Result<()> {
        if let ModelInput::Tokens { vocab, embed_dim } = self.input {
            if vocab == 0 || embed_dim == 0 {
                return Err(GruError::Config(format!(
                    "embedding needs vocab >= 1 and embed_dim >= 1, found vocab = {vocab}, embed_dim = {embed_dim}"
                )));
            }
        }
        self.gru_config().validate()?;
        match self.checked_param_count() {
            Some(n) if n <= MAX_PARAMS => {}
            found => {
                return Err(GruError::Config(format!(
                    "the model has {}, more than the {MAX_PARAMS} gru-engine supports (embedding {:?}, {} outputs)",
                    found.map_or("a parameter count past 2^64".into(), |n| format!("{n} parameters")),
                    self.input,
                    self.outputs
                )))
            }
        }
        if self.outputs == 0 {
            return Err(GruError::Config(
                "the dense head needs at least 1 output, found 0".into(),
            ));
        }
        match (self.loss, self.outputs) {
            (Loss::CrossEntropy, n) if n < 2 => {
                return Err(GruError::Config(format!(
                    "cross-entropy needs at least 2 classes, found {n} (use binary cross-entropy for 1 logit)"
                )))
            }
            (Loss::BinaryCrossEntropy, n) if n != 1 => {
                return Err(GruError::Config(format!(
                    "binary cross-entropy takes exactly 1 output, found {n}"
                )))
            }
            _ => {}
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GruError::Config(format!(
                "dropout must be in [0, 1), found {}",
                self.dropout
            )));
        }
        Ok(())
    }

    /// Parameters in total: embedding + GRU (PyTorch/Keras count) + dense head.
    /// Meaningful for a config that passed [`ModelConfig::validate`]; see
    /// [`ModelConfig::checked_param_count`].
    pub fn param_count(&self) -> usize {
        self.checked_param_count().unwrap_or(u64::MAX) as usize
    }

    /// [`ModelConfig::param_count`] in u64, `None` when it overflows.
    pub fn checked_param_count(&self) -> Option<u64> {
        let embed = match self.input {
            ModelInput::Tokens { vocab, embed_dim } => {
                (vocab as u64).checked_mul(embed_dim as u64)?
            }
            ModelInput::Features(_) => 0,
        };
        let head_in =
            (self.gru_config().num_directions() as u64).checked_mul(self.hidden_size as u64)?;
        let head = (self.outputs as u64).checked_mul(head_in.checked_add(1)?)?;
        embed
            .checked_add(self.gru_config().checked_param_count()?)?
            .checked_add(head)
    }
}
