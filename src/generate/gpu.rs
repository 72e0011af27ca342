//! Generation on the device: one pass over the prompt draws the first token, then either
//! one dispatch draws many tokens (generate.wgsl, for models one workgroup can run) or
//! one pass per token runs the model's own kernels; either way the sampled token is fed
//! back without a readback. Tokens come back in chunks of at most [`GEN_CHUNK`] and are
//! streamed as they arrive. The reference sampler it must agree with is
//! [`super::Sampling::pick`].

use crate::error::{GruError, Result};
use crate::generate::Sampling;
use crate::gpu::abi::CopyParams;
use crate::gpu::abi::GenParams;
use crate::gpu::bind::Bind;
use crate::gpu::bind::Range;
use crate::gpu::context::{value_bytes, GpuContext};
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::copy::strided_copy_as;
use crate::gpu::ops::generate::{fused_route, generate_tokens, Fused, GenDims};
use crate::gpu::ops::sample::sample;
use crate::gpu::ops::{encode, transpose};
use crate::model::{ModelConfig, ModelInput};
use crate::train::gpu::plan::ModelPlan;

/// Tokens drawn per submission: each chunk is read back and streamed.
pub(crate) const GEN_CHUNK: usize = 64;

/// How the tokens after the first are drawn.
pub(crate) enum Route<'a> {
    /// generate.wgsl over `weights`: every parameter tensor's values, in `ModelParams`
    /// order.
    Fused(Fused, &'a [&'a Range]),
    /// The (1, 1) plan: the model's kernels, one pass per token.
    Steps(&'a ModelPlan),
}

/// generate.wgsl's sizes for a language model (`None` for other models), its weights
/// f16 where `half`.
pub(crate) fn dims(cfg: &ModelConfig, half: bool) -> Option<GenDims> {
    let ModelInput::Tokens { vocab, embed_dim } = cfg.input else {
        return None;
    };
    Some(GenDims {
        vocab,
        embed: embed_dim,
        hidden: cfg.hidden_size,
        layers: cfg.num_layers,
        cols: cfg.outputs,
        reset_after: cfg.variant == crate::config::GruVariant::ResetAfter,
        half,
    })
}

/// The fused route for this model (f16 weights where `half`) and sampling on `ctx`, if
/// one workgroup can run it.
pub(crate) fn fused_for(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    sampling: &Sampling,
    half: bool,
) -> Option<Fused> {
    fused_route(ctx, &dims(cfg, half)?, sampling.top_k, GEN_CHUNK)
}

/// Where generated tokens are read back from: the ring `gen` the kernels append to.
struct Stream<'a> {
    ctx: &'a GpuContext,
    staging: &'a wgpu::Buffer,
    gen: &'a wgpu::Buffer,
    ring: usize,
}

impl Stream<'_> {
    /// Reads the next `k` tokens back and hands them on; `stopped` when the consumer
    /// asks for no more.
    async fn next(
        &self,
        done: &mut usize,
        stopped: &mut bool,
        k: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<()> {
        let start = *done % self.ring;
        let first = k.min(self.ring - start);
        let got = self
            .ctx
            .read_f32_async(
                self.staging,
                &[(self.gen, 1 + start, first), (self.gen, 1, k - first)],
            )
            .await?
            .concat();
        for v in got {
            *done += 1;
            if !on_token(v.to_bits()) {
                *stopped = true;
                break;
            }
        }
        Ok(())
    }
}

