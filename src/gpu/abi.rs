//! What the host and the shaders share, declared once, here: every uniform struct the
//! host writes (as a `#[repr(C)]` Rust struct and, from the same declaration, its WGSL
//! text) and the constants both sides use. The kernel table (`kernels.rs`) prepends the
//! declarations a shader needs to its file, so no struct or shared constant is written in
//! `shaders/`. A naga test checks every member offset and size against the Rust twin.

/// Threads of a 1-D workgroup, and units of a step kernel's workgroup.
pub(crate) const WG: u32 = 64;
/// Batch rows of a step kernel's workgroup.
pub(crate) const TB: u32 = 8;
/// Batch rows of the subgroup step builds' workgroup: each shared state value then
/// feeds twice the FMAs per load of W_hh.
pub(crate) const TB_SUBGROUP: u32 = 16;
/// Units per thread in the step kernels (threads per workgroup: WG / UT).
pub(crate) const UT: u32 = 2;
/// Units of a GPU (split) step build's workgroup: few, so that a step grid fills a
/// large GPU (1,024 workgroups at B 64, H 1024).
pub(crate) const WG_SPLIT: u32 = 4;
/// Batch rows of a GPU step build's workgroup: each W_hh value loaded feeds 16 rows.
pub(crate) const TB_SPLIT: u32 = 16;
/// Threads summing slices of one unit lane's k loop in the GPU step builds
/// (WG_SPLIT / UT x KS_SPLIT = 128 threads a workgroup).
pub(crate) const KS_SPLIT: u32 = 64;
/// Units of the wide GPU step builds' workgroup, for GPUs with few cores (integrated
/// ones): a quarter of the workgroups, each state row (or gate-gradient row) loaded
/// once for 16 units instead of 4.
pub(crate) const WG_SPLIT_WIDE: u32 = 16;
/// Threads per unit lane of the wide builds (8 lanes x 16 = 128 threads).
pub(crate) const KS_SPLIT_WIDE: u32 = 16;
/// A target to skip (`model::IGNORE`): a NaN bit pattern no real target has.
pub(crate) const IGNORE: u32 = crate::model::IGNORE;

/// Something a shader's prelude declares.
pub(crate) trait Wgsl {
    /// The WGSL declaration.
    fn wgsl() -> String;
}

/// First in the builds that call subgroup operations. WGSL requires `enable subgroups;`
/// there, and Tint (a browser's compiler) refuses them without it; naga 30 refuses the
/// directive itself (not yet implemented) and accepts the operations without it. So
/// the browser build gets the directive and native builds a marker comment, which
/// tools (scripts/dawn_validate.mjs) replace with the directive.
pub(crate) struct Subgroups;

/// The native builds' marker of [`Subgroups`].
pub(crate) const SUBGROUPS_MARKER: &str =
    "// enable subgroups; (WGSL needs it; naga 30 refuses it and needs none)\n";

impl Wgsl for Subgroups {
    fn wgsl() -> String {
        if cfg!(target_arch = "wasm32") {
            "enable subgroups;\n".into()
        } else {
            SUBGROUPS_MARKER.into()
        }
    }
}

/// `WG`.
pub(crate) struct Workgroup;
impl Wgsl for Workgroup {
    fn wgsl() -> String {
        format!("const WG: u32 = {WG}u;\n")
    }
}

/// Threads of the barrier-heavy kernels' workgroups on software adapters (generation,
/// the cross-entropy rows): one subgroup of 8 lanes. llvmpipe runs a workgroup as one
/// coroutine per 8 lanes on one core, and every barrier switches between them, so a
/// single subgroup does the same SIMD work with barriers that cost nothing.
pub(crate) const WG_SOFTWARE: u32 = 8;

/// `WG` as [`WG_SOFTWARE`], for the software builds of generate.wgsl and loss.wgsl.
pub(crate) struct SoftwareWorkgroup;
impl Wgsl for SoftwareWorkgroup {
    fn wgsl() -> String {
        format!("const WG: u32 = {WG_SOFTWARE}u;\n")
    }
}

/// `TB` and `UT` (with `WG`, the step kernels' tile).
pub(crate) struct StepTile;
impl Wgsl for StepTile {
    fn wgsl() -> String {
        format!("const TB: u32 = {TB}u;\nconst UT: u32 = {UT}u;\n")
    }
}

/// `TB` (as `TB_SUBGROUP`) and `UT` of the subgroup step builds.
pub(crate) struct StepTileSubgroup;
impl Wgsl for StepTileSubgroup {
    fn wgsl() -> String {
        format!("const TB: u32 = {TB_SUBGROUP}u;\nconst UT: u32 = {UT}u;\n")
    }
}

