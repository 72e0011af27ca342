//! Constants of an ONNX graph: initializers, `Constant` nodes, external data, and the
//! small constant expressions (Unsqueeze, Concat, Slice, Split, ...) exporters wrap
//! weights in, evaluated on import.

use std::collections::HashMap;
use std::path::Path;

use crate::error::Result;
use crate::io::bad;
use crate::io::onnx::{data_type, AttributeProto, GraphProto, NodeProto, TensorProto};

/// A constant: dims and values (f64 holds every f32 and the int64 axes and shapes).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Arr {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
}

pub(super) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The graph's constants by name: initializers, `Constant` nodes and what constant
/// expressions compute from them, each evaluated once.
pub(super) struct Consts<'a> {
    graph: &'a GraphProto,
    path: &'a Path,
    done: HashMap<String, Option<Arr>>,
    /// Where each name comes from: an initializer, or output k of node n.
    source: HashMap<&'a str, Source>,
    /// How deep the evaluation is: bounded, so a crafted chain cannot exhaust the stack.
    depth: usize,
    /// Values read from the file (and given as seeds), and values computed from them:
    /// the second is bounded by the first, so a crafted expression (a Concat of a Concat
    /// of ... the same weight) cannot grow past the file.
    read: usize,
    made: usize,
}

/// How many values the expressions may compute per value read (exporters' wrappers
/// compute a few copies of each weight), plus a small allowance.
const MADE_PER_READ: usize = 4;
const MADE_FREE: usize = 1 << 16;

#[derive(Clone, Copy)]
enum Source {
    Initializer(usize),
    Node(usize, usize),
}

/// The deepest constant expression read (exporters write a handful of levels).
const MAX_DEPTH: usize = 200;

impl<'a> Consts<'a> {
    pub fn new(graph: &'a GraphProto, path: &'a Path) -> Self {
        Self::seeded(graph, path, HashMap::new())
    }

    /// The constants of `graph` (a Loop body), where `seeds` gives the values of names
    /// from outside it: `Some` for the enclosing graph's constants, `None` for the rest.
    pub fn seeded(
        graph: &'a GraphProto,
        path: &'a Path,
        seeds: HashMap<String, Option<Arr>>,
    ) -> Self {
        let mut source = HashMap::new();
        for (n, node) in graph.node.iter().enumerate() {
            for (k, o) in node.output.iter().enumerate() {
                source.entry(o.as_str()).or_insert(Source::Node(n, k));
            }
        }
        // Initializers first, as before: they name the value where a node would too.
        for (i, t) in graph.initializer.iter().enumerate() {
            source.insert(t.name.as_str(), Source::Initializer(i));
        }
        let read = seeds
            .values()
            .map(|v| v.as_ref().map_or(0, |a| a.data.len()))
            .sum();
        Consts {
            graph,
            path,
            done: seeds,
            source,
            depth: 0,
            read,
            made: 0,
        }
    }

    /// The node computing `name` and which of its outputs it is (`None` for
    /// initializers and inputs).
    pub fn producer(&self, name: &str) -> Option<(&'a NodeProto, usize)> {
        match self.source.get(name)? {
            Source::Node(n, k) => Some((&self.graph.node[*n], *k)),
            Source::Initializer(_) => None,
        }
    }

    /// How many values were read from the file (and given as seeds) so far.
    pub fn values_read(&self) -> usize {
        self.read
    }

    /// How many nodes the graph holds: the bound of any walk back through it.
    pub fn node_count(&self) -> usize {
        self.graph.node.len()
    }

