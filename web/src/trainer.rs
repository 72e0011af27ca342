//! `Trainer`: a character language model trained in the page with the flags of
//! `gru train`, on exactly the batches `gru train` draws for the same text and seed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::task::lm::{data_rng, LmData};
use gru_engine::text::{read_chars, CharText, CharVocab};
use gru_engine::train::{AwaitableTrainer, Metrics, Split, TrainOptions};
use gru_engine::GruError;
use js_sys::{Float64Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::device;
use crate::js::{bad, error, exclusive, maybe, now_ms, object, Options};
use crate::model::{generate, whole};

/// Steps whose batches are drawn and held at once, their losses read back together.
const STEPS_PER_READ: usize = 32;

/// A language model being trained in the page.
#[wasm_bindgen]
pub struct Trainer {
    inner: Rc<RefCell<Inner>>,
    /// Copies for the getters, which may be read while a call is pending.
    steps: Rc<Cell<u64>>,
    facts: Facts,
}

/// What a trainer's getters report that does not change.
struct Facts {
    device: String,
    default_prompt: String,
    vocabulary: usize,
    parameters: u64,
    steps_per_epoch: u64,
    characters: [usize; 2],
}

struct Inner {
    trainer: AwaitableTrainer,
    data: LmData,
    vocab: CharVocab,
    rng: Rng,
    step: u64,
    /// Training metrics since the last evaluation (as `gru train` reports them).
    since_eval: Vec<Metrics>,
    /// When the steps since the last evaluation began, and their tokens.
    window_ms: f64,
    window_items: u64,
    started_ms: f64,
}

#[wasm_bindgen]
impl Trainer {
    /// A new model for `text` with `config`, the flags of `gru train` by their
    /// JavaScript names: `hidden` (128), `embed` (32), `layers` (1), `seqLen` (64),
    /// `batch` (32), `lr` (0.002), `optimizer` ("adam", "adamw" or "sgd"), `momentum`
    /// (0.9, sgd), `weightDecay`, `clipNorm` (1; 0 is off), `seed` (42), `valSplit`
    /// (0.05), `dropout` (0), `variant` ("reset-after" or "reset-before"), and `device`
    /// ("auto", "gpu", "cpu").
    pub async fn create(text: String, config: JsValue) -> Result<Trainer, JsValue> {
        let o = Options::new(&config, "Trainer.create's config")?;
        let hidden = o.count("hidden", 128, 1)? as usize;
        let embed = o.count("embed", 32, 1)? as usize;
        let layers = o.count("layers", 1, 1)? as usize;
        let seq_len = o.count("seqLen", 64, 1)? as usize;
        let batch = o.count("batch", 32, 1)? as usize;
        let val_split = o.f64("valSplit", 0.05)?;
        let dropout = o.f64("dropout", 0.0)? as f32;
        let variant = match o.string("variant", "reset-after")?.as_str() {
            "reset-after" => gru_engine::GruVariant::ResetAfter,
            "reset-before" => gru_engine::GruVariant::ResetBefore,
            v => {
                return Err(bad(format!(
                    "variant must be \"reset-after\" or \"reset-before\", found {v:?}"
                )))
            }
        };
        let options = train_options(&o)?;
        let CharText { ids, vocab, .. } = read_chars(
            text.as_bytes(),
            "the text",
            text.len() as u64,
            None,
            &|| false,
        )
        .map_err(error)?
        .ok_or_else(|| bad("reading the text was stopped".into()))?;
        let data = LmData::new(ids, val_split, batch, seq_len, "the text").map_err(error)?;
        let cfg = ModelConfig::language_model(vocab.len(), embed, hidden)
            .layers(layers)
            .variant(variant)
            .dropout(dropout);
        cfg.validate().map_err(error)?;
        let (ctx, device) = device::choose(&o).await?;
        let params = ModelParams::init(cfg, options.seed).map_err(error)?;
        let trainer = device::trainer(ctx, params, options, (batch, seq_len))?;
        let now = now_ms();
        let facts = Facts {
            device,
            default_prompt: vocab.default_prompt(),
            vocabulary: vocab.len(),
            parameters: cfg.param_count() as u64,
            steps_per_epoch: data.steps_per_epoch(),
            characters: [data.train_ids().len(), data.val_ids().len()],
        };
        Ok(Trainer {
            inner: Rc::new(RefCell::new(Inner {
                trainer,
                rng: data_rng(options.seed),
                data,
                vocab,
                step: 0,
                since_eval: Vec::new(),
                window_ms: now,
                window_items: 0,
                started_ms: now,
            })),
            steps: Rc::new(Cell::new(0)),
            facts,
        })
    }

    /// Trains `n` steps; resolves to their training losses (a `Float64Array`).
    pub fn step(&self, n: f64) -> Promise {
        let (inner, steps) = (self.inner.clone(), self.steps.clone());
        future_to_promise(async move {
            let n = whole("the number of steps", n)?;
            let mut guard = exclusive(&inner, "trainer")?;
            let s = &mut *guard;
            let (b, len) = (s.data.batch(), s.data.seq_len());
            let mut losses = Vec::with_capacity(n);
            // The batches of a chunk of steps, drawn in `gru train`'s order, then trained
            // with one read-back of their losses per chunk (not one per step).
            let mut left = n;
            while left > 0 {
                let k = left.min(STEPS_PER_READ);
                let drawn = (0..k as u64)
                    .map(|i| s.data.train_batch(&mut s.rng, s.step + i, false))
                    .collect::<gru_engine::Result<Vec<_>>>()
                    .map_err(error)?;
                let batches: Vec<Batch> = drawn
                    .iter()
                    .map(|d| Batch::tokens(&d.inputs, b, len).classes(&d.targets))
                    .collect();
                let metrics = s.trainer.train_steps(&batches).await.map_err(error)?;
                for m in metrics {
                    s.step += 1;
                    steps.set(s.step);
                    s.window_items += (b * len) as u64;
                    if !m.loss.is_finite() {
                        return Err(error(GruError::State(format!(
                            "training diverged: the training loss is {} by step {}; lower lr, or clip gradients with clipNorm",
                            m.loss, s.step
                        ))));
                    }
                    losses.push(m.loss);
                    s.since_eval.push(m);
                }
                left -= k;
            }
            Ok(Float64Array::from(losses.as_slice()).into())
        })
    }

    /// Scores the held-out text and resolves to what `gru train --json` prints at this
    /// step: `{step, epoch, train_loss, train_accuracy, val_loss, val_accuracy,
    /// rate_per_s, elapsed_s}`, the training figures over the steps since the last
    /// evaluation. `json` holds the same as one line of JSON.
    pub fn evaluate(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = exclusive(&inner, "trainer")?;
            let s = &mut *guard;
            let batches = s.data.val_batches().map_err(error)?;
            let val = if batches.is_empty() {
                None
            } else {
                let len = s.data.seq_len();
                for v in &batches {
                    s.trainer
                        .trainer()
                        .evaluate(&Batch::tokens(&v.inputs, v.rows(len), len).classes(&v.targets))
                        .map_err(error)?;
                }
                Some(s.trainer.take_metrics(Split::Eval).await.map_err(error)?)
            };
            let (train_loss, train_acc) = mean(&s.since_eval);
            let now = now_ms();
            let rate = s.window_items as f64 / ((now - s.window_ms) / 1e3).max(1e-9);
            let line = serde_json::json!({
                "step": s.step,
                "epoch": s.step as f64 / s.data.steps_per_epoch() as f64,
                "train_loss": train_loss, "train_accuracy": train_acc,
                "val_loss": val.map(|m| m.loss), "val_accuracy": val.and_then(|m| m.accuracy),
                "rate_per_s": rate, "elapsed_s": (now - s.started_ms) / 1e3,
            });
            s.since_eval.clear();
            (s.window_ms, s.window_items) = (now, 0);
            Ok(object(&[
                ("step", (s.step as f64).into()),
                ("epoch", line["epoch"].as_f64().into()),
                ("train_loss", train_loss.into()),
                ("train_accuracy", maybe(train_acc)),
                ("val_loss", maybe(val.map(|m| m.loss))),
                ("val_accuracy", maybe(val.and_then(|m| m.accuracy))),
                ("rate_per_s", rate.into()),
                ("elapsed_s", ((now - s.started_ms) / 1e3).into()),
                ("json", line.to_string().into()),
            ]))
        })
    }

    /// The model as a checkpoint file's bytes (`Uint8Array`): what `gru train` writes,
    /// read natively by `gru generate` and `gru train --resume`.
    pub fn save(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = exclusive(&inner, "trainer")?;
            let s = &mut *guard;
            let mut c = Checkpoint::from_awaitable(&mut s.trainer)
                .await
                .map_err(error)?;
            c.vocab = Some(s.vocab.tokens().to_vec());
            c.rng_state = Some(s.rng.state());
            c.extra.insert("task".into(), "language-model".into());
            c.extra.insert("batch".into(), s.data.batch().to_string());
            c.extra
                .insert("seq_len".into(), s.data.seq_len().to_string());
            let bytes = c.to_bytes().map_err(error)?;
            Ok(Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Generates from the model as trained so far: [`Model::generate`]'s arguments.
    ///
    /// [`Model::generate`]: crate::Model::generate
    pub fn generate(&self, prompt: Option<String>, length: f64, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = exclusive(&inner, "trainer")?;
            let s = &mut *guard;
            let text = generate(&mut s.trainer, &s.vocab, prompt, length, &options).await?;
            Ok(text.into())
        })
    }

    /// The prompt `generate` starts from when given none.
    #[wasm_bindgen(getter, js_name = defaultPrompt)]
    pub fn default_prompt(&self) -> String {
        self.facts.default_prompt.clone()
    }

    /// Steps trained so far.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> f64 {
        self.steps.get() as f64
    }

    /// Steps of one pass over the training text.
    #[wasm_bindgen(getter, js_name = stepsPerEpoch)]
    pub fn steps_per_epoch(&self) -> f64 {
        self.facts.steps_per_epoch as f64
    }

    /// Characters in the vocabulary.
    #[wasm_bindgen(getter, js_name = vocabularySize)]
    pub fn vocabulary_size(&self) -> f64 {
        self.facts.vocabulary as f64
    }

    /// The model's parameter count.
    #[wasm_bindgen(getter)]
    pub fn parameters(&self) -> f64 {
        self.facts.parameters as f64
    }

    /// Characters trained on and held out: `[train, validation]`.
    #[wasm_bindgen(getter)]
    pub fn characters(&self) -> Vec<f64> {
        self.facts.characters.iter().map(|&c| c as f64).collect()
    }

    /// The adapter it trains on, or `"CPU reference"`.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.facts.device.clone()
    }
}

