//! `gru forecast train|predict`: numeric CSV time series (one or more columns, optional
//! header); windows of `--window` past steps predict the next `--horizon` values of the
//! target column, compared with the naive last-value forecast.

use crate::cli::out::outln;
use gru_engine::task::check_val_split;
use gru_engine::task::forecast::{windows, ForecastFormat as Format};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use gru_engine::model::{Batch, ModelConfig};
use gru_engine::rng::Rng;
use gru_engine::train::Trainer;
use gru_engine::{GruError, Result};

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
use gru_engine::csvdata::{all_numeric, number, records};

#[derive(Subcommand, Debug)]
pub enum ForecastCommand {
    /// Train a forecaster on a CSV time series.
    #[command(after_help = "Examples:
  gru example-data forecast --out data/load.csv
  gru forecast train --data data/load.csv --target load --window 48 --horizon 6
  gru forecast train --data prices.csv --window 30 --epochs 50 -c runs/prices")]
    Train(TrainArgs),
    /// Forecast the values after the end of a CSV series.
    #[command(
        after_help = "Example:\n  gru forecast predict --checkpoint runs/forecast --data data/load.csv"
    )]
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The series: one row per timestep, one column per variable.
    #[arg(long)]
    pub data: PathBuf,
    /// Column to forecast: a header name or a 0-based index.
    #[arg(long, default_value = "0")]
    pub target: String,
    /// Past timesteps each forecast sees.
    #[arg(long, short = 'w', default_value_t = 24)]
    pub window: usize,
    /// Future values forecast at once.
    #[arg(long, default_value_t = 1)]
    pub horizon: usize,
    /// Fraction of the windows, the latest ones, held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    #[command(flatten)]
    pub stack: StackArgs,
    #[arg(long, default_value_t = 20)]
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
pub struct PredictArgs {
    /// Checkpoint file or folder (its best, else last; default: the newest run under
    /// runs/forecast*).
    #[arg(long, short = 'c')]
    pub checkpoint: Option<PathBuf>,
    /// The series (same columns as for training); its last window is used.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What the device computes in: f32, or f16 (f16 weight copies and activations,
    /// f32 outputs; mixed means the same here). Needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[arg(long, short)]
    pub quiet: bool,
}

/// The series [rows, columns] and its column names.
fn series(path: &Path) -> Result<Series> {
    let mut rows = records(path)?;
    let header = if all_numeric(rows[0].iter()) {
        None
    } else {
        Some(rows.remove(0))
    };
    let width = rows.first().map_or(0, |r| r.len());
    if width == 0 {
        return Err(GruError::Input(format!(
            "{}: has a header but no data rows",
            path.display()
        )));
    }
    let skip = usize::from(header.is_some());
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let row = i + 1 + skip;
        if r.len() != width {
            return Err(GruError::Input(format!(
                "{}: row {row} has {} columns, the first data row has {width}",
                path.display(),
                r.len()
            )));
        }
        out.push(
            r.iter()
                .enumerate()
                .map(|(c, s)| number(path, row, c, s))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let named = header.is_some();
    let names = header.unwrap_or_else(|| (0..width).map(|c| format!("column {c}")).collect());
    Ok(Series {
        rows: out,
        names,
        named,
    })
}

/// A CSV series: its rows, its column names (`column k` without a header) and whether
/// the file had a header.
struct Series {
    rows: Vec<Vec<f32>>,
    names: Vec<String>,
    named: bool,
}

/// Model and naive (last value) MSE and MAE in the target's units over window starts.
fn score(
    t: &mut dyn Trainer,
    rows: &[Vec<f32>],
    f: &Format,
    starts: &[usize],
    b: usize,
) -> Result<[f64; 4]> {
    let (mut se, mut ae, mut nse, mut nae, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (sd, mu) = (f.std[f.target] as f64, f.mean[f.target] as f64);
    for chunk in starts.chunks(b) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for &s in chunk {
            let (xi, yi) = f.sample(rows, s);
            x.extend(xi);
            y.extend(yi);
        }
        let pred = t.predict(&Batch::features(&x, chunk.len(), f.window))?;
        for (k, &s) in chunk.iter().enumerate() {
            let last = rows[s + f.window - 1][f.target] as f64;
            for h in 0..f.horizon {
                let truth = y[k * f.horizon + h] as f64 * sd + mu;
                let p = pred[k * f.horizon + h] as f64 * sd + mu;
                se += (p - truth).powi(2);
                ae += (p - truth).abs();
                nse += (last - truth).powi(2);
                nae += (last - truth).abs();
                n += 1.0;
            }
        }
    }
    Ok([se / n, ae / n, nse / n, nae / n])
}

pub fn run(cmd: ForecastCommand) -> Result<u8> {
    match cmd {
        ForecastCommand::Train(a) => train(a),
        ForecastCommand::Predict(a) => predict(a),
    }
}

/// The forecaster's batches: the training windows in a new shuffled order every epoch.
struct ForecastTask<'a> {
    rows: &'a [Vec<f32>],
    f: &'a Format,
    train_starts: &'a [usize],
    val_starts: &'a [usize],
    b: usize,
    order: Vec<usize>,
    format_json: String,
}

