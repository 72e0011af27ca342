//! Generation in one dispatch (generate.wgsl): which build a device and model take, how
//! many tokens one dispatch may draw, and the dispatch bound to its buffers.

use crate::error::Result;
use crate::gpu::abi::{GenParams, WG, WG_SOFTWARE};
use crate::gpu::context::{value_bytes, GpuContext, UNIFORM_WINDOW};
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{bind, Dispatch, Traffic};

/// The sizes generate.wgsl walks per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GenDims {
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
    /// The head's outputs (= vocab for a language model).
    pub cols: usize,
    pub reset_after: bool,
    /// f16 weights (an f16 or mixed model's): the f16 build, which also rounds to f16
    /// what the model's f16 kernels store between steps.
    pub half: bool,
}

impl GenDims {
    /// The packed weights: (tensor index in `ModelParams` order, first value, values,
    /// where they go), every gate block of a GRU matrix on its own 64-value boundary
    /// (generate.wgsl's `layer_at` is the shader's twin), and the floats in all.
    pub(crate) fn layout(&self) -> (Vec<Piece>, usize) {
        let (h, e, c) = (self.hidden, self.embed, self.cols);
        let mut pieces = vec![Piece {
            tensor: 0,
            from: 0,
            len: self.vocab * e,
            to: 0,
        }];
        let mut at = a64(self.vocab * e);
        for l in 0..self.layers {
            let i = if l == 0 { e } else { h };
            let t = 1 + 4 * l;
            for (k, cols) in [(0, i), (1, h)] {
                for g in 0..3 {
                    pieces.push(Piece {
                        tensor: t + k,
                        from: g * h * cols,
                        len: h * cols,
                        to: at,
                    });
                    at += a64(h * cols);
                }
            }
            for k in 2..4 {
                pieces.push(Piece {
                    tensor: t + k,
                    from: 0,
                    len: 3 * h,
                    to: at,
                });
                at += a64(3 * h);
            }
        }
        let t = 1 + 4 * self.layers;
        pieces.push(Piece {
            tensor: t,
            from: 0,
            len: c * h,
            to: at,
        });
        at += a64(c * h);
        pieces.push(Piece {
            tensor: t + 1,
            from: 0,
            len: c,
            to: at,
        });
        (pieces, at + c)
    }

    /// The matrices the portable build packs transposed (generate_w_storage_t.wgsl),
    /// as (tensor, rows, columns, where its first gate block goes): per layer W_ih
    /// [3H, I] and W_hh [3H, H] into the space of their three blocks, then the head
    /// [C, H]. Their pieces of [`Self::layout`] are not copied as they are.
    pub(crate) fn matrices(&self) -> Vec<(usize, usize, usize, usize)> {
        let (pieces, _) = self.layout();
        let at = |tensor: usize| {
            pieces
                .iter()
                .find(|p| p.tensor == tensor)
                .map_or(0, |p| p.to)
        };
        let h = self.hidden;
        let mut out = Vec::new();
        for l in 0..self.layers {
            let (t, i) = (1 + 4 * l, if l == 0 { self.embed } else { h });
            out.push((t, 3 * h, i, at(t)));
            out.push((t + 1, 3 * h, h, at(t + 1)));
        }
        let t = 1 + 4 * self.layers;
        out.push((t, self.cols, h, at(t)));
        out
    }

    /// Floats of the packed weights.
    pub(crate) fn weights_len(&self) -> usize {
        self.layout().1
    }

    /// Whether the "generate_uniform" build's windows hold this model: one or two
    /// layers of f32 weights (a window holds f32) whose gate blocks and head fit a
    /// window each.
    fn fits_windows(&self) -> bool {
        let (h, w) = (self.hidden, WINDOW_FLOATS);
        !self.half
            && (1..=2).contains(&self.layers)
            && h * self.embed <= w
            && h * h <= w
            && self.cols * h <= w
    }

    /// Bytes of the packed weights.
    pub(crate) fn weights_bytes(&self) -> u64 {
        value_bytes(self.half) * self.weights_len() as u64
    }

    /// The storage types of the build: f16 weights and f16 rounding where `half`.
    pub(crate) fn elems(&self) -> Elems {
        Elems {
            act: self.half,
            wt: self.half,
            out: false,
        }
    }

    /// Floats of the state buffer: [L, H] states, four [H] scratch rows, the embedded
    /// token and the logits.
    pub(crate) fn state_len(&self) -> usize {
        self.layers * self.hidden + 4 * self.hidden + self.embed + self.cols
    }

