//! One `include_str!` per shader file, the binding layout of each entry point, and the
//! pipeline cache (keyed by kernel and override constants) that `GpuContext::pipeline`
//! fills: shader modules compile once per device, pipelines once per (kernel, constants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A kernel source file under `shaders/`; the file name is the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Gemm,
    Colsum,
    Transpose,
    ReduceSlices,
    StepFwd,
    StepBwd,
    Embedding,
    Dropout,
    Loss,
    Metrics,
    GradNorm,
    Optimizer,
    MaxNorm,
    StridedCopy,
    Sample,
}

/// Every shader file, for tests that walk them all.
#[cfg(test)]
pub(crate) const ALL_SHADERS: [Shader; 15] = [
    Shader::Gemm,
    Shader::Colsum,
    Shader::Transpose,
    Shader::ReduceSlices,
    Shader::StepFwd,
    Shader::StepBwd,
    Shader::Embedding,
    Shader::Dropout,
    Shader::Loss,
    Shader::Metrics,
    Shader::GradNorm,
    Shader::Optimizer,
    Shader::MaxNorm,
    Shader::StridedCopy,
    Shader::Sample,
];

impl Shader {
    pub(crate) fn source(self) -> &'static str {
        match self {
            Shader::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Shader::Colsum => include_str!("../../shaders/colsum.wgsl"),
            Shader::Transpose => include_str!("../../shaders/transpose.wgsl"),
            Shader::ReduceSlices => include_str!("../../shaders/reduce_slices.wgsl"),
            Shader::StepFwd => include_str!("../../shaders/gru_step_fwd.wgsl"),
            Shader::StepBwd => include_str!("../../shaders/gru_step_bwd.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::Dropout => include_str!("../../shaders/dropout.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Metrics => include_str!("../../shaders/metrics.wgsl"),
            Shader::GradNorm => include_str!("../../shaders/grad_norm.wgsl"),
            Shader::Optimizer => include_str!("../../shaders/optimizer.wgsl"),
            Shader::MaxNorm => include_str!("../../shaders/max_norm.wgsl"),
            Shader::StridedCopy => include_str!("../../shaders/strided_copy.wgsl"),
            Shader::Sample => include_str!("../../shaders/sample.wgsl"),
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            Shader::Gemm => "gemm",
            Shader::Colsum => "colsum",
            Shader::Transpose => "transpose",
            Shader::ReduceSlices => "reduce_slices",
            Shader::StepFwd => "gru_step_fwd",
            Shader::StepBwd => "gru_step_bwd",
            Shader::Embedding => "embedding",
            Shader::Dropout => "dropout",
            Shader::Loss => "loss",
            Shader::Metrics => "metrics",
            Shader::GradNorm => "grad_norm",
            Shader::Optimizer => "optimizer",
            Shader::MaxNorm => "max_norm",
            Shader::StridedCopy => "strided_copy",
            Shader::Sample => "sample",
        }
    }
}

/// An entry point of a shader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Gemm,
    Colsum,
    Transpose,
    ReduceSlices,
    StepFused,
    StepGates,
    StepCandidate,
    BwdGates,
    BwdState,
    BwdCandidate,
    BwdRz,
    EmbedFwd,
    EmbedBwd,
    Dropout,
    CrossEntropy,
    BinaryCrossEntropy,
    MeanSquaredError,
    MetricsAdd,
    SumSq,
    ClipScale,
    Sgd,
    Adam,
    MaxNormRows,
    MaxNormPairs,
    StridedCopy,
    Sample,
}

/// How an entry point binds slot `i` of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Uniform,
    /// Uniform at a dynamic offset: the step index.
    StepUniform,
    Read,
    ReadWrite,
}

use Slot::{Read as R, ReadWrite as W, StepUniform as S, Uniform as U};