/// `n` tokens from a unidirectional language model whose prompt is already written to
/// `warm` (T = prompt length, B = 1).
pub(crate) async fn generate(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    warm: &ModelPlan,
    route: Route<'_>,
    n: usize,
    sampling: &Sampling,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<usize> {
    if u32::try_from(n).is_err() {
        return Err(GruError::Input(format!(
            "at most {} tokens per request on the device (the count is 32-bit), found {n}",
            u32::MAX
        )));
    }
    // The tokens between two readbacks: the ring the kernels append to.
    let ring = match &route {
        Route::Fused(f, _) => 1 + GEN_CHUNK.div_ceil(f.per_dispatch) * f.per_dispatch,
        Route::Steps(_) => GEN_CHUNK,
    };
    let g = Generation {
        ctx,
        cfg,
        warm,
        sampling,
        ring,
        gen: ctx.storage("generated", 1 + ring)?,
        staging: ctx.staging(ring)?,
    };
    match route {
        Route::Fused(fused, tensors) => g.fused(fused, tensors, n, on_token).await,
        Route::Steps(step) => g.steps(step, n, on_token).await,
    }
}

/// One request's shared parts: the prompt's plan, the ring of drawn tokens and its
/// staging buffer.
struct Generation<'a> {
    ctx: &'a GpuContext,
    cfg: &'a ModelConfig,
    warm: &'a ModelPlan,
    sampling: &'a Sampling,
    ring: usize,
    gen: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl Generation<'_> {
    /// Bytes of one layer's state (f32; an f16 one's rounded up to whole 4-byte words,
    /// what a clear needs: the value after it is step 1's, which step 0 writes).
    fn state_bytes(&self) -> u64 {
        let h = self.cfg.hidden_size as u64;
        (value_bytes(self.half()) * h).next_multiple_of(4)
    }

    /// Whether the model's plans keep f16 states (an f16 or mixed trainer's).
    fn half(&self) -> bool {
        self.warm.layers.first().is_some_and(|ws| ws.half)
    }

    /// f16 states cannot move with buffer copies (their offsets and lengths need not be
    /// whole 4-byte words): the copies of one layer's state as dispatches, made once per
    /// request, from `(src, first value)` to `(dst, first value)` of each layer, into
    /// f16 values where `dst_half` (else widened to f32).
    fn state_copies(
        &self,
        pairs: impl Iterator<Item = ((Range, usize), (Range, usize))>,
        dst_half: bool,
    ) -> Result<Vec<crate::gpu::ops::Dispatch>> {
        let h = self.cfg.hidden_size;
        pairs
            .map(|((src, from), (dst, to))| {
                let p = CopyParams::run(h, from, to);
                strided_copy_as(self.ctx, p, (&src, &dst), (true, dst_half))
            })
            .collect()
    }

    /// The prompt's pass, whose last step's logits pick the first token (written to
    /// `next`, the next pass's input, and to the ring).
    fn warm_list(&self, next: &wgpu::Buffer) -> Result<Vec<crate::gpu::ops::Dispatch>> {
        let c = self.cfg.outputs;
        let mut list = self.warm.predict.clone();
        let last_row = (self.warm.t_len - 1) * c;
        list.push(sample(
            self.ctx,
            self.sampling,
            (c, last_row),
            self.ring,
            &self.warm.logits,
            next,
            &self.gen,
        )?);
        Ok(list)
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("generate"),
            })
    }

    /// Records the prompt's pass from zero states.
    fn warm_pass(&self, enc: &mut wgpu::CommandEncoder, list: &[crate::gpu::ops::Dispatch]) {
        for ws in &self.warm.layers {
            let st = ws.states(0);
            enc.clear_buffer(st.raw(), st.start(), Some(self.state_bytes()));
        }
        encode(enc, "generate_prompt", list);
    }

    /// Records copies of the prompt pass's final states, layer `l`'s to
    /// `to(l)` at its offset.
    fn copy_final_states<'b>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        to: impl Fn(usize) -> (&'b wgpu::Buffer, u64),
    ) {
        let (h, bytes) = (self.cfg.hidden_size, self.state_bytes());
        for (l, ws) in self.warm.layers.iter().enumerate() {
            let st = ws.states(0);
            let (buf, at) = to(l);
            enc.copy_buffer_to_buffer(
                st.raw(),
                st.start() + ws.final_state_offset(h),
                buf,
                at,
                bytes,
            );
        }
    }

    fn stream(&self) -> Stream<'_> {
        Stream {
            ctx: self.ctx,
            staging: &self.staging,
            gen: &self.gen,
            ring: self.ring,
        }
    }

    /// generate.wgsl: many tokens per dispatch from a packed copy of the weights (f16
    /// where the tensors are: the f16 build).
    async fn fused(
        &self,
        fused: Fused,
        tensors: &[&Range],
        n: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        let (ctx, cfg, sampling) = (self.ctx, self.cfg, self.sampling);
        let half = tensors.first().is_some_and(|t| t.half);
        if half != self.half() || tensors.iter().any(|t| t.half != half) {
            return Err(GruError::State(
                "fused generation over weights and states of different storage types".into(),
            ));
        }
        let dims = dims(cfg, half)
            .ok_or_else(|| GruError::State("fused generation of a non-token model".into()))?;
        let weights = ctx.storage_as("gen_weights", dims.weights_len(), half)?;
        let state = ctx.storage("gen_state", dims.state_len())?;
        let params = GenParams {
            vocab: dims.vocab as u32,
            embed: dims.embed as u32,
            hidden: cfg.hidden_size as u32,
            layers: dims.layers as u32,
            cols: cfg.outputs as u32,
            reset_after: dims.reset_after as u32,
            per_dispatch: fused.per_dispatch as u32,
            total: n as u32,
            top_k: sampling.top_k.min(cfg.outputs) as u32,
            temperature: sampling.temperature,
            seed_lo: sampling.seed as u32,
            seed_hi: (sampling.seed >> 32) as u32,
            ring: self.ring as u32,
            ..Default::default()
        };
        let draw = generate_tokens(
            ctx,
            fused.kernel,
            &dims,
            &params,
            (&weights, &state, &self.gen),
        )?;
        // generate.wgsl reads the last token from the ring: the first draw's input copy
        // goes to scratch.
        let prompt = self.warm_list(&ctx.storage("gen_next", 1)?)?;
        // The portable build reads every matrix transposed, so that a warp's lanes read
        // neighbouring addresses (generate_w_storage_t.wgsl).
        let matrices = match fused.kernel {
            Kernel::GenTokens => dims.matrices(),
            _ => Vec::new(),
        };
        let packs = matrices
            .iter()
            .map(|&(t, rows, cols, to)| {
                let dst = Range {
                    buffer: weights.clone(),
                    offset: value_bytes(half) * to as u64,
                    len: rows * cols,
                    half,
                };
                transpose(ctx, "generate_pack", rows, cols, tensors[t], &dst)
            })
            .collect::<Result<Vec<_>>>()?;
        let pieces: Vec<_> = dims
            .layout()
            .0
            .into_iter()
            .filter(|p| !matrices.iter().any(|m| m.0 == p.tensor))
            .collect();
        // f16 pieces and states move by dispatches (an f16 offset or length need not be
        // a whole 4-byte word); the prompt's final f16 states widen into the f32 state.
        let (copies, states) = if half {
            let all = Range::whole(&weights, dims.weights_len(), half);
            let copies = pieces
                .iter()
                .map(|p| {
                    let cp = CopyParams::run(p.len, p.from, p.to);
                    strided_copy_as(ctx, cp, (tensors[p.tensor], &all), (true, true))
                })
                .collect::<Result<Vec<_>>>()?;
            let (h, warm_t) = (cfg.hidden_size, self.warm.t_len);
            let into = Range::whole(&state, dims.state_len(), false);
            let pairs = self
                .warm
                .layers
                .iter()
                .enumerate()
                .map(|(l, ws)| ((ws.states(0).clone(), warm_t * h), (into.clone(), l * h)));
            (copies, self.state_copies(pairs, false)?)
        } else {
            (Vec::new(), Vec::new())
        };
        // Dispatches per submission: about a chunk of tokens between readbacks.
        let per_submit = GEN_CHUNK.div_ceil(fused.per_dispatch);
        let stream = self.stream();
        // Tokens are handed on as they are read back and not kept.
        let (mut done, mut stopped, mut first) = (0usize, false, true);
        while done < n && !stopped {
            let mut enc = self.encoder();
            let mut k = 0;
            if first {
                if !half {
                    for p in &pieces {
                        let r = tensors[p.tensor];
                        let (from, to) = (4 * p.from as u64, 4 * p.to as u64);
                        let len = 4 * p.len as u64;
                        enc.copy_buffer_to_buffer(&r.buffer, r.offset + from, &weights, to, len);
                    }
                }
                encode(&mut enc, "generate_pack", &copies);
                encode(&mut enc, "generate_pack", &packs);
                self.warm_pass(&mut enc, &prompt);
                if half {
                    encode(&mut enc, "generate_state", &states);
                } else {
                    let bytes = self.state_bytes();
                    self.copy_final_states(&mut enc, |l| (&state, l as u64 * bytes));
                }
                (k, first) = (1, false);
            }
            let dispatches = per_submit.min((n - done - k).div_ceil(fused.per_dispatch));
            encode(&mut enc, "generate_tokens", &vec![draw.clone(); dispatches]);
            k = (k + dispatches * fused.per_dispatch).min(n - done);
            ctx.queue.submit([enc.finish()]);
            stream.next(&mut done, &mut stopped, k, on_token).await?;
        }
        Ok(done)
    }

    /// One pass of the model's (1, 1) plan per token, the state carried between them.
    async fn steps(
        &self,
        step: &ModelPlan,
        n: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        let (ctx, cfg, bytes) = (self.ctx, self.cfg, self.state_bytes());
        let h = cfg.hidden_size;
        for ws in &step.layers {
            ctx.queue
                .write_buffer(ws.lengths(), 0, bytemuck::bytes_of(&1u32));
        }
        let half = self.half();
        let carry = (0..cfg.num_layers)
            .map(|l| ctx.storage_as(&format!("gen_carry_l{l}"), h, half))
            .collect::<Result<Vec<_>>>()?;
        // f16 states: the carry's copies as dispatches (prompt's final state into the
        // carry; the carry into the step's initial state; the step's final state back).
        let copies = if half {
            let warm_t = self.warm.t_len;
            let warm = self.warm.layers.iter().map(|ws| ws.states(0).clone());
            let steps = || step.layers.iter().map(|ws| ws.states(0).clone());
            let c = || carry.iter().map(|b| (Range::whole(b, h, true), 0));
            Some((
                self.state_copies(warm.map(|s| (s, warm_t * h)).zip(c()), true)?,
                self.state_copies(c().zip(steps().map(|s| (s, 0))), true)?,
                self.state_copies(steps().map(|s| (s, h)).zip(c()), true)?,
            ))
        } else {
            None
        };
        let prompt = self.warm_list(&step.tokens)?;
        let mut step_list = step.predict.clone();
        step_list.push(sample(
            ctx,
            self.sampling,
            (cfg.outputs, 0),
            self.ring,
            &step.logits,
            &step.tokens,
            &self.gen,
        )?);
        let stream = self.stream();
        let (mut done, mut stopped) = (0usize, false);
        while done < n && !stopped {
            let k = GEN_CHUNK.min(n - done);
            let mut enc = self.encoder();
            for i in done..done + k {
                if let Some((from_warm, into_step, from_step)) = &copies {
                    if i == 0 {
                        self.warm_pass(&mut enc, &prompt);
                        encode(&mut enc, "generate_carry", from_warm);
                        continue;
                    }
                    encode(&mut enc, "generate_carry", into_step);
                    encode(&mut enc, "generate_step", &step_list);
                    encode(&mut enc, "generate_carry", from_step);
                    continue;
                }
                if i == 0 {
                    self.warm_pass(&mut enc, &prompt);
                    self.copy_final_states(&mut enc, |l| (&carry[l], 0));
                    continue;
                }
                for (l, ws) in step.layers.iter().enumerate() {
                    let st = ws.states(0);
                    enc.copy_buffer_to_buffer(&carry[l], 0, st.raw(), st.start(), bytes);
                }
                encode(&mut enc, "generate_step", &step_list);
                for (l, ws) in step.layers.iter().enumerate() {
                    let at = ws.final_state_offset(h);
                    let st = ws.states(0);
                    enc.copy_buffer_to_buffer(st.raw(), st.start() + at, &carry[l], 0, bytes);
                }
            }
            ctx.queue.submit([enc.finish()]);
            stream.next(&mut done, &mut stopped, k, on_token).await?;
        }
        Ok(done)
    }
}
