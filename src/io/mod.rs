//! Files: safetensors and `.npz`/`.npy` tensors, atomic writes, and the errors that name
//! the file. `checkpoint` and `interop` both build on this module and
//! not on each other; within it, each file depends only on `tensor` and `atomic`.

mod atomic;
mod npy;
pub mod onnx;
mod safetensors;
mod tensor;

use std::path::Path;

use crate::error::Result;

pub use self::atomic::write_atomic;
pub use self::npy::{parse_npy, write_npz};
pub(crate) use self::safetensors::decode_floats;
pub use self::safetensors::write_safetensors;
pub(crate) use self::tensor::{bad, io};
pub use self::tensor::{Tensor, Tensors};

/// Every tensor of a safetensors or `.npz` file as f32. F32, F16 and BF16 are accepted
/// (the last two widened with `half`); integer tensors (lengths) are converted exactly
/// when `allow_int`; any other dtype is an error naming the tensor.
pub fn read_tensors(path: &Path, allow_int: bool) -> Result<Tensors> {
    Ok(read_tensors_with_metadata(path, allow_int)?.0)
}

/// [`read_tensors`], with the file's string metadata (a safetensors header's
/// `__metadata__`; none for `.npz`).
pub fn read_tensors_with_metadata(
    path: &Path,
    allow_int: bool,
) -> Result<(Tensors, std::collections::BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.starts_with(b"PK") {
        Ok((npy::read_npz(&bytes, path)?, Default::default()))
    } else {
        let meta = safetensors::read_metadata(&bytes);
        Ok((
            safetensors::read_safetensors(&bytes, path, allow_int)?,
            meta,
        ))
    }
}

/// `values` as little-endian F16 bytes (rounded to nearest), refusing a finite value
/// that f16 cannot hold (|v| past 65,504 rounds to infinity) with `name`.
pub(crate) fn f16_bytes(name: &str, values: &[f32]) -> Result<Vec<u8>> {
    crate::precision::check_f16_range(name, values)?;
    Ok(values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect())
}
