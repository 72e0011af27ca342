//! `GpuGru`: the GRU stack on a device. Owns its parameter buffers and a small cache of
//! per-shape workspaces; each pass writes its inputs, replays a recorded dispatch list in
//! one submission and reads nothing back until asked.

use std::sync::Arc;

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::encode;
use crate::gpu::params::{weights_from_parts, GpuParams};
use crate::gpu::workspace::Workspace;
use crate::sequence::{swap_leading_axes, GruGrads, SequenceInput};
use crate::weights::GruWeights;

/// Workspaces kept per layer; the oldest shape is dropped past this.
const MAX_WORKSPACES: usize = 4;

#[derive(Debug, Clone, Copy)]
struct LastForward {
    t_len: usize,
    batch: usize,
    batch_first: bool,
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
    params: GpuParams,
    workspaces: Vec<Workspace>,
    last: Option<LastForward>,
}

impl std::fmt::Debug for GpuGru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGru").field("config", &self.config).field("device", &self.ctx).finish()
    }
}

impl GpuGru {
    /// Allocates the parameter buffers on `ctx` and uploads `weights`.
    pub fn new(ctx: Arc<GpuContext>, weights: &GruWeights) -> Result<Self> {
        weights.config.validate()?;
        let config = weights.config;
        let params = ctx.scoped(|| GpuParams::new(&ctx, &config))?;
        let mut gru = GpuGru { ctx, config, params, workspaces: Vec::new(), last: None };
        gru.set_weights(weights)?;
        Ok(gru)
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    /// The device the layer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Replaces every parameter; `weights` must have this layer's configuration.
    pub fn set_weights(&mut self, weights: &GruWeights) -> Result<()> {
        if weights.config != self.config {
            return Err(GruError::shape("weights config", format!("{:?}", self.config), format!("{:?}", weights.config)));
        }
        for id in weights.tensor_ids() {
            let shape = weights.shape_of(id);
            check_len(&id.name(), weights.tensor(id).len(), &shape, &format!("{shape:?}"))?;
        }
        self.params.upload(&self.ctx, weights);
        Ok(())
    }

    /// Reads the parameters back from the device.
    pub fn read_weights(&mut self) -> Result<GruWeights> {
        let template = GruWeights::zeros(self.config);
        let total: usize = template.dirs.iter().map(|d| d.w_ih.len() + d.w_hh.len() + 6 * self.config.hidden_size).sum();
        let staging = self.ctx.buffer(
            "weights_staging",
            4 * total as u64,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let parts = self.params.parts(&template, false);
        let data = self.ctx.read_f32(&staging, &parts)?;
        Ok(weights_from_parts(self.config, data.into_iter()))
    }

    fn workspace_index(&mut self, t_len: usize, batch: usize) -> Result<usize> {
        if let Some(i) = self.workspaces.iter().position(|w| w.t_len == t_len && w.batch == batch) {
            return Ok(i);
        }
        let ws = self.ctx.scoped(|| Workspace::new(&self.ctx, &self.config, &self.params, t_len, batch))?;
        if self.workspaces.len() == MAX_WORKSPACES {
            self.workspaces.remove(0);
        }
        self.workspaces.push(ws);
        Ok(self.workspaces.len() - 1)
    }

    fn current(&self) -> Result<(&Workspace, LastForward)> {
        let last = self.last.ok_or_else(|| GruError::State("no forward pass has run on this layer yet".into()))?;
        let ws = self
            .workspaces
            .iter()
            .find(|w| w.t_len == last.t_len && w.batch == last.batch)
            .ok_or_else(|| GruError::State("the forward pass's workspace was evicted; run forward again".into()))?;
        Ok((ws, last))
    }

    /// Runs the whole stack over `input` in one submission. The results stay on the
    /// device: read them with [`GpuGru::read_output`] and [`GpuGru::read_h_n`], or call
    /// [`GpuGru::backward`].
    pub fn forward(&mut self, input: &SequenceInput) -> Result<()> {
        input.validate(&self.config)?;
        let (t_len, batch) = (input.seq_len, input.batch);
        let idx = self.workspace_index(t_len, batch)?;
        let ctx = &self.ctx;
        let ws = &self.workspaces[idx];
        let h = self.config.hidden_size;
        let bh = batch * h;
        ctx.scoped(|| {
            let q = &ctx.queue;
            if input.batch_first {
                let x = swap_leading_axes(input.data, batch, t_len, self.config.input_size);
                q.write_buffer(&ws.x, 0, bytemuck::cast_slice(&x));
            } else {
                q.write_buffer(&ws.x, 0, bytemuck::cast_slice(input.data));
            }
            let lengths: Vec<u32> = (0..batch).map(|b| input.length_of(b) as u32).collect();
            q.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lengths));
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gru_forward") });
            for (i, dir) in ws.dirs.iter().enumerate() {
                match input.h0 {
                    Some(h0) => q.write_buffer(&dir.hs, 0, bytemuck::cast_slice(&h0[i * bh..(i + 1) * bh])),
                    None => enc.clear_buffer(&dir.hs, 0, Some(4 * bh as u64)),
                }
            }
            encode(&mut enc, "gru_forward", &ws.forward);
            q.submit([enc.finish()]);
            Ok(())
        })?;
        self.last = Some(LastForward { t_len, batch, batch_first: input.batch_first });
        Ok(())
    }

