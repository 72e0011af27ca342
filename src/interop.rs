//! Moving GRU weights between gru-engine, PyTorch and Keras.
//!
//! **PyTorch** (`nn.GRU` state dicts saved as safetensors): `weight_ih_l{k}` [3H, I_k],
//! `weight_hh_l{k}` [3H, H], `bias_ih_l{k}`, `bias_hh_l{k}` `[3H]`, suffix `_reverse`,
//! gate rows r, z, n. This is also gru-engine's own layout, so import is a check of
//! names and shapes. A module prefix (`gru.`, `rnn.`, `model.gru.`, ...) is detected and
//! dropped; layers, direction, input and hidden sizes are inferred from the shapes.
//!
//! **Keras** (`GRU` layer weights, in safetensors or `.npz`): `kernel` [I, 3H],
//! `recurrent_kernel` [H, 3H], `bias` [2, 3H] (reset_after=True: input bias, then
//! recurrent bias) or `[3H]` (reset_after=False), gate columns z, r, h. A stack is named
//! `layer{k}.kernel`, ...; a bidirectional layer `layer{k}.forward.kernel` and
//! `layer{k}.backward.kernel`; a single layer may drop the `layer0.` prefix. Importing
//! transposes each matrix and reorders the gate blocks (Keras z, r, h -> r, z, n):
//!
//! | gru-engine | Keras |
//! | --- | --- |
//! | `weight_ih` rows [0, H) (r) | `kernel[:, H:2H]ᵀ` |
//! | `weight_ih` rows [H, 2H) (z) | `kernel[:, 0:H]ᵀ` |
//! | `weight_ih` rows [2H, 3H) (n) | `kernel[:, 2H:3H]ᵀ` |
//! | `weight_hh` (same blocks) | `recurrent_kernel` (same columns)ᵀ |
//! | `bias_ih` / `bias_hh` | `bias[0]` / `bias[1]` (same reordering) |
//! | reset-before: `bias_ih`, `bias_hh` = 0 | `bias` `[3H]` |
//!
//! Keras' update `h = z * h_prev + (1 - z) * h~` is the same as docs/design.md §1's. Exporting a
//! reset-before model to Keras folds `bias_hh` into `bias` (both sit inside the same
//! nonlinearity, so the result is exact).

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{GruConfig, GruVariant};
use crate::error::{GruError, Result};
use crate::io::bad;
pub use crate::io::{parse_npy, read_tensors, write_npz, write_safetensors, Tensor, Tensors};
use crate::weights::{DirWeights, GruWeights};

/// Which framework's names and layout a weights file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `nn.GRU` state dict (also gru-engine's own).
    PyTorch,
    /// Keras `GRU` layer weights.
    Keras,
    /// The GRU nodes of an ONNX model, and Loops computing GRU steps as Keras exports
    /// write them; written as the stack alone (`crate::onnx::gru_to_onnx`; a whole model
    /// is `crate::onnx::export`).
    Onnx,
}

/// What a weights file may not say by itself, for [`load_gru_with`].
///
/// ```
/// use gru_engine::interop::LoadOptions;
/// use gru_engine::GruVariant;
/// let o = LoadOptions { variant: Some(GruVariant::ResetBefore), prefix: Some("enc.gru.".into()) };
/// assert_eq!(o.prefix.as_deref(), Some("enc.gru."));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The GRU's variant where the file cannot carry it (a plain state dict: nn.GRU is
    /// reset-after, the default). A variant the file does carry (a gru-engine
    /// checkpoint's metadata, a Keras bias's shape, an ONNX node) must agree with it.
    pub variant: Option<GruVariant>,
    /// Which GRU of a state dict holding several (`enc.gru.`, `dec.gru.`): the prefix
    /// before `weight_ih_l0`, with its dot.
    pub prefix: Option<String>,
}

/// Every prefix before `weight_ih_l0` in `t` (empty for none), sorted.
fn torch_prefixes(t: &Tensors) -> Vec<String> {
    t.keys()
        .filter_map(|k| k.strip_suffix("weight_ih_l0").map(str::to_string))
        .collect()
}

