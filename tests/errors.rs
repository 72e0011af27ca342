//! Bad input gives a clear error naming what was expected and found, never a panic.

mod common;

use common::gpu;
use gru_engine::*;

fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn cpu_rejects_bad_shapes_and_lengths() {
    let w = GruWeights::init(GruConfig::new(3, 4).layers(2), 0);
    let x = vec![0.0f32; 5 * 2 * 3];
    let m = msg(cpu::forward(&w, &SequenceInput::new(&x[..29], 5, 2)));
    assert!(
        m.contains("input") && m.contains("30 values") && m.contains("29 values"),
        "{m}"
    );
    let m = msg(cpu::forward(&w, &SequenceInput::new(&x[..0], 0, 2)));
    assert!(m.contains("T must be at least 1"), "{m}");
    let m = msg(cpu::forward(&w, &SequenceInput::new(&x[..0], 5, 0)));
    assert!(m.contains("B must be at least 1"), "{m}");
    let m = msg(cpu::forward(
        &w,
        &SequenceInput::new(&x, 5, 2).lengths(&[5, 0]),
    ));
    assert!(m.contains("lengths[1] = 0"), "{m}");
    let m = msg(cpu::forward(
        &w,
        &SequenceInput::new(&x, 5, 2).lengths(&[6, 1]),
    ));
    assert!(m.contains("lengths[0] = 6") && m.contains("1..=5"), "{m}");
    let m = msg(cpu::forward(
        &w,
        &SequenceInput::new(&x, 5, 2).lengths(&[5]),
    ));
    assert!(m.contains("lengths") && m.contains("[B]"), "{m}");
    let m = msg(cpu::forward(
        &w,
        &SequenceInput::new(&x, 5, 2).h0(&[0.0; 8]),
    ));
    assert!(
        m.contains("h0") && m.contains("16 values") && m.contains("8 values"),
        "{m}"
    );
    let f = cpu::forward(&w, &SequenceInput::new(&x, 5, 2)).unwrap();
    let m = msg(cpu::backward(&w, &f, &[0.0; 3], None));
    assert!(m.contains("d_output"), "{m}");
    let m = msg(cpu::backward(&w, &f, &[0.0; 40], Some(&[0.0; 3])));
    assert!(m.contains("d_h_n"), "{m}");
}

#[test]
fn weights_reject_unknown_names_and_wrong_sizes() {
    let mut w = GruWeights::init(GruConfig::new(3, 4), 0);
    let m = msg(w.set("weight_ih_l1", &[0.0; 36]));
    assert!(
        m.contains("unknown parameter `weight_ih_l1`") && m.contains("weight_ih_l0"),
        "{m}"
    );
    let m = msg(w.set("weight_ih_l0", &[0.0; 35]));
    assert!(
        m.contains("weight_ih_l0") && m.contains("[12, 3]") && m.contains("35 values"),
        "{m}"
    );
    let mut nb = GruWeights::init(GruConfig::new(3, 4).bias(false), 0);
    assert!(
        nb.set("bias_ih_l0", &[0.0; 12]).is_err(),
        "a bias-free layer has no bias tensors"
    );
}

#[test]
fn zero_sizes_in_the_config_are_rejected() {
    for cfg in [
        GruConfig::new(0, 4),
        GruConfig::new(3, 0),
        GruConfig::new(3, 4).layers(0),
    ] {
        let m = msg(cfg.validate());
        assert!(m.contains("must be at least 1"), "{m}");
    }
    let w = GruWeights::<f32>::zeros(GruConfig::new(3, 0));
    assert!(cpu::forward(&w, &SequenceInput::new(&[0.0; 3], 1, 1)).is_err());
}

#[test]
fn cell_rejects_bidirectional_and_bad_state() {
    let w = GruWeights::init(GruConfig::new(2, 3).bidirectional(true), 0);
    let m = msg(cpu::cell_step(&w, &[0.0; 2], &[0.0; 6], 1));
    assert!(m.contains("bidirectional"), "{m}");
    let w = GruWeights::init(GruConfig::new(2, 3), 0);
    let m = msg(cpu::cell_step(&w, &[0.0; 2], &[0.0; 5], 1));
    assert!(m.contains("cell state h"), "{m}");
}

#[test]
fn gpu_rejects_bad_input_without_panicking() {
    let Some(ctx) = gpu() else { return };
    let m = msg(GpuGru::new(
        ctx.clone(),
        &GruWeights::<f32>::zeros(GruConfig::new(3, 0)),
    ));
    assert!(m.contains("hidden_size"), "{m}");
    let cfg = GruConfig::new(3, 4);
    let mut g = GpuGru::new(ctx.clone(), &GruWeights::init(cfg, 0)).unwrap();
    let m = msg(g.read_output());
    assert!(m.contains("no forward pass"), "{m}");
    let m = msg(g.backward(&[0.0; 4], None));
    assert!(m.contains("no forward pass"), "{m}");
    let x = vec![0.0f32; 5 * 2 * 3];
    let m = msg(g.forward(&SequenceInput::new(&x, 5, 3)));
    assert!(m.contains("input") && m.contains("45 values"), "{m}");
    let m = msg(g.forward(&SequenceInput::new(&x, 5, 2).lengths(&[0, 5])));
    assert!(m.contains("lengths[0] = 0"), "{m}");
    g.forward(&SequenceInput::new(&x, 5, 2)).unwrap();
    let m = msg(g.backward(&[0.0; 7], None));
    assert!(
        m.contains("d_output") && m.contains("40 values") && m.contains("7 values"),
        "{m}"
    );
    let other = GruWeights::init(GruConfig::new(3, 5), 0);
    let m = msg(g.set_weights(&other));
    assert!(m.contains("weights config"), "{m}");
    let m = msg(g.step(&[0.0; 3], &[0.0; 3], 1));
    assert!(m.contains("cell state h"), "{m}");
    let bi = GruWeights::init(GruConfig::new(3, 4).bidirectional(true), 0);
    let m = msg(GpuGru::new(ctx.clone(), &bi)
        .unwrap()
        .step(&[0.0; 3], &[0.0; 8], 1));
    assert!(m.contains("bidirectional"), "{m}");
    let m = msg(GpuContext::new(&DeviceRequest {
        adapter_index: Some(999),
        ..Default::default()
    }));
    assert!(m.contains("adapter index 999"), "{m}");
}

/// A carried state of the wrong size names each dimension with its value, on the CPU
/// reference and the GPU alike.
#[test]
fn carried_state_errors_name_each_dimension() {
    use gru_engine::model::{ModelConfig, ModelParams};
    use gru_engine::train::{CpuTrainer, GpuTrainer, TrainOptions, Trainer};
    let params = ModelParams::init(ModelConfig::language_model(5, 3, 4).layers(2), 1).unwrap();
    let opts = TrainOptions::adam(1e-3);
    let mut trainers: Vec<Box<dyn Trainer>> =
        vec![Box::new(CpuTrainer::new(params.clone(), opts).unwrap())];
    if let Some(ctx) = common::gpu() {
        trainers.push(Box::new(GpuTrainer::new(ctx, &params, opts).unwrap()));
    }
    for mut t in trainers {
        let e = t
            .set_carried_state(Some((&[0.0; 5], 3)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("([layers*dirs, B, H] = [2, 3, 4])"), "{e}");
    }
}
