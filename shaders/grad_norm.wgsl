// Global gradient norm for clipping, computed on the device in a fixed order.
//   sumsq:      norms[index] = sum of grad^2 over one tensor (one workgroup).
//   clip_scale: norms[count] = min(1, clip_norm / (sqrt(total) + 1e-6)) as in PyTorch's
//               clip_grad_norm_, norms[count + 1] = sqrt(total), the norm before clipping.

struct TensorParams { n: u32, index: u32, count: u32, _p0: u32 }
struct TrainStep {
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    weight_decay: f32, momentum: f32, bc1: f32, bc2: f32,
    clip_value: f32, clip_norm: f32, seed: u32, decoupled: u32,
}

@group(0) @binding(0) var<uniform> p: TensorParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

var<workgroup> part: array<f32, 64>;

fn sq(i: u32) -> f32 {
    if (i >= p.n) { return 0.0; }
    return grad[i] * grad[i];
}

// Sixteen loads per iteration, written out: llvmpipe caps an invocation at 65535 loop
// iterations in all, so a loop of one load per iteration would stop at 4.2M values
// (64 x 65535) and silently drop the rest of a larger tensor; this reaches 68M.
@compute @workgroup_size(64)
fn sumsq(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += 1024u) {
        s += sq(i) + sq(i + 64u) + sq(i + 128u) + sq(i + 192u)
           + sq(i + 256u) + sq(i + 320u) + sq(i + 384u) + sq(i + 448u)
           + sq(i + 512u) + sq(i + 576u) + sq(i + 640u) + sq(i + 704u)
           + sq(i + 768u) + sq(i + 832u) + sq(i + 896u) + sq(i + 960u);
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w >>= 1u) {
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
