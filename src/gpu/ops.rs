//! Recorded dispatches: builders that bind buffers to a kernel once (with the `abi`
//! uniform structs) so each pass only replays a list.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::abi::{ColsumParams, TransposeParams, WG};
pub(crate) use crate::gpu::abi::{GemmParams, ReduceParams, StepDims, StepParams};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, Pipeline, STEP_PARAMS_BYTES};

impl GemmParams {
    /// C [m, n] = op(A) · op(B) over k, with leading dimensions and no offsets.
    pub(crate) fn dims(m: usize, n: usize, k: usize, lda: usize, ldb: usize, ldc: usize) -> Self {
        GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            lda: lda as u32,
            ldb: ldb as u32,
            ldc: ldc as u32,
            ..Default::default()
        }
    }
}

/// One recorded dispatch: pipeline, bind group, optional dynamic offset, grid.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub pipeline: Arc<Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub offset: Option<u32>,
    pub groups: [u32; 3],
}

/// Replays `list` into one compute pass (wgpu orders the dispatches and their barriers).
pub(crate) fn encode(enc: &mut wgpu::CommandEncoder, label: &str, list: &[Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    for d in list {
        pass.set_pipeline(&d.pipeline.pipeline);
        match d.offset {
            Some(o) => pass.set_bind_group(0, &d.bind_group, &[o]),
            None => pass.set_bind_group(0, &d.bind_group, &[]),
        }
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per).max(1)
}

/// Grid for one workgroup per row, 2-D past the per-dimension limit (the kernels
/// flatten `workgroup_id.y * num_workgroups.x + workgroup_id.x`).
pub(crate) fn row_grid(ctx: &GpuContext, rows: usize) -> [u32; 3] {
    let total = (rows as u32).max(1);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    [gx, total.div_ceil(gx), 1]
}

/// Grid for one invocation per element in workgroups of `WG`, 2-D past the per-dimension
/// limit (the kernels flatten `gid.y * num_workgroups.x * WG + gid.x`).
pub(crate) fn flat_grid(ctx: &GpuContext, n: usize) -> [u32; 3] {
    let total = groups(n, WG);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    [gx, total.div_ceil(gx), 1]
}

fn bind(
    ctx: &GpuContext,
    p: &Pipeline,
    label: &str,
    resources: Vec<wgpu::BindingResource<'_>>,
) -> wgpu::BindGroup {
    let entries: Vec<_> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &p.layout,
        entries: &entries,
    })
}

