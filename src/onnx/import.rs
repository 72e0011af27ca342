//! ONNX import: the GRU nodes of a model, as PyTorch's `torch.onnx.export` and tf2onnx
//! write them, as gru-engine weights. Their `W`, `R` and `B` inputs are initializers,
//! `Constant` nodes, or small constant expressions over them (the Unsqueeze, Concat,
//! Slice, ... an exporter wraps weights in), evaluated here.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{GruConfig, GruVariant};
use crate::error::Result;
use crate::io::bad;
use crate::io::onnx::{data_type, read_model, AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::weights::GruWeights;

use super::gates::swap_rz;

/// A constant: dims and values (f64 holds every f32 and the int64 axes and shapes).
#[derive(Clone)]
struct Arr {
    dims: Vec<usize>,
    data: Vec<f64>,
}

/// The GRU layers of the ONNX model at `path`, in graph order, as one stack: every GRU
/// node must run forward or both ways with the standard activations, and layer k + 1
/// must read layer k's directions·H features. Errors name the node and what it holds.
pub fn gru_from_onnx(path: &Path) -> Result<GruWeights> {
    let model = read_model(path)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad(path, "the ONNX model has no graph"))?;
    let mut consts = Consts::new(graph, path);
    let grus: Vec<&NodeProto> = graph.node.iter().filter(|n| n.op_type == "GRU").collect();
    if grus.is_empty() {
        let looped = graph
            .node
            .iter()
            .any(|n| n.op_type == "Loop" || n.op_type == "Scan");
        return Err(bad(
            path,
            if looped {
                "the ONNX graph holds no GRU node but a Loop or Scan: its recurrence is \
                 written out in primitive ops (tf2onnx does this for Keras GRU layers with \
                 reset_after=False, without bias or with masking, and for Keras 3 GRU \
                 layers), which gru-engine does not read; save the Keras layer's weights \
                 and use --format keras instead"
            } else {
                "the ONNX graph holds no GRU node"
            },
        ));
    }
    struct Layer {
        w: Arr,
        r: Arr,
        b: Option<Arr>,
    }
    let mut layers = Vec::new();
    let mut shape: Option<(usize, usize, GruVariant)> = None;
    for node in &grus {
        let name = if node.name.is_empty() {
            "GRU"
        } else {
            node.name.as_str()
        };
        let what = |msg: String| bad(path, format!("GRU node `{name}`: {msg}"));
        for a in &node.attribute {
            match a.name.as_str() {
                "hidden_size" | "direction" | "linear_before_reset" | "layout" => {}
                "activations" => {
                    let acts: Vec<String> = a
                        .strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                        .collect();
                    if acts.chunks(2).any(|p| p != ["sigmoid", "tanh"]) {
                        return Err(what(format!(
                            "attribute `activations` = {acts:?} is not supported (gru-engine computes Sigmoid and Tanh)"
                        )));
                    }
                }
                other => {
                    return Err(what(format!(
                        "attribute `{other}` is not supported (gru-engine has no clip or activation parameters)"
                    )))
                }
            }
        }
        let direction = attr(node, "direction")
            .map(|a| String::from_utf8_lossy(&a.s).to_string())
            .unwrap_or_else(|| "forward".into());
        let nd = match direction.as_str() {
            "forward" => 1,
            "bidirectional" => 2,
            d => {
                return Err(what(format!(
                "direction `{d}` is not supported (a layer runs forward or both ways, as nn.GRU's)"
            )))
            }
        };
        let variant = match attr(node, "linear_before_reset").map_or(0, |a| a.i) {
            0 => GruVariant::ResetBefore,
            _ => GruVariant::ResetAfter,
        };
        let input = |k: usize| node.input.get(k).filter(|s| !s.is_empty());
        let need = |k: usize, role: &str, consts: &mut Consts| -> Result<Arr> {
            let n = input(k).ok_or_else(|| what(format!("no `{role}` input")))?;
            consts
                .get(n)?
                .ok_or_else(|| what(format!("`{role}` (`{n}`) is not a constant of the file")))
        };
        let w = need(1, "W", &mut consts)?;
        let r = need(2, "R", &mut consts)?;
        let b = match input(3) {
            Some(_) => Some(need(3, "B", &mut consts)?),
            None => None,
        };
        let h = match (r.dims.as_slice(), attr(node, "hidden_size")) {
            ([d, g, h], a) if *d == nd && *g == 3 * h && a.is_none_or(|a| a.i as usize == *h) => *h,
            (dims, _) => {
                return Err(what(format!(
                    "`R` has shape {dims:?}, expected [{nd}, 3·hidden_size, hidden_size]"
                )))
            }
        };
        if w.dims.len() != 3 || w.dims[0] != nd || w.dims[1] != 3 * h {
            return Err(what(format!(
                "`W` has shape {:?}, expected [{nd}, {}, input_size]",
                w.dims,
                3 * h
            )));
        }
        if let Some(b) = &b {
            if b.dims != [nd, 6 * h] {
                return Err(what(format!(
                    "`B` has shape {:?}, expected [{nd}, {}]",
                    b.dims,
                    6 * h
                )));
            }
        }
        match shape {
            None => shape = Some((h, nd, variant)),
            Some(s) if s == (h, nd, variant) => {}
            Some((h0, nd0, v0)) => {
                return Err(what(format!(
                    "hidden size {h}, {nd} direction(s), {variant:?}, where the first GRU node has {h0}, {nd0}, {v0:?}: gru-engine stacks equal layers"
                )))
            }
        }
        if !layers.is_empty() && w.dims[2] != nd * h {
            return Err(what(format!(
                "reads {} features, expected the layer below's {}",
                w.dims[2],
                nd * h
            )));
        }
        layers.push(Layer { w, r, b });
    }
    let (h, nd, variant) = shape.ok_or_else(|| bad(path, "no GRU node"))?;
    let bias = layers.iter().any(|l| l.b.is_some());
    let cfg = GruConfig::new(layers[0].w.dims[2], h)
        .layers(layers.len())
        .bidirectional(nd == 2)
        .variant(variant)
        .bias(bias);
    let mut weights = GruWeights::zeros(cfg);
    for (l, layer) in layers.iter().enumerate() {
        let i = layer.w.dims[2];
        for d in 0..nd {
            let dw = &mut weights.dirs[l * nd + d];
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let wd = f32s(&layer.w.data[d * 3 * h * i..(d + 1) * 3 * h * i]);
            let rd = f32s(&layer.r.data[d * 3 * h * h..(d + 1) * 3 * h * h]);
            dw.w_ih = swap_rz(&wd, h * i);
            dw.w_hh = swap_rz(&rd, h * h);
            if let Some(b) = &layer.b {
                let bd = f32s(&b.data[d * 6 * h..(d + 1) * 6 * h]);
                dw.b_ih = swap_rz(&bd[..3 * h], h);
                dw.b_hh = swap_rz(&bd[3 * h..], h);
            }
        }
    }
    Ok(weights)
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The graph's constants by name: initializers, `Constant` nodes and what constant
/// expressions compute from them, each evaluated once.
struct Consts<'a> {
    graph: &'a GraphProto,
    path: &'a Path,
    done: HashMap<String, Option<Arr>>,
}

