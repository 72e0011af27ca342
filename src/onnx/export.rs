//! ONNX export: a model's graph, its GRU nodes, head and metadata.

use std::path::Path;

use crate::checkpoint::SavePrecision;
use crate::config::GruVariant;
use crate::error::Result;
use crate::io::f16_bytes;
use crate::io::onnx::{
    attribute_type, data_type, write_model, AttributeProto, DimValue, Dimension, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, TypeValue, ValueInfoProto,
};
use crate::model::{Head, Loss, ModelInput, ModelParams};
use crate::weights::GruWeights;

use super::gates::swap_rz;

/// The opset the graphs use (GRU's `layout` and today's Softmax semantics).
pub const OPSET: i64 = 14;

/// What an export adds to the model's graph.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// A `lengths` input (int32 `[batch]`) passed to every GRU as `sequence_lens`: per-row
    /// valid steps, as a classifier over padded rows needs (tract runs only full rows).
    pub lengths: bool,
    /// Per-layer inputs `h0_l{k}` (float [directions, batch, H]) passed to the GRUs as
    /// `initial_h`, for stateful use: feeding each output `h_n_l{k}` back continues the
    /// sequence (generation step by step, a stream in chunks). Without it the GRUs start
    /// from zeros.
    pub initial_state: bool,
    /// A `probabilities` output beside the logits: softmax for cross-entropy models,
    /// sigmoid for binary ones.
    pub probabilities: bool,
    /// Key/value pairs for the model's `metadata_props` (vocabulary, labels,
    /// normalisation), so a consumer can prepare inputs.
    pub metadata: Vec<(String, String)>,
    /// How the initializers store the weights: f32, or float16 (half the file), each
    /// widened by a `Cast` to float where the graph starts, so that the graph computes
    /// in f32 as before and every runtime runs it.
    pub precision: SavePrecision,
}

/// Writes `params` as an ONNX model at `path`; with float16 initializers a value past
/// f16's range (65,504) is refused with its tensor's name.
pub fn export(params: &ModelParams, options: &ExportOptions, path: &Path) -> Result<()> {
    if options.precision == SavePrecision::F16 {
        for (info, values) in params.infos().iter().zip(params.tensors()) {
            f16_bytes(&info.name, values)?;
        }
    }
    write_model(path, &to_onnx(params, options))
}

