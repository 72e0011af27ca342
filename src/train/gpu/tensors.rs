//! The model's parameter tensors on the device: value, gradient and the optimiser's two
//! moments each, and their transfers to and from the host.

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::optim::UpdateTensor;
use crate::gpu::params::GpuParams;
use crate::model::{ModelConfig, ModelParams, ParamInfo, ParamRole};

/// One parameter tensor on the device with its gradient and optimiser moments.
pub(crate) struct GpuTensor {
    pub info: ParamInfo,
    pub value: wgpu::Buffer,
    pub grad: wgpu::Buffer,
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

impl GpuTensor {
    pub(crate) fn update(&self, index: usize) -> UpdateTensor<'_> {
        UpdateTensor {
            index,
            len: self.info.len(),
            value: &self.value,
            grad: &self.grad,
            m: &self.m,
            v: &self.v,
        }
    }
}

/// Every parameter tensor of `infos` on the device: the GRU's are the layers' own
/// buffers (value and gradient), the embedding's and the head's new; moments for all.
pub(crate) fn allocate(
    ctx: &GpuContext,
    layers: &[(GruConfig, GpuParams)],
    infos: &[ParamInfo],
) -> Result<Vec<GpuTensor>> {
    let mut gru = layers.iter().flat_map(|(_, p)| {
        p.dirs.iter().flat_map(|d| {
            [
                (d.w_ih.clone(), d.d_w_ih.clone()),
                (d.w_hh.clone(), d.d_w_hh.clone()),
                (d.b_ih.clone(), d.d_b_ih.clone()),
                (d.b_hh.clone(), d.d_b_hh.clone()),
            ]
        })
    });
    let mut tensors = Vec::new();
    for info in infos {
        let n = info.len();
        let (value, grad) = match info.role {
            ParamRole::Embedding | ParamRole::DenseWeight | ParamRole::DenseBias => (
                ctx.storage(&info.name, n)?,
                ctx.storage(&format!("d_{}", info.name), n)?,
            ),
            _ => gru
                .next()
                .ok_or_else(|| GruError::State("GRU tensors out of step".into()))?,
        };
        tensors.push(GpuTensor {
            info: info.clone(),
            value,
            grad,
            m: ctx.storage(&format!("m_{}", info.name), n)?,
            v: ctx.storage(&format!("v_{}", info.name), n)?,
        });
    }
    Ok(tensors)
}

/// One buffer of every tensor (`pick`: value, gradient or a moment), read back.
pub(crate) fn read(
    ctx: &GpuContext,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> &wgpu::Buffer,
) -> Result<Vec<Vec<f32>>> {
    let total: usize = tensors.iter().map(|t| t.info.len()).sum();
    let staging = ctx.staging(total)?;
    let parts: Vec<_> = tensors.iter().map(|t| (pick(t), 0, t.info.len())).collect();
    ctx.read_f32(&staging, &parts)
}

/// One buffer of every tensor, read back as the parameters of `config`.
pub(crate) fn read_params(
    ctx: &GpuContext,
    config: ModelConfig,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> &wgpu::Buffer,
) -> Result<ModelParams> {
    let data = read(ctx, tensors, pick)?;
    let mut p = ModelParams::zeros(config);
    for (dst, src) in p.tensors_mut().into_iter().zip(data) {
        *dst = src;
    }
    Ok(p)
}

/// Writes `data` (one slice per tensor, lengths checked first) into the buffers `pick`
/// chooses.
pub(crate) fn write(
    ctx: &GpuContext,
    tensors: &[GpuTensor],
    data: &[&[f32]],
    pick: impl Fn(&GpuTensor) -> &wgpu::Buffer,
) -> Result<()> {
    for (t, d) in tensors.iter().zip(data) {
        let shape = format!("{:?}", t.info.shape);
        check_len(&t.info.name, d.len(), &t.info.shape, &shape)?;
    }
    for (t, d) in tensors.iter().zip(data) {
        ctx.queue.write_buffer(pick(t), 0, bytemuck::cast_slice(d));
    }
    Ok(())
}
