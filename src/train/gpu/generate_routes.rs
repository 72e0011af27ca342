//! Generation's routes against the CPU reference: every route draws the reference's
//! tokens (the fused builds, plain, subgroup and uniform windows where the adapter has
//! them, and the per-kernel path) for both variants, one and two layers, sizes that are
//! no multiple of 8 or of the workgroup, and chunk edges (one draw per dispatch,
//! dispatches that overrun the request, 150 draws wrapping the token ring).

use crate::config::GruVariant;
use crate::generate::gpu::{dims, GEN_CHUNK};
use crate::generate::Sampling;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::generate::{fused_route, Fused};
use crate::gpu::ops::testutil::ctx;
use crate::model::{ModelConfig, ModelParams};
use crate::train::{CpuTrainer, GpuTrainer, TrainOptions, Trainer};

fn params(layers: usize, variant: GruVariant, (v, e, h): (usize, usize, usize)) -> ModelParams {
    let cfg = ModelConfig::language_model(v, e, h)
        .layers(layers)
        .variant(variant);
    let mut p = ModelParams::init(cfg, 11).unwrap();
    // Sharper logits than the initialisation gives, so draws differ by token.
    p.fc_weight.iter_mut().for_each(|w| *w *= 8.0);
    p
}

#[test]
fn every_route_draws_the_reference_tokens() {
    let Some(ctx) = ctx() else { return };
    let samplings = [
        Sampling::greedy(),
        Sampling::new(0.9).seed(3),
        Sampling::new(1.3).top_k(4).seed(1 << 33),
    ];
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        for (layers, sizes) in [(1, (13, 6, 10)), (2, (29, 11, 17)), (1, (70, 9, 67))] {
            let p = params(layers, variant, sizes);
            let mut cpu = CpuTrainer::new(p.clone(), TrainOptions::default()).unwrap();
            let mut gpu = GpuTrainer::new(ctx.clone(), &p, TrainOptions::default()).unwrap();
            let dims = dims(&p.config, false).unwrap();
            let auto = fused_route(&ctx, &dims, 4, GEN_CHUNK);
            assert!(auto.is_some(), "{sizes:?} fits one workgroup");
            let mut routes = vec![None];
            let builds = [
                (Kernel::GenTokens, true),
                (Kernel::GenTokensSg, ctx.subgroup_builds()),
                (
                    Kernel::GenTokensUb,
                    auto.map(|f| f.kernel) == Some(Kernel::GenTokensUb),
                ),
            ];
            for (kernel, usable) in builds {
                for per_dispatch in [1, 7, GEN_CHUNK] {
                    if usable {
                        routes.push(Some(Fused {
                            kernel,
                            per_dispatch,
                        }));
                    }
                }
            }
            for s in &samplings {
                let want = cpu.generate(&[1, 5, 2], 150, s, &mut |_| {}).unwrap();
                for route in &routes {
                    let mut streamed = Vec::new();
                    let n = gpu
                        .generate_with(&[1, 5, 2], 150, s, *route, &mut |t| {
                            streamed.push(t);
                            true
                        })
                        .unwrap();
                    let what = format!("{variant:?} L{layers} {sizes:?} {s:?} {route:?}");
                    assert_eq!(n, 150, "{what}");
                    assert_eq!(streamed, want, "{what}: every token streamed once");
                    // A consumer that stops after 7 tokens gets 7.
                    let mut first = Vec::new();
                    let n = gpu
                        .generate_with(&[1, 5, 2], 150, s, *route, &mut |t| {
                            first.push(t);
                            first.len() < 7
                        })
                        .unwrap();
                    assert_eq!((n, &first[..]), (7, &want[..7]), "{what}: stopped");
                }
            }
            if ctx.supports_f16() {
                // The sharpened model: with the initialisation's own logits the margins
                // are so small that a sum taken in another order, which can move a
                // stored value to the neighbouring f16, changes tokens (Mesa 25's
                // llvmpipe does; on Mesa 22.3 those logits also show that leaving the
                // build's f16 rounding out changes tokens).
                f16_routes_agree(&ctx, &p, &samplings);
            }
        }
    }
}

/// An f16 trainer's fused builds (f16 weights, rounding where the f16 kernels store)
/// draw the tokens of its per-kernel f16 path, at every chunking.
fn f16_routes_agree(
    ctx: &std::sync::Arc<crate::GpuContext>,
    p: &ModelParams,
    samplings: &[Sampling],
) {
    let opts = TrainOptions::default();
    let mut f16 = GpuTrainer::with_precision(ctx.clone(), p, opts, crate::Precision::F16).unwrap();
    let auto = fused_route(ctx, &dims(&p.config, true).unwrap(), 4, GEN_CHUNK);
    assert!(auto.is_some_and(|f| f.kernel != Kernel::GenTokensUb));
    let mut routes = Vec::new();
    for (kernel, usable) in [
        (Kernel::GenTokens, true),
        (Kernel::GenTokensSg, ctx.subgroup_builds()),
    ] {
        for per_dispatch in [1, 7, GEN_CHUNK] {
            if usable {
                routes.push(Fused {
                    kernel,
                    per_dispatch,
                });
            }
        }
    }
    for s in samplings {
        let mut want = Vec::new();
        f16.generate_with(&[1, 5, 2], 150, s, None, &mut |t| {
            want.push(t);
            true
        })
        .unwrap();
        for route in &routes {
            let mut got = Vec::new();
            let n = f16
                .generate_with(&[1, 5, 2], 150, s, Some(*route), &mut |t| {
                    got.push(t);
                    true
                })
                .unwrap();
            let what = format!("f16 {:?} {s:?} {route:?}", p.config);
            assert_eq!((n, &got), (150, &want), "{what}");
        }
    }
}

/// The software adapter takes the uniform windows for the default model, and the
/// per-kernel path where one workgroup's budget is too small.
#[test]
fn routes_follow_the_model() {
    let Some(ctx) = ctx() else { return };
    let lm = |v, e, h| dims(&ModelConfig::language_model(v, e, h), false).unwrap();
    let default = fused_route(&ctx, &lm(113, 32, 128), 0, GEN_CHUNK).unwrap();
    if ctx.uniform_windows() {
        assert_eq!(default.kernel, Kernel::GenTokensUb);
    }
    assert!(default.per_dispatch >= 1 && default.per_dispatch <= GEN_CHUNK);
    // A head of 60,000 over 512 units is past the budget of one workgroup.
    assert_eq!(fused_route(&ctx, &lm(60_000, 64, 512), 0, GEN_CHUNK), None);
    // Wider than a window: the storage builds.
    let wide = fused_route(&ctx, &lm(113, 32, 200), 0, GEN_CHUNK).unwrap();
    assert_ne!(wide.kernel, Kernel::GenTokensUb);
}

/// A request past the 32-bit draw count is refused before anything is allocated.
#[test]
fn requests_past_the_count_are_errors() {
    let Some(ctx) = ctx() else { return };
    let p = params(1, GruVariant::ResetAfter, (13, 6, 10));
    let mut gpu = GpuTrainer::new(ctx, &p, TrainOptions::default()).unwrap();
    let n = u32::MAX as usize + 1;
    let e = gpu
        .generate(&[1], n, &Sampling::greedy(), &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("4294967295 tokens"), "{e}");
}
