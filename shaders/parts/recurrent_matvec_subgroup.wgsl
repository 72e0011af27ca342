// The forward step's recurrent matvec (gru_step_fwd.wgsl) for software adapters with
// subgroups of at least 8 lanes: the same sums in the same k order, but the state
// values, which every lane of a workgroup multiplies, are loaded once per subgroup. For
// a block of 8 k, lane l loads row b0 + i's value at k0 + l; at each k the lanes take
// it from lane k - k0 by shuffle. Per k a lane then loads 1 state value instead of TB (written out for TB = 16, the
// subgroup builds' tile)
// (llvmpipe pays about fifty FMAs per load; `gru bench --roofline`). The caller must be
// in uniform control flow with every lane of its subgroup active (true at the top of
// the step entries).

fn recurrent_matvec(j0: u32, b0: u32, s: u32, from_rh: bool, want_rz: bool, want_n: bool) -> Acc {
    var acc: Acc;
    let nb = dims.batch;
    let nh = dims.hidden;
    let j1 = min(j0, nh - 1u);
    let j2 = min(j0 + WG / UT, nh - 1u);
    let kl = subgroupExclusiveAdd(1u) % 8u;
    // Where row b0 + i's vector starts (hs[s] or slot 3 of saved[s]).
    let stride = select(nh, 4u * nh, from_rh);
    let first = select(at_hs() + s * nb * nh, at_saved() + s * nb * 4u * nh + 3u * nh, from_rh);
    let o0 = first + min(b0 + 0u, nb - 1u) * stride;
    let o1 = first + min(b0 + 1u, nb - 1u) * stride;
    let o2 = first + min(b0 + 2u, nb - 1u) * stride;
    let o3 = first + min(b0 + 3u, nb - 1u) * stride;
    let o4 = first + min(b0 + 4u, nb - 1u) * stride;
    let o5 = first + min(b0 + 5u, nb - 1u) * stride;
    let o6 = first + min(b0 + 6u, nb - 1u) * stride;
    let o7 = first + min(b0 + 7u, nb - 1u) * stride;
    let o8 = first + min(b0 + 8u, nb - 1u) * stride;
    let o9 = first + min(b0 + 9u, nb - 1u) * stride;
    let o10 = first + min(b0 + 10u, nb - 1u) * stride;
    let o11 = first + min(b0 + 11u, nb - 1u) * stride;
    let o12 = first + min(b0 + 12u, nb - 1u) * stride;
    let o13 = first + min(b0 + 13u, nb - 1u) * stride;
    let o14 = first + min(b0 + 14u, nb - 1u) * stride;
    let o15 = first + min(b0 + 15u, nb - 1u) * stride;
    for (var k0 = 0u; k0 < nh; k0 += 8u) {
        let kk = min(k0 + kl, nh - 1u);
        let u0 = f32(select(hs[o0 + kk], saved[o0 + kk], from_rh));
        let u1 = f32(select(hs[o1 + kk], saved[o1 + kk], from_rh));
        let u2 = f32(select(hs[o2 + kk], saved[o2 + kk], from_rh));
        let u3 = f32(select(hs[o3 + kk], saved[o3 + kk], from_rh));
        let u4 = f32(select(hs[o4 + kk], saved[o4 + kk], from_rh));
        let u5 = f32(select(hs[o5 + kk], saved[o5 + kk], from_rh));
        let u6 = f32(select(hs[o6 + kk], saved[o6 + kk], from_rh));
        let u7 = f32(select(hs[o7 + kk], saved[o7 + kk], from_rh));
        let u8 = f32(select(hs[o8 + kk], saved[o8 + kk], from_rh));
        let u9 = f32(select(hs[o9 + kk], saved[o9 + kk], from_rh));
        let u10 = f32(select(hs[o10 + kk], saved[o10 + kk], from_rh));
        let u11 = f32(select(hs[o11 + kk], saved[o11 + kk], from_rh));
        let u12 = f32(select(hs[o12 + kk], saved[o12 + kk], from_rh));
        let u13 = f32(select(hs[o13 + kk], saved[o13 + kk], from_rh));
        let u14 = f32(select(hs[o14 + kk], saved[o14 + kk], from_rh));
        let u15 = f32(select(hs[o15 + kk], saved[o15 + kk], from_rh));
        let jn = min(8u, nh - k0);
        for (var j = 0u; j < jn; j++) {
            let row = (k0 + j) * 3u * nh;
            var v: array<f32, TB>;
            v[0] = subgroupShuffle(u0, j);
            v[1] = subgroupShuffle(u1, j);
            v[2] = subgroupShuffle(u2, j);
            v[3] = subgroupShuffle(u3, j);
            v[4] = subgroupShuffle(u4, j);
            v[5] = subgroupShuffle(u5, j);
            v[6] = subgroupShuffle(u6, j);
            v[7] = subgroupShuffle(u7, j);
            v[8] = subgroupShuffle(u8, j);
            v[9] = subgroupShuffle(u9, j);
            v[10] = subgroupShuffle(u10, j);
            v[11] = subgroupShuffle(u11, j);
            v[12] = subgroupShuffle(u12, j);
            v[13] = subgroupShuffle(u13, j);
            v[14] = subgroupShuffle(u14, j);
            v[15] = subgroupShuffle(u15, j);
            gate_fmas(&acc, v, row, j1, j2, want_rz, want_n);
        }
    }
    return acc;
}
