//! `gru example-data`: synthetic data sets written by the project, so `classify` and
//! `forecast` can be tried on a fresh machine.

use crate::cli::out::outln;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use gru_engine::rng::Rng;
use gru_engine::{GruError, Result};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// `label,text`: short product reviews, positive or negative by the majority of their
    /// (possibly negated) judgements.
    ClassifyText,
    /// `label,v1,...`: noisy ramps of 3 features per step and random length, rising or falling.
    ClassifyNumeric,
    /// `load,temperature` with a header: a noisy series with daily and weekly seasons.
    Forecast,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru example-data classify-text --out data/reviews.csv
  gru example-data classify-numeric --out data/ramps.csv --rows 1000
  gru example-data forecast --out data/load.csv")]
pub struct ExampleArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// Where to write the CSV.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Rows (examples, or timesteps for a series).
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub rows: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn pick<'a>(rng: &mut Rng, words: &[&'a str]) -> &'a str {
    words[(rng.next_u64() % words.len() as u64) as usize]
}

pub fn example(a: ExampleArgs) -> Result<u8> {
    let mut rng = Rng::new(a.seed);
    // The file is built in memory and written atomically: refuse a row count whose text
    // cannot fit (bytes per row at most: text ~100, numeric 24 steps x 3 values, load).
    let per_row: u64 = match a.kind {
        Kind::ClassifyText => 128,
        Kind::ClassifyNumeric => 24 * 3 * 9 + 16,
        Kind::Forecast => 24,
    };
    gru_engine::budget::check_host_bytes(
        &format!("{} rows of example data", a.rows),
        (a.rows as u64).saturating_mul(per_row),
        "use fewer --rows",
    )?;
    let mut s = String::new();
    match a.kind {
        Kind::ClassifyText => {
            let things = [
                "phone", "book", "kettle", "lamp", "chair", "game", "jacket", "printer",
            ];
            let good = [
                "great",
                "excellent",
                "lovely",
                "reliable",
                "sturdy",
                "perfect",
                "useful",
            ];
            let bad = [
                "awful", "broken", "flimsy", "useless", "noisy", "terrible", "cheap",
            ];
            let filler = [
                "the", "this", "it", "really", "is", "was", "and", "very", "quite", "my",
            ];
            // Each clause praises or blames, sometimes negated ("not great" blames); the
            // label is the majority of an odd number of clauses, so words must be weighed.
            for _ in 0..a.rows {
                let mut words = vec![pick(&mut rng, &filler), pick(&mut rng, &things)];
                let mut score = 0i32;
                for _ in 0..1 + 2 * (rng.next_u64() % 2) {
                    let praise = rng.next_u64().is_multiple_of(2);
                    let negated = rng.next_u64() % 10 < 3;
                    words.push(pick(&mut rng, &filler));
                    if negated {
                        words.push("not");
                    }
                    words.push(pick(&mut rng, if praise { &good } else { &bad }));
                    score += if praise != negated { 1 } else { -1 };
                }
                let _ = writeln!(
                    s,
                    "{},{}",
                    if score > 0 { "positive" } else { "negative" },
                    words.join(" ")
                );
            }
        }
        Kind::ClassifyNumeric => {
            for _ in 0..a.rows {
                let rising = rng.next_u64().is_multiple_of(2);
                let len = 5 + (rng.next_u64() % 20) as usize;
                let slope = if rising { 0.15 } else { -0.15 };
                let start = rng.uniform(-1.0, 1.0);
                let _ = write!(s, "{}", if rising { "rising" } else { "falling" });
                for t in 0..len {
                    let ramp = start + slope * t as f32 + rng.uniform(-0.3, 0.3);
                    let _ = write!(
                        s,
                        ",{ramp:.4},{:.4},{:.4}",
                        rng.uniform(-1.0, 1.0),
                        (t as f32 * 0.7).sin()
                    );
                }
                s.push('\n');
            }
        }
        Kind::Forecast => {
            s.push_str("load,temperature\n");
            let tau = std::f32::consts::TAU;
            for t in 0..a.rows {
                let tf = t as f32;
                let temp = 15.0 + 5.0 * (tau * (tf - 6.0) / 24.0).sin() + rng.uniform(-0.5, 0.5);
                let load = 10.0
                    + 3.0 * (tau * tf / 24.0).sin()
                    + 1.5 * (tau * tf / 168.0).sin()
                    + 0.1 * (temp - 15.0)
                    + tf / 2000.0
                    + rng.uniform(-0.3, 0.3);
                let _ = writeln!(s, "{load:.4},{temp:.4}");
            }
        }
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| GruError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    gru_engine::checkpoint::write_atomic(&a.out, s.as_bytes())?;
    outln!("wrote {} rows to {}", a.rows, a.out.display())?;
    Ok(0)
}
