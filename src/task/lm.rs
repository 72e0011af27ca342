//! A language model's data as `gru train` uses it: the text's ids split into training
//! and validation (the end is held out), the batch each step draws and the validation
//! windows. The command line and the web build share it, so a page given the same text,
//! flags and seed trains on exactly the batches the native run trains on.

use crate::budget;
use crate::error::{GruError, Result};
use crate::rng::Rng;
use crate::task::check_val_split;

/// The random stream that draws batches for training seed `seed` (what a checkpoint's
/// `rng_state` continues).
pub fn data_rng(seed: u64) -> Rng {
    Rng::new(seed ^ 0x5eed)
}

/// One batch: rows of T input ids and their next-token targets, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LmBatch {
    /// Inputs [B, T].
    pub inputs: Vec<u32>,
    /// Targets [B, T]: each input's next character.
    pub targets: Vec<u32>,
    /// Stateful training only: a new pass over the text starts here, from zero state.
    pub reset_state: bool,
}

/// The text of a language model, split, with the shape of its batches.
///
/// ```
/// use gru_engine::task::lm::{data_rng, LmData};
/// let ids: Vec<u32> = (0..1000).map(|i| i % 7).collect();
/// let data = LmData::new(ids, 0.1, 4, 16, "the text").unwrap();
/// assert_eq!(data.val_ids().len(), 100);
/// let batch = data.train_batch(&mut data_rng(1), 0, false).unwrap();
/// assert_eq!(batch.inputs.len(), 4 * 16);
/// ```
#[derive(Debug, Clone)]
pub struct LmData {
    ids: Vec<u32>,
    n_val: usize,
    batch: usize,
    seq_len: usize,
}

impl LmBatch {
    /// Its rows.
    pub fn rows(&self, seq_len: usize) -> usize {
        self.inputs.len() / seq_len.max(1)
    }
}

impl LmData {
    /// `ids` with its last `val_split` fraction held out, for batches of `batch` rows of
    /// `seq_len` characters; `source` names the text in errors.
    pub fn new(
        ids: Vec<u32>,
        val_split: f64,
        batch: usize,
        seq_len: usize,
        source: &str,
    ) -> Result<Self> {
        check_val_split(val_split)?;
        for (flag, v) in [("--batch", batch), ("--seq-len", seq_len)] {
            if v == 0 {
                return Err(GruError::Config(format!(
                    "{flag} must be at least 1, found 0"
                )));
            }
        }
        let n_val = (ids.len() as f64 * val_split) as usize;
        let n_train = ids.len() - n_val;
        if n_train < seq_len.saturating_add(1) {
            return Err(GruError::Input(format!(
                "{source} gives {n_train} training characters, fewer than one sequence of --seq-len {seq_len} + 1"
            )));
        }
        Ok(LmData {
            ids,
            n_val,
            batch,
            seq_len,
        })
    }

    /// Every id, training then validation.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The ids trained on (the start of the text).
    pub fn train_ids(&self) -> &[u32] {
        &self.ids[..self.ids.len() - self.n_val]
    }

    /// The ids held out (the end of the text).
    pub fn val_ids(&self) -> &[u32] {
        &self.ids[self.ids.len() - self.n_val..]
    }

    /// Rows per batch (B).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Characters per row (T).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Steps of one pass over the training text (at least 1).
    pub fn steps_per_epoch(&self) -> u64 {
        let per = (self.train_ids().len() - 1) / self.batch.saturating_mul(self.seq_len);
        per.max(1) as u64
    }

    /// The batch of step `step` (counted from the run's start): random windows drawn
    /// from `rng`, or with `stateful` B streams through the text, consecutive steps
    /// continuing them.
    pub fn train_batch(&self, rng: &mut Rng, step: u64, stateful: bool) -> Result<LmBatch> {
        let (b, len, ids) = (self.batch, self.seq_len, self.train_ids());
        let stream_len = (ids.len() - 1) / b;
        let mut reset_state = false;
        let starts: Vec<usize> = if stateful && stream_len > len {
            let k = (step % (stream_len / len) as u64) as usize;
            reset_state = k == 0;
            (0..b).map(|r| r * stream_len + k * len).collect()
        } else {
            (0..b)
                .map(|_| (rng.next_u64() % (ids.len() - len) as u64) as usize)
                .collect()
        };
        let (inputs, targets) = windows(ids, &starts, len)?;
        Ok(LmBatch {
            inputs,
            targets,
            reset_state,
        })
    }

    /// The validation batches: consecutive windows of the held-out text, up to 8
    /// batches (the last may have fewer rows). Empty when too little is held out.
    pub fn val_batches(&self) -> Result<Vec<LmBatch>> {
        let (val, b, len) = (self.val_ids(), self.batch, self.seq_len);
        let per = val.len().saturating_sub(1) / len;
        let starts: Vec<usize> = (0..per.min(8 * b)).map(|i| i * len).collect();
        starts
            .chunks(b)
            .map(|chunk| {
                let (inputs, targets) = windows(val, chunk, len)?;
                Ok(LmBatch {
                    inputs,
                    targets,
                    reset_state: false,
                })
            })
            .collect()
    }
}

/// Next-token windows: inputs ids[s..s+T], targets ids[s+1..s+T+1], per row start.
fn windows(ids: &[u32], starts: &[usize], t: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let n = starts.len().saturating_mul(t);
    let mut x = budget::try_with_capacity(n, "a batch of token ids")?;
    let mut y = budget::try_with_capacity(n, "a batch of targets")?;
    for &s in starts {
        x.extend_from_slice(&ids[s..s + t]);
        y.extend_from_slice(&ids[s + 1..s + t + 1]);
    }
    Ok((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_next_token_pairs_inside_the_training_text() {
        let ids: Vec<u32> = (0..200).collect();
        let d = LmData::new(ids, 0.25, 3, 10, "t").unwrap();
        assert_eq!(d.train_ids().len(), 150);
        let mut rng = data_rng(9);
        for step in 0..50 {
            let b = d.train_batch(&mut rng, step, false).unwrap();
            for r in 0..3 {
                let x = &b.inputs[r * 10..r * 10 + 10];
                let y = &b.targets[r * 10..r * 10 + 10];
                assert!(x.iter().zip(y).all(|(a, b)| b == &(a + 1)));
                assert!(y[9] < 150);
            }
        }
        let val = d.val_batches().unwrap();
        assert_eq!(val.len(), 2);
        assert_eq!(val[0].inputs[0], 150);
        assert_eq!(val[1].rows(10), 1);
    }

    #[test]
    fn a_text_shorter_than_a_sequence_is_refused_with_its_numbers() {
        let e = LmData::new(vec![0; 10], 0.0, 1, 10, "tiny.txt").unwrap_err();
        assert!(e
            .to_string()
            .contains("tiny.txt gives 10 training characters"));
        assert!(LmData::new(vec![0; 10], 1.0, 1, 2, "t").is_err());
    }
}
