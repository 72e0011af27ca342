//! Every parameter of a model, named as a PyTorch module with submodules `embedding`,
//! `gru` (an `nn.GRU`) and `fc` (an `nn.Linear`) would name them in its `state_dict`.

use crate::error::{check_len, GruError, Result};
use crate::memory::try_vec;
use crate::model::config::{ModelConfig, ModelInput};
use crate::real::Real;
use crate::rng::Rng;
use crate::weights::{GruWeights, TensorKind};

/// What a parameter tensor is, which decides the constraints that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// `embedding.weight` [vocab, E].
    Embedding,
    /// A GRU input kernel `weight_ih` [3H, I_k] (Keras `kernel`).
    GruKernel,
    /// A GRU recurrent kernel `weight_hh` [3H, H] (Keras `recurrent_kernel`).
    GruRecurrent,
    /// A GRU `bias_ih` `[3H]`.
    GruBiasIh,
    /// A GRU `bias_hh` `[3H]`.
    GruBiasHh,
    /// `fc.weight` [outputs, dirs·H].
    DenseWeight,
    /// `fc.bias` `[outputs]`.
    DenseBias,
}

/// Name, shape and role of one parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// `state_dict` name, e.g. `gru.weight_hh_l0`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// What it is.
    pub role: ParamRole,
}

impl ParamInfo {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for a tensor with no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parameters of a [`ModelConfig`], in f32 for training (the CPU reference also
/// runs them in f64 for gradient checks).
///
/// ```
/// use gru_engine::model::{ModelConfig, ModelParams};
/// let p = ModelParams::init(ModelConfig::language_model(10, 4, 8), 7).unwrap();
/// assert_eq!(p.get("fc.weight").unwrap().len(), 10 * 8);
/// assert_eq!(p.infos()[0].name, "embedding.weight");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams<R = f32> {
    /// The model these belong to.
    pub config: ModelConfig,
    /// `embedding.weight` [vocab, E]; empty for numeric input.
    pub embedding: Vec<R>,
    /// The GRU stack, `gru.*` in PyTorch `nn.GRU` names.
    pub gru: GruWeights<R>,
    /// `fc.weight` [outputs, dirs·H] (PyTorch `nn.Linear` layout).
    pub fc_weight: Vec<R>,
    /// `fc.bias` `[outputs]`.
    pub fc_bias: Vec<R>,
}

/// Every parameter of `config`, in the fixed order optimiser state and checkpoints use.
pub fn param_infos(config: &ModelConfig) -> Vec<ParamInfo> {
    let mut out = Vec::new();
    if let ModelInput::Tokens { vocab, embed_dim } = config.input {
        out.push(ParamInfo {
            name: "embedding.weight".into(),
            shape: vec![vocab, embed_dim],
            role: ParamRole::Embedding,
        });
    }
    let g = config.gru_config();
    for id in g.tensor_ids() {
        out.push(ParamInfo {
            name: format!("gru.{}", id.name()),
            shape: g.shape_of(id),
            role: match id.kind {
                TensorKind::WeightIh => ParamRole::GruKernel,
                TensorKind::WeightHh => ParamRole::GruRecurrent,
                TensorKind::BiasIh => ParamRole::GruBiasIh,
                TensorKind::BiasHh => ParamRole::GruBiasHh,
            },
        });
    }
    let f = config.head_input_size();
    out.push(ParamInfo {
        name: "fc.weight".into(),
        shape: vec![config.outputs, f],
        role: ParamRole::DenseWeight,
    });
    out.push(ParamInfo {
        name: "fc.bias".into(),
        shape: vec![config.outputs],
        role: ParamRole::DenseBias,
    });
    out
}

impl<R: Copy + Default> ModelParams<R> {
    /// [`ModelParams::zeros`] that returns an error instead of aborting when the memory
    /// cannot be had (sizes from a user or a file).
    pub fn try_zeros(config: ModelConfig) -> Result<Self> {
        let what = "model parameters";
        let embedding = match config.input {
            ModelInput::Tokens { vocab, embed_dim } => try_vec(vocab * embed_dim, what)?,
            ModelInput::Features(_) => Vec::new(),
        };
        Ok(ModelParams {
            config,
            embedding,
            gru: GruWeights::try_zeros(config.gru_config())?,
            fc_weight: try_vec(config.outputs * config.head_input_size(), what)?,
            fc_bias: try_vec(config.outputs, what)?,
        })
    }

