// What every GEMM build (gemm.wgsl, gemm_subgroup.wgsl) shares: the overrides and
// bindings but op(B)'s, the zero-padded op(A) load, and the store of one output. op(B)
// and load_b come from gemm_b_storage.wgsl or gemm_b_uniform.wgsl.
//   op(A)(m, k) = TRANS_A ? a[off_a + k*lda + m] : a[off_a + m*lda + k]
//   op(B)(k, n) = TRANS_B ? b[off_b + n*ldb + k] : b[off_b + k*ldb + n]
//   c[c_slice + m*ldc + n] (+ bias[n]) (+ what c held)
// Storage types (prelude aliases, f32 or f16): op(A) act_t, op(B) and bias wt_t, C out_t.
// Loads widen to f32 and every sum is f32; a store rounds once.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<act_t>;     // op(A) [M, K]
@group(0) @binding(3) var<storage, read> bias: array<wt_t>;   // [N] (unused without BIAS)
@group(0) @binding(4) var<storage, read_write> c: array<out_t>; // [M, N] with stride ldc

fn load_a(m: u32, k: u32, k_end: u32) -> f32 {
    if (m >= p.m || k >= k_end) { return 0.0; }
    if (TRANS_A) { return f32(a[p.off_a + k * p.lda + m]); }
    return f32(a[p.off_a + m * p.lda + k]);
}

// Output (m, n) of the slice starting at c_slice (split-K: one slice per z).
fn store_c(c_slice: u32, m: u32, n: u32, sum: f32) {
    var v = sum;
    if (BIAS) { v += f32(bias[n]); }
    let idx = c_slice + m * p.ldc + n;
    if (ACCUMULATE) { v += f32(c[idx]); }
    c[idx] = out_t(v);
}
