//! ONNX import: the GRU nodes of a model, as PyTorch's `torch.onnx.export` and tf2onnx
//! write them, and the Loops tf2onnx writes for the Keras GRUs it does not turn into
//! nodes, as gru-engine weights. The GRU nodes' `W`, `R` and `B` inputs are
//! initializers, `Constant` nodes, or small constant expressions over them (the
//! Unsqueeze, Concat, Slice, ... an exporter wraps weights in), evaluated here.

use std::collections::HashSet;
use std::path::Path;

use crate::config::{GruConfig, GruVariant};
use crate::error::Result;
use crate::io::bad;
use crate::io::onnx::{read_model, GraphProto, NodeProto};
use crate::weights::{DirWeights, GruWeights};

use super::consts::{attr, Arr, Consts};
use super::gates::swap_rz;
use super::loop_pairs::{concatenated, reads, Reads};
use super::loop_step::{loop_layer, LoopLayer, LOOP_HINT};

/// Refuses a graph (or any subgraph) whose names are ambiguous: two initializers of one
/// name (which would win?), two producers of one value, or a node that reads its own
/// output.
fn check_names(graph: &GraphProto, path: &Path) -> Result<()> {
    let mut inits = HashSet::new();
    for t in &graph.initializer {
        if !inits.insert(t.name.as_str()) {
            return Err(bad(
                path,
                format!("the initializer `{}` is defined twice", t.name),
            ));
        }
    }
    let mut made = HashSet::new();
    for n in &graph.node {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if !made.insert(o.as_str()) {
                return Err(bad(
                    path,
                    format!(
                        "the value `{o}` is computed by two nodes (the second: {} `{}`)",
                        n.op_type, n.name
                    ),
                ));
            }
            if n.input.contains(o) {
                return Err(bad(
                    path,
                    format!("{} node `{}` reads its own output `{o}`", n.op_type, n.name),
                ));
            }
        }
        for a in &n.attribute {
            for g in a.g.iter() {
                check_names(g, path)?;
            }
        }
    }
    Ok(())
}