/// `WG`, `TB`, `UT` and `KS` of the GPU step builds (shaders/parts/step_split_k.wgsl).
pub(crate) struct StepTileSplit;
impl Wgsl for StepTileSplit {
    fn wgsl() -> String {
        format!(
            "const WG: u32 = {WG_SPLIT}u;\nconst TB: u32 = {TB_SPLIT}u;\nconst UT: u32 = {UT}u;\nconst KS: u32 = {KS_SPLIT}u;\n"
        )
    }
}

/// `WG`, `TB`, `UT` and `KS` of the wide GPU step builds.
pub(crate) struct StepTileSplitWide;
impl Wgsl for StepTileSplitWide {
    fn wgsl() -> String {
        format!(
            "const WG: u32 = {WG_SPLIT_WIDE}u;\nconst TB: u32 = {TB_SPLIT}u;\nconst UT: u32 = {UT}u;\nconst KS: u32 = {KS_SPLIT_WIDE}u;\n"
        )
    }
}

/// WGSL files under `shaders/parts/` that several shaders (or several builds of one
/// shader) share, prepended like the declarations above.
macro_rules! wgsl_parts {
    ($($(#[$doc:meta])* $name:ident => $file:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            pub(crate) struct $name;
            impl Wgsl for $name {
                fn wgsl() -> String {
                    include_str!(concat!("../../shaders/parts/", $file, ".wgsl")).to_string()
                }
            }
        )*
        /// Every part file, for the test that each is used.
        #[cfg(test)]
        pub(crate) const PART_FILES: &[&str] = &[$($file),*];
    };
}

wgsl_parts! {
    /// Every GEMM build's overrides, bindings, op(A) load and output store.
    GemmOperands => "gemm_operands",
    /// op(B) from its storage buffer.
    GemmBStorage => "gemm_b_storage",
    /// op(B) through a uniform window of its buffer (software adapters).
    GemmBUniform => "gemm_b_uniform",
    /// The forward step's W_hhᵀ from storage.
    StepWStorage => "step_w_storage",
    /// The forward step's W_hhᵀ through four uniform windows (software adapters).
    StepWUniform => "step_w_uniform",
    /// The backward step's W_hh from storage.
    StepWhhStorage => "step_whh_storage",
    /// The backward step's W_hh through four uniform windows (software adapters).
    StepWhhUniform => "step_whh_uniform",
    /// The forward step's recurrent matvec, each lane loading its own state values.
    RecurrentMatvec => "recurrent_matvec",
    /// The same sums with the state values shared across a subgroup (software adapters).
    RecurrentMatvecSubgroup => "recurrent_matvec_subgroup",
    /// The backward step's state matvec, each lane loading its own gate gradients.
    StateMatvec => "state_matvec",
    /// The same sums with the gate gradients shared across a subgroup.
    StateMatvecSubgroup => "state_matvec_subgroup",
    /// Overflow-free sigmoid and tanh.
    Activations => "activations",
    /// One token's draw from a row of logits.
    SamplePick => "sample_pick",
    /// Generation's weights from storage.
    GenerateWStorage => "generate_w_storage",
    /// Generation's weights through twelve uniform windows (software adapters).
    GenerateWUniform => "generate_w_uniform",
    /// Which direction a step kernel's workgroup runs, and where its tensors start.
    StepPair => "step_pair",
    /// The step kernels' k loop whole (every build but the GPU split builds).
    StepSplitNone => "step_split_none",
    /// The step kernels' k loop split over KS threads per unit lane, summed in a tree
    /// (GPU builds, H > 64).
    StepSplitK => "step_split_k",
    /// The forward step's recurrent matvec of the GPU builds, from W_hh.
    RecurrentMatvecSplit => "recurrent_matvec_split",
    /// The backward step's state matvec of the GPU builds, from W_hhᵀ.
    StateMatvecSplit => "state_matvec_split",
    /// One value's SGD and Adam step, shared by the dense and the embedding's update.
    UpdateRules => "update_rules",
    /// Generation's weights from storage, every matrix transposed (the portable build).
    GenerateWStorageT => "generate_w_storage_t",
    /// The same sums with the vector values shared across a subgroup.
    GenerateDotSubgroup => "generate_dot_subgroup",
}

/// Gradient values per workgroup of the sum of squares (grad_norm.wgsl's `SPAN`).
pub(crate) const SUMSQ_SPAN: u32 = 16 * 16 * WG;

/// `SPAN` as [`SUMSQ_SPAN`].
pub(crate) struct SumSqSpan;
impl Wgsl for SumSqSpan {
    fn wgsl() -> String {
        format!("const SPAN: u32 = {SUMSQ_SPAN}u;\n")
    }
}

/// Steps of hyperparameters the embedding's lazy update keeps (embed_update.wgsl's
/// `RING`): no row lags further, since the host brings every row up to date each time
/// the step number reaches a multiple of it.
pub(crate) const EMBED_RING: u32 = 64;

/// `RING` as [`EMBED_RING`].
pub(crate) struct EmbedRing;
impl Wgsl for EmbedRing {
    fn wgsl() -> String {
        format!("const RING: u32 = {EMBED_RING}u;\n")
    }
}

/// `IGNORE`.
pub(crate) struct Ignore;
impl Wgsl for Ignore {
    fn wgsl() -> String {
        format!("const IGNORE: u32 = {IGNORE:#x}u;\n")
    }
}

/// Reductions across one workgroup of `WG` threads, in a fixed tree order (results are
/// the same run to run): the first maximum with its index, the maximum, the sum. Each
/// call must come from uniform control flow (they hold barriers); every thread gets the
/// result. `red_v` is also free scratch between calls.
pub(crate) struct WorkgroupReduce;
impl Wgsl for WorkgroupReduce {
    fn wgsl() -> String {
        r#"var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
struct ArgMax { value: f32, index: u32 }
fn workgroup_argmax(lid: u32, value: f32, index: u32) -> ArgMax {
    red_v[lid] = value;
    red_i[lid] = index;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            let o = red_v[lid + w];
            let oi = red_i[lid + w];
            if (o > red_v[lid] || (o == red_v[lid] && oi < red_i[lid])) {
                red_v[lid] = o;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let r = ArgMax(red_v[0], red_i[0]);
    workgroupBarrier();
    return r;
}
fn workgroup_max(lid: u32, value: f32) -> f32 {
    red_v[lid] = value;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { red_v[lid] = max(red_v[lid], red_v[lid + w]); }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    red_v[lid] = value;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { red_v[lid] += red_v[lid + w]; }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}
"#
        .to_string()
    }
}

/// Declares `#[repr(C)]` structs of u32/f32 fields and their WGSL twins, with the
/// member offsets the layout test compares.
macro_rules! wgsl_structs {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $ty:ident),* $(,)? } )*) => {
        $(
            $(#[$doc])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
            pub(crate) struct $name {
                $(pub(crate) $field: $ty,)*
            }
            impl Wgsl for $name {
                fn wgsl() -> String {
                    concat!(
                        "struct ", stringify!($name), " { ",
                        $(stringify!($field), ": ", stringify!($ty), ", ",)*
                        "}\n"
                    ).to_string()
                }
            }
            #[cfg(test)]
            impl $name {
                /// (field, byte offset) in declaration order, and the size.
                pub(crate) fn layout() -> (Vec<(&'static str, usize)>, usize) {
                    (
                        vec![$((stringify!($field), std::mem::offset_of!($name, $field)),)*],
                        std::mem::size_of::<$name>(),
                    )
                }
            }
        )*
        /// Every shared struct: (name, WGSL, layout), for the layout test.
        #[cfg(test)]
        pub(crate) fn all_structs() -> Vec<(&'static str, String, (Vec<(&'static str, usize)>, usize))> {
            vec![$((stringify!($name), $name::wgsl(), $name::layout()),)*]
        }
    };
}

