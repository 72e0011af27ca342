//! `gru export`: a trained model (a checkpoint of `gru train`, `gru classify train` or
//! `gru forecast train`) as an ONNX graph for ONNX Runtime, tract, TensorRT or OpenVINO.

use crate::cli::out::outln;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use gru_engine::model::{Head, Loss};
use gru_engine::onnx::{export, ExportOptions, OPSET};
use gru_engine::Result;

use crate::cli::args::{load_checkpoint, SavePrecisionArg};

/// The file formats `gru export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// ONNX (opset 14): one `GRU` node per layer.
    Onnx,
}

/// Whether the graph takes per-row lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lengths {
    /// For classifiers (rows of different lengths), not for language models or
    /// forecasters.
    Auto,
    /// A `lengths` input (int32 `[batch]`) for every GRU's `sequence_lens`.
    Yes,
    /// Every row full length (what tract can run).
    No,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru export --checkpoint runs/lm --output lm.onnx
  gru export -c runs/classify --output classifier.onnx --probabilities
  gru export -c runs/forecast/last.safetensors --output forecaster.onnx
  gru export -c runs/lm --output lm_stateful.onnx --initial-state

Inputs are batch-first with dynamic batch and time: `tokens` (int64 [batch, time]) or
`features` (float [batch, time, I]), `lengths` (int32 [batch]) and each layer's initial
state `h0_l<k>` when asked. Outputs: `logits`, `probabilities` when asked, and each
layer's final state `h_n_l<k>`. The
vocabulary, labels and normalisation of the checkpoint travel in metadata_props.")]
pub struct ExportArgs {
    /// Format to write.
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// Checkpoint file, or a run folder (its best, else last checkpoint).
    #[arg(long, short = 'c')]
    pub checkpoint: PathBuf,
    /// File to write.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// A per-row `lengths` input.
    #[arg(long, value_enum, default_value_t = Lengths::Auto)]
    pub lengths: Lengths,
    /// Inputs `h0_l<k>` ([directions, batch, H]) each layer starts from, for stateful use:
    /// feed the outputs `h_n_l<k>` back to continue a sequence (token by token
    /// generation, a stream in chunks).
    #[arg(long)]
    pub initial_state: bool,
    /// Also output `probabilities`: softmax of the logits, or sigmoid for a binary
    /// classifier.
    #[arg(long)]
    pub probabilities: bool,
    /// How the initializers store the weights: f32, or f16 (float16, half the file,
    /// rounded to nearest; a Cast widens each where the graph starts, so it computes in
    /// f32 and every runtime runs it). A weight past f16's range is refused by name.
    #[arg(long, value_enum, default_value_t = SavePrecisionArg::F32)]
    pub precision: SavePrecisionArg,
}

pub fn export_model(a: ExportArgs) -> Result<u8> {
    let (c, file) = load_checkpoint(&a.checkpoint)?;
    // The data a model needs travels with it (vocabulary, labels, normalisation):
    // refused here as `generate` and `predict` would refuse it, rather than written
    // into a model that cannot be used.
    // (A weights-only checkpoint, written by the library without any, exports as it is.)
    if c.extra.contains_key("task") || c.vocab.is_some() {
        gru_engine::task::ModelData::of(&c, &file)?;
    }
    let cfg = c.params.config;
    let classifier = cfg.head == Head::LastState && cfg.loss != Loss::MeanSquaredError;
    let lengths = match a.lengths {
        Lengths::Auto => classifier,
        Lengths::Yes => true,
        Lengths::No => false,
    };
    let mut metadata: Vec<(String, String)> = c.extra.clone().into_iter().collect();
    metadata.sort();
    if let Some(v) = &c.vocab {
        let json = serde_json::to_string(v).unwrap_or_default();
        metadata.push(("vocabulary".into(), json));
    }
    let options = ExportOptions {
        lengths,
        initial_state: a.initial_state,
        probabilities: a.probabilities,
        metadata,
        precision: a.precision.to_lib(),
    };
    match a.format {
        ExportFormat::Onnx => export(&c.params, &options, &a.output)?,
    }
    outln!(
        "wrote {} (ONNX opset {OPSET}) from {}: {} GRU layer(s){}, {} parameters{}{}",
        a.output.display(),
        file.display(),
        cfg.num_layers,
        if cfg.bidirectional {
            ", bidirectional"
        } else {
            ""
        },
        gru_engine::model::group_digits(cfg.param_count()),
        match a.precision {
            SavePrecisionArg::F16 => " (float16 initializers)",
            SavePrecisionArg::F32 => "",
        },
        match (lengths, a.initial_state) {
            (true, true) => "; inputs `lengths` per row and `h0_l<k>` per layer",
            (true, false) => "; input `lengths` per row",
            (false, true) => "; inputs `h0_l<k>` per layer",
            (false, false) => "",
        }
    )?;
    Ok(0)
}
