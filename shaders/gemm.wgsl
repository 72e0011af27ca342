// gemm: C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) (+ C when ACCUMULATE).
//
// A workgroup of 64 threads computes a 64 x 64 tile of C; each thread an 8 x 8 block
// held in registers as 16 named vec4 sums (no array indexed by a loop counter, which
// FXC, DX12's compiler without DXC, may refuse to unroll or spill). Per depth step of TK, the workgroup stages op(A) and op(B) tiles in
// shared memory as vec4s, and each thread reads two vec4s of each for 64 FMAs. Few loads
// per FMA matter on every device, and most on llvmpipe, which pays per lane for every
// load that is not a register.
// op(A)(m, k) = TRANS_A ? a[off_a + k*lda + m] : a[off_a + m*lda + k]
// op(B)(k, n) = TRANS_B ? b[off_b + n*ldb + k] : b[off_b + k*ldb + n]
// c[off_c + m*ldc + n]. Row-major throughout; offsets and leading dimensions let one
// kernel read column blocks (a gate's rows of W, the r*h slot of the saved activations).
// Each output is summed by one thread in a fixed k order: deterministic, no atomics.
//
// Split-K: workgroup z covers k in [z*k_slice, (z+1)*k_slice) and writes its partial
// product to slice z of c (c[off_c + z*m*ldc + ...]); reduce_slices.wgsl then adds the
// slices in order. This spreads the weight-gradient GEMMs (K = T·B) over more
// workgroups, and keeps each invocation under llvmpipe's limit of 65535 loop
// iterations per invocation, past which it silently stops looping.


// Overrides, bindings, load_a, load_b and store_c: shaders/parts/gemm_operands.wgsl.

