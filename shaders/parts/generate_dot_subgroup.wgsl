// generate.wgsl's row sums for software adapters with subgroups of at least 8 lanes:
// the same sums in the same k order, but each vector value is loaded once per subgroup.
// For a block of 8 k, lane l loads the value at k0 + l and every lane takes it by
// shuffle (llvmpipe pays about fifty FMAs per load, a shuffle is a register
// permutation). Callers are in uniform control flow with every lane active.

var<private> kl: u32;

fn lane_setup() {
    kl = subgroupExclusiveAdd(1u) % 8u;
}

// Rows r0, r0 + rs and r0 + 2·rs of the weights (len values each) times
// state[v0 .. v0 + len].
fn dot3(r0: u32, rs: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let w0 = r0 + k0;
        let w1 = r0 + rs + k0;
        let w2 = r0 + 2u * rs + k0;
        let x0 = subgroupShuffle(u, 0u);
        a += w_at(w0) * x0; b += w_at(w1) * x0; c += w_at(w2) * x0;
        let x1 = subgroupShuffle(u, 1u);
        a += w_at(w0 + 1u) * x1; b += w_at(w1 + 1u) * x1; c += w_at(w2 + 1u) * x1;
        let x2 = subgroupShuffle(u, 2u);
        a += w_at(w0 + 2u) * x2; b += w_at(w1 + 2u) * x2; c += w_at(w2 + 2u) * x2;
        let x3 = subgroupShuffle(u, 3u);
        a += w_at(w0 + 3u) * x3; b += w_at(w1 + 3u) * x3; c += w_at(w2 + 3u) * x3;
        let x4 = subgroupShuffle(u, 4u);
        a += w_at(w0 + 4u) * x4; b += w_at(w1 + 4u) * x4; c += w_at(w2 + 4u) * x4;
        let x5 = subgroupShuffle(u, 5u);
        a += w_at(w0 + 5u) * x5; b += w_at(w1 + 5u) * x5; c += w_at(w2 + 5u) * x5;
        let x6 = subgroupShuffle(u, 6u);
        a += w_at(w0 + 6u) * x6; b += w_at(w1 + 6u) * x6; c += w_at(w2 + 6u) * x6;
        let x7 = subgroupShuffle(u, 7u);
        a += w_at(w0 + 7u) * x7; b += w_at(w1 + 7u) * x7; c += w_at(w2 + 7u) * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        a += w_at(r0 + k) * x; b += w_at(r0 + rs + k) * x; c += w_at(r0 + 2u * rs + k) * x;
    }
    return vec3<f32>(a, b, c);
}

// Row r0 of the weights (len values) times state[v0 .. v0 + len].
fn dot1(r0: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let w0 = r0 + k0;
        let x0 = subgroupShuffle(u, 0u);
        a += w_at(w0) * x0;
        let x1 = subgroupShuffle(u, 1u);
        a += w_at(w0 + 1u) * x1;
        let x2 = subgroupShuffle(u, 2u);
        a += w_at(w0 + 2u) * x2;
        let x3 = subgroupShuffle(u, 3u);
        a += w_at(w0 + 3u) * x3;
        let x4 = subgroupShuffle(u, 4u);
        a += w_at(w0 + 4u) * x4;
        let x5 = subgroupShuffle(u, 5u);
        a += w_at(w0 + 5u) * x5;
        let x6 = subgroupShuffle(u, 6u);
        a += w_at(w0 + 6u) * x6;
        let x7 = subgroupShuffle(u, 7u);
        a += w_at(w0 + 7u) * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        a += w_at(r0 + k) * x;
    }
    return a;
}
