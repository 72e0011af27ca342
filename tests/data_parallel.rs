//! Data-parallel training (`gru_engine::dist`): N ranks (threads here, processes under
//! MPI) training on B/N rows each of every global batch of B rows equal one process
//! training on the whole batch: the loss at every step and every parameter after, on the
//! CPU reference and on the GPU. Only the order of the sums differs, so they agree within
//! 1e-5·max(1, |value|); the ranks' parameters agree exactly.

mod common;

use common::*;
use gru_engine::config::GruVariant;
use gru_engine::dist::{Communicator, DataParallel, Shard, SingleProcess, ThreadGroup};
use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};

/// Rows `[r0, r0 + n)` of a batch-first batch.
fn rows(d: &Data, r0: usize, n: usize) -> Data {
    fn take<T: Copy>(v: &[T], b: usize, r0: usize, n: usize) -> Vec<T> {
        let w = v.len() / b;
        v[r0 * w..(r0 + n) * w].to_vec()
    }
    Data {
        tokens: take(&d.tokens, d.b, r0, n),
        features: take(&d.features, d.b, r0, n),
        classes: take(&d.classes, d.b, r0, n),
        values: take(&d.values, d.b, r0, n),
        lengths: d.lengths.as_ref().map(|l| l[r0..r0 + n].to_vec()),
        b: n,
        t: d.t,
    }
}

type Make<'a> = &'a (dyn Fn() -> Box<dyn Trainer> + Sync);

