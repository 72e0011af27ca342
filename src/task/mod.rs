//! What each kind of model needs besides its parameters: a language model's characters,
//! how a classifier reads its rows (tokenization, vocabulary, labels) and how a
//! forecaster reads a series, shared by the command line, the web build and embedders.
//! [`ModelData::of`] reads a checkpoint's kind and data in one call.

pub mod classify;
pub mod forecast;
pub mod lm;
pub mod rows;

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::error::{GruError, Result};
use crate::text::CharVocab;

use self::classify::{ClassifierFormat, TokenVocab};
use self::forecast::ForecastFormat;

/// A checkpoint's kind, with the data that kind needs to read its input and show its
/// output, checked against the model.
///
/// ```no_run
/// use gru_engine::checkpoint::Checkpoint;
/// use gru_engine::task::ModelData;
/// # fn main() -> gru_engine::Result<()> {
/// let bytes = std::fs::read("runs/lm/best.safetensors").unwrap();
/// let c = Checkpoint::from_bytes(&bytes, "best.safetensors".as_ref())?;
/// match ModelData::of(&c, "best.safetensors".as_ref())? {
///     ModelData::Language(v) => println!("a language model of {} characters", v.len()),
///     ModelData::Classifier(f, _) => println!("a classifier of {} labels", f.labels.len()),
///     ModelData::Forecaster(f) => println!("a forecaster of `{}`", f.columns[f.target]),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ModelData {
    /// A character language model (`gru train`) and its characters.
    Language(CharVocab),
    /// A sequence classifier (`gru classify train`): its format and token vocabulary
    /// (empty for numeric input).
    Classifier(ClassifierFormat, TokenVocab),
    /// A forecaster (`gru forecast train`) and its series format.
    Forecaster(ForecastFormat),
}

/// The `task` metadata each training command writes.
const TASKS: [&str; 3] = ["language-model", "classify", "forecast"];

impl ModelData {
    /// The kind and data of checkpoint `c` (`path` names it in errors): from its `task`
    /// metadata, or, in files without one, from the metadata it carries.
    pub fn of(c: &Checkpoint, path: &Path) -> Result<Self> {
        let task = match c.extra.get("task").map(String::as_str) {
            Some(t) if TASKS.contains(&t) => t,
            Some(t) => {
                return Err(GruError::Checkpoint {
                    path: path.display().to_string(),
                    reason: format!(
                        "task `{t}` is not one gru-engine trains ({})",
                        TASKS.join(", ")
                    ),
                })
            }
            None if c.extra.contains_key(ClassifierFormat::METADATA) => "classify",
            None if c.extra.contains_key(ForecastFormat::METADATA) => "forecast",
            None => "language-model",
        };
        Ok(match task {
            "classify" => {
                let (f, v) = ClassifierFormat::from_checkpoint(c, path)?;
                ModelData::Classifier(f, v)
            }
            "forecast" => ModelData::Forecaster(ForecastFormat::from_checkpoint(c, path)?),
            _ => ModelData::Language(CharVocab::from_checkpoint(c, &path.display().to_string())?),
        })
    }

    /// The kind in words: `language model`, `classifier`, `forecaster`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelData::Language(_) => "language model",
            ModelData::Classifier(..) => "classifier",
            ModelData::Forecaster(_) => "forecaster",
        }
    }
}

/// Checks `--val-split`: a fraction in [0, 1).
pub fn check_val_split(val_split: f64) -> Result<()> {
    if (0.0..1.0).contains(&val_split) {
        Ok(())
    } else {
        Err(GruError::Config(format!(
            "--val-split must be in [0, 1), found {val_split}"
        )))
    }
}
