// generate.wgsl's weights read from their storage buffer: a unit's gate rows are
// summed by dot3/dot1 (shaders/parts/generate_dot_subgroup.wgsl).

fn w_at(x: u32) -> f32 {
    return f32(weights[x]);
}

// Unit j's three W_ih rows (layer input of ni values at state[v0]).
fn gates_ih(l: u32, at: LayerAt, j: u32, v0: u32, ni: u32) -> vec3<f32> {
    return dot3(at.w_ih + j * ni, a64(gp.hidden * ni), v0, ni);
}

// Unit j's three W_hh rows times the layer's state at state[v0].
fn gates_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> vec3<f32> {
    let nh = gp.hidden;
    return dot3(at.w_hh + j * nh, a64(nh * nh), v0, nh);
}

// Unit j's n row of W_hh times r·h at state[v0] (reset-before).
fn n_row_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> f32 {
    let nh = gp.hidden;
    return dot1(at.w_hh + 2u * a64(nh * nh) + j * nh, v0, nh);
}

// Row c of the head (at fc_w) times the top state at state[v0].
fn head_row(fc_w: u32, c: u32, v0: u32) -> f32 {
    let nh = gp.hidden;
    return dot1(fc_w + c * nh, v0, nh);
}
