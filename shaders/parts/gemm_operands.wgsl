// What both GEMM builds (gemm.wgsl, gemm_subgroup.wgsl) share: their overrides and
// bindings, zero-padded operand loads, and the store of one output.
//   op(A)(m, k) = TRANS_A ? a[off_a + k*lda + m] : a[off_a + m*lda + k]
//   op(B)(k, n) = TRANS_B ? b[off_b + n*ldb + k] : b[off_b + k*ldb + n]
//   c[c_slice + m*ldc + n] (+ bias[n]) (+ what c held)

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;       // op(A) [M, K]
@group(0) @binding(2) var<storage, read> b: array<f32>;       // op(B) [K, N]
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // [N] (unused without BIAS)
@group(0) @binding(4) var<storage, read_write> c: array<f32>; // [M, N] with stride ldc

fn load_a(m: u32, k: u32, k_end: u32) -> f32 {
    if (m >= p.m || k >= k_end) { return 0.0; }
    if (TRANS_A) { return a[p.off_a + k * p.lda + m]; }
    return a[p.off_a + m * p.lda + k];
}

fn load_b(k: u32, n: u32, k_end: u32) -> f32 {
    if (n >= p.n || k >= k_end) { return 0.0; }
    if (TRANS_B) { return b[p.off_b + n * p.ldb + k]; }
    return b[p.off_b + k * p.ldb + n];
}

// Output (m, n) of the slice starting at c_slice (split-K: one slice per z).
fn store_c(c_slice: u32, m: u32, n: u32, sum: f32) {
    var v = sum;
    if (BIAS) { v += bias[n]; }
    let idx = c_slice + m * p.ldc + n;
    if (ACCUMULATE) { v += c[idx]; }
    c[idx] = v;
}
