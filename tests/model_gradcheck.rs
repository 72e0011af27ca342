//! Finite-difference checks (f64) of the CPU reference model: embedding, GRU stack with
//! dropout between layers, last-state gathering, dense head and each loss. The dropout
//! mask is fixed by its seed, so the loss is a smooth function of the parameters.
//! Central differences with eps = 1e-6; allowed 1e-7 absolute + 1e-5 relative.

use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams, IGNORE};
use gru_engine::rng::Rng;
use gru_engine::train::model_pass;
use gru_engine::GruVariant;

fn mean_loss(p: &ModelParams<f64>, batch: &Batch, seed: Option<u32>) -> f64 {
    let out = model_pass(p, batch, seed, None, false).unwrap();
    out.totals[0] / out.totals[2]
}

fn check(cfg: ModelConfig, batch: &Batch, seed: Option<u32>, case: &str) {
    let p = ModelParams::init(cfg, 9).unwrap().cast::<f64>();
    let out = model_pass(&p, batch, seed, None, true).unwrap();
    let grads = out.grads.unwrap();
    let eps = 1e-6;
    let infos = p.infos();
    for (ti, info) in infos.iter().enumerate() {
        for k in 0..info.len() {
            let mut plus = p.clone();
            plus.tensors_mut()[ti][k] += eps;
            let mut minus = p.clone();
            minus.tensors_mut()[ti][k] -= eps;
            let numeric =
                (mean_loss(&plus, batch, seed) - mean_loss(&minus, batch, seed)) / (2.0 * eps);
            let analytic = grads.tensors()[ti][k];
            let err = (analytic - numeric).abs();
            assert!(
                err <= 1e-7 + 1e-5 * numeric.abs(),
                "{case}: {}[{k}]: analytic {analytic:e} vs finite difference {numeric:e}",
                info.name
            );
        }
    }
}

#[test]
fn language_model_with_dropout_and_ignored_targets() {
    let cfg = ModelConfig::language_model(5, 3, 4).layers(2).dropout(0.3);
    let x = [0u32, 1, 2, 3, 4, 0, 1, 2, 4, 4, 3, 1];
    let mut y = [1u32, 2, 3, 4, 0, 1, 2, 0, 4, 3, 1, 0];
    y[5] = IGNORE;
    check(cfg, &Batch::tokens(&x, 2, 6).classes(&y), Some(77), "lm");
}

#[test]
fn bidirectional_classifier_last_state_with_lengths() {
    let cfg = ModelConfig::classifier(ModelInput::Features(2), 3, 3).bidirectional(true);
    let mut rng = Rng::new(4);
    let x = rng.uniform_vec(3 * 4 * 2, -1.0, 1.0);
    let batch = Batch::features(&x, 3, 4)
        .classes(&[2, 0, 1])
        .lengths(&[4, 1, 3]);
    check(cfg, &batch, None, "classifier");
}

#[test]
fn binary_cross_entropy_tokens_reset_before() {
    let cfg = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 4,
            embed_dim: 2,
        },
        3,
        1,
    )
    .variant(GruVariant::ResetBefore)
    .dropout(0.2);
    let x = [0u32, 3, 2, 1, 1, 1, 0, 2];
    check(
        cfg,
        &Batch::tokens(&x, 2, 4).values(&[1.0, 0.0]),
        Some(5),
        "bce",
    );
}

#[test]
fn forecaster_mean_squared_error_two_layers() {
    let cfg = ModelConfig::forecaster(2, 3, 2).layers(2);
    let mut rng = Rng::new(8);
    let x = rng.uniform_vec(2 * 5 * 2, -1.0, 1.0);
    check(
        cfg,
        &Batch::features(&x, 2, 5).values(&[0.5, -0.2, 0.1, 0.9]),
        None,
        "mse",
    );
}