    /// An upper bound of the loop iterations one invocation runs per token, in the
    /// plain build (64 lanes, row sums one value at a time) or the subgroup builds (8
    /// lanes, row sums in blocks of 8 plus a tail of up to 7). Every loop counts one
    /// more than its trips (the test that ends it).
    pub(crate) fn iterations_per_token(&self, top_k: usize, subgroup: bool) -> u64 {
        let lanes = if subgroup { WG_SOFTWARE } else { WG } as u64;
        let per = |n: usize| (n as u64).div_ceil(lanes) + 1;
        let sum = |len: usize| {
            if subgroup {
                (len / 8 + len % 8 + 2) as u64
            } else {
                len as u64 + 1
            }
        };
        let (h, c) = (self.hidden, self.cols);
        let mut it = 1 + per(self.embed) + 1;
        for l in 0..self.layers {
            let i = if l == 0 { self.embed } else { h };
            // Gates, the reset-before candidate's second pass, the copy back.
            it += per(h) * (1 + sum(i) + sum(h));
            if !self.reset_after {
                it += per(h) * (1 + sum(h));
            }
            it += per(h);
        }
        it += per(c) * (1 + sum(h));
        // The draw over 64 blocks of `chunk`: argmax, top-k passes, the block sums, lane
        // 0's walk, each reduction's levels.
        let chunk = (c as u64).div_ceil(64);
        let blocks = 64 / lanes;
        let span = chunk * blocks + 1;
        let levels = u64::from(lanes.ilog2()) + 1;
        let k = top_k.min(c) as u64;
        it + span
            + levels
            + k * (span + levels + 1)
            + 1
            + blocks * (chunk + 2)
            + 1
            + 2 * 65
            + chunk
            + 1
    }
}

/// Part of a tensor copied into the packed weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub tensor: usize,
    pub from: usize,
    pub len: usize,
    pub to: usize,
}

fn a64(x: usize) -> usize {
    x.next_multiple_of(64)
}

/// Loop iterations one invocation may run on a software adapter: llvmpipe (Mesa 22.3)
/// stops a shader invocation after 65535 loop iterations counted over all its loops,
/// and the draws of an over-long dispatch come out wrong.
pub(crate) const LOOP_BUDGET: u64 = 60_000;

/// Weights the one workgroup of the fused route may read per token on a GPU. One core
/// streams 50-100 GB/s, so a token of 1 MiB takes 10-20 µs there, what the handful of
/// dispatches of the per-kernel path cost; past it the per-kernel path, whose step
/// and head kernels spread over every core, is faster (the seed-size model's 16 MB
/// would take 150-300 µs a token in one workgroup).
pub(crate) const GPU_FUSED_BYTES: u64 = 1 << 20;

const WINDOW_FLOATS: usize = (UNIFORM_WINDOW / 4) as usize;

/// How generation runs on a device: one dispatch for many tokens with `kernel`,
/// `per_dispatch` tokens at most each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fused {
    pub kernel: Kernel,
    pub per_dispatch: usize,
}

/// The fused route for `dims` on `ctx`, or `None` where the per-kernel path runs the
/// model: chosen by the adapter's class. A software adapter takes it while a token fits
/// [`LOOP_BUDGET`] (its dispatches cost about 100 µs, so one workgroup pays whatever
/// the model), with the subgroup builds and the uniform windows where the weights fit
/// them, and draws as many tokens a dispatch as the budget holds; a GPU takes it for
/// weights up to [`GPU_FUSED_BYTES`], `chunk` tokens a dispatch. A model past a binding
/// takes the per-kernel path everywhere.
pub(crate) fn fused_route(
    ctx: &GpuContext,
    dims: &GenDims,
    top_k: usize,
    chunk: usize,
) -> Option<Fused> {
    let sg = ctx.subgroup_builds();
    let bytes = dims.weights_bytes();
    if bytes + UNIFORM_WINDOW > ctx.storage_limit() || !fused_fits(ctx.is_software(), bytes) {
        return None;
    }
    // The device's window builds are chosen only where it allows the 14 uniform buffers
    // generate_uniform binds (UNIFORM_BUFFERS_PER_STAGE, checked when it opens).
    let windows = ctx.uniform_windows() && dims.fits_windows();
    let kernel = match (windows, sg) {
        (true, _) => Kernel::GenTokensUb,
        (false, true) => Kernel::GenTokensSg,
        _ => Kernel::GenTokens,
    };
    let per_dispatch = tokens_per_dispatch(
        dims.iterations_per_token(top_k, sg),
        ctx.is_software(),
        chunk,
    );
    (per_dispatch > 0).then_some(Fused {
        kernel,
        per_dispatch,
    })
}

/// Whether a model of `bytes` of weights takes the fused route on an adapter of this
/// class ([`GPU_FUSED_BYTES`]; software adapters decide by loop iterations instead).
pub(crate) fn fused_fits(software: bool, bytes: u64) -> bool {
    software || bytes <= GPU_FUSED_BYTES
}

/// Tokens one dispatch may draw at `per_token` loop iterations each: on a software
/// adapter as many as [`LOOP_BUDGET`] holds (none past it), on a GPU `chunk`.
pub(crate) fn tokens_per_dispatch(per_token: u64, software: bool, chunk: usize) -> usize {
    if !software {
        chunk
    } else if per_token > LOOP_BUDGET {
        0
    } else {
        ((LOOP_BUDGET / per_token) as usize).min(chunk)
    }
}

