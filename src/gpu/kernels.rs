//! One `include_str!` per shader file, the binding layout of each entry point, and the
//! pipeline cache (keyed by kernel and override constants) that `GpuContext::pipeline`
//! fills: shader modules compile once per device, pipelines once per (kernel, constants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::abi;

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

/// A build's label: its `as` name where it has one, else its file name.
macro_rules! build_label {
    ($file:literal) => {
        $file
    };
    ($file:literal, $label:literal) => {
        $label
    };
}

/// The shader files: variant, file name under `shaders/` (also the label), and what the
/// host prepends to it (`abi` structs and constants).
macro_rules! shaders {
    ($($shader:ident => $file:literal $(as $label:literal)? [$($item:ident),* $(,)?]),* $(,)?) => {
        /// A kernel source file under `shaders/`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Shader { $($shader),* }

        /// Every shader file.
        pub(crate) const ALL_SHADERS: &[Shader] = &[$(Shader::$shader),*];

        impl Shader {
            /// The build's name: the file name without `.wgsl`, or the `as` name of a
            /// second build of a file with another prelude.
            pub(crate) fn label(self) -> &'static str {
                match self { $(Shader::$shader => build_label!($file $(, $label)?)),* }
            }
            /// The file as written.
            pub(crate) fn file(self) -> &'static str {
                match self {
                    $(Shader::$shader => include_str!(concat!("../../shaders/", $file, ".wgsl"))),*
                }
            }
            /// The declarations prepended to the file.
            pub(crate) fn prelude(self) -> String {
                match self {
                    $(Shader::$shader => [$(<abi::$item as abi::Wgsl>::wgsl()),*].concat()),*
                }
            }
        }
    };
}

shaders! {
    Gemm => "gemm" [Workgroup, GemmParams, GemmOperands, GemmBStorage],
    GemmSubgroup => "gemm_subgroup" [Subgroups, Workgroup, GemmParams, GemmOperands, GemmBStorage],
    GemmUniform => "gemm_subgroup" as "gemm_uniform" [Subgroups, Workgroup, GemmParams, GemmOperands, GemmBUniform],
    Colsum => "colsum" [Workgroup, ColsumParams],
    Transpose => "transpose" [TransposeParams],
    ReduceSlices => "reduce_slices" [Workgroup, ReduceParams],
    StepFwd => "gru_step_fwd" [Workgroup, StepTile, StepSplitNone, StepParams, StepDims, StepPair, Activations, RecurrentMatvec, StepWStorage],
    StepFwdSplit => "gru_step_fwd" as "gru_step_fwd_split" [StepTileSplit, StepSplitK, StepParams, StepDims, StepPair, Activations, RecurrentMatvecSplit, StepWStorage],
    StepFwdSplitWide => "gru_step_fwd" as "gru_step_fwd_split_wide" [StepTileSplitWide, StepSplitK, StepParams, StepDims, StepPair, Activations, RecurrentMatvecSplit, StepWStorage],
    StepFwdSg => "gru_step_fwd" as "gru_step_fwd_subgroup" [Subgroups, Workgroup, StepTileSubgroup, StepSplitNone, StepParams, StepDims, StepPair, Activations, RecurrentMatvecSubgroup, StepWStorage],
    StepFwdUb => "gru_step_fwd" as "gru_step_fwd_uniform" [Subgroups, Workgroup, StepTileSubgroup, StepSplitNone, StepParams, StepDims, StepPair, Activations, RecurrentMatvecSubgroup, StepWUniform],
    StepBwd => "gru_step_bwd" [Workgroup, StepTile, StepSplitNone, StepParams, StepDims, StepPair, StateMatvec, StepWhhStorage],
    StepBwdSplit => "gru_step_bwd" as "gru_step_bwd_split" [StepTileSplit, StepSplitK, StepParams, StepDims, StepPair, StateMatvecSplit, StepWhhStorage],
    StepBwdSplitWide => "gru_step_bwd" as "gru_step_bwd_split_wide" [StepTileSplitWide, StepSplitK, StepParams, StepDims, StepPair, StateMatvecSplit, StepWhhStorage],
    StepBwdSg => "gru_step_bwd" as "gru_step_bwd_subgroup" [Subgroups, Workgroup, StepTileSubgroup, StepSplitNone, StepParams, StepDims, StepPair, StateMatvecSubgroup, StepWhhStorage],
    StepBwdUb => "gru_step_bwd" as "gru_step_bwd_uniform" [Subgroups, Workgroup, StepTileSubgroup, StepSplitNone, StepParams, StepDims, StepPair, StateMatvecSubgroup, StepWhhUniform],
    Embedding => "embedding" [Workgroup, EmbedParams],
    Dropout => "dropout" [Workgroup, DropoutSite, TrainStep],
    Loss => "loss" [Workgroup, WorkgroupReduce, Ignore, LossParams, Activations],
    LossSoftware => "loss" as "loss_software" [SoftwareWorkgroup, WorkgroupReduce, Ignore, LossParams, Activations],
    Metrics => "metrics" [Workgroup, MetricParams],
    GradNorm => "grad_norm" [Workgroup, WorkgroupReduce, SumSqSpan, TensorParams, TrainStep],
    Optimizer => "optimizer" [Workgroup, TensorParams, TrainStep, UpdateRules],
    EmbedUpdate => "embed_update" [Workgroup, WorkgroupReduce, SumSqSpan, EmbedRing, EmbedUpdateParams, TrainStep, UpdateRules],
    MaxNorm => "max_norm" [Workgroup, NormParams],
    StridedCopy => "strided_copy" [Workgroup, CopyParams],
    Sample => "sample" [Workgroup, WorkgroupReduce, SampleParams, SamplePick],
    Generate => "generate" [Workgroup, WorkgroupReduce, GenParams, Activations, SamplePick, GenerateWStorageT],
    GenerateSg => "generate" as "generate_subgroup" [Subgroups, SoftwareWorkgroup, WorkgroupReduce, GenParams, Activations, SamplePick, GenerateDotSubgroup, GenerateWStorage],
    GenerateUb => "generate" as "generate_uniform" [Subgroups, SoftwareWorkgroup, WorkgroupReduce, GenParams, Activations, SamplePick, GenerateDotSubgroup, GenerateWUniform],
    Roofline => "roofline" [Workgroup, LabParams],
}

