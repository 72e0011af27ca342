// reduce_slices: out[off + m*ld + n] = (out if ACCUMULATE) + sum over z of
// part[src + z*M*N + m*N + n] (+ bias[n]), for a first sum of slices and, past its
// M·N values, a second one (m2, n2, slices2, ld2, off2, src2; none with m2 = 0) into
// the same output binding. The second stage of split-K GEMMs and of long column sums,
// adding slices in a fixed order: deterministic, no atomics. Two sums in one dispatch
// are a weight gradient's split-K slices and its bias's column-sum slices, which lie
// one after the other in the gradient buffer.


override ACCUMULATE: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;      // slices of both sums
@group(0) @binding(2) var<storage, read> bias: array<wt_t>;     // [N] (unused without BIAS)
@group(0) @binding(3) var<storage, read_write> out: array<out_t>; // both outputs (f32 sums, rounded once)

fn store(idx: u32, sum: f32) {
    var s = sum;
    if (ACCUMULATE) { s += f32(out[idx]); }
    out[idx] = out_t(s);
}

@compute @workgroup_size(WG)
fn reduce_slices(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // A 2-D grid when the values pass 65535 workgroups of 64.
    let e = gid.y * nwg.x * WG + gid.x;
    let first = p.m * p.n;
    if (e < first) {
        let n = e % p.n;
        var s = 0.0;
        for (var z = 0u; z < p.slices; z++) {
            s += part[p.src + z * first + e];
        }
        if (BIAS) { s += f32(bias[n]); }
        store(p.off + (e / p.n) * p.ld + n, s);
    } else if (e - first < p.m2 * p.n2) {
        let e2 = e - first;
        var s = 0.0;
        for (var z = 0u; z < p.slices2; z++) {
            s += part[p.src2 + z * p.m2 * p.n2 + e2];
        }
        store(p.off2 + (e2 / p.n2) * p.ld2 + e2 % p.n2, s);
    }
}
