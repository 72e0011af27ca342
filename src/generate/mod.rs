//! Text generation from a language model: sampling options and the reference sampler
//! (the same procedure as shaders/sample.wgsl).

pub(crate) mod gpu;

use crate::error::{GruError, Result};
use crate::model::{Head, ModelConfig, ModelInput};
use crate::rng::pcg;

/// How the next token is chosen.
///
/// ```
/// use gru_engine::generate::Sampling;
/// let s = Sampling::new(0.8).top_k(20).seed(7);
/// assert!(Sampling::greedy().temperature == 0.0 && s.top_k == 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the k most likely tokens (ties at the k-th value are kept); 0 keeps all.
    pub top_k: usize,
    /// Seed of the draws: the same seed, prompt and model give the same text.
    pub seed: u64,
}

impl Sampling {
    /// Sampling at `temperature`, all tokens, seed 0.
    pub fn new(temperature: f32) -> Self {
        Sampling {
            temperature,
            top_k: 0,
            seed: 0,
        }
    }
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self::new(0.0)
    }
    /// Sets top-k.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }
    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Rejects a negative or non-finite temperature.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(GruError::Config(format!(
                "temperature must be >= 0 (0 = greedy), found {}",
                self.temperature
            )));
        }
        Ok(())
    }

    /// Picks a token from `logits` for draw number `n` (the reference of sample.wgsl).
    pub fn pick(&self, logits: &[f32], n: u32) -> u32 {
        let Some(&first) = logits.first() else {
            return 0;
        };
        let (mut best, mut mx) = (0usize, first);
        for (c, &v) in logits.iter().enumerate().skip(1) {
            if v > mx {
                mx = v;
                best = c;
            }
        }
        if self.temperature <= 0.0 {
            return best as u32;
        }
        let mut floor_v = -3.4e38f32;
        if self.top_k > 0 && self.top_k < logits.len() {
            let mut thr = 3.4e38f32;
            for _ in 0..self.top_k {
                let mut next = -3.4e38f32;
                for &v in logits {
                    if v < thr && v > next {
                        next = v;
                    }
                }
                thr = next;
            }
            floor_v = thr;
        }
        let t = self.temperature;
        let weight = |v: f32| {
            if v >= floor_v {
                ((v - mx) / t).exp()
            } else {
                0.0
            }
        };
        // 64 contiguous blocks, each summed in order, then the blocks in order: the
        // device's order (one block per thread), so both draw the same token.
        let chunk = logits.len().div_ceil(64);
        let blocks: Vec<(usize, f32)> = logits
            .chunks(chunk)
            .enumerate()
            .map(|(l, b)| (l * chunk, b.iter().fold(0.0f32, |a, &v| a + weight(v))))
            .collect();
        let total = blocks.iter().fold(0.0f32, |a, b| a + b.1);
        let (lo, hi) = (self.seed as u32, (self.seed >> 32) as u32);
        let u = (pcg(n ^ pcg(lo ^ pcg(hi))) >> 8) as f32 / 16_777_216.0;
        let target = u * total;
        let mut acc = 0.0f32;
        for &(start, sum) in &blocks {
            if acc + sum > target {
                let mut a = acc;
                for (c, &v) in logits.iter().enumerate().skip(start).take(chunk) {
                    if v >= floor_v {
                        a += weight(v);
                        if a > target {
                            return c as u32;
                        }
                    }
                }
            }
            acc += sum;
        }
        best as u32
    }
}

/// Checks that `config` is a language model and `prompt` fits it.
pub(crate) fn check_lm(config: &ModelConfig, prompt: &[u32]) -> Result<()> {
    let ModelInput::Tokens { vocab, .. } = config.input else {
        return Err(GruError::Config(
            "generation needs a token model (this one reads numeric features)".into(),
        ));
    };
    if config.head != Head::EveryStep || config.bidirectional {
        return Err(GruError::Config(
            "generation needs a unidirectional language model (a per-step head)".into(),
        ));
    }
    if config.outputs != vocab {
        // Each drawn token is the next input: a head wider than the vocabulary would
        // draw tokens the embedding does not have.
        return Err(GruError::Config(format!(
            "generation needs a head over the vocabulary: {vocab} outputs expected, found {}",
            config.outputs
        )));
    }
    if prompt.is_empty() {
        return Err(GruError::Input(
            "the prompt needs at least one token".into(),
        ));
    }
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(GruError::Input(format!(
            "prompt token {bad} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}
