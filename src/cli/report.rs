//! What a long job shows: a progress bar on a terminal (hidden otherwise or with
//! `--quiet`), JSON lines with `--json`, `metrics.csv` in the checkpoint folder and a loss
//! curve drawn to `loss.svg`.

use crate::cli::out::outln;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use gru_engine::{GruError, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Output flags shared by the training commands.
#[derive(Args, Clone, Debug)]
pub struct OutputArgs {
    /// No progress bar and no per-evaluation lines; errors and the final result only.
    #[arg(long, short)]
    pub quiet: bool,
    /// One JSON object per evaluation on stdout (for scripts); no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Steps between points of the training-loss curve (train_loss.csv and loss.svg,
    /// each the mean since the last point); default: about 50 points over the run.
    #[arg(long)]
    pub log_every: Option<u64>,
}

impl OutputArgs {
    /// `--log-every`, checked.
    pub fn log_every(&self) -> Result<Option<u64>> {
        match self.log_every {
            Some(0) => Err(GruError::Config(
                "--log-every must be at least 1, found 0".into(),
            )),
            v => Ok(v),
        }
    }
}

/// One evaluation's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    pub step: u64,
    pub epoch: f64,
    pub train_loss: f64,
    pub train_acc: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    /// Tokens (or sequences) per second since the previous row.
    pub rate: f64,
    pub elapsed: f64,
}

use crate::cli::run_folder::{METRICS_HEADER as HEADER, TRAIN_LOG, TRAIN_LOG_HEADER};

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.6}"))
}

pub struct Reporter {
    bar: ProgressBar,
    out: OutputArgs,
    csv: Option<PathBuf>,
    log: Option<PathBuf>,
    unit: &'static str,
    pub start: Instant,
}

impl Reporter {
    /// A bar over `total` steps starting at `done`; `unit` names what the rate counts.
    pub fn new(
        out: &OutputArgs,
        total: u64,
        done: u64,
        unit: &'static str,
        dir: Option<&Path>,
    ) -> Result<Self> {
        let bar = if out.quiet || out.json {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            // indicatif hides itself when stderr is not a terminal.
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
            )
            .map_err(|e| GruError::State(e.to_string()))?
            .progress_chars("=> "),
        );
        bar.set_position(done);
        let csv = dir
            .map(|d| created(d.join("metrics.csv"), HEADER))
            .transpose()?;
        let log = csv
            .as_ref()
            .map(|c| created(c.with_file_name(TRAIN_LOG), TRAIN_LOG_HEADER))
            .transpose()?;
        Ok(Reporter {
            bar,
            out: out.clone(),
            csv,
            log,
            unit,
            start: Instant::now(),
        })
    }

    /// Moves the bar and shows the latest training figures.
    /// (`loss` is NaN before the first figure is read back: shown as `-`.)
    pub fn progress(&self, step: u64, loss: f64, acc: Option<f64>, rate: f64) {
        self.bar.set_position(step);
        let loss = if loss.is_nan() {
            "-".to_string()
        } else {
            format!("{loss:.4}")
        };
        let acc = acc.map_or(String::new(), |a| format!(" acc {a:.3}"));
        self.bar
            .set_message(format!("loss {loss}{acc} | {rate:.0} {}/s", self.unit));
    }

    /// Moves the bar without new figures.
    pub fn advance(&self, step: u64) {
        self.bar.set_position(step);
    }

    /// Appends a point of the running training loss to [`TRAIN_LOG`] and redraws the plot.
    pub fn log_point(&self, step: u64, epoch: f64, loss: f64, acc: Option<f64>) -> Result<()> {
        let (Some(log), Some(csv)) = (&self.log, &self.csv) else {
            return Ok(());
        };
        let line = format!("{step},{epoch:.4},{loss:.6},{}\n", opt(acc));
        append(log, &line)?;
        plot(csv, &csv.with_file_name("loss.svg"))
    }

    /// Records an evaluation: a line above the bar (or a JSON object), a CSV row, the plot.
    pub fn row(&self, r: &Row) -> Result<()> {
        let val = match (r.val_loss, r.val_acc) {
            (Some(l), Some(a)) => format!(", val loss {l:.4}, val acc {a:.3}"),
            (Some(l), None) => format!(", val loss {l:.4}"),
            _ => String::new(),
        };
        let acc = r
            .train_acc
            .map_or(String::new(), |a| format!(", acc {a:.3}"));
        if self.out.json {
            let j = serde_json::json!({
                "step": r.step, "epoch": r.epoch, "train_loss": r.train_loss,
                "train_accuracy": r.train_acc, "val_loss": r.val_loss, "val_accuracy": r.val_acc,
                "rate_per_s": r.rate, "elapsed_s": r.elapsed,
            });
            outln!("{j}")?;
        } else if !self.out.quiet {
            let line = format!(
                "step {} (epoch {:.2}): loss {:.4}{acc}{val} | {:.0} {}/s",
                r.step, r.epoch, r.train_loss, r.rate, self.unit
            );
            // Off a terminal the bar is hidden and so would be its lines: log them plainly.
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
        }
        if let Some(path) = &self.csv {
            let line = format!(
                "{},{:.4},{:.6},{},{},{},{:.1},{:.1}\n",
                r.step,
                r.epoch,
                r.train_loss,
                opt(r.train_acc),
                opt(r.val_loss),
                opt(r.val_acc),
                r.rate,
                r.elapsed
            );
            append(path, &line)?;
            plot(path, &path.with_file_name("loss.svg"))?;
        }
        Ok(())
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints where the checkpoints, the metrics and the loss curve are.
    /// Files that do not exist (no best without a finite evaluation) are not named.
    pub fn print_paths(&self, dir: &gru_engine::checkpoint::CheckpointDir) -> Result<()> {
        match (dir.last_path().exists(), dir.best_path().exists()) {
            (true, true) => outln!(
                "checkpoints: {} (best: {})",
                dir.last_path().display(),
                dir.best_path().display()
            )?,
            (true, false) => outln!("checkpoint: {}", dir.last_path().display())?,
            (false, true) => outln!("best checkpoint: {}", dir.best_path().display())?,
            (false, false) => {}
        }
        if let Some(p) = self.plot_path() {
            outln!(
                "metrics: {}, loss curve: {}",
                p.with_file_name("metrics.csv").display(),
                p.display()
            )?;
        }
        Ok(())
    }

    /// The loss curve's path, when there is one.
    pub fn plot_path(&self) -> Option<PathBuf> {
        self.csv.as_ref().map(|p| p.with_file_name("loss.svg"))
    }
}

