//! ONNX import (`gru_engine::onnx::gru_from_onnx`, `gru import`, `gru forward --format
//! onnx`) against golden fixtures: GRUs exported by `torch.onnx.export` (packed
//! sequences included), by tf2onnx from Keras 2 (GRU nodes, and Loops for
//! reset_after=False) and by Keras 3's own export (Loops), written by
//! scripts/make_onnx_fixtures.py with the tool versions in each model's metadata_props,
//! run by gru-engine, give ONNX Runtime's outputs within 1e-5 on the CPU reference and on
//! the GPU. What gru-engine cannot compute is refused by name.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gru_engine::io::onnx::{read_model, write_model, AttributeProto};
use gru_engine::io::read_tensors;
use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
use gru_engine::onnx::{gru_from_onnx, gru_to_onnx, to_onnx, ExportOptions};
use gru_engine::*;

const CASES: [&str; 15] = [
    "torch_1_layer",
    "torch_2_layers",
    "torch_3_layers_bidirectional",
    "torch_bidirectional_no_bias",
    "torch_packed_lengths_bidirectional",
    "torch_dynamo_2_layers_bidirectional",
    "keras_2_layers_initial_state",
    "keras_bidirectional",
    "keras_reset_before_2_layers",
    "keras3_reset_after",
    "keras3_reset_before_no_bias",
    "keras3_bidirectional_2_layers",
    "keras3_bidirectional_last_state",
    "keras3_masked",
    "keras3_masked_bidirectional_reset_before",
];

fn fixture(name: &str, ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/onnx/{name}.{ext}"))
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs ONNX Runtime {w}"
        );
    }
}

#[test]
fn pytorch_and_keras_exports_give_onnx_runtimes_outputs() {
    let ctx = gpu();
    for name in CASES {
        let w = gru_from_onnx(&fixture(name, "onnx")).unwrap();
        let t = read_tensors(&fixture(name, "npz"), false).unwrap();
        let (x, h0) = (&t["input"], &t["h0"]);
        let (t_len, b) = (x.shape[0], x.shape[1]);
        let lengths: Option<Vec<usize>> = t
            .get("lengths")
            .map(|l| l.data.iter().map(|&v| v as usize).collect());
        let mut seq = SequenceInput::new(&x.data, t_len, b).h0(&h0.data);
        if let Some(l) = &lengths {
            seq = seq.lengths(l);
        }
        // A model that returns only final states has no `output` to compare.
        let output = t.get("output").map(|o| o.data.as_slice());
        let f = cpu::forward(&w, &seq).unwrap();
        if let Some(want) = output {
            close(&format!("{name} output (CPU)"), &f.output, want);
        }
        close(&format!("{name} h_n (CPU)"), &f.h_n, &t["h_n"].data);
        if let Some(ctx) = &ctx {
            let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
            g.forward(&seq).unwrap();
            if let Some(want) = output {
                close(
                    &format!("{name} output (GPU)"),
                    &g.read_output().unwrap(),
                    want,
                );
            }
            close(
                &format!("{name} h_n (GPU)"),
                &g.read_h_n().unwrap(),
                &t["h_n"].data,
            );
        }
    }
    // What the fixtures hold: bias off where exported without, 3 bidirectional layers,
    // rows shorter than the sequence, Keras' reset-after layers.
    let w = gru_from_onnx(&fixture("torch_3_layers_bidirectional", "onnx")).unwrap();
    assert_eq!((w.config.num_layers, w.config.bidirectional), (3, true));
    let w = gru_from_onnx(&fixture("torch_bidirectional_no_bias", "onnx")).unwrap();
    assert!(!w.config.bias);
    let t = read_tensors(&fixture("torch_packed_lengths_bidirectional", "npz"), false).unwrap();
    assert!(t["lengths"]
        .data
        .iter()
        .any(|&l| (l as usize) < t["input"].shape[0]));
    let w = gru_from_onnx(&fixture("keras_2_layers_initial_state", "onnx")).unwrap();
    assert_eq!(w.config.num_layers, 2);
    assert_eq!(w.config.variant, config::GruVariant::ResetAfter);
    assert!(w.dirs.iter().all(|d| d.b_hh.iter().any(|&v| v != 0.0)));
}

