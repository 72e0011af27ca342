// colsum: out[z, n] (+)= sum over rows m of slice z of x[m*N + n]. One thread per
// column and slice, rows in order; with several slices reduce_slices.wgsl adds them in
// order. The bias gradients, deterministic and without atomics. Slices keep each
// invocation under llvmpipe's 65535 loop iterations.


override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: ColsumParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [M, N]
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // [slices, N]
@group(0) @binding(3) var<storage, read> x2: array<f32>;        // [M, N] (colsum_pair)

@compute @workgroup_size(WG)
fn colsum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    let m0 = gid.y * p.rows_per_slice;
    let m1 = min(m0 + p.rows_per_slice, p.m);
    var s = 0.0;
    for (var m = m0; m < m1; m++) {
        s += x[m * p.n + n];
    }
    let idx = gid.y * p.n + n;
    if (ACCUMULATE) { s += out[idx]; }
    out[idx] = s;
}

// Both bias gradients of a layer's direction in one dispatch (b_ih from dGx as x, b_hh
// from dGh as x2, one output range over both tensors): columns 0 .. N sum x, columns
// second .. second + N sum x2, and the columns between (the tensors' padding) get 0, so
// the padding stays zero.
@compute @workgroup_size(WG)
fn colsum_pair(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let width = p.second + p.n;
    if (c >= width) { return; }
    let m0 = gid.y * p.rows_per_slice;
    let m1 = min(m0 + p.rows_per_slice, p.m);
    var s = 0.0;
    if (c < p.n) {
        for (var m = m0; m < m1; m++) {
            s += x[m * p.n + c];
        }
    } else if (c >= p.second) {
        let n = c - p.second;
        for (var m = m0; m < m1; m++) {
            s += x2[m * p.n + n];
        }
    }
    let idx = gid.y * width + c;
    if (ACCUMULATE) { s += out[idx]; }
    out[idx] = s;
}
