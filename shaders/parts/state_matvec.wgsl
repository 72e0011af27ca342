// The backward step's state matvec (gru_step_bwd.wgsl), plain: every lane loads the
// gate gradients it multiplies.

// acc[u * TB + i] = Σ_{c in [c0, c1)} dGh[s, b0 + i, c] · W_hh[c, k_u] (c in this
// thread's slice: step_split_*.wgsl) with
// k_u = k0 + u·WG/UT. Units past H and rows past B repeat the last one (unused), so the
// loop has no branch. Written out for UT = 2: llvmpipe runs a loop over units slower.
fn state_matvec(k0: u32, b0: u32, s: u32, c0: u32, c1: u32) -> array<f32, UT * TB> {
    var acc: array<f32, UT * TB>;
    let nb = dims.batch;
    let nh = dims.hidden;
    let k1 = min(k0, nh - 1u);
    let k2 = min(k0 + WG / UT, nh - 1u);
    // Slice k_part of KS (the whole range but in the GPU split builds).
    let per = (c1 - c0 + KS - 1u) / KS;
    let ce = min(c1, c0 + (k_part + 1u) * per);
    for (var c = c0 + k_part * per; c < ce; c++) {
        let w1 = whh_at(c * nh + k1);
        let w2 = whh_at(c * nh + k2);
        for (var i = 0u; i < TB; i++) {
            let b = min(b0 + i, nb - 1u);
            let g = d_gh[(s * nb + b) * 3u * nh + c];
            acc[i] = fma(g, w1, acc[i]);
            acc[TB + i] = fma(g, w2, acc[TB + i]);
        }
    }
    return acc;
}