/// The ONNX model of `params`. Inputs (batch-first, batch and time dynamic): `tokens`
/// (int64 [batch, time]) or `features` (float [batch, time, I]), `lengths` when asked,
/// and each layer's initial state `h0_l{k}` ([directions, batch, H]) when asked.
/// Outputs: `logits` ([batch, time, C] per step, or [batch, C] from the last valid
/// state), `probabilities` when asked, and each layer's final state `h_n_l{k}`
/// ([directions, batch, H]).
pub fn to_onnx(params: &ModelParams, options: &ExportOptions) -> ModelProto {
    let cfg = params.config;
    let gru = cfg.gru_config();
    let (h, nd) = (cfg.hidden_size, gru.num_directions());
    let mut g = Graph::new(options.precision);
    let batch_time = [Dim::Param("batch"), Dim::Param("time")];
    let x = match cfg.input {
        ModelInput::Tokens { vocab, embed_dim } => {
            g.input("tokens", data_type::INT64, &batch_time);
            g.weight(
                "embedding.weight",
                &[vocab, embed_dim],
                params.embedding.clone(),
            );
            g.node(
                "Gather",
                &["embedding.weight", "tokens"],
                &["embedded"],
                vec![int("axis", 0)],
            );
            "embedded".to_string()
        }
        ModelInput::Features(n) => {
            let dims = [Dim::Param("batch"), Dim::Param("time"), Dim::Value(n)];
            g.input("features", data_type::FLOAT, &dims);
            "features".to_string()
        }
    };
    if options.lengths {
        g.input("lengths", data_type::INT32, &[Dim::Param("batch")]);
    }
    // Time-major for the GRU nodes (layout 0, which every runtime takes).
    g.node(
        "Transpose",
        &[&x],
        &["x_l0"],
        vec![ints("perm", &[1, 0, 2])],
    );
    let lens = if options.lengths { "lengths" } else { "" };
    let h0 = |g: &mut Graph, l: usize| {
        if !options.initial_state {
            return String::new();
        }
        let name = format!("h0_l{l}");
        let dims = [Dim::Value(nd), Dim::Param("batch"), Dim::Value(h)];
        g.input(&name, data_type::FLOAT, &dims);
        name
    };
    let layer_in = gru_stack(&mut g, &params.gru, "x_l0", lens, &h0);
    let top = layer_in;
    let f = cfg.head_input_size();
    g.weight("fc.bias", &[cfg.outputs], params.fc_bias.clone());
    let logits_dims = match cfg.head {
        Head::EveryStep => {
            // [T, B, F] -> [B, T, F] · fc.weightᵀ + fc.bias
            g.weight(
                "fc.weight_t",
                &[f, cfg.outputs],
                transpose(&params.fc_weight, cfg.outputs, f),
            );
            g.node(
                "Transpose",
                &[&top],
                &["head_in"],
                vec![ints("perm", &[1, 0, 2])],
            );
            g.node("MatMul", &["head_in", "fc.weight_t"], &["head_mm"], vec![]);
            g.node("Add", &["head_mm", "fc.bias"], &["logits"], vec![]);
            vec![
                Dim::Param("batch"),
                Dim::Param("time"),
                Dim::Value(cfg.outputs),
            ]
        }
        Head::LastState => {
            // The top layer's final states [dirs, B, H] -> [B, dirs·H], then Gemm.
            let last = format!("h_n_l{}", cfg.num_layers - 1);
            g.weight("fc.weight", &[cfg.outputs, f], params.fc_weight.clone());
            g.shape_const("flatten_rows", &[0, -1]);
            g.node(
                "Transpose",
                &[&last],
                &["h_n_t"],
                vec![ints("perm", &[1, 0, 2])],
            );
            g.node("Reshape", &["h_n_t", "flatten_rows"], &["head_in"], vec![]);
            g.node(
                "Gemm",
                &["head_in", "fc.weight", "fc.bias"],
                &["logits"],
                vec![int("transB", 1)],
            );
            vec![Dim::Param("batch"), Dim::Value(cfg.outputs)]
        }
    };
    g.output("logits", &logits_dims);
    if options.probabilities && cfg.loss != Loss::MeanSquaredError {
        let op = if cfg.loss == Loss::BinaryCrossEntropy {
            "Sigmoid"
        } else {
            "Softmax"
        };
        let attrs = if op == "Softmax" {
            vec![int("axis", -1)]
        } else {
            vec![]
        };
        g.node(op, &["logits"], &["probabilities"], attrs);
        g.output("probabilities", &logits_dims);
    }
    for l in 0..cfg.num_layers {
        let dims = [Dim::Value(nd), Dim::Param("batch"), Dim::Value(h)];
        g.output(&format!("h_n_l{l}"), &dims);
    }
    let mut metadata = vec![(
        "gru_engine.config".to_string(),
        serde_json::to_string(&cfg).unwrap_or_default(),
    )];
    metadata.extend(options.metadata.iter().cloned());
    model(g, metadata)
}

