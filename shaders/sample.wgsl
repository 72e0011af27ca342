// sample: draws the next token from one row of logits, on the device, so generation
// needs no readback per token (the draw itself: shaders/parts/sample_pick.wgsl). The
// chosen token becomes the next step's input (tokens[0]) and is appended to
// gen = [count, ring of p.ring tokens]: draw n goes to gen[1 + n % ring], so a request
// of any length needs no more memory than the host reads back between submissions.


@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> gen: array<u32>;

fn logit(c: u32) -> f32 {
    return logits[p.offset + c];
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) lid: u32) {
    // Only lane 0 draws (and writes the count back), so only it reads the count.
    var n = 0u;
    if (lid == 0u) { n = gen[0]; }
    let pick = sample_pick(lid, p.cols, p.top_k, p.temperature, p.seed_lo, p.seed_hi, n);
    if (lid == 0u) {
        tokens[0] = pick;
        gen[1u + n % p.ring] = pick;
        gen[0] = n + 1u;
    }
}