/// The storage types of a build: the element type of each binding role a shader
/// declares through an alias (`act_t`, `wt_t`, `out_t`), f16 where set. Kernels convert
/// on load and round on store, so every sum stays f32 whatever the storage (docs/design.md §10).
/// A pipeline is cached per (kernel, storage types, overrides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Elems {
    /// Activations: the input a GEMM multiplies (op(A)), gx, states, outputs and saved
    /// values of a step kernel.
    pub act: bool,
    /// Parameters: a GEMM's op(B) and bias, a step kernel's W_hh and b_hh, what a
    /// transpose moves.
    pub wt: bool,
    /// What a GEMM or a reduction writes (a GEMM's split-K slices stay f32).
    pub out: bool,
}

impl Elems {
    /// Every role f32 (what every build had before f16 storage).
    pub(crate) const F32: Elems = Elems {
        act: false,
        wt: false,
        out: false,
    };
    /// Every role f16.
    pub(crate) const F16: Elems = Elems {
        act: true,
        wt: true,
        out: true,
    };

    /// The mixes of f16 roles the ops build, named: every role (`f16`), a GEMM whose
    /// split-K slices stay f32 (`f16_slices`), the reduction of those slices into f16
    /// (`f16_reduce`; also the text of every build that writes f16 from f32 alone, the
    /// refresh copy and the optimiser's copy, which declare no wt_t), a transpose of
    /// f16 weights (`f16_wt`).
    pub(crate) const HALF_MIXES: [(&'static str, Elems); 4] = [
        ("f16", Elems::F16),
        (
            "f16_slices",
            Elems {
                act: true,
                wt: true,
                out: false,
            },
        ),
        (
            "f16_reduce",
            Elems {
                act: false,
                wt: true,
                out: true,
            },
        ),
        (
            "f16_wt",
            Elems {
                act: false,
                wt: true,
                out: false,
            },
        ),
    ];

    /// Every role f16 or every role f32.
    pub(crate) fn all(half: bool) -> Elems {
        if half {
            Elems::F16
        } else {
            Elems::F32
        }
    }

    /// Whether some role is f16 (the build needs `enable f16;` and SHADER_F16).
    pub(crate) fn half(self) -> bool {
        self.act || self.wt || self.out
    }

    /// The aliases, after any directive.
    fn aliases(self) -> String {
        let t = |h: bool| if h { "f16" } else { "f32" };
        format!(
            "alias act_t = {};\nalias wt_t = {};\nalias out_t = {};\n",
            t(self.act),
            t(self.wt),
            t(self.out)
        )
    }
}

impl Shader {
    /// Prelude and file with every storage type f32: what the device compiles for the
    /// f32 builds (and what tools validate). Built once per process.
    pub(crate) fn source(self) -> &'static str {
        static SOURCES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let all = SOURCES.get_or_init(|| {
            ALL_SHADERS
                .iter()
                .map(|s| format!("{}{}{}", s.prelude(), Elems::F32.aliases(), s.file()))
                .collect()
        });
        &all[self as usize]
    }

