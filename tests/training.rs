//! Training on the GPU against the CPU reference trainer: every model kind, loss,
//! optimiser, clipping, dropout, max-norm and stateful carrying, step by step.

mod common;

use std::sync::Arc;

use common::{assert_close, data, gpu, gpu_portable, to_f64};
use gru_engine::model::{ModelConfig, ModelInput, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, TrainOptions, Trainer};
use gru_engine::GpuContext;
use gru_engine::GruVariant;

/// Trains the same model on both trainers for `steps` batches and compares losses and
/// parameters after every step.
fn compare(
    name: &str,
    cfg: ModelConfig,
    opts: TrainOptions,
    b: usize,
    t: usize,
    lengths: bool,
    steps: usize,
) {
    let Some(ctx) = gpu() else { return };
    compare_on(ctx, name, cfg, opts, (b, t, lengths), steps);
}

/// [`compare`] on `ctx`.
fn compare_on(
    ctx: Arc<GpuContext>,
    name: &str,
    cfg: ModelConfig,
    opts: TrainOptions,
    (b, t, lengths): (usize, usize, bool),
    steps: usize,
) {
    let params = ModelParams::init(cfg, 11).unwrap();
    let mut cpu = CpuTrainer::new(params.clone(), opts).unwrap();
    let mut gpu = GpuTrainer::new(ctx, &params, opts).unwrap();
    let mut rng = Rng::new(5);
    for step in 0..steps {
        let d = data(&cfg, b, t, lengths, &mut rng);
        cpu.train_step(&d.batch()).unwrap();
        gpu.train_step(&d.batch()).unwrap();
        let (mc, mg) = (
            cpu.take_metrics(Split::Train).unwrap(),
            gpu.take_metrics(Split::Train).unwrap(),
        );
        let case = format!("{name}, step {step}");
        assert_close("loss", &[mg.loss as f32], &[mc.loss], 1e-4, 1e-4, &case);
        assert_eq!(mg.count, mc.count, "{case}: counted targets");
        match (mg.accuracy, mc.accuracy) {
            (Some(g), Some(c)) => assert!((g - c).abs() < 1e-9, "{case}: accuracy {g} vs {c}"),
            (None, None) => {}
            other => panic!("{case}: accuracy {other:?}"),
        }
        let (pc, pg) = (cpu.params().unwrap(), gpu.params().unwrap());
        for ((info, a), g) in pc.infos().iter().zip(pc.tensors()).zip(pg.tensors()) {
            assert_close(&info.name, g, &to_f64(a), 2e-4, 1e-3, &case);
        }
    }
    // Evaluation and prediction agree too (no dropout).
    let d = data(&cfg, b, t, lengths, &mut rng);
    cpu.evaluate(&d.batch()).unwrap();
    gpu.evaluate(&d.batch()).unwrap();
    let (ec, eg) = (
        cpu.take_metrics(Split::Eval).unwrap(),
        gpu.take_metrics(Split::Eval).unwrap(),
    );
    assert_close("eval loss", &[eg.loss as f32], &[ec.loss], 1e-4, 1e-4, name);
    let (yc, yg) = (
        cpu.predict(&d.batch()).unwrap(),
        gpu.predict(&d.batch()).unwrap(),
    );
    assert_close("predict", &yg, &to_f64(&yc), 1e-4, 1e-3, name);
    let (sc, sg) = (
        cpu.optimizer_state().unwrap(),
        gpu.optimizer_state().unwrap(),
    );
    assert_eq!(
        sg.step, steps as u64,
        "{name}: updates counted on the device"
    );
    // The moment buffers (momentum, Adam's m and v) agree element by element.
    for (i, info) in cpu.params().unwrap().infos().iter().enumerate() {
        assert_close(
            &format!("m {}", info.name),
            &sg.m[i],
            &to_f64(&sc.m[i]),
            1e-5,
            1e-3,
            name,
        );
        assert_close(
            &format!("v {}", info.name),
            &sg.v[i],
            &to_f64(&sc.v[i]),
            1e-7,
            1e-3,
            name,
        );
    }
}

#[test]
fn language_model_two_layers_dropout_adam_clipnorm_maxnorm() {
    let cfg = ModelConfig::language_model(7, 5, 9).layers(2).dropout(0.25);
    let opts = TrainOptions::adam(1e-2)
        .clip_norm(0.5)
        .max_norm(1.0)
        .seed(3);
    compare("lm", cfg, opts, 3, 6, false, 4);
}

