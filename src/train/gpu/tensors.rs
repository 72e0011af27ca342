//! The model's parameter tensors on the device: value, gradient and the optimiser's two
//! moments each, and their transfers to and from the host.

use crate::config::GruConfig;
use crate::error::{check_len, Result};
use crate::gpu::bind::Range;
use crate::gpu::context::GpuContext;
use crate::gpu::flat::{Flat, Layout};
use crate::gpu::ops::optim::UpdateTensor;
use crate::gpu::params::GpuParams;
use crate::model::{ModelConfig, ModelParams, ParamInfo, ParamRole};

/// One parameter tensor on the device with its gradient and optimiser moments, each a
/// range of its role's flat buffer.
pub(crate) struct GpuTensor {
    pub info: ParamInfo,
    /// The f32 value (the master weights in mixed precision).
    pub value: Range,
    /// Mixed precision: its f16 copy, which the forward and backward kernels read.
    pub value16: Option<Range>,
    pub grad: Range,
    pub m: Range,
    pub v: Range,
}

impl GpuTensor {
    /// What the model's kernels read: the f16 copy in mixed precision, else the value.
    pub(crate) fn kernel_value(&self) -> &Range {
        self.value16.as_ref().unwrap_or(&self.value)
    }
}

/// The model's flat buffers: every tensor's value, gradient and moments.
pub(crate) struct Flats {
    pub layout: Layout,
    /// The embedding table's segment, where it has the lazy update instead of the dense
    /// one (`super::lazy`; a table the dense update takes shares the others' segment).
    pub lazy: Option<usize>,
    pub value: Flat,
    /// Mixed precision: the f16 copy of `value`, in the same layout.
    pub value16: Option<Flat>,
    pub grad: Flat,
    pub m: Flat,
    pub v: Flat,
}

impl Flats {
    /// Segment `s` of every role, as the update's one tensor of `len` values.
    pub(crate) fn segment(&self, s: usize) -> UpdateTensor<'_> {
        UpdateTensor {
            len: self.layout.segments[s],
            value: &self.value.buffers[s],
            grad: &self.grad.buffers[s],
            m: &self.m.buffers[s],
            v: &self.v.buffers[s],
        }
    }
}

/// The GRU stack on the device, one layer each.
pub(crate) type Layers = Vec<(GruConfig, GpuParams)>;

/// Every parameter tensor of `infos` in flat buffers (zeroed), and the GRU stack's
/// layers (one config each) over their ranges; with `lazy_table` an embedding table
/// gets a segment of its own for the lazy update; with `mixed` the values get an f16
/// copy, which the layers read.
pub(crate) fn allocate(
    ctx: &GpuContext,
    layer_configs: &[GruConfig],
    infos: &[ParamInfo],
    (lazy_table, mixed): (bool, bool),
) -> Result<(Flats, Vec<GpuTensor>, Layers)> {
    let lens: Vec<usize> = infos.iter().map(ParamInfo::len).collect();
    let table = infos
        .iter()
        .position(|i| i.role == ParamRole::Embedding)
        .filter(|_| lazy_table);
    let layout = Layout::for_device_as(ctx, &lens, table, mixed);
    let value16 = mixed
        .then(|| Flat::new_as(ctx, "model_values_f16", &layout, true))
        .transpose()?;
    let flats = Flats {
        lazy: table.map(|i| layout.segment_of(i)),
        value: Flat::new(ctx, "model_values", &layout)?,
        value16,
        grad: Flat::new(ctx, "model_grads", &layout)?,
        m: Flat::new(ctx, "model_adam_m", &layout)?,
        v: Flat::new(ctx, "model_adam_v", &layout)?,
        layout,
    };
    let tensors: Vec<GpuTensor> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let n = info.len();
            let l = &flats.layout;
            GpuTensor {
                info: info.clone(),
                value: flats.value.range(l, i, n),
                value16: flats.value16.as_ref().map(|f| f.range(l, i, n)),
                grad: flats.grad.range(l, i, n),
                m: flats.m.range(l, i, n),
                v: flats.v.range(l, i, n),
            }
        })
        .collect();
    let gru: Vec<&GpuTensor> = tensors
        .iter()
        .filter(|t| {
            !matches!(
                t.info.role,
                ParamRole::Embedding | ParamRole::DenseWeight | ParamRole::DenseBias
            )
        })
        .collect();
    let mut layers = Vec::new();
    let mut at = 0;
    for lc in layer_configs {
        let n = 4 * lc.num_directions();
        let mine = gru.get(at..at + n).ok_or_else(|| {
            crate::error::GruError::State("GRU tensors out of step with the layers".into())
        })?;
        let values: Vec<Range> = mine.iter().map(|t| t.kernel_value().clone()).collect();
        let grads: Vec<Range> = mine.iter().map(|t| t.grad.clone()).collect();
        layers.push((*lc, GpuParams::within(ctx, lc, &values, &grads)?));
        at += n;
    }
    Ok((flats, tensors, layers))
}

/// One buffer of every tensor (`pick`: value, gradient or a moment), read back.
pub(crate) async fn read(
    ctx: &GpuContext,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> &Range,
) -> Result<Vec<Vec<f32>>> {
    let total: usize = tensors.iter().map(|t| t.info.len()).sum();
    let staging = ctx.staging(total)?;
    let parts: Vec<_> = tensors
        .iter()
        .map(|t| {
            let r = pick(t);
            (&r.buffer, r.first(), r.len)
        })
        .collect();
    ctx.read_f32_async(&staging, &parts).await
}

/// One buffer of every tensor, read back as the parameters of `config`.
pub(crate) async fn read_params(
    ctx: &GpuContext,
    config: ModelConfig,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> &Range,
) -> Result<ModelParams> {
    let data = read(ctx, tensors, pick).await?;
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
    pick: impl Fn(&GpuTensor) -> &Range,
) -> Result<()> {
    for (t, d) in tensors.iter().zip(data) {
        let shape = format!("{:?}", t.info.shape);
        check_len(&t.info.name, d.len(), &t.info.shape, &shape)?;
    }
    for (t, d) in tensors.iter().zip(data) {
        let r = pick(t);
        ctx.queue
            .write_buffer(&r.buffer, r.offset, bytemuck::cast_slice(d));
    }
    Ok(())
}
