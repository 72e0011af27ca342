//! `gru classify train|eval|predict`: sequence classification from CSV, `label,text`
//! (characters or whitespace tokens) or `label,v1,v2,...` (a numeric sequence of
//! `--features` values per step).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use gru_engine::checkpoint::Checkpoint;
use gru_engine::model::{Batch, Loss, ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{Split, Trainer};
use gru_engine::{GruError, Result};
use serde::{Deserialize, Serialize};

use crate::cli::args::{
    at_least_one, load_checkpoint, model_path, save_run, OptimArgs, RunArgs, StackArgs,
};
use crate::cli::csvdata::{all_numeric, number, records};
use crate::cli::device::DeviceArgs;
use crate::cli::lm::INTERRUPTED_EXIT;
use crate::cli::report::{catch_interrupt, interrupted, OutputArgs, Reporter, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum InputKind {
    /// Numeric if every row after the label is numbers, else text.
    Auto,
    Text,
    Numeric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Tokens {
    /// One token per character.
    Chars,
    /// One token per whitespace-separated word.
    Words,
}

#[derive(Subcommand, Debug)]
pub enum ClassifyCommand {
    /// Train a classifier on a labelled CSV file.
    #[command(after_help = "Examples:
  gru example-data classify-text --out data/reviews.csv
  gru classify train --data data/reviews.csv --tokens words --epochs 5
  gru example-data classify-numeric --out data/ramps.csv
  gru classify train --data data/ramps.csv --features 3 --hidden 32 --max-norm 3 -c runs/ramps")]
    Train(TrainArgs),
    /// Loss, accuracy and confusion matrix of a checkpoint on a labelled CSV file.
    #[command(
        after_help = "Example:\n  gru classify eval --checkpoint runs/classify --data data/test.csv"
    )]
    Eval(EvalArgs),
    /// Predicted label and probability for each row of a CSV file without labels.
    #[command(
        after_help = "Example:\n  gru classify predict --checkpoint runs/classify --input data/new.csv"
    )]
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training data: `label,text` or `label,v1,v2,...` rows.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation data (same format); default: --val-split of the training rows.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Fraction of the training rows held out when there is no --val file.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// How to read the rows after the label.
    #[arg(long, value_enum, default_value_t = InputKind::Auto)]
    pub input: InputKind,
    /// Text tokens.
    #[arg(long, value_enum, default_value_t = Tokens::Chars)]
    pub tokens: Tokens,
    /// Numeric input: values per timestep (a row of n values is n / features steps).
    #[arg(long, default_value_t = 1)]
    pub features: usize,
    /// Longest sequence kept; longer ones are cut.
    #[arg(long, default_value_t = 200)]
    pub max_len: usize,
    /// Embedding size (text input).
    #[arg(long, short = 'E', default_value_t = 32)]
    pub embed: usize,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Bidirectional GRU layers (the head then sees both directions' final states).
    #[arg(long)]
    pub bidirectional: bool,
    /// With exactly two labels: one logit and binary cross-entropy instead of softmax.
    #[arg(long)]
    pub binary: bool,
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    #[arg(long, short = 'B', default_value_t = 32)]
    pub batch: usize,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint file or folder (its best, else last; default: the newest run under
    /// runs/classify*).
    #[arg(long, short = 'c')]
    pub checkpoint: Option<PathBuf>,
    /// Labelled rows, as for training.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, short = 'B', default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Checkpoint file or folder (its best, else last; default: the newest run under
    /// runs/classify*).
    #[arg(long, short = 'c')]
    pub checkpoint: Option<PathBuf>,
    /// Rows without a label: text, or numbers.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, short = 'B', default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long, short)]
    pub quiet: bool,
}

/// How a checkpoint reads its rows; stored in its metadata as `classify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Format {
    numeric: bool,
    tokens: Tokens,
    features: usize,
    max_len: usize,
    labels: Vec<String>,
}

