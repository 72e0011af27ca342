//! `gru train` and `gru generate`: a character language model.

use crate::cli::out::outln;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use gru_engine::checkpoint::{Checkpoint, CheckpointDir};
use gru_engine::generate::Sampling;
use gru_engine::model::{Batch, ModelConfig, ModelInput};
use gru_engine::rng::Rng;
use gru_engine::train::{Split, Trainer};
use gru_engine::{GruError, Result};

use crate::cli::args::{
    at_least_one, check_resume, load_checkpoint, model_path, resumed_value, save_run, total_steps,
    OptimArgs, PrecisionArg, RunArgs, StackArgs,
};
use crate::cli::corpus;
use crate::cli::device::DeviceArgs;
use crate::cli::ranks::{fingerprint, fingerprint_bytes, run_items, Ranks};
use crate::cli::report::{OutputArgs, Reporter};
use crate::cli::signals::{catch_interrupt, interrupted, interrupted_exit};
use crate::cli::train_loop::{self, Outcome, Schedule, Task};
use gru_engine::task::check_val_split;
use gru_engine::task::lm::{data_rng, LmData};
use gru_engine::text::{read_chars, CharText, CharVocab};

/// The language model's steps: the batches and validation of [`LmData`].
struct LmTask<'a> {
    data: &'a LmData,
    stateful: bool,
    vocab: &'a [String],
}

