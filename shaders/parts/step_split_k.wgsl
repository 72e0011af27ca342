// GPU builds of the per-step kernels (tile from the prelude: WG units x TB rows per
// workgroup, KS threads per unit lane). Thread lx sums slice k_part = lx % KS of the
// matvec's k loop (every KS-th k, so that the KS threads of a lane read neighbouring
// addresses), for unit lane lx / KS. The slices' sums meet in a fixed tree in workgroup
// memory (deterministic), and thread (lane, k_part) finishes the outputs a of its lane
// with a % KS == k_part, so the step's elementwise tail runs in parallel too. Sums stay in named vec4s: no
// register array is indexed by a variable (FXC on DX12 may refuse or spill those).

const LANES: u32 = WG / UT;
const OUTS: u32 = UT * TB;
const_assert OUTS == 32u && (KS % OUTS == 0u || OUTS % KS == 0u);
var<private> k_part: u32;
var<private> split_lane: u32;
// The upper half of the live slices' sums at each level of the tree, 8 vec4s each.
var<workgroup> split_part: array<vec4<f32>, (KS / 2u) * LANES * 8u>;
// Each gate's totals per lane (the backward state sums use slot 0).
var<workgroup> split_total: array<f32, 3u * LANES * OUTS>;

fn split_init(lx: u32) -> u32 {
    split_lane = lx / KS;
    k_part = lx % KS;
    return split_lane;
}

fn put4(o: u32, q: vec4<f32>) {
    split_total[o] = q.x;
    split_total[o + 1u] = q.y;
    split_total[o + 2u] = q.z;
    split_total[o + 3u] = q.w;
}

// Adds every slice's `v` (this lane's outputs) in a fixed tree and keeps the totals as
// gate `gate`'s, for `total`. Call from uniform control flow (barriers).
fn split_reduce(v: array<f32, OUTS>, gate: u32) -> array<f32, OUTS> {
    var q0 = vec4<f32>(v[0], v[1], v[2], v[3]);
    var q1 = vec4<f32>(v[4], v[5], v[6], v[7]);
    var q2 = vec4<f32>(v[8], v[9], v[10], v[11]);
    var q3 = vec4<f32>(v[12], v[13], v[14], v[15]);
    var q4 = vec4<f32>(v[16], v[17], v[18], v[19]);
    var q5 = vec4<f32>(v[20], v[21], v[22], v[23]);
    var q6 = vec4<f32>(v[24], v[25], v[26], v[27]);
    var q7 = vec4<f32>(v[28], v[29], v[30], v[31]);
    for (var half = KS / 2u; half > 0u; half = half / 2u) {
        // Slices [half, 2 half) hand their sums to slices [0, half).
        if (k_part >= half && k_part < 2u * half) {
            let o = ((k_part - half) * LANES + split_lane) * 8u;
            split_part[o] = q0;
            split_part[o + 1u] = q1;
            split_part[o + 2u] = q2;
            split_part[o + 3u] = q3;
            split_part[o + 4u] = q4;
            split_part[o + 5u] = q5;
            split_part[o + 6u] = q6;
            split_part[o + 7u] = q7;
        }
        workgroupBarrier();
        if (k_part < half) {
            let o = (k_part * LANES + split_lane) * 8u;
            q0 += split_part[o];
            q1 += split_part[o + 1u];
            q2 += split_part[o + 2u];
            q3 += split_part[o + 3u];
            q4 += split_part[o + 4u];
            q5 += split_part[o + 5u];
            q6 += split_part[o + 6u];
            q7 += split_part[o + 7u];
        }
        workgroupBarrier();
    }
    if (k_part == 0u) {
        let o = (gate * LANES + split_lane) * OUTS;
        put4(o, q0);
        put4(o + 4u, q1);
        put4(o + 8u, q2);
        put4(o + 12u, q3);
        put4(o + 16u, q4);
        put4(o + 20u, q5);
        put4(o + 24u, q6);
        put4(o + 28u, q7);
    }
    workgroupBarrier();
    return v;
}

// Output a (unit a / TB, row a % TB) of this lane's gate `gate`, after split_reduce.
fn total(v: array<f32, OUTS>, gate: u32, a: u32) -> f32 {
    return split_total[(gate * LANES + split_lane) * OUTS + a];
}

// Whether this thread finishes output a of its lane.
fn owns(a: u32) -> bool {
    return a % KS == k_part;
}
