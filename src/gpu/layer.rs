//! `GpuGru`: the GRU stack on a device. Owns its parameter buffers and a small cache of
//! per-shape workspaces; each pass writes its inputs, replays a recorded dispatch list in
//! one submission and reads nothing back until asked.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::gpu::bind::Bind;
use crate::gpu::cache::ShapeCache;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{encode, Dispatch};
use crate::gpu::params::{weights_from_parts, GpuParams};
use crate::gpu::plan::{self, BackwardNeeds};
use crate::gpu::wait::blocking;
use crate::gpu::workspace::Workspace;
use crate::precision::{device_bytes, Precision};
use crate::sequence::{swap_leading_axes, validate_cell, GruGrads, SequenceInput};
use crate::weights::GruWeights;

/// Shapes whose workspaces a layer keeps; the oldest is dropped past this.
const MAX_RUNS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct LastForward {
    t_len: usize,
    batch: usize,
    batch_first: bool,
}

/// The workspaces of one (T, B): one per chunk of batch rows, so that no buffer exceeds
/// the device's storage binding limit. Usually a single chunk.
struct Run {
    /// (first row, workspace) per chunk.
    chunks: Vec<(usize, Workspace)>,
}

/// Rows [b0, b0+bc) of a [d0, B, f] array, as [d0, bc, f]; borrowed when that is all rows.
fn gather_rows(
    data: &[f32],
    d0: usize,
    batch: usize,
    f: usize,
    b0: usize,
    bc: usize,
) -> Cow<'_, [f32]> {
    if b0 == 0 && bc == batch {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(d0 * bc * f);
    for i in 0..d0 {
        out.extend_from_slice(&data[(i * batch + b0) * f..(i * batch + b0 + bc) * f]);
    }
    Cow::Owned(out)
}

/// Writes [d0, bc, f] `src` into rows [b0, b0+bc) of the [d0, B, f] array `dst`.
fn scatter_rows(
    dst: &mut [f32],
    src: &[f32],
    d0: usize,
    batch: usize,
    f: usize,
    b0: usize,
    bc: usize,
) {
    for i in 0..d0 {
        dst[(i * batch + b0) * f..(i * batch + b0 + bc) * f]
            .copy_from_slice(&src[i * bc * f..(i + 1) * bc * f]);
    }
}

/// A GRU stack (PyTorch `nn.GRU` semantics) whose passes run on the GPU.
///
/// ```no_run
/// use gru_engine::{GpuContext, GpuGru, GruConfig, GruWeights, SequenceInput};
/// # fn main() -> gru_engine::Result<()> {
/// let mut gru = GpuGru::new(GpuContext::new_default()?, &GruWeights::init(GruConfig::new(4, 8), 1))?;
/// let x = vec![0.0f32; 10 * 2 * 4];
/// gru.forward(&SequenceInput::new(&x, 10, 2).lengths(&[10, 6]))?;
/// let h_n = gru.read_h_n()?; // [1, 2, 8]
/// # Ok(()) }
/// ```
pub struct GpuGru {
    ctx: Arc<GpuContext>,
    config: GruConfig,
    precision: Precision,
    params: GpuParams,
    runs: ShapeCache<Run>,
    last: Option<LastForward>,
    grads_ready: bool,
    batch_chunk: Option<usize>,
}

impl std::fmt::Debug for GpuGru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGru")
            .field("config", &self.config)
            .field("device", &self.ctx)
            .finish()
    }
}

impl Drop for GpuGru {
    fn drop(&mut self) {
        self.ctx.settle();
    }
}

impl GpuGru {
    /// Allocates the parameter buffers on `ctx` and uploads `weights`.
    pub fn new(ctx: Arc<GpuContext>, weights: &GruWeights) -> Result<Self> {
        Self::with_precision(ctx, weights, Precision::F32)
    }

