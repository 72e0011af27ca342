//! The model's parameter tensors on the device: value, gradient and the optimiser's two
//! moments each (values alone for f16 inference), and their transfers to and from the
//! host.

use crate::config::GruConfig;
use crate::error::{check_len, GruError, Result};
use crate::gpu::bind::Range;
use crate::gpu::context::GpuContext;
use crate::gpu::flat::{Flat, Layout};
use crate::gpu::ops::optim::UpdateTensor;
use crate::gpu::params::GpuParams;
use crate::model::{ModelConfig, ModelParams, ParamInfo, ParamRole};
use crate::precision::{device_bytes, Precision};

/// One parameter tensor on the device with its gradient and optimiser moments, each a
/// range of its role's flat buffer.
pub(crate) struct GpuTensor {
    pub info: ParamInfo,
    /// The value: f32 (the master weights in mixed precision), or f16 in an f16
    /// inference trainer.
    pub value: Range,
    /// Mixed precision: its f16 copy, which the forward and backward kernels read.
    pub value16: Option<Range>,
    /// Gradient and moments; none in an f16 inference trainer.
    pub train: Option<TrainRanges>,
}

/// A tensor's gradient and the optimiser's two moments (f32).
pub(crate) struct TrainRanges {
    pub grad: Range,
    pub m: Range,
    pub v: Range,
}

impl GpuTensor {
    /// What the model's kernels read: the f16 copy in mixed precision, else the value.
    pub(crate) fn kernel_value(&self) -> &Range {
        self.value16.as_ref().unwrap_or(&self.value)
    }

    /// The gradient and moments, or the error of an inference-only trainer.
    pub(crate) fn train(&self) -> Result<&TrainRanges> {
        self.train.as_ref().ok_or_else(inference_only)
    }
}

/// What a training call on an f16 inference trainer returns.
pub(crate) fn inference_only() -> GruError {
    GruError::State(
        "this trainer stores f16 for inference: it predicts, evaluates and generates, but trains only in f32 or mixed precision".into(),
    )
}

/// The model's flat buffers: every tensor's value, gradient and moments.
pub(crate) struct Flats {
    pub layout: Layout,
    /// The embedding table's segment, where it has the lazy update instead of the dense
    /// one (`super::lazy`; a table the dense update takes shares the others' segment).
    pub lazy: Option<usize>,
    /// f32, or f16 in an f16 inference trainer.
    pub value: Flat,
    /// Mixed precision: the f16 copy of `value`, in the same layout.
    pub value16: Option<Flat>,
    /// Gradients and moments; none in an f16 inference trainer.
    pub train: Option<TrainFlats>,
}

/// The flat gradient and moments (f32).
pub(crate) struct TrainFlats {
    pub grad: Flat,
    pub m: Flat,
    pub v: Flat,
}

impl Flats {
    /// Segment `s` of every role, as the update's one tensor of `len` values.
    pub(crate) fn segment(&self, s: usize) -> Result<UpdateTensor<'_>> {
        let t = self.train()?;
        Ok(UpdateTensor {
            len: self.layout.segments[s],
            value: &self.value.buffers[s],
            grad: &t.grad.buffers[s],
            m: &t.m.buffers[s],
            v: &t.v.buffers[s],
            copy: self
                .value16
                .as_ref()
                .map(|c| (&c.buffers[s] as &dyn crate::gpu::bind::Bind, c.half)),
        })
    }

    /// The gradients and moments, or the error of an inference-only trainer.
    pub(crate) fn train(&self) -> Result<&TrainFlats> {
        self.train.as_ref().ok_or_else(inference_only)
    }
}

/// The GRU stack on the device, one layer each.
pub(crate) type Layers = Vec<(GruConfig, GpuParams)>;

