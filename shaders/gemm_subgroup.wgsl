// gemm_subgroup: the GEMM of gemm.wgsl (same parameters, overrides and split-K slices)
// for software adapters, where every load, from storage or workgroup memory, costs
// about fifty FMAs (`gru bench --roofline`) while a subgroup shuffle is a register
// permutation. Lanes share what they load instead of reloading it: for a depth block of
// 8, lane l loads op(A)[m, k0 + l] for the workgroup's SM rows, and at each depth every
// lane loads its SC columns of op(B); each op(A) value reaches the other lanes by
// shuffle. Per lane and block: SM + 8·SC loads for 8·SM·SC FMAs (8 per load with
// SM = 16, SC = 2, against 3.6 for the shared-memory tiles; 2.3-2.6x faster on
// llvmpipe). No workgroup memory, no barriers. Needs subgroups of at least 8 lanes
// (lanes 0-7 hold the depth block). Each output is summed by one lane in a fixed k
// order: deterministic. (No `enable subgroups;`: naga takes subgroup builtins when the
// device has the feature.)
//
// A workgroup of WG lanes covers tile_n columns (16 to 128, from the host, so narrow
// products do not leave lanes idle) and (WG·SC / tile_n)·SM rows: lanes in groups of
// tile_n / SC side by side along the columns, each group SM rows further down. Lane l of
// a group owns the columns l + (tile_n / SC)·c. A group is a whole number of subgroups
// (the host keeps tile_n / SC a multiple of the largest subgroup size), and subgroups
// are runs of consecutive invocation indices, as on llvmpipe, so a subgroup's lanes
// share their rows.


// Overrides, bindings, load_a and store_c: shaders/parts/gemm_operands.wgsl; load_b:
// shaders/parts/gemm_b_storage.wgsl, or gemm_b_uniform.wgsl in the build
// "gemm_uniform", where the host also sets n_first and k_first to the block of columns
// or depth a dispatch covers (0 otherwise).

const SM: u32 = 16u; // rows per workgroup
const SC: u32 = 2u; // columns per lane
const KB: u32 = 8u; // depth block: one op(A) value per lane of the first 8

