//! Generation: the GPU sampler draws exactly what the CPU reference draws (greedy,
//! temperature, top-k, seeds), streams every token, and refuses impossible requests.

mod common;

use common::gpu;
use gru_engine::generate::Sampling;
use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
use gru_engine::train::{CpuTrainer, GpuTrainer, TrainOptions, Trainer};
use gru_engine::GruError;

fn params() -> ModelParams {
    let mut p = ModelParams::init(ModelConfig::language_model(13, 6, 10).layers(2), 3).unwrap();
    // Sharper logits than the initialisation gives, so the samplers' choices differ.
    p.fc_weight.iter_mut().for_each(|w| *w *= 8.0);
    p
}

#[test]
fn gpu_draws_the_same_tokens_as_the_reference() {
    let Some(ctx) = gpu() else { return };
    let p = params();
    let mut cpu = CpuTrainer::new(p.clone(), TrainOptions::default()).unwrap();
    let mut gpu = GpuTrainer::new(ctx, &p, TrainOptions::default()).unwrap();
    let cases = [
        (Sampling::greedy(), vec![1, 2, 3]),
        (Sampling::new(1.0).seed(5), vec![4]),
        (Sampling::new(0.7).top_k(3).seed(1 << 40), vec![0, 12, 7, 7]),
        (Sampling::new(2.0).top_k(1), vec![9]),
    ];
    for (s, prompt) in cases {
        let mut streamed = Vec::new();
        // 70 tokens: more than one submission's chunk of 64.
        let g = gpu
            .generate(&prompt, 70, &s, &mut |t| streamed.push(t))
            .unwrap();
        let c = cpu.generate(&prompt, 70, &s, &mut |_| {}).unwrap();
        assert_eq!(g, c, "{s:?} prompt {prompt:?}");
        assert_eq!(streamed, g, "every token is streamed, in order");
        assert!(g.iter().all(|&t| t < 13));
    }
    // top-k 1 is greedy; different seeds give different text.
    let greedy = cpu
        .generate(&[2], 30, &Sampling::greedy(), &mut |_| {})
        .unwrap();
    let k1 = cpu
        .generate(&[2], 30, &Sampling::new(1.0).top_k(1).seed(9), &mut |_| {})
        .unwrap();
    assert_eq!(greedy, k1);
    let a = cpu
        .generate(&[2], 30, &Sampling::new(1.0).seed(1), &mut |_| {})
        .unwrap();
    let b = cpu
        .generate(&[2], 30, &Sampling::new(1.0).seed(2), &mut |_| {})
        .unwrap();
    assert_ne!(a, b);
}

#[test]
fn impossible_requests_are_errors() {
    let mut t = CpuTrainer::new(params(), TrainOptions::default()).unwrap();
    let mut nop = |_| {};
    assert!(matches!(
        t.generate(&[], 5, &Sampling::greedy(), &mut nop),
        Err(GruError::Input(_))
    ));
    assert!(matches!(
        t.generate(&[13], 5, &Sampling::greedy(), &mut nop),
        Err(GruError::Input(_))
    ));
    assert!(matches!(
        t.generate(&[1], 5, &Sampling::new(-1.0), &mut nop),
        Err(GruError::Config(_))
    ));
    let clf = ModelParams::init(ModelConfig::classifier(ModelInput::Features(2), 4, 2), 1).unwrap();
    let mut c = CpuTrainer::new(clf, TrainOptions::default()).unwrap();
    assert!(matches!(
        c.generate(&[0], 5, &Sampling::greedy(), &mut nop),
        Err(GruError::Config(_))
    ));
}