/// `path`, written with just `header` unless it exists (a resumed run appends).
fn created(path: PathBuf, header: &str) -> Result<PathBuf> {
    if !path.exists() {
        std::fs::write(&path, format!("{header}\n")).map_err(|source| GruError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(path)
}

fn append(path: &Path, line: &str) -> Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|source| GruError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// (step, column `col`) of every data row of a CSV file whose column parses.
fn series(path: &Path, col: usize) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Some((
                f.first()?.parse::<f64>().ok()?,
                f.get(col)?.parse::<f64>().ok()?,
            ))
        })
        .collect()
}

/// Draws the training loss (the running points of [`TRAIN_LOG`] beside `metrics.csv`,
/// else the evaluations' training loss) and the validation loss against the step.
pub fn plot(csv: &Path, svg: &Path) -> Result<()> {
    use plotters::prelude::*;
    if !csv.exists() {
        return Err(GruError::Io {
            path: csv.display().to_string(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let logged = series(&csv.with_file_name(TRAIN_LOG), 2);
    let train = if logged.is_empty() {
        series(csv, 2)
    } else {
        logged
    };
    let val = series(csv, 4);
    if train.is_empty() {
        return Ok(());
    }
    let xmax = train
        .iter()
        .chain(&val)
        .map(|p| p.0)
        .fold(1.0, f64::max)
        .ceil();
    let ymax = train.iter().chain(&val).map(|p| p.1).fold(0.0, f64::max) * 1.05 + 1e-9;
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        // A right margin wide enough that the last step label is not cut.
        let mut chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 22))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        chart
            .configure_mesh()
            // Steps are whole numbers.
            .x_label_formatter(&|x| format!("{}", x.round() as u64))
            .x_desc("step")
            .y_desc("loss")
            .draw()?;
        chart
            .draw_series(LineSeries::new(train.clone(), &BLUE))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.clone(), &RED))?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| GruError::State(format!("drawing {}: {e}", svg.display())))
}
