// Losses from logits, one invocation per row (one workgroup per row for
// cross-entropy): the per-row loss and hit go to stats [rows, 3] = (loss, correct,
// counted) and the logit gradient, already divided by the batch's count (inv_count),
// to d_logits. Targets are u32: class ids for cross-entropy
// and f32 bit patterns for binary cross-entropy and MSE; IGNORE (a NaN pattern no
// real target has) marks padding in all three.



@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // [rows, cols]
@group(0) @binding(2) var<storage, read> targets: array<u32>;      // [rows] or [rows, cols]
@group(0) @binding(3) var<storage, read_write> d_logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;  // [rows, 3]

fn row_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}

// Sparse softmax cross-entropy: loss = logsumexp(x) - x[target], accuracy = argmax hit
// (the first maximum). One workgroup per row, its 64 threads striding over the columns
// (coalesced) and reducing in workgroup memory: a vocabulary of any size stays far under
// llvmpipe's cap of 65535 loop iterations per invocation, which a loop per row over
// 30,000 columns, three times, passed (silently dropping the rest of the row).
@compute @workgroup_size(WG)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var mx = -3.4e38;
    var arg = 0u;
    for (var c = lid; c < p.cols; c += WG) {
        let v = logits[base + c];
        if (v > mx) { mx = v; arg = c; }
    }
    let top = workgroup_argmax(lid, mx, arg);
    mx = top.value;
    arg = top.index;
    var sum = 0.0;
    for (var c = lid; c < p.cols; c += WG) { sum += exp(logits[base + c] - mx); }
    let lse = mx + log(workgroup_sum(lid, sum));
    let t = targets[row];
    let valid = t != IGNORE;
    for (var c = lid; c < p.cols; c += WG) {
        let prob = exp(logits[base + c] - lse);
        d_logits[base + c] = select(0.0, (prob - select(0.0, 1.0, c == t)) * p.inv_count, valid);
    }
    if (lid == 0u) {
        if (valid) {
            stats[row * 3u] = lse - logits[base + t];
            stats[row * 3u + 1u] = select(0.0, 1.0, arg == t);
            stats[row * 3u + 2u] = 1.0;
        } else {
            stats[row * 3u] = 0.0;
            stats[row * 3u + 1u] = 0.0;
            stats[row * 3u + 2u] = 0.0;
        }
    }
}

// Binary cross-entropy from one logit per row: max(x, 0) - x y + log(1 + e^-|x|).
@compute @workgroup_size(WG)
fn binary_cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_index(gid, nwg);
    if (row >= p.rows) { return; }
    let x = logits[row];
    if (targets[row] == IGNORE) {
        d_logits[row] = 0.0;
        stats[row * 3u] = 0.0;
        stats[row * 3u + 1u] = 0.0;
        stats[row * 3u + 2u] = 0.0;
        return;
    }
    let y = bitcast<f32>(targets[row]);
    stats[row * 3u] = max(x, 0.0) - x * y + log(1.0 + exp(-abs(x)));
    stats[row * 3u + 1u] = select(0.0, 1.0, (x > 0.0) == (y > 0.5));
    stats[row * 3u + 2u] = 1.0;
    // sigmoid: shaders/parts/activations.wgsl, with no exp of a large positive argument
    // (Metal compiles with fast math, where an overflow to infinity is not defined).
    d_logits[row] = (sigmoid(x) - y) * p.inv_count;
}

// Mean squared error over every output of the row; counted = targets not IGNORE.
@compute @workgroup_size(WG)
fn mean_squared_error(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_index(gid, nwg);
    if (row >= p.rows) { return; }
    var s = 0.0;
    var counted = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let t = targets[row * p.cols + c];
        var e = 0.0;
        if (t != IGNORE) {
            e = logits[row * p.cols + c] - bitcast<f32>(t);
            counted += 1.0;
        }
        s += e * e;
        d_logits[row * p.cols + c] = 2.0 * e * p.inv_count;
    }
    stats[row * 3u] = s;
    stats[row * 3u + 1u] = 0.0;
    stats[row * 3u + 2u] = counted;
}
