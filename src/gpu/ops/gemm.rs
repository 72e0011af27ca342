//! GEMM: C = op(A) · op(B) (+ bias) (+ C), split-K for long K (gemm.wgsl).

use crate::error::Result;
pub(crate) use crate::gpu::abi::GemmParams;
use crate::gpu::abi::{ReduceParams, WG};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{groups, param_dispatch, Dispatch};
use crate::gpu::ops::reduce::reduce_slices;

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

/// Rows per lane group and columns per lane of `gemm_sg` (`SM`, `SC` in
/// gemm_subgroup.wgsl).
const SUBGROUP_TILE: (u32, u32) = (16, 2);

/// (rows, columns) of a `gemm_sg` workgroup for `n` columns: the narrowest of 16, 32,
/// 64, 128 columns that holds them (so narrow products keep every lane busy), at least
/// SC lanes' worth of the largest subgroup, and the rows the other lanes then cover.
fn subgroup_tile(ctx: &GpuContext, n: u32) -> (u32, u32) {
    let (sm, sc) = SUBGROUP_TILE;
    let least = (sc * ctx.adapter_info().subgroup_max_size).max(16);
    // `subgroups_of_8` keeps the largest subgroup at 64 lanes, so `least` is at most 128.
    let cols = n
        .next_power_of_two()
        .clamp(16, 128)
        .max(least.next_power_of_two());
    let rows = (WG * sc / cols).max(1) * sm;
    (rows, cols)
}

/// The GEMM kernel for this device: shared-memory tiles with 8 x 8 register blocks on a
/// GPU; on a software adapter with subgroups of 8 or more lanes, the subgroup kernel,
/// which loads each value once per subgroup instead of staging tiles in workgroup
/// memory (every load costs llvmpipe about fifty FMAs; `gru bench --roofline`).
pub(crate) fn variant(ctx: &GpuContext) -> Kernel {
    if ctx.subgroup_builds() {
        Kernel::GemmSg
    } else {
        Kernel::Gemm
    }
}

/// C = op(A) · op(B) (+ bias) (+ C); see gemm.wgsl for the meaning of `p`. Long K runs
/// as split-K slices into `scratch` (at least [`gemm_scratch`] values) plus a reduction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    ctx: &GpuContext,
    label: &str,
    p: GemmParams,
    f: GemmFlags,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    gemm_as(ctx, variant(ctx), label, p, f, [a, b, c, scratch], bias)
}

/// [`gemm`] with the kernel chosen by the caller (the tests run every variant the
/// device can).
fn gemm_as(
    ctx: &GpuContext,
    kernel: Kernel,
    label: &str,
    mut p: GemmParams,
    f: GemmFlags,
    [a, b, c, scratch]: [&wgpu::Buffer; 4],
    bias: Option<&wgpu::Buffer>,
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
    let (rows, cols) = match kernel {
        Kernel::GemmSg => subgroup_tile(ctx, p.n),
        _ => (GEMM_ROWS, 64),
    };
    p.tile_n = cols;
    let grid = [
        groups(p.n as usize, cols),
        groups(p.m as usize, rows),
        slices as u32,
    ];
    let mut list = vec![param_dispatch(
        ctx,
        kernel,
        &constants,
        label,
        bytemuck::bytes_of(&p),
        &buffers,
        grid,
    )?];
    list[0].flops = 2 * p.m as u64 * p.n as u64 * p.k as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;
    use crate::rng::Rng;

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
                let mut kernels = vec![Kernel::Gemm];
                if ctx.subgroups_of_8() {
                    kernels.push(Kernel::GemmSg);
                }
                for kernel in kernels {
                    ctx.queue.write_buffer(&cb, 0, bytemuck::cast_slice(&c0));
                    let bufs = [&ab, &bb, &cb, &scratch];
                    let list = gemm_as(&ctx, kernel, "gemm", p, f, bufs, bias_buf).unwrap();
                    run(&ctx, &list);
                    close(
                        &read(&ctx, &cb, c0.len()),
                        &want,
                        &format!("{kernel:?} m{m} n{n} k{k} bias {bias} {f:?}"),
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
        let gemm = include_str!("../../../shaders/gemm.wgsl");
        assert_eq!(konst(gemm, "TM"), GEMM_ROWS);
        assert_eq!(konst(gemm, "TN"), 64);
        let sg = include_str!("../../../shaders/gemm_subgroup.wgsl");
        assert_eq!(konst(sg, "SM"), SUBGROUP_TILE.0);
        assert_eq!(konst(sg, "SC"), SUBGROUP_TILE.1);
    }
}