    /// [`GpuGru::new`] storing tensors as `precision` says. With [`Precision::F16`] the
    /// weights, the input, gx, the states between steps, the outputs and the saved gate
    /// values are f16 on the device (half the bytes every kernel moves and the layer
    /// holds), every sum f32, and results come back as f32; such a layer runs forward
    /// only (its backward is an error). It needs `SHADER_F16`: without it, this is
    /// [`GruError::MissingFeature`].
    ///
    /// ```no_run
    /// use gru_engine::{GpuContext, GpuGru, GruConfig, GruWeights, Precision, SequenceInput};
    /// # fn main() -> gru_engine::Result<()> {
    /// let w = GruWeights::init(GruConfig::new(4, 8), 1);
    /// let mut gru = GpuGru::with_precision(GpuContext::new_default()?, &w, Precision::F16)?;
    /// gru.forward(&SequenceInput::new(&vec![0.5f32; 10 * 2 * 4], 10, 2))?;
    /// let out = gru.read_output()?; // f32, within f16 rounding of the f32 layer's
    /// # Ok(()) }
    /// ```
    pub fn with_precision(
        ctx: Arc<GpuContext>,
        weights: &GruWeights,
        precision: Precision,
    ) -> Result<Self> {
        weights.config.validate()?;
        ctx.check_precision(precision)?;
        let config = weights.config;
        let params = ctx.scoped(|| {
            if precision.is_half() {
                GpuParams::new_f16(&ctx, &config, precision.trains())
            } else {
                GpuParams::new(&ctx, &config)
            }
        })?;
        let mut gru = GpuGru {
            ctx,
            config,
            precision,
            params,
            runs: ShapeCache::new(MAX_RUNS),
            last: None,
            grads_ready: false,
            batch_chunk: None,
        };
        gru.set_weights(weights)?;
        Ok(gru)
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    /// What the layer stores its tensors as.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The device the layer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Replaces every parameter; `weights` must have this layer's configuration.
    pub fn set_weights(&mut self, weights: &GruWeights) -> Result<()> {
        if weights.config != self.config {
            return Err(GruError::shape(
                "weights config",
                format!("{:?}", self.config),
                format!("{:?}", weights.config),
            ));
        }
        for id in weights.tensor_ids() {
            let shape = weights.shape_of(id);
            check_len(
                &id.name(),
                weights.tensor(id).len(),
                &shape,
                &format!("{shape:?}"),
            )?;
            if self.params.half() {
                // An f16 value would hold infinity.
                crate::precision::check_f16_range(&id.name(), weights.tensor(id))?;
            }
        }
        self.params.upload(&self.ctx, weights);
        Ok(())
    }

    /// Reads the parameters back from the device.
    pub fn read_weights(&mut self) -> Result<GruWeights> {
        blocking(self.read_weights_async())
    }

    /// [`GpuGru::read_weights`], awaited.
    pub async fn read_weights_async(&mut self) -> Result<GruWeights> {
        let parts = self.params.parts(false);
        let staging = self.ctx.staging(parts.iter().map(|p| p.2).sum())?;
        let half = self.params.half();
        let data = self.ctx.read_as_async(&staging, &parts, half).await?;
        Ok(weights_from_parts(self.config, data.into_iter()))
    }

    /// Caps the batch rows one device workspace holds (`None`: as many as the device's
    /// storage binding limit allows). Larger batches run in chunks inside the same
    /// submission; results do not change, only peak buffer sizes.
    pub fn set_batch_chunk(&mut self, rows: Option<usize>) {
        self.batch_chunk = rows.filter(|&r| r > 0);
        self.runs.clear();
        self.last = None;
    }

    fn run_index(&mut self, t_len: usize, batch: usize) -> Result<usize> {
        let (ctx, cfg, params, cap) = (&self.ctx, &self.config, &self.params, self.batch_chunk);
        let precision = self.precision;
        self.runs.index(t_len, batch, || {
            let mut rows = Workspace::max_rows(ctx, cfg, t_len);
            if let Some(cap) = cap {
                rows = rows.min(cap);
            }
            if rows == 0 {
                let h = cfg.hidden_size;
                return Err(GruError::TooLarge {
                    what: format!("one batch row of T = {t_len} steps (saved activations [T, 1, 4H] with H = {h})"),
                    bytes: 16 * (t_len * h) as u64,
                    limit: ctx.storage_limit(),
                });
            }
            let chunks = ctx.scoped(|| {
                (0..batch)
                    .step_by(rows)
                    .map(|b0| {
                        let bc = rows.min(batch - b0);
                        let ws = if !precision.trains() {
                            plan::inference_workspace(ctx, cfg, params, (t_len, bc, true))?
                        } else {
                            plan::workspace(
                                ctx,
                                cfg,
                                params,
                                (t_len, bc, true),
                                BackwardNeeds::layer(b0 > 0),
                            )?
                        };
                        Ok((b0, ws))
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            Ok(Run { chunks })
        })
    }

    fn current(&self) -> Result<(&Run, LastForward)> {
        let last = self
            .last
            .ok_or_else(|| GruError::State("no forward pass has run on this layer yet".into()))?;
        let run = self.runs.find(last.t_len, last.batch).ok_or_else(|| {
            GruError::State("the forward pass's workspace was evicted; run forward again".into())
        })?;
        Ok((run, last))
    }

    /// The forward and backward dispatch lists of the last forward's shape, every chunk
    /// in order: what the kernel lab replays family by family.
    pub(crate) fn recorded(&self) -> Result<(Vec<Dispatch>, Vec<Dispatch>)> {
        let (run, _) = self.current()?;
        let forward = run
            .chunks
            .iter()
            .flat_map(|(_, ws)| ws.forward.iter().cloned());
        let backward = run
            .chunks
            .iter()
            .flat_map(|(_, ws)| ws.backward.iter().cloned());
        Ok((forward.collect(), backward.collect()))
    }

    /// Runs the whole stack over `input` in one submission. The results stay on the
    /// device: read them with [`GpuGru::read_output`] and [`GpuGru::read_h_n`], or call
    /// [`GpuGru::backward`].
    pub fn forward(&mut self, input: &SequenceInput) -> Result<()> {
        input.validate(&self.config)?;
        let (t_len, batch) = (input.seq_len, input.batch);
        let idx = self.run_index(t_len, batch)?;
        let (ctx, cfg) = (&self.ctx, &self.config);
        let run = self.runs.get(idx);
        let (h, ld) = (cfg.hidden_size, run.chunks[0].1.dirs.len());
        let x: Cow<[f32]> = if input.batch_first {
            Cow::Owned(swap_leading_axes(input.data, batch, t_len, cfg.input_size))
        } else {
            Cow::Borrowed(input.data)
        };
        ctx.scoped(|| {
            let q = &ctx.queue;
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("gru_forward"),
                });
            for (b0, ws) in &run.chunks {
                let (b0, bc) = (*b0, ws.batch);
                let bh = bc * h;
                let rows = gather_rows(&x, t_len, batch, cfg.input_size, b0, bc);
                q.write_buffer(&ws.x, 0, &device_bytes(&rows, ws.half));
                let lengths: Vec<u32> = (b0..b0 + bc).map(|b| input.length_of(b) as u32).collect();
                q.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lengths));
                let h0 = input.h0.map(|h0| gather_rows(h0, ld, batch, h, b0, bc));
                for (i, dir) in ws.dirs.iter().enumerate() {
                    match &h0 {
                        Some(h0) => q.write_buffer(
                            dir.hs.raw(),
                            dir.hs.start(),
                            &device_bytes(&h0[i * bh..(i + 1) * bh], ws.half),
                        ),
                        // Whole 4-byte words: an odd f16 count also clears the first
                        // value of step 1's states, which step 0 writes.
                        None => {
                            let bytes = (dir.hs.value_bytes() * bh as u64).next_multiple_of(4);
                            enc.clear_buffer(dir.hs.raw(), dir.hs.start(), Some(bytes))
                        }
                    }
                }
                encode(&mut enc, "gru_forward", &ws.forward);
            }
            q.submit([enc.finish()]);
            Ok(())
        })?;
        self.last = Some(LastForward {
            t_len,
            batch,
            batch_first: input.batch_first,
        });
        Ok(())
    }

    /// The last forward's output: [T, B, dirs·H], or [B, T, dirs·H] for batch-first input.
    pub fn read_output(&self) -> Result<Vec<f32>> {
        blocking(self.read_output_async())
    }

    /// [`GpuGru::read_output`], awaited (the form a browser has).
    pub async fn read_output_async(&self) -> Result<Vec<f32>> {
        let (run, last) = self.current()?;
        let f = self.config.output_size();
        let mut out = vec![0.0; last.t_len * last.batch * f];
        for (b0, ws) in &run.chunks {
            let top = &ws.outs[self.config.num_layers - 1];
            let part = self
                .ctx
                .read_as_async(&ws.staging, &[(top, 0, last.t_len * ws.batch * f)], ws.half)
                .await?
                .concat();
            scatter_rows(&mut out, &part, last.t_len, last.batch, f, *b0, ws.batch);
        }
        Ok(if last.batch_first {
            swap_leading_axes(&out, last.t_len, last.batch, f)
        } else {
            out
        })
    }

    /// The last forward's final state h_n: [layers·dirs, B, H].
    pub fn read_h_n(&self) -> Result<Vec<f32>> {
        blocking(self.read_h_n_async())
    }

    /// [`GpuGru::read_h_n`], awaited.
    pub async fn read_h_n_async(&self) -> Result<Vec<f32>> {
        let (run, last) = self.current()?;
        let h = self.config.hidden_size;
        let ld = run.chunks[0].1.dirs.len();
        let mut h_n = vec![0.0; ld * last.batch * h];
        for (b0, ws) in &run.chunks {
            let bh = ws.batch * h;
            let parts: Vec<_> = ws
                .dirs
                .iter()
                .map(|d| (d.hs.raw(), d.hs.first() + last.t_len * bh, bh))
                .collect();
            let part = self
                .ctx
                .read_as_async(&ws.staging, &parts, ws.half)
                .await?
                .concat();
            scatter_rows(&mut h_n, &part, ld, last.batch, h, *b0, ws.batch);
        }
        Ok(h_n)
    }

    /// Backpropagates through the last forward. `d_output` has the output's layout;
    /// `d_h_n` is [layers·dirs, B, H] (zeros when `None`). Returns every gradient.
    pub fn backward(&mut self, d_output: &[f32], d_h_n: Option<&[f32]>) -> Result<GruGrads> {
        self.backward_on_device(d_output, d_h_n)?;
        self.read_grads()
    }

    /// [`GpuGru::backward`], its read-back awaited.
    pub async fn backward_async(
        &mut self,
        d_output: &[f32],
        d_h_n: Option<&[f32]>,
    ) -> Result<GruGrads> {
        self.backward_on_device(d_output, d_h_n)?;
        self.read_grads_async().await
    }

    /// Like [`GpuGru::backward`] but leaves the gradients on the device (one submission,
    /// no readback); read them with [`GpuGru::read_grads`].
    pub fn backward_on_device(&mut self, d_output: &[f32], d_h_n: Option<&[f32]>) -> Result<()> {
        if !self.precision.trains() {
            return Err(GruError::State(format!(
                "this layer stores its tensors as {}, for inference: it has no backward (train with f32 or mixed)",
                self.precision
            )));
        }
        let (run, last) = self.current()?;
        let cfg = self.config;
        let (t_len, batch, h) = (last.t_len, last.batch, cfg.hidden_size);
        let f = cfg.output_size();
        let ld = run.chunks[0].1.dirs.len();
        let dims = if last.batch_first {
            "[B, T, dirs*H]"
        } else {
            "[T, B, dirs*H]"
        };
        check_len("d_output", d_output.len(), &[t_len, batch, f], dims)?;
        if let Some(d) = d_h_n {
            check_len("d_h_n", d.len(), &[ld, batch, h], "[layers*dirs, B, H]")?;
        }
        let d_out: Cow<[f32]> = if last.batch_first {
            Cow::Owned(swap_leading_axes(d_output, batch, t_len, f))
        } else {
            Cow::Borrowed(d_output)
        };
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let q = &ctx.queue;
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("gru_backward"),
                });
            // Chunk 0 overwrites the parameter gradients, later chunks add to them.
            for (b0, ws) in &run.chunks {
                let (b0, bc) = (*b0, ws.batch);
                let bh = bc * h;
                q.write_buffer(
                    &ws.d_out_top,
                    0,
                    bytemuck::cast_slice(&gather_rows(&d_out, t_len, batch, f, b0, bc)),
                );
                let d_h_n = d_h_n.map(|d| gather_rows(d, ld, batch, h, b0, bc));
                let at = 4 * (t_len * bh) as u64;
                for (i, dir) in ws.dirs.iter().enumerate() {
                    match &d_h_n {
                        Some(d) => q.write_buffer(
                            dir.d_hs.raw(),
                            dir.d_hs.start() + at,
                            bytemuck::cast_slice(&d[i * bh..(i + 1) * bh]),
                        ),
                        None => {
                            let (buf, at) = (dir.d_hs.raw(), dir.d_hs.start() + at);
                            enc.clear_buffer(buf, at, Some(4 * bh as u64))
                        }
                    }
                }
                encode(&mut enc, "gru_backward", &ws.backward);
            }
            q.submit([enc.finish()]);
            Ok(())
        })?;
        self.grads_ready = true;
        Ok(())
    }

    /// The gradients of the last [`GpuGru::backward_on_device`].
    pub fn read_grads(&self) -> Result<GruGrads> {
        blocking(self.read_grads_async())
    }

    /// [`GpuGru::read_grads`], awaited.
    pub async fn read_grads_async(&self) -> Result<GruGrads> {
        let (run, last) = self.current()?;
        if !self.grads_ready {
            return Err(GruError::State(
                "no backward pass has run since the last forward".into(),
            ));
        }
        let (ctx, cfg) = (&self.ctx, self.config);
        let (t_len, batch, h) = (last.t_len, last.batch, cfg.hidden_size);
        let ld = run.chunks[0].1.dirs.len();
        let mut d_x = vec![0.0; t_len * batch * cfg.input_size];
        let mut d_h0 = vec![0.0; ld * batch * h];
        for (b0, ws) in &run.chunks {
            let bc = ws.batch;
            let mut parts = vec![(&ws.d_ins[0], 0, t_len * bc * cfg.input_size)];
            parts.extend(
                ws.dirs
                    .iter()
                    .map(|d| (d.d_hs.raw(), d.d_hs.first(), bc * h)),
            );
            let mut data = ctx.read_f32_async(&ws.staging, &parts).await?.into_iter();
            let part_x = data.next().unwrap_or_default();
            scatter_rows(&mut d_x, &part_x, t_len, batch, cfg.input_size, *b0, bc);
            scatter_rows(
                &mut d_h0,
                &data.collect::<Vec<_>>().concat(),
                ld,
                batch,
                h,
                *b0,
                bc,
            );
        }
        let grads = ctx
            .read_f32_async(&run.chunks[0].1.staging, &self.params.parts(true))
            .await?;
        let mut d_weights = weights_from_parts(cfg, grads.into_iter());
        d_weights.zero_biases_if_absent();
        let d_input = if last.batch_first {
            swap_leading_axes(&d_x, t_len, batch, cfg.input_size)
        } else {
            d_x
        };
        Ok(GruGrads {
            d_input,
            d_h0,
            d_weights,
        })
    }

    /// One timestep through every layer (a stacked `GRUCell`) for streaming inference:
    /// `x` [B, I] and state `h` [layers, B, H] in, the new state [layers, B, H] out; its
    /// last layer's slice is the output. Unidirectional stacks only.
    pub fn step(&mut self, x: &[f32], h: &[f32], batch: usize) -> Result<Vec<f32>> {
        validate_cell(&self.config, x, h, batch)?;
        self.forward(&SequenceInput::new(x, 1, batch).h0(h))?;
        self.read_h_n()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil;

    /// A process may exit right after dropping a layer (tests keep their context in a
    /// `static`); llvmpipe crashed in its exit handlers when its queue thread still ran.
    #[test]
    fn dropping_a_layer_leaves_the_queue_idle() {
        let Some(ctx) = testutil::ctx() else { return };
        let cfg = GruConfig::new(64, 96).layers(2);
        let mut g = GpuGru::new(ctx.clone(), &GruWeights::init(cfg, 0)).unwrap();
        let x = vec![0.1f32; 300 * 8 * 64];
        g.forward(&SequenceInput::new(&x, 300, 8)).unwrap();
        drop(g);
        let status = ctx.device.poll(wgpu::PollType::Poll).unwrap();
        assert!(status.is_queue_empty(), "work still queued: {status:?}");
    }
}
