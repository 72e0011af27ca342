//! A batch of sequences for a model, batch-first like Keras: inputs [B, T] token ids or
//! [B, T, I] features, optional per-row lengths, and targets. Checked at the boundary,
//! then laid out time-major for the engine.

use crate::dist::shard::Shard;
use crate::error::{check_len, GruError, Result};
use crate::model::config::{Head, Loss, ModelConfig, ModelInput};

/// A target value that is skipped by the loss (padding), like PyTorch's `ignore_index`.
pub const IGNORE: u32 = u32::MAX;

/// The model's inputs, batch-first.
#[derive(Debug, Clone, Copy)]
pub enum BatchInputs<'a> {
    /// Token ids [B, T], each below the vocabulary size.
    Tokens(&'a [u32]),
    /// Numbers [B, T, I].
    Features(&'a [f32]),
}

/// What the model should predict.
#[derive(Debug, Clone, Copy)]
pub enum BatchTargets<'a> {
    /// No targets (prediction only).
    None,
    /// Class ids for cross-entropy: [B, T] for a per-step head, `[B]` for a last-state
    /// head; [`IGNORE`] skips a position.
    Classes(&'a [u32]),
    /// Values for binary cross-entropy (0 or 1) or MSE: [B, T, outputs] per step,
    /// [B, outputs] for a last-state head.
    Values(&'a [f32]),
}

/// One batch, batch-first.
///
/// ```
/// use gru_engine::model::Batch;
/// let ids = [1u32, 2, 3, 4, 5, 6];       // [B = 2, T = 3]
/// let next = [2u32, 3, 0, 5, 6, 0];
/// let batch = Batch::tokens(&ids, 2, 3).classes(&next);
/// assert_eq!(batch.batch, 2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Inputs [B, T] or [B, T, I].
    pub inputs: BatchInputs<'a>,
    /// Targets, if training or evaluating.
    pub targets: BatchTargets<'a>,
    /// B.
    pub batch: usize,
    /// T.
    pub seq_len: usize,
    /// Valid steps per row (1..=T); rows are full length when absent.
    pub lengths: Option<&'a [usize]>,
}

impl<'a> Batch<'a> {
    /// Token ids [B, T].
    pub fn tokens(ids: &'a [u32], batch: usize, seq_len: usize) -> Self {
        Batch {
            inputs: BatchInputs::Tokens(ids),
            targets: BatchTargets::None,
            batch,
            seq_len,
            lengths: None,
        }
    }
    /// Features [B, T, I].
    pub fn features(x: &'a [f32], batch: usize, seq_len: usize) -> Self {
        Batch {
            inputs: BatchInputs::Features(x),
            ..Self::tokens(&[], batch, seq_len)
        }
    }
    /// Sets class-id targets.
    pub fn classes(mut self, t: &'a [u32]) -> Self {
        self.targets = BatchTargets::Classes(t);
        self
    }
    /// Sets value targets.
    pub fn values(mut self, t: &'a [f32]) -> Self {
        self.targets = BatchTargets::Values(t);
        self
    }
    /// Sets per-row lengths.
    pub fn lengths(mut self, l: &'a [usize]) -> Self {
        self.lengths = Some(l);
        self
    }

    /// Rows `[first, first + rows)` as a batch of their own, borrowing the same data
    /// (batch-first, so a row range is one slice of every tensor); an error where the
    /// range passes B or a tensor does not divide into B rows.
    ///
    /// ```
    /// use gru_engine::model::Batch;
    /// let ids = [1u32, 2, 3, 4, 5, 6]; // [B = 3, T = 2]
    /// let part = Batch::tokens(&ids, 3, 2).rows(1, 2).unwrap();
    /// assert_eq!(part.batch, 2);
    /// ```
    pub fn rows(&self, first: usize, rows: usize) -> Result<Batch<'a>> {
        let b = self.batch;
        if first.checked_add(rows).is_none_or(|end| end > b) || rows == 0 {
            return Err(GruError::Input(format!(
                "rows {first}..{} of a batch of {b} rows: expected a non-empty range within the batch",
                first.saturating_add(rows)
            )));
        }
        fn take<'a, T>(
            what: &str,
            v: &'a [T],
            b: usize,
            first: usize,
            rows: usize,
        ) -> Result<&'a [T]> {
            if !v.len().is_multiple_of(b) {
                return Err(GruError::Input(format!(
                    "{what}: {} values do not divide into {b} batch rows",
                    v.len()
                )));
            }
            let w = v.len() / b;
            Ok(&v[first * w..(first + rows) * w])
        }
        let inputs = match self.inputs {
            BatchInputs::Tokens(v) => BatchInputs::Tokens(take("token ids", v, b, first, rows)?),
            BatchInputs::Features(v) => BatchInputs::Features(take("features", v, b, first, rows)?),
        };
        let targets = match self.targets {
            BatchTargets::None => BatchTargets::None,
            BatchTargets::Classes(v) => BatchTargets::Classes(take("classes", v, b, first, rows)?),
            BatchTargets::Values(v) => BatchTargets::Values(take("values", v, b, first, rows)?),
        };
        let lengths = match self.lengths {
            Some(l) => Some(take("lengths", l, b, first, rows)?),
            None => None,
        };
        Ok(Batch {
            inputs,
            targets,
            batch: rows,
            seq_len: self.seq_len,
            lengths,
        })
    }

    // Long by choice: one pass of boundary checks, each naming its value and position,
    // then the time-major layout.
    /// Checks every shape and value against `config` and lays the batch out time-major.
    /// `need_targets`: training and evaluation need them, prediction does not.
    pub(crate) fn prepare(&self, config: &ModelConfig, need_targets: bool) -> Result<Prepared> {
        let (b, t) = (self.batch, self.seq_len);
        if b == 0 || t == 0 {
            return Err(GruError::Input(format!(
                "a batch needs B >= 1 rows and T >= 1 steps, found B = {b}, T = {t}"
            )));
        }
        let mut p = Prepared {
            seq_len: t,
            batch: b,
            tokens: Vec::new(),
            features: Vec::new(),
            lengths: vec![t; b],
            targets: Vec::new(),
            count: 0,
            shard: Shard::whole(b),
        };
        match (self.inputs, config.input) {
            (BatchInputs::Tokens(ids), ModelInput::Tokens { vocab, .. }) => {
                check_len("token ids", ids.len(), &[b, t], "[B, T]")?;
                if let Some((i, &bad)) = ids.iter().enumerate().find(|(_, &v)| v as usize >= vocab)
                {
                    return Err(GruError::Input(format!(
                        "token id {bad} at position {i} is outside the vocabulary of {vocab}"
                    )));
                }
                p.tokens = (0..t)
                    .flat_map(|s| (0..b).map(move |r| ids[r * t + s]))
                    .collect();
            }
            (BatchInputs::Features(x), ModelInput::Features(n)) => {
                check_len("features", x.len(), &[b, t, n], "[B, T, I]")?;
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(GruError::Input(format!(
                        "feature value {} at position {i} is not finite",
                        x[i]
                    )));
                }
                p.features = crate::sequence::swap_leading_axes(x, b, t, n);
            }
            (BatchInputs::Tokens(_), ModelInput::Features(n)) => {
                return Err(GruError::Input(format!(
                    "this model reads {n} numeric features per step, not token ids"
                )))
            }
            (BatchInputs::Features(_), ModelInput::Tokens { .. }) => {
                return Err(GruError::Input(
                    "this model reads token ids, not numeric features".into(),
                ))
            }
        }
        if let Some(l) = self.lengths {
            check_len("lengths", l.len(), &[b], "[B]")?;
            if let Some((r, &bad)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > t) {
                return Err(GruError::Input(format!(
                    "row {r} has length {bad}; lengths must be in 1..={t}"
                )));
            }
            p.lengths = l.to_vec();
        }
        let c = config.outputs;
        let per_step = config.head == Head::EveryStep;
        let (dims, text): (Vec<usize>, &str) = match (per_step, config.loss) {
            (true, Loss::CrossEntropy) => (vec![b, t], "[B, T]"),
            (false, Loss::CrossEntropy) => (vec![b], "[B]"),
            (true, _) => (vec![b, t, c], "[B, T, outputs]"),
            (false, _) => (vec![b, c], "[B, outputs]"),
        };
        // Time-major rows: row = s·B + r for a per-step head, r otherwise.
        let row_of = |r: usize, s: usize| if per_step { s * b + r } else { r };
        match (self.targets, config.loss) {
            (BatchTargets::None, _) if need_targets => {
                return Err(GruError::Input(
                    "training and evaluation need targets; this batch has none".into(),
                ))
            }
            (BatchTargets::None, _) => {}
            (BatchTargets::Classes(tg), Loss::CrossEntropy) => {
                check_len("targets", tg.len(), &dims, text)?;
                let rows = if per_step { t } else { 1 };
                p.targets = vec![IGNORE; b * rows];
                for r in 0..b {
                    for s in 0..rows {
                        let v = tg[r * rows + s];
                        if v != IGNORE && v as usize >= c {
                            return Err(GruError::Input(format!(
                                "target class {v} of row {r} is outside the {c} classes"
                            )));
                        }
                        if s < p.lengths[r] && v != IGNORE {
                            p.targets[row_of(r, s)] = v;
                            p.count += 1;
                        }
                    }
                }
            }
            (BatchTargets::Values(tg), Loss::BinaryCrossEntropy | Loss::MeanSquaredError) => {
                check_len("targets", tg.len(), &dims, text)?;
                if let Some(i) = tg.iter().position(|v| !v.is_finite()) {
                    return Err(GruError::Input(format!(
                        "target value {} at position {i} is not finite",
                        tg[i]
                    )));
                }
                let rows = if per_step { t } else { 1 };
                p.targets = vec![IGNORE; b * rows * c];
                for r in 0..b {
                    for s in 0..rows.min(p.lengths[r]) {
                        let src = &tg[(r * rows + s) * c..(r * rows + s + 1) * c];
                        let at = row_of(r, s) * c;
                        for (k, v) in src.iter().enumerate() {
                            p.targets[at + k] = v.to_bits();
                        }
                        p.count += c;
                    }
                }
                if config.loss == Loss::BinaryCrossEntropy {
                    if let Some(v) = tg.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                        return Err(GruError::Input(format!(
                            "binary cross-entropy targets must be in [0, 1], found {v}"
                        )));
                    }
                }
            }
            (BatchTargets::Classes(_), loss) => {
                return Err(GruError::Input(format!(
                    "{loss:?} needs value targets, this batch has class ids"
                )))
            }
            (BatchTargets::Values(_), loss) => {
                return Err(GruError::Input(format!(
                    "{loss:?} needs class-id targets, this batch has values"
                )))
            }
        }
        if need_targets && p.count == 0 {
            return Err(GruError::Input(
                "every target of this batch is ignored; nothing to learn from".into(),
            ));
        }
        Ok(p)
    }
}