@compute @workgroup_size(WG)
fn gemm_sg(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let span = p.tile_n / SC; // lanes per row group, and the stride between a lane's columns
    let m0 = (wg.y * (WG / span) + li / span) * SM;
    let n0 = p.n_first + wg.x * p.tile_n + li % span;
    let k_begin = p.k_first + wg.z * p.k_slice;
    let k_end = min(k_begin + p.k_slice, p.k);
    let kl = lane % KB;
    // Written out for SM = 16, SC = 2: scalars, not arrays, since llvmpipe keeps
    // indexed private arrays in memory, where every access is a load.
    var c0_0 = 0.0; var c0_1 = 0.0;
    var c1_0 = 0.0; var c1_1 = 0.0;
    var c2_0 = 0.0; var c2_1 = 0.0;
    var c3_0 = 0.0; var c3_1 = 0.0;
    var c4_0 = 0.0; var c4_1 = 0.0;
    var c5_0 = 0.0; var c5_1 = 0.0;
    var c6_0 = 0.0; var c6_1 = 0.0;
    var c7_0 = 0.0; var c7_1 = 0.0;
    var c8_0 = 0.0; var c8_1 = 0.0;
    var c9_0 = 0.0; var c9_1 = 0.0;
    var c10_0 = 0.0; var c10_1 = 0.0;
    var c11_0 = 0.0; var c11_1 = 0.0;
    var c12_0 = 0.0; var c12_1 = 0.0;
    var c13_0 = 0.0; var c13_1 = 0.0;
    var c14_0 = 0.0; var c14_1 = 0.0;
    var c15_0 = 0.0; var c15_1 = 0.0;
    for (var k0 = k_begin; k0 < k_end; k0 += KB) {
        let a0 = load_a(m0 + 0u, k0 + kl, k_end);
        let a1 = load_a(m0 + 1u, k0 + kl, k_end);
        let a2 = load_a(m0 + 2u, k0 + kl, k_end);
        let a3 = load_a(m0 + 3u, k0 + kl, k_end);
        let a4 = load_a(m0 + 4u, k0 + kl, k_end);
        let a5 = load_a(m0 + 5u, k0 + kl, k_end);
        let a6 = load_a(m0 + 6u, k0 + kl, k_end);
        let a7 = load_a(m0 + 7u, k0 + kl, k_end);
        let a8 = load_a(m0 + 8u, k0 + kl, k_end);
        let a9 = load_a(m0 + 9u, k0 + kl, k_end);
        let a10 = load_a(m0 + 10u, k0 + kl, k_end);
        let a11 = load_a(m0 + 11u, k0 + kl, k_end);
        let a12 = load_a(m0 + 12u, k0 + kl, k_end);
        let a13 = load_a(m0 + 13u, k0 + kl, k_end);
        let a14 = load_a(m0 + 14u, k0 + kl, k_end);
        let a15 = load_a(m0 + 15u, k0 + kl, k_end);
        for (var j = 0u; j < KB; j++) {
            let b0 = load_b(k0 + j, n0, k_end);
            let b1 = load_b(k0 + j, n0 + span, k_end);
            let x0 = subgroupShuffle(a0, j);
            c0_0 = fma(x0, b0, c0_0);
            c0_1 = fma(x0, b1, c0_1);
            let x1 = subgroupShuffle(a1, j);
            c1_0 = fma(x1, b0, c1_0);
            c1_1 = fma(x1, b1, c1_1);
            let x2 = subgroupShuffle(a2, j);
            c2_0 = fma(x2, b0, c2_0);
            c2_1 = fma(x2, b1, c2_1);
            let x3 = subgroupShuffle(a3, j);
            c3_0 = fma(x3, b0, c3_0);
            c3_1 = fma(x3, b1, c3_1);
            let x4 = subgroupShuffle(a4, j);
            c4_0 = fma(x4, b0, c4_0);
            c4_1 = fma(x4, b1, c4_1);
            let x5 = subgroupShuffle(a5, j);
            c5_0 = fma(x5, b0, c5_0);
            c5_1 = fma(x5, b1, c5_1);
            let x6 = subgroupShuffle(a6, j);
            c6_0 = fma(x6, b0, c6_0);
            c6_1 = fma(x6, b1, c6_1);
            let x7 = subgroupShuffle(a7, j);
            c7_0 = fma(x7, b0, c7_0);
            c7_1 = fma(x7, b1, c7_1);
            let x8 = subgroupShuffle(a8, j);
            c8_0 = fma(x8, b0, c8_0);
            c8_1 = fma(x8, b1, c8_1);
            let x9 = subgroupShuffle(a9, j);
            c9_0 = fma(x9, b0, c9_0);
            c9_1 = fma(x9, b1, c9_1);
            let x10 = subgroupShuffle(a10, j);
            c10_0 = fma(x10, b0, c10_0);
            c10_1 = fma(x10, b1, c10_1);
            let x11 = subgroupShuffle(a11, j);
            c11_0 = fma(x11, b0, c11_0);
            c11_1 = fma(x11, b1, c11_1);
            let x12 = subgroupShuffle(a12, j);
            c12_0 = fma(x12, b0, c12_0);
            c12_1 = fma(x12, b1, c12_1);
            let x13 = subgroupShuffle(a13, j);
            c13_0 = fma(x13, b0, c13_0);
            c13_1 = fma(x13, b1, c13_1);
            let x14 = subgroupShuffle(a14, j);
            c14_0 = fma(x14, b0, c14_0);
            c14_1 = fma(x14, b1, c14_1);
            let x15 = subgroupShuffle(a15, j);
            c15_0 = fma(x15, b0, c15_0);
            c15_1 = fma(x15, b1, c15_1);
        }
    }
    let acc = array<vec2<f32>, SM>(
        vec2<f32>(c0_0, c0_1),
        vec2<f32>(c1_0, c1_1),
        vec2<f32>(c2_0, c2_1),
        vec2<f32>(c3_0, c3_1),
        vec2<f32>(c4_0, c4_1),
        vec2<f32>(c5_0, c5_1),
        vec2<f32>(c6_0, c6_1),
        vec2<f32>(c7_0, c7_1),
        vec2<f32>(c8_0, c8_1),
        vec2<f32>(c9_0, c9_1),
        vec2<f32>(c10_0, c10_1),
        vec2<f32>(c11_0, c11_1),
        vec2<f32>(c12_0, c12_1),
        vec2<f32>(c13_0, c13_1),
        vec2<f32>(c14_0, c14_1),
        vec2<f32>(c15_0, c15_1),
    );
    let c_slice = p.off_c + wg.z * p.m * p.ldc;
    for (var r = 0u; r < SM; r++) {
        let m = m0 + r;
        if (m >= p.m) { break; }
        for (var q = 0u; q < SC; q++) {
            let n = n0 + q * span;
            if (n >= p.n) { continue; }
            store_c(c_slice, m, n, acc[r][q]);
        }
    }
}