/// The Loops Keras exports hold read as what they compute: variant, bias or none,
/// layers, and the versions of the tools that wrote them.
#[test]
fn keras_loops_read_as_their_layers() {
    let w = gru_from_onnx(&fixture("keras_reset_before_2_layers", "onnx")).unwrap();
    assert_eq!(w.config.num_layers, 2);
    assert_eq!(w.config.variant, config::GruVariant::ResetBefore);
    assert!(w.config.bias && w.dirs.iter().all(|d| d.b_ih.iter().all(|&v| v != 0.0)));
    let w = gru_from_onnx(&fixture("keras3_reset_before_no_bias", "onnx")).unwrap();
    assert_eq!(w.config.variant, config::GruVariant::ResetBefore);
    assert!(!w.config.bias);
    let w = gru_from_onnx(&fixture("keras3_reset_after", "onnx")).unwrap();
    assert_eq!(w.config.variant, config::GruVariant::ResetAfter);
    let h = w.config.hidden_size;
    assert!(w.dirs[0].b_hh[2 * h..].iter().all(|&v| v != 0.0));
    let m = read_model(&fixture("keras3_reset_after", "onnx")).unwrap();
    let meta = |k: &str| {
        m.metadata_props
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.value.clone())
    };
    assert!(
        meta("keras_version").is_some_and(|v| v.starts_with('3')),
        "{:?}",
        meta("keras_version")
    );
    assert!(meta("tf2onnx_version").is_some());
}

