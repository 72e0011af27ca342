//! What the device stores its tensors as: `f32` (the default), `f16` (inference with f16
//! weights, states and activations, every sum in f32), and the f16 rounding the CPU
//! reference applies at the same points (docs/design.md §10).

use std::fmt;
use std::str::FromStr;

use crate::error::{GruError, Result};

/// The storage precision of a device run.
///
/// ```
/// use gru_engine::Precision;
/// let p: Precision = "f16".parse().unwrap();
/// assert!(p.is_half());
/// assert_eq!(p.to_string(), "f16");
/// assert!("f8".parse::<Precision>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Every tensor f32: results unchanged.
    #[default]
    F32,
    /// Inference with weights, states between steps and activations stored as f16 on
    /// the device (converted to f32 on load, rounded to nearest on store); every sum is
    /// f32 and results come back as f32. Needs `SHADER_F16`
    /// ([`crate::GpuContext::supports_f16`]).
    F16,
    /// Training in mixed precision: the weights the kernels read and the activations
    /// the backward reads are f16 copies (the f32 master weights are kept apart: by the
    /// caller for a layer), and every gradient is f32, so no gradient can underflow
    /// f16's range and no loss scaling is needed. Needs `SHADER_F16`.
    Mixed,
}

impl Precision {
    /// Every value this type parses.
    pub const NAMES: &'static [&'static str] = &["f32", "f16", "mixed"];

    /// Whether the kernels read f16 weights and activations (f16 and mixed).
    pub fn is_half(self) -> bool {
        self != Precision::F32
    }

    /// Whether a layer of this precision has a backward (f32 and mixed).
    pub fn trains(self) -> bool {
        self != Precision::F16
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Mixed => "mixed",
        })
    }
}

impl FromStr for Precision {
    type Err = GruError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "mixed" => Ok(Precision::Mixed),
            other => Err(GruError::Input(format!(
                "unknown precision `{other}`; expected one of: {}",
                Precision::NAMES.join(", ")
            ))),
        }
    }
}

/// `x` rounded to the nearest f16 and widened back: what a store to an f16 buffer keeps.
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Refuses a finite value of tensor `name` that f16 cannot hold (|v| past 65,504
/// rounds to infinity), naming the tensor, the index and the value.
pub(crate) fn check_f16_range(name: &str, values: &[f32]) -> Result<()> {
    let max = half::f16::MAX.to_f32();
    // Values just past the largest f16 still round down to it.
    match values
        .iter()
        .position(|&v| v.is_finite() && half::f16::from_f32(v).is_infinite())
    {
        Some(i) => Err(GruError::Config(format!(
            "tensor `{name}` holds {} at index {i}, past f16's largest value ({max}): it cannot be stored as f16; keep it f32",
            values[i]
        ))),
        None => Ok(()),
    }
}

/// Every value of `v` rounded to f16 ([`round_f16`]).
pub fn round_all_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| round_f16(x)).collect()
}

/// `v` as a device buffer holds it: f32 bytes, or where `half` f16 ones (rounded to
/// nearest) padded with a zero value to whole 4-byte words, which a buffer write needs
/// (the tensors' alignment leaves room for it).
pub(crate) fn device_bytes(v: &[f32], half: bool) -> std::borrow::Cow<'_, [u8]> {
    if half {
        let mut bits: Vec<u16> = v
            .iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect();
        if bits.len() % 2 == 1 {
            bits.push(0);
        }
        bytemuck::cast_slice(&bits).to_vec().into()
    } else {
        bytemuck::cast_slice(v).into()
    }
}
