// Parameter updates over a segment of the flat buffers (every tensor in it at once; the
// zero padding between tensors stays zero), with the rules of parts/update_rules.wgsl.
// The gradient is first scaled by the global-norm clip factor (norms[count]) and then
// clamped to +-clip_value when that is > 0 (Keras' order: clipnorm, then clipvalue).


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
    let r = sgd_rule(clipped(i), param[i], m[i], step);
    param[i] = r.x;
    if (step.momentum > 0.0) { m[i] = r.y; }
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    let r = adam_rule(clipped(i), param[i], m[i], v[i], step);
    param[i] = r.x;
    m[i] = r.y;
    v[i] = r.z;
}