/// Each rank's (loss of every global batch, summed over ranks; parameters after).
fn train_ranks(make: Make, batches: &[Data], ranks: usize) -> Vec<(Vec<f64>, ModelParams)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadGroup::new(ranks)
            .into_iter()
            .map(|comm| {
                s.spawn(move || {
                    let mut t = make();
                    let mut losses = Vec::new();
                    for d in batches {
                        let shard = Shard::of(d.b, comm.rank(), comm.size()).unwrap();
                        let mine = rows(d, shard.first_row, shard.rows);
                        t.train_step_shared(&mine.batch(), shard, &comm).unwrap();
                        let m = t.take_metrics(Split::Train).unwrap().summed(&comm).unwrap();
                        losses.push(m.loss);
                    }
                    (losses, t.params().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// One process training on the whole batches.
fn train_alone(make: Make, batches: &[Data]) -> (Vec<f64>, ModelParams) {
    let mut t = make();
    let mut losses = Vec::new();
    for d in batches {
        t.train_step(&d.batch()).unwrap();
        losses.push(t.take_metrics(Split::Train).unwrap().loss);
    }
    (losses, t.params().unwrap())
}

fn close(what: &str, got: f64, want: f64) {
    let tol = 1e-5 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: {got} vs {want}");
}

/// 10 global batches of `b` rows through 1 process and through 2 and 4 ranks.
fn compare(name: &str, cfg: ModelConfig, opts: TrainOptions, b: usize, t: usize, lengths: bool) {
    let mut rng = Rng::new(77);
    let batches: Vec<Data> = (0..10)
        .map(|_| data(&cfg, b, t, lengths, &mut rng))
        .collect();
    let params = ModelParams::init(cfg, 5).unwrap();
    let cpu = || -> Box<dyn Trainer> { Box::new(CpuTrainer::new(params.clone(), opts).unwrap()) };
    let ctx = gpu();
    let gpu = || -> Box<dyn Trainer> {
        let ctx = ctx.clone().expect("an adapter");
        Box::new(GpuTrainer::new(ctx, &params, opts).unwrap())
    };
    let mut devices: Vec<(&str, Make)> = vec![("cpu", &cpu)];
    if ctx.is_some() {
        devices.push(("gpu", &gpu));
    }
    for (device, make) in devices {
        let (want_loss, want) = train_alone(make, &batches);
        for ranks in [2, 4] {
            let got = train_ranks(make, &batches, ranks);
            let case = format!("{name} on {device}, {ranks} ranks");
            for (r, (losses, p)) in got.iter().enumerate() {
                assert_eq!(
                    p, &got[0].1,
                    "{case}: rank {r}'s parameters differ from rank 0's"
                );
                for (s, (&l, &w)) in losses.iter().zip(&want_loss).enumerate() {
                    close(&format!("{case}: loss at step {s}"), l, w);
                }
            }
            for (info, (g, w)) in want
                .infos()
                .iter()
                .zip(got[0].1.tensors().iter().zip(want.tensors()))
            {
                for (i, (&x, &y)) in g.iter().zip(w).enumerate() {
                    close(&format!("{case}: {}[{i}]", info.name), x as f64, y as f64);
                }
            }
        }
    }
}

#[test]
fn language_model_with_dropout_adam_and_clipping() {
    // 48 tokens a batch over a vocabulary of 50: each rank's shard holds rows of the
    // embedding the others' do not, which every rank must still update.
    let cfg = ModelConfig::language_model(50, 5, 9)
        .layers(2)
        .dropout(0.25);
    let opts = TrainOptions::adam(1e-2).clip_norm(0.5).seed(3);
    compare("language model", cfg, opts, 8, 6, false);
}

/// A stateful language model: each rank carries the states of its own rows.
#[test]
fn stateful_language_model() {
    let cfg = ModelConfig::language_model(20, 4, 6);
    let opts = TrainOptions::adam(1e-2).stateful(true);
    compare("stateful language model", cfg, opts, 8, 5, false);
}

#[test]
fn bidirectional_classifier_with_lengths() {
    let cfg = ModelConfig::classifier(ModelInput::Features(3), 7, 3)
        .bidirectional(true)
        .variant(GruVariant::ResetBefore);
    let opts = TrainOptions::sgd(0.1, 0.9).clip_value(0.05);
    compare("classifier", cfg, opts, 8, 5, true);
    let tokens = ModelInput::Tokens {
        vocab: 30,
        embed_dim: 3,
    };
    let cfg = ModelConfig::classifier(tokens, 5, 1)
        .layers(2)
        .bidirectional(true)
        .dropout(0.3);
    compare(
        "binary token classifier",
        cfg,
        TrainOptions::adamw(5e-3),
        8,
        5,
        true,
    );
}

#[test]
fn forecaster() {
    // 7 rows: shares that differ by a row (3 and 4 on 2 ranks, 1 and 2 on 4).
    let cfg = ModelConfig::forecaster(2, 6, 2);
    let opts = TrainOptions::adam(1e-2).max_norm(0.5);
    compare("forecaster", cfg, opts, 7, 7, false);
}

/// Shards that do not divide the batch, or lie outside it, are errors naming the sizes;
/// one rank through `SingleProcess` is plain training.
#[test]
fn shards_are_checked_and_one_rank_is_plain_training() {
    let e = Shard::of(3, 0, 4).unwrap_err().to_string();
    assert!(
        e.contains("3 rows over 4 ranks") && e.contains("one row per rank"),
        "{e}"
    );
    let split: Vec<_> = (0..4).map(|r| Shard::of(10, r, 4).unwrap()).collect();
    let places: Vec<_> = split.iter().map(|s| (s.first_row, s.rows)).collect();
    assert_eq!(places, [(0, 2), (2, 3), (5, 2), (7, 3)]);
    assert!(Shard::of(8, 4, 4).is_err());
    let cfg = ModelConfig::forecaster(2, 4, 1);
    let params = ModelParams::init(cfg, 1).unwrap();
    let mut rng = Rng::new(2);
    let d = data(&cfg, 4, 3, false, &mut rng);
    let mut t = CpuTrainer::new(params.clone(), TrainOptions::adam(1e-2)).unwrap();
    let bad = Shard {
        first_row: 2,
        rows: 4,
        global_rows: 4,
    };
    let e = t
        .train_step_shared(&d.batch(), bad, &SingleProcess)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 rows from global row 2 of 4"), "{e}");
    let mut alone = CpuTrainer::new(params, TrainOptions::adam(1e-2)).unwrap();
    alone.train_step(&d.batch()).unwrap();
    t.train_step_shared(&d.batch(), Shard::whole(4), &SingleProcess)
        .unwrap();
    assert_eq!(t.params().unwrap(), alone.params().unwrap());
}

/// `DataParallel` takes whole global batches: 2 ranks equal one process in training
/// loss, parameters and evaluation (of a batch whose rows divide over the ranks and of
/// one whose rows do not, which rank 0 evaluates alone), on the CPU and the GPU; and
/// `check_in_sync` names a rank whose parameters drifted, on every rank.
#[test]
fn data_parallel_trainer_takes_whole_batches() {
    let cfg = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 40,
            embed_dim: 4,
        },
        6,
        3,
    )
    .bidirectional(true)
    .dropout(0.2);
    let opts = TrainOptions::adam(1e-2).clip_norm(1.0).seed(9);
    let mut rng = Rng::new(8);
    let train: Vec<Data> = (0..6).map(|_| data(&cfg, 8, 5, true, &mut rng)).collect();
    let evals = [
        data(&cfg, 8, 5, true, &mut rng),
        data(&cfg, 5, 5, true, &mut rng),
    ];
    let params = ModelParams::init(cfg, 2).unwrap();
    let ctx = gpu();
    let make = |gpu: bool| -> Box<dyn Trainer> {
        match (gpu, &ctx) {
            (true, Some(ctx)) => Box::new(GpuTrainer::new(ctx.clone(), &params, opts).unwrap()),
            _ => Box::new(CpuTrainer::new(params.clone(), opts).unwrap()),
        }
    };
    for on_gpu in [false, true] {
        if on_gpu && ctx.is_none() {
            continue;
        }
        let run = |t: &mut dyn Trainer| {
            let mut losses = Vec::new();
            // An evaluation first: the training shapes' plans then exist without the
            // shard's places, which training must not reuse for its dropout masks.
            t.evaluate(&evals[0].batch()).unwrap();
            for d in &train {
                t.train_step(&d.batch()).unwrap();
                losses.push(t.take_metrics(Split::Train).unwrap().loss);
            }
            for d in &evals {
                t.evaluate(&d.batch()).unwrap();
            }
            let m = t.take_metrics(Split::Eval).unwrap();
            (losses, m, t.params().unwrap())
        };
        let (want_losses, want_eval, want) = run(make(on_gpu).as_mut());
        let got = std::thread::scope(|s| {
            let handles: Vec<_> = ThreadGroup::new(2)
                .into_iter()
                .map(|comm| {
                    let (run, make) = (&run, &make);
                    s.spawn(move || {
                        let mut t = DataParallel::new(make(on_gpu), &comm);
                        let out = run(&mut t);
                        t.check_in_sync().unwrap();
                        // Rank 1 drifts: every rank hears which.
                        if comm.rank() == 1 {
                            let mut p = t.params().unwrap();
                            p.fc_bias[0] += 1e-3;
                            t.set_params(&p).unwrap();
                        }
                        let e = t.check_in_sync().unwrap_err().to_string();
                        assert!(e.contains("rank 1's parameters differ"), "{e}");
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let case = if on_gpu { "gpu" } else { "cpu" };
        for (losses, eval, p) in &got {
            for (s, (&l, &w)) in losses.iter().zip(&want_losses).enumerate() {
                close(&format!("{case}: loss at step {s}"), l, w);
            }
            close(&format!("{case}: eval loss"), eval.loss, want_eval.loss);
            let (acc, want_acc) = (eval.accuracy.unwrap(), want_eval.accuracy.unwrap());
            close(&format!("{case}: eval accuracy"), acc, want_acc);
            assert_eq!(eval.count, want_eval.count, "{case}");
            for (g, w) in p.tensors().iter().zip(want.tensors()) {
                for (&x, &y) in g.iter().zip(w) {
                    close(&format!("{case}: parameter"), x as f64, y as f64);
                }
            }
        }
    }
}
