// gemm: C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) (+ C when ACCUMULATE).
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

struct GemmParams {
    m: u32, n: u32, k: u32, lda: u32,
    ldb: u32, ldc: u32, off_a: u32, off_b: u32,
    off_c: u32, k_slice: u32, _p0: u32, _p1: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;       // op(A) [M, K]
@group(0) @binding(2) var<storage, read> b: array<f32>;       // op(B) [K, N]
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // [N] (unused without BIAS)
@group(0) @binding(4) var<storage, read_write> c: array<f32>; // [M, N] with stride ldc

const TM: u32 = 64u;  // tile rows
const TN: u32 = 64u;  // tile columns
const TK: u32 = 16u;  // depth per shared-memory stage
const WG: u32 = 256u; // 16 x 16 threads, each 4 x 4 outputs

var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    var acc: array<f32, 16>;
    let k_begin = wg.z * p.k_slice;
    let k_end = min(k_begin + p.k_slice, p.k);
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG;
            // Pick the element order that makes neighbouring threads read neighbouring addresses.
            var mm: u32; var ka: u32;
            if (TRANS_A) { ka = e / TM; mm = e % TM; } else { mm = e / TK; ka = e % TK; }
            var va = 0.0;
            let gm = row0 + mm; let gka = k0 + ka;
            if (gm < p.m && gka < k_end) {
                if (TRANS_A) { va = a[p.off_a + gka * p.lda + gm]; } else { va = a[p.off_a + gm * p.lda + gka]; }
            }
            a_tile[ka * TM + mm] = va;

            var nn: u32; var kb: u32;
            if (TRANS_B) { nn = e / TK; kb = e % TK; } else { kb = e / TN; nn = e % TN; }
            var vb = 0.0;
            let gn = col0 + nn; let gkb = k0 + kb;
            if (gn < p.n && gkb < k_end) {
                if (TRANS_B) { vb = b[p.off_b + gn * p.ldb + gkb]; } else { vb = b[p.off_b + gkb * p.ldb + gn]; }
            }
            b_tile[kb * TN + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * TM + lid.y + 16u * i];
                bv[i] = b_tile[kk * TN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let c_slice = p.off_c + wg.z * p.m * p.ldc;
    for (var i = 0u; i < 4u; i++) {
        let m = row0 + lid.y + 16u * i;
        if (m >= p.m) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let n = col0 + lid.x + 16u * j;
            if (n >= p.n) { continue; }
            var v = acc[i * 4u + j];
            if (BIAS) { v += bias[n]; }
            let idx = c_slice + m * p.ldc + n;
            if (ACCUMULATE) { v += c[idx]; }
            c[idx] = v;
        }
    }
}
