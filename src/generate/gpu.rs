//! Generation on the device: one pass over the prompt draws the first token, then either
//! one dispatch draws many tokens (generate.wgsl, for models one workgroup can run) or
//! one pass per token runs the model's own kernels; either way the sampled token is fed
//! back without a readback. Tokens come back in chunks of at most [`GEN_CHUNK`] and are
//! streamed as they arrive. The reference sampler it must agree with is
//! [`super::Sampling::pick`].

use crate::error::{GruError, Result};
use crate::generate::Sampling;
use crate::gpu::abi::GenParams;
use crate::gpu::bind::Bind;
use crate::gpu::bind::Range;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::encode;
use crate::gpu::ops::generate::{fused_route, generate_tokens, Fused, GenDims};
use crate::gpu::ops::sample::sample;
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

/// generate.wgsl's sizes for a language model (`None` for other models).
pub(crate) fn dims(cfg: &ModelConfig) -> Option<GenDims> {
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
    })
}

/// The fused route for this model and sampling on `ctx`, if one workgroup can run it.
pub(crate) fn fused_for(ctx: &GpuContext, cfg: &ModelConfig, sampling: &Sampling) -> Option<Fused> {
    fused_route(ctx, &dims(cfg)?, sampling.top_k, GEN_CHUNK)
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
    let (h, c) = (cfg.hidden_size, cfg.outputs);
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
    let gen = ctx.storage("generated", 1 + ring)?;
    let staging = ctx.staging(ring)?;
    // The prompt's pass, whose last step's logits pick the first token (written to
    // `next`, the next pass's input, and to `gen`).
    let warm_list = |next: &wgpu::Buffer| -> Result<Vec<_>> {
        let mut list = warm.predict.clone();
        let last_row = (warm.t_len - 1) * c;
        list.push(sample(
            ctx,
            sampling,
            (c, last_row),
            ring,
            &warm.logits,
            next,
            &gen,
        )?);
        Ok(list)
    };
    let bytes = 4 * h as u64;
    // Tokens are handed on as they are read back and not kept: `done` counts them, and
    // `stopped` is set when the consumer asks for no more.
    let (mut done, mut stopped) = (0usize, false);
    let stream = Stream {
        ctx,
        staging: &staging,
        gen: &gen,
        ring,
    };
    let new_encoder = || {
        ctx.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("generate"),
            })
    };
    let warm_pass = |enc: &mut wgpu::CommandEncoder, list: &[crate::gpu::ops::Dispatch]| {
        for ws in &warm.layers {
            let st = ws.states(0);
            enc.clear_buffer(st.raw(), st.start(), Some(bytes));
        }
        encode(enc, "generate_prompt", list);
    };
    match route {
        Route::Fused(fused, tensors) => {
            let dims = dims(cfg).ok_or_else(|| {
                crate::error::GruError::State("fused generation of a non-token model".into())
            })?;
            let weights = ctx.storage("gen_weights", dims.weights_len())?;
            let state = ctx.storage("gen_state", dims.state_len())?;
            let params = GenParams {
                vocab: dims.vocab as u32,
                embed: dims.embed as u32,
                hidden: h as u32,
                layers: dims.layers as u32,
                cols: c as u32,
                reset_after: dims.reset_after as u32,
                per_dispatch: fused.per_dispatch as u32,
                total: n as u32,
                top_k: sampling.top_k.min(c) as u32,
                temperature: sampling.temperature,
                seed_lo: sampling.seed as u32,
                seed_hi: (sampling.seed >> 32) as u32,
                ring: ring as u32,
                ..Default::default()
            };
            let draw =
                generate_tokens(ctx, fused.kernel, &dims, &params, (&weights, &state, &gen))?;
            // generate.wgsl reads the last token from `gen`: the first draw's input copy
            // goes to scratch.
            let prompt = warm_list(&ctx.storage("gen_next", 1)?)?;
            // Dispatches per submission: about a chunk of tokens between readbacks.
            let per_submit = GEN_CHUNK.div_ceil(fused.per_dispatch);
            let mut first = true;
            while done < n && !stopped {
                let mut enc = new_encoder();
                let mut k = 0;
                if first {
                    for p in &dims.layout().0 {
                        let r = tensors[p.tensor];
                        let (from, to, len) =
                            (4 * p.from as u64, 4 * p.to as u64, 4 * p.len as u64);
                        enc.copy_buffer_to_buffer(&r.buffer, r.offset + from, &weights, to, len);
                    }
                    warm_pass(&mut enc, &prompt);
                    for (l, ws) in warm.layers.iter().enumerate() {
                        let from = ws.final_state_offset(h);
                        let st = ws.states(0);
                        enc.copy_buffer_to_buffer(
                            st.raw(),
                            st.start() + from,
                            &state,
                            l as u64 * bytes,
                            bytes,
                        );
                    }
                    k = 1;
                    first = false;
                }
                let dispatches = per_submit.min((n - done - k).div_ceil(fused.per_dispatch));
                encode(&mut enc, "generate_tokens", &vec![draw.clone(); dispatches]);
                k = (k + dispatches * fused.per_dispatch).min(n - done);
                ctx.queue.submit([enc.finish()]);
                stream.next(&mut done, &mut stopped, k, on_token).await?;
            }
        }
        Route::Steps(step) => {
            for ws in &step.layers {
                ctx.queue
                    .write_buffer(ws.lengths(), 0, bytemuck::bytes_of(&1u32));
            }
            let carry = (0..cfg.num_layers)
                .map(|l| ctx.storage(&format!("gen_carry_l{l}"), h))
                .collect::<Result<Vec<_>>>()?;
            let prompt = warm_list(&step.tokens)?;
            let mut step_list = step.predict.clone();
            step_list.push(sample(
                ctx,
                sampling,
                (c, 0),
                ring,
                &step.logits,
                &step.tokens,
                &gen,
            )?);
            while done < n && !stopped {
                let k = GEN_CHUNK.min(n - done);
                let mut enc = new_encoder();
                for i in done..done + k {
                    if i == 0 {
                        warm_pass(&mut enc, &prompt);
                        for (l, ws) in warm.layers.iter().enumerate() {
                            let at = ws.final_state_offset(h);
                            let st = ws.states(0);
                            enc.copy_buffer_to_buffer(
                                st.raw(),
                                st.start() + at,
                                &carry[l],
                                0,
                                bytes,
                            );
                        }
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
        }
    }
    Ok(done)
}
