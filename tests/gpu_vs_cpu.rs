//! Every GPU kernel against the CPU reference (run in f64): forward outputs, h_n and every
//! gradient, over awkward shapes (sizes of 1, primes, non-multiples of the 64-wide
//! workgroups and 8-row batch tiles), 1-3 layers, both directions, per-row lengths and
//! both variants.
//!
//! Tolerance: |gpu - cpu| <= ATOL·max(1, max|cpu|) + RTOL·|cpu|. The GPU sums in f32
//! in a different order than the reference; over T·B = 165 rows and K up to 390 terms
//! the rounding stays well under these bounds.

mod common;

use common::*;
use gru_engine::rng::Rng;
use gru_engine::*;

const ATOL: f64 = 2e-5;
const RTOL: f64 = 1e-4;

#[track_caller]
fn check(what: &str, got: &[f32], want: &[f64], case: &str) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_close(what, got, want, ATOL * scale, RTOL, case);
}

#[derive(Debug, Clone, Copy)]
struct Case {
    variant: GruVariant,
    i: usize,
    h: usize,
    t: usize,
    b: usize,
    layers: usize,
    bidir: bool,
    lengths: bool,
    h0: bool,
    bias: bool,
    batch_first: bool,
    /// Batch rows per device workspace (`None`: the device limit decides).
    chunk: Option<usize>,
}

fn lengths_for(t: usize, b: usize) -> Vec<usize> {
    // Full, shortest (1) and in-between lengths, in a scrambled order.
    (0..b)
        .map(|r| if r == 0 { t } else { 1 + (r * 7 + 3) % t })
        .collect()
}

/// Runs one case on both paths and compares everything.
fn run_case(ctx: &std::sync::Arc<GpuContext>, c: Case, seed: u64) {
    let name = format!("{c:?} seed {seed}");
    let cfg = GruConfig::new(c.i, c.h)
        .layers(c.layers)
        .bidirectional(c.bidir)
        .variant(c.variant)
        .bias(c.bias);
    let w = GruWeights::init(cfg, seed);
    let mut rng = Rng::new(seed ^ 0xABCD);
    let ld = c.layers * cfg.num_directions();
    let x = random(&mut rng, c.t * c.b * c.i, 1.0);
    let h0 = random(&mut rng, ld * c.b * c.h, 0.5);
    let lengths = lengths_for(c.t, c.b);
    let dy = random(&mut rng, c.t * c.b * cfg.output_size(), 1.0);
    let dhn = random(&mut rng, ld * c.b * c.h, 1.0);

    let mut input = SequenceInput::new(&x[..], c.t, c.b).batch_first(c.batch_first);
    if c.h0 {
        input = input.h0(&h0);
    }
    if c.lengths {
        input = input.lengths(&lengths);
    }
    let mut gpu = GpuGru::new(ctx.clone(), &w).unwrap();
    gpu.set_batch_chunk(c.chunk);
    gpu.forward(&input).unwrap();
    let out = gpu.read_output().unwrap();
    let h_n = gpu.read_h_n().unwrap();
    // The two halves of `backward`: gradients left on the device, then read back (twice:
    // reading does not consume them).
    gpu.backward_on_device(&dy, Some(&dhn)).unwrap();
    let grads = gpu.read_grads().unwrap();
    assert_eq!(gpu.read_grads().unwrap().d_input, grads.d_input, "{name}");

    let w64 = w.cast::<f64>();
    let (x64, h064) = (to_f64(&x), to_f64(&h0));
    let mut input64 = SequenceInput::new(&x64[..], c.t, c.b).batch_first(c.batch_first);
    if c.h0 {
        input64 = input64.h0(&h064);
    }
    if c.lengths {
        input64 = input64.lengths(&lengths);
    }
    let fwd = cpu::forward(&w64, &input64).unwrap();
    let want = cpu::backward(&w64, &fwd, &to_f64(&dy), Some(&to_f64(&dhn))).unwrap();

    check("output", &out, &fwd.output, &name);
    check("h_n", &h_n, &fwd.h_n, &name);
    check("d_input", &grads.d_input, &want.d_input, &name);
    check("d_h0", &grads.d_h0, &want.d_h0, &name);
    for id in want.d_weights.tensor_ids() {
        check(
            &format!("d_{}", id.name()),
            grads.d_weights.tensor(id),
            want.d_weights.tensor(id),
            &name,
        );
    }
}