#[test]
fn classifier_bidirectional_reset_before_sgd_clipvalue_lengths() {
    let cfg = ModelConfig::classifier(ModelInput::Features(3), 7, 3)
        .bidirectional(true)
        .variant(GruVariant::ResetBefore);
    let opts = TrainOptions::sgd(0.1, 0.9).clip_value(0.05);
    compare("classifier", cfg, opts, 5, 4, true, 4);
}

#[test]
fn binary_classifier_tokens_adamw_dropout_bidirectional() {
    let cfg = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 11,
            embed_dim: 3,
        },
        5,
        1,
    )
    .layers(2)
    .bidirectional(true)
    .dropout(0.3);
    compare("binary", cfg, TrainOptions::adamw(5e-3), 4, 5, true, 3);
}

#[test]
fn forecaster_hidden_one_and_sixty_seven() {
    for h in [1, 67] {
        let cfg = ModelConfig::forecaster(2, h, 2);
        compare(
            &format!("forecaster H={h}"),
            cfg,
            TrainOptions::adam(1e-2).max_norm(0.5),
            2,
            7,
            false,
            3,
        );
    }
}

#[test]
fn stateful_language_model_carries_state() {
    let cfg = ModelConfig::language_model(5, 4, 6).layers(2);
    compare(
        "stateful",
        cfg,
        TrainOptions::adam(1e-2).stateful(true),
        2,
        5,
        false,
        4,
    );
}

/// The builds a GPU gets, forced on this adapter: a small embedding table joins the
/// dense update (the gradient pass writes all its rows), past 256 rows a weight
/// gradient's split-K slices and its bias's column-sum slices are reduced in one
/// dispatch (both the layer's and the head's: 29 x 20 = 580 rows), and past 3H = 256
/// the first layer's input gradient reaches the embedding in split-K slices (H = 90).
#[test]
fn gpu_builds_train_like_the_reference() {
    let Some(ctx) = gpu_portable() else { return };
    let lm = ModelConfig::language_model(7, 5, 9).layers(2).dropout(0.25);
    let opts = TrainOptions::adam(1e-2)
        .clip_norm(0.5)
        .max_norm(1.0)
        .seed(3);
    compare_on(ctx.clone(), "gpu builds lm", lm, opts, (3, 6, false), 4);
    let binary = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 11,
            embed_dim: 3,
        },
        5,
        1,
    )
    .layers(2)
    .bidirectional(true);
    let opts = TrainOptions::adamw(5e-3);
    compare_on(
        ctx.clone(),
        "gpu builds binary",
        binary,
        opts,
        (4, 5, true),
        3,
    );
    let large = ModelConfig::language_model(67, 3, 65);
    let opts = TrainOptions::adam(1e-2).clip_norm(1.0);
    compare_on(
        ctx.clone(),
        "gpu builds large",
        large,
        opts,
        (29, 20, false),
        2,
    );
    let wide = ModelConfig::language_model(13, 5, 90);
    let opts = TrainOptions::sgd(0.5, 0.0);
    compare_on(ctx.clone(), "gpu builds wide", wide, opts, (3, 6, false), 2);
    // Its gradients themselves, which are small beside the weights they update.
    let params = ModelParams::init(wide, 4).unwrap();
    let mut cpu = CpuTrainer::new(params.clone(), opts).unwrap();
    let mut gpu = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
    let d = data(&wide, 3, 6, false, &mut Rng::new(8));
    let (gc, gg) = (
        cpu.gradients(&d.batch()).unwrap(),
        gpu.gradients(&d.batch()).unwrap(),
    );
    for ((info, c), g) in gc.infos().iter().zip(gc.tensors()).zip(gg.tensors()) {
        let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let case = "gpu builds wide, gradients";
        assert_close(&info.name, g, &to_f64(c), 1e-4 * scale, 1e-3, case);
    }
    let features = ModelConfig::classifier(ModelInput::Features(3), 7, 3)
        .bidirectional(true)
        .variant(GruVariant::ResetBefore);
    let opts = TrainOptions::sgd(0.1, 0.9).clip_value(0.05);
    compare_on(
        ctx,
        "gpu builds features",
        features,
        opts,
        (30, 20, true),
        2,
    );
}

