// generate.wgsl's weight matrices read through 64 KiB uniform windows, for software
// adapters: llvmpipe (Mesa 22.3) loads uniform buffers with vector gathers, 8-12x its
// lane-by-lane storage loads. Each window holds one gate block (a 256-byte aligned
// start): layer l's W_ih gates (bindings 4-6, 10-12) and W_hh gates (7-9, 13-15), and
// the head (16), so every loop reads fixed windows. Choosing a window per load (a switch
// over twelve windows of one buffer) cost more than the loads saved. The host takes this
// build only for one or two layers whose gate blocks and head fit a window (H·I, H·H and
// C·H <= 16384) on an adapter with 14 uniform bindings per stage; windows of a missing
// second layer repeat the first. Biases and the embedding come from storage (a few
// values per token). The sums are those of generate_dot_subgroup.wgsl: k order, vector
// values shared by shuffle.

fn w_at(x: u32) -> f32 {
    return f32(weights[x]);
}

@group(0) @binding(4) var<uniform> w0_ih0: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> w0_ih1: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> w0_ih2: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> w0_hh0: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> w0_hh1: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> w0_hh2: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<uniform> w1_ih0: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> w1_ih1: array<vec4<f32>, 4096>;
@group(0) @binding(12) var<uniform> w1_ih2: array<vec4<f32>, 4096>;
@group(0) @binding(13) var<uniform> w1_hh0: array<vec4<f32>, 4096>;
@group(0) @binding(14) var<uniform> w1_hh1: array<vec4<f32>, 4096>;
@group(0) @binding(15) var<uniform> w1_hh2: array<vec4<f32>, 4096>;
@group(0) @binding(16) var<uniform> w_fc: array<vec4<f32>, 4096>;

// Values i0 .. i0 + len of fixed windows times state[v0 .. v0 + len].
fn dot3_ih0(i0: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w0_ih0[e0 >> 2u][e0 & 3u] * x0; b += w0_ih1[e0 >> 2u][e0 & 3u] * x0; c += w0_ih2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w0_ih0[e1 >> 2u][e1 & 3u] * x1; b += w0_ih1[e1 >> 2u][e1 & 3u] * x1; c += w0_ih2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w0_ih0[e2 >> 2u][e2 & 3u] * x2; b += w0_ih1[e2 >> 2u][e2 & 3u] * x2; c += w0_ih2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w0_ih0[e3 >> 2u][e3 & 3u] * x3; b += w0_ih1[e3 >> 2u][e3 & 3u] * x3; c += w0_ih2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w0_ih0[e4 >> 2u][e4 & 3u] * x4; b += w0_ih1[e4 >> 2u][e4 & 3u] * x4; c += w0_ih2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w0_ih0[e5 >> 2u][e5 & 3u] * x5; b += w0_ih1[e5 >> 2u][e5 & 3u] * x5; c += w0_ih2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w0_ih0[e6 >> 2u][e6 & 3u] * x6; b += w0_ih1[e6 >> 2u][e6 & 3u] * x6; c += w0_ih2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w0_ih0[e7 >> 2u][e7 & 3u] * x7; b += w0_ih1[e7 >> 2u][e7 & 3u] * x7; c += w0_ih2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w0_ih0[i >> 2u][i & 3u] * x; b += w0_ih1[i >> 2u][i & 3u] * x; c += w0_ih2[i >> 2u][i & 3u] * x;
    }
    return vec3<f32>(a, b, c);
}

fn dot3_hh0(i0: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w0_hh0[e0 >> 2u][e0 & 3u] * x0; b += w0_hh1[e0 >> 2u][e0 & 3u] * x0; c += w0_hh2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w0_hh0[e1 >> 2u][e1 & 3u] * x1; b += w0_hh1[e1 >> 2u][e1 & 3u] * x1; c += w0_hh2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w0_hh0[e2 >> 2u][e2 & 3u] * x2; b += w0_hh1[e2 >> 2u][e2 & 3u] * x2; c += w0_hh2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w0_hh0[e3 >> 2u][e3 & 3u] * x3; b += w0_hh1[e3 >> 2u][e3 & 3u] * x3; c += w0_hh2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w0_hh0[e4 >> 2u][e4 & 3u] * x4; b += w0_hh1[e4 >> 2u][e4 & 3u] * x4; c += w0_hh2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w0_hh0[e5 >> 2u][e5 & 3u] * x5; b += w0_hh1[e5 >> 2u][e5 & 3u] * x5; c += w0_hh2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w0_hh0[e6 >> 2u][e6 & 3u] * x6; b += w0_hh1[e6 >> 2u][e6 & 3u] * x6; c += w0_hh2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w0_hh0[e7 >> 2u][e7 & 3u] * x7; b += w0_hh1[e7 >> 2u][e7 & 3u] * x7; c += w0_hh2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w0_hh0[i >> 2u][i & 3u] * x; b += w0_hh1[i >> 2u][i & 3u] * x; c += w0_hh2[i >> 2u][i & 3u] * x;
    }
    return vec3<f32>(a, b, c);
}

fn dot1_hn0(i0: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w0_hh2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w0_hh2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w0_hh2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w0_hh2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w0_hh2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w0_hh2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w0_hh2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w0_hh2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w0_hh2[i >> 2u][i & 3u] * x;
    }
    return a;
}

