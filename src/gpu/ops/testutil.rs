//! What the op tests share: the device, upload, run, read back, compare.

use std::sync::Arc;

use crate::gpu::context::{DeviceRequest, GpuContext};
use crate::gpu::ops::dispatch::{encode, Dispatch};

/// The device `request` opens; under `CI` a missing one fails the test instead of
/// skipping it.
fn opened(request: &DeviceRequest) -> Option<Arc<GpuContext>> {
    match GpuContext::new(request) {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but no GPU adapter: {e}")
        }
        Err(_) => None,
    }
}

/// The default device.
pub(crate) fn ctx() -> Option<Arc<GpuContext>> {
    opened(&DeviceRequest::default())
}

/// The device with the GPU builds forced on (`DeviceRequest::split_steps`), so that a
/// software adapter runs what GPUs run.
pub(crate) fn gpu_builds_ctx() -> Option<Arc<GpuContext>> {
    opened(&DeviceRequest {
        split_steps: Some(true),
        ..Default::default()
    })
}

/// The device with the portable builds only (`DeviceRequest::subgroup_kernels` off).
pub(crate) fn portable_ctx() -> Option<Arc<GpuContext>> {
    opened(&DeviceRequest {
        subgroup_kernels: false,
        ..Default::default()
    })
}

pub(crate) fn run(ctx: &GpuContext, list: &[Dispatch]) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    encode(&mut enc, "test", list);
    ctx.queue.submit([enc.finish()]);
}

pub(crate) fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    let b = ctx.storage("test", data.len()).unwrap();
    ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
    b
}

pub(crate) fn read(ctx: &GpuContext, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
    let staging = ctx.staging(len).unwrap();
    ctx.read_f32(&staging, &[(b, 0, len)]).unwrap().concat()
}

#[track_caller]
pub(crate) fn close(got: &[f32], want: &[f64], what: &str) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            ((*g as f64) - w).abs() <= 1e-5 * scale,
            "{what}: index {i}: got {g} want {w}"
        );
    }
}
