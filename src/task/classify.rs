//! A classifier's data: how it reads a row (numbers, or text split into characters or
//! words), its token vocabulary and its labels, as its checkpoint's `classify` metadata
//! and vocabulary record them, shared by `gru classify` and embedders.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{GruError, Result};
use crate::model::{Head, Loss, ModelInput};

/// How text becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tokenization {
    /// One token per character.
    Chars,
    /// One token per whitespace-separated word.
    Words,
}

impl Tokenization {
    /// The tokens of `text`.
    ///
    /// ```
    /// use gru_engine::task::classify::Tokenization;
    /// assert_eq!(Tokenization::Words.split(" a  bc "), ["a", "bc"]);
    /// assert_eq!(Tokenization::Chars.split("ab"), ["a", "b"]);
    /// ```
    pub fn split(self, text: &str) -> Vec<String> {
        match self {
            Tokenization::Chars => text.chars().map(String::from).collect(),
            Tokenization::Words => text.split_whitespace().map(String::from).collect(),
        }
    }
}

/// A classifier's token vocabulary: `<unk>` (id 0, also padding), then the tokens kept.
///
/// ```
/// use gru_engine::task::classify::{TokenVocab, Tokenization};
/// let v = TokenVocab::build(["good film", "bad film", "good"], Tokenization::Words, 100, None, 1);
/// assert_eq!(v.tokens(), ["<unk>", "good", "film", "bad"]); // most frequent first
/// assert_eq!(v.encode("good awful film", Tokenization::Words, 100), [1, 0, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenVocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
}

impl TokenVocab {
    /// The unknown token, id 0.
    pub const UNKNOWN: &'static str = "<unk>";

    /// The vocabulary of `tokens`, by id (as a checkpoint stores it).
    pub fn from_tokens(tokens: Vec<String>) -> Self {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        TokenVocab { tokens, index }
    }

    /// The vocabulary of training `texts`: `<unk>`, then the tokens within `max_len` of
    /// each text seen at least `min_count` times, most frequent first (ties by first
    /// occurrence), at most `max_vocab` entries in all (Keras' `max_tokens`).
    pub fn build(
        texts: impl IntoIterator<Item = impl AsRef<str>>,
        tokenization: Tokenization,
        max_len: usize,
        max_vocab: Option<usize>,
        min_count: usize,
    ) -> Self {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for text in texts {
            for t in tokenization.split(text.as_ref()).into_iter().take(max_len) {
                let next = counts.len();
                counts.entry(t).or_insert((0, next)).0 += 1;
            }
        }
        let mut kept: Vec<(String, (usize, usize))> = counts
            .into_iter()
            .filter(|(_, (c, _))| *c >= min_count)
            .collect();
        kept.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        if let Some(n) = max_vocab {
            kept.truncate(n.saturating_sub(1));
        }
        Self::from_tokens(
            std::iter::once(Self::UNKNOWN.to_string())
                .chain(kept.into_iter().map(|(t, _)| t))
                .collect(),
        )
    }

    /// The ids of the first `max_len` tokens of `text` (0 for tokens not in it).
    pub fn encode(&self, text: &str, tokenization: Tokenization, max_len: usize) -> Vec<u32> {
        tokenization
            .split(text)
            .iter()
            .take(max_len)
            .map(|t| self.index.get(t).copied().unwrap_or(0))
            .collect()
    }

    /// The tokens, by id.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// How many tokens, `<unk>` included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it holds none (a numeric classifier's).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// How a classifier reads its rows; stored in its checkpoint's metadata under
/// [`ClassifierFormat::METADATA`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierFormat {
    /// Numbers (`features` per step) rather than text.
    pub numeric: bool,
    /// How text is split.
    pub tokens: Tokenization,
    /// Numbers per step of a numeric row.
    pub features: usize,
    /// The longest sequence read; longer ones are cut.
    pub max_len: usize,
    /// The labels, by class id.
    pub labels: Vec<String>,
    /// The vocabulary cap it was built with (absent in older files).
    #[serde(default)]
    pub max_vocab: Option<usize>,
    /// The minimum count it was built with (absent in older files).
    #[serde(default)]
    pub min_count: Option<usize>,
}

impl ClassifierFormat {
    /// The checkpoint metadata key of the format.
    pub const METADATA: &'static str = "classify";

    /// A classifier checkpoint's format and vocabulary, checked against its model once,
    /// here: the input kind and size, the label count and the vocabulary all fit. `path`
    /// names it in errors.
    pub fn from_checkpoint(c: &Checkpoint, path: &Path) -> Result<(Self, TokenVocab)> {
        let bad = |reason: String| GruError::Checkpoint {
            path: path.display().to_string(),
            reason,
        };
        let f: Self =
            serde_json::from_str(c.extra.get(Self::METADATA).ok_or_else(|| {
                bad("not a classifier checkpoint (no `classify` metadata)".into())
            })?)
            .map_err(|e| bad(format!("classify metadata: {e}")))?;
        let cfg = &c.params.config;
        if f.features == 0 || f.max_len == 0 {
            return Err(bad(format!(
                "classify metadata: features {} and max_len {} must be at least 1",
                f.features, f.max_len
            )));
        }
        if cfg.head != Head::LastState {
            return Err(bad("not a classifier: its head reads every step".into()));
        }
        match (f.numeric, cfg.input) {
            (true, ModelInput::Features(n)) if n == f.features => {}
            (false, ModelInput::Tokens { vocab, .. })
                if c.vocab.as_ref().is_some_and(|v| v.len() == vocab) => {}
            _ => {
                return Err(bad(format!(
                    "classify metadata ({}, {} features, {} vocabulary entries) does not fit the model's input {:?}",
                    if f.numeric { "numeric" } else { "text" },
                    f.features,
                    c.vocab.as_ref().map_or(0, Vec::len),
                    cfg.input
                )))
            }
        }
        let classes = match cfg.loss {
            Loss::BinaryCrossEntropy => 2,
            _ => cfg.outputs,
        };
        if f.labels.len() != classes {
            return Err(bad(format!(
                "{} labels for a model with {classes} classes",
                f.labels.len()
            )));
        }
        let distinct: std::collections::HashSet<&String> = f.labels.iter().collect();
        if distinct.len() != f.labels.len() {
            return Err(bad("the labels are not distinct".into()));
        }
        let vocab = TokenVocab::from_tokens(c.vocab.clone().unwrap_or_default());
        Ok((f, vocab))
    }

    /// The class id of `label`, if the model has it.
    pub fn class_of(&self, label: &str) -> Option<u32> {
        self.labels
            .iter()
            .position(|l| l == label)
            .map(|i| i as u32)
    }
}

/// The predicted class of one row of a classifier's logits and its probability: a
/// sigmoid over one output (class 1 above 0.5), else a softmax.
///
/// ```
/// use gru_engine::task::classify::best_class;
/// assert_eq!(best_class(&[0.0]), (0, 0.5));
/// assert_eq!(best_class(&[0.0, 3.0, 1.0]).0, 1);
/// ```
pub fn best_class(row: &[f32]) -> (usize, f64) {
    if row.len() == 1 {
        let p = 1.0 / (1.0 + (-row[0] as f64).exp());
        return if p > 0.5 { (1, p) } else { (0, 1.0 - p) };
    }
    let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
    let (arg, _) = row
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    (arg, (row[arg] as f64 - mx).exp() / z)
}