wgsl_structs! {
    /// C = op(A) · op(B): sizes, leading dimensions, offsets, split-K slice, and the
    /// columns per workgroup of the subgroup GEMM (`tile_n`; the tiled one ignores it).
    GemmParams {
        m: u32, n: u32, k: u32, lda: u32,
        ldb: u32, ldc: u32, off_a: u32, off_b: u32,
        off_c: u32, k_slice: u32, tile_n: u32, win: u32,
        n_first: u32, k_first: u32, _p0: u32, _p1: u32,
    }
    /// The second stage of split-K and long column sums: one or two sums of slices
    /// (`reduce::Slices`; the second absent with m2 = 0) in one dispatch.
    ReduceParams {
        m: u32, n: u32, slices: u32, ld: u32, off: u32, src: u32, _p0: u32, _p1: u32,
        m2: u32, n2: u32, slices2: u32, ld2: u32, off2: u32, src2: u32, _p2: u32, _p3: u32,
    }
    /// Column sums of an [m, n] matrix in slices of rows; `colsum_pair` also sums a second
    /// matrix into columns `second` .. `second + n` of the same output.
    ColsumParams { m: u32, n: u32, rows_per_slice: u32, second: u32 }
    /// out[cols, rows] = in[rows, cols]ᵀ.
    TransposeParams { rows: u32, cols: u32, _p0: u32, _p1: u32 }
    /// One slot per step, read at a dynamic offset.
    StepParams { step: u32, time_fwd: u32, time_rev: u32, _p0: u32 }
    /// A step kernel's shape, where its output goes, and the sequence entries' length and
    /// steps per dispatch; for a bidirectional layer's two directions in one dispatch
    /// (grid z = 2), where the reverse direction's tensors start in each binding (`off_*`,
    /// in values; parts/step_pair.wgsl).
    StepDims {
        batch: u32, hidden: u32, out_stride: u32, out_offset: u32,
        reverse: u32, t_len: u32, steps: u32, off_gx: u32,
        off_w: u32, off_b: u32, off_hs: u32, off_saved: u32,
        off_d_hs: u32, off_d_gx: u32, off_d_gh: u32, _p0: u32,
    }
    /// An embedding lookup of n positions, or its gradient over the vocabulary (added to
    /// the table's gradient when `accumulate` is 1: a later batch chunk).
    EmbedParams { n: u32, dim: u32, vocab: u32, accumulate: u32 }
    /// One dropout site: values, site id, keep threshold, 1/(1-p), and where the values
    /// sit in the whole batch (a chunk's value i is the batch's
    /// (i / span)·stride + offset + i % span, which draws the mask).
    DropoutSite { n: u32, site: u32, threshold: u32, scale: f32, span: u32, stride: u32, offset: u32, _p0: u32 }
    /// A loss over rows of cols logits, gradients divided by the counted targets.
    LossParams { rows: u32, cols: u32, inv_count: f32, _p0: u32 }
    /// Per-row loss statistics to add to the running totals.
    /// `batches`: 1, or 0 for a later chunk of the same batch.
    MetricParams { rows: u32, batches: u32, _p0: u32, _p1: u32 }
    /// The embedding's lazy update: the table's shape, the clip factor's slot (`count`),
    /// and the table's slots of partial sums of squares (`first`, `slots` of them).
    EmbedUpdateParams { dim: u32, vocab: u32, count: u32, first: u32, slots: u32, _p0: u32, _p1: u32, _p2: u32 }
    /// One parameter tensor of the update: length, index, number of tensors.
    TensorParams { n: u32, index: u32, count: u32, _p0: u32 }
    /// Keras' max_norm on rows of cols values (cols = 1: bias pairs).
    NormParams { rows: u32, cols: u32, c: f32, _p0: u32 }
    /// The optimiser's hyperparameters, the step's dropout seed, the update's number
    /// (`index`, from 1, modulo 2^32: how far the embedding's lagging rows catch up), and
    /// whether global-norm clipping is on (`clip`: a flag, so that "off" needs no
    /// infinite threshold, which fast math does not define).
    TrainStep {
        lr: f32, beta1: f32, beta2: f32, eps: f32,
        weight_decay: f32, momentum: f32, bc1: f32, bc2: f32,
        clip_value: f32, clip_norm: f32, seed: u32, decoupled: u32,
        index: u32, clip: u32, _p0: u32, _p1: u32,
    }
    /// A strided copy of rows x width values.
    CopyParams { rows: u32, width: u32, src_stride: u32, src_off: u32, dst_stride: u32, dst_off: u32, _p0: u32, _p1: u32 }
    /// A roofline probe: loop iterations per invocation and a multiplier the compiler
    /// cannot fold.
    LabParams { iters: u32, scale: f32, n_src: u32, n_dst: u32 }
    /// Generation in one dispatch: the model's sizes, the draws per dispatch, the count
    /// at which to stop, the sampling options and the token ring's length.
    GenParams {
        vocab: u32, embed: u32, hidden: u32, layers: u32,
        cols: u32, reset_after: u32, per_dispatch: u32, total: u32,
        top_k: u32, temperature: f32, seed_lo: u32, seed_hi: u32,
        ring: u32, _p0: u32, _p1: u32, _p2: u32,
    }
    /// One token draw, appended to a ring of `ring` tokens.
    SampleParams { cols: u32, top_k: u32, temperature: f32, offset: u32, seed_lo: u32, seed_hi: u32, ring: u32, _p0: u32 }
}