    /// All-zero parameters of the right shapes.
    pub fn zeros(config: ModelConfig) -> Self {
        let embedding = match config.input {
            ModelInput::Tokens { vocab, embed_dim } => vec![R::default(); vocab * embed_dim],
            ModelInput::Features(_) => Vec::new(),
        };
        ModelParams {
            config,
            embedding,
            gru: GruWeights::zeros(config.gru_config()),
            fc_weight: vec![R::default(); config.outputs * config.head_input_size()],
            fc_bias: vec![R::default(); config.outputs],
        }
    }

    /// Names, shapes and roles, in [`param_infos`] order.
    pub fn infos(&self) -> Vec<ParamInfo> {
        param_infos(&self.config)
    }

    /// Every tensor, in [`param_infos`] order.
    pub fn tensors(&self) -> Vec<&[R]> {
        let mut out: Vec<&[R]> = Vec::new();
        if matches!(self.config.input, ModelInput::Tokens { .. }) {
            out.push(&self.embedding);
        }
        for id in self.gru.tensor_ids() {
            out.push(self.gru.tensor(id));
        }
        out.push(&self.fc_weight);
        out.push(&self.fc_bias);
        out
    }

    /// Every tensor, mutable, in [`param_infos`] order.
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<R>> {
        let mut out: Vec<&mut Vec<R>> = Vec::new();
        if matches!(self.config.input, ModelInput::Tokens { .. }) {
            out.push(&mut self.embedding);
        }
        for d in &mut self.gru.dirs {
            out.extend([&mut d.w_ih, &mut d.w_hh, &mut d.b_ih, &mut d.b_hh]);
        }
        out.push(&mut self.fc_weight);
        out.push(&mut self.fc_bias);
        out
    }

    /// A tensor by its `state_dict` name.
    pub fn get(&self, name: &str) -> Result<&[R]> {
        let i = self.index_of(name)?;
        Ok(self.tensors()[i])
    }

    /// Replaces a tensor by name; the length must match its shape.
    pub fn set(&mut self, name: &str, data: &[R]) -> Result<()> {
        let i = self.index_of(name)?;
        let info = &self.infos()[i];
        check_len(name, data.len(), &info.shape, &format!("{:?}", info.shape))?;
        self.tensors_mut()[i].copy_from_slice(data);
        Ok(())
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        let infos = self.infos();
        infos
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| GruError::UnknownParameter {
                name: name.into(),
                known: infos
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Applies `f` to every value.
    pub fn map<S: Copy + Default>(&self, f: impl Fn(R) -> S + Copy) -> ModelParams<S> {
        ModelParams {
            config: self.config,
            embedding: self.embedding.iter().map(|&v| f(v)).collect(),
            gru: self.gru.map(f),
            fc_weight: self.fc_weight.iter().map(|&v| f(v)).collect(),
            fc_bias: self.fc_bias.iter().map(|&v| f(v)).collect(),
        }
    }

    /// The single-layer GRU of stack layer `layer` (both directions when bidirectional).
    pub(crate) fn gru_layer(&self, layer: usize) -> GruWeights<R> {
        let cfg = self.config.gru_config();
        let nd = cfg.num_directions();
        GruWeights {
            config: crate::config::GruConfig::new(cfg.layer_input_size(layer), cfg.hidden_size)
                .bidirectional(cfg.bidirectional)
                .variant(cfg.variant),
            dirs: self.gru.dirs[layer * nd..(layer + 1) * nd].to_vec(),
        }
    }
}

impl ModelParams<f32> {
    /// PyTorch's initialisation: embedding N(0, 1), GRU and dense U(-1/sqrt(fan), 1/sqrt(fan)).
    pub fn init(config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut p = Self::try_zeros(config)?;
        let mut rng = Rng::new(seed);
        for v in &mut p.embedding {
            *v = rng.normal();
        }
        p.gru.fill_init(rng.next_u64());
        let bound = 1.0 / (config.head_input_size() as f32).sqrt();
        p.fc_weight = rng.uniform_vec(p.fc_weight.len(), -bound, bound);
        p.fc_bias = rng.uniform_vec(p.fc_bias.len(), -bound, bound);
        Ok(p)
    }

    /// The same values in another float type (f64 for gradient checks).
    pub fn cast<S: Real>(&self) -> ModelParams<S> {
        self.map(|v| S::from_f64(v as f64))
    }
}