/// A checked batch, time-major.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub seq_len: usize,
    pub batch: usize,
    /// [T, B] token ids (token models).
    pub tokens: Vec<u32>,
    /// [T, B, I] (feature models).
    pub features: Vec<f32>,
    pub lengths: Vec<usize>,
    /// Per head row (time-major for a per-step head): class ids, or f32 bit patterns
    /// [rows, outputs]; IGNORE where padded. Empty without targets.
    pub targets: Vec<u32>,
    /// Targets that count towards the mean loss (the global batch's in data-parallel
    /// training, where the mean is over every rank's rows).
    pub count: usize,
    /// Where these rows sit in the global batch (dropout masks follow it).
    pub shard: Shard,
}

impl Prepared {
    /// Rows the head sees: T·B per step, B for the last state.
    pub fn head_rows(&self, head: Head) -> usize {
        match head {
            Head::EveryStep => self.seq_len * self.batch,
            Head::LastState => self.batch,
        }
    }

    /// Batch rows `[row0, row0 + rows)` as a batch of their own (a chunk), time-major
    /// like the whole. `count` stays the whole batch's, since the loss is its mean.
    pub fn rows(&self, head: Head, row0: usize, rows: usize) -> Prepared {
        let (t_len, b) = (self.seq_len, self.batch);
        // Per time step: `width` values per row, [row0, row0 + rows) of each step's b rows.
        fn take<T: Copy>(v: &[T], steps: usize, b: usize, row0: usize, rows: usize) -> Vec<T> {
            if v.is_empty() {
                return Vec::new();
            }
            let width = v.len() / (steps * b);
            (0..steps)
                .flat_map(|t| &v[(t * b + row0) * width..(t * b + row0 + rows) * width])
                .copied()
                .collect()
        }
        let head_steps = match head {
            Head::EveryStep => t_len,
            Head::LastState => 1,
        };
        Prepared {
            seq_len: t_len,
            batch: rows,
            tokens: take(&self.tokens, t_len, b, row0, rows),
            features: take(&self.features, t_len, b, row0, rows),
            lengths: self.lengths[row0..row0 + rows].to_vec(),
            targets: take(&self.targets, head_steps, b, row0, rows),
            count: self.count,
            shard: Shard {
                first_row: self.shard.first_row + row0,
                rows,
                global_rows: self.shard.global_rows,
            },
        }
    }
}