/// Appends the GRU nodes of `gru` to `g`, the first reading `x` ([T, B, I]) with the
/// per-row `lens` (or ""), layer l starting from the value `h0(g, l)` names (or ""
/// for zeros). Layer l's final state is `h_n_l{l}` ([directions, B, H]); returns the
/// top layer's output, [T, B, directions·H].
fn gru_stack(
    g: &mut Graph,
    gru: &GruWeights,
    x: &str,
    lens: &str,
    h0: &dyn Fn(&mut Graph, usize) -> String,
) -> String {
    let cfg = gru.config;
    let (h, nd) = (cfg.hidden_size, cfg.num_directions());
    g.shape_const("flatten_directions", &[0, 0, -1]);
    let mut layer_in = x.to_string();
    for l in 0..cfg.num_layers {
        let dirs = &gru.dirs[l * nd..(l + 1) * nd];
        let i = cfg.layer_input_size(l);
        let w: Vec<f32> = dirs.iter().flat_map(|d| swap_rz(&d.w_ih, h * i)).collect();
        let r: Vec<f32> = dirs.iter().flat_map(|d| swap_rz(&d.w_hh, h * h)).collect();
        let b: Vec<f32> = dirs
            .iter()
            .flat_map(|d| swap_rz(&d.b_ih, h).into_iter().chain(swap_rz(&d.b_hh, h)))
            .collect();
        let (wn, rn, bn) = (format!("W_l{l}"), format!("R_l{l}"), format!("B_l{l}"));
        g.weight(&wn, &[nd, 3 * h, i], w);
        g.weight(&rn, &[nd, 3 * h, h], r);
        g.weight(&bn, &[nd, 6 * h], b);
        let h0 = h0(g, l);
        let (y, y_h) = (format!("y_l{l}"), format!("h_n_l{l}"));
        let direction = if nd == 2 { "bidirectional" } else { "forward" };
        let before_reset = (cfg.variant == GruVariant::ResetAfter) as i64;
        g.node(
            "GRU",
            &[&layer_in, &wn, &rn, &bn, lens, &h0],
            &[&y, &y_h],
            vec![
                int("hidden_size", h as i64),
                string("direction", direction),
                int("linear_before_reset", before_reset),
            ],
        );
        // Y [T, dirs, B, H] -> [T, B, dirs·H], the next layer's input.
        let (yt, next) = (format!("y_l{l}_t"), format!("x_l{}", l + 1));
        g.node(
            "Transpose",
            &[&y],
            &[&yt],
            vec![ints("perm", &[0, 2, 1, 3])],
        );
        g.node("Reshape", &[&yt, "flatten_directions"], &[&next], vec![]);
        layer_in = next;
    }
    layer_in
}

/// A GRU stack alone as an ONNX model, with `nn.GRU`'s interface (time-major, batch
/// and time dynamic): input `input` (float [time, batch, I]), `lengths` (int32 `[batch]`)
/// with `options.lengths`, `h0` (float [layers·directions, batch, H]) with
/// `options.initial_state`; outputs `output` ([time, batch, directions·H]) and `h_n`
/// ([layers·directions, batch, H]). `probabilities` and `metadata` do not apply.
///
/// ```
/// use gru_engine::onnx::{gru_from_onnx, gru_to_onnx, ExportOptions};
/// use gru_engine::io::onnx::write_model;
/// use gru_engine::{GruConfig, GruWeights};
/// # fn main() -> gru_engine::Result<()> {
/// let w = GruWeights::init(GruConfig::new(3, 4).layers(2).bidirectional(true), 1);
/// let path = std::env::temp_dir().join("gru_layer_doc.onnx");
/// write_model(&path, &gru_to_onnx(&w, &ExportOptions::default()))?;
/// assert_eq!(gru_from_onnx(&path)?, w);
/// # Ok(()) }
/// ```
pub fn gru_to_onnx(weights: &GruWeights, options: &ExportOptions) -> ModelProto {
    let cfg = weights.config;
    let (h, nd, ld) = (
        cfg.hidden_size,
        cfg.num_directions(),
        cfg.num_layers * cfg.num_directions(),
    );
    let mut g = Graph::new(options.precision);
    let dims = [
        Dim::Param("time"),
        Dim::Param("batch"),
        Dim::Value(cfg.input_size),
    ];
    g.input("input", data_type::FLOAT, &dims);
    if options.lengths {
        g.input("lengths", data_type::INT32, &[Dim::Param("batch")]);
    }
    if options.initial_state {
        let dims = [Dim::Value(ld), Dim::Param("batch"), Dim::Value(h)];
        g.input("h0", data_type::FLOAT, &dims);
    }
    let lens = if options.lengths { "lengths" } else { "" };
    // Layer l starts from h0[l·dirs .. (l+1)·dirs].
    let h0 = |g: &mut Graph, l: usize| {
        if !options.initial_state {
            return String::new();
        }
        let (from, to, axis) = (
            format!("h0_from_l{l}"),
            format!("h0_to_l{l}"),
            format!("h0_axis_l{l}"),
        );
        g.shape_const(&from, &[(l * nd) as i64]);
        g.shape_const(&to, &[((l + 1) * nd) as i64]);
        g.shape_const(&axis, &[0]);
        let name = format!("h0_l{l}");
        g.node("Slice", &["h0", &from, &to, &axis], &[&name], vec![]);
        name
    };
    let top = gru_stack(&mut g, weights, "input", lens, &h0);
    g.node("Identity", &[&top], &["output"], vec![]);
    let finals: Vec<String> = (0..cfg.num_layers).map(|l| format!("h_n_l{l}")).collect();
    let finals: Vec<&str> = finals.iter().map(String::as_str).collect();
    g.node("Concat", &finals, &["h_n"], vec![int("axis", 0)]);
    let out = [Dim::Param("time"), Dim::Param("batch"), Dim::Value(nd * h)];
    g.output("output", &out);
    g.output("h_n", &[Dim::Value(ld), Dim::Param("batch"), Dim::Value(h)]);
    model(g, vec![])
}