/// The one GRU prefix of `t`, the chosen one, or an error listing them.
fn torch_prefix(t: &Tensors, chosen: Option<&str>, path: &Path) -> Result<String> {
    let all = torch_prefixes(t);
    let list = || {
        all.iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (chosen, all.len()) {
        (_, 0) => Err(bad(
            path,
            "no `weight_ih_l0` tensor: not a PyTorch nn.GRU state dict",
        )),
        (Some(c), _) => all.iter().find(|p| *p == c).cloned().ok_or_else(|| {
            bad(
                path,
                format!("no GRU under the prefix `{c}`; its GRUs: {}", list()),
            )
        }),
        (None, 1) => Ok(all[0].clone()),
        (None, _) => Err(bad(
            path,
            format!(
                "{} GRUs in one file, under the prefixes {}: choose one (--prefix, LoadOptions::prefix)",
                all.len(),
                list()
            ),
        )),
    }
}

/// The variant a file's metadata records: a gru-engine checkpoint's `model`, or the
/// `gru_variant` that [`save_gru`] writes.
fn metadata_variant(meta: &BTreeMap<String, String>, path: &Path) -> Result<Option<GruVariant>> {
    if let Some(v) = meta.get("gru_variant") {
        return match v.as_str() {
            "reset-after" => Ok(Some(GruVariant::ResetAfter)),
            "reset-before" => Ok(Some(GruVariant::ResetBefore)),
            _ => Err(bad(
                path,
                format!("metadata gru_variant `{v}`: expected reset-after or reset-before"),
            )),
        };
    }
    let Some(model) = meta.get("model") else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(model).map_err(|e| bad(path, format!("model metadata: {e}")))?;
    match v.get("variant") {
        None => Ok(None),
        Some(x) => serde_json::from_value(x.clone()).map(Some).map_err(|_| {
            bad(
                path,
                format!("model metadata: variant {x} is not a GRU variant"),
            )
        }),
    }
}

/// The variant of `found` (what the file says, if it says) against `wanted` (the
/// caller's): an error where both are given and differ.
fn agree_variant(
    found: Option<GruVariant>,
    wanted: Option<GruVariant>,
    path: &Path,
) -> Result<GruVariant> {
    match (found, wanted) {
        (Some(f), Some(w)) if f != w => Err(bad(
            path,
            format!(
                "the file holds a {} GRU, but {} was asked for",
                variant_name(f),
                variant_name(w)
            ),
        )),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Ok(GruVariant::ResetAfter),
    }
}

fn variant_name(v: GruVariant) -> &'static str {
    match v {
        GruVariant::ResetAfter => "reset-after",
        GruVariant::ResetBefore => "reset-before",
    }
}

fn take<'a>(t: &'a Tensors, name: &str, shape: &[usize], path: &Path) -> Result<&'a Tensor> {
    let x = t
        .get(name)
        .ok_or_else(|| bad(path, format!("missing tensor `{name}`")))?;
    if x.shape != shape {
        return Err(bad(
            path,
            format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                x.shape
            ),
        ));
    }
    Ok(x)
}

/// A PyTorch `nn.GRU` state dict (any module prefix) as gru-engine weights. Tensors
/// outside the prefix are ignored; inside it, every tensor must belong to the GRU.
///
/// The variant is reset-after (nn.GRU's); [`load_gru_with`] takes it from a file's
/// metadata or the caller. A file holding several GRUs is an error listing them.
pub fn from_pytorch(t: &Tensors, path: &Path) -> Result<GruWeights> {
    from_pytorch_with(t, &LoadOptions::default(), path)
}

