//! Generation on the device: one pass over the prompt, then one pass per token, the
//! sampled token fed back as the next input without a readback; tokens come back in
//! chunks of [`GEN_CHUNK`] and are streamed as they arrive. The reference sampler it
//! must agree with is [`super::Sampling::pick`].

use crate::error::Result;
use crate::generate::Sampling;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::encode;
use crate::gpu::ops::sample::sample;
use crate::model::ModelConfig;
use crate::train::gpu::plan::ModelPlan;

/// Tokens drawn per submission: each chunk is read back and streamed.
const GEN_CHUNK: usize = 64;

/// `n` tokens from a unidirectional language model whose prompt is already written to
/// `warm` (T = prompt length, B = 1); `step` is its (1, 1) plan.
pub(crate) fn generate(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    (warm, step): (&ModelPlan, &ModelPlan),
    n: usize,
    sampling: &Sampling,
    on_token: &mut dyn FnMut(u32),
) -> Result<Vec<u32>> {
    let (h, c) = (cfg.hidden_size, cfg.outputs);
    for ws in &step.layers {
        ctx.queue
            .write_buffer(ws.lengths(), 0, bytemuck::bytes_of(&1u32));
    }
    let gen = ctx.storage("generated", n + 1)?;
    let carry = (0..cfg.num_layers)
        .map(|l| ctx.storage(&format!("gen_carry_l{l}"), h))
        .collect::<Result<Vec<_>>>()?;
    let mut warm_list = warm.predict.clone();
    // The prompt's last step's logits pick the first token.
    let last_row = (warm.t_len - 1) * c;
    warm_list.push(sample(
        ctx,
        sampling,
        (c, last_row),
        &warm.logits,
        &step.tokens,
        &gen,
    )?);
    let mut step_list = step.predict.clone();
    step_list.push(sample(
        ctx,
        sampling,
        (c, 0),
        &step.logits,
        &step.tokens,
        &gen,
    )?);
    let bytes = 4 * h as u64;
    let staging = ctx.staging(GEN_CHUNK)?;
    // Grown as tokens arrive: `n` is a request, not memory to reserve up front.
    let mut out = Vec::with_capacity(n.min(1 << 16));
    while out.len() < n {
        let k = GEN_CHUNK.min(n - out.len());
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("generate"),
            });
        for i in out.len()..out.len() + k {
            let (plan, list) = if i == 0 {
                (warm, &warm_list)
            } else {
                (step, &step_list)
            };
            for (l, ws) in plan.layers.iter().enumerate() {
                if i == 0 {
                    enc.clear_buffer(ws.states(0), 0, Some(bytes));
                } else {
                    enc.copy_buffer_to_buffer(&carry[l], 0, ws.states(0), 0, bytes);
                }
            }
            encode(&mut enc, "generate_step", list);
            for (l, ws) in plan.layers.iter().enumerate() {
                let at = ws.final_state_offset(h);
                enc.copy_buffer_to_buffer(ws.states(0), at, &carry[l], 0, bytes);
            }
        }
        ctx.queue.submit([enc.finish()]);
        let got = ctx
            .read_f32(&staging, &[(&gen, 1 + out.len(), k)])?
            .concat();
        for v in got {
            let tok = v.to_bits();
            on_token(tok);
            out.push(tok);
        }
    }
    Ok(out)
}