fn dot3_ih1(i0: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w1_ih0[e0 >> 2u][e0 & 3u] * x0; b += w1_ih1[e0 >> 2u][e0 & 3u] * x0; c += w1_ih2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w1_ih0[e1 >> 2u][e1 & 3u] * x1; b += w1_ih1[e1 >> 2u][e1 & 3u] * x1; c += w1_ih2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w1_ih0[e2 >> 2u][e2 & 3u] * x2; b += w1_ih1[e2 >> 2u][e2 & 3u] * x2; c += w1_ih2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w1_ih0[e3 >> 2u][e3 & 3u] * x3; b += w1_ih1[e3 >> 2u][e3 & 3u] * x3; c += w1_ih2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w1_ih0[e4 >> 2u][e4 & 3u] * x4; b += w1_ih1[e4 >> 2u][e4 & 3u] * x4; c += w1_ih2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w1_ih0[e5 >> 2u][e5 & 3u] * x5; b += w1_ih1[e5 >> 2u][e5 & 3u] * x5; c += w1_ih2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w1_ih0[e6 >> 2u][e6 & 3u] * x6; b += w1_ih1[e6 >> 2u][e6 & 3u] * x6; c += w1_ih2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w1_ih0[e7 >> 2u][e7 & 3u] * x7; b += w1_ih1[e7 >> 2u][e7 & 3u] * x7; c += w1_ih2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w1_ih0[i >> 2u][i & 3u] * x; b += w1_ih1[i >> 2u][i & 3u] * x; c += w1_ih2[i >> 2u][i & 3u] * x;
    }
    return vec3<f32>(a, b, c);
}

fn dot3_hh1(i0: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w1_hh0[e0 >> 2u][e0 & 3u] * x0; b += w1_hh1[e0 >> 2u][e0 & 3u] * x0; c += w1_hh2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w1_hh0[e1 >> 2u][e1 & 3u] * x1; b += w1_hh1[e1 >> 2u][e1 & 3u] * x1; c += w1_hh2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w1_hh0[e2 >> 2u][e2 & 3u] * x2; b += w1_hh1[e2 >> 2u][e2 & 3u] * x2; c += w1_hh2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w1_hh0[e3 >> 2u][e3 & 3u] * x3; b += w1_hh1[e3 >> 2u][e3 & 3u] * x3; c += w1_hh2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w1_hh0[e4 >> 2u][e4 & 3u] * x4; b += w1_hh1[e4 >> 2u][e4 & 3u] * x4; c += w1_hh2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w1_hh0[e5 >> 2u][e5 & 3u] * x5; b += w1_hh1[e5 >> 2u][e5 & 3u] * x5; c += w1_hh2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w1_hh0[e6 >> 2u][e6 & 3u] * x6; b += w1_hh1[e6 >> 2u][e6 & 3u] * x6; c += w1_hh2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w1_hh0[e7 >> 2u][e7 & 3u] * x7; b += w1_hh1[e7 >> 2u][e7 & 3u] * x7; c += w1_hh2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w1_hh0[i >> 2u][i & 3u] * x; b += w1_hh1[i >> 2u][i & 3u] * x; c += w1_hh2[i >> 2u][i & 3u] * x;
    }
    return vec3<f32>(a, b, c);
}

fn dot1_hn1(i0: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w1_hh2[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w1_hh2[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w1_hh2[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w1_hh2[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w1_hh2[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w1_hh2[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w1_hh2[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w1_hh2[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w1_hh2[i >> 2u][i & 3u] * x;
    }
    return a;
}

fn dot1_fc(i0: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    var k0 = 0u;
    for (; k0 + 8u <= len; k0 += 8u) {
        let u = state[v0 + k0 + kl];
        let x0 = subgroupShuffle(u, 0u);
        let e0 = i0 + k0;
        a += w_fc[e0 >> 2u][e0 & 3u] * x0;
        let x1 = subgroupShuffle(u, 1u);
        let e1 = i0 + k0 + 1u;
        a += w_fc[e1 >> 2u][e1 & 3u] * x1;
        let x2 = subgroupShuffle(u, 2u);
        let e2 = i0 + k0 + 2u;
        a += w_fc[e2 >> 2u][e2 & 3u] * x2;
        let x3 = subgroupShuffle(u, 3u);
        let e3 = i0 + k0 + 3u;
        a += w_fc[e3 >> 2u][e3 & 3u] * x3;
        let x4 = subgroupShuffle(u, 4u);
        let e4 = i0 + k0 + 4u;
        a += w_fc[e4 >> 2u][e4 & 3u] * x4;
        let x5 = subgroupShuffle(u, 5u);
        let e5 = i0 + k0 + 5u;
        a += w_fc[e5 >> 2u][e5 & 3u] * x5;
        let x6 = subgroupShuffle(u, 6u);
        let e6 = i0 + k0 + 6u;
        a += w_fc[e6 >> 2u][e6 & 3u] * x6;
        let x7 = subgroupShuffle(u, 7u);
        let e7 = i0 + k0 + 7u;
        a += w_fc[e7 >> 2u][e7 & 3u] * x7;
    }
    for (var k = k0; k < len; k++) {
        let x = state[v0 + k];
        let i = i0 + k;
        a += w_fc[i >> 2u][i & 3u] * x;
    }
    return a;
}

fn gates_ih(l: u32, at: LayerAt, j: u32, v0: u32, ni: u32) -> vec3<f32> {
    if (l == 0u) { return dot3_ih0(j * ni, v0, ni); }
    return dot3_ih1(j * ni, v0, ni);
}

fn gates_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> vec3<f32> {
    let nh = gp.hidden;
    if (l == 0u) { return dot3_hh0(j * nh, v0, nh); }
    return dot3_hh1(j * nh, v0, nh);
}

fn n_row_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> f32 {
    let nh = gp.hidden;
    if (l == 0u) { return dot1_hn0(j * nh, v0, nh); }
    return dot1_hn1(j * nh, v0, nh);
}

fn head_row(fc_w: u32, c: u32, v0: u32) -> f32 {
    return dot1_fc(c * gp.hidden, v0, gp.hidden);
}