fn from_pytorch_with(t: &Tensors, opts: &LoadOptions, path: &Path) -> Result<GruWeights> {
    let prefix = torch_prefix(t, opts.prefix.as_deref(), path)?;
    let ours: Tensors = t
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_string(), v.clone())))
        .filter(|(k, _)| prefix.is_empty() || !k.contains('.'))
        .collect();
    let w0 = &ours["weight_ih_l0"];
    let whh = ours
        .get("weight_hh_l0")
        .ok_or_else(|| bad(path, format!("missing tensor `{prefix}weight_hh_l0`")))?;
    if w0.shape.len() != 2 || whh.shape.len() != 2 || !w0.shape[0].is_multiple_of(3) {
        return Err(bad(
            path,
            format!(
                "`{prefix}weight_ih_l0` has shape {:?}, expected [3H, I]",
                w0.shape
            ),
        ));
    }
    let (h, i) = (whh.shape[1], w0.shape[1]);
    let layers = (0..)
        .take_while(|k| ours.contains_key(&format!("weight_ih_l{k}")))
        .count();
    let bidirectional = ours.contains_key("weight_ih_l0_reverse");
    let bias = ours.contains_key("bias_ih_l0");
    let cfg = GruConfig::new(i, h)
        .layers(layers)
        .bidirectional(bidirectional)
        .bias(bias)
        .variant(opts.variant.unwrap_or_default());
    cfg.validate().map_err(|e| bad(path, e.to_string()))?;
    // Shapes first, values after: nothing is allocated from sizes the data does not back.
    for id in cfg.tensor_ids() {
        let name = id.name();
        let shape = cfg.shape_of(id);
        take(&ours, &name, &shape, path).map_err(|_| match ours.get(&name) {
            Some(x) => bad(path, format!("tensor `{prefix}{name}` has shape {:?}, expected {shape:?} (I = {i}, H = {h}, {layers} layer(s){})", x.shape, if bidirectional { ", bidirectional" } else { "" })),
            None => bad(path, format!("missing tensor `{prefix}{name}`")),
        })?;
    }
    let mut w = GruWeights::try_zeros(cfg)?;
    let mut used = 0;
    for id in w.tensor_ids() {
        *w.tensor_mut(id) = ours[&id.name()].data.clone();
        used += 1;
    }
    if let Some(extra) = ours.keys().find(|k| w.parse_name(k).is_err()) {
        return Err(bad(
            path,
            format!("unexpected tensor `{prefix}{extra}` for an nn.GRU"),
        ));
    }
    if used != ours.len() {
        return Err(bad(
            path,
            format!(
                "{} GRU tensors under `{prefix}`, expected {used}",
                ours.len()
            ),
        ));
    }
    Ok(w)
}

/// gru-engine weights as an `nn.GRU` state dict (names without a prefix). Only the
/// reset-after variant exists in PyTorch.
pub fn to_pytorch(w: &GruWeights) -> Result<Tensors> {
    if w.config.variant != GruVariant::ResetAfter {
        return Err(GruError::Config(
            "PyTorch's nn.GRU is reset-after only; export a reset-before model to Keras (reset_after=False)".into(),
        ));
    }
    Ok(w.tensor_ids()
        .into_iter()
        .map(|id| {
            (
                id.name(),
                Tensor {
                    shape: w.shape_of(id),
                    data: w.tensor(id).to_vec(),
                },
            )
        })
        .collect())
}

/// Keras column block order z, r, h -> row block order r, z, n.
const KERAS_BLOCK: [usize; 3] = [1, 0, 2];

/// [rows, 3H] Keras matrix -> [3H, rows] gru-engine matrix with blocks reordered.
fn keras_matrix(m: &Tensor, h: usize) -> Vec<f32> {
    let rows = m.shape[0];
    let mut out = vec![0.0; 3 * h * rows];
    for (gate, &kb) in KERAS_BLOCK.iter().enumerate() {
        for j in 0..h {
            for r in 0..rows {
                out[(gate * h + j) * rows + r] = m.data[r * 3 * h + kb * h + j];
            }
        }
    }
    out
}

/// Inverse of [`keras_matrix`].
fn to_keras_matrix(w: &[f32], h: usize, rows: usize) -> Tensor {
    let mut data = vec![0.0; rows * 3 * h];
    for (gate, &kb) in KERAS_BLOCK.iter().enumerate() {
        for j in 0..h {
            for r in 0..rows {
                data[r * 3 * h + kb * h + j] = w[(gate * h + j) * rows + r];
            }
        }
    }
    Tensor {
        shape: vec![rows, 3 * h],
        data,
    }
}

fn keras_vec(b: &[f32], h: usize) -> Vec<f32> {
    KERAS_BLOCK
        .iter()
        .flat_map(|&kb| b[kb * h..(kb + 1) * h].iter().copied())
        .collect()
}

fn to_keras_vec(b: &[f32], h: usize) -> Vec<f32> {
    let mut out = vec![0.0; 3 * h];
    for (gate, &kb) in KERAS_BLOCK.iter().enumerate() {
        out[kb * h..(kb + 1) * h].copy_from_slice(&b[gate * h..(gate + 1) * h]);
    }
    out
}

