// The embedding table's optimiser step, exact but lazy. A batch touches few of a large
// vocabulary's rows, yet dense Adam (PyTorch's and Keras' default) moves every row every
// step: momentum keeps going where the gradient is zero. Here a row only moves when a
// batch holds it; first it replays the zero-gradient steps it sat out, through the same
// rules (parts/update_rules.wgsl) with each step's hyperparameters (`history`, a ring of
// the last RING steps' TrainStep), so it reaches what the dense update would have left.
// The host brings every row up to date every RING steps and before anything reads the
// table (evaluation, prediction, generation, a readback).
//
//   rows_zero:   grad[r] = 0 for the rows listed (the last pass's and this one's): the
//                gradient table is zero outside the rows a pass holds, as dense.
//   catch_up:    the listed rows replay the steps after last[r] up to step.index - 1
//                (before the forward); the FLUSH build: every row, up to step.index.
//   mark:        last[r] = step.index - 1 for the listed rows; FLUSH: every row,
//                step.index.
//   rows_sumsq:  the listed rows' share of the global gradient norm, in spans of SPAN
//                values in list order (norms[first + w]; workgroup 0 zeroes the
//                table's unused slots up to `slots`).
//   rows_update: step.index on the listed rows with their gradient (clip factor
//                norms[count], clip_value), and last[r] = step.index.
// rows = [D | rows (ascending)]. One invocation per (listed row, value), in a grid the
// host writes with the list (indirect dispatch).

@group(0) @binding(0) var<uniform> p: EmbedUpdateParams;
@group(0) @binding(1) var<uniform> step: TrainStep;
@group(0) @binding(2) var<uniform> history: array<TrainStep, RING>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> norms: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> table: array<f32>;
@group(0) @binding(7) var<storage, read_write> m: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;
@group(0) @binding(9) var<storage, read_write> last: array<u32>;

// 1: every row of the table, up to step.index (a flush).
override FLUSH: u32 = 0u;
// 0: SGD, 1: Adam / AdamW.
override ADAM: u32 = 1u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}

// Values the dispatch covers, and where value e of the list lies in the table.
fn listed() -> u32 {
    if (FLUSH != 0u) { return p.vocab * p.dim; }
    return rows[0] * p.dim;
}

fn row_of(e: u32) -> u32 {
    if (FLUSH != 0u) { return e / p.dim; }
    return rows[1u + e / p.dim];
}

fn step_value(at: u32, g: f32, s: TrainStep) {
    if (ADAM != 0u) {
        let r = adam_rule(g, table[at], m[at], v[at], s);
        table[at] = r.x;
        m[at] = r.y;
        v[at] = r.z;
    } else {
        let r = sgd_rule(g, table[at], m[at], s);
        table[at] = r.x;
        if (s.momentum > 0.0) { m[at] = r.y; }
    }
}

@compute @workgroup_size(WG)
fn rows_zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= listed()) { return; }
    grad[row_of(e) * p.dim + e % p.dim] = 0.0;
}

@compute @workgroup_size(WG)
fn catch_up(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= listed()) { return; }
    let row = row_of(e);
    let at = row * p.dim + e % p.dim;
    let since = last[row];
    // Wrapping u32 arithmetic: the host keeps every lag within RING.
    let lag = min(step.index - 1u + FLUSH - since, RING);
    if (lag == 0u) { return; }
    var w = table[at];
    var mi = m[at];
    var vi = v[at];
    for (var k = 1u; k <= lag; k++) {
        let s = history[(since + k) % RING];
        if (ADAM != 0u) {
            let r = adam_rule(0.0, w, mi, vi, s);
            w = r.x;
            mi = r.y;
            vi = r.z;
        } else {
            let r = sgd_rule(0.0, w, mi, s);
            w = r.x;
            if (s.momentum > 0.0) { mi = r.y; }
        }
    }
    table[at] = w;
    m[at] = mi;
    v[at] = vi;
}

@compute @workgroup_size(WG)
fn mark(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat(gid, nwg);
    var n = rows[0];
    if (FLUSH != 0u) { n = p.vocab; }
    if (k >= n) { return; }
    var row = k;
    if (FLUSH == 0u) { row = rows[1u + k]; }
    last[row] = step.index - 1u + FLUSH;
}

@compute @workgroup_size(WG)
fn rows_sumsq(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let part = wg.y * nwg.x + wg.x;
    let n = listed();
    let start = part * SPAN;
    let end = min(start + SPAN, n);
    var s = 0.0;
    for (var e = start + lid; e < end; e += WG) {
        let g = grad[row_of(e) * p.dim + e % p.dim];
        s += g * g;
    }
    // workgroup_sum: the fixed tree order of the WorkgroupReduce prelude.
    let total = workgroup_sum(lid, s);
    if (lid == 0u) { norms[p.first + part] = total; }
    if (part == 0u) {
        // Slots this step's list does not reach may hold an earlier step's sums.
        for (var k = max((n + SPAN - 1u) / SPAN, 1u) + lid; k < p.slots; k += WG) {
            norms[p.first + k] = 0.0;
        }
    }
}

@compute @workgroup_size(WG)
fn rows_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= listed()) { return; }
    let row = row_of(e);
    let j = e % p.dim;
    let at = row * p.dim + j;
    var g = grad[at] * norms[p.count];
    if (step.clip_value > 0.0) { g = clamp(g, -step.clip_value, step.clip_value); }
    step_value(at, g, step);
    if (j == 0u) { last[row] = step.index; }
}
