//! Standard output for every command. Writes go through [`outln!`] and [`out!`], which
//! return errors instead of panicking as `println!` does: a closed pipe (`gru ... |
//! head -1`) then ends the command quietly with status 0, and any other failure (a full
//! disk, `> /dev/full`) is one `error:` line and status 1.

use std::io::Write;

use gru_engine::{GruError, Result};

/// What errors about standard output name as their file.
const STDOUT: &str = "standard output";

/// `println!` that returns a [`Result`].
macro_rules! outln {
    () => {
        $crate::cli::out::text(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::cli::out::text(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` that returns a [`Result`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cli::out::text(format_args!($($t)*))
    };
}

pub(crate) use {out, outln};

/// Writes `args` to standard output and flushes it, so a failure shows here and not
/// at exit.
pub fn text(args: std::fmt::Arguments) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args).and_then(|()| o.flush()).map_err(error)
}

/// A failed write to standard output as the crate's error.
pub fn error(e: std::io::Error) -> GruError {
    GruError::Io {
        path: STDOUT.into(),
        source: e,
    }
}

/// Whether `e` is standard output closed by its reader: the command ends quietly.
pub fn closed(e: &GruError) -> bool {
    matches!(e, GruError::Io { path, source } if path == STDOUT && source.kind() == std::io::ErrorKind::BrokenPipe)
}
