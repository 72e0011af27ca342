// metrics: adds the per-row loss statistics of one batch to the running totals
// metrics = (loss sum, correct, counted, batches), which stay on the device until the
// host asks. One workgroup, fixed summation order: deterministic.


@group(0) @binding(0) var<uniform> p: MetricParams;
@group(0) @binding(1) var<storage, read> stats: array<f32>;          // [rows, 3]
@group(0) @binding(2) var<storage, read_write> metrics: array<f32>;  // [4]

var<workgroup> part: array<vec3<f32>, WG>;

@compute @workgroup_size(WG)
fn metrics_add(@builtin(local_invocation_index) lid: u32) {
    var s = vec3<f32>(0.0);
    for (var r = lid; r < p.rows; r += WG) {
        s += vec3<f32>(stats[r * 3u], stats[r * 3u + 1u], stats[r * 3u + 2u]);
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        metrics[0] += part[0].x;
        metrics[1] += part[0].y;
        metrics[2] += part[0].z;
        metrics[3] += f32(p.batches);
    }
}
