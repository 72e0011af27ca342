//! The built-in training text: gru-engine's own library source, shaders and README,
//! compiled into the binary so `gru train` works on a fresh machine with no data. No
//! third-party text is included; the model learns to write Rust, WGSL and Markdown.

/// How `gru train` names this text.
pub const DESCRIPTION: &str = "the built-in corpus (gru-engine's own source, shaders and README)";

/// (path, contents) of every file in the corpus.
pub const FILES: &[(&str, &str)] = &[
    ("src/checkpoint.rs", include_str!("../../src/checkpoint.rs")),
    ("src/config.rs", include_str!("../../src/config.rs")),
    (
        "src/cpu/backward.rs",
        include_str!("../../src/cpu/backward.rs"),
    ),
    (
        "src/cpu/forward.rs",
        include_str!("../../src/cpu/forward.rs"),
    ),
    ("src/cpu/mod.rs", include_str!("../../src/cpu/mod.rs")),
    ("src/error.rs", include_str!("../../src/error.rs")),
    (
        "src/generate/mod.rs",
        include_str!("../../src/generate/mod.rs"),
    ),
    (
        "src/generate/gpu.rs",
        include_str!("../../src/generate/gpu.rs"),
    ),
    (
        "src/gpu/backward.rs",
        include_str!("../../src/gpu/backward.rs"),
    ),
    (
        "src/gpu/context.rs",
        include_str!("../../src/gpu/context.rs"),
    ),
    (
        "src/gpu/forward.rs",
        include_str!("../../src/gpu/forward.rs"),
    ),
    (
        "src/gpu/kernels.rs",
        include_str!("../../src/gpu/kernels.rs"),
    ),
    ("src/gpu/layer.rs", include_str!("../../src/gpu/layer.rs")),
    ("src/gpu/mod.rs", include_str!("../../src/gpu/mod.rs")),
    (
        "src/gpu/ops/mod.rs",
        include_str!("../../src/gpu/ops/mod.rs"),
    ),
    (
        "src/gpu/ops/dispatch.rs",
        include_str!("../../src/gpu/ops/dispatch.rs"),
    ),
    (
        "src/gpu/ops/gemm.rs",
        include_str!("../../src/gpu/ops/gemm.rs"),
    ),
    (
        "src/gpu/ops/reduce.rs",
        include_str!("../../src/gpu/ops/reduce.rs"),
    ),
    (
        "src/gpu/ops/step.rs",
        include_str!("../../src/gpu/ops/step.rs"),
    ),
    (
        "src/gpu/ops/transpose.rs",
        include_str!("../../src/gpu/ops/transpose.rs"),
    ),
    ("src/gpu/abi.rs", include_str!("../../src/gpu/abi.rs")),
    ("src/gpu/plan.rs", include_str!("../../src/gpu/plan.rs")),
    ("src/gpu/params.rs", include_str!("../../src/gpu/params.rs")),
    (
        "src/gpu/workspace.rs",
        include_str!("../../src/gpu/workspace.rs"),
    ),
    ("src/lib.rs", include_str!("../../src/lib.rs")),
    (
        "src/model/batch.rs",
        include_str!("../../src/model/batch.rs"),
    ),
    (
        "src/model/config.rs",
        include_str!("../../src/model/config.rs"),
    ),
    ("src/model/mod.rs", include_str!("../../src/model/mod.rs")),
    (
        "src/model/params.rs",
        include_str!("../../src/model/params.rs"),
    ),
    (
        "src/model/summary.rs",
        include_str!("../../src/model/summary.rs"),
    ),
    ("src/rng.rs", include_str!("../../src/rng.rs")),
    ("src/sequence.rs", include_str!("../../src/sequence.rs")),
    (
        "src/train/cpu/mod.rs",
        include_str!("../../src/train/cpu/mod.rs"),
    ),
    (
        "src/train/cpu/pass.rs",
        include_str!("../../src/train/cpu/pass.rs"),
    ),
    (
        "src/train/cpu/update.rs",
        include_str!("../../src/train/cpu/update.rs"),
    ),
    (
        "src/train/gpu/mod.rs",
        include_str!("../../src/train/gpu/mod.rs"),
    ),
    (
        "src/train/gpu/plan.rs",
        include_str!("../../src/train/gpu/plan.rs"),
    ),
    (
        "src/train/gpu/update.rs",
        include_str!("../../src/train/gpu/update.rs"),
    ),
    ("src/train/mod.rs", include_str!("../../src/train/mod.rs")),
    (
        "src/train/options.rs",
        include_str!("../../src/train/options.rs"),
    ),
    ("src/weights.rs", include_str!("../../src/weights.rs")),
    (
        "shaders/colsum.wgsl",
        include_str!("../../shaders/colsum.wgsl"),
    ),
    (
        "shaders/dropout.wgsl",
        include_str!("../../shaders/dropout.wgsl"),
    ),
    (
        "shaders/embedding.wgsl",
        include_str!("../../shaders/embedding.wgsl"),
    ),
    ("shaders/gemm.wgsl", include_str!("../../shaders/gemm.wgsl")),
    (
        "shaders/grad_norm.wgsl",
        include_str!("../../shaders/grad_norm.wgsl"),
    ),
    (
        "shaders/gru_step_bwd.wgsl",
        include_str!("../../shaders/gru_step_bwd.wgsl"),
    ),
    (
        "shaders/gru_step_fwd.wgsl",
        include_str!("../../shaders/gru_step_fwd.wgsl"),
    ),
    ("shaders/loss.wgsl", include_str!("../../shaders/loss.wgsl")),
    (
        "shaders/max_norm.wgsl",
        include_str!("../../shaders/max_norm.wgsl"),
    ),
    (
        "shaders/metrics.wgsl",
        include_str!("../../shaders/metrics.wgsl"),
    ),
    (
        "shaders/optimizer.wgsl",
        include_str!("../../shaders/optimizer.wgsl"),
    ),
    (
        "shaders/reduce_slices.wgsl",
        include_str!("../../shaders/reduce_slices.wgsl"),
    ),
    (
        "shaders/sample.wgsl",
        include_str!("../../shaders/sample.wgsl"),
    ),
    (
        "shaders/strided_copy.wgsl",
        include_str!("../../shaders/strided_copy.wgsl"),
    ),
    (
        "shaders/transpose.wgsl",
        include_str!("../../shaders/transpose.wgsl"),
    ),
    ("README.md", include_str!("../../README.md")),
];

/// The files joined, each preceded by a `// path` line.
pub fn text() -> String {
    let mut s = String::new();
    for (path, body) in FILES {
        s.push_str("// ");
        s.push_str(path);
        s.push('\n');
        s.push_str(body);
        s.push('\n');
    }
    s
}
