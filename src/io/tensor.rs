//! The in-memory form of a tensor file, and the errors that name the file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::GruError;

/// A named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// Tensors by name.
pub type Tensors = BTreeMap<String, Tensor>;

/// A file that is not what it should be, with the reason.
pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> GruError {
    GruError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GruError + '_ {
    move |source| GruError::Io {
        path: path.display().to_string(),
        source,
    }
}