impl Task for ForecastTask<'_> {
    fn steps_per_epoch(&self) -> u64 {
        self.train_starts.len().div_ceil(self.b) as u64
    }
    fn start_epoch(&mut self, rng: &mut Rng) -> Result<()> {
        self.order = self.train_starts.to_vec();
        rng.shuffle(&mut self.order);
        Ok(())
    }
    fn train_step(&mut self, t: &mut dyn Trainer, _: &mut Rng, _: u64, k: u64) -> Result<u64> {
        let k = k as usize;
        let chunk = &self.order[k * self.b..((k + 1) * self.b).min(self.order.len())];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for &s in chunk {
            let (xi, yi) = self.f.sample(self.rows, s);
            x.extend(xi);
            y.extend(yi);
        }
        t.train_step(&Batch::features(&x, chunk.len(), self.f.window).values(&y))?;
        Ok(chunk.len() as u64)
    }
    /// Validation loss in the training loss's (normalised) units, for best-model choice.
    fn validate(&mut self, t: &mut dyn Trainer) -> Result<Option<(f64, Option<f64>)>> {
        if self.val_starts.is_empty() {
            return Ok(None);
        }
        let s = score(t, self.rows, self.f, self.val_starts, self.b)?;
        let std = self.f.std[self.f.target] as f64;
        Ok(Some((s[0] / (std * std), None)))
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
            ("forecast", self.format_json.clone()),
            ("epoch", epochs.to_string()),
            ("batch", self.b.to_string()),
        ];
        save_run(t, dir, rng, loss, None, "forecast", &extra).map(|_| ())
    }
}

/// `gru forecast train`, alone or as one rank of a data-parallel job.
fn train(a: TrainArgs) -> Result<u8> {
    let ranks = Ranks::detect()?;
    ranks.finish(train_ranked(a, &ranks))
}

