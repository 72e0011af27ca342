// Global gradient norm for clipping, computed on the device in a fixed order.
//   sumsq:      per workgroup, the sum of grad^2 over its span of SPAN values of one
//               tensor, into norms[index + workgroup] (the host gives each tensor
//               ceil(n / SPAN) workgroups and consecutive slots: p.index is the first).
//   clip_scale: the partial sums (one workgroup, a fixed order), then norms[count] =
//               min(1, clip_norm / (sqrt(total) + 1e-6)) as in PyTorch's clip_grad_norm_
//               (1 with clipping off),
//               norms[count + 1] = sqrt(total), the norm before clipping (count = slots).
// Spreading a tensor over workgroups keeps a large embedding's sum off a single core
// (llvmpipe) or a single compute unit (a GPU), and every invocation's loop short.

@group(0) @binding(0) var<uniform> p: TensorParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

fn sq(i: u32, end: u32) -> f32 {
    if (i >= end) { return 0.0; }
    return grad[i] * grad[i];
}

// Sixteen loads per iteration, written out; 16 iterations cover the span.
@compute @workgroup_size(WG)
fn sumsq(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let part = wg.y * nwg.x + wg.x;
    let start = part * SPAN;
    let end = min(start + SPAN, p.n);
    var s = 0.0;
    for (var i = start + lid; i < end; i += 16u * WG) {
        s += sq(i, end) + sq(i + WG, end) + sq(i + 2u * WG, end) + sq(i + 3u * WG, end)
           + sq(i + 4u * WG, end) + sq(i + 5u * WG, end) + sq(i + 6u * WG, end) + sq(i + 7u * WG, end)
           + sq(i + 8u * WG, end) + sq(i + 9u * WG, end) + sq(i + 10u * WG, end) + sq(i + 11u * WG, end)
           + sq(i + 12u * WG, end) + sq(i + 13u * WG, end) + sq(i + 14u * WG, end) + sq(i + 15u * WG, end);
    }
    // workgroup_sum: the fixed tree order of the WorkgroupReduce prelude.
    let total = workgroup_sum(lid, s);
    if (lid == 0u) { norms[p.index + part] = total; }
}

// One workgroup: each lane sums slots lid, lid + WG, ... in order, then the fixed tree
// of workgroup_sum; a single thread's loop over every slot would be one long dependent
// chain of loads on a GPU.
@compute @workgroup_size(WG)
fn clip_scale(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.count; i += WG) { s += norms[i]; }
    let total = workgroup_sum(lid, s);
    if (lid == 0u) {
        let norm = sqrt(total);
        var scale = 1.0;
        if (step.clip != 0u) { scale = min(1.0, step.clip_norm / (norm + 1e-6)); }
        norms[p.count] = scale;
        norms[p.count + 1u] = norm;
    }
}
