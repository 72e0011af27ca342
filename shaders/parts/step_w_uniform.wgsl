// The forward step's W_hhᵀ values read through four 64 KiB uniform windows of w_t's
// buffer (window i from byte 65536·i), for software adapters: llvmpipe (Mesa 22.3) loads
// uniform buffers with vector gathers, 8-12x its lane-by-lane storage loads. The host
// takes this build only where 3H·H values fit the four windows (H <= 147), and pairs
// directions (step_pair.wgsl) only where both directions' weights do. A lane's
// window is picked by a branch that is uniform except for lanes on either side of a
// window edge.

@group(0) @binding(9) var<uniform> w_win0: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<uniform> w_win1: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> w_win2: array<vec4<f32>, 4096>;
@group(0) @binding(12) var<uniform> w_win3: array<vec4<f32>, 4096>;

fn w_at(x0: u32) -> f32 {
    let x = at_w() + x0;
    let i = x & 16383u;
    let window = x >> 14u;
    if (window == 0u) { return w_win0[i >> 2u][i & 3u]; }
    if (window == 1u) { return w_win1[i >> 2u][i & 3u]; }
    if (window == 2u) { return w_win2[i >> 2u][i & 3u]; }
    return w_win3[i >> 2u][i & 3u];
}