/// One row: its label (if any) and its sequence (token ids or `[T·features]` values).
struct Example {
    label: Option<String>,
    tokens: Vec<u32>,
    values: Vec<f32>,
    len: usize,
}

fn split_text(text: &str, tokens: Tokens) -> Vec<String> {
    match tokens {
        Tokens::Chars => text.chars().map(String::from).collect(),
        Tokens::Words => text.split_whitespace().map(String::from).collect(),
    }
}

/// Parses rows; `labelled`: the first field is the label. `vocab` maps tokens to ids
/// (0 is the unknown/padding token).
fn examples(
    path: &Path,
    labelled: bool,
    f: &Format,
    vocab: &HashMap<String, u32>,
) -> Result<Vec<Example>> {
    let first = usize::from(labelled);
    let mut out = Vec::new();
    for (i, rec) in records(path)?.into_iter().enumerate() {
        let row = i + 1;
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
            e.tokens = split_text(&text, f.tokens)
                .iter()
                .map(|t| vocab.get(t).copied().unwrap_or(0))
                .collect();
            if e.tokens.is_empty() {
                return Err(GruError::Input(format!(
                    "{}: row {row} has an empty text",
                    path.display()
                )));
            }
            e.len = e.tokens.len().min(f.max_len);
            e.tokens.truncate(e.len);
        }
        out.push(e);
    }
    Ok(out)
}

/// Class ids of labelled examples, refusing labels the model was not trained on.
fn class_ids(path: &Path, ex: &[Example], labels: &[String]) -> Result<Vec<u32>> {
    ex.iter()
        .enumerate()
        .map(|(i, e)| {
            let l = e.label.as_deref().unwrap_or_default();
            labels
                .iter()
                .position(|x| x == l)
                .map(|p| p as u32)
                .ok_or_else(|| {
                    GruError::Input(format!(
                        "{}: row {}: label `{l}` was not in the training data (known: {})",
                        path.display(),
                        i + 1,
                        labels.join(", ")
                    ))
                })
        })
        .collect()
}

/// Inputs of rows `idx`, padded to `t` steps, batch-first, with their lengths.
fn batch_inputs(
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
fn batch<'a>(f: &Format, tok: &'a [u32], val: &'a [f32], len: &'a [usize], t: usize) -> Batch<'a> {
    let b = len.len();
    let x = if f.numeric {
        Batch::features(val, b, t)
    } else {
        Batch::tokens(tok, b, t)
    };
    x.lengths(len)
}

/// Targets of a batch in the form the loss wants.
fn targets(cfg: &ModelConfig, ids: &[u32]) -> (Vec<u32>, Vec<f32>) {
    match cfg.loss {
        Loss::BinaryCrossEntropy => (Vec::new(), ids.iter().map(|&c| c as f32).collect()),
        _ => (ids.to_vec(), Vec::new()),
    }
}

/// Runs `ex` through evaluate (with labels) in batches; returns (loss, accuracy).
fn eval_set(
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
fn predict_set(
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
        for row in logits.chunks(cfg.outputs) {
            out.push(if cfg.outputs == 1 {
                let p = 1.0 / (1.0 + (-row[0] as f64).exp());
                if p > 0.5 {
                    (1, p)
                } else {
                    (0, 1.0 - p)
                }
            } else {
                let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
                let (arg, _) =
                    row.iter()
                        .enumerate()
                        .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
                (arg, (row[arg] as f64 - mx).exp() / z)
            });
        }
    }
    Ok(out)
}

fn format_of(c: &Checkpoint, path: &Path) -> Result<(Format, HashMap<String, u32>)> {
    let bad = |reason: String| GruError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let f: Format = serde_json::from_str(
        c.extra
            .get("classify")
            .ok_or_else(|| bad("not a classifier checkpoint (no `classify` metadata)".into()))?,
    )
    .map_err(|e| bad(format!("classify metadata: {e}")))?;
    let vocab = c
        .vocab
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    Ok((f, vocab))
}

