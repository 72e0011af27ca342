//! `gru classify train|eval|predict`: sequence classification from CSV, `label,text`
//! (characters or whitespace tokens) or `label,v1,v2,...` (a numeric sequence of
//! `--features` values per step).

use crate::cli::out::{out, outln};
use gru_engine::task::classify::{ClassifierFormat as Format, TokenVocab, Tokenization};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::Trainer;
use gru_engine::{GruError, Result};
use serde::{Deserialize, Serialize};

use crate::cli::args::{
    at_least_one, check_resume, epochs_to_run, load_checkpoint, model_path, resumed_value,
    save_run, OptimArgs, PrecisionArg, RunArgs, StackArgs,
};
use crate::cli::device::DeviceArgs;
use crate::cli::ranks::{fingerprint, run_items, Ranks};
use crate::cli::report::{OutputArgs, Reporter};
use crate::cli::signals::{catch_interrupt, interrupted_exit};
use crate::cli::train_loop::{self, Outcome, Schedule, Task};
use gru_engine::checkpoint::{Checkpoint, CheckpointDir};
use gru_engine::csvdata::records;
use gru_engine::task::check_val_split;
use gru_engine::task::rows::{
    all_numeric, batch, batch_inputs, class_ids, eval_set, examples, held_out_rows, predict_set,
    summarize_labels, targets, training_header, Example, Rows,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum InputKind {
    /// Numeric if every row after the label is numbers, else text.
    Auto,
    Text,
    Numeric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tokens {
    /// One token per character.
    Chars,
    /// One token per whitespace-separated word.
    Words,
}

impl Tokens {
    fn to_lib(self) -> Tokenization {
        match self {
            Tokens::Chars => Tokenization::Chars,
            Tokens::Words => Tokenization::Words,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Header {
    /// A first row that does not look like data (see --help) is a header.
    Auto,
    Yes,
    No,
}

/// Whether the CSV's first row is a header.
#[derive(Args, Clone, Debug)]
pub struct HeaderArgs {
    /// First row is a header: auto detects one (training: its label occurs nowhere
    /// else while every other label occurs at least 5 times; eval: its label is not one
    /// the model knows while every other row's is; numeric rows: its values are not
    /// numbers while every other row's are).
    #[arg(long, value_enum, default_value_t = Header::Auto)]
    pub header: Header,
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
    /// Text input: keep at most this many tokens in the vocabulary, `<unk>` included
    /// (the most frequent first, ties by first occurrence; Keras' `max_tokens`).
    #[arg(long)]
    pub max_vocab: Option<usize>,
    /// Text input: keep only tokens seen at least this many times (others read as `<unk>`).
    #[arg(long, default_value_t = 1)]
    pub min_count: usize,
    #[command(flatten)]
    pub header: HeaderArgs,
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
    #[command(flatten)]
    pub header: HeaderArgs,
    #[arg(long, short = 'B', default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What the device computes in: f32, or f16 (f16 weight copies and activations,
    /// f32 logits; mixed means the same here). Needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
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
    #[command(flatten)]
    pub header: HeaderArgs,
    #[arg(long, short = 'B', default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What the device computes in: f32, or f16 (f16 weight copies and activations,
    /// f32 logits; mixed means the same here). Needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[arg(long, short)]
    pub quiet: bool,
}

/// Applies `--header` to `rows`: `looks_like_header` is the auto rule for this use.
/// Says which was chosen (unless quiet) when a header was taken.
fn apply_header(
    path: &Path,
    mut rows: Vec<Vec<String>>,
    h: Header,
    looks_like_header: impl FnOnce(&[Vec<String>]) -> bool,
    quiet: bool,
) -> Rows {
    let header = match h {
        Header::Yes => true,
        Header::No => false,
        Header::Auto => looks_like_header(&rows),
    };
    if !header || rows.is_empty() {
        return Rows { rows, first_row: 1 };
    }
    let first = rows.remove(0);
    if !quiet {
        let shown: String = first.join(",").chars().take(60).collect();
        eprintln!(
            "{}: first row `{shown}` taken as a header ({}; --header no keeps it as data)",
            path.display(),
            if h == Header::Auto {
                "detected"
            } else {
                "--header yes"
            }
        );
    }
    Rows { rows, first_row: 2 }
}

pub fn run(cmd: ClassifyCommand) -> Result<u8> {
    match cmd {
        ClassifyCommand::Train(a) => train(a),
        ClassifyCommand::Eval(a) => eval(a),
        ClassifyCommand::Predict(a) => predict(a),
    }
}

/// The classifier's batches: the training rows in a new shuffled order every epoch.
struct ClassifyTask<'a> {
    train_ex: &'a [Example],
    train_ids: &'a [u32],
    val_ex: &'a [Example],
    val_ids: &'a [u32],
    f: &'a Format,
    b: usize,
    tmax: usize,
    cfg: ModelConfig,
    order: Vec<usize>,
    format_json: String,
    vocab: Option<&'a [String]>,
}

impl Task for ClassifyTask<'_> {
    fn steps_per_epoch(&self) -> u64 {
        self.train_ex.len().div_ceil(self.b) as u64
    }
    fn start_epoch(&mut self, rng: &mut Rng) -> Result<()> {
        self.order = (0..self.train_ex.len()).collect();
        rng.shuffle(&mut self.order);
        Ok(())
    }
    fn train_step(&mut self, t: &mut dyn Trainer, _: &mut Rng, _: u64, k: u64) -> Result<u64> {
        let k = k as usize;
        let chunk = &self.order[k * self.b..((k + 1) * self.b).min(self.order.len())];
        let (tok, val, len) = batch_inputs(self.train_ex, chunk, self.tmax, self.f);
        let y: Vec<u32> = chunk.iter().map(|&i| self.train_ids[i]).collect();
        let (c, v) = targets(&self.cfg, &y);
        let bt = batch(self.f, &tok, &val, &len, self.tmax);
        t.train_step(&if c.is_empty() {
            bt.values(&v)
        } else {
            bt.classes(&c)
        })?;
        Ok(chunk.len() as u64)
    }
    fn validate(&mut self, t: &mut dyn Trainer) -> Result<Option<(f64, Option<f64>)>> {
        if self.val_ex.is_empty() {
            return Ok(None);
        }
        let (loss, acc) = eval_set(t, self.val_ex, self.val_ids, self.f, self.b)?;
        Ok(Some((loss, Some(acc))))
    }
    fn save(
        &self,
        t: &mut dyn Trainer,
        dir: &mut CheckpointDir,
        rng: &Rng,
        loss: Option<f64>,
        epochs: u64,
    ) -> Result<()> {
        let extra = [
            ("classify", self.format_json.clone()),
            ("epoch", epochs.to_string()),
            ("batch", self.b.to_string()),
        ];
        save_run(t, dir, rng, loss, self.vocab, "classify", &extra).map(|_| ())
    }
}

/// A new run's row format and vocabulary (from the training rows only).
fn new_format(a: &TrainArgs, rows: &Rows, held_out: &[usize]) -> Result<(Format, TokenVocab)> {
    let numeric = match a.input {
        InputKind::Numeric => true,
        InputKind::Text => false,
        InputKind::Auto => rows.rows.iter().all(|r| all_numeric(r.iter().skip(1))),
    };
    let mut labels: Vec<String> = rows.rows.iter().map(|r| r[0].clone()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return Err(GruError::Input(format!(
            "{}: needs at least 2 different labels, found {}",
            a.data.display(),
            labels.len()
        )));
    }
    let vocab = if numeric {
        TokenVocab::default()
    } else {
        let mut skip = held_out.iter().peekable();
        let train_rows: Vec<&Vec<String>> = rows
            .rows
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                if skip.peek() == Some(&i) {
                    skip.next();
                    false
                } else {
                    true
                }
            })
            .map(|(_, r)| r)
            .collect();
        TokenVocab::build(
            train_rows.iter().map(|r| r[1..].join(",")),
            a.tokens.to_lib(),
            a.max_len,
            a.max_vocab,
            a.min_count,
        )
    };
    let f = Format {
        numeric,
        tokens: a.tokens.to_lib(),
        features: a.features,
        max_len: a.max_len,
        labels,
        max_vocab: a.max_vocab,
        min_count: Some(a.min_count),
    };
    Ok((f, vocab))
}

/// Training rows and labels, split from the validation ones: `held_out` rows of the
/// training file, or all of the `--val` file.
#[allow(clippy::type_complexity)]
fn split_sets(
    a: &TrainArgs,
    f: &Format,
    vocab: &TokenVocab,
    mut train_ex: Vec<Example>,
    mut train_ids: Vec<u32>,
    held_out: &[usize],
    quiet: bool,
) -> Result<(Vec<Example>, Vec<u32>, Vec<Example>, Vec<u32>)> {
    let (val_ex, val_ids) = match &a.val {
        Some(p) => {
            let known: std::collections::HashSet<&str> =
                f.labels.iter().map(String::as_str).collect();
            let vrows = apply_header(
                p,
                records(p)?,
                a.header.header,
                |r| eval_header(r, &known, f.numeric),
                quiet,
            );
            let ex = examples(p, &vrows, true, f, vocab)?;
            let ids = class_ids(p, &vrows, &ex, &f.labels)?;
            (ex, ids)
        }
        None => {
            // One pass (removing rows one by one is quadratic in a large file).
            let mut is_val = vec![false; train_ex.len()];
            for &i in held_out {
                is_val[i] = true;
            }
            let (mut ex, mut ids, mut keep_ex, mut keep_ids) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((e, y), v) in train_ex.drain(..).zip(train_ids.drain(..)).zip(is_val) {
                if v {
                    ex.push(e);
                    ids.push(y);
                } else {
                    keep_ex.push(e);
                    keep_ids.push(y);
                }
            }
            (train_ex, train_ids) = (keep_ex, keep_ids);
            (ex, ids)
        }
    };
    Ok((train_ex, train_ids, val_ex, val_ids))
}

/// On --resume the checkpoint decides the model, the optimiser and the batch: a flag
/// given with another value is an error, one left at its default takes the saved value.
fn resume_flags(a: &mut TrainArgs, c: &Checkpoint, f: &Format) -> Result<()> {
    let cfg = &c.params.config;
    let mut items = a.stack.resume_items(cfg);
    if let ModelInput::Tokens { embed_dim, .. } = cfg.input {
        items.push(("embed", a.embed.to_string(), embed_dim.to_string()));
    }
    items.push((
        "bidirectional",
        a.bidirectional.to_string(),
        cfg.bidirectional.to_string(),
    ));
    items.push(("features", a.features.to_string(), f.features.to_string()));
    items.push(("max_len", a.max_len.to_string(), f.max_len.to_string()));
    if let Some(o) = &c.options {
        items.extend(a.optim.resume_items(o));
    }
    if let Some(saved) = c.extra.get("batch") {
        items.push(("batch", a.batch.to_string(), saved.clone()));
    }
    check_resume(&items)?;
    a.batch = resumed_value("batch", a.batch, c.extra.get("batch"));
    Ok(())
}

/// A new run's model: its input from the row format, a head of one output per label (or
/// one, with --binary).
fn new_model(
    a: &TrainArgs,
    f: &Format,
    vocab: usize,
    (embed, hidden): (usize, usize),
) -> Result<ModelConfig> {
    let input = if f.numeric {
        ModelInput::Features(f.features)
    } else {
        ModelInput::Tokens {
            vocab,
            embed_dim: embed,
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
    Ok(a.stack
        .apply(ModelConfig::classifier(input, hidden, classes))
        .bidirectional(a.bidirectional))
}

/// What every rank of a data-parallel run must agree on besides the model and the
/// optimiser: the labels, the format, the vocabulary, the training and validation rows
/// (`sets`), the steps and the data flags.
fn agreed(
    a: &TrainArgs,
    f: &Format,
    vocab_list: &[String],
    sets: [(&[Example], &[u32]); 2],
    steps: String,
) -> Vec<(&'static str, String)> {
    vec![
        ("labels", format!("{:?}", f.labels)),
        ("data format", fingerprint(&f)),
        (
            "vocabulary",
            format!(
                "{} tokens, fingerprint {}",
                vocab_list.len(),
                fingerprint(&vocab_list)
            ),
        ),
        (
            "training rows",
            format!("{}, fingerprint {}", sets[0].0.len(), fingerprint(&sets[0])),
        ),
        (
            "validation rows",
            format!("{}, fingerprint {}", sets[1].0.len(), fingerprint(&sets[1])),
        ),
        ("steps", steps),
        ("--batch", a.batch.to_string()),
        ("--seed", a.optim.seed.to_string()),
    ]
}

/// The first line of a run: its rows, labels, input and parameters.
fn describe_run(
    a: &TrainArgs,
    f: &Format,
    vocab: usize,
    [n_train, n_val]: [usize; 2],
    params: usize,
) -> String {
    let rows_line = match &a.val {
        Some(p) => format!(
            "{n_train} training rows, {n_val} validation rows (from {})",
            p.display()
        ),
        None => format!(
            "{n_train} training rows, {n_val} validation rows (held out, --val-split {})",
            a.val_split
        ),
    };
    let input = if f.numeric {
        format!("numeric ({} per step)", f.features)
    } else {
        let unit = match f.tokens {
            Tokenization::Chars => "character",
            Tokenization::Words => "word",
        };
        format!("text in {unit} tokens (vocabulary {vocab})")
    };
    format!(
        "classifying {rows_line} into {} labels ({}) from {input}; {} parameters",
        f.labels.len(),
        summarize_labels(&f.labels),
        gru_engine::model::group_digits(params),
    )
}

/// A run's examples, split.
struct Sets {
    train_ex: Vec<Example>,
    train_ids: Vec<u32>,
    val_ex: Vec<Example>,
    val_ids: Vec<u32>,
}

/// The training file's rows (after the header decision) with their format and
/// vocabulary (`saved`: a resumed run's, else new from the training rows), as training
/// and validation examples with their class ids.
fn read_sets(
    a: &TrainArgs,
    saved: Option<(Format, TokenVocab)>,
    quiet: bool,
) -> Result<(Format, TokenVocab, Sets)> {
    let rows = apply_header(
        &a.data,
        records(&a.data)?,
        a.header.header,
        training_header,
        quiet,
    );
    if rows.rows.is_empty() {
        return Err(GruError::Input(format!(
            "{}: no data rows after the header",
            a.data.display()
        )));
    }
    // Rows held out for validation when there is no --val file: spread over the file
    // (not its tail, which may be one class).
    let held_out: Vec<usize> = if a.val.is_some() {
        Vec::new()
    } else {
        held_out_rows(rows.rows.len(), a.val_split, a.optim.seed)
    };
    let (f, vocab) = match saved {
        Some(saved) => saved,
        None => new_format(a, &rows, &held_out)?,
    };
    let train_ex = examples(&a.data, &rows, true, &f, &vocab)?;
    let train_ids = class_ids(&a.data, &rows, &train_ex, &f.labels)?;
    let (train_ex, train_ids, val_ex, val_ids) =
        split_sets(a, &f, &vocab, train_ex, train_ids, &held_out, quiet)?;
    if train_ex.is_empty() {
        return Err(GruError::Input(format!(
            "{}: no training rows left after holding out validation",
            a.data.display()
        )));
    }
    Ok((
        f,
        vocab,
        Sets {
            train_ex,
            train_ids,
            val_ex,
            val_ids,
        },
    ))
}

/// `gru classify train`, alone or as one rank of a data-parallel job.
fn train(a: TrainArgs) -> Result<u8> {
    let ranks = Ranks::detect()?;
    ranks.finish(train_ranked(a, &ranks))
}

// Long by choice: the phases of a run (flags, data, format, model, folder, report) in
// order, sharing their locals; the loop itself is `train_loop::run`.
fn train_ranked(mut a: TrainArgs, ranks: &Ranks) -> Result<u8> {
    // Before any output: a Ctrl-C from the first line on stops at a step boundary.
    catch_interrupt();
    // Every flag is checked before anything is read, built or written.
    at_least_one("--batch", a.batch)?;
    a.device.local_rank = ranks.local_rank();
    a.device.precision = a.run.precision()?;
    at_least_one("--features", a.features)?;
    at_least_one("--max-len", a.max_len)?;
    at_least_one("--epochs", a.epochs as usize)?;
    a.output.log_every()?;
    at_least_one("--min-count", a.min_count)?;
    let embed = at_least_one("--embed", a.embed)?;
    let hidden = at_least_one("--hidden", a.stack.hidden.unwrap_or(64))?;
    if let Some(n) = a.max_vocab {
        if n < 2 {
            return Err(GruError::Config(format!(
                "--max-vocab must be at least 2 (<unk> and one token), found {n}"
            )));
        }
    }
    check_val_split(a.val_split)?;
    let flag_opts = a.optim.options()?;
    let quiet = a.output.quiet || a.output.json || !ranks.leader();
    let plan = a.run.plan("classify", ranks.leader())?;
    let resumed = plan.resume_checkpoint()?;
    // A resumed run's format and vocabulary, read and checked once.
    let saved = (resumed.as_ref())
        .map(|(c, file)| Format::from_checkpoint(c, file))
        .transpose()?;
    if let (Some((c, _)), Some((f, _))) = (&resumed, &saved) {
        resume_flags(&mut a, c, f)?;
    }
    let b = a.batch;
    let b_rank = ranks.local_batch(b)?;
    let (f, vocab, sets) = read_sets(&a, saved, quiet)?;
    let vocab_list = vocab.tokens();
    let Sets {
        train_ex,
        train_ids,
        val_ex,
        val_ids,
    } = sets;
    let (cfg, opts) = match &resumed {
        Some((c, _)) => (c.params.config, c.options.unwrap_or(flag_opts)),
        None => (
            new_model(&a, &f, vocab_list.len(), (embed, hidden))?,
            flag_opts,
        ),
    };
    let tmax = train_ex.iter().map(|e| e.len).max().unwrap_or(1);
    let Some((epoch, per_epoch, total)) = epochs_to_run(
        resumed.as_ref().map(|(c, _)| c),
        a.epochs,
        train_ex.len().div_ceil(b) as u64,
        ranks.leader(),
    )?
    else {
        return Ok(0);
    };
    // Every rank trains the same model on the same data for the same steps, or none does.
    ranks.agree(|| {
        let steps = format!("{}..{total}", epoch * per_epoch);
        let sets = [(&train_ex[..], &train_ids[..]), (&val_ex[..], &val_ids[..])];
        run_items(&cfg, &opts, &agreed(&a, &f, vocab_list, sets, steps))
    })?;
    ranks.check_last_batch(train_ex.len(), b, "rows")?;
    let trainer = a.device.train_from(
        &cfg,
        resumed.as_ref().map(|(c, _)| c),
        a.optim.seed,
        opts,
        quiet,
        (b_rank, tmax),
    )?;
    let mut trainer = ranks.wrap(trainer);
    let mut rng = Rng::new(a.optim.seed);
    if let Some((c, _)) = &resumed {
        rng = Rng::new(c.rng_state.unwrap_or(rng.state()));
    }
    // Everything is built: only now is the run folder created (or claimed) and locked.
    let mut run = ranks.leader().then(|| plan.start()).transpose()?;
    if !quiet {
        let (rows, params) = ([train_ex.len(), val_ex.len()], cfg.param_count());
        let what = describe_run(&a, &f, vocab_list.len(), rows, params);
        eprintln!("{what}, on {}", trainer.device_name());
    }
    let rep = Reporter::new(
        &ranks.output(&a.output),
        total,
        epoch * per_epoch,
        "sequences",
        run.as_ref().map(|r| r.path.as_path()),
    )?;
    let format_json = serde_json::to_string(&f).map_err(|e| GruError::State(e.to_string()))?;
    let mut task = ClassifyTask {
        train_ex: &train_ex,
        train_ids: &train_ids,
        val_ex: &val_ex,
        val_ids: &val_ids,
        f: &f,
        b,
        tmax,
        cfg,
        order: Vec::new(),
        format_json,
        vocab: (!f.numeric).then_some(vocab_list),
    };
    // One evaluation per epoch.
    let schedule = Schedule::new(epoch * per_epoch, total, per_epoch, a.output.log_every()?);
    let last = match train_loop::run(
        &mut task,
        trainer.as_mut(),
        &mut rng,
        run.as_mut().map(|r| &mut r.dir),
        &rep,
        schedule,
        ranks,
    )? {
        Outcome::Interrupted => return Ok(interrupted_exit()),
        Outcome::Done {
            train_loss,
            train_acc,
            val,
        } => (
            train_loss,
            train_acc.unwrap_or(0.0),
            val.map(|(l, acc)| (l, acc.unwrap_or(0.0))),
        ),
    };
    let Some(run) = run else { return Ok(0) };
    let epoch = a.epochs;
    let val = last.2.map_or(String::new(), |(l, acc)| {
        format!("; validation loss {l:.4}, accuracy {acc:.4}")
    });
    outln!(
        "epoch {epoch}: training loss {:.4}, accuracy {:.4}{val}",
        last.0,
        last.1
    )?;
    rep.print_paths(&run.dir)?;
    Ok(0)
}

/// Eval rule: the first row's label is not one the model knows while every other row's
/// is; or, for numeric rows, only the first row is not numbers.
fn eval_header(
    rows: &[Vec<String>],
    known: &std::collections::HashSet<&str>,
    numeric: bool,
) -> bool {
    if rows.len() < 2 {
        return false;
    }
    let rest = &rows[1..];
    if numeric {
        return !all_numeric(rows[0].iter().skip(1))
            && rest.iter().all(|r| all_numeric(r.iter().skip(1)));
    }
    !known.contains(rows[0][0].as_str()) && rest.iter().all(|r| known.contains(r[0].as_str()))
}

/// A trained classifier for eval and predict: its parameters, row format, vocabulary,
/// and which checkpoint it came from. The device is opened only after the data has been
/// read, so bad input fails first.
struct Trained {
    params: ModelParams,
    format: Format,
    vocab: TokenVocab,
    from: String,
}

fn load_trained(checkpoint: Option<&Path>) -> Result<Trained> {
    let (c, file) = load_checkpoint(&model_path(checkpoint, "classify", "gru classify train")?)?;
    let (format, vocab) = Format::from_checkpoint(&c, &file)?;
    let kind = match file.file_name().and_then(|n| n.to_str()) {
        Some("best.safetensors") => "best",
        Some("last.safetensors") => "last",
        _ => "file",
    };
    let mut at = Vec::new();
    if let Some(e) = c.extra.get("epoch") {
        at.push(format!("epoch {e}"));
    }
    if let Some(o) = &c.optimizer {
        at.push(format!("step {}", o.step));
    }
    let from = format!(
        "{} ({kind}{}{})",
        file.display(),
        if at.is_empty() { "" } else { ", " },
        at.join(", ")
    );
    Ok(Trained {
        params: c.params,
        format,
        vocab,
        from,
    })
}

/// A trainer for eval or predict over `ex` in batches of up to `b` rows, checked to fit
/// (see `DeviceArgs::build`) for the longest row, computing in `precision`.
fn inference_trainer(
    (device, precision): (&DeviceArgs, PrecisionArg),
    params: ModelParams,
    quiet: bool,
    b: usize,
    ex: &[Example],
) -> Result<Box<dyn Trainer>> {
    let tmax = ex.iter().map(|e| e.len).max().unwrap_or(1);
    let cfg = params.config;
    device.inferring(precision.inference()).build(
        &cfg,
        || Ok(params),
        Default::default(),
        quiet,
        (b.min(ex.len().max(1)), tmax),
    )
}

/// Most classes shown as a confusion matrix; past it, per-class figures.
const MATRIX_CLASSES: usize = 20;

fn eval(a: EvalArgs) -> Result<u8> {
    let b = at_least_one("--batch", a.batch)?;
    let Trained {
        params,
        format: f,
        vocab,
        from,
    } = load_trained(a.checkpoint.as_deref())?;
    let known: std::collections::HashSet<&str> = f.labels.iter().map(String::as_str).collect();
    let rows = apply_header(
        &a.data,
        records(&a.data)?,
        a.header.header,
        |r| eval_header(r, &known, f.numeric),
        a.quiet,
    );
    let ex = examples(&a.data, &rows, true, &f, &vocab)?;
    let ids = class_ids(&a.data, &rows, &ex, &f.labels)?;
    let mut t = inference_trainer((&a.device, a.precision), params, a.quiet, b, &ex)?;
    let (loss, acc) = eval_set(t.as_mut(), &ex, &ids, &f, b)?;
    let pred = predict_set(t.as_mut(), &ex, &f, b)?;
    let n = f.labels.len();
    outln!("checkpoint: {from}")?;
    outln!("{} rows: loss {loss:.4}, accuracy {acc:.4}", ex.len())?;
    if n <= MATRIX_CLASSES {
        let mut m = vec![vec![0usize; n]; n];
        for (&y, &(p, _)) in ids.iter().zip(&pred) {
            m[y as usize][p] += 1;
        }
        outln!("confusion matrix (rows: true label, columns: predicted):")?;
        let w = f.labels.iter().map(|l| l.len()).max().unwrap_or(1).max(6);
        out!("{:>w$}", "")?;
        for l in &f.labels {
            out!(" {l:>w$}")?;
        }
        outln!()?;
        for (l, row) in f.labels.iter().zip(&m) {
            out!("{l:>w$}")?;
            for v in row {
                out!(" {v:>w$}")?;
            }
            outln!()?;
        }
    } else {
        // Linear in the classes: true, predicted and correct counts per class.
        let (mut truth, mut predicted, mut correct) =
            (vec![0usize; n], vec![0usize; n], vec![0usize; n]);
        for (&y, &(p, _)) in ids.iter().zip(&pred) {
            truth[y as usize] += 1;
            predicted[p] += 1;
            if y as usize == p {
                correct[p] += 1;
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|&c| truth[c] > 0).collect();
        order.sort_by(|&x, &y| truth[y].cmp(&truth[x]).then(x.cmp(&y)));
        outln!(
            "{n} classes (a confusion matrix is printed for at most {MATRIX_CLASSES}); the {} most frequent in this data:",
            order.len().min(MATRIX_CLASSES)
        )?;
        outln!(
            "{:>24} {:>8} {:>9} {:>7}",
            "label",
            "rows",
            "precision",
            "recall"
        )?;
        for &c in order.iter().take(MATRIX_CLASSES) {
            let precision = if predicted[c] > 0 {
                format!("{:.4}", correct[c] as f64 / predicted[c] as f64)
            } else {
                "-".into()
            };
            let label: String = f.labels[c].chars().take(24).collect();
            outln!(
                "{label:>24} {:>8} {precision:>9} {:>7.4}",
                truth[c],
                correct[c] as f64 / truth[c] as f64
            )?;
        }
    }
    Ok(0)
}

fn predict(a: PredictArgs) -> Result<u8> {
    let b = at_least_one("--batch", a.batch)?;
    let Trained {
        params,
        format: f,
        vocab,
        ..
    } = load_trained(a.checkpoint.as_deref())?;
    let rows = apply_header(
        &a.input,
        records(&a.input)?,
        a.header.header,
        |r| {
            f.numeric
                && r.len() >= 2
                && !all_numeric(r[0].iter())
                && r[1..].iter().all(|x| all_numeric(x.iter()))
        },
        a.quiet,
    );
    let ex = examples(&a.input, &rows, false, &f, &vocab)?;
    let mut t = inference_trainer((&a.device, a.precision), params, a.quiet, b, &ex)?;
    outln!("row,label,probability")?;
    for (i, (p, prob)) in predict_set(t.as_mut(), &ex, &f, b)?.into_iter().enumerate() {
        outln!("{},{},{prob:.4}", i + 1, f.labels[p])?;
    }
    Ok(0)
}
