//! Checkpoints: one safetensors file holding every parameter (under PyTorch
//! `state_dict` names: `embedding.weight`, `gru.weight_ih_l0`, ..., `fc.weight`,
//! `fc.bias`), the optimiser's moments (`optimizer.m.<name>`, `optimizer.v.<name>`),
//! a stateful model's carried state (`state.h`), and metadata (model config, training
//! options, step, vocabulary, data RNG state, loss) as JSON strings.
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the folder),
//! so a crash mid-write leaves the previous checkpoint intact. [`CheckpointDir`] keeps
//! `last.safetensors` and `best.safetensors` (lowest loss), like Keras'
//! `ModelCheckpoint(save_best_only=True)`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{GruError, Result};
/// Atomic file writes, also used for metrics and data files.
pub use crate::io::write_atomic;
use crate::io::{bad, decode_floats, f16_bytes, io};
use crate::model::{ModelConfig, ModelParams};
use crate::train::{OptimizerState, TrainOptions, Trainer};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "gru-engine/1";

/// How a checkpoint file stores the model's values. Every loader reads F32, F16 and
/// BF16 files alike (widening to f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavePrecision {
    /// Every tensor as F32: what training holds, bit for bit.
    #[default]
    F32,
    /// The parameters and a carried state as F16 (rounded to nearest, half their
    /// bytes); the optimiser's moments stay F32, since Adam's second moments are mostly
    /// below f16's smallest value and would resume as zeros. A value past f16's range
    /// (65,504) is refused with its tensor's name rather than written as infinity.
    F16,
}

/// Everything needed to resume training or to run a trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The parameters (and with them the model config).
    pub params: ModelParams,
    /// Optimiser moments and step count (absent in weights-only files).
    pub optimizer: Option<OptimizerState>,
    /// The options training ran with.
    pub options: Option<TrainOptions>,
    /// A stateful model's carried state [layers·dirs, B, H] and its B.
    pub carried_state: Option<(Vec<f32>, usize)>,
    /// The token vocabulary, one string per id (a token model's alphabet).
    pub vocab: Option<Vec<String>>,
    /// State of the caller's data-order generator ([`crate::rng::Rng::state`]).
    pub rng_state: Option<u64>,
    /// The loss this checkpoint was chosen by.
    pub loss: Option<f64>,
    /// Free-form metadata (epoch, data file, ...).
    pub extra: HashMap<String, String>,
}

impl Checkpoint {
    /// Parameters only.
    pub fn from_params(params: ModelParams) -> Self {
        Checkpoint {
            params,
            optimizer: None,
            options: None,
            carried_state: None,
            vocab: None,
            rng_state: None,
            loss: None,
            extra: HashMap::new(),
        }
    }

    /// Parameters, optimiser state, options and carried state of a trainer.
    pub fn from_trainer(t: &mut dyn Trainer) -> Result<Self> {
        let mut c = Self::from_params(t.params()?);
        c.optimizer = Some(t.optimizer_state()?);
        c.options = Some(*t.options());
        if let Some(h) = t.carried_state()? {
            let g = t.config().gru_config();
            let per_batch = g.num_layers * g.num_directions() * g.hidden_size;
            let batch = h.len() / per_batch.max(1);
            c.carried_state = Some((h, batch));
        }
        Ok(c)
    }

    /// [`Checkpoint::from_trainer`], awaited (the form a browser has): parameters,
    /// optimiser state and options. Carried state is not read: stateful training is not
    /// offered there.
    pub async fn from_awaitable(t: &mut crate::train::AwaitableTrainer) -> Result<Self> {
        let mut c = Self::from_params(t.params().await?);
        c.optimizer = Some(t.optimizer_state().await?);
        c.options = Some(*t.trainer().options());
        Ok(c)
    }

    /// The first parameter value that is NaN or infinite: the tensor's name, the value
    /// and its index.
    pub fn first_non_finite(&self) -> Option<(String, f32, usize)> {
        let infos = self.params.infos();
        infos
            .iter()
            .zip(self.params.tensors())
            .find_map(|(info, values)| {
                let i = values.iter().position(|v| !v.is_finite())?;
                Some((info.name.clone(), values[i], i))
            })
    }

    /// Loads parameters, optimiser state and carried state into `t` (same model).
    pub fn restore(&self, t: &mut dyn Trainer) -> Result<()> {
        t.set_params(&self.params)?;
        if let Some(s) = &self.optimizer {
            t.set_optimizer_state(s)?;
        }
        t.set_carried_state(self.carried_state.as_ref().map(|(h, b)| (h.as_slice(), *b)))
    }