/// A Loop that reads its sequence reversed with no forward Loop to pair with (Keras'
/// go_backwards), a Bidirectional layer whose directions are summed, and a Loop whose
/// step is not a GRU's (another activation in place of tanh or sigmoid, a changed
/// update) are refused, naming the reason.
#[test]
fn loops_that_are_not_grus_are_refused() {
    let e = gru_from_onnx(&fixture("keras3_go_backwards_refused", "onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reads its sequence reversed") && e.contains("--format keras"),
        "{e}"
    );
    let e = gru_from_onnx(&fixture("keras3_bidirectional_sum_refused", "onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not meet in a Concat"), "{e}");
    // Keras 3 on the torch backend: the steps unrolled, no Loop.
    let e = gru_from_onnx(&fixture("keras3_torch_unrolled_refused", "onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unrolled step by step") && e.contains("--format keras"),
        "{e}"
    );
    let w = gru_from_onnx(&fixture("keras3_bidirectional_2_layers", "onnx")).unwrap();
    assert_eq!((w.config.num_layers, w.config.bidirectional), (2, true));
    // The same model with its first Concat's inputs swapped (backward first), or with
    // the backward states concatenated without being reversed back into time order.
    let rewired = |edit: &dyn Fn(&mut gru_engine::io::onnx::GraphProto, usize)| -> String {
        let mut m = read_model(&fixture("keras3_bidirectional_2_layers", "onnx")).unwrap();
        let g = m.graph.as_mut().unwrap();
        // The first layer's Concat: forward states, and backward ones reversed back.
        let producer = |name: &str| {
            g.node
                .iter()
                .position(|n| n.output.iter().any(|o| o == name))
        };
        let k = (0..g.node.len())
            .find(|&k| {
                let n = &g.node[k];
                n.op_type == "Concat"
                    && n.input.len() == 2
                    && producer(&n.input[1]).is_some_and(|p| g.node[p].op_type == "ReverseSequence")
            })
            .unwrap();
        edit(g, k);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        write_model(&path, &m).unwrap();
        match gru_from_onnx(&path) {
            Ok(_) => panic!("a rewired Bidirectional was read"),
            Err(e) => e.to_string(),
        }
    };
    let e = rewired(&|g, k| g.node[k].input.swap(0, 1));
    assert!(e.contains("do not meet in a Concat"), "{e}");
    let e = rewired(&|g, k| {
        let rev = g
            .node
            .iter()
            .find(|n| n.output.contains(&g.node[k].input[1]))
            .unwrap()
            .input[0]
            .clone();
        g.node[k].input[1] = rev;
    });
    assert!(e.contains("do not meet in a Concat"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let edited = |from: &str, to: &str| -> String {
        let mut m = read_model(&fixture("keras3_reset_after", "onnx")).unwrap();
        let graph = m.graph.as_mut().unwrap();
        let lp = graph.node.iter_mut().find(|n| n.op_type == "Loop").unwrap();
        let body = lp
            .attribute
            .iter_mut()
            .find_map(|a| a.g.as_deref_mut())
            .unwrap();
        let n = body.node.iter_mut().find(|n| n.op_type == from).unwrap();
        n.op_type = to.into();
        write_model(&path, &m).unwrap();
        gru_from_onnx(&path).unwrap_err().to_string()
    };
    let e = edited("Tanh", "Relu");
    assert!(
        e.contains("Relu") && e.contains("not part of a GRU step"),
        "{e}"
    );
    let e = edited("Sigmoid", "HardSigmoid");
    assert!(e.contains("HardSigmoid"), "{e}");
    let e = edited("Sub", "Add");
    assert!(e.contains("not a GRU step"), "{e}");
}

/// Crafted graphs end, without a hang or a stack overflow: the sequence a Loop reads
/// produced by an Identity that reads itself (the weights still read), `W` at the end
/// of a chain of 5,000 Identity nodes, and `W` doubled by 40 nested Concats (errors).
#[test]
fn crafted_cycles_and_deep_chains_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let mut m = read_model(&fixture("keras3_reset_after", "onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let t = g
        .node
        .iter_mut()
        .find(|n| n.op_type == "Transpose" && n.input == ["x"])
        .unwrap();
    t.op_type = "Identity".into();
    t.attribute.clear();
    t.input = t.output.clone();
    write_model(&path, &m).unwrap();
    // Not a graph (ONNX graphs are acyclic): refused by name, as is a Loop that reads
    // its own output.
    let e = gru_from_onnx(&path).unwrap_err().to_string();
    assert!(e.contains("reads its own output"), "{e}");
    let mut m = read_model(&fixture("keras3_reset_after", "onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let lp = g.node.iter_mut().find(|n| n.op_type == "Loop").unwrap();
    lp.input[2] = lp.output[0].clone();
    write_model(&path, &m).unwrap();
    let e = gru_from_onnx(&path).unwrap_err().to_string();
    assert!(
        e.contains("Loop node") && e.contains("reads its own output"),
        "{e}"
    );

    // `W` at the end of `n` nodes of `op`, node k reading value k `fan` times: the
    // error importing it.
    let cfg = ModelConfig::forecaster(2, 3, 1);
    let params = ModelParams::init(cfg, 1).unwrap();
    let chained = |op: &str, n: usize, fan: usize| -> String {
        let mut m = to_onnx(&params, &ExportOptions::default());
        let g = m.graph.as_mut().unwrap();
        let w = g.initializer.iter_mut().find(|t| t.name == "W_l0").unwrap();
        w.name = "v_0".into();
        for k in 0..n {
            let out = if k + 1 == n {
                "W_l0".to_string()
            } else {
                format!("v_{}", k + 1)
            };
            let axis = gru_engine::io::onnx::AttributeProto {
                name: "axis".into(),
                i: 0,
                r#type: 2,
                ..Default::default()
            };
            g.node.insert(
                k,
                gru_engine::io::onnx::NodeProto {
                    op_type: op.into(),
                    input: vec![format!("v_{k}"); fan],
                    output: vec![out],
                    attribute: if op == "Concat" { vec![axis] } else { vec![] },
                    ..Default::default()
                },
            );
        }
        write_model(&path, &m).unwrap();
        gru_from_onnx(&path).unwrap_err().to_string()
    };
    let e = chained("Identity", 5000, 1);
    assert!(e.contains("deeper than"), "{e}");
    // 40 Concats, each of the one before twice: 2^40 copies of `W` if evaluated blindly.
    let e = chained("Concat", 40, 2);
    assert!(e.contains("more values than the file holds"), "{e}");
}

/// gru-engine's own export reads back as the same GRU weights, bit for bit, both
/// variants, bidirectional and stacked.
#[test]
fn exports_import_as_the_same_weights() {
    for variant in [
        config::GruVariant::ResetAfter,
        config::GruVariant::ResetBefore,
    ] {
        let cfg = ModelConfig::classifier(ModelInput::Features(3), 5, 2)
            .layers(2)
            .bidirectional(true)
            .variant(variant);
        let params = ModelParams::init(cfg, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        write_model(&path, &to_onnx(&params, &ExportOptions::default())).unwrap();
        let w = gru_from_onnx(&path).unwrap();
        assert_eq!(w.config, params.gru.config, "{variant:?}");
        assert_eq!(w, params.gru, "{variant:?}");
        // The stack alone, from an initial state, too.
        let options = ExportOptions {
            initial_state: true,
            ..Default::default()
        };
        write_model(&path, &gru_to_onnx(&params.gru, &options)).unwrap();
        assert_eq!(gru_from_onnx(&path).unwrap(), params.gru, "{variant:?}");
    }
}

/// A GRU with `clip`, other activations, activation parameters or a reverse-only
/// direction, a tensor whose bytes do not match its shape, external data outside the
/// model's folder, and a file that is not ONNX: each an error naming the problem.
#[test]
fn what_gru_engine_cannot_compute_is_refused_by_name() {
    let cfg = ModelConfig::forecaster(2, 4, 1);
    let params = ModelParams::init(cfg, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let refused = |edit: &dyn Fn(&mut gru_engine::io::onnx::ModelProto)| -> String {
        let mut m = to_onnx(&params, &ExportOptions::default());
        edit(&mut m);
        write_model(&path, &m).unwrap();
        gru_from_onnx(&path).unwrap_err().to_string()
    };
    let gru_node = |m: &mut gru_engine::io::onnx::ModelProto| -> usize {
        m.graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .position(|n| n.op_type == "GRU")
            .unwrap()
    };
    let add = |name: &str, a: AttributeProto| {
        let name = name.to_string();
        move |m: &mut gru_engine::io::onnx::ModelProto| {
            let k = gru_node(m);
            let mut a = a.clone();
            a.name = name.clone();
            m.graph.as_mut().unwrap().node[k].attribute.push(a);
        }
    };
    let e = refused(&add(
        "clip",
        AttributeProto {
            f: 3.0,
            r#type: 1,
            ..Default::default()
        },
    ));
    assert!(e.contains("attribute `clip` is not supported"), "{e}");
    let relu = AttributeProto {
        strings: vec![b"Relu".to_vec(), b"Tanh".to_vec()],
        r#type: 8,
        ..Default::default()
    };
    let e = refused(&add("activations", relu));
    assert!(e.contains("`activations`") && e.contains("relu"), "{e}");
    let e = refused(&add(
        "activation_alpha",
        AttributeProto {
            r#type: 6,
            ..Default::default()
        },
    ));
    assert!(e.contains("attribute `activation_alpha`"), "{e}");
    let e = refused(&|m| {
        let k = gru_node(m);
        let node = &mut m.graph.as_mut().unwrap().node[k];
        let d = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "direction")
            .unwrap();
        d.s = b"reverse".to_vec();
    });
    assert!(e.contains("direction `reverse` is not supported"), "{e}");
    let e = refused(&|m| {
        let w = m
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.name == "W_l0")
            .unwrap();
        w.raw_data.truncate(8);
    });
    assert!(
        e.contains("tensor `W_l0`") && e.contains("8 bytes of data"),
        "{e}"
    );
    let e = refused(&|m| {
        let w = m
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.name == "R_l0")
            .unwrap();
        w.raw_data.clear();
        w.data_location = 1;
        w.external_data = vec![gru_engine::io::onnx::StringStringEntryProto {
            key: "location".into(),
            value: "../weights.bin".into(),
        }];
    });
    assert!(e.contains("leaves the model's folder"), "{e}");
    let e = refused(&|m| {
        // A GRU of hidden size 0: every tensor empty, every shape consistent.
        let g = m.graph.as_mut().unwrap();
        for t in g.initializer.iter_mut() {
            if ["W_l0", "R_l0", "B_l0"].contains(&t.name.as_str()) {
                t.dims[1] = 0;
                if t.dims.len() == 3 && t.name == "R_l0" {
                    t.dims[2] = 0;
                }
                t.raw_data.clear();
            }
        }
        let k = gru_node(m);
        let node = &mut m.graph.as_mut().unwrap().node[k];
        node.attribute.retain(|a| a.name != "hidden_size");
    });
    assert!(e.contains("hidden_size must be at least 1"), "{e}");
    std::fs::write(&path, b"not a model at all").unwrap();
    let e = gru_from_onnx(&path).unwrap_err().to_string();
    assert!(e.contains("not an ONNX model"), "{e}");
    let m = read_model(&fixture("torch_1_layer", "onnx")).unwrap();
    assert!(m
        .metadata_props
        .iter()
        .any(|p| p.key == "onnxruntime_version"));
}

/// `gru import --format onnx` writes the nn.GRU state dict (and refuses a reset-before
/// model, naming the commands that take it); `gru forward --format onnx` runs the ONNX
/// file's GRU directly (a GRU node or a Keras Loop) and gives ONNX Runtime's output.
#[test]
fn gru_import_and_forward_read_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| gru_ok(d, args);
    // A reset-before model: gru import names the two commands that take it, and the
    // conversion it names works.
    let before = fixture("keras_reset_before_2_layers", "onnx");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(["import", before.to_str().unwrap(), "-o", "w.safetensors"])
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reset-before") && err.contains("gru convert --from onnx --to keras"),
        "{err}"
    );
    assert!(!d.join("w.safetensors").exists());
    let to = ["convert", "--from", "onnx", "--to", "keras"];
    let out = run(&[&to[..], &[before.to_str().unwrap(), "gru.npz"]].concat());
    assert!(out.contains("ResetBefore"), "{out}");
    // And back: the Keras weights as an ONNX stack of their own read as the same GRU.
    let to = [
        "convert",
        "--from",
        "keras",
        "--to",
        "onnx",
        "gru.npz",
        "again.onnx",
    ];
    run(&to);
    assert_eq!(
        gru_from_onnx(&d.join("again.onnx")).unwrap(),
        gru_from_onnx(&before).unwrap()
    );
    let onnx = fixture("torch_2_layers", "onnx");
    let out = run(&[
        "import",
        "--format",
        "onnx",
        onnx.to_str().unwrap(),
        "--output",
        "w.safetensors",
    ]);
    assert!(
        out.contains("2 GRU layer(s)") && out.contains("H = 6"),
        "{out}"
    );
    let w = interop::load_gru(&d.join("w.safetensors"), interop::WeightFormat::PyTorch).unwrap();
    assert_eq!(w, gru_from_onnx(&onnx).unwrap());
    // The fixture's input and h0 as gru forward's input file: a PyTorch export, and a
    // Keras 3 export whose layer is a Loop.
    for name in ["torch_2_layers", "keras3_reset_before_no_bias"] {
        let t = read_tensors(&fixture(name, "npz"), false).unwrap();
        let mut input = gru_engine::io::Tensors::new();
        input.insert("input".into(), t["input"].clone());
        input.insert("h0".into(), t["h0"].clone());
        gru_engine::io::write_safetensors(&d.join("x.safetensors"), &input, Default::default())
            .unwrap();
        let onnx = fixture(name, "onnx");
        run(&[
            "forward",
            "--weights",
            onnx.to_str().unwrap(),
            "--format",
            "onnx",
            "--input",
            "x.safetensors",
            "--output",
            "y.safetensors",
            "--device",
            "cpu",
        ]);
        let y = read_tensors(&d.join("y.safetensors"), false).unwrap();
        close(
            &format!("gru forward --format onnx ({name})"),
            &y["output"].data,
            &t["output"].data,
        );
    }
}

/// What the file cannot mean: a Cast to a type that is not ONNX's, an initializer
/// defined twice (which one wins?), and weights that are not finite f32 values (NaN,
/// inf, a double 1e300) are refused, each by name; a Cast to an integer type truncates
/// as ONNX's Cast does.
#[test]
fn ambiguous_or_non_finite_weights_are_refused() {
    use gru_engine::io::onnx::{data_type, NodeProto, TensorProto};
    let cfg = ModelConfig::forecaster(2, 4, 1);
    let params = ModelParams::init(cfg, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let load = |edit: &dyn Fn(&mut gru_engine::io::onnx::GraphProto)| {
        let mut m = to_onnx(&params, &ExportOptions::default());
        edit(m.graph.as_mut().unwrap());
        write_model(&path, &m).unwrap();
        gru_from_onnx(&path).map_err(|e| e.to_string())
    };
    let values = |t: &TensorProto| -> Vec<f32> {
        if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
    };
    let set = |t: &mut TensorProto, v: Vec<f32>| {
        t.raw_data.clear();
        t.float_data = v;
    };
    let w = |g: &mut gru_engine::io::onnx::GraphProto| -> usize {
        g.initializer.iter().position(|t| t.name == "W_l0").unwrap()
    };
    let cast_to = |to: i64| {
        move |g: &mut gru_engine::io::onnx::GraphProto| {
            let k = w(g);
            g.initializer[k].name = "W_raw".into();
            g.node.insert(
                0,
                NodeProto {
                    op_type: "Cast".into(),
                    name: "cast_w".into(),
                    input: vec!["W_raw".into()],
                    output: vec!["W_l0".into()],
                    attribute: vec![AttributeProto {
                        name: "to".into(),
                        i: to,
                        r#type: 2,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        }
    };
    let e = load(&cast_to(9999)).unwrap_err();
    assert!(e.contains("`to` = 9999 is not an ONNX data type"), "{e}");
    let e = load(&cast_to(8)).unwrap_err();
    assert!(e.contains("casts to ONNX data type 8"), "{e}");
    // To float: the same weights; to int64: truncated toward zero.
    let want = load(&|_| {}).unwrap();
    assert_eq!(load(&cast_to(1)).unwrap(), want);
    let ints = load(&cast_to(7)).unwrap();
    assert!(ints.dirs[0]
        .w_ih
        .iter()
        .zip(&want.dirs[0].w_ih)
        .all(|(i, w)| *i == w.trunc()));
    let e = load(&|g| {
        let k = w(g);
        let t = g.initializer[k].clone();
        g.initializer.push(t);
    })
    .unwrap_err();
    assert!(e.contains("the initializer `W_l0` is defined twice"), "{e}");
    for bad in [f32::NAN, f32::INFINITY] {
        let e = load(&|g| {
            let k = w(g);
            let mut v = values(&g.initializer[k]);
            v[3] = bad;
            set(&mut g.initializer[k], v);
        })
        .unwrap_err();
        assert!(
            e.contains("tensor `W_l0`") && e.contains("at index 3 is not a finite f32"),
            "{e}"
        );
    }
    let e = load(&|g| {
        let k = w(g);
        let t = &mut g.initializer[k];
        let mut v: Vec<f64> = values(t).iter().map(|&x| x as f64).collect();
        v[0] = 1e300;
        t.raw_data.clear();
        t.float_data.clear();
        t.data_type = data_type::DOUBLE;
        t.double_data = v;
    })
    .unwrap_err();
    assert!(
        e.contains("value 1e300 at index 0 is not a finite f32"),
        "{e}"
    );
}

/// Loops nested 50 deep (past protobuf's recursion limit) are refused in one short
/// line (the decoder's path through every level was several KB).
#[test]
fn deeply_nested_loops_are_refused_in_a_short_line() {
    use gru_engine::io::onnx::{GraphProto, ModelProto, NodeProto};
    let mut g = GraphProto {
        node: vec![NodeProto {
            op_type: "Identity".into(),
            input: vec!["h".into()],
            output: vec!["h_out".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    for k in 0..50 {
        g = GraphProto {
            node: vec![NodeProto {
                op_type: "Loop".into(),
                name: format!("loop_{k}"),
                input: vec!["M".into(), "c".into(), "h".into()],
                output: vec!["h_out".into()],
                attribute: vec![AttributeProto {
                    name: "body".into(),
                    r#type: 5,
                    g: Some(Box::new(g)),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested.onnx");
    write_model(
        &path,
        &ModelProto {
            graph: Some(g),
            ..Default::default()
        },
    )
    .unwrap();
    let e = gru_from_onnx(&path).unwrap_err().to_string();
    assert!(e.len() < 400, "{} characters: {e}", e.len());
}
