// The forward step's recurrent matvec (gru_step_fwd.wgsl), plain: every lane loads
// the state values it multiplies.

// acc[u * TB + i] = Σ_k W_g[j_u, k] v[b0 + i, k] for the gate blocks g asked for, with
// j_u = j0 + u·WG/UT and v = h_prev (hs[s]) or r*h (slot 3 of saved[s]). Units past H
// and rows past B repeat the last one (results unused).
fn recurrent_matvec(j0: u32, b0: u32, s: u32, from_rh: bool, want_rz: bool, want_n: bool) -> Acc {
    var acc: Acc;
    let nb = dims.batch;
    let nh = dims.hidden;
    // Written out for UT = 2: llvmpipe runs loops over a unit index much slower.
    let j1 = min(j0, nh - 1u);
    let j2 = min(j0 + WG / UT, nh - 1u);
    for (var k = 0u; k < nh; k++) {
        let row = k * 3u * nh;
        var v: array<f32, TB>;
        for (var i = 0u; i < TB; i++) {
            let b = min(b0 + i, nb - 1u);
            if (from_rh) { v[i] = saved[(s * nb + b) * 4u * nh + 3u * nh + k]; } else { v[i] = hs[(s * nb + b) * nh + k]; }
        }
        if (want_rz) {
            let wr1 = w_t[row + j1];
            let wz1 = w_t[row + nh + j1];
            let wr2 = w_t[row + j2];
            let wz2 = w_t[row + nh + j2];
            for (var i = 0u; i < TB; i++) {
                acc.r[i] = fma(wr1, v[i], acc.r[i]);
                acc.z[i] = fma(wz1, v[i], acc.z[i]);
                acc.r[TB + i] = fma(wr2, v[i], acc.r[TB + i]);
                acc.z[TB + i] = fma(wz2, v[i], acc.z[TB + i]);
            }
        }
        if (want_n) {
            let wn1 = w_t[row + 2u * nh + j1];
            let wn2 = w_t[row + 2u * nh + j2];
            for (var i = 0u; i < TB; i++) {
                acc.n[i] = fma(wn1, v[i], acc.n[i]);
                acc.n[TB + i] = fma(wn2, v[i], acc.n[TB + i]);
            }
        }
    }
    return acc;
}