    /// The file's bytes, every tensor F32.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_bytes_as(SavePrecision::F32)
    }

    /// The file's bytes with the parameters (and carried state) stored as `precision`
    /// says; with [`SavePrecision::F16`] a value past f16's range is an error naming
    /// its tensor.
    pub fn to_bytes_as(&self, precision: SavePrecision) -> Result<Vec<u8>> {
        let infos = self.params.infos();
        let tensors = self.params.tensors();
        // (name, shape, values, stored as `precision` rather than F32)
        let mut named: Vec<(String, Vec<usize>, &[f32], bool)> = Vec::new();
        for (info, data) in infos.iter().zip(&tensors) {
            named.push((info.name.clone(), info.shape.clone(), data, true));
        }
        if let Some(o) = &self.optimizer {
            for (info, (m, v)) in infos.iter().zip(o.m.iter().zip(&o.v)) {
                let (mn, vn) = (
                    format!("optimizer.m.{}", info.name),
                    format!("optimizer.v.{}", info.name),
                );
                named.push((mn, info.shape.clone(), m, false));
                named.push((vn, info.shape.clone(), v, false));
            }
        }
        if let Some((h, b)) = &self.carried_state {
            let g = self.params.config.gru_config();
            let shape = vec![g.num_layers * g.num_directions(), *b, g.hidden_size];
            named.push(("state.h".into(), shape, h, true));
        }
        let stored = named
            .iter()
            .map(|(n, _, data, narrow)| match (precision, narrow) {
                (SavePrecision::F16, true) => Ok((Dtype::F16, f16_bytes(n, data)?)),
                _ => Ok((Dtype::F32, bytemuck::cast_slice(data).to_vec())),
            })
            .collect::<Result<Vec<_>>>()?;
        let views = named
            .iter()
            .zip(&stored)
            .map(|((n, shape, _, _), (dtype, bytes))| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| GruError::State(format!("tensor {n}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta = self.extra.clone();
        let json = |v: serde_json::Result<String>| v.map_err(|e| GruError::State(e.to_string()));
        meta.insert("format".into(), FORMAT.into());
        meta.insert(
            "model".into(),
            json(serde_json::to_string(&self.params.config))?,
        );
        if let Some(o) = &self.options {
            meta.insert("train".into(), json(serde_json::to_string(o))?);
        }
        if let Some(o) = &self.optimizer {
            meta.insert("step".into(), o.step.to_string());
        }
        if let Some(v) = &self.vocab {
            meta.insert("vocab".into(), json(serde_json::to_string(v))?);
        }
        if let Some(r) = self.rng_state {
            meta.insert("rng_state".into(), r.to_string());
        }
        if let Some(l) = self.loss {
            meta.insert("loss".into(), l.to_string());
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| GruError::State(e.to_string()))
    }

    /// Writes the checkpoint to `path` atomically (every tensor F32).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// [`Checkpoint::save`] with the parameters stored as `precision` says.
    ///
    /// ```no_run
    /// use gru_engine::checkpoint::{Checkpoint, SavePrecision};
    /// # fn f(c: &Checkpoint) -> gru_engine::Result<()> {
    /// c.save_as("model-f16.safetensors".as_ref(), SavePrecision::F16)?; // F16 weights
    /// let back = Checkpoint::load("model-f16.safetensors".as_ref())?; // widened to f32
    /// # Ok(()) }
    /// ```
    pub fn save_as(&self, path: &Path, precision: SavePrecision) -> Result<()> {
        write_atomic(path, &self.to_bytes_as(precision)?)
    }

    /// Reads a checkpoint, checking every tensor's presence, dtype and shape against the
    /// model config it records.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(io(path))?;
        Self::from_bytes(&bytes, path)
    }

    // Long by choice: every field of the file checked in file order before anything is
    // allocated from it.
    /// Parses a checkpoint's bytes; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(path, format!("not a safetensors file ({e})")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(path, format!("not a safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).map(String::as_str);
        match get("format") {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(bad(
                    path,
                    format!("format is `{other}`, expected `{FORMAT}`"),
                ))
            }
            None => {
                return Err(bad(
                    path,
                    "no `format` metadata: not a gru-engine checkpoint",
                ))
            }
        }
        let config: ModelConfig =
            serde_json::from_str(get("model").ok_or_else(|| bad(path, "no `model` metadata"))?)
                .map_err(|e| bad(path, format!("model metadata: {e}")))?;
        config.validate().map_err(|e| bad(path, e.to_string()))?;
        let infos = crate::model::param_infos(&config);
        // Every tensor the config implies must be in the file with its shape before
        // anything is allocated: sizes come from metadata, which may lie.
        for info in &infos {
            check_present(&st, &info.name, &info.shape, path)?;
        }
        if let Some(v) = get("vocab") {
            check_vocab_size(&config, v, path)?;
        }
        let mut params = ModelParams::try_zeros(config)?;
        let mut expected: Vec<String> = Vec::new();
        for (info, dst) in infos.iter().zip(params.tensors_mut()) {
            *dst = read_f32(&st, &info.name, &info.shape, path)?;
            expected.push(info.name.clone());
        }
        let optimizer = match get("step") {
            Some(step) => {
                let step = step
                    .parse()
                    .map_err(|_| bad(path, format!("step `{step}` is not a number")))?;
                let (mut m, mut v) = (Vec::new(), Vec::new());
                for info in &infos {
                    let (mn, vn) = (
                        format!("optimizer.m.{}", info.name),
                        format!("optimizer.v.{}", info.name),
                    );
                    m.push(read_f32(&st, &mn, &info.shape, path)?);
                    v.push(read_f32(&st, &vn, &info.shape, path)?);
                    expected.extend([mn, vn]);
                }
                Some(OptimizerState { step, m, v })
            }
            None => None,
        };
        let carried_state = match st.tensor("state.h") {
            Ok(view) => {
                let g = config.gru_config();
                let b = view.shape().get(1).copied().unwrap_or(0);
                if b == 0 {
                    return Err(bad(
                        path,
                        format!(
                            "tensor `state.h` has shape {:?}, expected [layers·dirs, B >= 1, H]",
                            view.shape()
                        ),
                    ));
                }
                let shape = [g.num_layers * g.num_directions(), b, g.hidden_size];
                expected.push("state.h".into());
                Some((read_f32(&st, "state.h", &shape, path)?, b))
            }
            Err(_) => None,
        };
        if let Some(extra) = st
            .names()
            .into_iter()
            .find(|n| !expected.iter().any(|e| e == n))
        {
            return Err(bad(
                path,
                format!("unexpected tensor `{extra}` for this model"),
            ));
        }
        let options = get("train")
            .map(|s| serde_json::from_str(s).map_err(|e| bad(path, format!("train metadata: {e}"))))
            .transpose()?;
        let vocab = get("vocab")
            .map(|s| serde_json::from_str(s).map_err(|e| bad(path, format!("vocab metadata: {e}"))))
            .transpose()?;
        let num = |k: &str| -> Result<Option<f64>> {
            get(k)
                .map(|s| {
                    s.parse()
                        .map_err(|_| bad(path, format!("`{k}` is not a number: `{s}`")))
                })
                .transpose()
        };
        let rng_state = get("rng_state")
            .map(|s| {
                s.parse()
                    .map_err(|_| bad(path, format!("`rng_state` is not a number: `{s}`")))
            })
            .transpose()?;
        let loss = num("loss")?;
        let known = [
            "format",
            "model",
            "train",
            "step",
            "vocab",
            "rng_state",
            "loss",
        ];
        let extra = meta
            .into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect();
        Ok(Checkpoint {
            params,
            optimizer,
            options,
            carried_state,
            vocab,
            rng_state,
            loss,
            extra,
        })
    }
}

