//! Reading CSV files (the `gru classify` and `gru forecast` data), with errors that name
//! the file, the row and the value.

use std::path::Path;

use crate::error::{GruError, Result};

fn bad(path: &Path, msg: String) -> GruError {
    GruError::Input(format!("{}: {msg}", path.display()))
}

/// Every record of a CSV file as strings (no header handling, rows may differ in length).
/// Refuses missing, empty, binary and malformed files.
pub fn records(path: &Path) -> Result<Vec<Vec<String>>> {
    let bytes = std::fs::read(path).map_err(|source| GruError::Io {
        path: path.display().to_string(),
        source,
    })?;
    records_from_bytes(&bytes, path)
}

/// [`records`] of a file's bytes; `path` only names it in errors.
pub fn records_from_bytes(bytes: &[u8], path: &Path) -> Result<Vec<Vec<String>>> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(bad(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| bad(path, format!("row {}: {e}", i + 1)))?;
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        rows.push(rec.iter().map(str::to_string).collect());
    }
    if rows.is_empty() {
        return Err(bad(path, "is empty (no rows)".into()));
    }
    Ok(rows)
}

pub use crate::task::rows::{all_numeric, number};
