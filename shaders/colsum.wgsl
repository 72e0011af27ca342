// colsum: out[n] (+)= sum over m of x[m*ld + n], for n < N. One thread per column,
// rows in order: the bias gradients, deterministic and without atomics.

struct ColsumParams { m: u32, n: u32, ld: u32, _p0: u32 }

override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: ColsumParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [M, ld]
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // [N]

@compute @workgroup_size(64)
fn colsum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    var s = 0.0;
    for (var m = 0u; m < p.m; m++) {
        s += x[m * p.ld + n];
    }
    if (ACCUMULATE) { s += out[n]; }
    out[n] = s;
}
