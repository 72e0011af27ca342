// The backward step's W_hh values read from their storage buffer.

fn whh_at(x: u32) -> f32 {
    return f32(w_hh[at_w() + x]);
}
