//! GEMM: C = op(A) · op(B) (+ bias) (+ C), split-K for long K (gemm.wgsl).

use crate::error::Result;
pub(crate) use crate::gpu::abi::GemmParams;
use crate::gpu::abi::WG;
use crate::gpu::bind::Bind;
use crate::gpu::context::{GpuContext, UNIFORM_WINDOW};
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{bind, groups, param_dispatch_as, Dispatch, Traffic};
use crate::gpu::ops::reduce::{reduce_slices_as, Slices};

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

/// Options of a GEMM: pipeline overrides, and the storage types of A (`act`), B and
/// the bias (`wt`) and C (`out`; split-K slices stay f32 and the reduction rounds).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GemmFlags {
    pub trans_a: bool,
    pub trans_b: bool,
    pub accumulate: bool,
    pub elems: Elems,
}

/// Rows per GEMM workgroup (`TM` in gemm.wgsl).
const GEMM_ROWS: u32 = 64;

/// Most K rows one GEMM invocation covers: about K/16·17 loop iterations must stay under
/// llvmpipe's 65535 per invocation.
const MAX_K_SLICE: usize = 8192;

/// How far a GEMM splits its K rows to give every core work: the fewest K rows worth a
/// slice of their own, and the workgroups a split aims for. Software adapters split
/// little (a few cores, and each slice costs a reduction); the GPU builds aim past four
/// workgroups per unit of the largest GPU in the plan's table (132 SMs).
fn split_targets(ctx: &GpuContext) -> (usize, usize) {
    if ctx.gpu_builds() {
        (256, 640)
    } else {
        (1024, 256)
    }
}

/// (slices, rows per slice) for a GEMM of this shape on `ctx`.
fn split_k(ctx: &GpuContext, m: usize, n: usize, k: usize) -> (usize, usize) {
    let (min_k_slice, target) = split_targets(ctx);
    let tiles = m.div_ceil(GEMM_ROWS as usize) * n.div_ceil(64);
    let needed = k.div_ceil(MAX_K_SLICE);
    let wanted = target.div_ceil(tiles).min(k.div_ceil(min_k_slice));
    let slices = needed.max(wanted).max(1);
    let k_slice = k.div_ceil(slices).div_ceil(16) * 16;
    (k.div_ceil(k_slice.max(1)).max(1), k_slice.max(16))
}

/// f32 values of scratch a GEMM of this shape needs on `ctx` (0 when it runs unsplit).
pub(crate) fn gemm_scratch(ctx: &GpuContext, m: usize, n: usize, k: usize) -> usize {
    match split_k(ctx, m, n, k) {
        (1, _) => 0,
        (s, _) => s * m * n,
    }
}

/// Rows per lane group and columns per lane of `gemm_sg` (`SM`, `SC` in
/// gemm_subgroup.wgsl).
const SUBGROUP_TILE: (u32, u32) = (8, 4);

/// The fewest rows of C a GEMM workgroup covers, in any build: the subgroup tile at its
/// widest (128 columns) covers 16 (what bounds the rows a workspace may hold).
pub(crate) const MIN_TILE_ROWS: u32 = 16;
const _: () = assert!(
    GEMM_ROWS >= MIN_TILE_ROWS && (WG * SUBGROUP_TILE.1 / 128) * SUBGROUP_TILE.0 >= MIN_TILE_ROWS
);

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
/// memory (every storage load costs llvmpipe about fifty FMAs; `gru bench
/// --roofline`), reading op(B) through uniform windows where the adapter allows.
pub(crate) fn variant(ctx: &GpuContext) -> Kernel {
    if ctx.uniform_windows() {
        Kernel::GemmUb
    } else if ctx.subgroup_builds() {
        Kernel::GemmSg
    } else {
        Kernel::Gemm
    }
}

/// One dispatch's share of a windowed GEMM: op(B) rows (columns of C when TRANS_B,
/// depth otherwise) `first..end`, read through the uniform window starting `win`
/// floats into b's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    first: usize,
    end: usize,
    win: usize,
}

