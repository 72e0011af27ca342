//! A workspace for one (T, B) with its forward and backward dispatch lists recorded: the
//! only place that joins the buffers (`workspace`) to the plans (`forward`, `backward`).

use crate::config::GruConfig;
use crate::error::Result;
use crate::gpu::backward::{self, scratch_len};
use crate::gpu::context::GpuContext;
use crate::gpu::forward;
use crate::gpu::params::GpuParams;
use crate::gpu::workspace::Workspace;

/// `accumulate_grads`: this workspace is a later batch chunk whose parameter gradients
/// add to those of the chunks before it.
pub(crate) fn workspace(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    t_len: usize,
    batch: usize,
    accumulate_grads: bool,
) -> Result<Workspace> {
    let mut ws = Workspace::alloc(ctx, cfg, t_len, batch, scratch_len(cfg, t_len * batch))?;
    ws.forward = forward::plan(ctx, cfg, params, &ws)?;
    ws.backward = backward::plan(ctx, cfg, params, &ws, accumulate_grads)?;
    Ok(ws)
}
