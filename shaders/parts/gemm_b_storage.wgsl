// op(B) of a GEMM read from its storage buffer (every build on a GPU).

@group(0) @binding(2) var<storage, read> b: array<wt_t>; // op(B) [K, N]

fn load_b(k: u32, n: u32, k_end: u32) -> f32 {
    if (n >= p.n || k >= k_end) { return 0.0; }
    if (TRANS_B) { return f32(b[p.off_b + n * p.ldb + k]); }
    return f32(b[p.off_b + k * p.ldb + n]);
}