/// How `gemm_uniform` covers op(B): windows of 64 KiB at offsets the adapter can bind,
/// each holding whole rows of b, in order. `None` when one row does not fit a window
/// or a window would pass the end of the buffer (`bytes`) or its uniform usage is
/// missing: then op(B) is read from storage.
fn uniform_windows(p: &GemmParams, trans_b: bool, bytes: u64, align: u64) -> Option<Vec<Window>> {
    let window = (UNIFORM_WINDOW / 4) as usize;
    let (rows, row_len) = if trans_b {
        (p.n as usize, p.k as usize)
    } else {
        (p.k as usize, p.n as usize)
    };
    let (ldb, align) = (p.ldb as usize, (align / 4).max(1) as usize);
    let mut list = Vec::new();
    let mut first = 0;
    while first < rows {
        let start = p.off_b as usize + first * ldb;
        let win = start / align * align;
        let room = window.checked_sub(start - win + row_len)?;
        let end = (first + 1 + room / ldb.max(1)).min(rows);
        if (win + window) as u64 * 4 > bytes {
            return None;
        }
        list.push(Window { first, end, win });
        first = end;
    }
    Some(list)
}

/// The dispatches of [`gemm`] on the `gemm_uniform` build, one per window; `None` when
/// op(B) cannot be windowed.
fn gemm_windowed(
    ctx: &GpuContext,
    label: &str,
    mut p: GemmParams,
    f: GemmFlags,
    [a, b, c]: [&dyn Bind; 3],
    bias: Option<&dyn Bind>,
) -> Result<Option<Vec<Dispatch>>> {
    if !b.raw().usage().contains(wgpu::BufferUsages::UNIFORM) {
        return Ok(None);
    }
    let align = ctx.limits.min_uniform_buffer_offset_alignment as u64;
    let Some(windows) = uniform_windows(&p, f.trans_b, b.room(), align) else {
        return Ok(None);
    };
    let (rows, cols) = subgroup_tile(ctx, p.n);
    p.tile_n = cols;
    let (m, n, k) = (p.m as u64, p.n as u64, p.k as u64);
    let mut list = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let mut q = p;
        q.win = w.win as u32;
        // Columns: each window writes its own block. Depth: the first window writes
        // (with the caller's bias and accumulation), the others add to it in order.
        let later = i > 0 && !f.trans_b;
        let (grid_n, flops) = if f.trans_b {
            q.n_first = w.first as u32;
            q.n = w.end as u32;
            q.k_slice = p.k;
            (w.end - w.first, 2 * m * k * (w.end - w.first) as u64)
        } else {
            q.k_first = w.first as u32;
            q.k_slice = (w.end - w.first) as u32;
            (p.n as usize, 2 * m * n * (w.end - w.first) as u64)
        };
        let constants = [
            ("TRANS_A", f.trans_a as u32),
            ("TRANS_B", f.trans_b as u32),
            ("ACCUMULATE", (f.accumulate || later) as u32),
            ("BIAS", (bias.is_some() && !later) as u32),
        ];
        let pipeline = ctx.pipeline(Kernel::GemmUb, &constants)?;
        let params = ctx.uniform(label, bytemuck::bytes_of(&q))?;
        let window = wgpu::BufferBinding {
            buffer: b.raw(),
            offset: b.start() + w.win as u64 * 4,
            size: std::num::NonZeroU64::new(UNIFORM_WINDOW),
        };
        let resources = vec![
            params.as_entire_binding(),
            a.binding(),
            wgpu::BindingResource::Buffer(window),
            bias.unwrap_or(a).binding(),
            c.binding(),
        ];
        let mut part = q;
        (part.n, part.k) = if f.trans_b {
            ((w.end - w.first) as u32, p.k)
        } else {
            (p.n, (w.end - w.first) as u32)
        };
        let with_bias = bias.is_some() && !later;
        let accumulating = GemmFlags {
            accumulate: f.accumulate || later,
            ..f
        };
        list.push(Dispatch {
            bind_group: bind(ctx, &pipeline, label, resources),
            pipeline,
            offset: None,
            groups: [groups(grid_n, cols), groups(p.m as usize, rows), 1],
            flops,
            indirect: None,
            traffic: gemm_traffic(&part, accumulating, with_bias, (rows, cols), 1),
        });
    }
    Ok(Some(list))
}