/// The device memory a trainer takes (`GpuContext::allocated_bytes`, what `gru train`
/// reports): at least its four flat buffers (values, gradients, two moments), and once
/// a shape is prepared at least that shape's saved activations and states; a prepared
/// shape is built once.
#[test]
fn allocated_bytes_count_the_model_and_its_workspace() {
    let Some(_) = gpu() else { return };
    // A device of its own: the other tests allocate on the shared one meanwhile.
    let ctx = GpuContext::new_default().unwrap();
    let cfg = ModelConfig::language_model(11, 4, 16);
    let params = ModelParams::init(cfg, 1).unwrap();
    let before = ctx.allocated_bytes();
    let mut t = GpuTrainer::new(ctx.clone(), &params, TrainOptions::adam(1e-2)).unwrap();
    let model = ctx.allocated_bytes() - before;
    let n = cfg.param_count() as u64;
    assert!(model >= 16 * n, "{model} bytes for {n} parameters");
    t.prepare(20, 8).unwrap();
    let shape = ctx.allocated_bytes() - before - model;
    let (tb, h) = (20 * 8, 16);
    assert!(shape >= 4 * (tb * 4 * h + (tb + 8) * h), "{shape} bytes");
    let all = ctx.allocated_bytes();
    t.prepare(20, 8).unwrap();
    assert_eq!(ctx.allocated_bytes(), all);
}

#[test]
fn summary_counts_match_pytorch_and_keras() {
    // TensorFlow's text-generation tutorial (seed 000): 4,021,569 parameters in Keras.
    let lm = ModelConfig::language_model(65, 256, 1024);
    let rows = lm.layer_summaries();
    assert_eq!(
        rows.iter().map(|r| r.params).collect::<Vec<_>>(),
        [16_640, 3_938_304, 66_625]
    );
    assert!(
        lm.summary().contains("Total params: 4,021,569"),
        "{}",
        lm.summary()
    );
    // Seed 004: GRU(256) over 10 features -> Dense(1): 205,824 + 257.
    let clf = ModelConfig::classifier(ModelInput::Features(10), 256, 1);
    assert_eq!(clf.param_count(), 206_081);
    assert_eq!(clf.layer_summaries()[0].output_shape, "(None, 256)");
    // Two bidirectional layers: the second reads 2H features; equal to the parameters held.
    let bi = ModelConfig::classifier(ModelInput::Features(3), 5, 2)
        .layers(2)
        .bidirectional(true);
    let p = ModelParams::init(bi, 0).unwrap();
    let held: usize = p.tensors().iter().map(|t| t.len()).sum();
    assert_eq!(bi.param_count(), held);
    assert_eq!(
        bi.layer_summaries()[1].params,
        2 * (3 * 5 * (10 + 5) + 6 * 5)
    );
}

#[test]
fn larger_awkward_shapes_match_the_reference() {
    // 145 head rows (> one workgroup), vocab 67 and H = 65 (not multiples of 64).
    let cfg = ModelConfig::language_model(67, 3, 65);
    compare(
        "lm large",
        cfg,
        TrainOptions::adam(1e-2).clip_norm(1.0),
        5,
        29,
        false,
        2,
    );
}

/// A vocabulary far larger than a batch: most embedding rows sit out most steps and take
/// them lazily (shaders/embed_update.wgsl). Past twice the lazy update's ring of 64
/// steps, with an evaluation, a gradient pass and a readback between, the table, every
/// other tensor and the moments still match the dense CPU reference, for each optimiser,
/// and with each batch in chunks. The GPU builds (forced here) update this small a
/// table densely: every row every step, as the reference.
#[test]
fn sparse_batches_over_a_large_vocabulary_match_the_dense_reference() {
    for ctx in [gpu(), gpu_portable()].into_iter().flatten() {
        sparse_batches_on(ctx);
    }
}