const TM: u32 = 64u; // tile rows
const TN: u32 = 64u; // tile columns
const TK: u32 = 16u; // depth per shared-memory stage

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TK][TM / 4]: rows 4q..4q+3 at depth kk
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TK][TN / 4]: columns 4q..4q+3 at depth kk

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    let tx = li % 8u;
    let ty = li / 8u;
    // Row r of the thread's block: columns 0-3 in c{r}l, 4-7 in c{r}h.
    var c0l = vec4<f32>(); var c0h = vec4<f32>(); var c1l = vec4<f32>(); var c1h = vec4<f32>();
    var c2l = vec4<f32>(); var c2h = vec4<f32>(); var c3l = vec4<f32>(); var c3h = vec4<f32>();
    var c4l = vec4<f32>(); var c4h = vec4<f32>(); var c5l = vec4<f32>(); var c5h = vec4<f32>();
    var c6l = vec4<f32>(); var c6h = vec4<f32>(); var c7l = vec4<f32>(); var c7h = vec4<f32>();
    let k_begin = wg.z * p.k_slice;
    let k_end = min(k_begin + p.k_slice, p.k);
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG;
            // Where op(X) runs along m (or n) in memory (TRANS_A; B without TRANS_B),
            // slot e is 4 neighbouring rows at depth e / 16: neighbouring threads read
            // neighbouring addresses. Where it runs along k (A without TRANS_A; B with
            // TRANS_B), thread e reads 4 values along k of row e / 4, so 4 threads
            // cover 16 consecutive values of a row; each goes to its row's lane of the
            // tile's vec4s. Either way the tile is [TK][TM / 4] vec4s of 4 rows.
            let kk = e / 16u;
            let q4 = (e % 16u) * 4u;
            let k = k0 + kk;
            let r = e / 4u;
            let kq = k0 + (e % 4u) * 4u;
            let at = (e % 4u) * 64u + r / 4u;
            if (TRANS_A) {
                a_tile[e] = vec4<f32>(load_a(row0 + q4, k, k_end), load_a(row0 + q4 + 1u, k, k_end),
                                      load_a(row0 + q4 + 2u, k, k_end), load_a(row0 + q4 + 3u, k, k_end));
            } else {
                a_tile[at][r % 4u] = load_a(row0 + r, kq, k_end);
                a_tile[at + 16u][r % 4u] = load_a(row0 + r, kq + 1u, k_end);
                a_tile[at + 32u][r % 4u] = load_a(row0 + r, kq + 2u, k_end);
                a_tile[at + 48u][r % 4u] = load_a(row0 + r, kq + 3u, k_end);
            }
            if (TRANS_B) {
                b_tile[at][r % 4u] = load_b(kq, col0 + r, k_end);
                b_tile[at + 16u][r % 4u] = load_b(kq + 1u, col0 + r, k_end);
                b_tile[at + 32u][r % 4u] = load_b(kq + 2u, col0 + r, k_end);
                b_tile[at + 48u][r % 4u] = load_b(kq + 3u, col0 + r, k_end);
            } else {
                b_tile[e] = vec4<f32>(load_b(k, col0 + q4, k_end), load_b(k, col0 + q4 + 1u, k_end),
                                      load_b(k, col0 + q4 + 2u, k_end), load_b(k, col0 + q4 + 3u, k_end));
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a0 = a_tile[kk * 16u + ty * 2u];
            let a1 = a_tile[kk * 16u + ty * 2u + 1u];
            let b0 = b_tile[kk * 16u + tx * 2u];
            let b1 = b_tile[kk * 16u + tx * 2u + 1u];
            c0l = fma(vec4<f32>(a0.x), b0, c0l); c0h = fma(vec4<f32>(a0.x), b1, c0h);
            c1l = fma(vec4<f32>(a0.y), b0, c1l); c1h = fma(vec4<f32>(a0.y), b1, c1h);
            c2l = fma(vec4<f32>(a0.z), b0, c2l); c2h = fma(vec4<f32>(a0.z), b1, c2h);
            c3l = fma(vec4<f32>(a0.w), b0, c3l); c3h = fma(vec4<f32>(a0.w), b1, c3h);
            c4l = fma(vec4<f32>(a1.x), b0, c4l); c4h = fma(vec4<f32>(a1.x), b1, c4h);
            c5l = fma(vec4<f32>(a1.y), b0, c5l); c5h = fma(vec4<f32>(a1.y), b1, c5h);
            c6l = fma(vec4<f32>(a1.z), b0, c6l); c6h = fma(vec4<f32>(a1.z), b1, c6h);
            c7l = fma(vec4<f32>(a1.w), b0, c7l); c7h = fma(vec4<f32>(a1.w), b1, c7h);
        }
        workgroupBarrier();
    }
    let c_slice = p.off_c + wg.z * p.m * p.ldc;
    let m0 = row0 + ty * 8u;
    let n0 = col0 + tx * 8u;
    store_row(c_slice, m0, n0, c0l, c0h);
    store_row(c_slice, m0 + 1u, n0, c1l, c1h);
    store_row(c_slice, m0 + 2u, n0, c2l, c2h);
    store_row(c_slice, m0 + 3u, n0, c3l, c3h);
    store_row(c_slice, m0 + 4u, n0, c4l, c4h);
    store_row(c_slice, m0 + 5u, n0, c5l, c5h);
    store_row(c_slice, m0 + 6u, n0, c6l, c6h);
    store_row(c_slice, m0 + 7u, n0, c7l, c7h);
}

// Row m of the block, columns n0..n0+7 (lo: 0-3, hi: 4-7), those inside C.
fn store_row(c_slice: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (m >= p.m) { return; }
    if (n0 < p.n) { store_c(c_slice, m, n0, lo.x); }
    if (n0 + 1u < p.n) { store_c(c_slice, m, n0 + 1u, lo.y); }
    if (n0 + 2u < p.n) { store_c(c_slice, m, n0 + 2u, lo.z); }
    if (n0 + 3u < p.n) { store_c(c_slice, m, n0 + 3u, lo.w); }
    if (n0 + 4u < p.n) { store_c(c_slice, m, n0 + 4u, hi.x); }
    if (n0 + 5u < p.n) { store_c(c_slice, m, n0 + 5u, hi.y); }
    if (n0 + 6u < p.n) { store_c(c_slice, m, n0 + 6u, hi.z); }
    if (n0 + 7u < p.n) { store_c(c_slice, m, n0 + 7u, hi.w); }
}