/// The GRU layers of the ONNX model at `path`, in graph order, as one stack: every GRU
/// node must run forward or both ways with the standard activations, every Loop must be
/// a forward GRU step (as tf2onnx writes Keras layers it does not turn into GRU nodes),
/// and layer k + 1 must read layer k's directions·H features. Errors name the node and
/// what it holds.
pub fn gru_from_onnx(path: &Path) -> Result<GruWeights> {
    let model = read_model(path)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad(path, "the ONNX model has no graph"))?;
    check_names(graph, path)?;
    let mut consts = Consts::new(graph, path);
    let mut layers: Vec<Layer> = Vec::new();
    // The last layer when it is a forward Loop, which a reversed one may pair with.
    let mut forward: Option<LoopLayer> = None;
    for node in &graph.node {
        match node.op_type.as_str() {
            "GRU" => {
                layers.push(gru_node(node, &mut consts, path)?);
                forward = None;
            }
            "Loop" => {
                let l = loop_layer(node, &mut consts, path)?;
                let what = |msg: &str| {
                    bad(
                        path,
                        format!("Loop node `{}`: {msg}; {LOOP_HINT}", node.name),
                    )
                };
                match reads(&l.seq, &mut consts)? {
                    Reads::Forward => {
                        layers.push(Layer {
                            kind: "Loop node",
                            name: node.name.clone(),
                            input: l.input,
                            hidden: l.hidden,
                            nd: 1,
                            variant: l.variant,
                            bias: l.bias,
                            dirs: vec![l.dir.clone()],
                        });
                        forward = Some(l);
                    }
                    Reads::Reversed(source) => {
                        let (Some(f), Some(layer)) = (forward.take(), layers.last_mut()) else {
                            return Err(what("it reads its sequence reversed (go_backwards) with no forward Loop just before it to pair with as a bidirectional layer"));
                        };
                        if f.seq != source {
                            return Err(what("it reads reversed a sequence other than the one the forward Loop before it reads"));
                        }
                        if (f.input, f.hidden, f.variant) != (l.input, l.hidden, l.variant) {
                            return Err(what(
                                "its sizes or variant differ from the forward Loop before it",
                            ));
                        }
                        if !concatenated(graph, &f, &l, &mut consts)? {
                            return Err(what("its output and the forward Loop's do not meet in a Concat, forward first, as Keras' Bidirectional(merge_mode=\"concat\") writes"));
                        }
                        layer.nd = 2;
                        layer.bias |= l.bias;
                        layer.dirs.push(l.dir);
                    }
                    Reads::Other => {
                        return Err(what(
                            "the sequence it reads is reversed in part or by a Slice",
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    let Some(first) = layers.first() else {
        let has = |op: &str| graph.node.iter().any(|n| n.op_type == op);
        let unrolled = has("Sigmoid") && has("Tanh") && has("MatMul");
        return Err(bad(
            path,
            if unrolled {
                "the ONNX graph holds no GRU node (nor a Loop computing one), but Sigmoid, Tanh and MatMul ops: a recurrence unrolled step by step, as Keras 3 on the torch backend exports, is not read; save the layer's weights and use --format keras"
            } else {
                "the ONNX graph holds no GRU node (nor a Loop computing one)"
            },
        ));
    };
    let (h, nd, variant) = (first.hidden, first.nd, first.variant);
    for (k, l) in layers.iter().enumerate() {
        let what = |msg: String| bad(path, format!("{} `{}`: {msg}", l.kind, l.name));
        if (l.hidden, l.nd, l.variant) != (h, nd, variant) {
            return Err(what(format!(
                "hidden size {}, {} direction(s), {:?}, where the first layer has {h}, {nd}, {variant:?}: gru-engine stacks equal layers",
                l.hidden, l.nd, l.variant
            )));
        }
        if k > 0 && l.input != nd * h {
            return Err(what(format!(
                "reads {} features, expected the layer below's {}",
                l.input,
                nd * h
            )));
        }
    }
    let cfg = GruConfig::new(first.input, h)
        .layers(layers.len())
        .bidirectional(nd == 2)
        .variant(variant)
        .bias(layers.iter().any(|l| l.bias));
    cfg.validate().map_err(|e| bad(path, e.to_string()))?;
    let mut weights = GruWeights::zeros(cfg);
    for (slot, dir) in weights
        .dirs
        .iter_mut()
        .zip(layers.into_iter().flat_map(|l| l.dirs))
    {
        *slot = dir;
    }
    Ok(weights)
}

/// One layer read from the graph, in gru-engine's layout.
struct Layer {
    /// "GRU node" or "Loop node", and the node's name, for errors.
    kind: &'static str,
    name: String,
    input: usize,
    hidden: usize,
    nd: usize,
    variant: GruVariant,
    bias: bool,
    dirs: Vec<DirWeights>,
}

/// A GRU node's layer: its attributes checked, `W`, `R` and `B` read as constants.
fn gru_node(node: &NodeProto, consts: &mut Consts, path: &Path) -> Result<Layer> {
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
    let w = need(1, "W", consts)?;
    let r = need(2, "R", consts)?;
    let b = match input(3) {
        Some(_) => Some(need(3, "B", consts)?),
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
    let i = w.dims[2];
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let dirs = (0..nd)
        .map(|d| {
            let wd = f32s(&w.data[d * 3 * h * i..(d + 1) * 3 * h * i]);
            let rd = f32s(&r.data[d * 3 * h * h..(d + 1) * 3 * h * h]);
            let (b_ih, b_hh) = match &b {
                Some(b) => {
                    let bd = f32s(&b.data[d * 6 * h..(d + 1) * 6 * h]);
                    (swap_rz(&bd[..3 * h], h), swap_rz(&bd[3 * h..], h))
                }
                None => (vec![0.0; 3 * h], vec![0.0; 3 * h]),
            };
            DirWeights {
                w_ih: swap_rz(&wd, h * i),
                w_hh: swap_rz(&rd, h * h),
                b_ih,
                b_hh,
            }
        })
        .collect();
    Ok(Layer {
        kind: "GRU node",
        name: name.to_string(),
        input: i,
        hidden: h,
        nd,
        variant,
        bias: b.is_some(),
        dirs,
    })
}
