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

/// A vocabulary of 30,000: one invocation looping over the row three times would pass
/// llvmpipe's 65,535 loop iterations; the device must still draw the reference's tokens.
#[test]
fn large_vocabularies_draw_the_same_tokens() {
    let Some(ctx) = gpu() else { return };
    let mut p = ModelParams::init(ModelConfig::language_model(30_000, 4, 8), 3).unwrap();
    p.fc_weight.iter_mut().for_each(|w| *w *= 8.0);
    let mut cpu = CpuTrainer::new(p.clone(), TrainOptions::default()).unwrap();
    let mut gpu = GpuTrainer::new(ctx, &p, TrainOptions::default()).unwrap();
    for s in [
        Sampling::greedy(),
        Sampling::new(1.0).seed(5),
        Sampling::new(0.8).top_k(40).seed(2),
    ] {
        let g = gpu.generate(&[1], 20, &s, &mut |_| {}).unwrap();
        let c = cpu.generate(&[1], 20, &s, &mut |_| {}).unwrap();
        assert_eq!(g, c, "{s:?}");
    }
}

/// The reference's draws follow softmax(logits / T) restricted to the top k.
#[test]
fn draws_follow_the_tempered_distribution() {
    let logits = [0.0f32, 1.0, 2.0, -1.0, 0.5];
    let draws = 20_000;
    for (t, k) in [(1.0f32, 0usize), (0.5, 0), (1.0, 3)] {
        let s = Sampling::new(t).top_k(k).seed(9);
        let mut counts = [0usize; 5];
        for n in 0..draws {
            counts[s.pick(&logits, n) as usize] += 1;
        }
        let mut order: Vec<usize> = (0..5).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let kept = if k == 0 { 5 } else { k };
        let w: Vec<f64> = (0..5)
            .map(|c| {
                if order[..kept].contains(&c) {
                    ((logits[c] / t) as f64).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let z: f64 = w.iter().sum();
        for c in 0..5 {
            let p = w[c] / z;
            let got = counts[c] as f64 / draws as f64;
            let se = (p * (1.0 - p) / draws as f64).sqrt();
            assert!(
                (got - p).abs() <= 4.0 * se + 1e-9,
                "T = {t}, k = {k}: token {c} drawn {got}, expected {p:.4} ± {:.4}",
                4.0 * se
            );
        }
    }
}

/// A token model whose head is not over its vocabulary (9 outputs, 7 tokens) would draw
/// tokens the embedding does not have (an unguarded read on GL, where wgpu turns bounds
/// checks off): both trainers refuse it, naming both sizes.
#[test]
fn a_head_wider_than_the_vocabulary_is_refused() {
    let cfg = ModelConfig {
        outputs: 9,
        ..ModelConfig::language_model(7, 4, 5)
    };
    let p = ModelParams::init(cfg, 1).unwrap();
    let mut trainers: Vec<Box<dyn Trainer>> = vec![Box::new(
        CpuTrainer::new(p.clone(), TrainOptions::default()).unwrap(),
    )];
    if let Some(ctx) = gpu() {
        trainers.push(Box::new(
            GpuTrainer::new(ctx, &p, TrainOptions::default()).unwrap(),
        ));
    }
    for t in &mut trainers {
        let err = t
            .generate(&[1, 2], 5, &Sampling::greedy(), &mut |_| {})
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, GruError::Config(_)), "{msg}");
        assert!(msg.contains("7 outputs expected, found 9"), "{msg}");
    }
}