/// What one GEMM dispatch moves: A, B (and bias, and C when accumulating) read, C (or
/// its `slices` split slices) written; each tile of `rows` x `cols` outputs loads its
/// rows of op(A) and columns of op(B).
fn gemm_traffic(
    p: &GemmParams,
    f: GemmFlags,
    bias: bool,
    (rows, cols): (u32, u32),
    slices: usize,
) -> Traffic {
    let (m, n, k) = (p.m as u64, p.n as u64, p.k as u64);
    let accumulate = (f.accumulate && slices == 1) as u64;
    let read = m * k + k * n + n * bias as u64 + m * n * accumulate;
    let mut t = Traffic::floats(read, m * n * slices as u64);
    let (tiles_m, tiles_n) = (m.div_ceil(rows as u64), n.div_ceil(cols as u64));
    t.loads = 4 * (m * k * tiles_n + k * n * tiles_m + n * bias as u64 + m * n * accumulate);
    t
}

/// C = op(A) · op(B) (+ bias) (+ C); see gemm.wgsl for the meaning of `p`. Long K runs
/// as split-K slices into `scratch` (at least [`gemm_scratch`] values) plus a reduction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    ctx: &GpuContext,
    label: &str,
    p: GemmParams,
    f: GemmFlags,
    a: &dyn Bind,
    b: &dyn Bind,
    bias: Option<&dyn Bind>,
    c: &dyn Bind,
    scratch: &dyn Bind,
) -> Result<Vec<Dispatch>> {
    gemm_as(ctx, variant(ctx), label, p, f, [a, b, c, scratch], bias)
}

/// [`gemm`] with the kernel chosen by the caller (the tests run every variant the
/// device can).
fn gemm_as(
    ctx: &GpuContext,
    kernel: Kernel,
    label: &str,
    p: GemmParams,
    f: GemmFlags,
    [a, b, c, scratch]: [&dyn Bind; 4],
    bias: Option<&dyn Bind>,
) -> Result<Vec<Dispatch>> {
    let (mut list, split) = gemm_slices(ctx, kernel, label, (p, f), [a, b, c, scratch], bias, 0)?;
    if let Some(r) = split {
        let elems = Elems {
            act: false,
            ..f.elems
        };
        list.push(reduce_slices_as(
            ctx,
            label,
            r,
            (f.accumulate, elems),
            bias,
            scratch,
            c,
        )?);
    }
    Ok(list)
}

/// [`gemm`] (no bias) whose split-K slices stay in `scratch` from value `src` (a
/// multiple of `flat::ALIGN`) for a reduction the caller records, with another sum's
/// in one dispatch (`reduce::reduce_pending`): the GEMM's dispatches and, when it
/// splits, its slices (an unsplit GEMM writes C itself, accumulating by `f`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_deferred(
    ctx: &GpuContext,
    label: &str,
    p: GemmParams,
    f: GemmFlags,
    a: &dyn Bind,
    b: &dyn Bind,
    c: &dyn Bind,
    (scratch, src): (&dyn Bind, usize),
) -> Result<(Vec<Dispatch>, Option<Slices>)> {
    gemm_slices(
        ctx,
        variant(ctx),
        label,
        (p, f),
        [a, b, c, scratch],
        None,
        src,
    )
}