/// A model of graph `g` with `metadata`, at [`OPSET`].
fn model(g: Graph, metadata: Vec<(String, String)>) -> ModelProto {
    ModelProto {
        ir_version: 7,
        producer_name: "gru-engine".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(g.finish("gru_engine")),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
}

/// `m` [rows, cols] row-major as [cols, rows].
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

enum Dim {
    Value(usize),
    Param(&'static str),
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

/// A graph being built: nodes in order, initializers, inputs and outputs.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    /// Initializers stored as float16, each widened by one of `casts`.
    f16: bool,
    casts: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        let name = format!("{op}_{}", self.nodes.len());
        // Optional inputs left out at the end are dropped, not passed as "".
        let used = inputs.len() - inputs.iter().rev().take_while(|s| s.is_empty()).count();
        self.nodes.push(NodeProto {
            input: inputs[..used].iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
    }

    /// The graph's builder; `f16`: weights stored as float16 initializers.
    fn new(precision: SavePrecision) -> Self {
        Graph {
            f16: precision == SavePrecision::F16,
            ..Default::default()
        }
    }

    /// An f32 weight `name`: an f32 initializer, little-endian in `raw_data`; or a
    /// float16 initializer `name_f16` (rounded to nearest; `export` has refused values
    /// past its range) and a Cast to float named `name`, recorded before every node.
    fn weight(&mut self, name: &str, dims: &[usize], data: Vec<f32>) {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        if !self.f16 {
            self.inits.push(TensorProto {
                dims,
                data_type: data_type::FLOAT,
                name: name.into(),
                raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            return;
        }
        let stored = format!("{name}_f16");
        self.inits.push(TensorProto {
            dims,
            data_type: data_type::FLOAT16,
            name: stored.clone(),
            raw_data: data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            ..Default::default()
        });
        self.casts.push(NodeProto {
            input: vec![stored],
            output: vec![name.into()],
            name: format!("Cast_{name}"),
            op_type: "Cast".into(),
            attribute: vec![int("to", data_type::FLOAT as i64)],
            ..Default::default()
        });
    }

    /// An int64 initializer holding a Reshape target.
    fn shape_const(&mut self, name: &str, shape: &[i64]) {
        self.inits.push(TensorProto {
            dims: vec![shape.len() as i64],
            data_type: data_type::INT64,
            name: name.into(),
            int64_data: shape.to_vec(),
            ..Default::default()
        });
    }

    fn value(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Value(v) => DimValue::DimValue(*v as i64),
                    Dim::Param(p) => DimValue::DimParam(p.to_string()),
                }),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(TypeValue::TensorType(TensorTypeProto {
                    elem_type,
                    shape: Some(TensorShapeProto { dim }),
                })),
            }),
            ..Default::default()
        }
    }

    fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.inputs.push(Self::value(name, elem_type, dims));
    }

    fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(Self::value(name, data_type::FLOAT, dims));
    }

    fn finish(self, name: &str) -> GraphProto {
        GraphProto {
            node: self.casts.into_iter().chain(self.nodes).collect(),
            name: name.into(),
            initializer: self.inits,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}
