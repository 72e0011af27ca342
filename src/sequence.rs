//! What goes in and out of a GRU: the input sequence with its options, and the gradients.
//! Validation at the boundary lives here, shared by the CPU and GPU paths.

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::weights::GruWeights;

/// One batch of sequences for a forward pass.
///
/// `data` is [T, B, I] time-major (the default, as PyTorch's `batch_first=False`)
/// or [B, T, I] with [`SequenceInput::batch_first`]. Non-finite values are not
/// rejected: like PyTorch, NaN and infinities pass through the arithmetic.
///
/// ```
/// use gru_engine::SequenceInput;
/// let x = vec![0.5f32; 7 * 2 * 3];
/// let lengths = [7, 4];
/// let input = SequenceInput::new(&x, 7, 2).lengths(&lengths);
/// assert_eq!(input.length_of(1), 4);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SequenceInput<'a, R = f32> {
    /// [T, B, I] (or [B, T, I] when `batch_first`).
    pub data: &'a [R],
    /// T.
    pub seq_len: usize,
    /// B.
    pub batch: usize,
    /// Whether `data` (and the output, and its gradient) are batch-major.
    pub batch_first: bool,
    /// [layers·dirs, B, H]; zeros when absent.
    pub h0: Option<&'a [R]>,
    /// `[B]` valid steps per row, each in 1..=T; all T when absent.
    pub lengths: Option<&'a [usize]>,
}

impl<'a, R> SequenceInput<'a, R> {
    /// Time-major input [T, B, I] with zero initial state and full lengths.
    pub fn new(data: &'a [R], seq_len: usize, batch: usize) -> Self {
        SequenceInput {
            data,
            seq_len,
            batch,
            batch_first: false,
            h0: None,
            lengths: None,
        }
    }
    /// Declares `data` as [B, T, I]; the output then is [B, T, dirs·H].
    pub fn batch_first(mut self, yes: bool) -> Self {
        self.batch_first = yes;
        self
    }
    /// Initial state [layers·dirs, B, H].
    pub fn h0(mut self, h0: &'a [R]) -> Self {
        self.h0 = Some(h0);
        self
    }
    /// Valid steps per row (packed-sequence semantics).
    pub fn lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }
    /// Valid steps of row `b`.
    pub fn length_of(&self, b: usize) -> usize {
        self.lengths.map_or(self.seq_len, |l| l[b])
    }

    /// Checks every shape and length against `config`, naming what was expected and found.
    pub fn validate(&self, config: &GruConfig) -> Result<()> {
        config.validate()?;
        let (t, b) = (self.seq_len, self.batch);
        if t == 0 {
            return Err(GruError::Input(
                "sequence length T must be at least 1, found 0".into(),
            ));
        }
        if b == 0 {
            return Err(GruError::Input(
                "batch size B must be at least 1, found 0".into(),
            ));
        }
        let dims = if self.batch_first {
            "[B, T, I]"
        } else {
            "[T, B, I]"
        };
        let shape = if self.batch_first {
            [b, t, config.input_size]
        } else {
            [t, b, config.input_size]
        };
        check_len("input", self.data.len(), &shape, dims)?;
        if let Some(h0) = self.h0 {
            let ld = config.num_layers * config.num_directions();
            check_len(
                "h0",
                h0.len(),
                &[ld, b, config.hidden_size],
                "[layers*dirs, B, H]",
            )?;
        }
        if let Some(lengths) = self.lengths {
            check_len("lengths", lengths.len(), &[b], "[B]")?;
            if let Some((row, &len)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > t) {
                return Err(GruError::Input(format!(
                    "lengths[{row}] = {len}, but every length must be in 1..={t} (T)"
                )));
            }
        }
        Ok(())
    }
}

/// Checks the arguments of a single-step cell: `x` [B, I], `h` [layers, B, H], and that
/// the stack is unidirectional.
pub(crate) fn validate_cell<R>(config: &GruConfig, x: &[R], h: &[R], batch: usize) -> Result<()> {
    if config.bidirectional {
        return Err(GruError::Config(
            "a single-step cell cannot be bidirectional: the reverse direction needs the whole sequence".into(),
        ));
    }
    check_len(
        "cell input x",
        x.len(),
        &[batch, config.input_size],
        "[B, I]",
    )?;
    check_len(
        "cell state h",
        h.len(),
        &[config.num_layers, batch, config.hidden_size],
        "[layers, B, H]",
    )
}

/// Gradients of a backward pass, in the same layouts as the forward's inputs.
#[derive(Debug, Clone)]
pub struct GruGrads<R = f32> {
    /// dL/d input: [T, B, I] (or [B, T, I] for batch-first input).
    pub d_input: Vec<R>,
    /// dL/d h0: [layers·dirs, B, H].
    pub d_h0: Vec<R>,
    /// dL/d every parameter, named and shaped like the parameters.
    pub d_weights: GruWeights<R>,
}

/// Swaps the first two axes of a [d0, d1, f] array: time-major <-> batch-first.
pub fn swap_leading_axes<R: Copy>(data: &[R], d0: usize, d1: usize, f: usize) -> Vec<R> {
    let mut out = Vec::with_capacity(data.len());
    for j in 0..d1 {
        for i in 0..d0 {
            out.extend_from_slice(&data[(i * d1 + j) * f..(i * d1 + j + 1) * f]);
        }
    }
    out
}