/// The GEMM's dispatch, and where it splits K the slices it leaves in `scratch` from
/// value `src`.
fn gemm_slices(
    ctx: &GpuContext,
    kernel: Kernel,
    label: &str,
    (mut p, f): (GemmParams, GemmFlags),
    [a, b, c, scratch]: [&dyn Bind; 4],
    bias: Option<&dyn Bind>,
    src: usize,
) -> Result<(Vec<Dispatch>, Option<Slices>)> {
    let kernel = match kernel {
        // The windows read f32 (a uniform array's stride is 16 bytes, so f16 would
        // need packing); f16 builds read op(B) from storage, at half the bytes.
        Kernel::GemmUb if f.elems.half() => Kernel::GemmSg,
        Kernel::GemmUb => match gemm_windowed(ctx, label, p, f, [a, b, c], bias)? {
            Some(list) => return Ok((list, None)),
            None => Kernel::GemmSg,
        },
        other => other,
    };
    let (slices, k_slice) = split_k(ctx, p.m as usize, p.n as usize, p.k as usize);
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
        p.off_c = src as u32;
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
    // Split-K slices are f32 whatever C is.
    let elems = Elems {
        out: f.elems.out && !split,
        ..f.elems
    };
    let mut d = param_dispatch_as(
        ctx,
        (kernel, elems),
        &constants,
        label,
        bytemuck::bytes_of(&p),
        &buffers,
        grid,
    )?;
    d.flops = 2 * p.m as u64 * p.n as u64 * p.k as u64;
    d.traffic = gemm_traffic(&p, f, bias.is_some(), (rows, cols), slices);
    let r = split.then_some(Slices {
        m: p.m,
        n: p.n,
        slices: slices as u32,
        ld: final_c.1,
        off: final_c.0,
        src: src as u32,
    });
    Ok((vec![d], r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn gemm_all_transposes_and_offsets() {
        let Some(ctx) = ctx() else { return };
        gemm_cases(&ctx);
    }

    /// The portable build (gemm.wgsl, what GPUs and browsers run), forced on this
    /// adapter: every output of its 8 x 8 register block lands where it belongs.
    #[test]
    fn portable_gemm_all_transposes_and_offsets() {
        let Some(ctx) = portable_ctx() else { return };
        gemm_cases(&ctx);
    }

    fn gemm_cases(ctx: &std::sync::Arc<GpuContext>) {
        let ctx = ctx.clone();
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
            (33, 300, 200),
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
                    ..Default::default()
                };
                let scratch = ctx
                    .storage("scratch", gemm_scratch(&ctx, m, n, k).max(1))
                    .unwrap();
                let bias_buf = bias.then_some(&biasb as &dyn Bind);
                let mut kernels = vec![Kernel::Gemm];
                if ctx.subgroups_of_8() {
                    kernels.push(Kernel::GemmSg);
                }
                if ctx.uniform_windows() {
                    kernels.push(Kernel::GemmUb);
                }
                for kernel in kernels {
                    ctx.queue.write_buffer(&cb, 0, bytemuck::cast_slice(&c0));
                    let bufs: [&dyn Bind; 4] = [&ab, &bb, &cb, &scratch];
                    let list = gemm_as(&ctx, kernel, "gemm", p, f, bufs, bias_buf).unwrap();
                    if kernel == Kernel::GemmUb {
                        // Windowed wherever a row of b fits a window: one dispatch each.
                        let align = ctx.limits.min_uniform_buffer_offset_alignment as u64;
                        let windows = uniform_windows(&p, tb, bb.size(), align);
                        assert_eq!(windows.is_some(), !tb || k + 8 <= 16384);
                        if let Some(w) = windows {
                            assert_eq!(list.len(), w.len(), "m{m} n{n} k{k} {f:?}");
                        }
                    }
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

    /// Uniform windows cover op(B)'s rows in order, each at an aligned offset and
    /// holding every value its rows read; a row too long for a window, or a window past
    /// the buffer's end, leaves op(B) to the storage build.
    #[test]
    fn uniform_windows_hold_their_rows() {
        let words = (UNIFORM_WINDOW / 4) as usize;
        for (trans_b, n, k, ldb, off_b, align) in [
            (true, 300, 200, 203, 5, 256),
            (false, 300, 200, 301, 5, 16),
            (false, 8, 70_000, 9, 3, 64),
            (true, 7, 16_000, 16_100, 1000, 256),
        ] {
            let p = GemmParams {
                n,
                k,
                ldb,
                off_b,
                ..Default::default()
            };
            let (rows, row_len) = if trans_b { (n, k) } else { (k, n) };
            let bytes = 4 * (off_b + rows * ldb) as u64 + UNIFORM_WINDOW;
            let list = uniform_windows(&p, trans_b, bytes, align).unwrap();
            let mut next = 0;
            for w in &list {
                assert_eq!(w.first, next);
                assert!(w.end > w.first);
                assert_eq!((4 * w.win) as u64 % align, 0);
                let first = off_b as usize + w.first * ldb as usize;
                let last = off_b as usize + (w.end - 1) * ldb as usize + row_len as usize;
                assert!(w.win <= first && last <= w.win + words, "{w:?}");
                next = w.end;
            }
            assert_eq!(next, rows as usize);
            // Without the slack past the last row, the last window does not fit.
            assert!(uniform_windows(&p, trans_b, bytes - UNIFORM_WINDOW, align).is_none());
        }
        let long = GemmParams {
            n: 4,
            k: 16_385,
            ldb: 16_385,
            ..Default::default()
        };
        assert!(uniform_windows(&long, true, u64::MAX, 16).is_none());
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
