//! A forecaster's data: how it reads a series (columns, target, window, horizon and the
//! standardisation of every column), as its checkpoint's `forecast` metadata records it,
//! shared by `gru forecast`, `gru export` and embedders.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{GruError, Result};
use crate::model::{Head, ModelInput};

/// How a forecaster reads a series; stored in its checkpoint's metadata under
/// [`ForecastFormat::METADATA`].
///
/// ```
/// use gru_engine::task::forecast::ForecastFormat;
/// let rows = vec![vec![1.0, 10.0], vec![3.0, 10.0], vec![5.0, 10.0]];
/// let names = ["load".to_string(), "temp".to_string()];
/// let (mean, std) = ForecastFormat::statistics(&rows, &names, "s.csv".as_ref()).unwrap();
/// assert_eq!((mean[0], mean[1], std[1]), (3.0, 10.0, 1.0)); // a constant column: std 1
/// let f = ForecastFormat { columns: names.to_vec(), target: 0, window: 2, horizon: 1, mean, std };
/// let (x, y) = f.sample(&rows, 0);
/// assert_eq!((x.len(), y.len()), (4, 1));
/// assert!((f.value(y[0]) - 5.0).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastFormat {
    /// The columns' names (`column k` for a file without a header).
    pub columns: Vec<String>,
    /// The column forecast.
    pub target: usize,
    /// Past rows a forecast reads.
    pub window: usize,
    /// Future values of the target a forecast gives.
    pub horizon: usize,
    /// Per column, from the training part: values are fed as (x - mean) / std.
    pub mean: Vec<f32>,
    /// Per column, as `mean`.
    pub std: Vec<f32>,
}

impl ForecastFormat {
    /// The checkpoint metadata key of the format.
    pub const METADATA: &'static str = "forecast";

    /// A forecaster checkpoint's series format (its `forecast` metadata), checked
    /// against its model once, here: the column count, target, horizon and
    /// normalisation all fit, so later indexing is safe. `path` names it in errors.
    pub fn from_checkpoint(c: &Checkpoint, path: &Path) -> Result<Self> {
        let bad = |reason: String| GruError::Checkpoint {
            path: path.display().to_string(),
            reason,
        };
        let f: Self =
            serde_json::from_str(c.extra.get("forecast").ok_or_else(|| {
                bad("not a forecaster checkpoint (no `forecast` metadata)".into())
            })?)
            .map_err(|e| bad(format!("forecast metadata: {e}")))?;
        let cfg = &c.params.config;
        let cols = f.columns.len();
        if cfg.input != ModelInput::Features(cols) || cfg.head != Head::LastState {
            return Err(bad(format!(
                "forecast metadata names {cols} columns, the model reads {:?}: not this model's format",
                cfg.input
            )));
        }
        if f.mean.len() != cols || f.std.len() != cols {
            return Err(bad(format!(
                "normalisation for {} / {} columns, the series has {cols}",
                f.mean.len(),
                f.std.len()
            )));
        }
        if let Some(i) =
            (0..cols).find(|&i| !(f.mean[i].is_finite() && f.std[i].is_finite() && f.std[i] > 0.0))
        {
            return Err(bad(format!(
                "column {i}: mean {} and std {} must be finite with std > 0",
                f.mean[i], f.std[i]
            )));
        }
        if f.target >= cols || f.window == 0 || f.horizon != cfg.outputs {
            return Err(bad(format!(
                "target {} of {cols} columns, window {}, horizon {} for a model of {} outputs",
                f.target, f.window, f.horizon, cfg.outputs
            )));
        }
        Ok(f)
    }

    /// The format of a new forecaster of column `target` (a name or an index) of a series
    /// read from `file` with column `names`: its statistics over the training windows'
    /// rows only (the last `val_split` of the windows are held out, so validation stays
    /// unseen). The series must give at least two windows.
    pub fn new(
        names: &[String],
        target: &str,
        (window, horizon): (usize, usize),
        rows: &[Vec<f32>],
        val_split: f64,
        file: &Path,
    ) -> Result<Self> {
        let target = match target.parse::<usize>() {
            Ok(i) if i < names.len() => i,
            Ok(i) => {
                return Err(GruError::Config(format!(
                    "--target {i}: the series has {} columns",
                    names.len()
                )))
            }
            Err(_) => names.iter().position(|n| n == target).ok_or_else(|| {
                GruError::Config(format!(
                    "--target `{target}` is not a column (columns: {})",
                    names.join(", ")
                ))
            })?,
        };
        let n = windows(rows.len(), window, horizon);
        if n < 2 {
            return Err(GruError::Input(format!(
                "{}: {} rows are too few for --window {window} + --horizon {horizon} (at least {} needed)",
                file.display(),
                rows.len(),
                window as u128 + horizon as u128 + 1
            )));
        }
        let train_rows = &rows[..rows.len() - ((n as f64 * val_split) as usize)];
        let (mean, std) = Self::statistics(train_rows, names, file)?;
        Ok(ForecastFormat {
            columns: names.to_vec(),
            target,
            window,
            horizon,
            mean,
            std,
        })
    }