/// The full matrix H × B × T × variant; layers, direction, lengths, h0 and layout rotate
/// with the case number so each appears with every size.
fn matrix(variant: GruVariant) {
    let Some(ctx) = gpu() else { return };
    let mut n = 0;
    for &h in &[1, 3, 17, 64, 130] {
        for &b in &[1, 5] {
            for &t in &[1, 7, 33] {
                let c = Case {
                    variant,
                    i: if h == 3 { 5 } else { h + 2 },
                    h,
                    t,
                    b,
                    layers: 1 + n % 3,
                    bidir: n % 2 == 1,
                    lengths: n % 4 != 0,
                    h0: n % 3 != 1,
                    bias: n % 5 != 2,
                    batch_first: n % 7 == 3,
                    chunk: None,
                };
                run_case(&ctx, c, 100 + n as u64);
                n += 1;
            }
        }
    }
}

#[test]
fn reset_after_matches_reference() {
    matrix(GruVariant::ResetAfter);
}

#[test]
fn reset_before_matches_reference() {
    matrix(GruVariant::ResetBefore);
}

/// A context with the given builds (`None` without an adapter, a failure under CI).
fn context(subgroup_kernels: bool, sequence_kernels: bool) -> Option<std::sync::Arc<GpuContext>> {
    context_split(subgroup_kernels, sequence_kernels, None)
}

fn context_split(
    subgroup_kernels: bool,
    sequence_kernels: bool,
    split_steps: Option<bool>,
) -> Option<std::sync::Arc<GpuContext>> {
    match GpuContext::new(&gru_engine::gpu::DeviceRequest {
        subgroup_kernels,
        sequence_kernels,
        split_steps,
        ..Default::default()
    }) {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => panic!("no adapter under CI: {e}"),
        Err(_) => None,
    }
}

/// Awkward sizes, both variants, on a context with the given builds.
fn rotating_cases(ctx: &std::sync::Arc<GpuContext>, hs: &[usize], seed: u64) {
    let mut n = 0;
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        for &h in hs {
            for &(b, t) in &[(1, 7), (5, 33), (9, 1)] {
                let c = Case {
                    variant,
                    i: h + 2,
                    h,
                    t,
                    b,
                    layers: 1 + n % 2,
                    bidir: n % 2 == 1,
                    lengths: n % 3 != 0,
                    h0: n % 2 == 0,
                    bias: true,
                    batch_first: false,
                    chunk: None,
                };
                run_case(ctx, c, seed + n as u64);
                n += 1;
            }
        }
    }
}

/// What a GPU runs, checked where the adapter would otherwise take other builds
/// (llvmpipe: subgroup GEMMs and steps, and a chunk of steps per dispatch at every H):
/// the portable builds, one dispatch per step past H = 64 and the sequence entries up
/// to it, on awkward sizes with both variants.
#[test]
fn portable_kernels_match_reference_on_every_adapter() {
    let Some(ctx) = context(false, false) else {
        return;
    };
    rotating_cases(&ctx, &[1, 17, 130], 500);
}

/// The builds a GPU runs at every H, forced where the adapter would take others: the
/// per-step kernels in tiles of 4 units x 16 rows, each unit lane's k loop over 64
/// threads whose sums meet in a tree in workgroup memory, W_hh read along k forward and
/// W_hhᵀ backward. Sizes with fewer k values than threads (H 1, 3), not a multiple of
/// the tile (67, 130), the seed model's 1024; batches inside one row tile and across
/// two (17, 33), both variants, one and two layers, both directions, lengths.
#[test]
fn split_step_kernels_match_reference() {
    let Some(ctx) = context_split(false, false, Some(true)) else {
        return;
    };
    split_cases(&ctx);
}

/// The wide tiles integrated GPUs take (16 units x 16 rows, 16 threads per unit lane,
/// each finishing two outputs), on the same cases.
#[test]
fn wide_split_step_kernels_match_reference() {
    let ctx = match GpuContext::new(&gru_engine::gpu::DeviceRequest {
        subgroup_kernels: false,
        sequence_kernels: false,
        split_steps: Some(true),
        wide_steps: Some(true),
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => panic!("no adapter under CI: {e}"),
        Err(_) => return,
    };
    split_cases(&ctx);
}

fn split_cases(ctx: &std::sync::Arc<GpuContext>) {
    rotating_cases(ctx, &[1, 3, 67, 130], 900);
    let mut n = 0;
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        for &(h, b, t) in &[(67, 17, 5), (130, 33, 3), (1024, 17, 2), (1024, 3, 3)] {
            let c = Case {
                variant,
                i: 7,
                h,
                t,
                b,
                layers: 1 + n % 2,
                bidir: n % 2 == 0,
                lengths: n % 3 != 1,
                h0: true,
                bias: true,
                batch_first: false,
                chunk: None,
            };
            run_case(ctx, c, 950 + n as u64);
            n += 1;
        }
    }
}