impl Task for LmTask<'_> {
    fn steps_per_epoch(&self) -> u64 {
        self.data.steps_per_epoch()
    }
    fn start_epoch(&mut self, _: &mut Rng) -> Result<()> {
        Ok(())
    }
    fn train_step(&mut self, t: &mut dyn Trainer, rng: &mut Rng, step: u64, _: u64) -> Result<u64> {
        let (b, len) = (self.data.batch(), self.data.seq_len());
        let batch = self.data.train_batch(rng, step, self.stateful)?;
        if batch.reset_state {
            t.set_carried_state(None)?;
        }
        t.train_step(&Batch::tokens(&batch.inputs, b, len).classes(&batch.targets))?;
        Ok((b * len) as u64)
    }
    fn validate(&mut self, t: &mut dyn Trainer) -> Result<Option<(f64, Option<f64>)>> {
        evaluate(t, self.data)
    }
    fn save(
        &self,
        t: &mut dyn Trainer,
        dir: &mut CheckpointDir,
        rng: &Rng,
        loss: Option<f64>,
        _: u64,
    ) -> Result<()> {
        // The batch and the sequence length, which a resumed run keeps.
        let extra = [
            ("batch", self.data.batch().to_string()),
            ("seq_len", self.data.seq_len().to_string()),
        ];
        save_run(
            t,
            dir,
            rng,
            loss,
            Some(self.vocab),
            "language-model",
            &extra,
        )
        .map(|_| ())
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru train                                   # the default model on the built-in corpus
  gru train --text shakespeare.txt --hidden 256 --steps 5000 --checkpoint-dir runs/shakespeare
  gru train --checkpoint-dir runs/shakespeare --text shakespeare.txt --resume --steps 8000
  gru train --stateful --batch 16 --dropout 0.1 --device cpu")]
pub struct TrainArgs {
    /// UTF-8 text file to learn (default: the built-in corpus: gru-engine's own source
    /// code, shaders and README).
    #[arg(long, short)]
    pub text: Option<PathBuf>,
    /// Embedding size.
    #[arg(long, short = 'E', default_value_t = 32)]
    pub embed: usize,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Characters per training sequence (T).
    #[arg(long, short = 'T', default_value_t = 64)]
    pub seq_len: usize,
    /// Sequences per batch (B).
    #[arg(long, short = 'B', default_value_t = 32)]
    pub batch: usize,
    /// Total training steps (batches), counting those before a resume.
    #[arg(long, short = 'n', default_value_t = 1200, conflicts_with = "epochs")]
    pub steps: u64,
    /// Train for this many passes over the text instead of --steps.
    #[arg(long)]
    pub epochs: Option<u64>,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Fraction of the text (its end) held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_split: f64,
    /// Evaluate, log and checkpoint every this many steps.
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    /// Keras stateful=True: consecutive batches continue B parallel streams of the text,
    /// each starting from the state the previous batch ended in.
    #[arg(long)]
    pub stateful: bool,
    /// Folder for last.safetensors, best.safetensors, metrics.csv and loss.svg.
    #[command(flatten)]
    pub run: RunArgs,
    /// Characters of sample text printed at the end.
    #[arg(long, default_value_t = 300)]
    pub sample_length: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Streams `prompt` and then the tokens `trainer` generates to standard output, each
/// flushed as it arrives, until `n` tokens, a write error (a closed pipe included: the
/// caller ends quietly) or Ctrl-C when `interruptible`.
fn stream_text(
    trainer: &mut dyn Trainer,
    vocab: &CharVocab,
    prompt: &str,
    n: usize,
    sampling: &Sampling,
    interruptible: bool,
) -> Result<()> {
    let ids = vocab.encode(prompt)?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let put = |text: &str, out: &mut std::io::StdoutLock| {
        let r = write!(out, "{text}").and_then(|()| out.flush());
        r.map_err(crate::cli::out::error)
    };
    put(prompt, &mut out)?;
    trainer.generate_stream(
        &ids,
        n,
        sampling,
        &mut |t| match put(vocab.token(t), &mut out) {
            Ok(()) => !(interruptible && interrupted()),
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    put("\n", &mut out)
}

/// Mean loss and accuracy over the validation batches of `data`.
fn evaluate(t: &mut dyn Trainer, data: &LmData) -> Result<Option<(f64, Option<f64>)>> {
    let batches = data.val_batches()?;
    if batches.is_empty() {
        return Ok(None);
    }
    let len = data.seq_len();
    for v in &batches {
        t.evaluate(&Batch::tokens(&v.inputs, v.rows(len), len).classes(&v.targets))?;
    }
    let m = t.take_metrics(Split::Eval)?;
    Ok(Some((m.loss, m.accuracy)))
}

/// `gru train`, alone or as one rank of a data-parallel job.
pub fn train(a: TrainArgs) -> Result<u8> {
    let ranks = Ranks::detect()?;
    ranks.finish(train_ranked(a, &ranks))
}

// Long by choice: the phases of a run (flags, text, vocabulary, model, folder, report,
// sample) in order, sharing their locals; the loop itself is `train_loop::run`.
fn train_ranked(mut a: TrainArgs, ranks: &Ranks) -> Result<u8> {
    // Before any output: a Ctrl-C from the first line on stops at a step boundary.
    catch_interrupt();
    // Every flag is checked before anything is read, built or written.
    at_least_one("--batch", a.batch)?;
    at_least_one("--seq-len", a.seq_len)?;
    a.device.local_rank = ranks.local_rank();
    a.device.precision = a.run.precision()?;
    at_least_one("--embed", a.embed)?;
    at_least_one("--layers", a.stack.layers)?;
    at_least_one("--eval-every", a.eval_every as usize)?;
    a.output.log_every()?;
    let hidden = at_least_one("--hidden", a.stack.hidden.unwrap_or(128))?;
    check_val_split(a.val_split)?;
    let flag_opts = a.optim.options()?.stateful(a.stateful);
    let plan = a.run.plan("lm", ranks.leader())?;
    let quiet = a.output.quiet || a.output.json || !ranks.leader();
    let resumed = plan.resume_checkpoint()?;
    if let Some((c, _)) = &resumed {
        resume_flags(&mut a, c)?;
    }
    let (b, len) = (a.batch, a.seq_len);
    let b_rank = ranks.local_batch(b)?;
    let fixed = match &resumed {
        Some((c, file)) => Some(CharVocab::from_checkpoint(c, &file.display().to_string())?),
        None => None,
    };
    // One streaming pass: the vocabulary and the ids, 4 bytes a character.
    let reading = std::time::Instant::now();
    let (loaded, source) = read_text(a.text.as_deref(), fixed.as_ref())?;
    let load_seconds = reading.elapsed().as_secs_f64();
    let Some(CharText { ids, vocab, head }) = loaded else {
        eprintln!("interrupted while reading {source}: nothing was trained or saved");
        return Ok(interrupted_exit());
    };
    let data = LmData::new(ids, a.val_split, b, len, &source)?;
    let (ids, n_val) = (data.ids(), data.val_ids().len());
    let (cfg, opts) = match &resumed {
        Some((c, _)) => (c.params.config, c.options.unwrap_or(flag_opts)),
        None => (
            a.stack
                .apply(ModelConfig::language_model(vocab.len(), a.embed, hidden)),
            flag_opts,
        ),
    };
    let trainer = a.device.train_from(
        &cfg,
        resumed.as_ref().map(|(c, _)| c),
        a.optim.seed,
        opts,
        quiet,
        (b_rank, len),
    )?;
    let mut trainer = ranks.wrap(trainer);
    let mut step = 0;
    let mut rng = data_rng(a.optim.seed);
    if let Some((c, _)) = &resumed {
        step = c.optimizer.as_ref().map_or(0, |o| o.step);
        rng = Rng::new(c.rng_state.unwrap_or(rng.state()));
    }
    let cfg = *trainer.config();
    let per_epoch = data.steps_per_epoch();
    let total = match a.epochs {
        Some(e) => total_steps(e, per_epoch)?,
        None => a.steps,
    };
    if resumed.is_some() && step >= total {
        if ranks.leader() {
            eprintln!(
                "nothing to do: the checkpoint is at step {step}, and this run ends at step {total}; give --steps above {step} to train further"
            );
        }
        return Ok(0);
    }
    // Every rank trains the same model on the same data for the same steps, or none does.
    ranks.agree(|| {
        let what = format!("{step}..{total}");
        run_items(&cfg, &opts, &agreed(&a, &data, &vocab, what))
    })?;
    // Everything is built: only now is the run folder created (or claimed) and locked.
    let mut run = ranks.leader().then(|| plan.start()).transpose()?;
    let run_path = run.as_ref().map(|r| r.path.clone());
    if !quiet {
        eprintln!(
            "training on {source} (read in {load_seconds:.1} s): {} characters ({} for validation), vocabulary {}, {} parameters, {} on {}",
            ids.len(),
            n_val,
            vocab.len(),
            gru_engine::model::group_digits(cfg.param_count()),
            if step > 0 { format!("steps {step}..{total}") } else { format!("{total} steps") },
            trainer.device_name()
        );
    }
    let out = ranks.output(&a.output);
    let rep = Reporter::new(&out, total, step, "tokens", run_path.as_deref())?;
    let mut task = LmTask {
        data: &data,
        stateful: opts.stateful,
        vocab: vocab.tokens(),
    };
    let schedule = Schedule::new(step, total, a.eval_every, a.output.log_every()?);
    let (last_loss, last_acc, last_val) = match train_loop::run(
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
        } => (train_loss, train_acc, val.map(|v| v.0)),
    };
    // Rank 0 reports, and samples from the model every rank holds.
    let Some(run) = run else { return Ok(0) };
    let last = (last_loss, last_acc, last_val);
    report_and_sample(
        &a,
        &rep,
        &run.dir,
        trainer.as_mut(),
        &vocab,
        &head,
        (total, last),
    )
}

/// What every rank of a data-parallel run must agree on besides the model and the
/// optimiser: the text, its vocabulary, the steps and the data flags.
fn agreed(
    a: &TrainArgs,
    data: &LmData,
    vocab: &CharVocab,
    steps: String,
) -> Vec<(&'static str, String)> {
    let ids = data.ids();
    vec![
        (
            "text",
            format!(
                "{} characters, fingerprint {}",
                ids.len(),
                fingerprint_bytes(bytemuck::cast_slice(ids))
            ),
        ),
        (
            "vocabulary",
            format!(
                "{} characters, fingerprint {}",
                vocab.len(),
                fingerprint(&vocab.tokens())
            ),
        ),
        ("steps", steps),
        ("--batch", data.batch().to_string()),
        ("--seq-len", data.seq_len().to_string()),
        ("--val-split", a.val_split.to_string()),
        ("--eval-every", a.eval_every.to_string()),
        ("--seed", a.optim.seed.to_string()),
    ]
}

/// On --resume the checkpoint decides the model, the optimiser, the batch and the
/// sequence length: a flag given with another value is an error, one left at its
/// default takes the saved value.
fn resume_flags(a: &mut TrainArgs, c: &Checkpoint) -> Result<()> {
    let cfg = &c.params.config;
    let mut items = a.stack.resume_items(cfg);
    if let ModelInput::Tokens { embed_dim, .. } = cfg.input {
        items.push(("embed", a.embed.to_string(), embed_dim.to_string()));
    }
    if let Some(o) = &c.options {
        items.extend(a.optim.resume_items(o));
        items.push(("stateful", a.stateful.to_string(), o.stateful.to_string()));
    }
    for (id, mine) in [("batch", a.batch), ("seq_len", a.seq_len)] {
        if let Some(saved) = c.extra.get(id) {
            items.push((id, mine.to_string(), saved.clone()));
        }
    }
    check_resume(&items)?;
    a.batch = resumed_value("batch", a.batch, c.extra.get("batch"));
    a.seq_len = resumed_value("seq_len", a.seq_len, c.extra.get("seq_len"));
    Ok(())
}

/// The text of `--text` (or the built-in corpus) as ids and vocabulary (`fixed`: a
/// resumed model's), and its name; `None` when Ctrl-C stopped the reading.
fn read_text(text: Option<&Path>, fixed: Option<&CharVocab>) -> Result<(Option<CharText>, String)> {
    Ok(match text {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|source| GruError::Io {
                path: p.display().to_string(),
                source,
            })?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let name = p.display().to_string();
            (read_chars(f, &name, size, fixed, &interrupted)?, name)
        }
        None => {
            let text = corpus::text();
            let size = text.len() as u64;
            (
                read_chars(
                    text.as_bytes(),
                    corpus::DESCRIPTION,
                    size,
                    fixed,
                    &interrupted,
                )?,
                corpus::DESCRIPTION.to_string(),
            )
        }
    })
}

/// The closing lines of `gru train`: the last figures, where the run is, and a sample
/// from `head` (the text's start) unless --json or --sample-length 0.
fn report_and_sample(
    a: &TrainArgs,
    rep: &Reporter,
    dir: &CheckpointDir,
    trainer: &mut dyn Trainer,
    vocab: &CharVocab,
    head: &str,
    (total, (last_loss, last_acc, last_val)): (u64, (f64, Option<f64>, Option<f64>)),
) -> Result<u8> {
    let step = total;
    let val = last_val.map_or(String::new(), |v| format!(", validation loss {v:.4}"));
    let acc = last_acc.map_or(String::new(), |v| format!(", accuracy {v:.3}"));
    outln!(
        "step {step}: training loss {last_loss:.4}{acc}{val} ({:.0} s)",
        rep.start.elapsed().as_secs_f64()
    )?;
    rep.print_paths(dir)?;
    if a.sample_length > 0 && !a.output.json {
        let prompt = head;
        outln!("sample (temperature 0.8, prompt {prompt:?}):")?;
        // Ctrl-C (or SIGTERM) ends the sample; the run is saved already.
        stream_text(
            trainer,
            vocab,
            prompt,
            a.sample_length,
            &Sampling::new(0.8).seed(a.optim.seed),
            true,
        )?;
    }
    Ok(0)
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru generate --checkpoint runs/lm --prompt 'fn main' --length 500
  gru generate -c runs/lm/last.safetensors --temperature 0 --prompt 'pub struct'
  gru generate -c runs/lm --top-k 5 --seed 7")]
pub struct GenerateArgs {
    /// Checkpoint file, or a folder (its best.safetensors, else last.safetensors).
    /// Checkpoint file or folder (its best, else last; default: the newest run under
    /// runs/lm*).
    #[arg(long, short = 'c')]
    pub checkpoint: Option<PathBuf>,
    /// Text to start from (its characters must be in the model's vocabulary); default:
    /// a newline if the vocabulary has one, else its first character.
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// Characters to generate.
    #[arg(long, short = 'n', default_value_t = 500)]
    pub length: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, short, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Sample only among the k most likely characters (0: all).
    #[arg(long, short = 'k', default_value_t = 0)]
    pub top_k: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What the device computes in: f32, or f16 (f16 weights and states, f32 sums and
    /// logits; mixed means the same here). Needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// No device line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn generate(a: GenerateArgs) -> Result<u8> {
    let (c, file) = load_checkpoint(&model_path(a.checkpoint.as_deref(), "lm", "gru train")?)?;
    let vocab = CharVocab::from_checkpoint(&c, &file.display().to_string())?;
    let prompt = a.prompt.clone().unwrap_or_else(|| vocab.default_prompt());
    let ids = vocab.encode(&prompt)?;
    let sampling = Sampling::new(a.temperature).top_k(a.top_k).seed(a.seed);
    sampling.validate()?;
    let cfg = c.params.config;
    let mut t = a.device.inferring(a.precision.inference()).build(
        &cfg,
        || Ok(c.params),
        Default::default(),
        a.quiet,
        (1, ids.len().max(1)),
    )?;
    stream_text(t.as_mut(), &vocab, &prompt, a.length, &sampling, false)?;
    Ok(0)
}
