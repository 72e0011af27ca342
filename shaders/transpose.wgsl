// transpose: out[C, R] = in[R, C]ᵀ. Gives the forward step W_hhᵀ so that threads of
// neighbouring units read neighbouring addresses. A 16 x 16 tile per workgroup of
// 16 x 8 threads, two rows each: 128 invocations, what Vulkan, GLES and WebGPU's
// compatibility mode guarantee.


@group(0) @binding(0) var<uniform> p: TransposeParams;
@group(0) @binding(1) var<storage, read> src: array<wt_t>;       // [R, C]
@group(0) @binding(2) var<storage, read_write> dst: array<wt_t>; // [C, R]

var<workgroup> tile: array<wt_t, 272>; // 16 x 17: the pad avoids bank conflicts

@compute @workgroup_size(16, 8)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x * 16u + lid.x;
    let r0 = wg.y * 16u + lid.y;
    let r1 = r0 + 8u;
    if (r0 < p.rows && c < p.cols) { tile[lid.y * 17u + lid.x] = src[r0 * p.cols + c]; }
    if (r1 < p.rows && c < p.cols) { tile[(lid.y + 8u) * 17u + lid.x] = src[r1 * p.cols + c]; }
    workgroupBarrier();
    let ocol = wg.y * 16u + lid.x; // row of src
    let orow0 = wg.x * 16u + lid.y; // column of src
    let orow1 = orow0 + 8u;
    if (orow0 < p.cols && ocol < p.rows) { dst[orow0 * p.rows + ocol] = tile[lid.x * 17u + lid.y]; }
    if (orow1 < p.cols && ocol < p.rows) { dst[orow1 * p.rows + ocol] = tile[lid.x * 17u + lid.y + 8u]; }
}