    /// The build with storage types `elems`: `enable f16;` first where some role is
    /// f16 (a directive precedes every declaration), then the prelude, the aliases and
    /// the file.
    pub(crate) fn source_as(self, elems: Elems) -> std::borrow::Cow<'static, str> {
        if !elems.half() {
            return self.source().into();
        }
        format!(
            "enable f16;\n{}{}{}",
            self.prelude(),
            elems.aliases(),
            self.file()
        )
        .into()
    }
}

/// The entry points: variant, shader, entry name and the binding slots of group 0 (in
/// order, what the bind group layout is built from; the naga test checks them against
/// what the entry point really uses).
macro_rules! kernels {
    ($($kernel:ident => $shader:ident . $entry:literal [$($slot:ident),* $(,)?]),* $(,)?) => {
        /// An entry point of a shader.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Kernel { $($kernel),* }

        /// Every entry point.
        pub(crate) const ALL_KERNELS: &[Kernel] = &[$(Kernel::$kernel),*];

        impl Kernel {
            pub(crate) fn shader(self) -> Shader {
                match self { $(Kernel::$kernel => Shader::$shader),* }
            }
            pub(crate) fn entry(self) -> &'static str {
                match self { $(Kernel::$kernel => $entry),* }
            }
            pub(crate) fn slots(self) -> &'static [Slot] {
                match self { $(Kernel::$kernel => &[$($slot),*]),* }
            }
        }
    };
}

