// op(B) of a GEMM read through a 64 KiB uniform window of its buffer, for software
// adapters: llvmpipe (Mesa 22.3) loads uniform buffers with vector gathers, 8-12x the
// rate of its storage loads, which it runs lane by lane (`gru bench --roofline`). The
// host binds the window starting `p.win` floats into the buffer and splits the GEMM so
// each dispatch only reads op(B) rows inside it: a block of columns when TRANS_B (rows
// of b are columns of op(B)), a block of depth otherwise (gemm.rs, `uniform_windows`).

@group(0) @binding(2) var<uniform> b: array<vec4<f32>, 4096>; // a window of op(B)

fn load_b(k: u32, n: u32, k_end: u32) -> f32 {
    if (n >= p.n || k >= k_end) { return 0.0; }
    var i = p.off_b + k * p.ldb + n - p.win;
    if (TRANS_B) { i = p.off_b + n * p.ldb + k - p.win; }
    return b[i >> 2u][i & 3u];
}
