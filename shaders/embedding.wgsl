// embedding: the lookup table of a token model and its gradient.
//   embed_fwd:  out[n, j] = table[tokens[n], j]
//   embed_bwd:  for each token v the batch holds, d_table[v, j] (+)= the sum of d_x[p, j]
//               over the positions p holding v, in the order the host listed them:
//               ids = [D | tokens (M) | starts (M + 1) | positions (N)], D tokens
//               present (ascending), M = min(N, V) slots. The scatter-add is
//               deterministic, needs no float atomics, and touches only the rows the
//               batch holds: one thread per (present token, value), not per table value.
//               Other rows are left alone (embed_update.wgsl zeroes the rows of a pass).


@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    // A 2-D grid when the elements pass 65535 workgroups of 64.
    return gid.y * nwg.x * WG + gid.x;
}

@compute @workgroup_size(WG)
fn embed_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.n * p.dim) { return; }
    let row = e / p.dim;
    let j = e % p.dim;
    dst[e] = src[ids[row] * p.dim + j];
}

@compute @workgroup_size(WG)
fn embed_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    let m = min(p.n, p.vocab);
    if (e >= m * p.dim) { return; }
    let d = e / p.dim;
    let j = e % p.dim;
    if (d >= ids[0]) { return; }
    let v = ids[1u + d];
    let base = 2u + 2u * m;
    // Four positions per iteration, in order: llvmpipe caps an invocation at 65535 loop
    // iterations, which one position per iteration would pass for a token occurring
    // more than 65535 times in a batch (a space in half a million characters).
    let k1 = ids[2u + m + d];
    var s = 0.0;
    for (var k = ids[1u + m + d]; k < k1; k += 4u) {
        s += src[ids[base + k] * p.dim + j];
        if (k + 1u < k1) { s += src[ids[base + k + 1u] * p.dim + j]; }
        if (k + 2u < k1) { s += src[ids[base + k + 2u] * p.dim + j]; }
        if (k + 3u < k1) { s += src[ids[base + k + 3u] * p.dim + j]; }
    }
    let at = v * p.dim + j;
    if (p.accumulate != 0u) { s += dst[at]; }
    dst[at] = s;
}
