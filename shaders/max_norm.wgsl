// Keras' max_norm constraint, applied after each update: every unit's incoming weight
// vector is rescaled to norm <= c by w * min(norm, c) / (1e-7 + norm).
//   max_norm_rows:  rows of a [rows, cols] PyTorch-layout weight (Keras axis 0 of the
//                   transposed kernel) — one unit per row.
//   max_norm_pairs: the pairs (b_ih[j], b_hh[j]), Keras' reset-after bias [2, 3H] with
//                   axis 0.

struct NormParams { rows: u32, cols: u32, c: f32, _p0: u32 }

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;

@compute @workgroup_size(64)
fn max_norm_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j++) { s += a[r * p.cols + j] * a[r * p.cols + j]; }
    let norm = sqrt(s);
    let f = clamp(norm, 0.0, p.c) / (1e-7 + norm);
    for (var j = 0u; j < p.cols; j++) { a[r * p.cols + j] = a[r * p.cols + j] * f; }
}

@compute @workgroup_size(64)
fn max_norm_pairs(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    let norm = sqrt(a[r] * a[r] + b[r] * b[r]);
    let f = clamp(norm, 0.0, p.c) / (1e-7 + norm);
    a[r] = a[r] * f;
    b[r] = b[r] * f;
}