/// Name prefix of layer `k`, direction `d` in the Keras naming scheme.
fn keras_prefix(k: usize, d: usize, bidirectional: bool) -> String {
    match (bidirectional, d) {
        (false, _) => format!("layer{k}."),
        (true, 0) => format!("layer{k}.forward."),
        (true, _) => format!("layer{k}.backward."),
    }
}

/// Keras GRU layer weights as gru-engine weights; the variant follows the bias shape.
pub fn from_keras(t: &Tensors, path: &Path) -> Result<GruWeights> {
    // A single layer may be stored without the `layer0.` prefix.
    let t: Tensors = if t.contains_key("kernel") {
        t.iter()
            .map(|(k, v)| (format!("layer0.{k}"), v.clone()))
            .collect()
    } else {
        t.clone()
    };
    let bidirectional = t.contains_key("layer0.forward.kernel");
    let first = keras_prefix(0, 0, bidirectional);
    let k0 = t.get(&format!("{first}kernel")).ok_or_else(|| {
        bad(
            path,
            "no `kernel` / `layer0.kernel` / `layer0.forward.kernel`: not Keras GRU weights",
        )
    })?;
    let rk = t
        .get(&format!("{first}recurrent_kernel"))
        .ok_or_else(|| bad(path, format!("missing tensor `{first}recurrent_kernel`")))?;
    if rk.shape.len() != 2 || rk.shape[1] != 3 * rk.shape[0] || k0.shape.len() != 2 {
        return Err(bad(
            path,
            format!(
                "`{first}recurrent_kernel` has shape {:?}, expected [H, 3H]",
                rk.shape
            ),
        ));
    }
    let (i, h) = (k0.shape[0], rk.shape[0]);
    let layers = (0..)
        .take_while(|k| t.contains_key(&format!("{}kernel", keras_prefix(*k, 0, bidirectional))))
        .count();
    let reset_after = t
        .get(&format!("{first}bias"))
        .is_some_and(|b| b.shape.len() == 2);
    let variant = if reset_after {
        GruVariant::ResetAfter
    } else {
        GruVariant::ResetBefore
    };
    let cfg = GruConfig::new(i, h)
        .layers(layers)
        .bidirectional(bidirectional)
        .variant(variant);
    cfg.validate().map_err(|e| bad(path, e.to_string()))?;
    let nd = cfg.num_directions();
    let bias_shape: Vec<usize> = if reset_after {
        vec![2, 3 * h]
    } else {
        vec![3 * h]
    };
    // Every tensor with its shape first: the sizes come from the file and are only
    // trusted once the data they imply is there.
    let mut found = Vec::new();
    for k in 0..layers {
        let ik = cfg.layer_input_size(k);
        for d in 0..nd {
            let p = keras_prefix(k, d, bidirectional);
            found.push((
                take(&t, &format!("{p}kernel"), &[ik, 3 * h], path)?,
                take(&t, &format!("{p}recurrent_kernel"), &[h, 3 * h], path)?,
                take(&t, &format!("{p}bias"), &bias_shape, path)?,
            ));
        }
    }
    let mut w = GruWeights {
        config: cfg,
        dirs: Vec::new(),
    };
    let used = 3 * found.len();
    {
        for (kern, rec, bias) in found {
            w.dirs.push(DirWeights {
                w_ih: keras_matrix(kern, h),
                w_hh: keras_matrix(rec, h),
                b_ih: keras_vec(&bias.data[..3 * h], h),
                b_hh: if reset_after {
                    keras_vec(&bias.data[3 * h..], h)
                } else {
                    vec![0.0; 3 * h]
                },
            });
        }
    }
    if used != t.len() {
        let known: Vec<String> = (0..layers)
            .flat_map(|k| (0..nd).map(move |d| keras_prefix(k, d, bidirectional)))
            .flat_map(|p| ["kernel", "recurrent_kernel", "bias"].map(|n| format!("{p}{n}")))
            .collect();
        let extra = t
            .keys()
            .find(|k| !known.contains(k))
            .cloned()
            .unwrap_or_default();
        return Err(bad(
            path,
            format!("unexpected tensor `{extra}` for Keras GRU weights"),
        ));
    }
    Ok(w)
}