// Long by choice: the phases of a run (flags, series, windows, statistics, model,
// folder, report) in order, sharing their locals; the loop itself is `train_loop::run`.
fn train_ranked(mut a: TrainArgs, ranks: &Ranks) -> Result<u8> {
    // Before any output: a Ctrl-C from the first line on stops at a step boundary.
    catch_interrupt();
    at_least_one("--batch", a.batch)?;
    a.device.local_rank = ranks.local_rank();
    a.device.precision = a.run.precision()?;
    at_least_one("--window", a.window)?;
    at_least_one("--horizon", a.horizon)?;
    at_least_one("--epochs", a.epochs as usize)?;
    a.output.log_every()?;
    check_val_split(a.val_split)?;
    let flag_opts = a.optim.options()?;
    let hidden = at_least_one("--hidden", a.stack.hidden.unwrap_or(32))?;
    let plan = a.run.plan("forecast", ranks.leader())?;
    let quiet = a.output.quiet || a.output.json || !ranks.leader();
    let data = series(&a.data)?;
    let resumed = plan.resume_checkpoint()?;
    // A resumed run's series format, read and checked once.
    let saved = (resumed.as_ref())
        .map(|(c, file)| Format::from_checkpoint(c, file))
        .transpose()?;
    if let (Some((c, _)), Some(f)) = (&resumed, &saved) {
        resume_flags(&mut a, c, f)?;
    }
    let b = a.batch;
    let b_rank = ranks.local_batch(b)?;
    let names = data.names.clone();
    // A resumed model reads the columns it was trained on, by name where both have them.
    let (rows, f) = match saved {
        Some(f) => (f.align(data.rows, &data.names, data.named, &a.data)?, f),
        None => {
            let w = (a.window, a.horizon);
            let f = Format::new(&names, &a.target, w, &data.rows, a.val_split, &a.data)?;
            (data.rows, f)
        }
    };
    let n = windows(rows.len(), f.window, f.horizon);
    if n < 2 {
        return Err(GruError::Input(format!(
            "{}: {} rows are too few for the window {} + horizon {} (at least {} needed)",
            a.data.display(),
            rows.len(),
            f.window,
            f.horizon,
            f.window as u128 + f.horizon as u128 + 1
        )));
    }
    let n_val = (n as f64 * a.val_split) as usize;
    let train_starts: Vec<usize> = (0..n - n_val).collect();
    let val_starts: Vec<usize> = (n - n_val..n).collect();
    let (cfg, opts) = match &resumed {
        Some((c, _)) => (c.params.config, c.options.unwrap_or(flag_opts)),
        None => (
            a.stack
                .apply(ModelConfig::forecaster(names.len(), hidden, f.horizon)),
            flag_opts,
        ),
    };
    let Some((epoch, per_epoch, total)) = epochs_to_run(
        resumed.as_ref().map(|(c, _)| c),
        a.epochs,
        train_starts.len().div_ceil(b) as u64,
        ranks.leader(),
    )?
    else {
        return Ok(0);
    };
    // Every rank trains the same model on the same data for the same steps, or none does.
    ranks.agree(|| {
        let steps = format!("{}..{total}", epoch * per_epoch);
        run_items(&cfg, &opts, &agreed(&a, &f, &rows, steps))
    })?;
    ranks.check_last_batch(train_starts.len(), b, "windows")?;
    let trainer = a.device.train_from(
        &cfg,
        resumed.as_ref().map(|(c, _)| c),
        a.optim.seed,
        opts,
        quiet,
        (b_rank, f.window),
    )?;
    let mut trainer = ranks.wrap(trainer);
    let mut rng = Rng::new(a.optim.seed);
    if let Some((c, _)) = &resumed {
        rng = Rng::new(c.rng_state.unwrap_or(rng.state()));
    }
    // Everything is built: only now is the run folder created (or claimed) and locked.
    let mut run = ranks.leader().then(|| plan.start()).transpose()?;
    if !quiet {
        eprintln!(
            "forecasting `{}` {} step(s) ahead from {} past steps of {} column(s): {} windows ({} for validation), {} parameters, on {}",
            f.columns[f.target],
            f.horizon,
            f.window,
            f.columns.len(),
            n,
            n_val,
            gru_engine::model::group_digits(trainer.config().param_count()),
            trainer.device_name()
        );
    }
    let rep = Reporter::new(
        &ranks.output(&a.output),
        total,
        epoch * per_epoch,
        "windows",
        run.as_ref().map(|r| r.path.as_path()),
    )?;
    let format_json = serde_json::to_string(&f).map_err(|e| GruError::State(e.to_string()))?;
    let mut task = ForecastTask {
        rows: &rows,
        f: &f,
        train_starts: &train_starts,
        val_starts: &val_starts,
        b,
        order: Vec::new(),
        format_json,
    };
    // One evaluation per epoch.
    let schedule = Schedule::new(epoch * per_epoch, total, per_epoch, a.output.log_every()?);
    let last_loss = match train_loop::run(
        &mut task,
        trainer.as_mut(),
        &mut rng,
        run.as_mut().map(|r| &mut r.dir),
        &rep,
        schedule,
        ranks,
    )? {
        Outcome::Interrupted => return Ok(interrupted_exit()),
        Outcome::Done { train_loss, .. } => train_loss,
    };
    let Some(run) = run else { return Ok(0) };
    outln!(
        "epoch {}: training loss (normalised MSE) {last_loss:.5}",
        a.epochs
    )?;
    let sets = [
        ("training", &train_starts[..]),
        ("validation", &val_starts[..]),
    ];
    report_scores(trainer.as_mut(), &rows, &f, &sets, b)?;
    rep.print_paths(&run.dir)?;
    Ok(0)
}

