//! Hyperparameters of training and the optimiser's state.

use crate::error::{GruError, Result};

/// The update rule, with PyTorch's semantics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Optimizer {
    /// `torch.optim.SGD` with optional momentum (no dampening, no Nesterov).
    Sgd {
        /// Momentum factor; 0 for plain SGD.
        momentum: f32,
    },
    /// `torch.optim.Adam`; weight decay, if any, is L2 added to the gradient.
    Adam,
    /// `torch.optim.AdamW`: weight decay decoupled from the gradient.
    AdamW,
}

/// How to train: optimiser, learning rate, clipping, constraints, state carrying.
///
/// ```
/// use gru_engine::train::{Optimizer, TrainOptions};
/// let opts = TrainOptions::adam(2e-3).clip_norm(1.0).max_norm(3.0);
/// assert_eq!(opts.optimizer, Optimizer::Adam);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// Update rule.
    pub optimizer: Optimizer,
    /// Step size.
    pub learning_rate: f32,
    /// Adam's first-moment decay (0.9).
    pub beta1: f32,
    /// Adam's second-moment decay (0.999).
    pub beta2: f32,
    /// Adam's denominator term (1e-8).
    pub eps: f32,
    /// L2 (SGD, Adam) or decoupled (AdamW) weight decay.
    pub weight_decay: f32,
    /// Rescale all gradients together when their global L2 norm exceeds this
    /// (`torch.nn.utils.clip_grad_norm_`, Keras `global_clipnorm`).
    pub clip_norm: Option<f32>,
    /// Clamp every gradient value to +-this (Keras `clipvalue`), after norm clipping.
    pub clip_value: Option<f32>,
    /// Keras `max_norm(c)` on the GRU's kernel, recurrent kernel and bias after each update.
    pub max_norm: Option<f32>,
    /// Keras `stateful=True`: each batch starts from the previous batch's final state
    /// (same batch size), gradients stop at the batch boundary (truncated BPTT).
    pub stateful: bool,
    /// Seed of the dropout masks.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self::adam(1e-3)
    }
}

impl TrainOptions {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f32) -> Self {
        TrainOptions {
            optimizer: Optimizer::Adam,
            learning_rate: lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
            max_norm: None,
            stateful: false,
            seed: 0,
        }
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(lr: f32) -> Self {
        TrainOptions {
            optimizer: Optimizer::AdamW,
            weight_decay: 0.01,
            ..Self::adam(lr)
        }
    }
    /// SGD with momentum.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        TrainOptions {
            optimizer: Optimizer::Sgd { momentum },
            ..Self::adam(lr)
        }
    }
    /// Sets global-norm clipping.
    pub fn clip_norm(mut self, c: f32) -> Self {
        self.clip_norm = Some(c);
        self
    }
    /// Sets value clipping.
    pub fn clip_value(mut self, c: f32) -> Self {
        self.clip_value = Some(c);
        self
    }
    /// Sets the max-norm constraint.
    pub fn max_norm(mut self, c: f32) -> Self {
        self.max_norm = Some(c);
        self
    }
    /// Sets weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Carries the state between batches.
    pub fn stateful(mut self, yes: bool) -> Self {
        self.stateful = yes;
        self
    }
    /// Sets the dropout seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Rejects values no optimiser can use, naming them.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(GruError::Config(format!("{name} must be > 0, found {v}")))
            }
        };
        positive("learning rate", self.learning_rate)?;
        positive("eps", self.eps)?;
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(GruError::Config(format!(
                    "{name} must be in [0, 1), found {v}"
                )));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(GruError::Config(format!(
                "weight decay must be >= 0, found {}",
                self.weight_decay
            )));
        }
        if let Optimizer::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return Err(GruError::Config(format!(
                    "momentum must be in [0, 1), found {momentum}"
                )));
            }
        }
        for (name, v) in [
            ("clip norm", self.clip_norm),
            ("clip value", self.clip_value),
            ("max norm", self.max_norm),
        ] {
            if let Some(v) = v {
                positive(name, v)?;
            }
        }
        Ok(())
    }

    /// Adam's bias corrections (1 - beta1^t, 1 - beta2^t) for update number `t` >= 1.
    pub(crate) fn bias_corrections(&self, t: u64) -> (f32, f32) {
        let t = t.min(i32::MAX as u64) as i32;
        (
            1.0 - (self.beta1 as f64).powi(t) as f32,
            1.0 - (self.beta2 as f64).powi(t) as f32,
        )
    }

    /// The dropout seed of update number `t`: a hash of the base seed and the step, so
    /// a resumed run draws the same masks as an uninterrupted one.
    pub fn step_seed(&self, t: u64) -> u32 {
        use crate::rng::pcg;
        pcg(pcg(self.seed as u32 ^ pcg((self.seed >> 32) as u32)) ^ t as u32)
    }
}

/// The optimiser's state: update count and the moment buffers of every parameter
/// (`m`: momentum or Adam's first moment, `v`: Adam's second moment), in
/// [`crate::model::param_infos`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// First moments (or SGD momentum buffers), one per parameter tensor.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one per parameter tensor.
    pub v: Vec<Vec<f32>>,
}

impl OptimizerState {
    /// Fresh state (all zeros) for tensors of these lengths.
    pub fn zeros(lens: &[usize]) -> Self {
        OptimizerState {
            step: 0,
            m: lens.iter().map(|&n| vec![0.0; n]).collect(),
            v: lens.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Checks the buffers against the tensor lengths.
    pub(crate) fn check(&self, lens: &[usize]) -> Result<()> {
        let ok = |b: &Vec<Vec<f32>>| {
            b.len() == lens.len() && b.iter().zip(lens).all(|(x, &n)| x.len() == n)
        };
        if !ok(&self.m) || !ok(&self.v) {
            return Err(GruError::shape(
                "optimizer state",
                format!("{} tensors of lengths {lens:?}", lens.len()),
                format!(
                    "{} tensors of lengths {:?}",
                    self.m.len(),
                    self.m.iter().map(Vec::len).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }
}