impl<'a> Consts<'a> {
    fn new(graph: &'a GraphProto, path: &'a Path) -> Self {
        Consts {
            graph,
            path,
            done: HashMap::new(),
        }
    }

    /// The constant `name`, or `None` where it depends on a graph input.
    fn get(&mut self, name: &str) -> Result<Option<Arr>> {
        if let Some(v) = self.done.get(name) {
            return Ok(v.clone());
        }
        // Marked first: a cycle reads as "not constant".
        self.done.insert(name.into(), None);
        let value = if let Some(t) = self.graph.initializer.iter().find(|t| t.name == name) {
            Some(tensor(t, self.path)?)
        } else if let Some(node) = self
            .graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == name))
        {
            self.eval(node)?
        } else {
            None
        };
        self.done.insert(name.into(), value.clone());
        Ok(value)
    }

    /// A node's first output, where it is one of the shape ops exporters wrap weights in
    /// and its inputs are constants.
    fn eval(&mut self, node: &NodeProto) -> Result<Option<Arr>> {
        let op = node.op_type.as_str();
        if op == "Constant" {
            return match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => Ok(Some(tensor(t, self.path)?)),
                None => Ok(None),
            };
        }
        if !matches!(
            op,
            "Identity"
                | "Cast"
                | "Unsqueeze"
                | "Squeeze"
                | "Reshape"
                | "Concat"
                | "Slice"
                | "Transpose"
        ) {
            return Ok(None);
        }
        let mut ins = Vec::new();
        for n in &node.input {
            if n.is_empty() {
                ins.push(None);
                continue;
            }
            match self.get(n)? {
                Some(a) => ins.push(Some(a)),
                None => return Ok(None),
            }
        }
        let bad_op = |msg: &str| bad(self.path, format!("{op} node `{}`: {msg}", node.name));
        let x = ins
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| bad_op("no input"))?;
        let ints_of = |k: usize, a: &str| -> Option<Vec<i64>> {
            match ins.get(k).cloned().flatten() {
                Some(v) => Some(v.data.iter().map(|&f| f as i64).collect()),
                None => attr(node, a).map(|a| a.ints.clone()),
            }
        };
        let rank = x.dims.len() as i64;
        let axis = |a: i64, r: i64| if a < 0 { (a + r) as usize } else { a as usize };
        let out = match op {
            "Identity" | "Cast" => x,
            "Unsqueeze" => {
                let axes = ints_of(1, "axes").ok_or_else(|| bad_op("no axes"))?;
                let r = rank + axes.len() as i64;
                let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect();
                axes.sort_unstable();
                let mut dims = x.dims.clone();
                for a in axes {
                    dims.insert(a.min(dims.len()), 1);
                }
                Arr { dims, data: x.data }
            }
            "Squeeze" => {
                let dims = match ints_of(1, "axes") {
                    Some(axes) => {
                        let axes: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect();
                        x.dims
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| !axes.contains(k))
                            .map(|(_, &d)| d)
                            .collect()
                    }
                    None => x.dims.iter().copied().filter(|&d| d != 1).collect(),
                };
                Arr { dims, data: x.data }
            }
            "Reshape" => {
                let shape = ints_of(1, "shape").ok_or_else(|| bad_op("no shape"))?;
                let total = x.data.len();
                let mut dims: Vec<usize> = shape
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| {
                        if s == 0 {
                            x.dims.get(k).copied().unwrap_or(1)
                        } else {
                            s.max(1) as usize
                        }
                    })
                    .collect();
                if let Some(k) = shape.iter().position(|&s| s == -1) {
                    let known: usize = dims
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != k)
                        .map(|(_, d)| d)
                        .product();
                    dims[k] = total / known.max(1);
                }
                if dims.iter().product::<usize>() != total {
                    return Err(bad_op("shape does not hold the values"));
                }
                Arr { dims, data: x.data }
            }
            "Transpose" => {
                let perm: Vec<usize> = match attr(node, "perm") {
                    Some(a) => a.ints.iter().map(|&p| p as usize).collect(),
                    None => (0..x.dims.len()).rev().collect(),
                };
                if perm.len() != x.dims.len() || perm.iter().any(|&p| p >= x.dims.len()) {
                    return Err(bad_op("perm does not fit the input"));
                }
                transpose(&x, &perm)
            }
            "Concat" => {
                let a = attr(node, "axis").map_or(0, |a| a.i);
                let parts: Vec<Arr> = ins.into_iter().flatten().collect();
                concat(&parts, axis(a, rank)).ok_or_else(|| bad_op("inputs do not concatenate"))?
            }
            "Slice" => {
                let starts = ints_of(1, "starts").ok_or_else(|| bad_op("no starts"))?;
                let ends = ints_of(2, "ends").ok_or_else(|| bad_op("no ends"))?;
                let axes = ints_of(3, "axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
                if ints_of(4, "steps").is_some_and(|s| s.iter().any(|&s| s != 1)) {
                    return Ok(None);
                }
                let mut ranges: Vec<(usize, usize)> = x.dims.iter().map(|&d| (0, d)).collect();
                for ((&s, &e), &a) in starts.iter().zip(&ends).zip(&axes) {
                    let a = axis(a, rank);
                    let d = *x.dims.get(a).ok_or_else(|| bad_op("axis past the rank"))? as i64;
                    let clamp = |v: i64| if v < 0 { (v + d).max(0) } else { v.min(d) } as usize;
                    ranges[a] = (clamp(s), clamp(e).max(clamp(s)));
                }
                slice(&x, &ranges)
            }
            _ => return Ok(None),
        };
        Ok(Some(out))
    }
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// The multi-index of flat position `i`.
fn index(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for k in (0..dims.len()).rev() {
        idx[k] = i % dims[k].max(1);
        i /= dims[k].max(1);
    }
    idx
}