/// The subgroup builds of the per-step kernels (software adapters asked for one
/// dispatch per step): the forward step and the state gradient through uniform windows
/// of the recurrent weights (H 130, 147) and from storage (148), both by shuffles.
#[test]
fn per_step_subgroup_kernels_match_reference() {
    let Some(ctx) = context(true, false) else {
        return;
    };
    rotating_cases(&ctx, &[130, 148], 700);
}

/// Sequences long enough that the sequence entries take several dispatches (on
/// llvmpipe a chunk holds about 90 forward steps at H = 128, 37 backward, fewer at
/// H = 256): chunk edges in both directions, with lengths, both variants.
#[test]
fn long_sequences_cross_the_chunks() {
    let Some(ctx) = gpu() else { return };
    let cases = [
        (GruVariant::ResetAfter, 128, 200, 16, true),
        (GruVariant::ResetAfter, 256, 45, 9, false),
        (GruVariant::ResetBefore, 128, 130, 16, true),
        (GruVariant::ResetBefore, 256, 40, 3, false),
    ];
    for (n, (variant, h, t, b, bidir)) in cases.into_iter().enumerate() {
        let c = Case {
            variant,
            i: 19,
            h,
            t,
            b,
            layers: 1,
            bidir,
            lengths: true,
            h0: true,
            bias: true,
            batch_first: false,
            chunk: None,
        };
        run_case(&ctx, c, 900 + n as u64);
    }
}

/// On software adapters the fused forward step reads W_hhᵀ, and the state gradient W_hh,
/// through four uniform windows up to H = 147 (the matrix's H = 130 uses all four);
/// past that they read storage again. One layer on each side of the edge, so both
/// builds stay checked.
#[test]
fn hidden_sizes_on_both_sides_of_the_uniform_windows() {
    let Some(ctx) = gpu() else { return };
    for (n, h) in [147, 148].into_iter().enumerate() {
        let c = Case {
            variant: GruVariant::ResetAfter,
            i: 3,
            h,
            t: 5,
            b: 3,
            layers: 1,
            bidir: n == 1,
            lengths: true,
            h0: true,
            bias: true,
            batch_first: false,
            chunk: None,
        };
        run_case(&ctx, c, 800 + n as u64);
    }
}

