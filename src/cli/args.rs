//! Flags shared by the training commands: the GRU stack and the optimiser.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use gru_engine::checkpoint::{Checkpoint, CheckpointDir, SavePrecision};
use gru_engine::model::ModelConfig;
use gru_engine::rng::Rng;
use gru_engine::train::TrainOptions;
use gru_engine::train::Trainer;
use gru_engine::{GruError, GruVariant, Result};

use crate::cli::run_folder::{runs_of, RunPlan};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Variant {
    /// PyTorch / cuDNN / Keras reset_after=True.
    ResetAfter,
    /// Cho et al. 2014 / Keras reset_after=False.
    ResetBefore,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

/// The GRU stack.
#[derive(Args, Clone, Debug)]
pub struct StackArgs {
    /// GRU units per direction (H).
    #[arg(long, short = 'H')]
    pub hidden: Option<usize>,
    /// Stacked GRU layers.
    #[arg(long, short = 'L', default_value_t = 1)]
    pub layers: usize,
    /// Candidate formula.
    #[arg(long, value_enum, default_value_t = Variant::ResetAfter)]
    pub variant: Variant,
    /// Dropout between GRU layers and before the head (training only).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub dropout: f32,
}

impl StackArgs {
    pub fn apply(&self, cfg: ModelConfig) -> ModelConfig {
        cfg.layers(self.layers)
            .variant(self.gru_variant())
            .dropout(self.dropout)
    }

    pub fn gru_variant(&self) -> GruVariant {
        self.variant.to_lib()
    }
}

impl Variant {
    pub fn to_lib(self) -> GruVariant {
        match self {
            Variant::ResetAfter => GruVariant::ResetAfter,
            Variant::ResetBefore => GruVariant::ResetBefore,
        }
    }
}

/// Where a training run writes, and whether it continues an earlier one.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Folder for last/best checkpoints, metrics.csv and loss.svg (default: runs/<task>,
    /// or the first free runs/<task>-N).
    #[arg(long, short = 'c')]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the folder's last checkpoint (default folder: the newest run). The
    /// checkpoint keeps its model, optimiser, seed, batch (and sequence length or
    /// window): giving one of those flags with another value is an error. What may
    /// change: --steps, --epochs, --eval-every, --log-every, --sample-length, the data
    /// files, --val-split, --device, --backend and the output flags.
    #[arg(long)]
    pub resume: bool,
    /// Start over even if the folder already holds a checkpoint.
    #[arg(long)]
    pub force: bool,
    /// How checkpoints store the parameters: f32, or f16 (half their bytes, rounded to
    /// nearest; the optimiser's moments stay f32, so resuming stays exact but for the
    /// weights' rounding). Every command reads either.
    #[arg(long, value_enum, default_value_t = SavePrecisionArg::F32)]
    pub save_precision: SavePrecisionArg,
    /// What training computes in: f32, or mixed (f32 master weights and optimiser
    /// state, f16 weight copies and activations on the device, f32 gradients; needs a
    /// device with SHADER_F16). f16 alone stores for inference and is refused here.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

/// `--save-precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SavePrecisionArg {
    F32,
    F16,
}

/// `--precision`: what the device stores tensors as while it computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Every tensor f32 (the default; results unchanged).
    F32,
    /// Weights, states and activations f16 on the device, every sum f32 (inference;
    /// needs the adapter feature SHADER_F16, see `gru devices`).
    F16,
    /// f16 weights and activations, f32 gradients (training in mixed precision; where
    /// a command only runs forward, the same as f16). Needs SHADER_F16.
    Mixed,
}

impl PrecisionArg {
    /// For a command that only predicts: mixed means f16.
    pub fn inference(self) -> gru_engine::Precision {
        match self {
            PrecisionArg::F32 => gru_engine::Precision::F32,
            _ => gru_engine::Precision::F16,
        }
    }

