//! The `gru` command line: one module per subcommand, plus the flags and reporting they
//! share.

mod args;
mod bench;
mod bench_plan;
mod bench_ranks;
mod classify;
mod corpus;
mod device;
mod devices;
mod example_data;
mod export;
mod forecast;
mod interop;
mod lm;
mod out;
mod ranks;
mod report;
mod run_folder;
mod signals;
mod summary;
mod train_loop;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gru",
    version,
    about = "GRU training and inference on any Vulkan/Metal/DX12/GL GPU",
    after_help = "Examples:
  gru train                         # train the default character model on the built-in corpus
  gru generate --prompt 'fn '       # text from it
  gru example-data classify-text --out data/reviews.csv && gru classify train --data data/reviews.csv
  gru example-data forecast --out data/load.csv && gru forecast train --data data/load.csv --target load
  gru export --checkpoint runs/lm --output lm.onnx
  gru summary --kind lm --vocab 65 --embed 256 --hidden 1024
  gru devices
  gru bench --quick"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a character language model (default: a small one on the built-in corpus).
    Train(lm::TrainArgs),
    /// Generate text from a trained language model, streaming it.
    Generate(lm::GenerateArgs),
    /// Sequence classification from CSV: train, evaluate (with a confusion matrix), predict.
    #[command(subcommand)]
    Classify(classify::ClassifyCommand),
    /// Time-series forecasting from CSV: train (against a naive baseline), predict.
    #[command(subcommand)]
    Forecast(forecast::ForecastCommand),
    /// Run GRU weights from PyTorch, Keras or ONNX over tensors in a file; write output and
    /// h_n.
    Forward(interop::ForwardArgs),
    /// Convert GRU weights between PyTorch (gru-engine's own layout), Keras and ONNX.
    Convert(interop::ConvertArgs),
    /// Write a trained model as an ONNX graph (ONNX Runtime, tract, TensorRT, OpenVINO).
    Export(export::ExportArgs),
    /// Read the GRU layers of an ONNX model (PyTorch, tf2onnx or Keras 3 export) as GRU
    /// weights.
    Import(interop::ImportArgs),
    /// Print a model's layers, output shapes and parameter counts (Keras' model.summary()).
    Summary(summary::SummaryArgs),
    /// List the adapters wgpu finds, with the limits and features that matter, and mark
    /// the one `--device auto` picks.
    Devices(devices::DevicesArgs),
    /// Time the standard GRU shapes, forward and forward+backward, on the device and on
    /// the CPU reference.
    Bench(bench::BenchArgs),
    /// Write a synthetic data set for `classify` or `forecast`.
    ExampleData(example_data::ExampleArgs),
}

/// Parses the command line, runs it, and turns any error into one line on stderr and a
/// non-zero exit.
pub fn main() -> ExitCode {
    quiet_headless_vulkan();
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_exit(e),
    };
    args::record_given(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_exit(e),
    };
    let result = match cli.command {
        Command::Train(a) => lm::train(a),
        Command::Generate(a) => lm::generate(a),
        Command::Summary(a) => summary::summary(a),
        Command::Devices(a) => devices::devices(a),
        Command::Classify(c) => classify::run(c),
        Command::Forecast(c) => forecast::run(c),
        Command::Bench(a) => bench_ranks::bench(a),
        Command::Forward(a) => interop::forward(a),
        Command::Convert(a) => interop::convert(a),
        Command::Export(a) => export::export_model(a),
        Command::Import(a) => interop::import(a),
        Command::ExampleData(a) => example_data::example(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // `gru ... | head -1`: the reader has all it wanted.
        Err(e) if out::closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// What clap would print and its exit code (help and version 0, usage errors 2), but
/// a failed write of it fails: clap's own exit ignores one, so `gru --help > /dev/full`
/// exited 0. A reader that closed the pipe (`gru --help | head -1`) had what it wanted.
fn clap_exit(e: clap::Error) -> ExitCode {
    use std::io::Write;
    let written = e.print().and_then(|()| std::io::stdout().flush());
    match written {
        Ok(()) => ExitCode::from(e.exit_code().clamp(0, 255) as u8),
        Err(w) if w.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(w) => {
            eprintln!("error: standard output: {w}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's device-select Vulkan layer probes Wayland when it loads and, on a headless
/// machine, prints "error: XDG_RUNTIME_DIR is invalid or not set" (twice) at every start,
/// which a newcomer reads as gru's errors. The layer only reorders adapters, which gru
/// ranks itself, so it is switched off where no Wayland display exists, unless the user
/// set `NODEVICE_SELECT` already. Runs first, before any thread exists.
fn quiet_headless_vulkan() {
    if std::env::var_os("WAYLAND_DISPLAY").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// An error as one line of readable length: newlines folded, and text past 1,000
/// characters cut (a crafted file can make a reason of any size).
fn one_line(text: &str) -> String {
    const MAX: usize = 1000;
    let flat = text.replace('\n', " ");
    match flat.char_indices().nth(MAX) {
        Some((at, _)) => format!(
            "{}... ({} more characters)",
            &flat[..at],
            flat[at..].chars().count()
        ),
        None => flat,
    }
}
