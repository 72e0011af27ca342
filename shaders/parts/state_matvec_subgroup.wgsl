// The backward step's state matvec (gru_step_bwd.wgsl) for software adapters with
// subgroups of at least 8 lanes: the same sums in the same c order, but the gate
// gradients, which every lane of a workgroup multiplies, are loaded once per subgroup.
// For a block of 8 c, lane l loads row b0 + i's dGh at c0 + l; at each c the lanes take
// it from lane c - c0 by shuffle. Per c a lane then loads 1 gradient instead of TB (written out for TB = 16, the
// subgroup builds' tile). The
// caller must be in uniform control flow with every lane of its subgroup active.

fn state_matvec(k0: u32, b0: u32, s: u32, c0: u32, c1: u32) -> array<f32, UT * TB> {
    var acc: array<f32, UT * TB>;
    let nb = dims.batch;
    let nh = dims.hidden;
    let k1 = min(k0, nh - 1u);
    let k2 = min(k0 + WG / UT, nh - 1u);
    let cl = subgroupExclusiveAdd(1u) % 8u;
    let first = at_d_gh();
    let o0 = first + (s * nb + min(b0 + 0u, nb - 1u)) * 3u * nh;
    let o1 = first + (s * nb + min(b0 + 1u, nb - 1u)) * 3u * nh;
    let o2 = first + (s * nb + min(b0 + 2u, nb - 1u)) * 3u * nh;
    let o3 = first + (s * nb + min(b0 + 3u, nb - 1u)) * 3u * nh;
    let o4 = first + (s * nb + min(b0 + 4u, nb - 1u)) * 3u * nh;
    let o5 = first + (s * nb + min(b0 + 5u, nb - 1u)) * 3u * nh;
    let o6 = first + (s * nb + min(b0 + 6u, nb - 1u)) * 3u * nh;
    let o7 = first + (s * nb + min(b0 + 7u, nb - 1u)) * 3u * nh;
    let o8 = first + (s * nb + min(b0 + 8u, nb - 1u)) * 3u * nh;
    let o9 = first + (s * nb + min(b0 + 9u, nb - 1u)) * 3u * nh;
    let o10 = first + (s * nb + min(b0 + 10u, nb - 1u)) * 3u * nh;
    let o11 = first + (s * nb + min(b0 + 11u, nb - 1u)) * 3u * nh;
    let o12 = first + (s * nb + min(b0 + 12u, nb - 1u)) * 3u * nh;
    let o13 = first + (s * nb + min(b0 + 13u, nb - 1u)) * 3u * nh;
    let o14 = first + (s * nb + min(b0 + 14u, nb - 1u)) * 3u * nh;
    let o15 = first + (s * nb + min(b0 + 15u, nb - 1u)) * 3u * nh;
    for (var cb = c0; cb < c1; cb += 8u) {
        let cc = min(cb + cl, c1 - 1u);
        let u0 = d_gh[o0 + cc];
        let u1 = d_gh[o1 + cc];
        let u2 = d_gh[o2 + cc];
        let u3 = d_gh[o3 + cc];
        let u4 = d_gh[o4 + cc];
        let u5 = d_gh[o5 + cc];
        let u6 = d_gh[o6 + cc];
        let u7 = d_gh[o7 + cc];
        let u8 = d_gh[o8 + cc];
        let u9 = d_gh[o9 + cc];
        let u10 = d_gh[o10 + cc];
        let u11 = d_gh[o11 + cc];
        let u12 = d_gh[o12 + cc];
        let u13 = d_gh[o13 + cc];
        let u14 = d_gh[o14 + cc];
        let u15 = d_gh[o15 + cc];
        let jn = min(8u, c1 - cb);
        for (var j = 0u; j < jn; j++) {
            let c = cb + j;
            let w1 = whh_at(c * nh + k1);
            let w2 = whh_at(c * nh + k2);
            var g: array<f32, TB>;
            g[0] = subgroupShuffle(u0, j);
            g[1] = subgroupShuffle(u1, j);
            g[2] = subgroupShuffle(u2, j);
            g[3] = subgroupShuffle(u3, j);
            g[4] = subgroupShuffle(u4, j);
            g[5] = subgroupShuffle(u5, j);
            g[6] = subgroupShuffle(u6, j);
            g[7] = subgroupShuffle(u7, j);
            g[8] = subgroupShuffle(u8, j);
            g[9] = subgroupShuffle(u9, j);
            g[10] = subgroupShuffle(u10, j);
            g[11] = subgroupShuffle(u11, j);
            g[12] = subgroupShuffle(u12, j);
            g[13] = subgroupShuffle(u13, j);
            g[14] = subgroupShuffle(u14, j);
            g[15] = subgroupShuffle(u15, j);
            for (var i = 0u; i < TB; i++) {
                acc[i] = fma(g[i], w1, acc[i]);
                acc[TB + i] = fma(g[i], w2, acc[TB + i]);
            }
        }
    }
    return acc;
}
