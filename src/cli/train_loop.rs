//! The one training loop of `gru train`, `gru classify train` and `gru forecast train`:
//! epochs or steps, the data order, progress, the running training loss every
//! `--log-every` steps, evaluation, metrics, checkpoints and Ctrl-C. Each command
//! supplies a [`Task`]: how a batch is made, how validation is scored, what a checkpoint
//! carries.

use std::time::Instant;

use gru_engine::checkpoint::CheckpointDir;
use gru_engine::dist::check_in_sync;
use gru_engine::rng::Rng;
use gru_engine::train::{Split, Trainer};
use gru_engine::{GruError, Result};

use crate::cli::ranks::Ranks;
use crate::cli::report::{Reporter, Row};
use crate::cli::signals::interrupted;

/// What a command trains on.
pub trait Task {
    /// Steps of one pass over the training data.
    fn steps_per_epoch(&self) -> u64;
    /// Called as each epoch starts (epoch-based tasks shuffle their order here).
    fn start_epoch(&mut self, rng: &mut Rng) -> Result<()>;
    /// One step on batch `k` of the epoch (`step` counts from the run's start);
    /// returns how many items (tokens, sequences, windows) it trained on.
    fn train_step(&mut self, t: &mut dyn Trainer, rng: &mut Rng, step: u64, k: u64) -> Result<u64>;
    /// Validation loss and accuracy, if the task holds data out.
    fn validate(&mut self, t: &mut dyn Trainer) -> Result<Option<(f64, Option<f64>)>>;
    /// Writes a checkpoint with the task's metadata after `epochs` whole epochs;
    /// `loss` chooses `best` (None: `last` only).
    fn save(
        &self,
        t: &mut dyn Trainer,
        dir: &mut CheckpointDir,
        rng: &Rng,
        loss: Option<f64>,
        epochs: u64,
    ) -> Result<()>;
}

/// Which steps run: [start, total), evaluating every `eval_every` and at the end,
/// logging the training loss every `log_every`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: u64,
    pub total: u64,
    pub eval_every: u64,
    pub log_every: u64,
}

impl Schedule {
    /// `log_every` from the flag, else about 50 points over the run.
    pub fn new(start: u64, total: u64, eval_every: u64, log_every: Option<u64>) -> Self {
        Schedule {
            start,
            total,
            eval_every: eval_every.max(1),
            log_every: log_every.unwrap_or(total / 50).max(1),
        }
    }
}

/// How a run ended.
pub enum Outcome {
    /// All steps ran: the last evaluation's training and validation figures.
    Done {
        train_loss: f64,
        train_acc: Option<f64>,
        val: Option<(f64, Option<f64>)>,
    },
    /// Ctrl-C or SIGTERM: a checkpoint was saved; exit with 128 + the signal.
    Interrupted,
}

/// The error that ends a run whose training loss stopped being finite: nothing more is
/// trained or saved, so the folder keeps its last checkpoint with finite parameters.
fn diverged(step: u64, loss: f64, dir: Option<&CheckpointDir>, saved: bool) -> GruError {
    let kept = match dir {
        Some(d) if saved && d.last_path().exists() => format!(
            "the last finite checkpoint, {}, is kept",
            d.last_path().display()
        ),
        Some(_) => "no checkpoint was saved before it".to_string(),
        None => "rank 0 keeps the last finite checkpoint".to_string(),
    };
    GruError::State(format!(
        "training diverged: the training loss is {loss} by step {step}; {kept}; lower --lr, or clip gradients with --clip-norm"
    ))
}

/// Loss and accuracy summed over the batches read back since the last reset.
#[derive(Default)]
struct Running {
    loss: f64,
    correct: f64,
    count: f64,
    accuracy: bool,
}

impl Running {
    fn add(&mut self, m: &gru_engine::train::Metrics) {
        self.loss += m.loss * m.count;
        if let Some(a) = m.accuracy {
            self.correct += a * m.count;
            self.accuracy = true;
        }
        self.count += m.count;
    }
    fn mean(&self) -> (f64, Option<f64>) {
        if self.count == 0.0 {
            return (f64::NAN, None);
        }
        let acc = self.accuracy.then(|| self.correct / self.count);
        (self.loss / self.count, acc)
    }
}

/// Runs `task` on `trainer` for the steps of `s`. In data-parallel training every rank
/// runs this loop over the same data order; only rank 0 has a checkpoint folder (`dir`),
/// the ranks stop together on Ctrl-C, and each evaluation first checks that they still
/// hold the same parameters.
pub fn run(
    task: &mut dyn Task,
    trainer: &mut dyn Trainer,
    rng: &mut Rng,
    mut dir: Option<&mut CheckpointDir>,
    rep: &Reporter,
    s: Schedule,
    ranks: &Ranks,
) -> Result<Outcome> {
    let per = task.steps_per_epoch().max(1);
    let mut step = s.start;
    let (mut since_eval, mut since_log) = (Running::default(), Running::default());
    let (mut window, mut items) = (Instant::now(), 0u64);
    let mut last = (f64::NAN, None, None);
    // Whether the folder holds a checkpoint of this run (a resumed run's counts).
    let mut saved = s.start > 0;
    while step < s.total {
        if ranks.any(interrupted())? {
            rep.finish();
            // Not evaluated: saved as `last` only, never as `best`.
            if let Some(dir) = dir.as_deref_mut() {
                task.save(trainer, dir, rng, None, step / per)?;
                eprintln!(
                    "interrupted at step {step}: checkpoint saved to {}; continue with --resume",
                    dir.last_path().display()
                );
            }
            return Ok(Outcome::Interrupted);
        }
        if step.is_multiple_of(per) {
            task.start_epoch(rng)?;
        }
        items += task.train_step(trainer, rng, step, step % per)?;
        step += 1;
        let eval_now = step.is_multiple_of(s.eval_every) || step == s.total;
        let log_now = step.is_multiple_of(s.log_every);
        if !(eval_now || log_now) {
            rep.advance(step);
            continue;
        }
        // One readback per log point or evaluation.
        let m = trainer.take_metrics(Split::Train)?;
        if !m.loss.is_finite() {
            rep.finish();
            return Err(diverged(step, m.loss, dir.as_deref(), saved));
        }
        since_eval.add(&m);
        since_log.add(&m);
        let rate = items as f64 / window.elapsed().as_secs_f64().max(1e-9);
        let (loss, acc) = since_log.mean();
        rep.progress(step, loss, acc, rate);
        if log_now {
            rep.log_point(step, step as f64 / per as f64, loss, acc)?;
            since_log = Running::default();
        }
        if eval_now {
            if ranks.size() > 1 {
                check_in_sync(trainer, ranks.comm())?;
            }
            let val = task.validate(trainer)?;
            let (train_loss, train_acc) = since_eval.mean();
            rep.row(&Row {
                step,
                epoch: step as f64 / per as f64,
                train_loss,
                train_acc,
                val_loss: val.map(|v| v.0),
                val_acc: val.and_then(|v| v.1),
                rate,
                elapsed: rep.start.elapsed().as_secs_f64(),
            })?;
            if let Some(dir) = dir.as_deref_mut() {
                let loss = val.map_or(train_loss, |v| v.0);
                task.save(trainer, dir, rng, Some(loss), step / per)?;
                saved = true;
            }
            last = (train_loss, train_acc, val);
            since_eval = Running::default();
            (window, items) = (Instant::now(), 0);
        }
    }
    rep.finish();
    Ok(Outcome::Done {
        train_loss: last.0,
        train_acc: last.1,
        val: last.2,
    })
}
