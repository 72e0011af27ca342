//! ONNX export: models of each kind, written by `gru_engine::onnx`, run in tract (a
//! pure-Rust ONNX runtime) and give gru-engine's own predictions within 1e-5.
//! tract runs GRU nodes only without per-row lengths (its `sequence_lens` must be
//! absent or equal to T for every row), so these exports have none.

mod common;

use common::*;
use gru_engine::checkpoint::SavePrecision;
use gru_engine::config::GruVariant;
use gru_engine::model::{Head, ModelConfig, ModelInput, ModelParams};
use gru_engine::onnx::{export, gru_from_onnx, gru_to_onnx, ExportOptions};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
use gru_engine::{GruConfig, GruWeights};
use tract_onnx::prelude::*;

/// The exported model's logits for `d` in tract, and gru-engine's.
fn both(cfg: ModelConfig, d: &Data, options: &ExportOptions) -> (Vec<f32>, Vec<f32>) {
    let params = ModelParams::init(cfg, 11).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    export(&params, options, &path).unwrap();
    let (b, t) = (d.b, d.t);
    let input: Tensor = match cfg.input {
        ModelInput::Tokens { .. } => {
            let ids: Vec<i64> = d.tokens.iter().map(|&v| v as i64).collect();
            tract_ndarray::Array2::from_shape_vec((b, t), ids)
                .unwrap()
                .into()
        }
        ModelInput::Features(n) => {
            tract_ndarray::Array3::from_shape_vec((b, t, n), d.features.clone())
                .unwrap()
                .into()
        }
    };
    let model = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .with_input_fact(
            0,
            InferenceFact::dt_shape(input.datum_type(), input.shape()),
        )
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = model.run(tvec!(input.into())).unwrap();
    let got = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let mut t = CpuTrainer::new(params, TrainOptions::default()).unwrap();
    (got, t.predict(&d.batch()).unwrap())
}

fn check(case: &str, (got, want): (Vec<f32>, Vec<f32>)) {
    assert_eq!(got.len(), want.len(), "{case}");
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{case}: logit {i}: tract {g} vs gru-engine {w}"
        );
    }
}

#[test]
fn language_models_run_in_tract() {
    let mut rng = Rng::new(3);
    for (variant, layers) in [(GruVariant::ResetAfter, 2), (GruVariant::ResetBefore, 1)] {
        let cfg = ModelConfig::language_model(23, 5, 7)
            .layers(layers)
            .variant(variant);
        let d = data(&cfg, 3, 6, false, &mut rng);
        check(
            &format!("{variant:?} language model"),
            both(cfg, &d, &ExportOptions::default()),
        );
    }
}

#[test]
fn bidirectional_classifiers_run_in_tract() {
    let mut rng = Rng::new(4);
    let tokens = ModelInput::Tokens {
        vocab: 30,
        embed_dim: 4,
    };
    for (input, variant) in [
        (tokens, GruVariant::ResetAfter),
        (ModelInput::Features(3), GruVariant::ResetBefore),
    ] {
        let cfg = ModelConfig::classifier(input, 6, 3)
            .layers(2)
            .bidirectional(true)
            .variant(variant);
        let d = data(&cfg, 5, 7, false, &mut rng);
        check(
            &format!("{variant:?} classifier"),
            both(cfg, &d, &ExportOptions::default()),
        );
    }
}

#[test]
fn forecasters_run_in_tract() {
    let mut rng = Rng::new(5);
    let cfg = ModelConfig::forecaster(2, 9, 3);
    let d = data(&cfg, 4, 8, false, &mut rng);
    check("forecaster", both(cfg, &d, &ExportOptions::default()));
}

