// Parameter updates, one dispatch per tensor, PyTorch semantics. The gradient is first
// scaled by the global-norm clip factor (norms[count]) and then clamped to
// +-clip_value when that is > 0 (Keras' order: clipnorm, then clipvalue).
//   sgd:  g += wd p; m = momentum m + g; p -= lr m           (torch.optim.SGD)
//   adam: Adam (L2 weight decay added to g) or, with `decoupled`, AdamW (p *= 1 - lr wd)


@group(0) @binding(0) var<uniform> p: TensorParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}

fn clipped(i: u32) -> f32 {
    var g = grad[i] * norms[p.count];
    if (step.clip_value > 0.0) { g = clamp(g, -step.clip_value, step.clip_value); }
    return g;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    let g = clipped(i) + step.weight_decay * param[i];
    var d = g;
    if (step.momentum > 0.0) {
        d = step.momentum * m[i] + g;
        m[i] = d;
    }
    param[i] = param[i] - step.lr * d;
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    var g = clipped(i);
    var w = param[i];
    if (step.decoupled != 0u) {
        w = w * (1.0 - step.lr * step.weight_decay);
    } else {
        g = g + step.weight_decay * w;
    }
    let mi = step.beta1 * m[i] + (1.0 - step.beta1) * g;
    let vi = step.beta2 * v[i] + (1.0 - step.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = w - step.lr * (mi / step.bc1) / (sqrt(vi / step.bc2) + step.eps);
}
