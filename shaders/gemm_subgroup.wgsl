// gemm_subgroup: the GEMM of gemm.wgsl (same parameters, overrides and split-K slices)
// for software adapters, where every load, from storage or workgroup memory, costs
// about fifty FMAs (`gru bench --roofline`). Lanes share what they load instead of
// reloading it: for a depth block of 8, lane l loads op(A)[m, k0 + l] for its group's SM
// rows, and at each depth every lane loads its SC columns of op(B); each op(A) value
// reaches the other lanes by shuffle. Per lane and block: SM storage loads, 8·SC op(B)
// loads (through a uniform window in the "gemm_uniform" build, where they are cheap)
// and 8·SM shuffles for 8·SM·SC FMAs. SM = 8, SC = 4 won on llvmpipe 22.3 over 16 x 2,
// 4 x 8, 12 x 4 and 8 x 8 (past 32 accumulators a lane spills; fewer columns leave the
// shuffles, which cost about as much as a load, dominating). No workgroup memory, no
// barriers. Needs subgroups of at least 8 lanes (lanes 0-7 hold the depth block). Each
// output is summed by one lane in a fixed k order: deterministic. (No `enable
// subgroups;`: naga takes subgroup builtins when the device has the feature.)
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

const SM: u32 = 8u; // rows per lane group
const SC: u32 = 4u; // columns per lane
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
    // Written out for SM = 8, SC = 4: scalars, not arrays, since llvmpipe keeps
    // indexed private arrays in memory, where every access is a load.
    var c0_0 = 0.0; var c0_1 = 0.0; var c0_2 = 0.0; var c0_3 = 0.0;
    var c1_0 = 0.0; var c1_1 = 0.0; var c1_2 = 0.0; var c1_3 = 0.0;
    var c2_0 = 0.0; var c2_1 = 0.0; var c2_2 = 0.0; var c2_3 = 0.0;
    var c3_0 = 0.0; var c3_1 = 0.0; var c3_2 = 0.0; var c3_3 = 0.0;
    var c4_0 = 0.0; var c4_1 = 0.0; var c4_2 = 0.0; var c4_3 = 0.0;
    var c5_0 = 0.0; var c5_1 = 0.0; var c5_2 = 0.0; var c5_3 = 0.0;
    var c6_0 = 0.0; var c6_1 = 0.0; var c6_2 = 0.0; var c6_3 = 0.0;
    var c7_0 = 0.0; var c7_1 = 0.0; var c7_2 = 0.0; var c7_3 = 0.0;
    for (var k0 = k_begin; k0 < k_end; k0 += KB) {
        let a0 = load_a(m0 + 0u, k0 + kl, k_end);
        let a1 = load_a(m0 + 1u, k0 + kl, k_end);
        let a2 = load_a(m0 + 2u, k0 + kl, k_end);
        let a3 = load_a(m0 + 3u, k0 + kl, k_end);
        let a4 = load_a(m0 + 4u, k0 + kl, k_end);
        let a5 = load_a(m0 + 5u, k0 + kl, k_end);
        let a6 = load_a(m0 + 6u, k0 + kl, k_end);
        let a7 = load_a(m0 + 7u, k0 + kl, k_end);
        for (var j = 0u; j < KB; j++) {
            let b0 = load_b(k0 + j, n0, k_end);
            let b1 = load_b(k0 + j, n0 + span, k_end);
            let b2 = load_b(k0 + j, n0 + 2u * span, k_end);
            let b3 = load_b(k0 + j, n0 + 3u * span, k_end);
            let x0 = subgroupShuffle(a0, j);
            c0_0 = fma(x0, b0, c0_0);
            c0_1 = fma(x0, b1, c0_1);
            c0_2 = fma(x0, b2, c0_2);
            c0_3 = fma(x0, b3, c0_3);
            let x1 = subgroupShuffle(a1, j);
            c1_0 = fma(x1, b0, c1_0);
            c1_1 = fma(x1, b1, c1_1);
            c1_2 = fma(x1, b2, c1_2);
            c1_3 = fma(x1, b3, c1_3);
            let x2 = subgroupShuffle(a2, j);
            c2_0 = fma(x2, b0, c2_0);
            c2_1 = fma(x2, b1, c2_1);
            c2_2 = fma(x2, b2, c2_2);
            c2_3 = fma(x2, b3, c2_3);
            let x3 = subgroupShuffle(a3, j);
            c3_0 = fma(x3, b0, c3_0);
            c3_1 = fma(x3, b1, c3_1);
            c3_2 = fma(x3, b2, c3_2);
            c3_3 = fma(x3, b3, c3_3);
            let x4 = subgroupShuffle(a4, j);
            c4_0 = fma(x4, b0, c4_0);
            c4_1 = fma(x4, b1, c4_1);
            c4_2 = fma(x4, b2, c4_2);
            c4_3 = fma(x4, b3, c4_3);
            let x5 = subgroupShuffle(a5, j);
            c5_0 = fma(x5, b0, c5_0);
            c5_1 = fma(x5, b1, c5_1);
            c5_2 = fma(x5, b2, c5_2);
            c5_3 = fma(x5, b3, c5_3);
            let x6 = subgroupShuffle(a6, j);
            c6_0 = fma(x6, b0, c6_0);
            c6_1 = fma(x6, b1, c6_1);
            c6_2 = fma(x6, b2, c6_2);
            c6_3 = fma(x6, b3, c6_3);
            let x7 = subgroupShuffle(a7, j);
            c7_0 = fma(x7, b0, c7_0);
            c7_1 = fma(x7, b1, c7_1);
            c7_2 = fma(x7, b2, c7_2);
            c7_3 = fma(x7, b3, c7_3);
        }
    }
    let acc = array<vec4<f32>, SM>(
        vec4<f32>(c0_0, c0_1, c0_2, c0_3),
        vec4<f32>(c1_0, c1_1, c1_2, c1_3),
        vec4<f32>(c2_0, c2_1, c2_2, c2_3),
        vec4<f32>(c3_0, c3_1, c3_2, c3_3),
        vec4<f32>(c4_0, c4_1, c4_2, c4_3),
        vec4<f32>(c5_0, c5_1, c5_2, c5_3),
        vec4<f32>(c6_0, c6_1, c6_2, c6_3),
        vec4<f32>(c7_0, c7_1, c7_2, c7_3),
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