/// A dispatch of `kernel` whose binding 0 is a uniform holding `params` and whose
/// bindings 1.. are `buffers`, in order.
pub(crate) fn param_dispatch(
    ctx: &GpuContext,
    kernel: Kernel,
    constants: &[(&'static str, u32)],
    label: &str,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let pipeline = ctx.pipeline(kernel, constants)?;
    let params = ctx.uniform(label, params)?;
    let mut resources = vec![params.as_entire_binding()];
    resources.extend(buffers.iter().map(|b| b.as_entire_binding()));
    let bind_group = bind(ctx, &pipeline, label, resources);
    Ok(Dispatch {
        pipeline,
        bind_group,
        offset: None,
        groups,
    })
}

/// Options of a GEMM, each a pipeline override.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GemmFlags {
    pub trans_a: bool,
    pub trans_b: bool,
    pub accumulate: bool,
}

/// Rows per GEMM workgroup (`TM` in gemm.wgsl).
const GEMM_ROWS: u32 = 64;

/// Most K rows one GEMM invocation covers: about K/16·17 loop iterations must stay under
/// llvmpipe's 65535 per invocation.
const MAX_K_SLICE: usize = 8192;
/// Fewest K rows worth a slice of their own.
const MIN_K_SLICE: usize = 1024;
/// Workgroups a split GEMM aims for, so wide GPUs have work for every core.
const TARGET_WORKGROUPS: usize = 256;
/// Rows per colsum slice (one loop iteration each).
const COLSUM_ROWS: usize = 4096;

/// (slices, rows per slice) for a GEMM of this shape.
fn split_k(m: usize, n: usize, k: usize) -> (usize, usize) {
    let tiles = m.div_ceil(GEMM_ROWS as usize) * n.div_ceil(64);
    let needed = k.div_ceil(MAX_K_SLICE);
    let wanted = TARGET_WORKGROUPS
        .div_ceil(tiles)
        .min(k.div_ceil(MIN_K_SLICE));
    let slices = needed.max(wanted).max(1);
    let k_slice = k.div_ceil(slices).div_ceil(16) * 16;
    (k.div_ceil(k_slice.max(1)).max(1), k_slice.max(16))
}

/// f32 values of scratch a GEMM of this shape needs (0 when it runs unsplit).
pub(crate) fn gemm_scratch(m: usize, n: usize, k: usize) -> usize {
    match split_k(m, n, k) {
        (1, _) => 0,
        (s, _) => s * m * n,
    }
}

/// f32 values of scratch a column sum over `m` rows of `n` columns needs.
pub(crate) fn colsum_scratch(m: usize, n: usize) -> usize {
    match m.div_ceil(COLSUM_ROWS) {
        0 | 1 => 0,
        s => s * n,
    }
}

/// out[off + m·ld + n] (+)= Σ_z part[z, m, n] (+ bias[n]).
#[allow(clippy::too_many_arguments)]
fn reduce_slices(
    ctx: &GpuContext,
    label: &str,
    r: ReduceParams,
    accumulate: bool,
    bias: Option<&wgpu::Buffer>,
    part: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let total = groups(r.m as usize * r.n as usize, WG);
    let gx = total.min(ctx.limits.max_compute_workgroups_per_dimension);
    let constants = [
        ("ACCUMULATE", accumulate as u32),
        ("BIAS", bias.is_some() as u32),
    ];
    let buffers = [part, bias.unwrap_or(part), out];
    param_dispatch(
        ctx,
        Kernel::ReduceSlices,
        &constants,
        label,
        bytemuck::bytes_of(&r),
        &buffers,
        [gx, total.div_ceil(gx), 1],
    )
}

/// C = op(A) · op(B) (+ bias) (+ C); see gemm.wgsl for the meaning of `p`. Long K runs
/// as split-K slices into `scratch` (at least [`gemm_scratch`] values) plus a reduction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    ctx: &GpuContext,
    label: &str,
    mut p: GemmParams,
    f: GemmFlags,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let (slices, k_slice) = split_k(p.m as usize, p.n as usize, p.k as usize);
    p.k_slice = k_slice as u32;
    let split = slices > 1;
    let constants = [
        ("TRANS_A", f.trans_a as u32),
        ("TRANS_B", f.trans_b as u32),
        ("ACCUMULATE", (f.accumulate && !split) as u32),
        ("BIAS", (bias.is_some() && !split) as u32),
    ];
    let final_c = (p.off_c, p.ldc);
    if split {
        p.off_c = 0;
        p.ldc = p.n;
    }
    let buffers = [a, b, bias.unwrap_or(b), if split { scratch } else { c }];
    let grid = [
        groups(p.n as usize, WG),
        groups(p.m as usize, GEMM_ROWS),
        slices as u32,
    ];
    let mut list = vec![param_dispatch(
        ctx,
        Kernel::Gemm,
        &constants,
        label,
        bytemuck::bytes_of(&p),
        &buffers,
        grid,
    )?];
    if split {
        let r = ReduceParams {
            m: p.m,
            n: p.n,
            slices: slices as u32,
            ld: final_c.1,
            off: final_c.0,
            ..Default::default()
        };
        list.push(reduce_slices(
            ctx,
            label,
            r,
            f.accumulate,
            bias,
            scratch,
            c,
        )?);
    }
    Ok(list)
}

/// out[N] (+)= column sums of x[M, N]; long columns run in slices through `scratch`
/// (at least [`colsum_scratch`] values).
#[allow(clippy::too_many_arguments)]
pub(crate) fn colsum(
    ctx: &GpuContext,
    label: &str,
    m: usize,
    n: usize,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    accumulate: bool,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let slices = m.div_ceil(COLSUM_ROWS).max(1);
    let split = slices > 1;
    let params = ColsumParams {
        m: m as u32,
        n: n as u32,
        rows_per_slice: COLSUM_ROWS as u32,
        _p0: 0,
    };
    let constants = [("ACCUMULATE", (accumulate && !split) as u32)];
    let buffers = [x, if split { scratch } else { out }];
    let grid = [groups(n, WG), slices as u32, 1];
    let mut list = vec![param_dispatch(
        ctx,
        Kernel::Colsum,
        &constants,
        label,
        bytemuck::bytes_of(&params),
        &buffers,
        grid,
    )?];
    if split {
        let r = ReduceParams {
            m: 1,
            n: n as u32,
            slices: slices as u32,
            ld: n as u32,
            off: 0,
            ..Default::default()
        };
        list.push(reduce_slices(
            ctx, label, r, accumulate, None, scratch, out,
        )?);
    }
    Ok(list)
}

/// dst[C, R] = src[R, C]ᵀ.
pub(crate) fn transpose(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = TransposeParams {
        rows: rows as u32,
        cols: cols as u32,
        ..Default::default()
    };
    let grid = [groups(cols, 16), groups(rows, 16), 1];
    param_dispatch(
        ctx,
        Kernel::Transpose,
        &[],
        label,
        bytemuck::bytes_of(&params),
        &[src, dst],
        grid,
    )
}

