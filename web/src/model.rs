//! `Model`: a checkpoint written by `gru train`, `gru classify train` or
//! `gru forecast train`, loaded from bytes, generating, classifying or forecasting.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use gru_engine::checkpoint::Checkpoint;
use gru_engine::generate::Sampling;
use gru_engine::model::Batch;
use gru_engine::task::classify::best_class;
use gru_engine::task::rows;
use gru_engine::task::ModelData;
use gru_engine::train::{AwaitableTrainer, TrainOptions};
use gru_engine::GruError;
use js_sys::{Array, Float64Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::device;
use crate::js::{bad, describe, error, exclusive, object, Options};

/// A trained model in the page.
#[wasm_bindgen]
pub struct Model {
    trainer: Rc<RefCell<AwaitableTrainer>>,
    data: Rc<ModelData>,
    kind: &'static str,
    device: String,
}

#[wasm_bindgen]
impl Model {
    /// Loads a checkpoint's bytes (a `.safetensors` file `gru` wrote). `options.device`:
    /// `"auto"` (default), `"gpu"` or `"cpu"`; `options.name` names the file in errors.
    pub async fn load(bytes: Vec<u8>, options: JsValue) -> Result<Model, JsValue> {
        let options = Options::new(&options, "Model.load's options")?;
        let name = options.string("name", "the checkpoint")?;
        let path = Path::new(&name);
        let c = Checkpoint::from_bytes(&bytes, path).map_err(error)?;
        let data = ModelData::of(&c, path).map_err(error)?;
        let (ctx, device) = device::choose(&options).await?;
        let trainer = device::trainer(ctx, c.params, TrainOptions::default(), (1, 1))?;
        let kind = match data {
            ModelData::Language(_) => "language-model",
            ModelData::Classifier(..) => "classifier",
            ModelData::Forecaster(_) => "forecaster",
        };
        Ok(Model {
            trainer: Rc::new(RefCell::new(trainer)),
            data: Rc::new(data),
            kind,
            device,
        })
    }

    /// `"language-model"`, `"classifier"` or `"forecaster"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.into()
    }

    /// The adapter it runs on, or `"CPU reference"`.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// The prompt `generate` starts from when given none (a language model's newline, if
    /// it has one, else its first character; `""` for other kinds).
    #[wasm_bindgen(getter, js_name = defaultPrompt)]
    pub fn default_prompt(&self) -> String {
        match &*self.data {
            ModelData::Language(v) => v.default_prompt(),
            _ => String::new(),
        }
    }

    /// A language model's characters, a classifier's labels, a forecaster's columns.
    #[wasm_bindgen(getter)]
    pub fn vocabulary(&self) -> Array {
        let items: &[String] = match &*self.data {
            ModelData::Language(v) => v.tokens(),
            ModelData::Classifier(f, _) => &f.labels,
            ModelData::Forecaster(f) => &f.columns,
        };
        items.iter().map(|s| JsValue::from_str(s)).collect()
    }

    /// Generates `length` characters after `prompt` (a language model only); resolves to
    /// them, without the prompt. `options`: `temperature` (default 0.8; 0 is greedy, as
    /// in `gru generate`), `topK` (0: all), `seed` (0), `onToken` (called with each
    /// character as it arrives; returning `false` stops). `prompt` `undefined`: what
    /// `gru generate` starts from.
    pub fn generate(&self, prompt: Option<String>, length: f64, options: JsValue) -> Promise {
        let (cell, data) = (self.trainer.clone(), self.data.clone());
        future_to_promise(async move {
            let mut trainer = exclusive(&cell, "model")?;
            let ModelData::Language(vocab) = &*data else {
                return Err(wrong_kind(&data, "generate text"));
            };
            let text = generate(&mut trainer, vocab, prompt, length, &options).await?;
            Ok(text.into())
        })
    }

    /// Classifies `inputs` (a classifier only): texts for a text classifier, arrays of
    /// numbers (`features` per step) for a numeric one. Resolves to `[{label,
    /// probability}]`, one per input, as `gru classify predict` prints them.
    pub fn classify(&self, inputs: Array) -> Promise {
        let (cell, data) = (self.trainer.clone(), self.data.clone());
        future_to_promise(async move {
            let mut trainer = exclusive(&cell, "model")?;
            let trainer = &mut *trainer;
            let ModelData::Classifier(f, vocab) = &*data else {
                return Err(wrong_kind(&data, "classify"));
            };
            let mut ex = Vec::new();
            for (i, x) in inputs.iter().enumerate() {
                if f.numeric {
                    let v = numbers(&x).ok_or_else(|| {
                        bad(format!(
                            "input {i} must be an array of numbers, found {}",
                            describe(&x)
                        ))
                    })?;
                    if v.is_empty() || v.len() % f.features != 0 {
                        return Err(bad(format!(
                            "input {i} has {} values, not a positive multiple of the model's {} features",
                            v.len(),
                            f.features
                        )));
                    }
                    let len = (v.len() / f.features).min(f.max_len);
                    let values = v[..len * f.features].to_vec();
                    ex.push(example(Vec::new(), values, len));
                } else {
                    let text = x.as_string().ok_or_else(|| {
                        bad(format!(
                            "input {i} must be a string, found {}",
                            describe(&x)
                        ))
                    })?;
                    let ids = vocab.encode(&text, f.tokens, f.max_len);
                    if ids.is_empty() {
                        return Err(bad(format!("input {i} has an empty text")));
                    }
                    let len = ids.len();
                    ex.push(example(ids, Vec::new(), len));
                }
            }
            let out = Array::new();
            if ex.is_empty() {
                return Ok(out.into());
            }
            // Padded to the longest, batch-first, with the lengths, as the CLI batches.
            let t = ex.iter().map(|e| e.len).max().unwrap_or(1);
            let all: Vec<usize> = (0..ex.len()).collect();
            let (tok, val, len) = rows::batch_inputs(&ex, &all, t, f);
            let batch = rows::batch(f, &tok, &val, &len, t);
            let logits = trainer.predict(&batch).await.map_err(error)?;
            let outputs = logits.len() / ex.len();
            for row in logits.chunks(outputs.max(1)) {
                let (class, p) = best_class(row);
                out.push(&object(&[
                    ("label", f.labels[class].as_str().into()),
                    ("probability", p.into()),
                ]));
            }
            Ok(out.into())
        })
    }

    /// Forecasts from `rows` (a forecaster only): rows of the model's columns in its
    /// order (numbers for a one-column model), at least its window; resolves to the
    /// next `horizon` values of the target, on the data's scale.
    pub fn forecast(&self, rows: Array) -> Promise {
        let (cell, data) = (self.trainer.clone(), self.data.clone());
        future_to_promise(async move {
            let mut trainer = exclusive(&cell, "model")?;
            let trainer = &mut *trainer;
            let ModelData::Forecaster(f) = &*data else {
                return Err(wrong_kind(&data, "forecast"));
            };
            let cols = f.columns.len();
            let mut table = Vec::new();
            for (i, r) in rows.iter().enumerate() {
                let row = match r.as_f64() {
                    Some(v) if cols == 1 => vec![v as f32],
                    _ => numbers(&r).filter(|v| v.len() == cols).ok_or_else(|| {
                        bad(format!(
                            "row {i} must be {cols} number(s) ({}), found {}",
                            f.columns.join(", "),
                            describe(&r)
                        ))
                    })?,
                };
                if let Some(c) = row.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!(
                        "row {i}: `{}` is not a finite number",
                        f.columns[c]
                    )));
                }
                table.push(row);
            }
            if table.len() < f.window {
                return Err(error(GruError::Input(format!(
                    "{} rows, fewer than the model's window of {}",
                    table.len(),
                    f.window
                ))));
            }
            let x = f.last_window(&table);
            let pred = trainer
                .predict(&Batch::features(&x, 1, f.window))
                .await
                .map_err(error)?;
            let values: Vec<f64> = pred.iter().map(|&p| f.value(p)).collect();
            Ok(Float64Array::from(values.as_slice()).into())
        })
    }
}