/// Checks that the `vocab` metadata (a JSON list) has one token per embedding row.
fn check_vocab_size(config: &ModelConfig, vocab_json: &str, path: &Path) -> Result<()> {
    let n = serde_json::from_str::<Vec<String>>(vocab_json)
        .map_err(|e| bad(path, format!("vocab metadata: {e}")))?
        .len();
    match config.input {
        crate::model::ModelInput::Tokens { vocab, .. } if vocab == n => {}
        crate::model::ModelInput::Tokens { vocab, .. } => {
            return Err(bad(
                path,
                format!("the vocabulary lists {n} tokens, the model's embedding has {vocab}"),
            ))
        }
        crate::model::ModelInput::Features(_) => {
            return Err(bad(
                path,
                format!("a vocabulary of {n} tokens for a model with numeric input"),
            ))
        }
    }
    Ok(())
}

/// Checks that `name` is in the file with `shape` without reading its values.
fn check_present(st: &SafeTensors, name: &str, shape: &[usize], path: &Path) -> Result<()> {
    let view = st
        .tensor(name)
        .map_err(|_| bad(path, format!("missing tensor `{name}`")))?;
    if view.shape() != shape {
        return Err(bad(
            path,
            format!(
                "tensor `{name}` has shape {:?}, this model expects {shape:?}",
                view.shape()
            ),
        ));
    }
    Ok(())
}

