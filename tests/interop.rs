//! Weight import and export: round trips through both formats and both containers,
//! module prefixes, F16/BF16, shape inference, and clear errors; `gru forward` and
//! `gru convert` from the command line.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gru_engine::interop::{
    from_keras, from_pytorch, load_gru, read_tensors, save_gru, to_keras, to_pytorch,
    write_safetensors, Tensor, Tensors, WeightFormat,
};
use gru_engine::rng::Rng;
use gru_engine::{cpu, GruConfig, GruError, GruVariant, GruWeights, SequenceInput};

fn cfgs() -> Vec<GruConfig> {
    vec![
        GruConfig::new(3, 5),
        GruConfig::new(4, 7).layers(2).bidirectional(true),
        GruConfig::new(2, 6)
            .layers(3)
            .variant(GruVariant::ResetBefore),
        GruConfig::new(5, 4)
            .bidirectional(true)
            .variant(GruVariant::ResetBefore),
    ]
}

/// Same function: outputs of the two weight sets agree on random input.
fn same_function(a: &GruWeights, b: &GruWeights) {
    let mut rng = Rng::new(1);
    let x = rng.uniform_vec(6 * 2 * a.config.input_size, -1.0, 1.0);
    let input = SequenceInput::new(&x, 6, 2);
    let (fa, fb) = (
        cpu::forward(a, &input).unwrap(),
        cpu::forward(b, &input).unwrap(),
    );
    for (u, v) in fa.output.iter().zip(&fb.output) {
        assert!((u - v).abs() < 1e-6, "{u} vs {v}");
    }
}

#[test]
fn round_trips_in_both_formats_and_containers() {
    let dir = tempfile::tempdir().unwrap();
    for (i, cfg) in cfgs().into_iter().enumerate() {
        let w = GruWeights::init(cfg, i as u64);
        for (fmt, ext) in [
            (WeightFormat::Keras, "npz"),
            (WeightFormat::Keras, "safetensors"),
            (WeightFormat::PyTorch, "safetensors"),
        ] {
            if fmt == WeightFormat::PyTorch && cfg.variant == GruVariant::ResetBefore {
                assert!(matches!(
                    save_gru(&dir.path().join("x"), &w, fmt),
                    Err(GruError::Config(_))
                ));
                continue;
            }
            let path = dir.path().join(format!("w{i}.{ext}"));
            save_gru(&path, &w, fmt).unwrap();
            let back = load_gru(&path, fmt).unwrap();
            assert_eq!(back.config, w.config, "{fmt:?} {ext}");
            if cfg.variant == GruVariant::ResetAfter {
                assert_eq!(back, w, "{fmt:?} {ext}: exact round trip");
            } else {
                // Keras has one bias for reset-before: b_hh is folded into it.
                same_function(&back, &w);
            }
        }
    }
}

#[test]
fn keras_layout_is_transposed_and_reordered() {
    let w = GruWeights::init(GruConfig::new(2, 3), 4);
    let k = to_keras(&w);
    let kernel = &k["layer0.kernel"];
    assert_eq!(kernel.shape, vec![2, 9]);
    // kernel[i, 0:H] is z (engine rows H..2H), kernel[i, H:2H] is r (rows 0..H).
    let (h, i) = (3, 2);
    for j in 0..h {
        for c in 0..i {
            assert_eq!(kernel.data[c * 9 + j], w.dirs[0].w_ih[(h + j) * i + c]);
            assert_eq!(kernel.data[c * 9 + h + j], w.dirs[0].w_ih[j * i + c]);
            assert_eq!(
                kernel.data[c * 9 + 2 * h + j],
                w.dirs[0].w_ih[(2 * h + j) * i + c]
            );
        }
    }
    assert_eq!(k["layer0.bias"].shape, vec![2, 9]);
}

fn torch_tensors(w: &GruWeights, prefix: &str) -> Tensors {
    to_pytorch(w)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}

#[test]
fn pytorch_prefixes_are_found_and_other_modules_ignored() {
    let w = GruWeights::init(GruConfig::new(3, 4).layers(2).bidirectional(true), 2);
    for prefix in ["", "gru.", "rnn.", "model.encoder.gru."] {
        let mut t = torch_tensors(&w, prefix);
        if !prefix.is_empty() {
            t.insert(
                "fc.weight".into(),
                Tensor {
                    shape: vec![2, 8],
                    data: vec![0.0; 16],
                },
            );
        }
        assert_eq!(
            from_pytorch(&t, Path::new("x")).unwrap(),
            w,
            "prefix {prefix:?}"
        );
    }
}

