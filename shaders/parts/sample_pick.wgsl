// The draw of one token from a row of `cols` logits, shared by sample.wgsl (one draw per
// dispatch) and generate.wgsl (many): temperature 0 is greedy (argmax); top_k > 0 keeps
// the values >= the k-th largest distinct logit. The draw is a hash of (seed, draw
// index n); src/generate/mod.rs has the same procedure for the CPU reference
// (`Sampling::pick`). `logit(c)` is the including shader's.
//
// The row is cut into BLOCKS contiguous blocks of `chunk` columns; the sums run block by
// block in order, then over the blocks in order (the CPU reference sums in the same
// order), so the draw does not depend on the workgroup size: lane l of the WG lanes
// (WG divides BLOCKS) owns the blocks l·BLOCKS/WG ... Spreading the row over the lanes
// also keeps each invocation's loops short: a single invocation looping over the row
// several times passed llvmpipe's cap of 65535 loop iterations per invocation at about
// 22,000 columns and drew wrong tokens. Call from uniform control flow (barriers); the
// result is lane 0's.

const BLOCKS: u32 = 64u;
var<workgroup> block_sum: array<f32, BLOCKS>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn sample_pick(lid: u32, cols: u32, top_k: u32, temperature: f32, seed_lo: u32, seed_hi: u32, n: u32) -> u32 {
    let chunk = (cols + BLOCKS - 1u) / BLOCKS;
    let per = BLOCKS / WG;
    let c0 = min(lid * per * chunk, cols);
    let c1 = min(c0 + per * chunk, cols);
    // The first maximum: per lane, then across lanes (lowest index wins ties).
    var mx = -3.4e38;
    var best = 0u;
    for (var c = c0; c < c1; c++) {
        let v = logit(c);
        if (v > mx) { mx = v; best = c; }
    }
    let top = workgroup_argmax(lid, mx, best);
    mx = top.value;
    best = top.index;
    var pick = best;
    if (temperature > 0.0) {
        // The k-th largest distinct value, by k passes of "largest below the last".
        var floor_v = -3.4e38;
        if (top_k > 0u && top_k < cols) {
            var thr = 3.4e38;
            for (var k = 0u; k < top_k; k++) {
                var next = -3.4e38;
                for (var c = c0; c < c1; c++) {
                    let v = logit(c);
                    if (v < thr && v > next) { next = v; }
                }
                thr = workgroup_max(lid, next);
            }
            floor_v = thr;
        }
        for (var b = lid * per; b < lid * per + per; b++) {
            let b0 = min(b * chunk, cols);
            let b1 = min(b0 + chunk, cols);
            var s = 0.0;
            for (var c = b0; c < b1; c++) {
                let v = logit(c);
                if (v >= floor_v) { s += exp((v - mx) / temperature); }
            }
            block_sum[b] = s;
        }
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var b = 0u; b < BLOCKS; b++) { total += block_sum[b]; }
            let u = f32(pcg(n ^ pcg(seed_lo ^ pcg(seed_hi))) >> 8u) / 16777216.0;
            let goal = u * total;
            var acc = 0.0;
            var found = false;
            for (var b = 0u; b < BLOCKS && !found; b++) {
                if (acc + block_sum[b] > goal) {
                    var a = acc;
                    let b0 = min(b * chunk, cols);
                    let b1 = min(b0 + chunk, cols);
                    for (var c = b0; c < b1; c++) {
                        let v = logit(c);
                        if (v >= floor_v) {
                            a += exp((v - mx) / temperature);
                            if (a > goal) { pick = c; found = true; break; }
                        }
                    }
                }
                acc += block_sum[b];
            }
        }
        // block_sum is read by lane 0 above; the next draw overwrites it.
        workgroupBarrier();
    }
    return pick;
}
