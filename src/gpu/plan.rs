//! A workspace for one (T, B) with its forward and backward dispatch lists recorded: the
//! only place that joins the buffers (`workspace`) to the plans (`forward`, `backward`).

use crate::config::GruConfig;
use crate::error::Result;
pub(crate) use crate::gpu::backward::BackwardNeeds;
use crate::gpu::backward::{self, scratch_len};
use crate::gpu::context::GpuContext;
use crate::gpu::forward;
use crate::gpu::params::GpuParams;
use crate::gpu::workspace::Workspace;
use crate::precision::Precision;

/// The workspace of (T, B) with its lists, the backward's as `needs` says; with
/// `readback` a staging buffer for reading its outputs and gradients back (a layer's; a
/// model's plans read their logits instead).
pub(crate) fn workspace(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    (t_len, batch, readback): (usize, usize, bool),
    needs: BackwardNeeds,
) -> Result<Workspace> {
    // f16 parameters here are a mixed-precision stack's: f16 activations, f32 gradients.
    let precision = if params.half() {
        Precision::Mixed
    } else {
        Precision::F32
    };
    let scratch = scratch_len(ctx, cfg, t_len * batch);
    let shape = (t_len, batch, readback);
    let mut ws = Workspace::alloc(ctx, cfg, shape, scratch, precision)?;
    ws.forward = forward::plan(ctx, cfg, params, &ws)?;
    let (list, slices) = backward::plan(ctx, cfg, params, &ws, needs)?;
    ws.backward = list;
    ws.d_input_slices = slices;
    Ok(ws)
}

/// An f16 inference workspace of (T, B) ([`Workspace::half`]) with its forward list
/// (and `readback` as in [`workspace`]); `params` must be f16 too. No backward: f16
/// storage is for inference.
pub(crate) fn inference_workspace(
    ctx: &GpuContext,
    cfg: &GruConfig,
    params: &GpuParams,
    shape: (usize, usize, bool),
) -> Result<Workspace> {
    let scratch = forward::scratch_len(ctx, cfg, shape.0 * shape.1);
    let mut ws = Workspace::alloc(ctx, cfg, shape, scratch, Precision::F16)?;
    ws.forward = forward::plan(ctx, cfg, params, &ws)?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GruVariant;
    use crate::gpu::context::DeviceRequest;

    /// (paired, single) step dispatches of both passes: those at a step slot (a dynamic
    /// offset), with a grid z of 2 (both directions) or 1.
    fn step_dispatches(ctx: &GpuContext, cfg: &GruConfig) -> (usize, usize) {
        let params = GpuParams::new(ctx, cfg).unwrap();
        let ws = workspace(ctx, cfg, &params, (6, 3, true), BackwardNeeds::layer(false)).unwrap();
        let steps = ws.forward.iter().chain(&ws.backward);
        let steps: Vec<_> = steps.filter(|d| d.offset.is_some()).collect();
        let paired = steps.iter().filter(|d| d.groups[2] == 2).count();
        (paired, steps.len() - paired)
    }

    /// Both directions of a bidirectional layer share each step dispatch (half as many),
    /// unless the device is asked not to pair them; a one-way layer has nothing to pair.
    #[test]
    fn bidirectional_layers_run_both_directions_in_each_step_dispatch() {
        let Ok(single) = GpuContext::new(&DeviceRequest {
            pair_directions: false,
            ..Default::default()
        }) else {
            assert!(std::env::var_os("CI").is_none(), "no adapter under CI");
            return;
        };
        let Some(ctx) = crate::gpu::ops::testutil::ctx() else {
            return;
        };
        for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
            let cfg = GruConfig::new(5, 8).layers(2).variant(variant);
            let (none, one_way) = step_dispatches(&ctx, &cfg);
            assert_eq!(none, 0, "{variant:?}");
            let cfg = cfg.bidirectional(true);
            let (paired, rest) = step_dispatches(&ctx, &cfg);
            assert_eq!((paired, rest), (one_way, 0), "{variant:?}");
            assert_eq!(
                step_dispatches(&single, &cfg),
                (0, 2 * one_way),
                "{variant:?}"
            );
        }
    }
}