    pub fn to_lib(self) -> gru_engine::Precision {
        match self {
            PrecisionArg::F32 => gru_engine::Precision::F32,
            PrecisionArg::F16 => gru_engine::Precision::F16,
            PrecisionArg::Mixed => gru_engine::Precision::Mixed,
        }
    }
}

impl SavePrecisionArg {
    pub fn to_lib(self) -> SavePrecision {
        match self {
            SavePrecisionArg::F32 => SavePrecision::F32,
            SavePrecisionArg::F16 => SavePrecision::F16,
        }
    }
}

impl RunArgs {
    /// `--precision` for a training run: f32 or mixed; f16 refused with the reason.
    pub fn precision(&self) -> Result<gru_engine::Precision> {
        match self.precision {
            PrecisionArg::F16 => Err(GruError::Input(
                "--precision f16 stores for inference and cannot train: use --precision mixed (f16 weights and activations, f32 gradients and master weights)".into(),
            )),
            p => Ok(p.to_lib()),
        }
    }

    /// The run folder for task `base`, chosen and checked; nothing is created until
    /// [`RunPlan::start`].
    /// The run folder of task `base`; `leader`: this process writes it (alone, or rank 0
    /// of data-parallel training), where the other ranks only read the checkpoint to
    /// resume.
    pub fn plan(&self, base: &str, leader: bool) -> Result<RunPlan> {
        let plan = RunPlan::new(
            self.checkpoint_dir.as_deref(),
            base,
            (self.resume, self.force),
            leader,
        )?;
        Ok(plan.save_precision(self.save_precision.to_lib()))
    }
}

/// The optimiser and the regularisers.
#[derive(Args, Clone, Debug)]
pub struct OptimArgs {
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3, allow_negative_numbers = true)]
    pub lr: f32,
    /// Update rule (PyTorch semantics).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Weight decay (L2 for adam and sgd, decoupled for adamw; adamw defaults to 0.01).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Clip gradients to this global L2 norm (0 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub clip_norm: f32,
    /// Clamp each gradient value to +-this.
    #[arg(long, allow_negative_numbers = true)]
    pub clip_value: Option<f32>,
    /// Keras max_norm constraint on the GRU's kernel, recurrent kernel and bias.
    #[arg(long, allow_negative_numbers = true)]
    pub max_norm: Option<f32>,
    /// Seed of initialisation, data order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl OptimArgs {
    /// The options, validated: every flag is checked before a run is built.
    pub fn options(&self) -> Result<TrainOptions> {
        if !(self.clip_norm >= 0.0 && self.clip_norm.is_finite()) {
            return Err(GruError::Config(format!(
                "--clip-norm must be >= 0 (0 turns clipping off), found {}",
                self.clip_norm
            )));
        }
        let mut o = match self.optimizer {
            OptimizerKind::Adam => TrainOptions::adam(self.lr),
            OptimizerKind::Adamw => TrainOptions::adamw(self.lr),
            OptimizerKind::Sgd => TrainOptions::sgd(self.lr, self.momentum),
        };
        if let Some(wd) = self.weight_decay {
            o.weight_decay = wd;
        }
        if self.clip_norm > 0.0 {
            o.clip_norm = Some(self.clip_norm);
        }
        o.clip_value = self.clip_value;
        o.max_norm = self.max_norm;
        o.seed = self.seed;
        o.validate().map_err(|e| match e {
            GruError::Config(m) => GruError::Config(format!("{m} (check the optimiser flags)")),
            e => e,
        })?;
        Ok(o)
    }
}

/// The flags given on the command line (by clap id) of the subcommand that runs, as
/// opposed to those at their defaults.
static GIVEN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Records which flags the command line gave (call once, before the command runs).
pub fn record_given(m: &clap::ArgMatches) {
    let mut m = m;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    let ids = m
        .ids()
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect();
    let _ = GIVEN.set(ids);
}

