// GPU builds of the per-step kernels: KS threads share each unit lane's outputs, each
// summing its slice of the matvec's k loop (k_part), so a step runs KS times the threads
// (4 x 32 = 128 per workgroup: full waves on 64-wide hardware) with a quarter of the
// serial loop each. The partial sums meet in workgroup memory and slice 0 adds them in
// slice order (deterministic) and finishes the step; the other threads only multiply.
// Software adapters keep the barrier-free builds that suit them.

const KS: u32 = 4u;
var<private> k_part: u32;
var<private> split_lane: u32;
var<workgroup> split_part: array<f32, (WG / UT) * KS * UT * TB>;

// Thread lx: unit lane lx % (WG / UT), k slice lx / (WG / UT).
fn split_init(lx: u32) -> u32 {
    split_lane = lx % (WG / UT);
    k_part = lx / (WG / UT);
    return split_lane;
}

// The sum over the slices of each thread's partial sums, valid in slice 0. Call from
// uniform control flow (barriers).
fn split_reduce(v: array<f32, UT * TB>) -> array<f32, UT * TB> {
    let base = (k_part * (WG / UT) + split_lane) * UT * TB;
    for (var a = 0u; a < UT * TB; a++) { split_part[base + a] = v[a]; }
    workgroupBarrier();
    var out = v;
    if (k_part == 0u) {
        for (var q = 1u; q < KS; q++) {
            let o = (q * (WG / UT) + split_lane) * UT * TB;
            for (var a = 0u; a < UT * TB; a++) { out[a] += split_part[o + a]; }
        }
    }
    workgroupBarrier();
    return out;
}
