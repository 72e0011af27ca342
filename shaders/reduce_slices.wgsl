// reduce_slices: out[off + m*ld + n] = (out if ACCUMULATE) + sum over z of
// part[z, m, n] (+ bias[n]). The second stage of split-K GEMMs and of long column sums,
// adding slices in a fixed order: deterministic, no atomics.


override ACCUMULATE: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;      // [slices, M, N]
@group(0) @binding(2) var<storage, read> bias: array<f32>;      // [N] (unused without BIAS)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [M, ld] from off

@compute @workgroup_size(WG)
fn reduce_slices(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // A 2-D grid when M·N passes 65535 workgroups of 64.
    let e = gid.y * nwg.x * WG + gid.x;
    if (e >= p.m * p.n) { return; }
    let m = e / p.n;
    let n = e % p.n;
    var s = 0.0;
    for (var z = 0u; z < p.slices; z++) {
        s += part[z * p.m * p.n + e];
    }
    if (BIAS) { s += bias[n]; }
    let idx = p.off + m * p.ld + n;
    if (ACCUMULATE) { s += out[idx]; }
    out[idx] = s;
}
