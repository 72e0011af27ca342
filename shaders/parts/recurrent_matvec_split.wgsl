// The forward step's recurrent matvec in the GPU builds (step_split_k.wgsl): W_hh in its
// own layout [3H, H] (the host binds W_hh to these builds, not W_hhᵀ), thread
// (lane, k_part) summing k = k_part, k_part + KS, ...: the KS threads of a lane read
// neighbouring k of the same rows of W_hh and of the states, each value once per
// workgroup. TB = 16 rows per workgroup, so W_hh is read B / 16 times a step.

// acc[u * TB + i] = Σ_k W_g[j_u, k] v[b0 + i, k] for the gate blocks g asked for, with
// j_u = j0 + u·WG/UT and v = h_prev (hs[s]) or r*h (slot 3 of saved[s]). Units past H
// and rows past B repeat the last one (results unused). The sums are named vec4s (rows
// 0-3, 4-7, 8-11, 12-15 of each unit and gate): no register array is indexed.
const_assert TB == 16u && UT == 2u;

// The state values of four rows (offsets o) at k.
fn v4(o: vec4<u32>, k: u32, from_rh: bool) -> vec4<f32> {
    if (from_rh) {
        return vec4<f32>(vec4<act_t>(saved[o.x + k], saved[o.y + k], saved[o.z + k], saved[o.w + k]));
    }
    return vec4<f32>(vec4<act_t>(hs[o.x + k], hs[o.y + k], hs[o.z + k], hs[o.w + k]));
}

fn pack(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, e: vec4<f32>, f: vec4<f32>, g: vec4<f32>, h: vec4<f32>) -> array<f32, UT * TB> {
    return array<f32, UT * TB>(
        a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, c.x, c.y, c.z, c.w, d.x, d.y, d.z, d.w,
        e.x, e.y, e.z, e.w, f.x, f.y, f.z, f.w, g.x, g.y, g.z, g.w, h.x, h.y, h.z, h.w,
    );
}

fn recurrent_matvec(j0: u32, b0: u32, s: u32, from_rh: bool, want_rz: bool, want_n: bool) -> Acc {
    let nb = dims.batch;
    let nh = dims.hidden;
    let j1 = min(j0, nh - 1u);
    let j2 = min(j0 + WG / UT, nh - 1u);
    // Where row b0 + i's vector starts (hs[s] or slot 3 of saved[s]).
    let stride = select(nh, 4u * nh, from_rh);
    let first = select(at_hs() + s * nb * nh, at_saved() + s * nb * 4u * nh + 3u * nh, from_rh);
    let last = vec4<u32>(nb - 1u);
    let b = vec4<u32>(b0) + vec4<u32>(0u, 1u, 2u, 3u);
    let oa = first + min(b + vec4<u32>(0u), last) * stride;
    let ob = first + min(b + vec4<u32>(4u), last) * stride;
    let oc = first + min(b + vec4<u32>(8u), last) * stride;
    let od = first + min(b + vec4<u32>(12u), last) * stride;
    var r1a = vec4<f32>();
    var r1b = vec4<f32>();
    var r1c = vec4<f32>();
    var r1d = vec4<f32>();
    var r2a = vec4<f32>();
    var r2b = vec4<f32>();
    var r2c = vec4<f32>();
    var r2d = vec4<f32>();
    var z1a = vec4<f32>();
    var z1b = vec4<f32>();
    var z1c = vec4<f32>();
    var z1d = vec4<f32>();
    var z2a = vec4<f32>();
    var z2b = vec4<f32>();
    var z2c = vec4<f32>();
    var z2d = vec4<f32>();
    var n1a = vec4<f32>();
    var n1b = vec4<f32>();
    var n1c = vec4<f32>();
    var n1d = vec4<f32>();
    var n2a = vec4<f32>();
    var n2b = vec4<f32>();
    var n2c = vec4<f32>();
    var n2d = vec4<f32>();
    // Rows of W_hh: unit j of gate g at (g·H + j)·H.
    let wr1 = j1 * nh;
    let wr2 = j2 * nh;
    let wz1 = (nh + j1) * nh;
    let wz2 = (nh + j2) * nh;
    let wn1 = (2u * nh + j1) * nh;
    let wn2 = (2u * nh + j2) * nh;
    for (var k = k_part; k < nh; k += KS) {
        let va = v4(oa, k, from_rh);
        let vb = v4(ob, k, from_rh);
        let vc = v4(oc, k, from_rh);
        let vd = v4(od, k, from_rh);
        if (want_rz) {
            let xr1 = vec4<f32>(w_at(wr1 + k));
            r1a = fma(xr1, va, r1a);
            r1b = fma(xr1, vb, r1b);
            r1c = fma(xr1, vc, r1c);
            r1d = fma(xr1, vd, r1d);
            let xr2 = vec4<f32>(w_at(wr2 + k));
            r2a = fma(xr2, va, r2a);
            r2b = fma(xr2, vb, r2b);
            r2c = fma(xr2, vc, r2c);
            r2d = fma(xr2, vd, r2d);
            let xz1 = vec4<f32>(w_at(wz1 + k));
            z1a = fma(xz1, va, z1a);
            z1b = fma(xz1, vb, z1b);
            z1c = fma(xz1, vc, z1c);
            z1d = fma(xz1, vd, z1d);
            let xz2 = vec4<f32>(w_at(wz2 + k));
            z2a = fma(xz2, va, z2a);
            z2b = fma(xz2, vb, z2b);
            z2c = fma(xz2, vc, z2c);
            z2d = fma(xz2, vd, z2d);
        }
        if (want_n) {
            let xn1 = vec4<f32>(w_at(wn1 + k));
            n1a = fma(xn1, va, n1a);
            n1b = fma(xn1, vb, n1b);
            n1c = fma(xn1, vc, n1c);
            n1d = fma(xn1, vd, n1d);
            let xn2 = vec4<f32>(w_at(wn2 + k));
            n2a = fma(xn2, va, n2a);
            n2b = fma(xn2, vb, n2b);
            n2c = fma(xn2, vc, n2c);
            n2d = fma(xn2, vd, n2d);
        }
    }
    return Acc(pack(r1a, r1b, r1c, r1d, r2a, r2b, r2c, r2d), pack(z1a, z1b, z1c, z1d, z2a, z2b, z2c, z2d), pack(n1a, n1b, n1c, n1d, n2a, n2b, n2c, n2d));
}
