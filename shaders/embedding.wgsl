// embedding: the lookup table of a token model and its gradient.
//   embed_fwd:  out[n, j] = table[tokens[n], j]
//   embed_bwd:  for each token v listed, d_table[v, j] (+)= the sum of d_x[p, j] over
//               the positions p holding v, in the order the host listed them:
//               ids = [D | M | tokens (M) | starts (M + 1) | positions (N)], D tokens
//               listed (ascending) in M slots. The scatter-add is deterministic and
//               needs no float atomics. Listing the tokens the batch holds (M =
//               min(N, V)), a pass touches only their rows, one thread per (present
//               token, value), and leaves the others alone (embed_update.wgsl zeroes the
//               rows of a pass); listing every token (D = M = V) writes the whole
//               gradient, zero where a token is absent (the dense update's table).
//               d_x may come as the split-K slices of its GEMM, [slices, N, dim]: each
//               position's value is their sum in slice order, as reduce_slices.wgsl
//               would have written it, and that reduction's dispatch is saved.


// Split-K slices of d_x that embed_bwd adds (1: d_x itself).
override SLICES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<act_t>;   // the table, or d_x (f16 table in mixed precision)
@group(0) @binding(3) var<storage, read_write> dst: array<out_t>; // the lookup, or d_table

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
    dst[e] = out_t(src[ids[row] * p.dim + j]);
}

// d_x[pos, j]: the sum of its slices in order.
fn d_x(pos: u32, j: u32) -> f32 {
    let at = pos * p.dim + j;
    var s = f32(src[at]);
    // A pipeline constant, not a uniform: with one slice the loop is compiled away, and
    // llvmpipe, which counts even an empty loop against an invocation's 65,535
    // iterations, never sees it (a token may occur at 70,000 positions).
    for (var z = 1u; z < SLICES; z++) {
        s += f32(src[z * p.n * p.dim + at]);
    }
    return s;
}

@compute @workgroup_size(WG)
fn embed_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    let m = ids[1];
    if (e >= m * p.dim) { return; }
    let d = e / p.dim;
    let j = e % p.dim;
    if (d >= ids[0]) { return; }
    let v = ids[2u + d];
    let base = 3u + 2u * m;
    // Four positions per iteration, in order: llvmpipe caps an invocation at 65535 loop
    // iterations, which one position per iteration would pass for a token occurring
    // more than 65535 times in a batch (a space in half a million characters).
    let k1 = ids[3u + m + d];
    var s = 0.0;
    for (var k = ids[2u + m + d]; k < k1; k += 4u) {
        s += d_x(ids[base + k], j);
        if (k + 1u < k1) { s += d_x(ids[base + k + 1u], j); }
        if (k + 2u < k1) { s += d_x(ids[base + k + 2u], j); }
        if (k + 3u < k1) { s += d_x(ids[base + k + 3u], j); }
    }
    let at = v * p.dim + j;
    if (p.accumulate != 0u) { s += f32(dst[at]); }
    dst[at] = out_t(s);
}
