// The forward step's recurrent matvec (gru_step_fwd.wgsl), plain: every lane loads
// the state values it multiplies (the portable builds: GPUs' sequence entries at
// H <= 64; past it GPUs run recurrent_matvec_split.wgsl).

// acc[u * TB + i] = Σ_k W_g[j_u, k] v[b0 + i, k] for the gate blocks g asked for, the
// whole k loop in one thread, with j_u = j0 + u·WG/UT and v = h_prev
// (hs[s]) or r*h (slot 3 of saved[s]). Units past H and rows past B repeat the last one
// (results unused). Written out for UT = 2 and TB = 8 in vec4 accumulators, so that no
// register array depends on the driver unrolling a loop (FXC on DX12 does not).
const_assert TB == 8u && UT == 2u;

fn recurrent_matvec(j0: u32, b0: u32, s: u32, from_rh: bool, want_rz: bool, want_n: bool) -> Acc {
    let nb = dims.batch;
    let nh = dims.hidden;
    let j1 = min(j0, nh - 1u);
    let j2 = min(j0 + WG / UT, nh - 1u);
    // Where row b0 + i's vector starts (hs[s] or slot 3 of saved[s]).
    let stride = select(nh, 4u * nh, from_rh);
    let first = select(at_hs() + s * nb * nh, at_saved() + s * nb * 4u * nh + 3u * nh, from_rh);
    let o0 = first + min(b0, nb - 1u) * stride;
    let o1 = first + min(b0 + 1u, nb - 1u) * stride;
    let o2 = first + min(b0 + 2u, nb - 1u) * stride;
    let o3 = first + min(b0 + 3u, nb - 1u) * stride;
    let o4 = first + min(b0 + 4u, nb - 1u) * stride;
    let o5 = first + min(b0 + 5u, nb - 1u) * stride;
    let o6 = first + min(b0 + 6u, nb - 1u) * stride;
    let o7 = first + min(b0 + 7u, nb - 1u) * stride;
    // [gate][unit][rows 0-3, 4-7].
    var r1 = array<vec4<f32>, 2>();
    var r2 = array<vec4<f32>, 2>();
    var z1 = array<vec4<f32>, 2>();
    var z2 = array<vec4<f32>, 2>();
    var n1 = array<vec4<f32>, 2>();
    var n2 = array<vec4<f32>, 2>();
    for (var k = 0u; k < nh; k++) {
        let row = k * 3u * nh;
        var v_lo: vec4<f32>;
        var v_hi: vec4<f32>;
        if (from_rh) {
            v_lo = vec4<f32>(vec4<act_t>(saved[o0 + k], saved[o1 + k], saved[o2 + k], saved[o3 + k]));
            v_hi = vec4<f32>(vec4<act_t>(saved[o4 + k], saved[o5 + k], saved[o6 + k], saved[o7 + k]));
        } else {
            v_lo = vec4<f32>(vec4<act_t>(hs[o0 + k], hs[o1 + k], hs[o2 + k], hs[o3 + k]));
            v_hi = vec4<f32>(vec4<act_t>(hs[o4 + k], hs[o5 + k], hs[o6 + k], hs[o7 + k]));
        }
        if (want_rz) {
            let wr1 = vec4<f32>(w_at(row + j1));
            let wr2 = vec4<f32>(w_at(row + j2));
            let wz1 = vec4<f32>(w_at(row + nh + j1));
            let wz2 = vec4<f32>(w_at(row + nh + j2));
            r1[0] = fma(wr1, v_lo, r1[0]);
            r1[1] = fma(wr1, v_hi, r1[1]);
            r2[0] = fma(wr2, v_lo, r2[0]);
            r2[1] = fma(wr2, v_hi, r2[1]);
            z1[0] = fma(wz1, v_lo, z1[0]);
            z1[1] = fma(wz1, v_hi, z1[1]);
            z2[0] = fma(wz2, v_lo, z2[0]);
            z2[1] = fma(wz2, v_hi, z2[1]);
        }
        if (want_n) {
            let wn1 = vec4<f32>(w_at(row + 2u * nh + j1));
            let wn2 = vec4<f32>(w_at(row + 2u * nh + j2));
            n1[0] = fma(wn1, v_lo, n1[0]);
            n1[1] = fma(wn1, v_hi, n1[1]);
            n2[0] = fma(wn2, v_lo, n2[0]);
            n2[1] = fma(wn2, v_hi, n2[1]);
        }
    }
    return Acc(unpack_acc(r1, r2), unpack_acc(z1, z2), unpack_acc(n1, n2));
}

// The accumulators of units 1 and 2 in Acc's order: u * TB + i.
fn unpack_acc(a: array<vec4<f32>, 2>, b: array<vec4<f32>, 2>) -> array<f32, UT * TB> {
    return array<f32, UT * TB>(
        a[0].x, a[0].y, a[0].z, a[0].w, a[1].x, a[1].y, a[1].z, a[1].w,
        b[0].x, b[0].y, b[0].z, b[0].w, b[1].x, b[1].y, b[1].z, b[1].w,
    );
}