/// Every parameter tensor of `infos` in flat buffers (zeroed), and the GRU stack's
/// layers (one config each) over their ranges; with `lazy_table` an embedding table
/// gets a segment of its own for the lazy update. In mixed precision the values get an
/// f16 copy, which the layers read; in f16 the values themselves are f16 and there are
/// no gradients or moments (inference).
pub(crate) fn allocate(
    ctx: &GpuContext,
    layer_configs: &[GruConfig],
    infos: &[ParamInfo],
    (lazy_table, precision): (bool, Precision),
) -> Result<(Flats, Vec<GpuTensor>, Layers)> {
    let lens: Vec<usize> = infos.iter().map(ParamInfo::len).collect();
    let table = infos
        .iter()
        .position(|i| i.role == ParamRole::Embedding)
        .filter(|_| lazy_table);
    let layout = Layout::for_device_as(ctx, &lens, table, precision.is_half());
    let value16 = (precision == Precision::Mixed)
        .then(|| Flat::new_as(ctx, "model_values_f16", &layout, true))
        .transpose()?;
    let train = precision
        .trains()
        .then(|| -> Result<TrainFlats> {
            Ok(TrainFlats {
                grad: Flat::new(ctx, "model_grads", &layout)?,
                m: Flat::new(ctx, "model_adam_m", &layout)?,
                v: Flat::new(ctx, "model_adam_v", &layout)?,
            })
        })
        .transpose()?;
    let value = match precision {
        Precision::F16 => Flat::new_as(ctx, "model_values_f16", &layout, true)?,
        _ => Flat::new(ctx, "model_values", &layout)?,
    };
    let flats = Flats {
        lazy: table.map(|i| layout.segment_of(i)),
        value,
        value16,
        train,
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
                train: flats.train.as_ref().map(|t| TrainRanges {
                    grad: t.grad.range(l, i, n),
                    m: t.m.range(l, i, n),
                    v: t.v.range(l, i, n),
                }),
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
        // An inference stack's gradient ranges are its values, which nothing binds: its
        // plans record no backward (as `GpuParams::new_f16` without gradients).
        let grads: Vec<Range> = match mine.iter().map(|t| t.train()).collect::<Result<Vec<_>>>() {
            Ok(t) => t.iter().map(|t| t.grad.clone()).collect(),
            Err(_) => values.clone(),
        };
        layers.push((*lc, GpuParams::within(ctx, lc, &values, &grads)?));
        at += n;
    }
    Ok((flats, tensors, layers))
}

/// One buffer of every tensor (`pick`: value, gradient or a moment), read back as f32
/// (f16 values widened).
pub(crate) async fn read(
    ctx: &GpuContext,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> Result<&Range>,
) -> Result<Vec<Vec<f32>>> {
    let ranges = tensors.iter().map(pick).collect::<Result<Vec<_>>>()?;
    let half = ranges.first().is_some_and(|r| r.half);
    // Every tensor of an f16 part may be widened by a value at each end.
    let total: usize = ranges.iter().map(|r| r.len + 2).sum();
    let staging = ctx.staging(total)?;
    let parts: Vec<_> = ranges
        .iter()
        .map(|r| (&r.buffer, r.first(), r.len))
        .collect();
    ctx.read_as_async(&staging, &parts, half).await
}

/// One buffer of every tensor, read back as the parameters of `config`.
pub(crate) async fn read_params(
    ctx: &GpuContext,
    config: ModelConfig,
    tensors: &[GpuTensor],
    pick: impl Fn(&GpuTensor) -> Result<&Range>,
) -> Result<ModelParams> {
    let data = read(ctx, tensors, pick).await?;
    let mut p = ModelParams::zeros(config);
    for (dst, src) in p.tensors_mut().into_iter().zip(data) {
        *dst = src;
    }
    Ok(p)
}

/// Writes `data` (one slice per tensor, lengths checked first; rounded where the
/// buffer is f16) into the buffers `pick` chooses.
pub(crate) fn write(
    ctx: &GpuContext,
    tensors: &[GpuTensor],
    data: &[&[f32]],
    pick: impl Fn(&GpuTensor) -> Result<&Range>,
) -> Result<()> {
    for (t, d) in tensors.iter().zip(data) {
        let shape = format!("{:?}", t.info.shape);
        check_len(&t.info.name, d.len(), &t.info.shape, &shape)?;
    }
    let ranges = tensors.iter().map(pick).collect::<Result<Vec<_>>>()?;
    for (r, d) in ranges.iter().zip(data) {
        ctx.queue
            .write_buffer(&r.buffer, r.offset, &device_bytes(d, r.half));
    }
    Ok(())
}