kernels! {
    Gemm => Gemm."gemm" [U, R, R, R, W],
    GemmSg => GemmSubgroup."gemm_sg" [U, R, R, R, W],
    GemmUb => GemmUniform."gemm_sg" [U, R, U, R, W],
    Colsum => Colsum."colsum" [U, R, W],
    ColsumPair => Colsum."colsum_pair" [U, R, W, R],
    Transpose => Transpose."transpose" [U, R, W],
    ReduceSlices => ReduceSlices."reduce_slices" [U, R, R, W],
    StepFused => StepFwd."step_fused" [S, U, R, R, R, R, W, W, W],
    StepFusedSg => StepFwdSg."step_fused" [S, U, R, R, R, R, W, W, W],
    StepFusedUb => StepFwdUb."step_fused" [S, U, R, R, R, R, W, W, W, U, U, U, U],
    StepGates => StepFwd."step_gates" [S, U, R, R, R, R, W, W, W],
    StepCandidate => StepFwd."step_candidate" [S, U, R, R, R, R, W, W, W],
    StepFusedSplit => StepFwdSplit."step_fused" [S, U, R, R, R, R, W, W, W],
    StepGatesSplit => StepFwdSplit."step_gates" [S, U, R, R, R, R, W, W, W],
    StepCandidateSplit => StepFwdSplit."step_candidate" [S, U, R, R, R, R, W, W, W],
    StepFusedSplitWide => StepFwdSplitWide."step_fused" [S, U, R, R, R, R, W, W, W],
    StepGatesSplitWide => StepFwdSplitWide."step_gates" [S, U, R, R, R, R, W, W, W],
    StepCandidateSplitWide => StepFwdSplitWide."step_candidate" [S, U, R, R, R, R, W, W, W],
    SeqFused => StepFwd."seq_fused" [S, U, R, R, R, R, W, W, W],
    SeqFusedSg => StepFwdSg."seq_fused" [S, U, R, R, R, R, W, W, W],
    SeqFusedUb => StepFwdUb."seq_fused" [S, U, R, R, R, R, W, W, W, U, U, U, U],
    SeqGatesCandidate => StepFwd."seq_gates_candidate" [S, U, R, R, R, R, W, W, W],
    BwdGates => StepBwd."bwd_gates" [S, U, R, R, R, R, R, W, W, W],
    BwdState => StepBwd."bwd_state" [S, U, R, R, R, R, R, W, W, W],
    BwdStateSg => StepBwdSg."bwd_state" [S, U, R, R, R, R, R, W, W, W],
    BwdStateGates => StepBwd."bwd_state_gates" [S, U, R, R, R, R, R, W, W, W],
    BwdStateGatesSg => StepBwdSg."bwd_state_gates" [S, U, R, R, R, R, R, W, W, W],
    BwdStateUb => StepBwdUb."bwd_state" [S, U, R, R, R, R, R, W, W, W, U, U, U, U],
    BwdStateGatesUb => StepBwdUb."bwd_state_gates" [S, U, R, R, R, R, R, W, W, W, U, U, U, U],
    BwdCandidate => StepBwd."bwd_candidate" [S, U, R, R, R, R, R, W, W, W],
    BwdRz => StepBwd."bwd_rz" [S, U, R, R, R, R, R, W, W, W],
    BwdStateSplit => StepBwdSplit."bwd_state" [S, U, R, R, R, R, R, W, W, W],
    BwdStateGatesSplit => StepBwdSplit."bwd_state_gates" [S, U, R, R, R, R, R, W, W, W],
    BwdCandidateSplit => StepBwdSplit."bwd_candidate" [S, U, R, R, R, R, R, W, W, W],
    BwdRzSplit => StepBwdSplit."bwd_rz" [S, U, R, R, R, R, R, W, W, W],
    BwdStateSplitWide => StepBwdSplitWide."bwd_state" [S, U, R, R, R, R, R, W, W, W],
    BwdStateGatesSplitWide => StepBwdSplitWide."bwd_state_gates" [S, U, R, R, R, R, R, W, W, W],
    BwdCandidateSplitWide => StepBwdSplitWide."bwd_candidate" [S, U, R, R, R, R, R, W, W, W],
    BwdRzSplitWide => StepBwdSplitWide."bwd_rz" [S, U, R, R, R, R, R, W, W, W],
    SeqStateGates => StepBwd."seq_state_gates" [S, U, R, R, R, R, R, W, W, W],
    SeqStateGatesSg => StepBwdSg."seq_state_gates" [S, U, R, R, R, R, R, W, W, W],
    SeqStateGatesUb => StepBwdUb."seq_state_gates" [S, U, R, R, R, R, R, W, W, W, U, U, U, U],
    SeqBefore => StepBwd."seq_before" [S, U, R, R, R, R, R, W, W, W],
    EmbedFwd => Embedding."embed_fwd" [U, R, R, W],
    EmbedBwd => Embedding."embed_bwd" [U, R, R, W],
    Dropout => Dropout."dropout" [U, U, R, W],
    CrossEntropy => Loss."cross_entropy" [U, R, R, W, W],
    CrossEntropySw => LossSoftware."cross_entropy" [U, R, R, W, W],
    BinaryCrossEntropy => Loss."binary_cross_entropy" [U, R, R, W, W],
    MeanSquaredError => Loss."mean_squared_error" [U, R, R, W, W],
    MetricsAdd => Metrics."metrics_add" [U, R, W],
    SumSq => GradNorm."sumsq" [U, U, R, W],
    ClipScale => GradNorm."clip_scale" [U, U, R, W],
    Sgd => Optimizer."sgd" [U, U, R, R, W, W, W],
    Adam => Optimizer."adam" [U, U, R, R, W, W, W],
    SgdCopy => Optimizer."sgd_copy" [U, U, R, R, W, W, W, W],
    AdamCopy => Optimizer."adam_copy" [U, U, R, R, W, W, W, W],
    EmbedRowsZero => EmbedUpdate."rows_zero" [U, U, U, R, W, W, W, W, W, W],
    EmbedCatchUp => EmbedUpdate."catch_up" [U, U, U, R, W, W, W, W, W, W],
    EmbedMark => EmbedUpdate."mark" [U, U, U, R, W, W, W, W, W, W],
    EmbedRowsSumSq => EmbedUpdate."rows_sumsq" [U, U, U, R, W, W, W, W, W, W],
    EmbedRowsUpdate => EmbedUpdate."rows_update" [U, U, U, R, W, W, W, W, W, W],
    MaxNormRows => MaxNorm."max_norm_rows" [U, W],
    MaxNormPairs => MaxNorm."max_norm_pairs" [U, W, W],
    StridedCopy => StridedCopy."strided_copy" [U, R, W],
    Sample => Sample."sample" [U, R, W, W],
    GenTokens => Generate."generate_tokens" [U, R, W, W],
    GenTokensSg => GenerateSg."generate_tokens" [U, R, W, W],
    GenTokensUb => GenerateUb."generate_tokens" [U, R, W, W, U, U, U, U, U, U, U, U, U, U, U, U, U],
    FmaPeak => Roofline."fma_peak" [U, R, W],
    LoadStream => Roofline."load_stream" [U, R, W],
    LoadUniform => Roofline."load_uniform" [U, R, W],
    WorkgroupMemory => Roofline."shared_memory" [U, R, W],
}

