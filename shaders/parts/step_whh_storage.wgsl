// The backward step's W_hh values read from their storage buffer.

fn whh_at(x: u32) -> f32 {
    return w_hh[at_w() + x];
}
