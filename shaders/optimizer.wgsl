// Parameter updates over a segment of the flat buffers (every tensor in it at once; the
// zero padding between tensors stays zero), with the rules of parts/update_rules.wgsl.
// The gradient is first scaled by the global-norm clip factor (norms[count]) and then
// clamped to +-clip_value when that is > 0 (Keras' order: clipnorm, then clipvalue).
// The `_copy` entries also write each new value to `copy` as out_t: in mixed precision
// (out_t f16) the f16 copy the model's kernels read, refreshed in the same pass.


@group(0) @binding(0) var<uniform> p: TensorParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;
@group(0) @binding(7) var<storage, read_write> copy: array<out_t>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}

fn clipped(i: u32) -> f32 {
    var g = grad[i] * norms[p.count];
    if (step.clip_value > 0.0) { g = clamp(g, -step.clip_value, step.clip_value); }
    return g;
}

// Value i's step; returns the new value.
fn sgd_at(i: u32) -> f32 {
    let r = sgd_rule(clipped(i), param[i], m[i], step);
    param[i] = r.x;
    if (step.momentum > 0.0) { m[i] = r.y; }
    return r.x;
}

fn adam_at(i: u32) -> f32 {
    let r = adam_rule(clipped(i), param[i], m[i], v[i], step);
    param[i] = r.x;
    m[i] = r.y;
    v[i] = r.z;
    return r.x;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    sgd_at(i);
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    adam_at(i);
}

@compute @workgroup_size(WG)
fn sgd_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    copy[i] = out_t(sgd_at(i));
}

@compute @workgroup_size(WG)
fn adam_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) { return; }
    copy[i] = out_t(adam_at(i));
}