    /// Each column's mean and standard deviation over `rows` (the training part), in
    /// f64 (in f32 the squares of values near 1e20 overflow to inf), or an error naming
    /// a column whose scale f32 cannot hold: its mean, its std or its normalised values
    /// would not be finite. A constant column gets std 1.
    pub fn statistics(
        rows: &[Vec<f32>],
        names: &[String],
        file: &Path,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = rows.len().max(1) as f64;
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for (c, name) in names.iter().enumerate() {
            let m = rows.iter().map(|r| r[c] as f64).sum::<f64>() / n;
            let v = rows.iter().map(|r| (r[c] as f64 - m).powi(2)).sum::<f64>() / n;
            let s = if v > 0.0 { v.sqrt() } else { 1.0 };
            let fits = |x: f64| x.is_finite() && x.abs() <= f32::MAX as f64;
            // Normalised values are at most |x - mean| / std; they too must fit.
            let widest = rows
                .iter()
                .map(|r| (r[c] as f64 - m).abs() / s)
                .fold(0.0, f64::max);
            if !(fits(m) && fits(s) && (s as f32) > 0.0 && fits(widest)) {
                return Err(GruError::Input(format!(
                    "{}: column `{name}` has mean {m:e} and standard deviation {s:e}, beyond what f32 arithmetic can normalise: rescale it (divide by a power of ten) before training",
                    file.display()
                )));
            }
            mean.push(m as f32);
            std.push(s as f32);
        }
        Ok((mean, std))
    }

    /// The rows (read with column `names`; `named`: the file had a header) with their
    /// columns in the order this forecaster was trained on. With a header on both
    /// sides, columns are matched by name (a file may order them differently), and a
    /// missing or an extra column is an error naming it; otherwise by position, and the
    /// counts must agree.
    pub fn align(
        &self,
        rows: Vec<Vec<f32>>,
        names: &[String],
        named: bool,
        path: &Path,
    ) -> Result<Vec<Vec<f32>>> {
        let f = self;
        let generic = |n: &[String]| {
            n.iter()
                .enumerate()
                .all(|(i, c)| *c == format!("column {i}"))
        };
        if !named || generic(&f.columns) {
            if names.len() != f.columns.len() {
                return Err(GruError::Input(format!(
                    "{}: {} columns, the model was trained on {}",
                    path.display(),
                    names.len(),
                    f.columns.len()
                )));
            }
            return Ok(rows);
        }
        let missing: Vec<&str> = f
            .columns
            .iter()
            .filter(|c| !names.contains(c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = names
            .iter()
            .filter(|n| !f.columns.contains(n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            let list = |v: &[&str]| {
                v.iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(GruError::Input(format!(
                "{}: the model was trained on the columns {}; {}",
                path.display(),
                list(&f.columns.iter().map(String::as_str).collect::<Vec<_>>()),
                match (missing.is_empty(), extra.is_empty()) {
                    (false, true) => format!("missing {}", list(&missing)),
                    (true, false) => format!("extra {}", list(&extra)),
                    _ => format!("missing {}, extra {}", list(&missing), list(&extra)),
                }
            )));
        }
        let at: Vec<usize> = f
            .columns
            .iter()
            .map(|c| names.iter().position(|n| n == c).unwrap_or(0))
            .collect();
        if names
            .iter()
            .enumerate()
            .any(|(i, n)| names[..i].contains(n))
        {
            return Err(GruError::Input(format!(
                "{}: a column name appears twice in the header",
                path.display()
            )));
        }
        Ok(rows
            .into_iter()
            .map(|r| at.iter().map(|&i| r[i]).collect())
            .collect())
    }

    /// (inputs `[window·columns]`, targets `[horizon]`) normalised, for the window
    /// starting at row `s`.
    pub fn sample(&self, rows: &[Vec<f32>], s: usize) -> (Vec<f32>, Vec<f32>) {
        let f = self;
        let norm = |c: usize, v: f32| (v - f.mean[c]) / f.std[c];
        let x = rows[s..s + f.window]
            .iter()
            .flat_map(|r| r.iter().enumerate().map(move |(c, &v)| norm(c, v)))
            .collect();
        let y = rows[s + f.window..s + f.window + f.horizon]
            .iter()
            .map(|r| norm(f.target, r[f.target]))
            .collect();
        (x, y)
    }

    /// The model's input for a forecast from the last `window` rows of `rows` (at least
    /// that many), normalised, `[window·columns]`.
    pub fn last_window(&self, rows: &[Vec<f32>]) -> Vec<f32> {
        rows[rows.len() - self.window..]
            .iter()
            .flat_map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(c, &v)| (v - self.mean[c]) / self.std[c])
            })
            .collect()
    }

    /// A normalised prediction of the target on the data's scale.
    pub fn value(&self, p: f32) -> f64 {
        p as f64 * self.std[self.target] as f64 + self.mean[self.target] as f64
    }
}

/// Windows of `window` inputs and `horizon` targets that `rows` rows give.
pub fn windows(rows: usize, window: usize, horizon: usize) -> usize {
    (rows + 1).saturating_sub(window.saturating_add(horizon))
}