/// A tensor as f32: F32 as stored, F16 and BF16 widened; anything else is an error.
fn read_f32(st: &SafeTensors, name: &str, shape: &[usize], path: &Path) -> Result<Vec<f32>> {
    check_present(st, name, shape, path)?;
    let view = st
        .tensor(name)
        .map_err(|_| bad(path, format!("missing tensor `{name}`")))?;
    let values = decode_floats(view.dtype(), view.data()).ok_or_else(|| {
        bad(
            path,
            format!(
                "tensor `{name}` has dtype {:?}; expected F32 (F16 and BF16 are converted)",
                view.dtype()
            ),
        )
    })?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let why = match view.dtype() {
            Dtype::F16 => " (an F16 value past 65,504 is stored as infinity)",
            _ => "",
        };
        return Err(bad(
            path,
            format!("tensor `{name}` holds a non-finite value at index {i}{why}"),
        ));
    }
    Ok(values)
}

/// A folder holding `last.safetensors` and `best.safetensors`.
///
/// ```no_run
/// use gru_engine::checkpoint::{Checkpoint, CheckpointDir};
/// # fn f(t: &mut dyn gru_engine::train::Trainer) -> gru_engine::Result<()> {
/// let mut dir = CheckpointDir::open("runs/lm".as_ref())?;
/// let mut c = Checkpoint::from_trainer(t)?;
/// c.loss = Some(1.23);
/// let improved = dir.save(&c)?; // writes last, and best when 1.23 beats the best so far
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
    best: Option<f64>,
    precision: SavePrecision,
}

impl CheckpointDir {
    /// Opens (creating if needed) a checkpoint folder; the best loss so far is read
    /// from an existing `best.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut d = CheckpointDir {
            dir: dir.to_path_buf(),
            best: None,
            precision: SavePrecision::F32,
        };
        if d.best_path().exists() {
            // A non-finite loss never counts as best (an older file may hold one).
            d.best = Checkpoint::load(&d.best_path())?
                .loss
                .filter(|l| l.is_finite());
        }
        Ok(d)
    }
    /// A checkpoint folder for a run that starts over (`--force`): files already there
    /// are not read, and are replaced (atomically, never deleted first) by the new run's
    /// saves; its first finite loss becomes `best`.
    pub fn fresh(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(CheckpointDir {
            dir: dir.to_path_buf(),
            best: None,
            precision: SavePrecision::F32,
        })
    }
    /// Stores the parameters of later saves as `precision` says (F32 by default).
    pub fn set_precision(&mut self, precision: SavePrecision) {
        self.precision = precision;
    }
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// `last.safetensors`.
    pub fn last_path(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    /// `best.safetensors`.
    pub fn best_path(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    /// The lowest loss saved as best so far.
    pub fn best_loss(&self) -> Option<f64> {
        self.best
    }
    /// Writes `last`, and `best` when `c.loss` is finite and lower than every earlier
    /// best (or no best exists). A checkpoint without a loss (saved before any
    /// evaluation) or with a non-finite one is written as `last` only. Returns whether
    /// `best` was written.
    pub fn save(&mut self, c: &Checkpoint) -> Result<bool> {
        // Checked on the host, value by value: whatever the kernels' NaN arithmetic (Metal
        // compiles them with fast math), no non-finite checkpoint replaces a good one.
        if let Some((name, value, i)) = c.first_non_finite() {
            return Err(GruError::State(format!(
                "training diverged: parameter `{name}` holds {value} at index {i}; the last finite checkpoint, {}, is kept; lower the learning rate, or clip gradients",
                self.last_path().display()
            )));
        }
        let bytes = c.to_bytes_as(self.precision)?;
        write_atomic(&self.last_path(), &bytes)?;
        let better = match (c.loss.filter(|l| l.is_finite()), self.best) {
            (Some(l), Some(b)) => l < b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if better {
            write_atomic(&self.best_path(), &bytes)?;
            self.best = c.loss;
        }
        Ok(better)
    }
}
