// dropout: dst[i] = src[i] * keep(i) / (1 - p). The mask is a hash of (step seed, site,
// i), so backward re-derives it instead of storing it (the same kernel maps the output
// gradient to the input gradient) and the CPU reference draws the same mask.
// threshold = 0 and scale = 1 make it a copy (evaluation). A batch chunk draws the mask
// of its values' places in the whole batch (span, stride, offset), so chunking does not
// change it.


@group(0) @binding(0) var<uniform> p: DropoutSite;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<storage, read> src: array<act_t>;
@group(0) @binding(3) var<storage, read_write> dst: array<out_t>; // src and dst: f16 activations in mixed precision

// PCG-style integer hash; rng.rs has the same function for the CPU reference.
fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * WG + gid.x;
    if (i >= p.n) { return; }
    let g = (i / p.span) * p.stride + p.offset + i % p.span;
    let h = pcg(g ^ pcg(step.seed ^ pcg(p.site)));
    dst[i] = out_t(select(0.0, f32(src[i]) * p.scale, h >= p.threshold));
}