fn sparse_batches_on(ctx: Arc<GpuContext>) {
    let cfg = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 150,
            embed_dim: 4,
        },
        5,
        3,
    );
    let optimisers = [
        (
            "adam, L2 decay, clip-norm",
            TrainOptions::adam(1e-2).weight_decay(1e-2).clip_norm(0.5),
        ),
        ("adamw", TrainOptions::adamw(1e-2)),
        (
            "sgd, momentum, decay",
            TrainOptions::sgd(0.1, 0.9).weight_decay(1e-3),
        ),
        ("sgd", TrainOptions::sgd(0.1, 0.0).clip_value(0.05)),
    ];
    // The last case runs each batch in chunks of one row: the rows a batch holds are the
    // union over its chunks.
    for (k, (name, opts)) in optimisers.into_iter().enumerate() {
        let params = ModelParams::init(cfg, 11).unwrap();
        let mut cpu = CpuTrainer::new(params.clone(), opts).unwrap();
        let mut gpu = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
        if k == 3 {
            gpu.set_batch_chunk(Some(1));
        }
        let mut rng = Rng::new(5);
        for step in 1..=140 {
            // Six tokens of 150 a step.
            let d = data(&cfg, 2, 3, false, &mut rng);
            cpu.train_step(&d.batch()).unwrap();
            gpu.train_step(&d.batch()).unwrap();
            let case = format!("{name}, step {step}");
            if step == 30 {
                let e = data(&cfg, 4, 3, false, &mut rng);
                cpu.evaluate(&e.batch()).unwrap();
                gpu.evaluate(&e.batch()).unwrap();
                let (ec, eg) = (
                    cpu.take_metrics(Split::Eval).unwrap(),
                    gpu.take_metrics(Split::Eval).unwrap(),
                );
                assert_close(
                    "eval loss",
                    &[eg.loss as f32],
                    &[ec.loss],
                    1e-4,
                    1e-4,
                    &case,
                );
            }
            if step == 100 {
                // Gradients only: rows caught up, no step taken, the table's gradient
                // zero outside the batch's rows.
                let (gc, gg) = (
                    cpu.gradients(&d.batch()).unwrap(),
                    gpu.gradients(&d.batch()).unwrap(),
                );
                assert_close(
                    "d embedding",
                    &gg.embedding,
                    &to_f64(&gc.embedding),
                    1e-5,
                    1e-3,
                    &case,
                );
            }
            if step == 110 {
                let (pc, pg) = (cpu.params().unwrap(), gpu.params().unwrap());
                assert_close(
                    "embedding",
                    &pg.embedding,
                    &to_f64(&pc.embedding),
                    2e-4,
                    1e-3,
                    &case,
                );
            }
        }
        let (pc, pg) = (cpu.params().unwrap(), gpu.params().unwrap());
        for ((info, a), g) in pc.infos().iter().zip(pc.tensors()).zip(pg.tensors()) {
            assert_close(&info.name, g, &to_f64(a), 2e-4, 1e-3, name);
        }
        let (sc, sg) = (
            cpu.optimizer_state().unwrap(),
            gpu.optimizer_state().unwrap(),
        );
        assert_close("m embedding", &sg.m[0], &to_f64(&sc.m[0]), 1e-5, 1e-3, name);
        assert_close("v embedding", &sg.v[0], &to_f64(&sc.v[0]), 1e-7, 1e-3, name);
    }
}

/// Resuming mid-ring with lagging embedding rows: the state read at step 70 (after the
/// flush at 64, rows lagging since) and loaded into a new trainer continues as the
/// uninterrupted one does, whose rows catch up lazily.
#[test]
fn resuming_with_lagging_embedding_rows_matches_straight_training() {
    let Some(ctx) = gpu() else { return };
    let cfg = ModelConfig::classifier(
        ModelInput::Tokens {
            vocab: 150,
            embed_dim: 4,
        },
        5,
        3,
    );
    let opts = TrainOptions::adamw(1e-2);
    let params = ModelParams::init(cfg, 12).unwrap();
    let mut rng = Rng::new(6);
    let batches: Vec<_> = (0..90).map(|_| data(&cfg, 2, 3, false, &mut rng)).collect();
    let mut straight = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
    let mut first = GpuTrainer::new(ctx.clone(), &params, opts).unwrap();
    for d in &batches {
        straight.train_step(&d.batch()).unwrap();
    }
    for d in &batches[..70] {
        first.train_step(&d.batch()).unwrap();
    }
    let (p70, s70) = (first.params().unwrap(), first.optimizer_state().unwrap());
    let mut resumed = GpuTrainer::new(ctx, &p70, opts).unwrap();
    resumed.set_optimizer_state(&s70).unwrap();
    for d in &batches[70..] {
        resumed.train_step(&d.batch()).unwrap();
    }
    let (a, b) = (straight.params().unwrap(), resumed.params().unwrap());
    for ((info, x), y) in a.infos().iter().zip(a.tensors()).zip(b.tensors()) {
        assert_close(&info.name, y, &to_f64(x), 1e-6, 1e-6, "resume at step 70");
    }
}
