//! The roofline probes (roofline.wgsl): register FMAs, streaming loads, broadcast loads
//! and workgroup-memory reads, each a dispatch of `invocations` threads.

use crate::error::Result;
use crate::gpu::abi::{LabParams, WG};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{groups, param_dispatch, Dispatch};

/// What a probe measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// FLOP/s of register-only FMAs.
    Fma,
    /// Bytes/s of coalesced per-invocation vec4 loads.
    Stream,
    /// FLOP/s of FMAs fed by a vec4 every invocation of a workgroup reads.
    Uniform,
    /// Bytes/s of vec4 reads from workgroup memory.
    Workgroup,
}

impl Probe {
    pub(crate) fn kernel(self) -> Kernel {
        match self {
            Probe::Fma => Kernel::FmaPeak,
            Probe::Stream => Kernel::LoadStream,
            Probe::Uniform => Kernel::LoadUniform,
            Probe::Workgroup => Kernel::WorkgroupMemory,
        }
    }

    /// FLOPs (Fma, Uniform) or bytes (Stream, Workgroup) per invocation and iteration.
    pub(crate) fn work_per_iteration(self) -> u64 {
        match self {
            Probe::Fma => 8 * 4 * 2,
            Probe::Uniform => 4 * 4 * 2,
            Probe::Stream | Probe::Workgroup => 16,
        }
    }
}

/// A probe over `invocations` threads of `iters` iterations, reading `src` (vec4s) and
/// writing one vec4 per thread into `dst` (wrapping); `lens` are their vec4 counts.
pub(crate) fn probe(
    ctx: &GpuContext,
    which: Probe,
    (invocations, iters): (usize, u32),
    (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
    lens: (usize, usize),
) -> Result<Dispatch> {
    let p = LabParams {
        iters,
        scale: 0.999,
        n_src: lens.0 as u32,
        n_dst: lens.1 as u32,
    };
    let grid = [groups(invocations, WG), 1, 1];
    param_dispatch(
        ctx,
        which.kernel(),
        &[],
        "roofline",
        bytemuck::bytes_of(&p),
        &[src, dst],
        grid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;

    /// The probes compute what they claim: the FMA chains and the sums of loads match a
    /// host evaluation (so no compiler could have dropped the loop).
    #[test]
    fn probes_compute_their_loops() {
        let Some(ctx) = ctx() else { return };
        let n = 256; // vec4s
        let data: Vec<f32> = (0..4 * n).map(|i| (i % 13) as f32 * 0.25).collect();
        let src = upload(&ctx, &data);
        let dst = upload(&ctx, &[0.0; 4 * 64]);
        let iters = 300;
        run(
            &ctx,
            &[probe(&ctx, Probe::Stream, (64, iters), (&src, &dst), (n, 64)).unwrap()],
        );
        let got = read(&ctx, &dst, 4 * 64);
        // Thread g reads vec4 (g + i·64) mod n for i < iters.
        let want: Vec<f64> = (0..64)
            .flat_map(|g| {
                let data = &data;
                (0..4).map(move |c| {
                    (0..iters as usize)
                        .map(|i| data[4 * ((g + i * 64) % n) + c] as f64)
                        .sum::<f64>()
                })
            })
            .collect();
        close(&got, &want, "stream");
        run(
            &ctx,
            &[probe(&ctx, Probe::Fma, (64, iters), (&src, &dst), (n, 64)).unwrap()],
        );
        let got = read(&ctx, &dst, 4 * 64);
        let chain = |x0: f64| (0..iters).fold(x0, |a, _| a * 0.999 + 1e-3);
        let x = data[0] as f64; // thread 0 reads src[0]
        let want: f64 = [0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
            .iter()
            .map(|o| chain(x + o))
            .sum::<f64>()
            + chain(x * 0.5);
        close(&got[..1], &[want], "fma");
    }
}
