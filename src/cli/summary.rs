//! `gru summary`: the Keras-style table of a model, from flags or a checkpoint, with the
//! parameter count an LSTM of the same sizes would have.

use crate::cli::out::{out, outln};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use gru_engine::model::{group_digits, ModelConfig, ModelInput};
use gru_engine::{GruVariant, Result};

use crate::cli::args::{at_least_one, load_checkpoint, StackArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Embedding -> GRU -> Dense(vocab) at every step.
    Lm,
    /// (Embedding or features) -> GRU -> Dense(classes) on the last state.
    Classifier,
    /// Features -> GRU -> Dense(outputs) on the last state, MSE.
    Forecaster,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru summary --kind lm --vocab 65 --embed 256 --hidden 1024      # TensorFlow's text-generation tutorial
  gru summary --kind classifier --features 10 --hidden 256 --outputs 1
  gru summary --checkpoint runs/lm")]
pub struct SummaryArgs {
    /// Summarise the model of this checkpoint (file or folder) instead of flags.
    #[arg(long, short = 'c')]
    pub checkpoint: Option<PathBuf>,
    /// Which model the flags describe.
    #[arg(long, value_enum, default_value_t = Kind::Lm)]
    pub kind: Kind,
    /// Vocabulary size (token input).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Embedding size (token input).
    #[arg(long, short = 'E', default_value_t = 32)]
    pub embed: usize,
    /// Numeric features per step (feature input; overrides --vocab for classifiers).
    #[arg(long)]
    pub features: Option<usize>,
    /// Classes (1 = binary) or forecast values.
    #[arg(long, default_value_t = 2)]
    pub outputs: usize,
    /// Bidirectional GRU layers.
    #[arg(long)]
    pub bidirectional: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// LSTM parameters of the same stack: (PyTorch with two bias vectors, Keras with one).
fn lstm_counts(cfg: &ModelConfig) -> (usize, usize) {
    let g = cfg.gru_config();
    let h = g.hidden_size;
    let (mut torch, mut keras) = (0, 0);
    for l in 0..g.num_layers {
        let w = 4 * h * (g.layer_input_size(l) + h);
        torch += (w + 8 * h) * g.num_directions();
        keras += (w + 4 * h) * g.num_directions();
    }
    (torch, keras)
}

pub fn summary(a: SummaryArgs) -> Result<u8> {
    let cfg = match &a.checkpoint {
        Some(p) => load_checkpoint(p)?.0.params.config,
        None => {
            let hidden = at_least_one("--hidden", a.stack.hidden.unwrap_or(128))?;
            let input = match (a.features, a.vocab) {
                (Some(f), _) => ModelInput::Features(f),
                (None, v) => ModelInput::Tokens {
                    vocab: v.unwrap_or(65),
                    embed_dim: a.embed,
                },
            };
            let cfg = match a.kind {
                Kind::Lm => match input {
                    ModelInput::Tokens { vocab, embed_dim } => {
                        ModelConfig::language_model(vocab, embed_dim, hidden)
                    }
                    ModelInput::Features(_) => {
                        return Err(gru_engine::GruError::Config(
                            "a language model reads tokens: give --vocab, not --features".into(),
                        ))
                    }
                },
                Kind::Classifier => ModelConfig::classifier(input, hidden, a.outputs),
                Kind::Forecaster => match input {
                    ModelInput::Features(f) => ModelConfig::forecaster(f, hidden, a.outputs),
                    _ => ModelConfig::forecaster(1, hidden, a.outputs),
                },
            };
            a.stack.apply(cfg).bidirectional(a.bidirectional)
        }
    };
    cfg.validate()?;
    out!("{}", cfg.summary())?;
    let g = cfg.gru_config();
    let gru: usize = g.param_count();
    let (torch, keras) = lstm_counts(&cfg);
    let note = if cfg.variant == GruVariant::ResetBefore {
        format!(
            " (Keras reset_after=False keeps one bias vector: {})",
            group_digits(gru - 3 * g.hidden_size * g.num_layers * g.num_directions())
        )
    } else {
        String::new()
    };
    outln!("GRU layers: {} parameters, as PyTorch nn.GRU and Keras GRU(reset_after=True) count them{note}", group_digits(gru))?;
    outln!(
        "An LSTM of the same sizes: {} parameters in PyTorch (two bias vectors), {} in Keras ({:.2}x the GRU)",
        group_digits(torch),
        group_digits(keras),
        torch as f64 / gru as f64
    )?;
    Ok(0)
}
