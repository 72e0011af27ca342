// The forward step's W_hhᵀ values read from their storage buffer.

fn w_at(x: u32) -> f32 {
    return f32(w_t[at_w() + x]);
}