/// Most bytes of workgroup memory any shader declares (the wide split step builds' sum
/// tree and totals, 11,264; a naga test checks every shader against it).
pub(crate) const WORKGROUP_BYTES: u32 = 11520;

/// Invocations of the largest workgroup any kernel runs (the split step builds' 128,
/// and transpose's 16 x 8): what Vulkan and GLES guarantee, and WebGPU's compatibility
/// mode allows. A naga test checks every entry point against it and [`MAX_SIZE`].
pub(crate) const MAX_INVOCATIONS: u32 = 2 * abi::WG;

/// The largest workgroup size in x, y and z of any kernel.
pub(crate) const MAX_SIZE: [u32; 3] = [2 * abi::WG, 8, 1];

impl Shader {
    /// Builds only software adapters run: subgroup shuffles, 8-lane workgroups.
    pub(crate) fn software_only(self) -> bool {
        matches!(
            self,
            Shader::GemmSubgroup
                | Shader::StepFwdSg
                | Shader::StepBwdSg
                | Shader::LossSoftware
                | Shader::GenerateSg
        ) || self.windowed()
    }

    /// The GPU step builds (both tiles), which read the recurrent weights along their sum.
    pub(crate) fn is_split(self) -> bool {
        matches!(
            self,
            Shader::StepFwdSplit
                | Shader::StepBwdSplit
                | Shader::StepFwdSplitWide
                | Shader::StepBwdSplitWide
        )
    }

    /// Builds that read weights through 64 KiB uniform windows (software adapters).
    pub(crate) fn windowed(self) -> bool {
        matches!(
            self,
            Shader::GemmUniform | Shader::StepFwdUb | Shader::StepBwdUb | Shader::GenerateUb
        )
    }
}

/// Why the kernels a device would run do not fit `limits`, naming the first kernel and
/// limit that fail, or `None`. `software` and `windows`: whether the device runs the
/// software adapters' builds and their uniform-window builds too.
pub(crate) fn unfit(limits: &wgpu::Limits, software: bool, windows: bool) -> Option<String> {
    let l = limits;
    let general = [
        (
            "max_compute_invocations_per_workgroup",
            MAX_INVOCATIONS,
            l.max_compute_invocations_per_workgroup,
        ),
        (
            "max_compute_workgroup_size_x",
            MAX_SIZE[0],
            l.max_compute_workgroup_size_x,
        ),
        (
            "max_compute_workgroup_size_y",
            MAX_SIZE[1],
            l.max_compute_workgroup_size_y,
        ),
        (
            "max_compute_workgroup_size_z",
            MAX_SIZE[2],
            l.max_compute_workgroup_size_z,
        ),
        (
            "max_compute_workgroup_storage_size",
            WORKGROUP_BYTES,
            l.max_compute_workgroup_storage_size,
        ),
    ];
    if let Some((name, need, have)) = general.into_iter().find(|(_, n, h)| n > h) {
        return Some(format!(
            "the kernels need {name} >= {need}, the adapter allows {have}"
        ));
    }
    for k in ALL_KERNELS {
        let shader = k.shader();
        if (shader.software_only() && !software) || (shader.windowed() && !windows) {
            continue;
        }
        let slots = k.slots();
        let count = |f: fn(&Slot) -> bool| slots.iter().filter(|s| f(s)).count() as u32;
        let needs = [
            (
                "storage buffers per shader stage (max_storage_buffers_per_shader_stage)",
                count(|s| matches!(s, Slot::Read | Slot::ReadWrite)),
                l.max_storage_buffers_per_shader_stage,
            ),
            (
                "uniform buffers per shader stage (max_uniform_buffers_per_shader_stage)",
                count(|s| matches!(s, Slot::Uniform | Slot::StepUniform)),
                l.max_uniform_buffers_per_shader_stage,
            ),
            (
                "dynamic-offset uniform buffers (max_dynamic_uniform_buffers_per_pipeline_layout)",
                count(|s| matches!(s, Slot::StepUniform)),
                l.max_dynamic_uniform_buffers_per_pipeline_layout,
            ),
            (
                "bindings in one group (max_bindings_per_bind_group)",
                slots.len() as u32,
                l.max_bindings_per_bind_group,
            ),
        ];
        if let Some((what, need, have)) = needs.into_iter().find(|(_, n, h)| n > h) {
            return Some(format!(
                "kernel `{}` ({}) needs {need} {what}, the adapter allows {have}",
                k.entry(),
                shader.label()
            ));
        }
    }
    None
}

/// Size of the uniform a step slot binds (`StepParams` in the step shaders).
pub(crate) const STEP_PARAMS_BYTES: u64 = std::mem::size_of::<abi::StepParams>() as u64;

