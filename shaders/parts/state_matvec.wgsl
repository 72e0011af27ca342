// The backward step's state matvec (gru_step_bwd.wgsl), plain: every lane loads the
// gate gradients it multiplies (the portable builds: GPUs' sequence entries at
// H <= 64; past it GPUs run state_matvec_split.wgsl).

// acc[u * TB + i] = Σ_{c in [c0, c1)} dGh[s, b0 + i, c] · W_hh[c, k_u], the whole range
// in one thread, with k_u = k0 + u·WG/UT. Units past H and rows
// past B repeat the last one (unused), so the loop has no branch. Written out for
// UT = 2 and TB = 8 in vec4 accumulators, so that no register array depends on the
// driver unrolling a loop (FXC on DX12 does not).
const_assert TB == 8u && UT == 2u;

fn state_matvec(k0: u32, b0: u32, s: u32, c0: u32, c1: u32) -> array<f32, UT * TB> {
    let nb = dims.batch;
    let nh = dims.hidden;
    let k1 = min(k0, nh - 1u);
    let k2 = min(k0 + WG / UT, nh - 1u);
    // Where row b0 + i's gate gradients of step s start.
    let st = 3u * nh;
    let first = at_d_gh();
    let o0 = first + (s * nb + min(b0, nb - 1u)) * st;
    let o1 = first + (s * nb + min(b0 + 1u, nb - 1u)) * st;
    let o2 = first + (s * nb + min(b0 + 2u, nb - 1u)) * st;
    let o3 = first + (s * nb + min(b0 + 3u, nb - 1u)) * st;
    let o4 = first + (s * nb + min(b0 + 4u, nb - 1u)) * st;
    let o5 = first + (s * nb + min(b0 + 5u, nb - 1u)) * st;
    let o6 = first + (s * nb + min(b0 + 6u, nb - 1u)) * st;
    let o7 = first + (s * nb + min(b0 + 7u, nb - 1u)) * st;
    var a1_lo = vec4<f32>();
    var a1_hi = vec4<f32>();
    var a2_lo = vec4<f32>();
    var a2_hi = vec4<f32>();
    for (var c = c0; c < c1; c++) {
        let w1 = vec4<f32>(whh_at(c * nh + k1));
        let w2 = vec4<f32>(whh_at(c * nh + k2));
        let g_lo = vec4<f32>(d_gh[o0 + c], d_gh[o1 + c], d_gh[o2 + c], d_gh[o3 + c]);
        let g_hi = vec4<f32>(d_gh[o4 + c], d_gh[o5 + c], d_gh[o6 + c], d_gh[o7 + c]);
        a1_lo = fma(g_lo, w1, a1_lo);
        a1_hi = fma(g_hi, w1, a1_hi);
        a2_lo = fma(g_lo, w2, a2_lo);
        a2_hi = fma(g_hi, w2, a2_hi);
    }
    return array<f32, UT * TB>(
        a1_lo.x, a1_lo.y, a1_lo.z, a1_lo.w, a1_hi.x, a1_hi.y, a1_hi.z, a1_hi.w,
        a2_lo.x, a2_lo.y, a2_lo.z, a2_lo.w, a2_hi.x, a2_hi.y, a2_hi.z, a2_hi.w,
    );
}
