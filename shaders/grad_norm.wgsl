// Global gradient norm for clipping, computed on the device in a fixed order.
//   sumsq:      norms[index] = sum of grad^2 over one tensor (one workgroup).
//   clip_scale: norms[count] = min(1, clip_norm / (sqrt(total) + 1e-6)) as in PyTorch's
//               clip_grad_norm_, norms[count + 1] = sqrt(total), the norm before clipping.


@group(0) @binding(0) var<uniform> p: TensorParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

var<workgroup> part: array<f32, WG>;

fn sq(i: u32) -> f32 {
    if (i >= p.n) { return 0.0; }
    return grad[i] * grad[i];
}

// Sixteen loads per iteration, written out: llvmpipe caps an invocation at 65535 loop
// iterations in all, so a loop of one load per iteration would stop at 4.2M values
// (64 x 65535) and silently drop the rest of a larger tensor; this reaches 68M.
@compute @workgroup_size(WG)
fn sumsq(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += 16u * WG) {
        s += sq(i) + sq(i + WG) + sq(i + 2u * WG) + sq(i + 3u * WG)
           + sq(i + 4u * WG) + sq(i + 5u * WG) + sq(i + 6u * WG) + sq(i + 7u * WG)
           + sq(i + 8u * WG) + sq(i + 9u * WG) + sq(i + 10u * WG) + sq(i + 11u * WG)
           + sq(i + 12u * WG) + sq(i + 13u * WG) + sq(i + 14u * WG) + sq(i + 15u * WG);
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if (lid == 0u) { norms[p.index] = part[0]; }
}

@compute @workgroup_size(1)
fn clip_scale() {
    var total = 0.0;
    for (var i = 0u; i < p.count; i++) { total += norms[i]; }
    let norm = sqrt(total);
    norms[p.count] = min(1.0, step.clip_norm / (norm + 1e-6));
    norms[p.count + 1u] = norm;
}