pub fn run(cmd: ClassifyCommand) -> Result<u8> {
    match cmd {
        ClassifyCommand::Train(a) => train(a),
        ClassifyCommand::Eval(a) => eval(a),
        ClassifyCommand::Predict(a) => predict(a),
    }
}

fn train(a: TrainArgs) -> Result<u8> {
    let b = at_least_one("--batch", a.batch)?;
    at_least_one("--features", a.features)?;
    at_least_one("--max-len", a.max_len)?;
    at_least_one("--epochs", a.epochs as usize)?;
    let (run_path, mut dir) = a.run.open("classify")?;
    let quiet = a.output.quiet || a.output.json;
    let resumed = if a.run.resume {
        Some(Checkpoint::load(&dir.last_path())?)
    } else {
        None
    };
    let (f, vocab_list) = match &resumed {
        Some(c) => {
            let (f, _) = format_of(c, &dir.last_path())?;
            (f, c.vocab.clone().unwrap_or_default())
        }
        None => {
            let rows = records(&a.data)?;
            let numeric = match a.input {
                InputKind::Numeric => true,
                InputKind::Text => false,
                InputKind::Auto => rows.iter().all(|r| all_numeric(r.iter().skip(1))),
            };
            let mut labels: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
            labels.sort();
            labels.dedup();
            if labels.len() < 2 {
                return Err(GruError::Input(format!(
                    "{}: needs at least 2 different labels, found {}",
                    a.data.display(),
                    labels.len()
                )));
            }
            let mut vocab = vec!["<unk>".to_string()];
            if !numeric {
                let mut toks: Vec<String> = rows
                    .iter()
                    .flat_map(|r| split_text(&r[1..].join(","), a.tokens))
                    .collect();
                toks.sort();
                toks.dedup();
                vocab.extend(toks);
            }
            let f = Format {
                numeric,
                tokens: a.tokens,
                features: a.features,
                max_len: a.max_len,
                labels,
            };
            (f, if numeric { Vec::new() } else { vocab })
        }
    };
    let vocab: HashMap<String, u32> = vocab_list
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut train_ex = examples(&a.data, true, &f, &vocab)?;
    let mut train_ids = class_ids(&a.data, &train_ex, &f.labels)?;
    let (val_ex, val_ids) = match &a.val {
        Some(p) => {
            let ex = examples(p, true, &f, &vocab)?;
            let ids = class_ids(p, &ex, &f.labels)?;
            (ex, ids)
        }
        None => {
            // Hold out rows spread over the file (not its tail, which may be one class).
            let k = (train_ex.len() as f64 * a.val_split) as usize;
            let mut rng = Rng::new(a.optim.seed ^ 0xfeed);
            let mut order: Vec<usize> = (0..train_ex.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let mut take: Vec<usize> = order[..k].to_vec();
            take.sort_unstable_by(|x, y| y.cmp(x));
            let (mut ex, mut ids) = (Vec::new(), Vec::new());
            for i in take {
                ex.push(train_ex.remove(i));
                ids.push(train_ids.remove(i));
            }
            (ex, ids)
        }
    };
    if train_ex.is_empty() {
        return Err(GruError::Input(format!(
            "{}: no training rows left after holding out validation",
            a.data.display()
        )));
    }
    let (params, opts) = match &resumed {
        Some(c) => (
            c.params.clone(),
            c.options.unwrap_or_else(|| a.optim.options()),
        ),
        None => {
            let hidden = at_least_one("--hidden", a.stack.hidden.unwrap_or(64))?;
            let input = if f.numeric {
                ModelInput::Features(f.features)
            } else {
                ModelInput::Tokens {
                    vocab: vocab_list.len(),
                    embed_dim: at_least_one("--embed", a.embed)?,
                }
            };
            let binary = a.binary && f.labels.len() == 2;
            if a.binary && !binary {
                return Err(GruError::Config(format!(
                    "--binary needs exactly 2 labels, found {}",
                    f.labels.len()
                )));
            }
            let classes = if binary { 1 } else { f.labels.len() };
            let cfg = a
                .stack
                .apply(ModelConfig::classifier(input, hidden, classes))
                .bidirectional(a.bidirectional);
            (ModelParams::init(cfg, a.optim.seed)?, a.optim.options())
        }
    };
    let mut trainer = a.device.trainer(&params, opts, quiet)?;
    let mut epoch = 0;
    let mut rng = Rng::new(a.optim.seed);
    if let Some(c) = &resumed {
        c.restore(trainer.as_mut())?;
        epoch = c
            .extra
            .get("epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        rng = Rng::new(c.rng_state.unwrap_or(rng.state()));
    }
    let cfg = *trainer.config();
    if !quiet {
        eprintln!(
            "classifying {} rows ({} for validation) into {} labels ({}) from {}; {} parameters, on {}",
            train_ex.len() + val_ex.len(),
            val_ex.len(),
            f.labels.len(),
            f.labels.join(", "),
            if f.numeric { format!("numeric ({} per step)", f.features) } else { format!("text in {} tokens (vocabulary {})", match f.tokens { Tokens::Chars => "character", Tokens::Words => "word" }, vocab_list.len()) },
            gru_engine::model::group_digits(cfg.param_count()),
            trainer.device_name()
        );
    }
    let tmax = train_ex.iter().map(|e| e.len).max().unwrap_or(1);
    let per_epoch = train_ex.len().div_ceil(b) as u64;
    catch_interrupt();
    let rep = Reporter::new(
        &a.output,
        a.epochs * per_epoch,
        epoch * per_epoch,
        "sequences",
        Some(&run_path),
    )?;
    let format_json = serde_json::to_string(&f).map_err(|e| GruError::State(e.to_string()))?;
    let vocab_saved = (!f.numeric).then_some(vocab_list.as_slice());
    let save = |t: &mut dyn Trainer,
                dir: &mut gru_engine::checkpoint::CheckpointDir,
                rng: &Rng,
                loss: f64,
                epoch: u64| {
        let extra = [
            ("classify", format_json.clone()),
            ("epoch", epoch.to_string()),
        ];
        save_run(t, dir, rng, loss, vocab_saved, "classify", &extra)
    };
    let mut last = (f64::NAN, 0.0, None);
    while epoch < a.epochs {
        let start = std::time::Instant::now();
        let mut order: Vec<usize> = (0..train_ex.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        for (k, chunk) in order.chunks(b).enumerate() {
            if interrupted() {
                rep.finish();
                save(trainer.as_mut(), &mut dir, &rng, last.0, epoch)?;
                eprintln!(
                    "interrupted in epoch {}: checkpoint saved to {}; continue with --resume",
                    epoch + 1,
                    dir.last_path().display()
                );
                return Ok(INTERRUPTED_EXIT);
            }
            let (tok, val, len) = batch_inputs(&train_ex, chunk, tmax, &f);
            let y: Vec<u32> = chunk.iter().map(|&i| train_ids[i]).collect();
            let (c, v) = targets(&cfg, &y);
            let bt = batch(&f, &tok, &val, &len, tmax);
            trainer.train_step(&if c.is_empty() {
                bt.values(&v)
            } else {
                bt.classes(&c)
            })?;
            if k % 10 == 9 {
                let seen = ((k + 1) * b).min(train_ex.len()) as f64;
                let acc = (!last.0.is_nan()).then_some(last.1);
                rep.progress(
                    epoch * per_epoch + k as u64 + 1,
                    last.0,
                    acc,
                    seen / start.elapsed().as_secs_f64(),
                );
            }
        }
        epoch += 1;
        let m = trainer.take_metrics(Split::Train)?;
        let val = if val_ex.is_empty() {
            None
        } else {
            Some(eval_set(trainer.as_mut(), &val_ex, &val_ids, &f, b)?)
        };
        let rate = train_ex.len() as f64 / start.elapsed().as_secs_f64();
        last = (m.loss, m.accuracy.unwrap_or(0.0), val);
        rep.progress(epoch * per_epoch, m.loss, m.accuracy, rate);
        rep.row(&Row {
            step: epoch * per_epoch,
            epoch: epoch as f64,
            train_loss: m.loss,
            train_acc: m.accuracy,
            val_loss: val.map(|v| v.0),
            val_acc: val.map(|v| v.1),
            rate,
            elapsed: rep.start.elapsed().as_secs_f64(),
        })?;
        save(
            trainer.as_mut(),
            &mut dir,
            &rng,
            val.map_or(m.loss, |v| v.0),
            epoch,
        )?;
    }
    rep.finish();
    let val = last.2.map_or(String::new(), |(l, acc)| {
        format!("; validation loss {l:.4}, accuracy {acc:.3}")
    });
    println!(
        "epoch {epoch}: training loss {:.4}, accuracy {:.3}{val}",
        last.0, last.1
    );
    rep.print_paths(&dir);
    Ok(0)
}

/// A trained classifier for eval and predict: its parameters, row format and vocabulary.
/// The device is opened only after the data has been read, so bad input fails first.
struct Trained {
    params: ModelParams,
    format: Format,
    vocab: HashMap<String, u32>,
}

fn load_trained(checkpoint: Option<&Path>) -> Result<Trained> {
    let (c, file) = load_checkpoint(&model_path(checkpoint, "classify", "gru classify train")?)?;
    let (format, vocab) = format_of(&c, &file)?;
    Ok(Trained {
        params: c.params,
        format,
        vocab,
    })
}

fn eval(a: EvalArgs) -> Result<u8> {
    let b = at_least_one("--batch", a.batch)?;
    let Trained {
        params,
        format: f,
        vocab,
    } = load_trained(a.checkpoint.as_deref())?;
    let ex = examples(&a.data, true, &f, &vocab)?;
    let ids = class_ids(&a.data, &ex, &f.labels)?;
    let mut t = a.device.trainer(&params, Default::default(), a.quiet)?;
    let (loss, acc) = eval_set(t.as_mut(), &ex, &ids, &f, b)?;
    let pred = predict_set(t.as_mut(), &ex, &f, b)?;
    let n = f.labels.len();
    let mut m = vec![vec![0usize; n]; n];
    for (&y, &(p, _)) in ids.iter().zip(&pred) {
        m[y as usize][p] += 1;
    }
    println!("{} rows: loss {loss:.4}, accuracy {acc:.3}", ex.len());
    println!("confusion matrix (rows: true label, columns: predicted):");
    let w = f.labels.iter().map(|l| l.len()).max().unwrap_or(1).max(6);
    print!("{:>w$}", "");
    for l in &f.labels {
        print!(" {l:>w$}");
    }
    println!();
    for (l, row) in f.labels.iter().zip(&m) {
        print!("{l:>w$}");
        for v in row {
            print!(" {v:>w$}");
        }
        println!();
    }
    Ok(0)
}

fn predict(a: PredictArgs) -> Result<u8> {
    let b = at_least_one("--batch", a.batch)?;
    let Trained {
        params,
        format: f,
        vocab,
    } = load_trained(a.checkpoint.as_deref())?;
    let ex = examples(&a.input, false, &f, &vocab)?;
    let mut t = a.device.trainer(&params, Default::default(), a.quiet)?;
    println!("row,label,probability");
    for (i, (p, prob)) in predict_set(t.as_mut(), &ex, &f, b)?.into_iter().enumerate() {
        println!("{},{},{prob:.4}", i + 1, f.labels[p]);
    }
    Ok(0)
}