/// Units per step workgroup (`WG` in the step shaders).
pub(crate) const STEP_UNITS: u32 = crate::gpu::abi::WG;
/// Batch rows per step workgroup (`TB` in the step shaders).
pub(crate) const STEP_ROWS: u32 = crate::gpu::abi::TB;

/// The uniform array of step slots `[T]` at `stride` bytes apart, written once per shape.
pub(crate) fn step_slots(ctx: &GpuContext, t_len: usize) -> Result<(wgpu::Buffer, u32)> {
    let stride =
        (ctx.limits.min_uniform_buffer_offset_alignment as usize).max(STEP_PARAMS_BYTES as usize);
    let mut bytes = vec![0u8; t_len * stride];
    for s in 0..t_len {
        let slot = StepParams {
            step: s as u32,
            time_fwd: s as u32,
            time_rev: (t_len - 1 - s) as u32,
            _p0: 0,
        };
        bytes[s * stride..s * stride + 16].copy_from_slice(bytemuck::bytes_of(&slot));
    }
    Ok((ctx.uniform("step_slots", &bytes)?, stride as u32))
}

/// A step kernel bound to its buffers; `dispatches` expands it into one entry per step.
pub(crate) struct StepKernel {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl StepKernel {
    /// `buffers` are bindings 2.. of the shader, in order.
    pub(crate) fn new(
        ctx: &GpuContext,
        kernel: Kernel,
        constants: &[(&'static str, u32)],
        slots: &wgpu::Buffer,
        dims: &wgpu::Buffer,
        d: &StepDims,
        buffers: &[&wgpu::Buffer],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(kernel, constants)?;
        let mut res = vec![
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: slots,
                offset: 0,
                size: wgpu::BufferSize::new(STEP_PARAMS_BYTES),
            }),
            dims.as_entire_binding(),
        ];
        res.extend(buffers.iter().map(|b| b.as_entire_binding()));
        let bind_group = bind(ctx, &pipeline, kernel.entry(), res);
        // Workgroups of STEP_UNITS units x STEP_ROWS batch rows (WG and TB in the shaders).
        let groups = [
            groups(d.hidden as usize, STEP_UNITS),
            groups(d.batch as usize, STEP_ROWS),
            1,
        ];
        Ok(StepKernel {
            pipeline,
            bind_group,
            groups,
        })
    }

    /// The dispatch for step `s`, reading slot `s` of the step array.
    pub(crate) fn at(&self, s: usize, stride: u32) -> Dispatch {
        Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_group.clone(),
            offset: Some(s as u32 * stride),
            groups: self.groups,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The building-block kernels against plain loops, over awkward shapes.
    use super::*;
    use crate::rng::Rng;

    fn ctx() -> Option<std::sync::Arc<GpuContext>> {
        match GpuContext::new_default() {
            Ok(c) => Some(c),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but no GPU adapter: {e}")
            }
            Err(_) => None,
        }
    }

    fn run(ctx: &GpuContext, list: &[Dispatch]) {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        encode(&mut enc, "test", list);
        ctx.queue.submit([enc.finish()]);
    }

    fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
        let b = ctx.storage("test", data.len()).unwrap();
        ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
        b
    }

    fn read(ctx: &GpuContext, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
        let staging = ctx.staging(len).unwrap();
        ctx.read_f32(&staging, &[(b, 0, len)]).unwrap().concat()
    }

