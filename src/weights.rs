//! Parameters in PyTorch's `nn.GRU` layout and names.
//!
//! Per layer k and direction (suffix `_reverse` for the reverse one):
//!
//! | name | shape | rows |
//! | --- | --- | --- |
//! | `weight_ih_l{k}` | [3H, I_k] row-major | r, z, n |
//! | `weight_hh_l{k}` | [3H, H] row-major | r, z, n |
//! | `bias_ih_l{k}` | `[3H]` | r, z, n |
//! | `bias_hh_l{k}` | `[3H]` | r, z, n |

use crate::config::GruConfig;
pub use crate::config::{TensorId, TensorKind};
use crate::error::{GruError, Result};
use crate::rng::Rng;

/// The four tensors of one layer and direction.
#[derive(Debug, Clone, PartialEq)]
pub struct DirWeights<R = f32> {
    /// [3H, I_k] row-major, gate blocks r, z, n.
    pub w_ih: Vec<R>,
    /// [3H, H] row-major, gate blocks r, z, n.
    pub w_hh: Vec<R>,
    /// `[3H]`; all zeros when the config has no bias.
    pub b_ih: Vec<R>,
    /// `[3H]`; all zeros when the config has no bias.
    pub b_hh: Vec<R>,
}

/// All parameters of a GRU stack; `dirs[layer * num_directions + direction]`.
///
/// The element type is `f32` for real use; the CPU reference also runs on `f64`
/// (see [`GruWeights::cast`]) for gradient checks.
///
/// ```
/// use gru_engine::{GruConfig, GruWeights};
/// let mut w = GruWeights::init(GruConfig::new(3, 4), 42);
/// assert_eq!(w.get("weight_hh_l0").unwrap().len(), 3 * 4 * 4);
/// w.set("bias_ih_l0", &[0.0; 12]).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GruWeights<R = f32> {
    /// The stack these parameters belong to.
    pub config: GruConfig,
    /// One entry per layer and direction: `layer * num_directions + direction`.
    pub dirs: Vec<DirWeights<R>>,
}

impl<R: Copy + Default> GruWeights<R> {
    /// [`GruWeights::zeros`] that returns an error instead of aborting when the memory
    /// cannot be had (sizes from a user or a file).
    pub fn try_zeros(config: GruConfig) -> Result<Self> {
        let h = config.hidden_size;
        let mut dirs = Vec::new();
        for i in 0..config.num_layers * config.num_directions() {
            let layer = i / config.num_directions();
            let what = "GRU weights";
            dirs.push(DirWeights {
                w_ih: crate::memory::try_vec(3 * h * config.layer_input_size(layer), what)?,
                w_hh: crate::memory::try_vec(3 * h * h, what)?,
                b_ih: crate::memory::try_vec(3 * h, what)?,
                b_hh: crate::memory::try_vec(3 * h, what)?,
            });
        }
        Ok(GruWeights { config, dirs })
    }

    /// All-zero parameters of the right shapes.
    pub fn zeros(config: GruConfig) -> Self {
        let h = config.hidden_size;
        let dirs = (0..config.num_layers * config.num_directions())
            .map(|i| {
                let layer = i / config.num_directions();
                DirWeights {
                    w_ih: vec![R::default(); 3 * h * config.layer_input_size(layer)],
                    w_hh: vec![R::default(); 3 * h * h],
                    b_ih: vec![R::default(); 3 * h],
                    b_hh: vec![R::default(); 3 * h],
                }
            })
            .collect();
        GruWeights { config, dirs }
    }

    /// Every parameter the config has, in PyTorch's `state_dict` order.
    pub fn tensor_ids(&self) -> Vec<TensorId> {
        self.config.tensor_ids()
    }

    /// The shape of a parameter: [3H, I_k], [3H, H] or `[3H]`.
    pub fn shape_of(&self, id: TensorId) -> Vec<usize> {
        self.config.shape_of(id)
    }

