// The k loop of a step kernel's matvec is not split: one thread per unit lane finishes
// every output of its lane (every build but the GPU split builds, step_split_k.wgsl).

const KS: u32 = 1u;
var<private> k_part: u32;

fn split_init(lx: u32) -> u32 {
    k_part = 0u;
    return lx;
}

fn split_reduce(v: array<f32, UT * TB>, gate: u32) -> array<f32, UT * TB> {
    return v;
}

fn total(v: array<f32, UT * TB>, gate: u32, a: u32) -> f32 {
    return v[a];
}

fn owns(a: u32) -> bool {
    return true;
}