    /// The last forward's output: [T, B, dirs·H], or [B, T, dirs·H] for batch-first input.
    pub fn read_output(&self) -> Result<Vec<f32>> {
        let (ws, last) = self.current()?;
        let f = self.config.output_size();
        let top = &ws.outs[self.config.num_layers - 1];
        let mut data = self.ctx.read_f32(&ws.staging, &[(top, 0, last.t_len * last.batch * f)])?;
        let out = data.pop().unwrap_or_default();
        Ok(if last.batch_first { swap_leading_axes(&out, last.t_len, last.batch, f) } else { out })
    }

    /// The last forward's final state h_n: [layers·dirs, B, H].
    pub fn read_h_n(&self) -> Result<Vec<f32>> {
        let (ws, last) = self.current()?;
        let bh = last.batch * self.config.hidden_size;
        let parts: Vec<_> = ws.dirs.iter().map(|d| (&d.hs, last.t_len * bh, bh)).collect();
        Ok(self.ctx.read_f32(&ws.staging, &parts)?.concat())
    }

    /// Backpropagates through the last forward. `d_output` has the output's layout;
    /// `d_h_n` is [layers·dirs, B, H] (zeros when `None`). Returns every gradient.
    pub fn backward(&mut self, d_output: &[f32], d_h_n: Option<&[f32]>) -> Result<GruGrads> {
        let (ws, last) = self.current()?;
        let cfg = self.config;
        let (t_len, batch, h) = (last.t_len, last.batch, cfg.hidden_size);
        let f = cfg.output_size();
        let bh = batch * h;
        let dims = if last.batch_first { "[B, T, dirs*H]" } else { "[T, B, dirs*H]" };
        check_len("d_output", d_output.len(), &[t_len, batch, f], dims)?;
        if let Some(d) = d_h_n {
            check_len("d_h_n", d.len(), &[ws.dirs.len(), batch, h], "[layers*dirs, B, H]")?;
        }
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let q = &ctx.queue;
            if last.batch_first {
                q.write_buffer(&ws.d_out_top, 0, bytemuck::cast_slice(&swap_leading_axes(d_output, batch, t_len, f)));
            } else {
                q.write_buffer(&ws.d_out_top, 0, bytemuck::cast_slice(d_output));
            }
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gru_backward") });
            let at = 4 * (t_len * bh) as u64;
            for (i, dir) in ws.dirs.iter().enumerate() {
                match d_h_n {
                    Some(d) => q.write_buffer(&dir.d_hs, at, bytemuck::cast_slice(&d[i * bh..(i + 1) * bh])),
                    None => enc.clear_buffer(&dir.d_hs, at, Some(4 * bh as u64)),
                }
            }
            encode(&mut enc, "gru_backward", &ws.backward);
            q.submit([enc.finish()]);
            Ok(())
        })?;
        let template = GruWeights::zeros(cfg);
        let mut parts = vec![(&ws.d_ins[0], 0, t_len * batch * cfg.input_size)];
        parts.extend(ws.dirs.iter().map(|d| (&d.d_hs, 0, bh)));
        parts.extend(self.params.parts(&template, true));
        let mut data = ctx.read_f32(&ws.staging, &parts)?.into_iter();
        let d_x = data.next().unwrap_or_default();
        let d_h0: Vec<f32> = data.by_ref().take(ws.dirs.len()).collect::<Vec<_>>().concat();
        let mut d_weights = weights_from_parts(cfg, data);
        if !cfg.bias {
            for g in &mut d_weights.dirs {
                g.b_ih.fill(0.0);
                g.b_hh.fill(0.0);
            }
        }
        let d_input = if last.batch_first { swap_leading_axes(&d_x, t_len, batch, cfg.input_size) } else { d_x };
        Ok(GruGrads { d_input, d_h0, d_weights })
    }

    /// One timestep through every layer (a stacked `GRUCell`) for streaming inference:
    /// `x` [B, I] and state `h` [layers, B, H] in, the new state [layers, B, H] out; its
    /// last layer's slice is the output. Unidirectional stacks only.
    pub fn step(&mut self, x: &[f32], h: &[f32], batch: usize) -> Result<Vec<f32>> {
        if self.config.bidirectional {
            return Err(GruError::Config(
                "a single-step cell cannot be bidirectional: the reverse direction needs the whole sequence".into(),
            ));
        }
        let cfg = self.config;
        check_len("cell input x", x.len(), &[batch, cfg.input_size], "[B, I]")?;
        check_len("cell state h", h.len(), &[cfg.num_layers, batch, cfg.hidden_size], "[layers, B, H]")?;
        self.forward(&SequenceInput::new(x, 1, batch).h0(h))?;
        self.read_h_n()
    }
}