/// Float16 initializers: the file about half as large, one Cast to float per weight, the
/// graph computing in f32 (tract's logits are gru-engine's on the f16-rounded weights),
/// a GRU stack read back by the importer as the rounded weights, and a weight past
/// f16's range refused with its tensor's name.
#[test]
fn float16_initializers_halve_the_file_and_run_in_tract() {
    let round = |v: f32| half::f16::from_f32(v).to_f32();
    // Weights large enough to outweigh the graph's own bytes.
    let cfg = ModelConfig::language_model(23, 16, 48).layers(2);
    let params = ModelParams::init(cfg, 11).unwrap();
    let d = data(&cfg, 3, 6, false, &mut Rng::new(7));
    let dir = tempfile::tempdir().unwrap();
    let (p32, p16) = (dir.path().join("f32.onnx"), dir.path().join("f16.onnx"));
    let f16 = ExportOptions {
        precision: SavePrecision::F16,
        ..Default::default()
    };
    export(&params, &ExportOptions::default(), &p32).unwrap();
    export(&params, &f16, &p16).unwrap();
    let sizes = [&p32, &p16].map(|p| std::fs::metadata(p).unwrap().len() as f64);
    assert!(sizes[1] < 0.55 * sizes[0], "{sizes:?}");
    let m = gru_engine::io::onnx::read_model(&p16).unwrap();
    let g = m.graph.unwrap();
    let casts = g.node.iter().filter(|n| n.op_type == "Cast").count();
    assert_eq!(
        casts,
        g.initializer.iter().filter(|t| t.data_type == 10).count()
    );
    // The embedding, each layer's W, R and B, the dense weight and bias.
    assert_eq!(casts, 1 + 3 * 2 + 2);
    let ids: Vec<i64> = d.tokens.iter().map(|&v| v as i64).collect();
    let input: Tensor = tract_ndarray::Array2::from_shape_vec((d.b, d.t), ids)
        .unwrap()
        .into();
    let got = run_all(&p16, vec![input]).remove(0);
    let mut t = CpuTrainer::new(params.map(round), TrainOptions::default()).unwrap();
    check(
        "float16 language model",
        (got, t.predict(&d.batch()).unwrap()),
    );

    let w = GruWeights::init(GruConfig::new(3, 4).layers(2).bidirectional(true), 1);
    let path = dir.path().join("stack.onnx");
    gru_engine::io::onnx::write_model(&path, &gru_to_onnx(&w, &f16)).unwrap();
    assert_eq!(gru_from_onnx(&path).unwrap(), w.map(round));

    let mut big = params.clone();
    big.tensors_mut()[2][5] = -7e4;
    let name = big.infos()[2].name.clone();
    let err = export(&big, &f16, &p16).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("index 5"), "{err}");
    export(&big, &ExportOptions::default(), &p32).unwrap();
}