fn transpose(x: &Arr, perm: &[usize]) -> Arr {
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let st = strides(&x.dims);
    let data = (0..x.data.len())
        .map(|i| {
            let idx = index(i, &dims);
            x.data[idx
                .iter()
                .zip(perm)
                .map(|(&v, &p)| v * st[p])
                .sum::<usize>()]
        })
        .collect();
    Arr { dims, data }
}

fn concat(parts: &[Arr], axis: usize) -> Option<Arr> {
    let first = parts.first()?;
    let mut dims = first.dims.clone();
    if axis >= dims.len() {
        return None;
    }
    dims[axis] = 0;
    for p in parts {
        let same = p.dims.len() == first.dims.len()
            && p.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(k, (a, b))| k == axis || a == b);
        if !same {
            return None;
        }
        dims[axis] += p.dims[axis];
    }
    let outer: usize = dims[..axis].iter().product();
    let mut data = Vec::with_capacity(dims.iter().product());
    for o in 0..outer {
        for p in parts {
            let inner: usize = p.dims[axis..].iter().product();
            data.extend_from_slice(&p.data[o * inner..(o + 1) * inner]);
        }
    }
    Some(Arr { dims, data })
}

fn slice(x: &Arr, ranges: &[(usize, usize)]) -> Arr {
    let dims: Vec<usize> = ranges.iter().map(|(s, e)| e - s).collect();
    let st = strides(&x.dims);
    let n: usize = dims.iter().product();
    let data = (0..n)
        .map(|i| {
            let idx = index(i, &dims);
            x.data[idx
                .iter()
                .zip(ranges)
                .zip(&st)
                .map(|((&v, r), s)| (v + r.0) * s)
                .sum::<usize>()]
        })
        .collect();
    Arr { dims, data }
}

