// sample: draws the next token from one row of logits, on the device, so generation
// needs no readback per token. temperature = 0 is greedy (argmax); top_k > 0 keeps the
// values >= the k-th largest distinct logit. The draw is a hash of (seed, draw index);
// generate.rs has the same procedure for the CPU reference. The chosen token becomes
// the next step's input (tokens[0]) and is appended to gen = [count, token 0, token 1, ...].


@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> gen: array<u32>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// One workgroup of 64: thread l owns the contiguous block of columns l·chunk.. and the
// sums run block by block in order (the CPU reference sums in the same order). A single
// invocation looping over the row several times passed llvmpipe's cap of 65535 loop
// iterations per invocation at about 22,000 columns and drew wrong tokens.
@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) lid: u32) {
    let chunk = (p.cols + WG - 1u) / WG;
    let c0 = min(lid * chunk, p.cols);
    let c1 = min(c0 + chunk, p.cols);
    // The first maximum: per block, then across blocks (lowest index wins ties).
    var mx = -3.4e38;
    var best = 0u;
    for (var c = c0; c < c1; c++) {
        let v = logits[p.offset + c];
        if (v > mx) { mx = v; best = c; }
    }
    let top = workgroup_argmax(lid, mx, best);
    mx = top.value;
    best = top.index;
    var pick = best;
    if (p.temperature > 0.0) {
        // The k-th largest distinct value, by k passes of "largest below the last".
        var floor_v = -3.4e38;
        if (p.top_k > 0u && p.top_k < p.cols) {
            var thr = 3.4e38;
            for (var k = 0u; k < p.top_k; k++) {
                var next = -3.4e38;
                for (var c = c0; c < c1; c++) {
                    let v = logits[p.offset + c];
                    if (v < thr && v > next) { next = v; }
                }
                thr = workgroup_max(lid, next);
            }
            floor_v = thr;
        }
        var s = 0.0;
        for (var c = c0; c < c1; c++) {
            let v = logits[p.offset + c];
            if (v >= floor_v) { s += exp((v - mx) / p.temperature); }
        }
        red_v[lid] = s;
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var l = 0u; l < WG; l++) { total += red_v[l]; }
            let n = gen[0];
            let u = f32(pcg(n ^ pcg(p.seed_lo ^ pcg(p.seed_hi))) >> 8u) / 16777216.0;
            let goal = u * total;
            var acc = 0.0;
            var found = false;
            for (var l = 0u; l < WG && !found; l++) {
                if (acc + red_v[l] > goal) {
                    var a = acc;
                    let b1 = min(min(l * chunk, p.cols) + chunk, p.cols);
                    for (var c = min(l * chunk, p.cols); c < b1; c++) {
                        let v = logits[p.offset + c];
                        if (v >= floor_v) {
                            a += exp((v - mx) / p.temperature);
                            if (a > goal) { pick = c; found = true; break; }
                        }
                    }
                }
                acc += red_v[l];
            }
        }
    }
    if (lid == 0u) {
        let n = gen[0];
        tokens[0] = pick;
        gen[1u + n] = pick;
        gen[0] = n + 1u;
    }
}