/// The dispatch of `kernel` that draws up to `params.per_dispatch` tokens over the
/// packed `weights` of `dims`.
pub(crate) fn generate_tokens(
    ctx: &GpuContext,
    kernel: Kernel,
    dims: &GenDims,
    params: &GenParams,
    (weights, state, generated): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
) -> Result<Dispatch> {
    let pipeline = ctx.pipeline_as(kernel, dims.elems(), &[])?;
    let uniform = ctx.uniform("generate", bytemuck::bytes_of(params))?;
    let mut res = vec![
        uniform.as_entire_binding(),
        weights.as_entire_binding(),
        state.as_entire_binding(),
        generated.as_entire_binding(),
    ];
    if kernel == Kernel::GenTokensUb {
        // Gate blocks in layout order: the layers' six (a missing second layer repeats
        // the first's, which the shader never reads), then the head.
        let (pieces, _) = dims.layout();
        let blocks = |l: usize| pieces[1 + 8 * l..1 + 8 * l + 6].iter().map(|p| p.to);
        let second = if dims.layers > 1 { 1 } else { 0 };
        let starts: Vec<usize> = blocks(0)
            .chain(blocks(second))
            .chain([pieces[1 + 8 * dims.layers].to])
            .collect();
        res.extend(starts.into_iter().map(|to| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: weights,
                offset: 4 * to as u64,
                size: wgpu::BufferSize::new(UNIFORM_WINDOW),
            })
        }));
    }
    let bind_group = bind(ctx, &pipeline, "generate", res);
    Ok(Dispatch {
        pipeline,
        bind_group,
        offset: None,
        groups: [1, 1, 1],
        flops: 0,
        indirect: None,
        traffic: Traffic::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_decides_tokens_per_dispatch() {
        assert_eq!(tokens_per_dispatch(1000, true, 64), 60);
        assert_eq!(tokens_per_dispatch(100, true, 64), 64);
        assert_eq!(tokens_per_dispatch(30_000, true, 64), 2);
        assert_eq!(tokens_per_dispatch(30_000, false, 64), 64);
        assert_eq!(tokens_per_dispatch(LOOP_BUDGET + 1, false, 64), 64);
        assert_eq!(tokens_per_dispatch(LOOP_BUDGET + 1, true, 64), 0);
    }

    /// A GPU's route follows the weights' bytes, not llvmpipe's loop cap: the default
    /// character model (about 0.3 MB) in one workgroup, the seed-size model (16 MB) by
    /// the per-kernel path; a software adapter keeps both on the fused route's terms.
    #[test]
    fn a_gpus_route_follows_the_weights_bytes() {
        let floats = |v: usize, e: usize, h: usize| (3 * h * (e + h) + 6 * h + v * h + v) as u64;
        assert!(fused_fits(false, 4 * floats(65, 32, 128)));
        assert!(!fused_fits(false, 4 * floats(100, 256, 1024)));
        assert!(fused_fits(true, 4 * floats(100, 256, 1024)));
    }

    #[test]
    fn weights_and_iterations_follow_the_model() {
        // The default language model: V 113, E 32, H 128, one layer.
        let d = GenDims {
            vocab: 113,
            embed: 32,
            hidden: 128,
            layers: 1,
            cols: 113,
            reset_after: true,
            half: false,
        };
        // Every parameter once (gru summary's count), each piece on a 64-value
        // boundary, none overlapping.
        let (pieces, total) = d.layout();
        assert_eq!(pieces.iter().map(|p| p.len).sum::<usize>(), 80_401);
        assert_eq!(total, 80_433);
        let mut spans: Vec<(usize, usize)> = pieces.iter().map(|p| (p.to, p.to + p.len)).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
        assert!(pieces.iter().all(|p| p.to % 64 == 0));
        // Gate blocks in order: W_ih's three, W_hh's three, from their tensors' rows.
        assert_eq!(
            pieces[1],
            Piece {
                tensor: 1,
                from: 0,
                len: 128 * 32,
                to: 3648
            }
        );
        assert_eq!(pieces[5].tensor, 2);
        assert_eq!(pieces[5].from, 128 * 128);
        assert_eq!(d.state_len(), 128 + 512 + 32 + 113);
        let sg = d.iterations_per_token(0, true);
        // One dispatch holds most of a chunk of the default model's draws.
        assert!(
            tokens_per_dispatch(sg, true, 64) >= 48,
            "{sg} iterations per token"
        );
        assert!(sg < d.iterations_per_token(40, true));
        let before = GenDims {
            reset_after: false,
            ..d
        };
        assert!(before.iterations_per_token(0, true) > sg);
        // A vocabulary of 60,000 at H 1024 is past one workgroup's budget.
        let big = GenDims {
            vocab: 60_000,
            cols: 60_000,
            hidden: 1024,
            ..d
        };
        assert!(big.iterations_per_token(0, true) > LOOP_BUDGET);
    }
}