    #[track_caller]
    fn close(got: &[f32], want: &[f64], what: &str) {
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 1e-5 * scale,
                "{what}: index {i}: got {g} want {w}"
            );
        }
    }

    #[test]
    fn gemm_all_transposes_and_offsets() {
        let Some(ctx) = ctx() else { return };
        let mut rng = Rng::new(1);
        // (12, 8, 70_000) runs split-K; (5, 3, 2000) splits for parallelism.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 3, 7),
            (67, 129, 17),
            (64, 64, 64),
            (130, 2, 65),
            (5, 3, 2000),
            (12, 8, 70_000),
        ] {
            for (ta, tb, acc, bias) in [
                (false, false, false, false),
                (true, false, true, false),
                (false, true, false, true),
                (true, true, true, true),
            ] {
                let (off_a, off_b, off_c) = (3, 5, 2);
                let (lda, ldb, ldc) = (
                    if ta { m + 1 } else { k + 2 },
                    if tb { k + 3 } else { n + 1 },
                    n + 4,
                );
                let rows_a = if ta { k } else { m };
                let rows_b = if tb { n } else { k };
                let a = rng.uniform_vec(off_a + rows_a * lda, -1.0, 1.0);
                let b = rng.uniform_vec(off_b + rows_b * ldb, -1.0, 1.0);
                let bv = rng.uniform_vec(n, -1.0, 1.0);
                let c0 = rng.uniform_vec(off_c + m * ldc, -1.0, 1.0);
                let mut want: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0.0f64;
                        for kk in 0..k {
                            let av = if ta {
                                a[off_a + kk * lda + i]
                            } else {
                                a[off_a + i * lda + kk]
                            };
                            let bw = if tb {
                                b[off_b + j * ldb + kk]
                            } else {
                                b[off_b + kk * ldb + j]
                            };
                            s += av as f64 * bw as f64;
                        }
                        if bias {
                            s += bv[j] as f64;
                        }
                        let idx = off_c + i * ldc + j;
                        want[idx] = if acc { want[idx] + s } else { s };
                    }
                }
                let (ab, bb, biasb, cb) = (
                    upload(&ctx, &a),
                    upload(&ctx, &b),
                    upload(&ctx, &bv),
                    upload(&ctx, &c0),
                );
                let p = GemmParams {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    lda: lda as u32,
                    ldb: ldb as u32,
                    ldc: ldc as u32,
                    off_a: off_a as u32,
                    off_b: off_b as u32,
                    off_c: off_c as u32,
                    ..Default::default()
                };
                let f = GemmFlags {
                    trans_a: ta,
                    trans_b: tb,
                    accumulate: acc,
                };
                let scratch = ctx
                    .storage("scratch", gemm_scratch(m, n, k).max(1))
                    .unwrap();
                let bias_buf = bias.then_some(&biasb);
                run(
                    &ctx,
                    &gemm(&ctx, "gemm", p, f, &ab, &bb, bias_buf, &cb, &scratch).unwrap(),
                );
                close(
                    &read(&ctx, &cb, c0.len()),
                    &want,
                    &format!("gemm m{m} n{n} k{k} bias {bias} {f:?}"),
                );
            }
        }
    }

    #[test]
    fn colsum_long_and_narrow() {
        let Some(ctx) = ctx() else { return };
        let mut rng = Rng::new(2);
        for &(m, n) in &[(1, 1), (7, 3), (1000, 65), (70_000, 12)] {
            for acc in [false, true] {
                let x = rng.uniform_vec(m * n, -1.0, 1.0);
                let o = rng.uniform_vec(n, -1.0, 1.0);
                let want: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..m).map(|i| x[i * n + j] as f64).sum::<f64>()
                            + if acc { o[j] as f64 } else { 0.0 }
                    })
                    .collect();
                let (xb, ob) = (upload(&ctx, &x), upload(&ctx, &o));
                let scratch = ctx.storage("scratch", colsum_scratch(m, n).max(1)).unwrap();
                run(
                    &ctx,
                    &colsum(&ctx, "colsum", m, n, &xb, &ob, acc, &scratch).unwrap(),
                );
                let got = read(&ctx, &ob, n);
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    // f32 sums of m terms of size <= 1: error grows like sqrt(m)·eps·|partial sums|.
                    assert!(
                        (*g as f64 - w).abs() <= 1e-4 * (m as f64).sqrt(),
                        "colsum m{m} n{n}: column {j}: got {g} want {w}"
                    );
                }
            }
        }
    }

    /// The tile sizes the host dispatches with are the ones the shaders declare.
    #[test]
    fn host_tile_sizes_match_the_shaders() {
        let konst = |src: &str, name: &str| -> u32 {
            let line = src
                .lines()
                .find(|l| l.starts_with(&format!("const {name}: u32 = ")))
                .unwrap();
            let value = line.split('=').nth(1).unwrap().trim();
            value
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap()
        };
        let gemm = include_str!("../../shaders/gemm.wgsl");
        assert_eq!(konst(gemm, "TM"), GEMM_ROWS);
        assert_eq!(konst(gemm, "TN"), 64);
    }

    #[test]
    fn transpose_odd_shapes() {
        let Some(ctx) = ctx() else { return };
        let mut rng = Rng::new(3);
        for &(r, c) in &[(1, 1), (3, 17), (33, 5), (192, 64)] {
            let x = rng.uniform_vec(r * c, -1.0, 1.0);
            let want: Vec<f64> = (0..c * r).map(|i| x[(i % r) * c + i / r] as f64).collect();
            let (xb, ob) = (upload(&ctx, &x), ctx.storage("t", r * c).unwrap());
            run(
                &ctx,
                &[transpose(&ctx, "transpose", r, c, &xb, &ob).unwrap()],
            );
            close(
                &read(&ctx, &ob, r * c),
                &want,
                &format!("transpose {r}x{c}"),
            );
        }
    }
}