/// Batches past one step tile (8 rows, 16 in the subgroup builds) and a partial one
/// after it, both variants, so every row slot of the step kernels is checked.
#[test]
fn batches_past_one_step_tile() {
    let Some(ctx) = gpu() else { return };
    for (n, variant) in [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .into_iter()
        .enumerate()
    {
        let c = Case {
            variant,
            i: 9,
            h: 17,
            t: 6,
            b: 19,
            layers: 2,
            bidir: true,
            lengths: true,
            h0: true,
            bias: true,
            batch_first: false,
            chunk: None,
        };
        run_case(&ctx, c, 700 + n as u64);
    }
}

#[test]
fn three_bidirectional_layers_with_lengths() {
    let Some(ctx) = gpu() else { return };
    for (k, variant) in [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .into_iter()
        .enumerate()
    {
        let c = Case {
            variant,
            i: 7,
            h: 67,
            t: 13,
            b: 9,
            layers: 3,
            bidir: true,
            lengths: true,
            h0: true,
            bias: true,
            batch_first: false,
            chunk: None,
        };
        run_case(&ctx, c, 7 + k as u64);
    }
}

/// Batches split into chunks of rows (as for buffers past the binding limit) give the
/// same results; parameter gradients add up across chunks.
#[test]
fn batch_chunks_match_reference() {
    let Some(ctx) = gpu() else { return };
    for (k, variant) in [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .into_iter()
        .enumerate()
    {
        for chunk in [1, 2, 4] {
            let c = Case {
                variant,
                i: 3,
                h: 17,
                t: 7,
                b: 5,
                layers: 2,
                bidir: true,
                lengths: true,
                h0: true,
                bias: true,
                batch_first: k == 1,
                chunk: Some(chunk),
            };
            run_case(&ctx, c, 40 + chunk as u64);
        }
    }
}

/// The largest case: [T, B, 4H] saved activations of 136 MB, past llvmpipe's 128 MiB
/// storage binding limit, so the batch runs in chunks. T·B·H = 512·260·64 = 8.5M.
#[test]
fn past_the_storage_binding_limit() {
    let Some(ctx) = gpu() else { return };
    let (t, b, i, h) = (512, 260, 8, 64);
    let limit = ctx.limits().max_storage_buffer_binding_size;
    if (t * b * 4 * h * 4) as u64 <= limit {
        eprintln!("this adapter binds {limit} bytes; the case fits without splitting");
    }
    let cfg = GruConfig::new(i, h);
    let w = GruWeights::init(cfg, 9);
    let mut rng = Rng::new(10);
    let x = random(&mut rng, t * b * i, 1.0);
    let dy = random(&mut rng, t * b * h, 0.1);
    let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
    g.forward(&SequenceInput::new(&x, t, b)).unwrap();
    let h_n = g.read_h_n().unwrap();
    let grads = g.backward(&dy, None).unwrap();
    let w64 = w.cast::<f64>();
    let x64 = to_f64(&x);
    let fwd = cpu::forward(&w64, &SequenceInput::new(&x64, t, b)).unwrap();
    let want = cpu::backward(&w64, &fwd, &to_f64(&dy), None).unwrap();
    check("h_n", &h_n, &fwd.h_n, "large");
    // Weight gradients sum T·B = 133,120 terms: f32 rounding grows with sqrt of that.
    let scaled = |v: &[f64]| v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for id in want.d_weights.tensor_ids() {
        let wt = want.d_weights.tensor(id);
        assert_close(
            &format!("d_{}", id.name()),
            grads.d_weights.tensor(id),
            wt,
            1e-4 * scaled(wt),
            1e-3,
            "large",
        );
    }
    check("d_input", &grads.d_input, &want.d_input, "large");
}

#[test]
fn runs_are_bitwise_deterministic() {
    let Some(ctx) = gpu() else { return };
    let cfg = GruConfig::new(6, 70).layers(2).bidirectional(true);
    let w = GruWeights::init(cfg, 3);
    let mut rng = Rng::new(4);
    let (t, b) = (9, 6);
    let x = random(&mut rng, t * b * 6, 1.0);
    let dy = random(&mut rng, t * b * 140, 1.0);
    let lengths = lengths_for(t, b);
    let run = || {
        let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
        g.forward(&SequenceInput::new(&x, t, b).lengths(&lengths))
            .unwrap();
        let out = g.read_output().unwrap();
        let grads = g.backward(&dy, None).unwrap();
        (out, grads)
    };
    let (o1, g1) = run();
    let (o2, g2) = run();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&o1),
        bits(&o2),
        "output differs between identical runs"
    );
    assert_eq!(
        bits(&g1.d_input),
        bits(&g2.d_input),
        "d_input differs between identical runs"
    );
    assert_eq!(
        g1.d_weights, g2.d_weights,
        "weight gradients differ between identical runs"
    );
}

/// Both directions of a bidirectional layer in one step dispatch (the default) and each
/// in its own run the same arithmetic: bit-identical outputs, states and gradients, on
/// the adapter's own builds and on the builds a GPU runs, both variants, with lengths.
#[test]
fn paired_directions_equal_separate_dispatches_bitwise() {
    let builds = [(true, true, None), (false, false, Some(true))];
    for (subgroup_kernels, sequence_kernels, split_steps) in builds {
        let open = |pair_directions| {
            GpuContext::new(&gru_engine::gpu::DeviceRequest {
                subgroup_kernels,
                sequence_kernels,
                split_steps,
                pair_directions,
                ..Default::default()
            })
        };
        let (Ok(paired), Ok(single)) = (open(true), open(false)) else {
            assert!(std::env::var_os("CI").is_none(), "no adapter under CI");
            return;
        };
        for (n, (variant, h)) in [(GruVariant::ResetAfter, 3), (GruVariant::ResetBefore, 67)]
            .into_iter()
            .enumerate()
        {
            let cfg = GruConfig::new(4, h)
                .layers(2)
                .bidirectional(true)
                .variant(variant);
            let w = GruWeights::init(cfg, 40 + n as u64);
            let mut rng = Rng::new(41 + n as u64);
            let (t, b) = (9, 11);
            let x = random(&mut rng, t * b * 4, 1.0);
            let h0 = random(&mut rng, 4 * b * h, 0.5);
            let dy = random(&mut rng, t * b * 2 * h, 1.0);
            let dhn = random(&mut rng, 4 * b * h, 1.0);
            let lengths = lengths_for(t, b);
            let run = |ctx: &std::sync::Arc<GpuContext>| {
                let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
                g.forward(&SequenceInput::new(&x, t, b).lengths(&lengths).h0(&h0))
                    .unwrap();
                let (out, h_n) = (g.read_output().unwrap(), g.read_h_n().unwrap());
                (out, h_n, g.backward(&dy, Some(&dhn)).unwrap())
            };
            let ((o1, hn1, g1), (o2, hn2, g2)) = (run(&paired), run(&single));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let case = format!("{variant:?} H {h}, subgroup builds {subgroup_kernels}");
            assert_eq!(bits(&o1), bits(&o2), "output: {case}");
            assert_eq!(bits(&hn1), bits(&hn2), "h_n: {case}");
            assert_eq!(bits(&g1.d_input), bits(&g2.d_input), "d_input: {case}");
            assert_eq!(bits(&g1.d_h0), bits(&g2.d_h0), "d_h0: {case}");
            assert_eq!(g1.d_weights, g2.d_weights, "weight gradients: {case}");
        }
    }
}

/// A step of more batch rows than one grid dimension holds at 8 rows per workgroup
/// (65,535 · 8 = 524,280): the rows run in chunks instead of failing validation. On
/// the builds a GPU runs, whose step kernels take 8 rows per workgroup.
#[test]
fn a_step_past_the_grid_limit_runs_in_chunks() {
    let Some(ctx) = gpu_portable() else { return };
    let cfg = GruConfig::new(2, 3);
    let w = GruWeights::init(cfg, 13);
    let b = 530_000;
    let mut rng = Rng::new(14);
    let x = random(&mut rng, b * 2, 1.0);
    let h = random(&mut rng, b * 3, 0.5);
    let mut g = GpuGru::new(ctx, &w).unwrap();
    let got = g.step(&x, &h, b).unwrap();
    let want = cpu::cell_step(&w, &x, &h, b).unwrap();
    check("state", &got, &to_f64(&want), "B = 530,000");
}

#[test]
fn cell_steps_equal_the_full_sequence() {
    let Some(ctx) = gpu() else { return };
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        let cfg = GruConfig::new(4, 19).layers(2).variant(variant);
        let w = GruWeights::init(cfg, 11);
        let mut rng = Rng::new(12);
        let (t, b) = (6, 3);
        let x = random(&mut rng, t * b * 4, 1.0);
        let h0 = random(&mut rng, 2 * b * 19, 0.5);
        let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
        g.forward(&SequenceInput::new(&x, t, b).h0(&h0)).unwrap();
        let out = g.read_output().unwrap();
        let h_n = g.read_h_n().unwrap();

        let mut h_gpu = h0.clone();
        let mut h_cpu = h0.clone();
        for s in 0..t {
            let xs = &x[s * b * 4..(s + 1) * b * 4];
            h_gpu = g.step(xs, &h_gpu, b).unwrap();
            h_cpu = cpu::cell_step(&w, xs, &h_cpu, b).unwrap();
            // The top layer's state is the sequence output at this step.
            let top = &h_gpu[b * 19..];
            let want = to_f64(&out[s * b * 19..(s + 1) * b * 19]);
            check(
                "cell output vs sequence output",
                top,
                &want,
                &format!("{variant:?} step {s}"),
            );
            check(
                "GPU cell vs CPU cell",
                &h_gpu,
                &to_f64(&h_cpu),
                &format!("{variant:?} step {s}"),
            );
        }
        check(
            "cell final state vs h_n",
            &h_gpu,
            &to_f64(&h_n),
            &format!("{variant:?}"),
        );
    }
}