    /// The constant `name`, or `None` where it depends on a graph input.
    pub fn get(&mut self, name: &str) -> Result<Option<Arr>> {
        if let Some(v) = self.done.get(name) {
            return Ok(v.clone());
        }
        if self.depth >= MAX_DEPTH {
            return Err(bad(
                self.path,
                format!("`{name}` is a constant expression deeper than {MAX_DEPTH} nodes"),
            ));
        }
        // Marked first: a cycle reads as "not constant".
        self.done.insert(name.into(), None);
        let graph = self.graph;
        self.depth += 1;
        let value = match self.source.get(name).copied() {
            Some(Source::Initializer(i)) => tensor(&graph.initializer[i], self.path).map(|t| {
                self.read += t.data.len();
                Some(t)
            }),
            Some(Source::Node(n, k)) => self.eval(&graph.node[n], k),
            None => Ok(None),
        };
        self.depth -= 1;
        let value = value?;
        self.done.insert(name.into(), value.clone());
        Ok(value)
    }

    /// A node's output `k`, where it is one of the shape ops exporters wrap weights in
    /// and its inputs are constants.
    fn eval(&mut self, node: &NodeProto, k: usize) -> Result<Option<Arr>> {
        let op = node.op_type.as_str();
        if op == "Constant" {
            return match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => {
                    let t = tensor(t, self.path)?;
                    self.read += t.data.len();
                    Ok(Some(t))
                }
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
                | "Split"
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
            "Identity" => x,
            "Cast" => {
                let to = attr(node, "to")
                    .map(|a| a.i)
                    .ok_or_else(|| bad_op("no `to` type"))?;
                cast(x, to).map_err(|m| bad_op(&m))?
            }
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
            "Split" => {
                let a = axis(attr(node, "axis").map_or(0, |a| a.i), rank);
                let d = *x.dims.get(a).ok_or_else(|| bad_op("axis past the rank"))?;
                let parts = node.output.len().max(1);
                let sizes: Vec<usize> = match ints_of(1, "split") {
                    Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
                    None if d % parts == 0 => vec![d / parts; parts],
                    None => return Err(bad_op("axis does not split evenly")),
                };
                if sizes.len() != parts || sizes.iter().sum::<usize>() != d {
                    return Err(bad_op("split sizes do not add up to the axis"));
                }
                let from: usize = sizes[..k].iter().sum();
                let mut ranges: Vec<(usize, usize)> = x.dims.iter().map(|&d| (0, d)).collect();
                ranges[a] = (from, from + sizes[k]);
                slice(&x, &ranges)
            }
            _ => return Ok(None),
        };
        self.made += out.data.len();
        if self.made > MADE_PER_READ * self.read + MADE_FREE {
            return Err(bad(
                self.path,
                format!(
                    "constant expressions compute more values than the file holds ({} from {} read, at {op} node `{}`)",
                    self.made, self.read, node.name
                ),
            ));
        }
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

pub(super) fn transpose(x: &Arr, perm: &[usize]) -> Arr {
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

pub(super) fn slice(x: &Arr, ranges: &[(usize, usize)]) -> Arr {
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
    // Weights gru-engine computes with are f32: NaN, inf and values past f32 (a double
    // 1e300) would become non-finite weights.
    if matches!(
        t.data_type,
        data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16
    ) {
        if let Some(i) = data
            .iter()
            .position(|v| !(v.is_finite() && v.abs() <= f32::MAX as f64))
        {
            return Err(what(format!(
                "value {:e} at index {i} is not a finite f32 (weights must be finite)",
                data[i]
            )));
        }
    }
    Ok(Arr { dims, data })
}

/// The `bytes` bytes of an external tensor, from the file its `location` names next to
/// the model, at its `offset`. As ONNX Runtime's external-data rules intend, the
/// location must resolve (symbolic links followed) to a regular file inside the model's
/// folder: not a path out of it, a link out of it, a FIFO or a device. The bytes are
/// allocated only after the file is known to hold them and the process can hold them
/// (with the values they become).
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
    if location.is_empty() {
        return Err(what("external data with an empty location".into()));
    }
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
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file = folder.join(location);
    // The real paths, links resolved (stat only: nothing is opened yet, so a FIFO
    // cannot block here).
    let real_folder = std::fs::canonicalize(folder).map_err(crate::io::io(folder))?;
    let real = std::fs::canonicalize(&file).map_err(crate::io::io(&file))?;
    if !real.starts_with(&real_folder) {
        return Err(what(format!(
            "external data location `{location}` is a link to {}, outside the model's folder",
            real.display()
        )));
    }
    let meta = std::fs::metadata(&real).map_err(crate::io::io(&file))?;
    if !meta.is_file() {
        return Err(what(format!(
            "external data location `{location}` is not a regular file ({})",
            file_kind(&meta)
        )));
    }
    let size = meta.len();
    if offset.saturating_add(bytes as u64) > size {
        return Err(what(format!(
            "external data at {offset} + {bytes} bytes passes the end of {} ({size} bytes)",
            file.display()
        )));
    }
    // The bytes, and the f64 values they become.
    let values = (bytes as u64 / t_width(t)).saturating_mul(8);
    crate::memory::check_host_bytes(
        &format!("tensor `{}` of {}", t.name, path.display()),
        (bytes as u64).saturating_add(values),
        "the file's external data is larger than this machine can read",
    )?;
    let mut f = std::fs::File::open(&real).map_err(crate::io::io(&file))?;
    // Checked again on what was opened, in case the file was swapped since.
    if !f.metadata().map_err(crate::io::io(&file))?.is_file() {
        return Err(what(format!(
            "external data location `{location}` is not a regular file"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(crate::io::io(&file))?;
    let mut buf = crate::memory::try_with_capacity::<u8>(bytes, &format!("tensor `{}`", t.name))?;
    (&mut f)
        .take(bytes as u64)
        .read_to_end(&mut buf)
        .map_err(crate::io::io(&file))?;
    if buf.len() != bytes {
        return Err(what(format!(
            "external data ends after {} of {bytes} bytes",
            buf.len()
        )));
    }
    Ok(buf)
}

/// `x` converted as ONNX's Cast to data type `to` converts it: to float16 rounded, to
/// an integer type truncated toward zero (and wrapped to its width), to bool 0 or 1; a
/// type that is not ONNX's, or one weights cannot be (strings, complex numbers, 8- and
/// 4-bit floats), is an error.
fn cast(mut x: Arr, to: i64) -> std::result::Result<Arr, String> {
    let ints = |bits: u32, signed: bool, v: f64| -> f64 {
        if !v.is_finite() {
            return 0.0;
        }
        let t = v.trunc();
        let m = 2f64.powi(bits as i32);
        let w = t.rem_euclid(m);
        if signed && w >= m / 2.0 {
            w - m
        } else {
            w
        }
    };
    let f: Box<dyn Fn(f64) -> f64> = match to {
        // float, double
        1 => Box::new(|v| v as f32 as f64),
        11 => Box::new(|v| v),
        10 => Box::new(|v| half::f16::from_f64(v).to_f64()),
        16 => Box::new(|v| half::bf16::from_f64(v).to_f64()),
        2 => Box::new(move |v| ints(8, false, v)),
        3 => Box::new(move |v| ints(8, true, v)),
        4 => Box::new(move |v| ints(16, false, v)),
        5 => Box::new(move |v| ints(16, true, v)),
        // int32, int64, uint32, uint64: shapes and indices, within f64's exact integers.
        6 => Box::new(move |v| ints(32, true, v)),
        12 => Box::new(move |v| ints(32, false, v)),
        7 | 13 => Box::new(|v| if v.is_finite() { v.trunc() } else { 0.0 }),
        9 => Box::new(|v| if v != 0.0 { 1.0 } else { 0.0 }),
        8 | 14 | 15 | 17..=23 => {
            return Err(format!(
                "casts to ONNX data type {to}, which weights are not read as"
            ))
        }
        _ => return Err(format!("`to` = {to} is not an ONNX data type")),
    };
    x.data.iter_mut().for_each(|v| *v = f(*v));
    Ok(x)
}

/// Bytes per value of a tensor's data type (1 where unknown: never 0).
fn t_width(t: &TensorProto) -> u64 {
    match t.data_type {
        data_type::DOUBLE | data_type::INT64 => 8,
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::FLOAT16 => 2,
        _ => 1,
    }
}

/// What a file that is not a regular file is, in words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}