impl Kernel {
    pub(crate) fn shader(self) -> Shader {
        match self {
            Kernel::Gemm => Shader::Gemm,
            Kernel::Colsum => Shader::Colsum,
            Kernel::Transpose => Shader::Transpose,
            Kernel::ReduceSlices => Shader::ReduceSlices,
            Kernel::StepFused | Kernel::StepGates | Kernel::StepCandidate => Shader::StepFwd,
            Kernel::BwdGates | Kernel::BwdState | Kernel::BwdCandidate | Kernel::BwdRz => {
                Shader::StepBwd
            }
            Kernel::EmbedFwd | Kernel::EmbedBwd => Shader::Embedding,
            Kernel::Dropout => Shader::Dropout,
            Kernel::CrossEntropy | Kernel::BinaryCrossEntropy | Kernel::MeanSquaredError => {
                Shader::Loss
            }
            Kernel::MetricsAdd => Shader::Metrics,
            Kernel::SumSq | Kernel::ClipScale => Shader::GradNorm,
            Kernel::Sgd | Kernel::Adam => Shader::Optimizer,
            Kernel::MaxNormRows | Kernel::MaxNormPairs => Shader::MaxNorm,
            Kernel::StridedCopy => Shader::StridedCopy,
            Kernel::Sample => Shader::Sample,
        }
    }
    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::Gemm => "gemm",
            Kernel::Colsum => "colsum",
            Kernel::Transpose => "transpose",
            Kernel::ReduceSlices => "reduce_slices",
            Kernel::StepFused => "step_fused",
            Kernel::StepGates => "step_gates",
            Kernel::StepCandidate => "step_candidate",
            Kernel::BwdGates => "bwd_gates",
            Kernel::BwdState => "bwd_state",
            Kernel::BwdCandidate => "bwd_candidate",
            Kernel::BwdRz => "bwd_rz",
            Kernel::EmbedFwd => "embed_fwd",
            Kernel::EmbedBwd => "embed_bwd",
            Kernel::Dropout => "dropout",
            Kernel::CrossEntropy => "cross_entropy",
            Kernel::BinaryCrossEntropy => "binary_cross_entropy",
            Kernel::MeanSquaredError => "mean_squared_error",
            Kernel::MetricsAdd => "metrics_add",
            Kernel::SumSq => "sumsq",
            Kernel::ClipScale => "clip_scale",
            Kernel::Sgd => "sgd",
            Kernel::Adam => "adam",
            Kernel::MaxNormRows => "max_norm_rows",
            Kernel::MaxNormPairs => "max_norm_pairs",
            Kernel::StridedCopy => "strided_copy",
            Kernel::Sample => "sample",
        }
    }
    /// Mirrors the `@binding` declarations of the shader file.
    pub(crate) fn slots(self) -> &'static [Slot] {
        if self == Kernel::MaxNormRows {
            return &[U, W];
        }
        match self.shader() {
            Shader::Gemm => &[U, R, R, R, W],
            Shader::ReduceSlices => &[U, R, R, W],
            Shader::Colsum | Shader::Transpose => &[U, R, W],
            Shader::StepFwd => &[S, U, R, R, R, R, W, W, W],
            Shader::StepBwd => &[S, U, R, R, R, R, R, W, W, W],
            Shader::Embedding => &[U, R, R, W],
            Shader::Dropout | Shader::GradNorm => &[U, U, R, W],
            Shader::Loss => &[U, R, R, W, W],
            Shader::Metrics | Shader::StridedCopy => &[U, R, W],
            Shader::Optimizer => &[U, U, R, R, W, W, W],
            Shader::MaxNorm => &[U, W, W],
            Shader::Sample => &[U, R, W, W],
        }
    }
}

/// Size of the uniform a step slot binds (`StepParams` in the step shaders).
pub(crate) const STEP_PARAMS_BYTES: u64 = 16;

/// A compiled pipeline and the layout its bind groups use.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub kernel: Kernel,
}

type PipelineKey = (Kernel, Vec<(&'static str, u32)>);

/// Shader modules and pipelines of one device.
#[derive(Default)]
pub(crate) struct KernelCache {
    pub(crate) modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pub(crate) pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WGSL has no includes: the shaders that read the per-step training uniform each
    /// declare it, and must agree with each other (and with `TrainStep` in train/gpu.rs).
    #[test]
    fn train_step_struct_is_declared_identically() {
        let decl = |s: Shader| {
            let src = s.source();
            let at = src.find("struct TrainStep").expect("TrainStep declared");
            src[at..at + src[at..].find('}').unwrap()].to_string()
        };
        let first = decl(Shader::Dropout);
        for s in [Shader::GradNorm, Shader::Optimizer] {
            assert_eq!(decl(s), first, "{}", s.label());
        }
    }

    /// Every file in shaders/ is one of the loaded shaders, each loaded once.
    #[test]
    fn every_shader_file_is_loaded_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let loaded = ALL_SHADERS.iter().filter(|s| s.source() == text).count();
            assert_eq!(loaded, 1, "{} is loaded {loaded} times", path.display());
            files += 1;
        }
        assert_eq!(
            files,
            ALL_SHADERS.len(),
            "shaders loaded that are not in {dir}"
        );
    }
}
