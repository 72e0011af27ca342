//! The one error type of the crate.

/// Every fallible operation in gru-engine returns this error.
#[derive(Debug, thiserror::Error)]
pub enum GruError {
    /// A tensor had the wrong number of elements or dimensions.
    #[error("shape mismatch for {what}: expected {expected}, found {found}")]
    Shape {
        /// The tensor or argument.
        what: String,
        /// What it should have been.
        expected: String,
        /// What it was.
        found: String,
    },
    /// A configuration value is impossible (zero sizes, a bidirectional cell, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input value is impossible (a sequence length of 0 or longer than T, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// A parameter name that the model does not have.
    #[error("unknown parameter `{name}`; this model has: {known}")]
    UnknownParameter {
        /// The name asked for.
        name: String,
        /// The names the model has, comma-separated.
        known: String,
    },
    /// An operation needs an earlier one (backward before forward, ...).
    #[error("{0}")]
    State(String),
    /// No adapter matched the request.
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create a device on `{adapter}`: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// The adapter lacks a feature the request needs (`SHADER_F16` for f16 storage).
    #[error("{needed_by} needs the adapter feature {feature}, which `{adapter}` does not offer (see `gru devices`); use --precision f32 there")]
    MissingFeature {
        /// The adapter's name.
        adapter: String,
        /// The wgpu feature, as `gru devices` names it.
        feature: &'static str,
        /// What asked for it.
        needed_by: String,
    },
    /// A buffer would exceed what the device can bind.
    #[error("{what} needs {bytes} bytes but the device allows at most {limit} bytes per buffer; use a smaller batch or sequence")]
    TooLarge {
        /// The buffer.
        what: String,
        /// Its size.
        bytes: u64,
        /// The device's limit.
        limit: u64,
    },
    /// A run or a file would need more host memory than this process can get.
    #[error("{what} needs {needed} of memory, but only {available} is available; {hint}")]
    HostMemory {
        /// The run, model or file.
        what: String,
        /// Bytes it needs, in words ("about 1.2 TiB").
        needed: String,
        /// Bytes available, in words.
        available: String,
        /// What to shrink.
        hint: String,
    },
    /// wgpu reported a validation error (a bug in gru-engine, or an unsupported device).
    #[error("GPU validation error: {0}")]
    Validation(String),
    /// The device ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// A checkpoint or weights file is unreadable, incomplete or for another model.
    #[error("bad file {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Data-parallel ranks disagree (on the run's configuration, or on the length of a
    /// sum): every rank returns the same error, so none waits for another.
    #[error("the ranks disagree: {0}")]
    RanksDisagree(String),
    /// The device was lost or a wait on it failed.
    #[error("GPU device lost or unresponsive: {0}")]
    DeviceLost(String),
}

/// `Result` with [`GruError`].
pub type Result<T> = std::result::Result<T, GruError>;

impl GruError {
    /// Shape error helper: `what` expected `expected` elements, found `found`.
    pub(crate) fn shape(
        what: impl Into<String>,
        expected: impl ToString,
        found: impl ToString,
    ) -> Self {
        GruError::Shape {
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// Checks that `data` holds `dims.product()` values; `dims_text` names them, e.g. "[T, B, I]".
pub(crate) fn check_len(what: &str, found: usize, dims: &[usize], dims_text: &str) -> Result<()> {
    let expected: usize = dims.iter().product();
    if found != expected {
        return Err(GruError::shape(
            what,
            format!("{expected} values ({dims_text} = {dims:?})"),
            format!("{found} values"),
        ));
    }
    Ok(())
}
