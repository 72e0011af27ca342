// Keras' max_norm constraint, applied after each update: every unit's incoming weight
// vector is rescaled to norm <= c by w * min(norm, c) / (1e-7 + norm).
//   max_norm_rows:  rows of a [rows, cols] PyTorch-layout weight (Keras axis 0 of the
//                   transposed kernel) — one unit per row.
//   max_norm_pairs: the pairs (b_ih[j], b_hh[j]), Keras' reset-after bias [2, 3H] with
//                   axis 0.


@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;

fn sq(r: u32, j: u32) -> f32 {
    if (j >= p.cols) { return 0.0; }
    return a[r * p.cols + j] * a[r * p.cols + j];
}

fn scale(r: u32, j: u32, f: f32) {
    if (j < p.cols) { a[r * p.cols + j] = a[r * p.cols + j] * f; }
}

// Four columns per iteration, added in column order: llvmpipe caps an invocation at
// 65535 loop iterations in all, which two plain loops would pass at 32768 columns.
@compute @workgroup_size(WG)
fn max_norm_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j += 4u) {
        s += sq(r, j);
        s += sq(r, j + 1u);
        s += sq(r, j + 2u);
        s += sq(r, j + 3u);
    }
    let norm = sqrt(s);
    let f = clamp(norm, 0.0, p.c) / (1e-7 + norm);
    for (var j = 0u; j < p.cols; j += 4u) {
        scale(r, j, f);
        scale(r, j + 1u, f);
        scale(r, j + 2u, f);
        scale(r, j + 3u, f);
    }
}

@compute @workgroup_size(WG)
fn max_norm_pairs(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    let norm = sqrt(a[r] * a[r] + b[r] * b[r]);
    let f = clamp(norm, 0.0, p.c) / (1e-7 + norm);
    a[r] = a[r] * f;
    b[r] = b[r] * f;
}
