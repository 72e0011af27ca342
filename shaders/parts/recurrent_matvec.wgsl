// The forward step's recurrent matvec (gru_step_fwd.wgsl), plain: every lane loads
// the state values it multiplies.

// acc[u * TB + i] = Σ_k W_g[j_u, k] v[b0 + i, k] for the gate blocks g asked for (k in
// this thread's slice: step_split_*.wgsl), with
// j_u = j0 + u·WG/UT and v = h_prev (hs[s]) or r*h (slot 3 of saved[s]). Units past H
// and rows past B repeat the last one (results unused).
fn recurrent_matvec(j0: u32, b0: u32, s: u32, from_rh: bool, want_rz: bool, want_n: bool) -> Acc {
    var acc: Acc;
    let nb = dims.batch;
    let nh = dims.hidden;
    // Written out for UT = 2: llvmpipe runs loops over a unit index much slower.
    let j1 = min(j0, nh - 1u);
    let j2 = min(j0 + WG / UT, nh - 1u);
    // Slice k_part of KS (the whole loop but in the GPU split builds).
    let per = (nh + KS - 1u) / KS;
    let k1 = min(nh, (k_part + 1u) * per);
    for (var k = k_part * per; k < k1; k++) {
        let row = k * 3u * nh;
        var v: array<f32, TB>;
        for (var i = 0u; i < TB; i++) {
            let b = min(b0 + i, nb - 1u);
            if (from_rh) { v[i] = saved[(s * nb + b) * 4u * nh + 3u * nh + k]; } else { v[i] = hs[(s * nb + b) * nh + k]; }
        }
        gate_fmas(&acc, v, row, j1, j2, want_rz, want_n);
    }
    return acc;
}