/// A tensor's values, from `raw_data`, the typed fields or external data next to the
/// model; sizes are checked against the bytes present before anything is allocated.
fn tensor(t: &TensorProto, path: &Path) -> Result<Arr> {
    let what = |msg: String| bad(path, format!("tensor `{}`: {msg}", t.name));
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| what(format!("negative dimension {d}"))))
        .collect::<Result<_>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| what(format!("dimensions {dims:?} overflow")))?;
    let width = match t.data_type {
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::DOUBLE | data_type::INT64 => 8,
        data_type::FLOAT16 => 2,
        other => {
            return Err(what(format!(
                "data type {other} is not supported (float, float16, double, int32, int64)"
            )))
        }
    };
    let external;
    let raw: &[u8] = if t.data_location == 1 {
        external = read_external(t, path, n.saturating_mul(width))?;
        &external
    } else {
        &t.raw_data
    };
    let data: Vec<f64> = if !raw.is_empty() {
        if raw.len() != n.saturating_mul(width) {
            return Err(what(format!(
                "{} bytes of data for {n} values of {width} bytes",
                raw.len()
            )));
        }
        raw.chunks_exact(width)
            .map(|c| match t.data_type {
                data_type::FLOAT => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                data_type::INT32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                data_type::FLOAT16 => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
                data_type::DOUBLE => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
                _ => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            })
            .collect()
    } else {
        let typed: Vec<f64> = match t.data_type {
            data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
            data_type::DOUBLE => t.double_data.clone(),
            data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
            data_type::INT32 => t.int32_data.iter().map(|&v| v as f64).collect(),
            _ => t
                .int32_data
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f64())
                .collect(),
        };
        if typed.len() != n {
            return Err(what(format!(
                "{} values for dimensions {dims:?}",
                typed.len()
            )));
        }
        typed
    };
    Ok(Arr { dims, data })
}

/// The `bytes` bytes of an external tensor, from the file its `location` names next to
/// the model, at its `offset`.
fn read_external(t: &TensorProto, path: &Path, bytes: usize) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let what = |msg: String| bad(path, format!("tensor `{}`: {msg}", t.name));
    let entry = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let location =
        entry("location").ok_or_else(|| what("external data without a location".into()))?;
    if Path::new(location).is_absolute() || location.split(['/', '\\']).any(|p| p == "..") {
        return Err(what(format!(
            "external data location `{location}` leaves the model's folder"
        )));
    }
    let parse = |k: &str| -> Result<u64> {
        entry(k).map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| what(format!("external data {k} `{v}`")))
        })
    };
    let (offset, length) = (parse("offset")?, parse("length")?);
    if length != 0 && length != bytes as u64 {
        return Err(what(format!(
            "external data of {length} bytes, expected {bytes}"
        )));
    }
    let file = path.parent().unwrap_or(Path::new(".")).join(location);
    let mut f = std::fs::File::open(&file).map_err(crate::io::io(&file))?;
    let size = f.metadata().map_err(crate::io::io(&file))?.len();
    if offset.saturating_add(bytes as u64) > size {
        return Err(what(format!(
            "external data at {offset} + {bytes} bytes passes the end of {} ({size} bytes)",
            file.display()
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(crate::io::io(&file))?;
    let mut buf = vec![0u8; bytes];
    f.read_exact(&mut buf).map_err(crate::io::io(&file))?;
    Ok(buf)
}