/// The sampling of `options`, checked as `gru generate` checks it.
pub fn sampling(options: &Options) -> Result<Sampling, JsValue> {
    let s = Sampling::new(options.f64("temperature", 0.8)? as f32)
        .top_k(options.count("topK", 0, 0)? as usize)
        .seed(options.count("seed", 0, 0)?);
    s.validate().map_err(error)?;
    Ok(s)
}

/// Generates on `trainer` with [`Model::generate`]'s arguments (`options` checked as
/// `gru generate` checks its flags), handing each character to `onToken`; the
/// characters.
pub async fn generate(
    trainer: &mut AwaitableTrainer,
    vocab: &gru_engine::text::CharVocab,
    prompt: Option<String>,
    length: f64,
    options: &JsValue,
) -> Result<String, JsValue> {
    let options = Options::new(options, "generate's options")?;
    let sampling = sampling(&options)?;
    let on_token = options.function("onToken")?;
    let length = whole("length", length)?;
    let prompt = prompt.unwrap_or_else(|| vocab.default_prompt());
    let ids = vocab.encode(&prompt).map_err(error)?;
    let mut text = String::new();
    let mut failed = None;
    trainer
        .generate_stream(&ids, length, &sampling, &mut |t| {
            let c = vocab.token(t);
            text.push_str(c);
            match &on_token {
                None => true,
                Some(f) => match f.call1(&JsValue::NULL, &c.into()) {
                    Ok(v) => v.as_bool() != Some(false),
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
            }
        })
        .await
        .map_err(error)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(text),
    }
}

/// `v` as a count.
pub fn whole(what: &str, v: f64) -> Result<usize, JsValue> {
    if v.fract() != 0.0 || !(0.0..=2f64.powi(53)).contains(&v) {
        return Err(bad(format!(
            "{what} must be a whole number >= 0, found {v}"
        )));
    }
    Ok(v as usize)
}

fn wrong_kind(data: &ModelData, call: &str) -> JsValue {
    error(GruError::Config(format!(
        "this checkpoint is a {}, which cannot {call}",
        data.kind()
    )))
}

/// An array of numbers (a JS array or typed array), if `v` is one.
fn numbers(v: &JsValue) -> Option<Vec<f32>> {
    if js_sys::Array::is_array(v) {
        Array::from(v)
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect()
    } else {
        v.dyn_ref::<Float64Array>()
            .map(|a| a.to_vec().into_iter().map(|f| f as f32).collect())
            .or_else(|| v.dyn_ref::<js_sys::Float32Array>().map(|a| a.to_vec()))
    }
}

/// An unlabelled example for the library's batching.
fn example(tokens: Vec<u32>, values: Vec<f32>, len: usize) -> rows::Example {
    rows::Example {
        label: None,
        tokens,
        values,
        len,
    }
}
