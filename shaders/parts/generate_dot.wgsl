// generate.wgsl's row sums, each lane loading its own vector values (any adapter).

fn lane_setup() {}

// Rows r0, r0 + rs and r0 + 2·rs of the weights (len values each) times
// state[v0 .. v0 + len].
fn dot3(r0: u32, rs: u32, v0: u32, len: u32) -> vec3<f32> {
    var a = 0.0; var b = 0.0; var c = 0.0;
    for (var k = 0u; k < len; k++) {
        let x = state[v0 + k];
        a += w_at(r0 + k) * x; b += w_at(r0 + rs + k) * x; c += w_at(r0 + 2u * rs + k) * x;
    }
    return vec3<f32>(a, b, c);
}

// Row r0 of the weights (len values) times state[v0 .. v0 + len].
fn dot1(r0: u32, v0: u32, len: u32) -> f32 {
    var a = 0.0;
    for (var k = 0u; k < len; k++) {
        let x = state[v0 + k];
        a += w_at(r0 + k) * x;
    }
    return a;
}
