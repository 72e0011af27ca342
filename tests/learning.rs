//! Learning really happens on the GPU (small enough for the software device): a
//! language model memorises a short text, a classifier separates two kinds of
//! sequences, a forecaster fits a noisy sine wave.

mod common;

use common::gpu;
use gru_engine::generate::Sampling;
use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};

fn trainer(params: ModelParams, opts: TrainOptions) -> Box<dyn Trainer> {
    match gpu() {
        Some(ctx) => Box::new(GpuTrainer::new(ctx, &params, opts).unwrap()),
        None => Box::new(CpuTrainer::new(params, opts).unwrap()),
    }
}

#[test]
fn language_model_memorises_a_repeated_text() {
    let text: Vec<u8> = b"the gru engine learns. ".repeat(8);
    let mut vocab: Vec<u8> = text.clone();
    vocab.sort();
    vocab.dedup();
    let ids: Vec<u32> = text
        .iter()
        .map(|c| vocab.binary_search(c).unwrap() as u32)
        .collect();
    let cfg = ModelConfig::language_model(vocab.len(), 16, 48);
    let mut t = trainer(
        ModelParams::init(cfg, 1).unwrap(),
        TrainOptions::adam(2e-2).clip_norm(5.0),
    );
    let (b, len) = (8, 20);
    let mut rng = Rng::new(2);
    let mut last = f64::MAX;
    for step in 0..300 {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..b {
            let s = (rng.next_u64() % (ids.len() - len - 1) as u64) as usize;
            x.extend_from_slice(&ids[s..s + len]);
            y.extend_from_slice(&ids[s + 1..s + len + 1]);
        }
        t.train_step(&Batch::tokens(&x, b, len).classes(&y))
            .unwrap();
        if step % 50 == 49 {
            last = t.take_metrics(Split::Train).unwrap().loss;
            eprintln!("step {}: loss {last:.4}", step + 1);
        }
    }
    // Windows of the text: predictable everywhere but the first few characters.
    assert!(last < 0.1, "loss after 300 steps is {last}, expected < 0.1");
    // Greedy generation continues the text it memorised.
    let prompt: Vec<u32> = b"the gru"
        .iter()
        .map(|c| vocab.binary_search(c).unwrap() as u32)
        .collect();
    let out = t
        .generate(&prompt, 40, &Sampling::greedy(), &mut |_| {})
        .unwrap();
    let text: String = out.iter().map(|&i| vocab[i as usize] as char).collect();
    assert!(
        text.starts_with(" engine learns. the gru engine"),
        "generated {text:?}"
    );
}

/// Rising (class 1) or falling (class 0) noisy ramps of random length.
fn ramps(n: usize, t: usize, rng: &mut Rng) -> (Vec<f32>, Vec<u32>, Vec<usize>) {
    let (mut x, mut y, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let class = (rng.next_u64() % 2) as u32;
        let slope = if class == 1 { 0.3 } else { -0.3 };
        let start = rng.uniform(-1.0, 1.0);
        for s in 0..t {
            x.push(start + slope * s as f32 + rng.uniform(-0.4, 0.4));
        }
        y.push(class);
        l.push(3 + (rng.next_u64() % (t as u64 - 2)) as usize);
    }
    (x, y, l)
}

#[test]
fn classifier_separates_two_kinds_of_sequences() {
    let cfg = ModelConfig::classifier(ModelInput::Features(1), 16, 2);
    let mut t = trainer(
        ModelParams::init(cfg, 3).unwrap(),
        TrainOptions::adam(2e-2).max_norm(3.0),
    );
    let mut rng = Rng::new(4);
    let (b, len) = (32, 8);
    for _ in 0..120 {
        let (x, y, l) = ramps(b, len, &mut rng);
        t.train_step(&Batch::features(&x, b, len).classes(&y).lengths(&l))
            .unwrap();
    }
    let (x, y, l) = ramps(256, len, &mut rng);
    t.evaluate(&Batch::features(&x, 256, len).classes(&y).lengths(&l))
        .unwrap();
    let m = t.take_metrics(Split::Eval).unwrap();
    eprintln!(
        "held-out loss {:.4}, accuracy {:.3}",
        m.loss,
        m.accuracy.unwrap()
    );
    assert!(
        m.accuracy.unwrap() >= 0.95,
        "held-out accuracy {:?}",
        m.accuracy
    );
}

#[test]
fn forecaster_fits_a_noisy_sine() {
    let cfg = ModelConfig::forecaster(1, 24, 1);
    let mut t = trainer(ModelParams::init(cfg, 5).unwrap(), TrainOptions::adam(1e-2));
    let mut rng = Rng::new(6);
    let series: Vec<f32> = (0..2000)
        .map(|i| (i as f32 * 0.2).sin() + rng.uniform(-0.05, 0.05))
        .collect();
    let (b, win) = (32, 12);
    let windows = |rng: &mut Rng, n: usize| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let s = (rng.next_u64() % (series.len() - win - 1) as u64) as usize;
            x.extend_from_slice(&series[s..s + win]);
            y.push(series[s + win]);
        }
        (x, y)
    };
    for _ in 0..200 {
        let (x, y) = windows(&mut rng, b);
        t.train_step(&Batch::features(&x, b, win).values(&y))
            .unwrap();
    }
    let (x, y) = windows(&mut rng, 256);
    t.evaluate(&Batch::features(&x, 256, win).values(&y))
        .unwrap();
    let m = t.take_metrics(Split::Eval).unwrap();
    eprintln!(
        "held-out MSE {:.5} (noise variance 0.00083; the series' variance is 0.5)",
        m.loss
    );
    assert!(m.loss < 0.01, "held-out MSE {}", m.loss);
}
