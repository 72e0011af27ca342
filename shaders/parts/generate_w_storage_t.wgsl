// generate.wgsl's weights in the portable build (what GPUs run), read from storage with
// every matrix packed transposed (GenDims::matrices): W_ih as [I, 3H] and W_hh as
// [H, 3H] in the space of their three gate blocks, the head as [H, C]. A lane's unit
// (or head row) is then a column: at each k the lanes of a warp read neighbouring
// addresses, where row-major rows would have each lane read its own cache line. The
// software builds keep the rows (generate_w_storage.wgsl, generate_w_uniform.wgsl).

fn lane_setup() {}

fn w_at(x: u32) -> f32 {
    return f32(weights[x]);
}

// Columns c, c + H and c + 2H of the [len, 3H] matrix at m times state[v0 .. v0 + len],
// in k order from zero.
fn cols3(m: u32, c: u32, v0: u32, len: u32) -> vec3<f32> {
    let nh = gp.hidden;
    var a = 0.0; var b = 0.0; var d = 0.0;
    for (var k = 0u; k < len; k++) {
        let x = state[v0 + k];
        let o = m + k * 3u * nh + c;
        a += w_at(o) * x; b += w_at(o + nh) * x; d += w_at(o + 2u * nh) * x;
    }
    return vec3<f32>(a, b, d);
}

// Column c of the [len, stride] matrix at m times state[v0 .. v0 + len].
fn col1(m: u32, c: u32, stride: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    for (var k = 0u; k < len; k++) {
        a += w_at(m + k * stride + c) * state[v0 + k];
    }
    return a;
}

// Unit j's three W_ih rows (layer input of ni values at state[v0]).
fn gates_ih(l: u32, at: LayerAt, j: u32, v0: u32, ni: u32) -> vec3<f32> {
    return cols3(at.w_ih, j, v0, ni);
}

// Unit j's three W_hh rows times the layer's state at state[v0].
fn gates_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> vec3<f32> {
    return cols3(at.w_hh, j, v0, gp.hidden);
}

// Unit j's n row of W_hh times r·h at state[v0] (reset-before).
fn n_row_hh(l: u32, at: LayerAt, j: u32, v0: u32) -> f32 {
    let nh = gp.hidden;
    return col1(at.w_hh, 2u * nh + j, 3u * nh, v0, nh);
}

// Row c of the head (at fc_w) times the top state at state[v0].
fn head_row(fc_w: u32, c: u32, v0: u32) -> f32 {
    return col1(fc_w, c, gp.cols, v0, gp.hidden);
}
