//! A classifier's rows as `gru classify` reads them, for the command line and
//! embedders alike: CSV fields parsed into examples (token ids or values, with their
//! label), the training file's header rule, class ids, the held-out rows, padded
//! batches, and scoring and prediction over a set of examples.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{GruError, Result};
use crate::model::{Batch, Loss, ModelConfig};
use crate::rng::Rng;
use crate::task::classify::{best_class, ClassifierFormat as Format, TokenVocab};
use crate::train::{Split, Trainer};

fn bad(path: &Path, msg: String) -> GruError {
    GruError::Input(format!("{}: {msg}", path.display()))
}

/// A numeric field, refusing non-numbers and NaN/infinities with their place.
pub fn number(path: &Path, row: usize, col: usize, s: &str) -> Result<f32> {
    let v: f32 = s.parse().map_err(|_| {
        bad(
            path,
            format!("row {row}, column {}: `{s}` is not a number", col + 1),
        )
    })?;
    if !v.is_finite() {
        return Err(bad(
            path,
            format!("row {row}, column {}: {s} is not a finite number", col + 1),
        ));
    }
    Ok(v)
}

/// Whether every field parses as a number (and there is at least one).
pub fn all_numeric<'a>(fields: impl IntoIterator<Item = &'a String>) -> bool {
    let mut any = false;
    for f in fields {
        if f.parse::<f32>().is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// One row: its label (if any) and its sequence (token ids or `[T·features]` values).
#[derive(Debug)]
pub struct Example {
    /// The label (labelled rows only).
    pub label: Option<String>,
    /// Token ids (text rows).
    pub tokens: Vec<u32>,
    /// `[len·features]` values (numeric rows).
    pub values: Vec<f32>,
    /// Steps.
    pub len: usize,
}

/// Rows of a CSV file with the header decision already applied: the rows, and the
/// 1-based file row number of the first one.
pub struct Rows {
    /// The rows' fields.
    pub rows: Vec<Vec<String>>,
    /// The file row number of `rows[0]`.
    pub first_row: usize,
}

/// Training rule: the first row's label occurs nowhere else while every other label
/// occurs at least 5 times; or, for numeric rows, only the first row is not numbers.
pub fn training_header(rows: &[Vec<String>]) -> bool {
    if rows.len() < 3 {
        return false;
    }
    let rest = &rows[1..];
    if !all_numeric(rows[0].iter().skip(1)) && rest.iter().all(|r| all_numeric(r.iter().skip(1))) {
        return true;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in rest {
        *counts.entry(r[0].as_str()).or_default() += 1;
    }
    !counts.contains_key(rows[0][0].as_str()) && counts.values().all(|&c| c >= 5)
}

/// Parses rows; `labelled`: the first field is the label. `vocab` maps tokens to ids
/// (0 is the unknown/padding token).
pub fn examples(
    path: &Path,
    rows: &Rows,
    labelled: bool,
    f: &Format,
    vocab: &TokenVocab,
) -> Result<Vec<Example>> {
    let first = usize::from(labelled);
    let mut out = Vec::new();
    for (i, rec) in rows.rows.iter().enumerate() {
        let row = i + rows.first_row;
        if rec.len() <= first {
            return Err(GruError::Input(format!(
                "{}: row {row} has no {}",
                path.display(),
                if labelled {
                    "sequence after its label"
                } else {
                    "values"
                }
            )));
        }
        let label = labelled.then(|| rec[0].clone());
        let rest = &rec[first..];
        let mut e = Example {
            label,
            tokens: Vec::new(),
            values: Vec::new(),
            len: 0,
        };
        if f.numeric {
            if rest.len() % f.features != 0 {
                return Err(GruError::Input(format!(
                    "{}: row {row} has {} values, not a multiple of --features {}",
                    path.display(),
                    rest.len(),
                    f.features
                )));
            }
            for (c, s) in rest.iter().enumerate() {
                e.values.push(number(path, row, c + first, s)?);
            }
            e.len = (rest.len() / f.features).min(f.max_len);
            e.values.truncate(e.len * f.features);
        } else {
            let text = rest.join(",");
            e.tokens = vocab.encode(&text, f.tokens, f.max_len);
            if e.tokens.is_empty() {
                return Err(GruError::Input(format!(
                    "{}: row {row} has an empty text",
                    path.display()
                )));
            }
            e.len = e.tokens.len();
        }
        out.push(e);
    }
    Ok(out)
}

/// Labels as a short text: all of them when few, else the first few and the count.
pub fn summarize_labels(labels: &[String]) -> String {
    const SHOWN: usize = 8;
    if labels.len() <= SHOWN {
        labels.join(", ")
    } else {
        format!(
            "{}, ... ({} labels)",
            labels[..SHOWN].join(", "),
            crate::model::group_digits(labels.len())
        )
    }
}

/// Class ids of labelled examples, refusing labels the model was not trained on.
pub fn class_ids(path: &Path, rows: &Rows, ex: &[Example], labels: &[String]) -> Result<Vec<u32>> {
    let index: HashMap<&str, u32> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    ex.iter()
        .enumerate()
        .map(|(i, e)| {
            let l = e.label.as_deref().unwrap_or_default();
            index.get(l).copied().ok_or_else(|| {
                GruError::Input(format!(
                    "{}: row {}: label `{l}` was not in the training data (known: {})",
                    path.display(),
                    i + rows.first_row,
                    summarize_labels(labels)
                ))
            })
        })
        .collect()
}

/// Inputs of rows `idx`, padded to `t` steps, batch-first, with their lengths.
pub fn batch_inputs(
    ex: &[Example],
    idx: &[usize],
    t: usize,
    f: &Format,
) -> (Vec<u32>, Vec<f32>, Vec<usize>) {
    let (mut tok, mut val, mut len) = (Vec::new(), Vec::new(), Vec::new());
    for &i in idx {
        let e = &ex[i];
        if f.numeric {
            val.extend_from_slice(&e.values);
            val.resize(val.len() + (t - e.len) * f.features, 0.0);
        } else {
            tok.extend_from_slice(&e.tokens);
            tok.resize(tok.len() + t - e.len, 0);
        }
        len.push(e.len);
    }
    (tok, val, len)
}

/// A batch from owned parts.
pub fn batch<'a>(
    f: &Format,
    tok: &'a [u32],
    val: &'a [f32],
    len: &'a [usize],
    t: usize,
) -> Batch<'a> {
    let b = len.len();
    let x = if f.numeric {
        Batch::features(val, b, t)
    } else {
        Batch::tokens(tok, b, t)
    };
    x.lengths(len)
}

/// Targets of a batch in the form the loss wants.
pub fn targets(cfg: &ModelConfig, ids: &[u32]) -> (Vec<u32>, Vec<f32>) {
    match cfg.loss {
        Loss::BinaryCrossEntropy => (Vec::new(), ids.iter().map(|&c| c as f32).collect()),
        _ => (ids.to_vec(), Vec::new()),
    }
}

/// Runs `ex` through evaluate (with labels) in batches; returns (loss, accuracy).
pub fn eval_set(
    t: &mut dyn Trainer,
    ex: &[Example],
    ids: &[u32],
    f: &Format,
    b: usize,
) -> Result<(f64, f64)> {
    let tmax = ex.iter().map(|e| e.len).max().unwrap_or(1);
    let cfg = *t.config();
    let all: Vec<usize> = (0..ex.len()).collect();
    for chunk in all.chunks(b) {
        let (tok, val, len) = batch_inputs(ex, chunk, tmax, f);
        let y: Vec<u32> = chunk.iter().map(|&i| ids[i]).collect();
        let (c, v) = targets(&cfg, &y);
        let bt = batch(f, &tok, &val, &len, tmax);
        t.evaluate(&if c.is_empty() {
            bt.values(&v)
        } else {
            bt.classes(&c)
        })?;
    }
    let m = t.take_metrics(Split::Eval)?;
    Ok((m.loss, m.accuracy.unwrap_or(0.0)))
}

/// Predicted class and its probability for every example.
pub fn predict_set(
    t: &mut dyn Trainer,
    ex: &[Example],
    f: &Format,
    b: usize,
) -> Result<Vec<(usize, f64)>> {
    let tmax = ex.iter().map(|e| e.len).max().unwrap_or(1);
    let cfg = *t.config();
    let all: Vec<usize> = (0..ex.len()).collect();
    let mut out = Vec::new();
    for chunk in all.chunks(b) {
        let (tok, val, len) = batch_inputs(ex, chunk, tmax, f);
        let logits = t.predict(&batch(f, &tok, &val, &len, tmax))?;
        out.extend(logits.chunks(cfg.outputs).map(best_class));
    }
    Ok(out)
}

/// The rows of a file of `n` held out for validation (`--val-split`), spread over the
/// file (not its tail, which may be one class), in order.
pub fn held_out_rows(n: usize, val_split: f64, seed: u64) -> Vec<usize> {
    let k = (n as f64 * val_split) as usize;
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0xfeed).shuffle(&mut order);
    let mut take = order[..k].to_vec();
    take.sort_unstable();
    take
}
