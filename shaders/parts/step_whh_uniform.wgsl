// The backward step's W_hh values read through four 64 KiB uniform windows of its
// buffer (window i from byte 65536·i of the tensor), for software adapters, as the
// forward step reads W_hhᵀ (step_w_uniform.wgsl): llvmpipe (Mesa 22.3) loads uniform
// buffers with vector gathers, several times its lane-by-lane storage loads. The host
// takes this build only where 3H·H values fit the four windows (H <= 147), and pairs
// directions (step_pair.wgsl) only where the span of both directions' weights does.

@group(0) @binding(10) var<uniform> whh_win0: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> whh_win1: array<vec4<f32>, 4096>;
@group(0) @binding(12) var<uniform> whh_win2: array<vec4<f32>, 4096>;
@group(0) @binding(13) var<uniform> whh_win3: array<vec4<f32>, 4096>;

fn whh_at(x0: u32) -> f32 {
    let x = at_w() + x0;
    let i = x & 16383u;
    let window = x >> 14u;
    if (window == 0u) { return whh_win0[i >> 2u][i & 3u]; }
    if (window == 1u) { return whh_win1[i >> 2u][i & 3u]; }
    if (window == 2u) { return whh_win2[i >> 2u][i & 3u]; }
    return whh_win3[i >> 2u][i & 3u];
}
