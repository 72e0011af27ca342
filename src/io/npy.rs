//! NumPy `.npy` arrays and `.npz` archives (Keras weights), read with bounded memory.

use std::io::{Read, Write};
use std::path::Path;

use super::atomic::write_atomic;
use super::tensor::{bad, io, Tensor, Tensors};
use crate::error::{GruError, Result};

/// Longest `.npy` header accepted (numpy writes under 100 bytes; version 1 allows 64 KiB).
const MAX_NPY_HEADER: usize = 1 << 20;

/// An `.npz` archive of `.npy` arrays ('<f4' or '<f2', C or Fortran order). Each member
/// is inflated only as far as its `.npy` header declares, and only when that size fits
/// in memory, so a small archive cannot expand into gigabytes it never declared.
pub(crate) fn read_npz(bytes: &[u8], path: &Path) -> Result<Tensors> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(path, format!("not a valid .npz archive ({e})")))?;
    let mut out = Tensors::new();
    for i in 0..zip.len() {
        let f = zip
            .by_index(i)
            .map_err(|e| bad(path, format!("archive entry {i}: {e}")))?;
        let name = f.name().trim_end_matches(".npy").to_string();
        let declared = f.size();
        let t = read_npy(f, path, &name)?;
        let needed = t.data.len() as u64 * 2;
        if declared < needed {
            return Err(bad(
                path,
                format!("array `{name}`: the archive says it holds {declared} bytes, its data needs at least {needed}"),
            ));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// One `.npy` array from a reader: the header, then exactly the bytes it declares.
fn read_npy(mut r: impl Read, path: &Path, name: &str) -> Result<Tensor> {
    let err = |m: String| bad(path, format!("array `{name}`: {m}"));
    let mut pre = [0u8; 10];
    r.read_exact(&mut pre)
        .map_err(|_| err("not an .npy array (shorter than its magic)".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(err("not an .npy array".into()));
    }
    let hlen = match pre[6] {
        1 => u16::from_le_bytes([pre[8], pre[9]]) as usize,
        2 | 3 => {
            let mut rest = [0u8; 2];
            r.read_exact(&mut rest)
                .map_err(|_| err("truncated header".into()))?;
            u32::from_le_bytes([pre[8], pre[9], rest[0], rest[1]]) as usize
        }
        v => return Err(err(format!(".npy version {v} is not supported"))),
    };
    if hlen > MAX_NPY_HEADER {
        return Err(err(format!(
            "header of {hlen} bytes, more than the {MAX_NPY_HEADER} accepted"
        )));
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header)
        .map_err(|_| err("truncated header".into()))?;
    let h = parse_npy_header(&header).map_err(err)?;
    let body_len = h
        .count
        .checked_mul(h.item)
        .ok_or_else(|| err(format!("shape {:?} is too large", h.shape)))?;
    crate::memory::check_host_bytes(
        &format!("{}: array `{name}` of shape {:?}", path.display(), h.shape),
        (body_len as u64).saturating_mul(2),
        "the file declares more data than fits",
    )?;
    // Grown as data really arrives (not reserved from the header's claim), and one byte
    // past the declared size tells a member that holds more than it declares.
    let mut body = Vec::new();
    r.take(body_len as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| err(format!("inflating: {e}")))?;
    if body.len() != body_len {
        return Err(err(format!(
            "holds {} data bytes, its shape {:?} needs {body_len}",
            if body.len() > body_len {
                "more".to_string()
            } else {
                body.len().to_string()
            },
            h.shape
        )));
    }
    decode_npy(h, &body).map_err(err)
}

/// What an `.npy` header declares.
struct NpyHeader {
    shape: Vec<usize>,
    fortran: bool,
    /// Bytes per value.
    item: usize,
    /// Values.
    count: usize,
    half: bool,
}

fn parse_npy_header(raw: &[u8]) -> std::result::Result<NpyHeader, String> {
    let header = std::str::from_utf8(raw).map_err(|_| "header is not text")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!("no `{key}` in the header"))?;
        Ok(header
            .get(at + key.len() + 2..)
            .unwrap_or("")
            .trim_start_matches([':', ' ']))
    };
    let descr = field("descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_text = field("shape")?
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .map(|(inside, _)| inside)
        .ok_or("bad shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape entry `{s}`")))
        .collect::<std::result::Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let (item, half) = match descr {
        "<f4" => (4, false),
        "<f2" => (2, true),
        other => return Err(format!("dtype `{other}`; float32 and float16 are accepted")),
    };
    if fortran && shape.len() > 2 {
        return Err("Fortran-order arrays of more than 2 dimensions are not supported".into());
    }
    Ok(NpyHeader {
        shape,
        fortran,
        item,
        count,
        half,
    })
}

fn decode_npy(h: NpyHeader, body: &[u8]) -> std::result::Result<Tensor, String> {
    let data: Vec<f32> = if h.half {
        body.chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let data = if h.fortran && h.shape.len() == 2 {
        let (r, c) = (h.shape[0], h.shape[1]);
        (0..r * c).map(|k| data[(k % c) * r + k / c]).collect()
    } else {
        data
    };
    Ok(Tensor {
        shape: h.shape,
        data,
    })
}

/// Parses a whole `.npy` file's bytes.
pub fn parse_npy(b: &[u8]) -> Result<Tensor> {
    read_npy(b, Path::new("<npy>"), "array")
}

/// Writes tensors as an uncompressed `.npz` (float32 `.npy` arrays), atomically.
pub fn write_npz(path: &Path, tensors: &Tensors) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let zerr =
        |e: zip::result::ZipError| GruError::State(format!("writing {}: {e}", path.display()));
    for (name, t) in tensors {
        let shape = match t.shape.len() {
            1 => format!("({},)", t.shape[0]),
            _ => format!(
                "({})",
                t.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        npy.extend(bytemuck::cast_slice::<f32, u8>(&t.data));
        zip.start_file(format!("{name}.npy"), opts).map_err(zerr)?;
        zip.write_all(&npy).map_err(io(path))?;
    }
    let bytes = zip.finish().map_err(zerr)?.into_inner();
    write_atomic(path, &bytes)
}
