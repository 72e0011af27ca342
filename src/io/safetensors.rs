//! Safetensors files of f32 tensors (F16 and BF16 widened, integers on request).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::atomic::write_atomic;
use super::tensor::{bad, Tensor, Tensors};
use crate::error::{GruError, Result};

/// Every tensor of a safetensors file as f32 (see [`super::read_tensors`]).
pub(crate) fn read_safetensors(bytes: &[u8], path: &Path, allow_int: bool) -> Result<Tensors> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(
            path,
            format!("neither a safetensors nor an .npz file ({e})"),
        )
    })?;
    let mut out = Tensors::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let data = match (view.dtype(), allow_int) {
            (Dtype::I64, true) => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            (Dtype::I32, true) => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            (dtype, _) => decode_floats(dtype, d).ok_or_else(|| {
                bad(
                    path,
                    format!("tensor `{name}` has dtype {dtype:?}; F32, F16 and BF16 are accepted"),
                )
            })?,
        };
        out.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// The string metadata of a safetensors file's header (empty where it has none or the
/// header is unreadable: the tensors' read reports that).
pub(crate) fn read_metadata(bytes: &[u8]) -> BTreeMap<String, String> {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, h)| h.metadata().clone())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// Little-endian F32, F16 or BF16 bytes as f32 (the last two widened with `half`);
/// `None` for any other dtype.
pub(crate) fn decode_floats(dtype: Dtype, d: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Writes tensors as safetensors (F32), atomically, with string metadata.
pub fn write_safetensors(
    path: &Path,
    tensors: &Tensors,
    meta: BTreeMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, t)| {
            TensorView::new(Dtype::F32, t.shape.clone(), bytemuck::cast_slice(&t.data))
                .map(|v| (n.clone(), v))
                .map_err(|e| GruError::State(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = if meta.is_empty() {
        None
    } else {
        Some(meta.into_iter().collect())
    };
    let bytes = safetensors::serialize(views, meta).map_err(|e| GruError::State(e.to_string()))?;
    write_atomic(path, &bytes)
}