#[test]
fn weights_round_trip_through_the_device() {
    let Some(ctx) = gpu() else { return };
    let cfg = GruConfig::new(5, 9).layers(2).bidirectional(true);
    let w = GruWeights::init(cfg, 5);
    let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
    assert_eq!(g.read_weights().unwrap(), w);
    let w2 = GruWeights::init(cfg, 6);
    g.set_weights(&w2).unwrap();
    assert_eq!(g.read_weights().unwrap(), w2);
}

#[test]
fn non_finite_inputs_pass_through_like_pytorch() {
    let Some(ctx) = gpu() else { return };
    let cfg = GruConfig::new(2, 3);
    let w = GruWeights::init(cfg, 1);
    // Row 0 sees a NaN at t = 1; row 1 stays finite.
    let mut x = vec![0.5f32; 3 * 2 * 2];
    x[(2) * 2] = f32::NAN;
    let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
    g.forward(&SequenceInput::new(&x, 3, 2)).unwrap();
    let out = g.read_output().unwrap();
    let cpu_out = cpu::forward(&w, &SequenceInput::new(&x, 3, 2))
        .unwrap()
        .output;
    for (i, (a, b)) in out.iter().zip(&cpu_out).enumerate() {
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "NaN pattern differs at {i}: gpu {a} cpu {b}"
        );
    }
    assert!(
        out[..3].iter().all(|v| v.is_finite()),
        "t = 0 precedes the NaN"
    );
    assert!(
        out[6..9].iter().all(|v| v.is_nan()),
        "row 0 at t = 1 must be NaN"
    );
    assert!(
        out[9..12].iter().all(|v| v.is_finite()),
        "row 1 never sees the NaN"
    );
}