/// Every output of the ONNX model at `path` for `inputs`, in tract.
fn run_all(path: &std::path::Path, inputs: Vec<Tensor>) -> Vec<Vec<f32>> {
    let mut model = tract_onnx::onnx().model_for_path(path).unwrap();
    for (k, x) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(k, InferenceFact::dt_shape(x.datum_type(), x.shape()))
            .unwrap();
    }
    let model = model.into_optimized().unwrap().into_runnable().unwrap();
    let inputs: TVec<TValue> = inputs.into_iter().map(|x| x.into()).collect();
    model
        .run(inputs)
        .unwrap()
        .iter()
        .map(|o| {
            o.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

/// An export with `initial_state`, run in two chunks in tract (the first from zeros, the
/// second from the first's `h_n_l<k>` fed back as `h0_l<k>`), gives gru-engine's
/// predictions for the whole sequence: stateful use of a language model (reset-after,
/// 2 layers) and of a forecaster (its forecast comes from the last chunk's final state).
#[test]
fn initial_states_continue_a_sequence_in_tract() {
    let mut rng = Rng::new(6);
    for cfg in [
        ModelConfig::language_model(23, 5, 7).layers(2),
        ModelConfig::forecaster(2, 6, 3).variant(GruVariant::ResetBefore),
    ] {
        let params = ModelParams::init(cfg, 13).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        let options = ExportOptions {
            initial_state: true,
            ..Default::default()
        };
        export(&params, &options, &path).unwrap();
        let m = gru_engine::io::onnx::read_model(&path).unwrap();
        let inputs: Vec<String> = m
            .graph
            .as_ref()
            .unwrap()
            .input
            .iter()
            .map(|i| i.name.clone())
            .collect();
        assert_eq!(
            inputs[1..],
            ["h0_l0".to_string(), "h0_l1".to_string()][..cfg.num_layers]
        );
        let (b, t, t1, h) = (3, 8, 5, cfg.hidden_size);
        let d = data(&cfg, b, t, false, &mut rng);
        let want = CpuTrainer::new(params, TrainOptions::default())
            .unwrap()
            .predict(&d.batch())
            .unwrap();
        // Steps [from, to) of every row, as the graph's first input.
        let chunk = |from: usize, to: usize| -> Tensor {
            let n = to - from;
            match cfg.input {
                ModelInput::Tokens { .. } => {
                    let ids: Vec<i64> = (0..b)
                        .flat_map(|r| (from..to).map(move |s| (r, s)))
                        .map(|(r, s)| d.tokens[r * t + s] as i64)
                        .collect();
                    tract_ndarray::Array2::from_shape_vec((b, n), ids)
                        .unwrap()
                        .into()
                }
                ModelInput::Features(f) => {
                    let x: Vec<f32> = (0..b)
                        .flat_map(|r| (from..to).map(move |s| (r, s)))
                        .flat_map(|(r, s)| d.features[(r * t + s) * f..][..f].to_vec())
                        .collect();
                    tract_ndarray::Array3::from_shape_vec((b, n, f), x)
                        .unwrap()
                        .into()
                }
            }
        };
        let state = |v: Vec<f32>| -> Tensor {
            tract_ndarray::Array3::from_shape_vec((1, b, h), v)
                .unwrap()
                .into()
        };
        let layers = cfg.num_layers;
        let mut first = vec![chunk(0, t1)];
        first.extend((0..layers).map(|_| state(vec![0.0; b * h])));
        let out = run_all(&path, first);
        let mut second = vec![chunk(t1, t)];
        second.extend(out[1..=layers].iter().map(|s| state(s.clone())));
        let out2 = run_all(&path, second);
        if cfg.head == Head::LastState {
            // A forecast from the last state: the second chunk's is the whole sequence's.
            check(
                "forecast from the first chunk's states",
                (out2[0].clone(), want),
            );
            continue;
        }
        // gru-engine's logits [B, T, C], split at t1 per row.
        let c = cfg.outputs;
        let part = |from: usize, to: usize| -> Vec<f32> {
            (0..b)
                .flat_map(|r| want[(r * t + from) * c..(r * t + to) * c].to_vec())
                .collect()
        };
        check("first chunk", (out[0].clone(), part(0, t1)));
        check(
            "second chunk from the first's states",
            (out2[0].clone(), part(t1, t)),
        );
    }
}

/// The GRU stack alone (`gru_to_onnx`, nn.GRU's interface) in tract equals the CPU
/// reference's output and h_n: bidirectional reset-before layers from an initial state,
/// one reset-after layer from zeros, three unidirectional layers from an initial state.
#[test]
fn gru_stacks_alone_run_in_tract() {
    use gru_engine::config::GruConfig;
    use gru_engine::onnx::gru_to_onnx;
    use gru_engine::{cpu, GruWeights, SequenceInput};
    let mut rng = Rng::new(8);
    for (cfg, initial_state) in [
        (
            GruConfig::new(3, 5)
                .layers(2)
                .bidirectional(true)
                .variant(GruVariant::ResetBefore),
            true,
        ),
        (GruConfig::new(4, 6), false),
        (GruConfig::new(2, 3).layers(3), true),
    ] {
        let w = GruWeights::init(cfg, 5);
        let (t, b, ld) = (7, 3, cfg.num_layers * cfg.num_directions());
        let x = rng.uniform_vec(t * b * cfg.input_size, -1.0, 1.0);
        let h0 = rng.uniform_vec(ld * b * cfg.hidden_size, -0.5, 0.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gru.onnx");
        let options = ExportOptions {
            initial_state,
            ..Default::default()
        };
        gru_engine::io::onnx::write_model(&path, &gru_to_onnx(&w, &options)).unwrap();
        let mut inputs: Vec<Tensor> =
            vec![
                tract_ndarray::Array3::from_shape_vec((t, b, cfg.input_size), x.clone())
                    .unwrap()
                    .into(),
            ];
        let mut seq = SequenceInput::new(&x, t, b);
        if initial_state {
            inputs.push(
                tract_ndarray::Array3::from_shape_vec((ld, b, cfg.hidden_size), h0.clone())
                    .unwrap()
                    .into(),
            );
            seq = seq.h0(&h0);
        }
        let out = run_all(&path, inputs);
        let want = cpu::forward(&w, &seq).unwrap();
        check("output", (out[0].clone(), want.output));
        check("h_n", (out[1].clone(), want.h_n));
    }
}

/// `gru export` of a trained text classifier: `--format onnx`, per-row lengths by
/// default for a classifier (`--lengths auto`) and none with `--lengths no`,
/// `--initial-state` adds an `h0_l<k>` input per layer,
/// `--probabilities` adds softmax, the vocabulary and labels travel in metadata, and the
/// export without lengths gives the checkpoint's predictions in tract.
#[test]
fn gru_export_writes_a_trained_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gru_ok(
        d,
        &[
            "example-data",
            "classify-text",
            "--rows",
            "60",
            "--out",
            "r.csv",
        ],
    );
    let train =
        "classify train --data r.csv --epochs 1 --batch 8 --hidden 6 --device cpu --quiet -c run";
    gru_ok(d, &train.split_whitespace().collect::<Vec<_>>());
    let out = gru_ok(
        d,
        &[
            "export",
            "--format",
            "onnx",
            "-c",
            "run",
            "--output",
            "a.onnx",
            "--probabilities",
        ],
    );
    assert!(
        out.contains("ONNX opset 14") && out.contains("lengths"),
        "{out}"
    );
    let m = gru_engine::io::onnx::read_model(&d.join("a.onnx")).unwrap();
    let g = m.graph.as_ref().unwrap();
    let names = |v: &[gru_engine::io::onnx::ValueInfoProto]| -> Vec<String> {
        v.iter().map(|i| i.name.clone()).collect()
    };
    assert_eq!(names(&g.input), ["tokens", "lengths"]);
    assert_eq!(names(&g.output), ["logits", "probabilities", "h_n_l0"]);
    let keys: Vec<&str> = m.metadata_props.iter().map(|p| p.key.as_str()).collect();
    assert!(
        keys.contains(&"vocabulary") && keys.contains(&"gru_engine.config"),
        "{keys:?}"
    );
    gru_ok(
        d,
        &[
            "export",
            "-c",
            "run",
            "--output",
            "b.onnx",
            "--lengths",
            "no",
        ],
    );
    let m = gru_engine::io::onnx::read_model(&d.join("b.onnx")).unwrap();
    assert_eq!(names(&m.graph.as_ref().unwrap().input), ["tokens"]);
    // --precision f16: float16 initializers, said in the line it prints.
    let out = gru_ok(
        d,
        &["export", "-c", "run", "-o", "h.onnx", "--precision", "f16"],
    );
    assert!(out.contains("(float16 initializers)"), "{out}");
    let m = gru_engine::io::onnx::read_model(&d.join("h.onnx")).unwrap();
    let inits = &m.graph.as_ref().unwrap().initializer;
    assert!(
        inits.iter().any(|t| t.data_type == 10),
        "no float16 initializer"
    );
    let out = gru_ok(
        d,
        &["export", "-c", "run", "-o", "c.onnx", "--initial-state"],
    );
    assert!(out.contains("`h0_l<k>` per layer"), "{out}");
    let m = gru_engine::io::onnx::read_model(&d.join("c.onnx")).unwrap();
    assert_eq!(
        names(&m.graph.as_ref().unwrap().input),
        ["tokens", "lengths", "h0_l0"]
    );
    // The exported model computes the checkpoint's logits.
    let c = gru_engine::checkpoint::Checkpoint::load(&d.join("run/last.safetensors")).unwrap();
    let cfg = c.params.config;
    let data = data(&cfg, 3, 6, false, &mut Rng::new(1));
    let ids: Vec<i64> = data.tokens.iter().map(|&v| v as i64).collect();
    let input: Tensor = tract_ndarray::Array2::from_shape_vec((3, 6), ids)
        .unwrap()
        .into();
    let model = tract_onnx::onnx()
        .model_for_path(d.join("b.onnx"))
        .unwrap()
        .with_input_fact(0, InferenceFact::dt_shape(i64::datum_type(), [3, 6]))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let got: Vec<f32> = model.run(tvec!(input.into())).unwrap()[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let want = CpuTrainer::new(c.params, TrainOptions::default())
        .unwrap()
        .predict(&data.batch())
        .unwrap();
    check("exported classifier", (got, want));
}