/// The optimiser of `o`, checked as `gru train` checks its flags.
fn train_options(o: &Options) -> Result<TrainOptions, JsValue> {
    let lr = o.f64("lr", 2e-3)? as f32;
    let clip = o.f64("clipNorm", 1.0)? as f32;
    if !(clip >= 0.0 && clip.is_finite()) {
        return Err(bad(format!(
            "clipNorm must be >= 0 (0 turns clipping off), found {clip}"
        )));
    }
    let mut t = match o.string("optimizer", "adam")?.as_str() {
        "adam" => TrainOptions::adam(lr),
        "adamw" => TrainOptions::adamw(lr),
        "sgd" => TrainOptions::sgd(lr, o.f64("momentum", 0.9)? as f32),
        v => {
            return Err(bad(format!(
                "optimizer must be \"adam\", \"adamw\" or \"sgd\", found {v:?}"
            )))
        }
    };
    t.weight_decay = o.f64("weightDecay", t.weight_decay as f64)? as f32;
    t.clip_norm = (clip > 0.0).then_some(clip);
    t.seed = o.count("seed", 42, 0)?;
    t.validate().map_err(error)?;
    Ok(t)
}

/// Mean loss and accuracy over `m`, weighted by their counts.
fn mean(m: &[Metrics]) -> (f64, Option<f64>) {
    let count: f64 = m.iter().map(|m| m.count).sum();
    if count == 0.0 {
        return (f64::NAN, None);
    }
    let loss = m.iter().map(|m| m.loss * m.count).sum::<f64>() / count;
    let acc = m.iter().all(|m| m.accuracy.is_some()).then(|| {
        m.iter()
            .map(|m| m.accuracy.unwrap_or(0.0) * m.count)
            .sum::<f64>()
            / count
    });
    (loss, acc)
}