    /// Parses a PyTorch name into a place in this stack.
    pub fn parse_name(&self, name: &str) -> Result<TensorId> {
        self.tensor_ids()
            .into_iter()
            .find(|id| id.name() == name)
            .ok_or_else(|| GruError::UnknownParameter {
                name: name.to_string(),
                known: self
                    .tensor_ids()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The tensor for `id`.
    pub fn tensor(&self, id: TensorId) -> &[R] {
        let d = &self.dirs[id.layer * self.config.num_directions() + id.reverse as usize];
        match id.kind {
            TensorKind::WeightIh => &d.w_ih,
            TensorKind::WeightHh => &d.w_hh,
            TensorKind::BiasIh => &d.b_ih,
            TensorKind::BiasHh => &d.b_hh,
        }
    }

    /// The tensor for `id`, mutable.
    pub fn tensor_mut(&mut self, id: TensorId) -> &mut Vec<R> {
        let nd = self.config.num_directions();
        let d = &mut self.dirs[id.layer * nd + id.reverse as usize];
        match id.kind {
            TensorKind::WeightIh => &mut d.w_ih,
            TensorKind::WeightHh => &mut d.w_hh,
            TensorKind::BiasIh => &mut d.b_ih,
            TensorKind::BiasHh => &mut d.b_hh,
        }
    }

    /// The parameter named `name` (PyTorch naming).
    pub fn get(&self, name: &str) -> Result<&[R]> {
        Ok(self.tensor(self.parse_name(name)?))
    }

    /// Replaces the parameter named `name` with `data` (row-major, PyTorch shape).
    pub fn set(&mut self, name: &str, data: &[R]) -> Result<()> {
        let id = self.parse_name(name)?;
        let shape = self.shape_of(id);
        let expected: usize = shape.iter().product();
        if data.len() != expected {
            return Err(GruError::shape(
                name,
                format!("{expected} values (shape {shape:?})"),
                format!("{} values", data.len()),
            ));
        }
        self.tensor_mut(id).copy_from_slice(data);
        Ok(())
    }

    /// Sets the bias vectors to zero when the config has no bias (they then stay out of
    /// every computation and every gradient).
    pub fn zero_biases_if_absent(&mut self) {
        if !self.config.bias {
            for d in &mut self.dirs {
                d.b_ih.fill(R::default());
                d.b_hh.fill(R::default());
            }
        }
    }

    /// Converts every value with `f`.
    pub fn map<S>(&self, f: impl Fn(R) -> S + Copy) -> GruWeights<S> {
        let conv = |v: &Vec<R>| v.iter().map(|&x| f(x)).collect::<Vec<S>>();
        GruWeights {
            config: self.config,
            dirs: self
                .dirs
                .iter()
                .map(|d| DirWeights {
                    w_ih: conv(&d.w_ih),
                    w_hh: conv(&d.w_hh),
                    b_ih: conv(&d.b_ih),
                    b_hh: conv(&d.b_hh),
                })
                .collect(),
        }
    }
}

impl GruWeights<f32> {
    /// PyTorch's initialisation: every value uniform in ±1/sqrt(H), drawn from a seeded generator.
    /// With `bias = false` the biases stay zero.
    pub fn init(config: GruConfig, seed: u64) -> Self {
        let mut w = Self::zeros(config);
        w.fill_init(seed);
        w
    }

    /// Every value rounded to the nearest f16: what a layer storing f16 holds
    /// ([`crate::Precision::F16`], `GpuGru::read_weights` of such a layer).
    pub fn rounded_to_f16(&self) -> Self {
        let mut w = self.clone();
        for d in &mut w.dirs {
            for t in [&mut d.w_ih, &mut d.w_hh, &mut d.b_ih, &mut d.b_hh] {
                *t = crate::precision::round_all_f16(t);
            }
        }
        w
    }

    /// Overwrites every value with [`GruWeights::init`]'s draws for `seed`.
    pub(crate) fn fill_init(&mut self, seed: u64) {
        let k = 1.0 / (self.config.hidden_size.max(1) as f32).sqrt();
        let mut rng = Rng::new(seed);
        for id in self.tensor_ids() {
            for v in self.tensor_mut(id).iter_mut() {
                *v = rng.uniform(-k, k);
            }
        }
    }

    /// The same parameters in another float type (`f64` for gradient checks).
    pub fn cast<S: crate::real::Real>(&self) -> GruWeights<S> {
        self.map(|x| S::from_f64(x as f64))
    }
}
