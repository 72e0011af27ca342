// sample: draws the next token from one row of logits, on the device, so generation
// needs no readback per token. temperature = 0 is greedy (argmax); top_k > 0 keeps the
// values >= the k-th largest distinct logit. The draw is a hash of (seed, draw index);
// generate.rs has the same procedure for the CPU reference. The chosen token becomes
// the next step's input (tokens[0]) and is appended to gen = [count, token 0, token 1, ...].

struct SampleParams {
    cols: u32, top_k: u32, temperature: f32, offset: u32,
    seed_lo: u32, seed_hi: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> gen: array<u32>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(1)
fn sample() {
    let n = gen[0];
    var best = 0u;
    var mx = logits[p.offset];
    for (var c = 1u; c < p.cols; c++) {
        let v = logits[p.offset + c];
        if (v > mx) { mx = v; best = c; }
    }
    var pick = best;
    if (p.temperature > 0.0) {
        // The k-th largest distinct value, by k passes of "largest below the last".
        var floor_v = -3.4e38;
        if (p.top_k > 0u && p.top_k < p.cols) {
            var thr = 3.4e38;
            for (var k = 0u; k < p.top_k; k++) {
                var next = -3.4e38;
                for (var c = 0u; c < p.cols; c++) {
                    let v = logits[p.offset + c];
                    if (v < thr && v > next) { next = v; }
                }
                thr = next;
            }
            floor_v = thr;
        }
        var total = 0.0;
        for (var c = 0u; c < p.cols; c++) {
            let v = logits[p.offset + c];
            if (v >= floor_v) { total += exp((v - mx) / p.temperature); }
        }
        let u = f32(pcg(n ^ pcg(p.seed_lo ^ pcg(p.seed_hi))) >> 8u) / 16777216.0;
        let goal = u * total;
        var acc = 0.0;
        pick = best;
        for (var c = 0u; c < p.cols; c++) {
            let v = logits[p.offset + c];
            if (v >= floor_v) {
                acc += exp((v - mx) / p.temperature);
                if (acc > goal) { pick = c; break; }
            }
        }
    }
    tokens[0] = pick;
    gen[1u + n] = pick;
    gen[0] = n + 1u;
}