/// The model's and the naive forecast's errors on each named set of windows.
fn report_scores(
    t: &mut dyn Trainer,
    rows: &[Vec<f32>],
    f: &Format,
    sets: &[(&str, &[usize])],
    b: usize,
) -> Result<()> {
    for &(name, starts) in sets {
        if starts.is_empty() {
            continue;
        }
        let [mse, mae, nmse, nmae] = score(t, rows, f, starts, b)?;
        outln!(
            "{name} windows ({}): model MSE {mse:.4}, MAE {mae:.4}; naive last value MSE {nmse:.4}, MAE {nmae:.4} ({:.1}x lower MSE)",
            starts.len(),
            nmse / mse.max(1e-12)
        )?;
    }
    Ok(())
}

/// On --resume the checkpoint decides the model, the optimiser, the window and the
/// batch: a flag given with another value is an error, one left at its default takes the
/// saved value.
fn resume_flags(a: &mut TrainArgs, c: &Checkpoint, f: &Format) -> Result<()> {
    let mut items = a.stack.resume_items(&c.params.config);
    items.push(("window", a.window.to_string(), f.window.to_string()));
    items.push(("horizon", a.horizon.to_string(), f.horizon.to_string()));
    items.push(("target", a.target.clone(), f.columns[f.target].clone()));
    if let Some(o) = &c.options {
        items.extend(a.optim.resume_items(o));
    }
    if let Some(saved) = c.extra.get("batch") {
        items.push(("batch", a.batch.to_string(), saved.clone()));
    }
    // A target given by its index names the same column.
    if a.target.parse::<usize>().ok() == Some(f.target) {
        items.retain(|(id, _, _)| *id != "target");
    }
    check_resume(&items)?;
    a.batch = resumed_value("batch", a.batch, c.extra.get("batch"));
    Ok(())
}

/// What every rank of a data-parallel run must agree on besides the model and the
/// optimiser: the series, its format, the steps and the data flags.
fn agreed(
    a: &TrainArgs,
    f: &Format,
    rows: &[Vec<f32>],
    steps: String,
) -> Vec<(&'static str, String)> {
    vec![
        ("columns", f.columns.join(", ")),
        ("target", f.columns[f.target].clone()),
        ("window", f.window.to_string()),
        ("horizon", f.horizon.to_string()),
        (
            "series",
            format!("{} rows, fingerprint {}", rows.len(), fingerprint(&rows)),
        ),
        ("statistics", fingerprint(&(&f.mean, &f.std))),
        ("steps", steps),
        ("--batch", a.batch.to_string()),
        ("--val-split", a.val_split.to_string()),
        ("--seed", a.optim.seed.to_string()),
    ]
}

fn predict(a: PredictArgs) -> Result<u8> {
    let (c, file) = load_checkpoint(&model_path(
        a.checkpoint.as_deref(),
        "forecast",
        "gru forecast train",
    )?)?;
    let f = Format::from_checkpoint(&c, &file)?;
    let rows = {
        let data = series(&a.data)?;
        f.align(data.rows, &data.names, data.named, &a.data)?
    };
    if rows.len() < f.window {
        return Err(GruError::Input(format!(
            "{}: {} rows, fewer than the model's window of {}",
            a.data.display(),
            rows.len(),
            f.window
        )));
    }
    let cfg = c.params.config;
    let mut t = a.device.inferring(a.precision.inference()).build(
        &cfg,
        || Ok(c.params),
        Default::default(),
        a.quiet,
        (1, f.window),
    )?;
    let x = f.last_window(&rows);
    let pred = t.predict(&Batch::features(&x, 1, f.window))?;
    outln!("step,{}", f.columns[f.target])?;
    for (h, &p) in pred.iter().enumerate() {
        outln!("{},{:.6}", rows.len() + h + 1, f.value(p))?;
    }
    Ok(0)
}