/// The awaited API (what a browser has) opens the same device and reads back exactly
/// what the blocking one does: output, h_n, every gradient and the weights, both
/// variants, bidirectional with lengths.
#[test]
fn the_async_api_reads_what_the_blocking_one_does() {
    if gpu().is_none() {
        return;
    }
    let ctx = pollster::block_on(GpuContext::new_default_async()).unwrap();
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        let cfg = GruConfig::new(3, 5)
            .layers(2)
            .bidirectional(true)
            .variant(variant);
        let w = GruWeights::init(cfg, 7);
        let mut rng = Rng::new(3);
        let (t, b) = (6, 3);
        let x = rng.uniform_vec(t * b * 3, -1.0, 1.0);
        let lengths = [6, 1, 4];
        let input = SequenceInput::new(&x, t, b).lengths(&lengths);
        let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
        g.forward(&input).unwrap();
        let (out, h_n) = (g.read_output().unwrap(), g.read_h_n().unwrap());
        assert_eq!(pollster::block_on(g.read_output_async()).unwrap(), out);
        assert_eq!(pollster::block_on(g.read_h_n_async()).unwrap(), h_n);
        let d_out = rng.uniform_vec(out.len(), -1.0, 1.0);
        let sync = g.backward(&d_out, None).unwrap();
        g.forward(&input).unwrap();
        let awaited = pollster::block_on(g.backward_async(&d_out, None)).unwrap();
        assert_eq!(awaited.d_input, sync.d_input, "{variant:?}");
        assert_eq!(awaited.d_h0, sync.d_h0, "{variant:?}");
        assert_eq!(awaited.d_weights, sync.d_weights, "{variant:?}");
        assert_eq!(pollster::block_on(g.read_weights_async()).unwrap(), w);
        // And the reference agrees with both.
        let want = cpu::forward(&w, &input).unwrap();
        for (a, b) in out.iter().zip(&want.output) {
            assert!((a - b).abs() < 1e-4, "{variant:?}: {a} vs {b}");
        }
    }
}

/// The trainer's awaited read-backs (metrics, predictions, parameters) give what its
/// blocking calls give, on a language model after two steps.
#[test]
fn the_trainers_awaited_read_backs_equal_the_blocking_ones() {
    use gru_engine::model::{Batch, ModelConfig, ModelParams};
    use gru_engine::train::{GpuTrainer, Split, TrainOptions, Trainer};
    let Some(ctx) = gpu() else {
        return;
    };
    let params = ModelParams::init(ModelConfig::language_model(7, 4, 6).layers(2), 5).unwrap();
    let x: Vec<u32> = (0..24).map(|i| (i * 5 % 7) as u32).collect();
    let y: Vec<u32> = (0..24).map(|i| (i * 3 % 7) as u32).collect();
    let batch = Batch::tokens(&x, 3, 8).classes(&y);
    let make = || {
        let mut t = GpuTrainer::new(ctx.clone(), &params, TrainOptions::adam(1e-2)).unwrap();
        t.train_step(&batch).unwrap();
        t.train_step(&batch).unwrap();
        t
    };
    let (mut a, mut b) = (make(), make());
    let m = a.take_metrics(Split::Train).unwrap();
    let m2 = pollster::block_on(b.take_metrics_async(Split::Train)).unwrap();
    assert_eq!(
        (m.loss, m.count, m.accuracy),
        (m2.loss, m2.count, m2.accuracy)
    );
    assert_eq!(
        a.predict(&batch).unwrap(),
        pollster::block_on(b.predict_async(&batch)).unwrap()
    );
    assert_eq!(
        a.params().unwrap(),
        pollster::block_on(b.params_async()).unwrap()
    );
}

