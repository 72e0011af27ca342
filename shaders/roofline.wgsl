// roofline: what the device can do at all, measured the way our kernels use it, so
// `gru bench --roofline` can state each kernel family's speed as a share of it.
//   fma_peak         register-only FMAs: 8 independent vec4 chains per invocation
//                    (64 FLOPs per iteration, no memory traffic in the loop).
//   load_stream      per-invocation vec4 loads, neighbouring invocations at
//                    neighbouring addresses (coalesced), summed: bytes per second.
//   load_uniform     one vec4 per iteration that every invocation of the workgroup
//                    reads (a broadcast, as the step kernels read states), feeding
//                    16 FMAs: FLOPs per second.
//   shared_memory    vec4 reads from workgroup memory (as the GEMM reads its tiles),
//                    summed: bytes per second.
// Lengths (vec4s) come from the parameters, not arrayLength: buffers may carry slack
// past their values (GpuContext::uniform_windows).
// Every loop stays far below llvmpipe's 65535 iterations per invocation, and every
// result is written so no compiler drops the work.


@group(0) @binding(0) var<uniform> p: LabParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

var<workgroup> tile: array<vec4<f32>, 256>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = src[gid.x % p.n_src].x + f32(gid.x) * 1e-7;
    var a0 = vec4<f32>(x, x + 1.0, x + 2.0, x + 3.0);
    var a1 = a0 + 0.5;
    var a2 = a0 + 1.5;
    var a3 = a0 + 2.5;
    var a4 = a0 - 0.5;
    var a5 = a0 - 1.5;
    var a6 = a0 - 2.5;
    var a7 = a0 * 0.5;
    // Read from the uniform so the multiplier is not a compile-time constant.
    let m = vec4<f32>(p.scale);
    let c = vec4<f32>(1e-3);
    for (var i = 0u; i < p.iters; i++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    dst[gid.x % p.n_dst] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

@compute @workgroup_size(WG)
fn load_stream(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads = nwg.x * WG;
    let n = p.n_src;
    var s = vec4<f32>(0.0);
    var at = gid.x;
    for (var i = 0u; i < p.iters; i++) {
        s += src[at];
        at += threads;
        if (at >= n) { at -= n; }
    }
    dst[gid.x % p.n_dst] = s;
}

@compute @workgroup_size(WG)
fn load_uniform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p.n_src;
    let x = f32(gid.x) * 1e-7;
    var a0 = vec4<f32>(x);
    var a1 = vec4<f32>(x + 1.0);
    var a2 = vec4<f32>(x + 2.0);
    var a3 = vec4<f32>(x + 3.0);
    let w0 = vec4<f32>(p.scale);
    let w1 = w0 * 0.5;
    let w2 = w0 * 0.25;
    let w3 = w0 * 0.125;
    var at = (wg.x * 977u) % n;
    for (var i = 0u; i < p.iters; i++) {
        let v = src[at];
        a0 = fma(v, w0, a0);
        a1 = fma(v, w1, a1);
        a2 = fma(v, w2, a2);
        a3 = fma(v, w3, a3);
        at += 1u;
        if (at >= n) { at = 0u; }
    }
    dst[gid.x % p.n_dst] = a0 + a1 + a2 + a3;
}

@compute @workgroup_size(WG)
fn shared_memory(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = p.n_src;
    for (var e = li; e < 256u; e += WG) {
        tile[e] = src[(gid.x - li + e) % n];
    }
    workgroupBarrier();
    var s = vec4<f32>(0.0);
    var at = li;
    for (var i = 0u; i < p.iters; i++) {
        s += tile[at];
        at = (at + 1u) & 255u;
    }
    dst[gid.x % p.n_dst] = s;
}
