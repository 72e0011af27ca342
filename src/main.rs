//! `gru`: the command line of gru-engine (see `gru --help`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