/// gru-engine weights in Keras' layout and naming scheme (`layer{k}.[forward.|backward.]`).
pub fn to_keras(w: &GruWeights) -> Tensors {
    let cfg = w.config;
    let (h, nd) = (cfg.hidden_size, cfg.num_directions());
    let mut out = Tensors::new();
    for k in 0..cfg.num_layers {
        for d in 0..nd {
            let p = keras_prefix(k, d, cfg.bidirectional);
            let dw = &w.dirs[k * nd + d];
            out.insert(
                format!("{p}kernel"),
                to_keras_matrix(&dw.w_ih, h, cfg.layer_input_size(k)),
            );
            out.insert(
                format!("{p}recurrent_kernel"),
                to_keras_matrix(&dw.w_hh, h, h),
            );
            let bias = match cfg.variant {
                GruVariant::ResetAfter => {
                    let mut b = to_keras_vec(&dw.b_ih, h);
                    b.extend(to_keras_vec(&dw.b_hh, h));
                    Tensor {
                        shape: vec![2, 3 * h],
                        data: b,
                    }
                }
                GruVariant::ResetBefore => {
                    let sum: Vec<f32> = dw.b_ih.iter().zip(&dw.b_hh).map(|(a, b)| a + b).collect();
                    Tensor {
                        shape: vec![3 * h],
                        data: to_keras_vec(&sum, h),
                    }
                }
            };
            out.insert(format!("{p}bias"), bias);
        }
    }
    out
}

/// Reads GRU weights from a file in `format`.
pub fn load_gru(path: &Path, format: WeightFormat) -> Result<GruWeights> {
    load_gru_with(path, format, &LoadOptions::default())
}

/// [`load_gru`] with what the file may not say: the variant of a plain state dict, and
/// which GRU of a file with several. Every config the file records (a gru-engine
/// checkpoint's metadata, a Keras bias's shape, an ONNX node's attributes) is taken
/// from it, and a `variant` that contradicts it is an error.
pub fn load_gru_with(path: &Path, format: WeightFormat, opts: &LoadOptions) -> Result<GruWeights> {
    if format != WeightFormat::PyTorch && opts.prefix.is_some() {
        return Err(GruError::Config(
            "a prefix chooses among the GRUs of a PyTorch state dict only".into(),
        ));
    }
    let mut w = match format {
        WeightFormat::Onnx => crate::onnx::gru_from_onnx(path)?,
        WeightFormat::Keras => from_keras(&read_tensors(path, false)?, path)?,
        WeightFormat::PyTorch => {
            let (t, meta) = crate::io::read_tensors_with_metadata(path, false)?;
            let variant = agree_variant(metadata_variant(&meta, path)?, opts.variant, path)?;
            let opts = LoadOptions {
                variant: Some(variant),
                ..opts.clone()
            };
            return from_pytorch_with(&t, &opts, path);
        }
    };
    // The file says which variant; the caller may only confirm it.
    w.config.variant = agree_variant(Some(w.config.variant), opts.variant, path)?;
    Ok(w)
}

/// Writes GRU weights in `format`: safetensors, or `.npz` when the path ends in `.npz`;
/// for ONNX, a model of the stack alone ([`crate::onnx::gru_to_onnx`]).
pub fn save_gru(path: &Path, w: &GruWeights, format: WeightFormat) -> Result<()> {
    let mut meta = BTreeMap::new();
    let t = match format {
        WeightFormat::PyTorch => {
            // nn.GRU has one variant; the file says which it holds, so that reading it
            // back never takes a reset-before GRU for a reset-after one.
            meta.insert(
                "gru_variant".to_string(),
                variant_name(w.config.variant).to_string(),
            );
            to_pytorch(w)?
        }
        WeightFormat::Keras => to_keras(w),
        WeightFormat::Onnx => {
            // The stack alone, nn.GRU's interface: `input` -> `output`, `h_n`.
            let model = crate::onnx::gru_to_onnx(w, &Default::default());
            return crate::io::onnx::write_model(path, &model);
        }
    };
    if path.extension().is_some_and(|e| e == "npz") {
        write_npz(path, &t)
    } else {
        write_safetensors(path, &t, meta)
    }
}