/// A compiled pipeline and the layout its bind groups use.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub kernel: Kernel,
}

type PipelineKey = (Kernel, Elems, Vec<(&'static str, u32)>);

/// Shader modules and pipelines of one device.
#[derive(Default)]
pub(crate) struct KernelCache {
    pub(crate) modules: Mutex<HashMap<(Shader, Elems), wgpu::ShaderModule>>,
    pub(crate) pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

#[cfg(test)]
mod tests {
    //! The table against the shaders, without a GPU: naga parses each shader as the
    //! device gets it and reports which bindings each entry point uses and how every
    //! shared struct is laid out.
    use super::*;
    use naga::{AddressSpace, StorageAccess, TypeInner};

    fn parse(src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        (module, info)
    }

    /// The shader's group-0 bindings as slots by binding index, and which of them
    /// `entry` uses; or why not.
    fn bindings(src: &str, entry: &str) -> Result<(Vec<Option<Slot>>, Vec<bool>), String> {
        let (module, info) = parse(src);
        let (i, _) = module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == entry)
            .ok_or_else(|| format!("no entry point `{entry}`"))?;
        let ep = info.get_entry_point(i);
        let (mut declared, mut used) = (Vec::new(), Vec::new());
        for (h, var) in module.global_variables.iter() {
            let Some(b) = &var.binding else { continue };
            if b.group != 0 {
                return Err(format!("binding in group {}", b.group));
            }
            let slot = match var.space {
                AddressSpace::Uniform => Slot::Uniform,
                AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
                    Slot::ReadWrite
                }
                AddressSpace::Storage { .. } => Slot::Read,
                other => return Err(format!("binding {} in {other:?}", b.binding)),
            };
            let at = b.binding as usize;
            if declared.len() <= at {
                declared.resize(at + 1, None);
                used.resize(at + 1, false);
            }
            declared[at] = Some(slot);
            used[at] = !ep[h].is_empty();
        }
        Ok((declared, used))
    }

    /// `Ok` when the table's slots are the shader's bindings 0..n, of the declared kinds
    /// (a dynamic-offset uniform is a uniform to the shader), and cover every binding the
    /// entry point uses.
    fn check_slots(src: &str, entry: &str, table: &[Slot]) -> Result<(), String> {
        let (declared, used) = bindings(src, entry)?;
        for (i, slot) in table.iter().enumerate() {
            let want = Some(if *slot == Slot::StepUniform {
                Slot::Uniform
            } else {
                *slot
            });
            let have = declared.get(i).copied().flatten();
            if have != want {
                return Err(format!(
                    "`{entry}` binding {i}: the shader declares {have:?}, the table says {want:?}"
                ));
            }
        }
        if let Some(i) = (table.len()..used.len()).find(|&i| used[i]) {
            return Err(format!("`{entry}` uses binding {i}, which the table lacks"));
        }
        Ok(())
    }

    /// `Ok` when WGSL lays out struct `name` with the Rust twin's member offsets and size.
    fn check_layout(
        src: &str,
        name: &str,
        rust: &(Vec<(&'static str, usize)>, usize),
    ) -> Result<(), String> {
        let (module, _) = parse(src);
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .ok_or_else(|| format!("struct `{name}` not declared"))?;
        let TypeInner::Struct { members, span } = &ty.inner else {
            return Err(format!("`{name}` is not a struct"));
        };
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let host: Vec<(String, usize)> = rust.0.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        if wgsl != host || *span as usize != rust.1 {
            return Err(format!(
                "`{name}`: WGSL {wgsl:?} ({span} bytes), Rust {host:?} ({} bytes)",
                rust.1
            ));
        }
        Ok(())
    }

    /// Workgroup memory each shader declares, in bytes (naga's layout).
    fn workgroup_bytes(src: &str) -> u32 {
        let (module, _) = parse(src);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum()
    }

    /// Every entry point's workgroup size, as naga evaluates it.
    fn workgroup_size(src: &str, entry: &str) -> [u32; 3] {
        let (module, _) = parse(src);
        let ep = module
            .entry_points
            .iter()
            .find(|e| e.name == entry)
            .unwrap();
        assert!(
            ep.workgroup_size_overrides.is_none(),
            "{entry}: the check needs constant sizes"
        );
        ep.workgroup_size
    }

    #[test]
    fn no_kernel_runs_a_larger_workgroup_than_the_check_assumes() {
        let mut most = [0u32; 4];
        for k in ALL_KERNELS {
            let [x, y, z] = workgroup_size(k.shader().source(), k.entry());
            let n = x * y * z;
            let name = format!("{} ({})", k.entry(), k.shader().label());
            assert!(n <= MAX_INVOCATIONS, "{name}: {n} invocations");
            for (i, v) in [x, y, z].into_iter().enumerate() {
                assert!(v <= MAX_SIZE[i], "{name}: size {:?}", [x, y, z]);
                most[i] = most[i].max(v);
            }
            most[3] = most[3].max(n);
        }
        // The bounds are reached: the check asks no more than the kernels need.
        assert_eq!(
            most,
            [MAX_SIZE[0], MAX_SIZE[1], MAX_SIZE[2], MAX_INVOCATIONS]
        );
    }

    /// Fake adapters: one allowing only Vulkan's and GLES's guaranteed 128 invocations
    /// fits; one fewer, or a y size of 1, is refused naming the limit; WebGPU's
    /// compatibility-mode defaults are refused for their 4 storage buffers per stage.
    #[test]
    fn workgroup_limits_of_small_adapters() {
        let vulkan_minimum = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            max_compute_workgroup_size_x: 128,
            max_compute_workgroup_size_y: 128,
            max_compute_workgroup_size_z: 64,
            ..wgpu::Limits::default()
        };
        assert_eq!(unfit(&vulkan_minimum, false, false), None);
        let fewer = wgpu::Limits {
            max_compute_invocations_per_workgroup: 127,
            ..vulkan_minimum.clone()
        };
        let why = unfit(&fewer, false, false).unwrap();
        assert!(
            why.contains("max_compute_invocations_per_workgroup >= 128"),
            "{why}"
        );
        let flat = wgpu::Limits {
            max_compute_workgroup_size_y: 1,
            ..vulkan_minimum.clone()
        };
        let why = unfit(&flat, false, false).unwrap();
        assert!(why.contains("max_compute_workgroup_size_y >= 8"), "{why}");
        let no_z = wgpu::Limits {
            max_compute_workgroup_size_z: 0,
            ..vulkan_minimum.clone()
        };
        assert!(unfit(&no_z, false, false).unwrap().contains("size_z"));
        // WebGPU compatibility mode's defaults (gpuweb proposals/compatibility-mode.md).
        let compat = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            max_compute_workgroup_size_x: 128,
            max_compute_workgroup_size_y: 128,
            max_compute_workgroup_size_z: 64,
            max_storage_buffers_per_shader_stage: 4,
            max_compute_workgroup_storage_size: 16384,
            ..wgpu::Limits::default()
        };
        let why = unfit(&compat, false, false).unwrap();
        assert!(
            why.contains("max_storage_buffers_per_shader_stage") && why.contains("allows 4"),
            "{why}"
        );
    }

    #[test]
    fn no_shader_declares_more_workgroup_memory_than_the_check_assumes() {
        for s in ALL_SHADERS {
            let bytes = workgroup_bytes(s.source());
            assert!(bytes <= WORKGROUP_BYTES, "{}: {bytes} bytes", s.label());
        }
        let most = ALL_SHADERS
            .iter()
            .map(|s| workgroup_bytes(s.source()))
            .max();
        assert!(
            most.unwrap() * 2 > WORKGROUP_BYTES,
            "the bound is loose: {most:?}"
        );
    }

    /// WebGPU's default limits fit every portable kernel; a GL-like adapter with four
    /// storage buffers per stage is refused, naming a kernel and the limit; the window
    /// builds need more uniform buffers than the default 12, and are checked only where
    /// the device runs them.
    #[test]
    fn adapter_limits_are_checked_against_every_kernel() {
        let default = wgpu::Limits::default();
        assert_eq!(unfit(&default, false, false), None);
        assert_eq!(unfit(&default, true, false), None);
        let gl = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 4,
            ..wgpu::Limits::default()
        };
        let why = unfit(&gl, false, false).unwrap();
        assert!(
            why.contains("max_storage_buffers_per_shader_stage") && why.contains("allows 4"),
            "{why}"
        );
        let windows = unfit(&default, true, true).unwrap();
        assert!(windows.contains("uniform buffers"), "{windows}");
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 4096,
            ..wgpu::Limits::default()
        };
        assert!(unfit(&small, false, false)
            .unwrap()
            .contains("max_compute_workgroup_storage_size"));
    }

    #[test]
    fn every_entry_point_binds_what_the_table_says() {
        for k in ALL_KERNELS {
            check_slots(k.shader().source(), k.entry(), k.slots()).unwrap();
        }
    }

    #[test]
    fn every_shared_struct_has_the_rust_layout() {
        for (name, wgsl, layout) in abi::all_structs() {
            // As the device sees it (inside a shader that uses it), and on its own.
            let users: Vec<&Shader> = ALL_SHADERS
                .iter()
                .filter(|s| s.source().contains(&format!("struct {name} ")))
                .collect();
            assert!(!users.is_empty(), "no shader uses {name}");
            for s in users {
                check_layout(s.source(), name, &layout).unwrap();
            }
            check_layout(&wgsl, name, &layout).unwrap();
        }
    }

    /// Every build parses and validates with every mix of f16 storage types the ops ask
    /// for (naga, with f16 on), and binds the same slots as its f32 build.
    #[test]
    fn every_shader_builds_with_f16_storage() {
        for k in ALL_KERNELS {
            for bits in 1..8u8 {
                let elems = Elems {
                    act: bits & 1 != 0,
                    wt: bits & 2 != 0,
                    out: bits & 4 != 0,
                };
                let src = k.shader().source_as(elems);
                assert!(src.starts_with("enable f16;"));
                check_slots(&src, k.entry(), k.slots())
                    .unwrap_or_else(|e| panic!("{} {elems:?}: {e}", k.shader().label()));
            }
        }
        // The f32 builds are unchanged by the aliases: no directive.
        assert!(!Shader::Gemm.source().contains("enable f16"));
        assert!(Shader::Gemm.source().contains("alias act_t = f32;"));
    }

    /// The checks fail on a mismatch: a binding declared read-only in the shader but
    /// read-write in the table, a binding the table lacks, and a struct whose WGSL layout
    /// differs from its Rust twin (a vec3 is 16-byte aligned in WGSL).
    #[test]
    fn mismatches_are_caught() {
        let src = "
            struct P { n: u32, _p0: u32, _p1: u32, _p2: u32 }
            @group(0) @binding(0) var<uniform> p: P;
            @group(0) @binding(1) var<storage, read> a: array<f32>;
            @group(0) @binding(2) var<storage, read_write> b: array<f32>;
            @compute @workgroup_size(64)
            fn k(@builtin(global_invocation_id) g: vec3<u32>) {
                if (g.x < p.n) { b[g.x] = a[g.x]; }
            }";
        check_slots(src, "k", &[U, R, W]).unwrap();
        assert!(check_slots(src, "k", &[U, W, W]).is_err());
        assert!(check_slots(src, "k", &[U, R]).is_err());
        assert!(check_slots(src, "missing", &[U, R, W]).is_err());
        let v3 = "struct V { a: u32, b: vec3<f32>, c: u32 }";
        // repr(C) of (u32, [f32; 3], u32): offsets 0, 4, 16, size 20.
        let rust = (vec![("a", 0), ("b", 4), ("c", 16)], 20);
        let e = check_layout(v3, "V", &rust).unwrap_err();
        assert!(e.contains("(\"b\", 16)"), "{e}");
    }

    /// No shader file declares what the prelude gives it.
    #[test]
    fn shared_declarations_live_only_in_abi() {
        for s in ALL_SHADERS {
            for (name, _, _) in abi::all_structs() {
                assert!(
                    !s.file().contains(&format!("struct {name} ")),
                    "{}.wgsl declares {name}",
                    s.label()
                );
            }
            for c in [
                "const WG:",
                "const TB:",
                "const UT:",
                "const IGNORE:",
                "var<workgroup> red_v",
                "fn workgroup_",
            ] {
                assert!(!s.file().contains(c), "{}.wgsl declares `{c}`", s.label());
            }
        }
    }

    /// Every file in shaders/ is one of the table's shaders, each listed once.
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
            let loaded = ALL_SHADERS.iter().filter(|s| s.file() == text).count();
            assert!(loaded >= 1, "{} is not loaded", path.display());
            files += 1;
        }
        let mut distinct: Vec<&str> = ALL_SHADERS.iter().map(|s| s.file()).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            files,
            distinct.len(),
            "shaders listed that are not in {dir}"
        );
        let mut labels: Vec<&str> = ALL_SHADERS.iter().map(|s| s.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), ALL_SHADERS.len(), "two builds share a label");
        // Every part file is in some prelude.
        for part in abi::PART_FILES {
            let path = format!("{dir}/parts/{part}.wgsl");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                ALL_SHADERS.iter().any(|s| s.prelude().contains(&text)),
                "{path} unused"
            );
        }
        let on_disk = std::fs::read_dir(format!("{dir}/parts")).unwrap().count();
        assert_eq!(
            on_disk,
            abi::PART_FILES.len(),
            "parts/ holds files no table names"
        );
    }
}
