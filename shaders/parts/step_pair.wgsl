// A bidirectional layer's two directions in one dispatch: grid z = 2, the workgroup's z
// its direction, each binding spanning both directions' tensors with the reverse one's
// at dims.off_* values from the start. Unpaired dispatches have z = 0 only, take the
// direction from dims.reverse and bind one direction's tensors (offsets unused).
// Nothing crosses directions, so the pair is two independent grids side by side.

var<private> pz: u32;

// Call first in every entry point.
fn pair_init(z: u32) {
    pz = z;
}

fn is_reverse() -> bool {
    return dims.reverse + pz == 1u;
}

// Where this direction's units start in a row of the layer's output (or its gradient).
fn out_first() -> u32 {
    return dims.out_offset + pz * dims.hidden;
}

// Where this direction's tensor starts in each binding, in values.
fn at_gx() -> u32 { return pz * dims.off_gx; }
fn at_w() -> u32 { return pz * dims.off_w; }
fn at_b() -> u32 { return pz * dims.off_b; }
fn at_hs() -> u32 { return pz * dims.off_hs; }
fn at_saved() -> u32 { return pz * dims.off_saved; }
fn at_d_hs() -> u32 { return pz * dims.off_d_hs; }
fn at_d_gx() -> u32 { return pz * dims.off_d_gx; }
fn at_d_gh() -> u32 { return pz * dims.off_d_gh; }