/// Awaited generation streams exactly the blocking call's tokens (both routes the
/// sampling allows), and stops when asked.
#[test]
fn awaited_generation_streams_the_blocking_tokens() {
    use gru_engine::generate::Sampling;
    use gru_engine::model::{ModelConfig, ModelParams};
    use gru_engine::train::{GpuTrainer, TrainOptions, Trainer};
    let Some(ctx) = gpu() else {
        return;
    };
    let params = ModelParams::init(ModelConfig::language_model(9, 4, 8), 2).unwrap();
    let mut t = GpuTrainer::new(ctx, &params, TrainOptions::adam(1e-3)).unwrap();
    for s in [Sampling::greedy(), Sampling::new(0.9).top_k(3).seed(4)] {
        let want = t.generate(&[1, 2], 90, &s, &mut |_| {}).unwrap();
        let mut got = Vec::new();
        let n = pollster::block_on(t.generate_stream_async(&[1, 2], 90, &s, &mut |tok| {
            got.push(tok);
            true
        }))
        .unwrap();
        assert_eq!((n, &got), (90, &want), "{s:?}");
        let mut first = Vec::new();
        let n = pollster::block_on(t.generate_stream_async(&[1, 2], 90, &s, &mut |tok| {
            first.push(tok);
            first.len() < 5
        }))
        .unwrap();
        assert_eq!((n, &first[..]), (5, &want[..5]), "{s:?}");
    }
}

/// `train_steps_async` reads many steps' metrics back at once (copies of the running
/// sums, differenced): each step's loss and count equal those of a trainer that reads
/// back after every step, across the chunk of 63 steps one read-back holds; the
/// parameters are the same, and the sums start over after it.
#[test]
fn many_steps_read_back_at_once_equal_one_by_one() {
    use gru_engine::model::{Batch, ModelConfig, ModelParams};
    use gru_engine::train::{GpuTrainer, Split, TrainOptions, Trainer};
    let Some(ctx) = gpu() else {
        return;
    };
    let params = ModelParams::init(ModelConfig::language_model(7, 4, 6), 5).unwrap();
    let data: Vec<(Vec<u32>, Vec<u32>)> = (0..70u32)
        .map(|s| {
            let x = (0..24).map(|i| (i * 5 + s) % 7).collect();
            let y = (0..24).map(|i| (i * 3 + 2 * s) % 7).collect();
            (x, y)
        })
        .collect();
    let batches: Vec<Batch> = data
        .iter()
        .map(|(x, y)| Batch::tokens(x, 3, 8).classes(y))
        .collect();
    let make = || GpuTrainer::new(ctx.clone(), &params, TrainOptions::adam(1e-2)).unwrap();
    let (mut one, mut many) = (make(), make());
    let want: Vec<_> = batches
        .iter()
        .map(|b| {
            one.train_step(b).unwrap();
            one.take_metrics(Split::Train).unwrap()
        })
        .collect();
    let got = pollster::block_on(many.train_steps_async(&batches)).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!((g.count, g.batches), (w.count, 1), "step {k}");
        assert!(
            (g.loss - w.loss).abs() <= 1e-4 * w.loss.abs().max(1.0),
            "step {k}: {} vs {}",
            g.loss,
            w.loss
        );
        let (ga, wa) = (g.accuracy.unwrap(), w.accuracy.unwrap());
        assert!((ga - wa).abs() < 1e-6, "step {k}: accuracy {ga} vs {wa}");
    }
    assert_eq!(one.params().unwrap(), many.params().unwrap());
    assert_eq!(many.take_metrics(Split::Train).unwrap().count, 0.0);
}
