// strided_copy: dst[r * dst_stride + dst_off + j] = src[r * src_stride + src_off + j]
// for r < rows, j < width. Gathers the last states of both directions into the head's
// [B, dirs·H] input, and scatters the head's gradient back into each direction's dh_n.
// src is act_t and dst out_t (prelude aliases): a copy from f32 to f16 is also the
// refresh of mixed precision's f16 weight copies from the f32 master weights.


@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<act_t>;
@group(0) @binding(2) var<storage, read_write> dst: array<out_t>;

@compute @workgroup_size(WG)
fn strided_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.y * nwg.x * WG + gid.x;
    if (e >= p.rows * p.width) { return; }
    let r = e / p.width;
    let j = e % p.width;
    dst[r * p.dst_stride + p.dst_off + j] = out_t(src[r * p.src_stride + p.src_off + j]);
}
