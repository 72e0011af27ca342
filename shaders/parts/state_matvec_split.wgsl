// The backward step's state matvec in the GPU builds (step_split_k.wgsl): W_hhᵀ
// [H, 3H] (the host binds W_hhᵀ to these builds, not W_hh), thread (lane, k_part)
// summing c = c0 + k_part, c0 + k_part + KS, ...: the KS threads of a lane read
// neighbouring c of the same row of W_hhᵀ and of the gate gradients.

// acc[u * TB + i] = Σ_{c in [c0, c1)} dGh[s, b0 + i, c] · W_hh[c, k_u] with
// k_u = k0 + u·WG/UT. Units past H and rows past B repeat the last one (unused). Sums
// in named vec4s (rows 0-3, 4-7, 8-11, 12-15 of each unit): no register array is
// indexed.
const_assert TB == 16u && UT == 2u;

fn state_matvec(k0: u32, b0: u32, s: u32, c0: u32, c1: u32) -> array<f32, UT * TB> {
    let nb = dims.batch;
    let nh = dims.hidden;
    // Rows of W_hhᵀ of units k1, k2.
    let w1 = min(k0, nh - 1u) * 3u * nh;
    let w2 = min(k0 + WG / UT, nh - 1u) * 3u * nh;
    // Where row b0 + i's gate gradients of step s start.
    let st = 3u * nh;
    let first = at_d_gh() + s * nb * st;
    let last = vec4<u32>(nb - 1u);
    let b = vec4<u32>(b0) + vec4<u32>(0u, 1u, 2u, 3u);
    let oa = first + min(b + vec4<u32>(0u), last) * st;
    let ob = first + min(b + vec4<u32>(4u), last) * st;
    let oc = first + min(b + vec4<u32>(8u), last) * st;
    let od = first + min(b + vec4<u32>(12u), last) * st;
    var a1a = vec4<f32>();
    var a1b = vec4<f32>();
    var a1c = vec4<f32>();
    var a1d = vec4<f32>();
    var a2a = vec4<f32>();
    var a2b = vec4<f32>();
    var a2c = vec4<f32>();
    var a2d = vec4<f32>();
    for (var c = c0 + k_part; c < c1; c += KS) {
        let x1 = vec4<f32>(whh_at(w1 + c));
        let x2 = vec4<f32>(whh_at(w2 + c));
        let ga = vec4<f32>(d_gh[oa.x + c], d_gh[oa.y + c], d_gh[oa.z + c], d_gh[oa.w + c]);
        let gb = vec4<f32>(d_gh[ob.x + c], d_gh[ob.y + c], d_gh[ob.z + c], d_gh[ob.w + c]);
        let gc = vec4<f32>(d_gh[oc.x + c], d_gh[oc.y + c], d_gh[oc.z + c], d_gh[oc.w + c]);
        let gd = vec4<f32>(d_gh[od.x + c], d_gh[od.y + c], d_gh[od.z + c], d_gh[od.w + c]);
        a1a = fma(ga, x1, a1a);
        a1b = fma(gb, x1, a1b);
        a1c = fma(gc, x1, a1c);
        a1d = fma(gd, x1, a1d);
        a2a = fma(ga, x2, a2a);
        a2b = fma(gb, x2, a2b);
        a2c = fma(gc, x2, a2c);
        a2d = fma(gd, x2, a2d);
    }
    return array<f32, UT * TB>(
        a1a.x, a1a.y, a1a.z, a1a.w, a1b.x, a1b.y, a1b.z, a1b.w,
        a1c.x, a1c.y, a1c.z, a1c.w, a1d.x, a1d.y, a1d.z, a1d.w,
        a2a.x, a2a.y, a2a.z, a2a.w, a2b.x, a2b.y, a2b.z, a2b.w,
        a2c.x, a2c.y, a2c.z, a2c.w, a2d.x, a2d.y, a2d.z, a2d.w,
    );
}
