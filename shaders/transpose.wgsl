// transpose: out[C, R] = in[R, C]ᵀ. Gives the forward step W_hhᵀ so that threads of
// neighbouring units read neighbouring addresses.


@group(0) @binding(0) var<uniform> p: TransposeParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;       // [R, C]
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // [C, R]

var<workgroup> tile: array<f32, 272>; // 16 x 17: the pad avoids bank conflicts

@compute @workgroup_size(16, 16)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.y * 16u + lid.y;
    let c = wg.x * 16u + lid.x;
    if (r < p.rows && c < p.cols) { tile[lid.y * 17u + lid.x] = src[r * p.cols + c]; }
    workgroupBarrier();
    let orow = wg.x * 16u + lid.y; // column of src
    let ocol = wg.y * 16u + lid.x; // row of src
    if (orow < p.cols && ocol < p.rows) { dst[orow * p.rows + ocol] = tile[lid.x * 17u + lid.y]; }
}