#[track_caller]
fn refused(r: gru_engine::Result<GruWeights>, needle: &str) {
    match r {
        Err(GruError::Checkpoint { reason, .. }) => assert!(
            reason.contains(needle),
            "`{reason}` should mention `{needle}`"
        ),
        other => panic!("expected an error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn inconsistent_files_are_refused_with_the_reason() {
    let p = Path::new("w.safetensors");
    let w = GruWeights::init(GruConfig::new(3, 4).layers(2), 2);
    let mut t = torch_tensors(&w, "");
    t.remove("bias_hh_l1");
    refused(from_pytorch(&t, p), "missing tensor `bias_hh_l1`");
    let mut t = torch_tensors(&w, "");
    t.insert(
        "weight_hh_l1".into(),
        Tensor {
            shape: vec![12, 5],
            data: vec![0.0; 60],
        },
    );
    refused(
        from_pytorch(&t, p),
        "`weight_hh_l1` has shape [12, 5], expected [12, 4]",
    );
    let mut t = torch_tensors(&w, "");
    t.insert(
        "weight_xx_l0".into(),
        Tensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    refused(from_pytorch(&t, p), "unexpected tensor `weight_xx_l0`");
    refused(
        from_pytorch(&Tensors::new(), p),
        "not a PyTorch nn.GRU state dict",
    );
    let mut k = to_keras(&w);
    k.insert(
        "layer1.recurrent_kernel".into(),
        Tensor {
            shape: vec![4, 9],
            data: vec![0.0; 36],
        },
    );
    refused(
        from_keras(&k, p),
        "`layer1.recurrent_kernel` has shape [4, 9], expected [4, 12]",
    );
    refused(from_keras(&Tensors::new(), p), "not Keras GRU weights");
}

#[test]
fn half_precision_is_widened_and_other_dtypes_refused() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let w = GruWeights::init(GruConfig::new(2, 3), 9);
    let t = to_pytorch(&w).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16, Dtype::F64] {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
            .iter()
            .map(|(n, x)| {
                let b: Vec<u8> = match dtype {
                    Dtype::F16 => x
                        .data
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                    Dtype::BF16 => x
                        .data
                        .iter()
                        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                        .collect(),
                    _ => x
                        .data
                        .iter()
                        .flat_map(|v| (*v as f64).to_le_bytes())
                        .collect(),
                };
                (n.clone(), x.shape.clone(), b)
            })
            .collect();
        let views: Vec<_> = bytes
            .iter()
            .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        let path = dir.path().join(format!("{dtype:?}.safetensors"));
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        match (dtype, load_gru(&path, WeightFormat::PyTorch)) {
            (Dtype::F64, r) => refused(r, "dtype F64"),
            (_, Ok(back)) => {
                let tol = if dtype == Dtype::F16 { 1e-3 } else { 1e-2 };
                for (a, b) in back.dirs[0].w_ih.iter().zip(&w.dirs[0].w_ih) {
                    assert!(
                        (a - b).abs() <= tol * b.abs().max(0.1),
                        "{dtype:?}: {a} vs {b}"
                    );
                }
            }
            (_, Err(e)) => panic!("{dtype:?}: {e}"),
        }
    }
}

fn gru(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gru"))
        .env("GRU_DEVICE", common::cli_device())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn gru_forward_and_convert_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let w = GruWeights::init(GruConfig::new(3, 5).layers(2).bidirectional(true), 3);
    save_gru(Path::new(&p("w.safetensors")), &w, WeightFormat::PyTorch).unwrap();
    let mut rng = Rng::new(2);
    let (t, b) = (7, 2);
    let x = rng.uniform_vec(t * b * 3, -1.0, 1.0);
    let mut inputs = Tensors::new();
    inputs.insert(
        "input".into(),
        Tensor {
            shape: vec![t, b, 3],
            data: x.clone(),
        },
    );
    inputs.insert(
        "lengths".into(),
        Tensor {
            shape: vec![2],
            data: vec![7.0, 4.0],
        },
    );
    write_safetensors(Path::new(&p("x.safetensors")), &inputs, BTreeMap::new()).unwrap();
    let o = gru(&[
        "forward",
        "--weights",
        &p("w.safetensors"),
        "--input",
        &p("x.safetensors"),
        "--output",
        &p("y.safetensors"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y = read_tensors(Path::new(&p("y.safetensors")), false).unwrap();
    let want = cpu::forward(&w, &SequenceInput::new(&x, t, b).lengths(&[7, 4])).unwrap();
    assert_eq!(y["output"].shape, vec![t, b, 10]);
    for (g, r) in y["output"]
        .data
        .iter()
        .zip(&want.output)
        .chain(y["h_n"].data.iter().zip(&want.h_n))
    {
        assert!((g - r).abs() < 1e-4, "{g} vs {r}");
    }
    // PyTorch -> Keras (.npz) -> PyTorch is exact; the Keras file runs the same.
    assert!(gru(&[
        "convert",
        "--from",
        "pytorch",
        "--to",
        "keras",
        &p("w.safetensors"),
        &p("k.npz")
    ])
    .status
    .success());
    assert!(gru(&[
        "convert",
        "--from",
        "keras",
        "--to",
        "pytorch",
        &p("k.npz"),
        &p("back.safetensors")
    ])
    .status
    .success());
    assert_eq!(
        load_gru(Path::new(&p("back.safetensors")), WeightFormat::PyTorch).unwrap(),
        w
    );
    // Keras input is batch-first.
    let xb = gru_engine::sequence::swap_leading_axes(&x, t, b, 3);
    let mut kin = Tensors::new();
    kin.insert(
        "input".into(),
        Tensor {
            shape: vec![b, t, 3],
            data: xb,
        },
    );
    write_safetensors(Path::new(&p("xb.safetensors")), &kin, BTreeMap::new()).unwrap();
    let o = gru(&[
        "forward",
        "--weights",
        &p("k.npz"),
        "--format",
        "keras",
        "--input",
        &p("xb.safetensors"),
        "--output",
        &p("yk.safetensors"),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yk = read_tensors(Path::new(&p("yk.safetensors")), false).unwrap();
    assert_eq!(yk["output"].shape, vec![b, t, 10]);
    // The values, batch-first, are the reference's on the full sequences.
    let full = cpu::forward(&w, &SequenceInput::new(&x, t, b)).unwrap();
    let want = gru_engine::sequence::swap_leading_axes(&full.output, t, b, 10);
    for (i, (g, r)) in yk["output"].data.iter().zip(&want).enumerate() {
        assert!((g - r).abs() < 1e-4, "keras output[{i}]: {g} vs {r}");
    }
    assert_eq!(yk["h_n"].data.len(), full.h_n.len());
    for (g, r) in yk["h_n"].data.iter().zip(&full.h_n) {
        assert!((g - r).abs() < 1e-4, "keras h_n: {g} vs {r}");
    }
    // Errors: wrong input width, a file that is not weights.
    let mut bad = Tensors::new();
    bad.insert(
        "input".into(),
        Tensor {
            shape: vec![t, b, 4],
            data: vec![0.0; t * b * 4],
        },
    );
    write_safetensors(Path::new(&p("bad.safetensors")), &bad, BTreeMap::new()).unwrap();
    let o = gru(&[
        "forward",
        "--weights",
        &p("w.safetensors"),
        "--input",
        &p("bad.safetensors"),
        "--output",
        &p("z.safetensors"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("shape mismatch for input") && err.contains("I = 3"),
        "{err}"
    );
    let o = gru(&[
        "convert",
        "--from",
        "pytorch",
        "--to",
        "keras",
        &p("x.safetensors"),
        &p("q.npz"),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a PyTorch nn.GRU state dict"));
}

#[test]
fn broken_npz_archives_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.npz");
    let w = GruWeights::init(GruConfig::new(2, 3), 1);
    save_gru(&path, &w, WeightFormat::Keras).unwrap();
    let good = std::fs::read(&path).unwrap();
    // Truncations and byte flips anywhere must give an error, never a panic.
    for cut in [4, 30, 60, good.len() / 2, good.len() - 3] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(
            load_gru(&path, WeightFormat::Keras).is_err(),
            "cut at {cut}"
        );
    }
    for at in (0..good.len()).step_by(7) {
        let mut b = good.clone();
        b[at] ^= 0x5a;
        std::fs::write(&path, &b).unwrap();
        let _ = load_gru(&path, WeightFormat::Keras);
    }
}

/// The output of `gru forward --weights <weights> [extra]` on `x` ([T=4, B=2, I]).
fn forward_cli(
    dir: &Path,
    weights: &Path,
    x: &[f32],
    i: usize,
    extra: &[&str],
) -> Result<Vec<f32>, String> {
    let input = dir.join("fx.safetensors");
    let mut t = Tensors::new();
    t.insert(
        "input".into(),
        Tensor {
            shape: vec![4, 2, i],
            data: x.to_vec(),
        },
    );
    write_safetensors(&input, &t, BTreeMap::new()).unwrap();
    let out = dir.join("fy.safetensors");
    let mut args = vec![
        "forward",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    let o = gru(&args);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(read_tensors(&out, false).unwrap()["output"].data.clone())
}

/// A reset-before checkpoint is read as reset-before by every reader (its metadata says
/// so): `gru forward --weights CKPT` gives the reference's reset-before output, `gru
/// convert` keeps the variant in Keras and ONNX and refuses a plain state dict, and a
/// `--variant` that contradicts the file is an error.
#[test]
fn checkpoints_are_read_with_their_variant() {
    use gru_engine::checkpoint::Checkpoint;
    use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = ModelConfig::classifier(ModelInput::Features(3), 5, 2)
        .layers(2)
        .variant(GruVariant::ResetBefore);
    let params = ModelParams::init(cfg, 4).unwrap();
    let ckpt = d.join("ckpt.safetensors");
    Checkpoint::from_params(params.clone()).save(&ckpt).unwrap();
    let x = Rng::new(3).uniform_vec(4 * 2 * 3, -1.0, 1.0);
    let want = cpu::forward(&params.gru, &SequenceInput::new(&x, 4, 2))
        .unwrap()
        .output;
    let close = |got: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{what}: {g} vs {w}");
        }
    };
    close(&forward_cli(d, &ckpt, &x, 3, &[]).unwrap(), "forward CKPT");
    close(
        &forward_cli(d, &ckpt, &x, 3, &["--variant", "reset-before"]).unwrap(),
        "forward CKPT --variant reset-before",
    );
    let e = forward_cli(d, &ckpt, &x, 3, &["--variant", "reset-after"]).unwrap_err();
    assert!(
        e.contains("holds a reset-before GRU, but reset-after was asked for"),
        "{e}"
    );
    // Through Keras and ONNX: the variant travels; a plain state dict cannot hold it.
    for (to, file) in [("keras", "k.npz"), ("onnx", "k.onnx")] {
        let o = gru(&[
            "convert",
            "--from",
            "pytorch",
            "--to",
            to,
            ckpt.to_str().unwrap(),
            d.join(file).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let fmt = if to == "keras" {
            WeightFormat::Keras
        } else {
            WeightFormat::Onnx
        };
        let back = load_gru(&d.join(file), fmt).unwrap();
        assert_eq!(back.config.variant, GruVariant::ResetBefore, "{to}");
        same_function(&back, &params.gru);
    }
    let o = gru(&[
        "convert",
        "--from",
        "pytorch",
        "--to",
        "pytorch",
        ckpt.to_str().unwrap(),
        d.join("p.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("reset"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A plain state dict is nn.GRU's reset-after unless told otherwise.
    let plain = d.join("plain.safetensors");
    let mut as_after = params.gru.clone();
    as_after.config.variant = GruVariant::ResetAfter;
    write_safetensors(&plain, &to_pytorch(&as_after).unwrap(), BTreeMap::new()).unwrap();
    close(
        &forward_cli(d, &plain, &x, 3, &["--variant", "reset-before"]).unwrap(),
        "plain state dict --variant reset-before",
    );
    assert_ne!(forward_cli(d, &plain, &x, 3, &[]).unwrap(), want);
}

/// Two GRUs in one state dict (an encoder and a decoder): an error listing both
/// prefixes, and `--prefix` chooses one.
#[test]
fn a_state_dict_with_two_grus_needs_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let enc = GruWeights::init(GruConfig::new(3, 4), 1);
    let dec = GruWeights::init(GruConfig::new(3, 4), 2);
    let mut t = torch_tensors(&enc, "enc.gru.");
    t.extend(torch_tensors(&dec, "dec.gru."));
    let file = d.join("two.safetensors");
    write_safetensors(&file, &t, BTreeMap::new()).unwrap();
    let e = forward_cli(d, &file, &[0.5; 24], 3, &[]).unwrap_err();
    assert!(
        e.contains("2 GRUs in one file") && e.contains("`dec.gru.`, `enc.gru.`"),
        "{e}"
    );
    let x = Rng::new(5).uniform_vec(24, -1.0, 1.0);
    for (prefix, w) in [("enc.gru.", &enc), ("dec.gru.", &dec)] {
        let got = forward_cli(d, &file, &x, 3, &["--prefix", prefix]).unwrap();
        let want = cpu::forward(w, &SequenceInput::new(&x, 4, 2))
            .unwrap()
            .output;
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{prefix}: {g} vs {w}");
        }
    }
    let e = forward_cli(d, &file, &x, 3, &["--prefix", "mid.gru."]).unwrap_err();
    assert!(e.contains("no GRU under the prefix `mid.gru.`"), "{e}");
}