/// Whether the flag with clap id `id` (the field name: `hidden`, `clip_norm`) was given
/// on the command line.
pub fn given(id: &str) -> bool {
    GIVEN.get().is_some_and(|g| g.iter().any(|x| x == id))
}

/// What `--resume` lets change, for its help and its errors.
pub const RESUMABLE: &str = "--steps, --epochs, --eval-every, --log-every, --sample-length, the data files, --val-split, --device, --backend and the output flags";

/// On `--resume`: an error for the first flag given on the command line whose value
/// differs from the checkpoint's. Items are (clap id, value given, value saved).
pub fn check_resume(items: &[(&str, String, String)]) -> Result<()> {
    for (id, mine, saved) in items {
        if given(id) && mine != saved {
            return Err(GruError::Config(format!(
                "--{flag} {mine} conflicts with the checkpoint being resumed, which has {flag} {saved}: drop the flag, or start a new run (on resume only {RESUMABLE} may change)",
                flag = id.replace('_', "-")
            )));
        }
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

impl StackArgs {
    /// (flag, given, saved) of the stack's flags against a checkpoint's model.
    pub fn resume_items(&self, cfg: &ModelConfig) -> Vec<(&'static str, String, String)> {
        let v = |v: GruVariant| match v {
            GruVariant::ResetAfter => "reset-after".to_string(),
            GruVariant::ResetBefore => "reset-before".to_string(),
        };
        vec![
            ("hidden", opt(self.hidden), cfg.hidden_size.to_string()),
            (
                "layers",
                self.layers.to_string(),
                cfg.num_layers.to_string(),
            ),
            ("variant", v(self.gru_variant()), v(cfg.variant)),
            ("dropout", self.dropout.to_string(), cfg.dropout.to_string()),
        ]
    }
}

impl OptimArgs {
    /// (flag, given, saved) of the optimiser's flags against a checkpoint's options.
    pub fn resume_items(&self, saved: &TrainOptions) -> Vec<(&'static str, String, String)> {
        let kind = |o: &gru_engine::train::Optimizer| match o {
            gru_engine::train::Optimizer::Adam => "adam",
            gru_engine::train::Optimizer::AdamW => "adamw",
            gru_engine::train::Optimizer::Sgd { .. } => "sgd",
        };
        let mine = self.options().ok();
        let momentum = |o: &gru_engine::train::Optimizer| match o {
            gru_engine::train::Optimizer::Sgd { momentum } => momentum.to_string(),
            other => format!("none ({})", kind(other)),
        };
        vec![
            ("lr", self.lr.to_string(), saved.learning_rate.to_string()),
            (
                "optimizer",
                mine.map_or("?".into(), |o| kind(&o.optimizer).to_string()),
                kind(&saved.optimizer).to_string(),
            ),
            (
                "momentum",
                self.momentum.to_string(),
                momentum(&saved.optimizer),
            ),
            (
                "weight_decay",
                opt(self.weight_decay),
                saved.weight_decay.to_string(),
            ),
            (
                "clip_norm",
                self.clip_norm.to_string(),
                saved.clip_norm.unwrap_or(0.0).to_string(),
            ),
            ("clip_value", opt(self.clip_value), opt(saved.clip_value)),
            ("max_norm", opt(self.max_norm), opt(saved.max_norm)),
            ("seed", self.seed.to_string(), saved.seed.to_string()),
        ]
    }
}

/// The value a run uses for `id` on resume: the checkpoint's `saved` where the flag was
/// not given (its default must not replace what the run was trained with), `mine`
/// otherwise (checked against it by [`check_resume`]).
pub fn resumed_value<T: std::str::FromStr + Copy>(id: &str, mine: T, saved: Option<&String>) -> T {
    match saved.and_then(|s| s.parse().ok()) {
        Some(v) if !given(id) => v,
        _ => mine,
    }
}

/// The epochs an epoch-based run trains: (the epoch it starts at, steps per epoch, the
/// step it ends at), the start read from a resumed checkpoint; `None`, said on stderr by
/// `leader`, when the checkpoint has reached `epochs` already.
pub fn epochs_to_run(
    resumed: Option<&Checkpoint>,
    epochs: u64,
    per_epoch: u64,
    leader: bool,
) -> Result<Option<(u64, u64, u64)>> {
    let total = total_steps(epochs, per_epoch)?;
    let Some(c) = resumed else {
        return Ok(Some((0, per_epoch, total)));
    };
    let epoch: u64 = c
        .extra
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    if epoch >= epochs {
        if leader {
            eprintln!(
                "nothing to do: the checkpoint is at epoch {epoch}, and this run ends at epoch {epochs}; give --epochs above {epoch} to train further"
            );
        }
        return Ok(None);
    }
    Ok(Some((epoch, per_epoch, total)))
}

/// A count flag that must be at least 1.
pub fn at_least_one(name: &str, v: usize) -> Result<usize> {
    if v == 0 {
        return Err(GruError::Config(format!(
            "{name} must be at least 1, found 0"
        )));
    }
    Ok(v)
}

/// Steps of `epochs` passes of `per_epoch` steps, refusing a count past u64.
pub fn total_steps(epochs: u64, per_epoch: u64) -> Result<u64> {
    epochs.checked_mul(per_epoch).ok_or_else(|| {
        GruError::Config(format!(
            "--epochs {epochs} x {per_epoch} steps per epoch is more steps than can be counted"
        ))
    })
}

/// A checkpoint from a file, or from a folder (its best, else its last).
pub fn load_checkpoint(path: &Path) -> Result<(Checkpoint, PathBuf)> {
    let file = if path.is_dir() {
        let d = CheckpointDir::open(path)?;
        if d.best_path().exists() {
            d.best_path()
        } else if d.last_path().exists() {
            d.last_path()
        } else {
            return Err(GruError::Checkpoint {
                path: path.display().to_string(),
                reason: "the folder holds no best.safetensors or last.safetensors".into(),
            });
        }
    } else {
        path.to_path_buf()
    };
    Ok((Checkpoint::load(&file)?, file))
}

/// Saves a training run's state: `last`, and `best` when `loss` (from an evaluation)
/// is finite and improves on it; `None` (no evaluation yet) saves `last` only. `task`
/// names the command; `extra` adds its own metadata (data format, epoch, ...).
pub fn save_run(
    t: &mut dyn Trainer,
    dir: &mut CheckpointDir,
    rng: &Rng,
    loss: Option<f64>,
    vocab: Option<&[String]>,
    task: &str,
    extra: &[(&str, String)],
) -> Result<bool> {
    let mut c = Checkpoint::from_trainer(t)?;
    // A checkpoint no reader would take is never written over a good one (the library
    // refuses it too; here the message names the flags).
    if let Some((name, value, i)) = c.first_non_finite() {
        return Err(GruError::State(format!(
            "training diverged: parameter `{name}` holds {value} at index {i}; the last finite checkpoint, {}, is kept; lower --lr, or clip gradients with --clip-norm",
            dir.last_path().display()
        )));
    }
    c.vocab = vocab.map(<[String]>::to_vec);
    c.rng_state = Some(rng.state());
    c.loss = loss;
    c.extra.insert("task".into(), task.into());
    for (k, v) in extra {
        c.extra.insert((*k).into(), v.clone());
    }
    dir.save(&c)
}

/// The checkpoint a command reads: as given, or the newest run under `runs/<base>*`.
pub fn model_path(explicit: Option<&Path>, base: &str, train: &str) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => runs_of(base).into_iter().next().ok_or_else(|| {
            GruError::Config(format!(
                "no trained model under runs/{base}*: train one with `{train}` or pass --checkpoint"
            ))
        }),
    }
}
