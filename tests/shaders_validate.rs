//! Parses and validates every shader, as the device gets it, with naga: no GPU needed.

#[test]
fn every_shader_parses_and_validates() {
    let sources = gru_engine::gpu::shader_sources();
    for (name, src) in &sources {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        // Only the builds for software adapters with subgroups ("..._subgroup", and
        // "..._uniform", which also read through uniform windows) may need more than
        // core WGSL; every build a GPU runs must validate without it.
        let caps = if name.ends_with("subgroup") || name.ends_with("uniform") {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    }
    // Every file of shaders/ is in some build, so none is skipped here (a file may be
    // built twice, with different preludes).
    let mut files = 0;
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("wgsl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            sources.iter().any(|(_, src)| src.ends_with(&text)),
            "{} is in no build",
            path.display()
        );
        files += 1;
    }
    assert!(files > 0 && sources.len() >= files);
}

/// Every build that calls a subgroup operation is marked as needing `enable subgroups;`
/// (WGSL requires it, and Tint refuses the build without it; the browser build carries
/// it), and no other build is.
#[test]
fn subgroup_builds_enable_subgroups() {
    let marked: Vec<&str> = gru_engine::gpu::kernel_entry_points()
        .into_iter()
        .filter(|k| k.2)
        .map(|k| k.0)
        .collect();
    for (name, src) in gru_engine::gpu::shader_sources() {
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let calls = [
            "subgroupShuffle",
            "subgroupAdd",
            "subgroupBroadcast",
            "subgroup_size",
        ]
        .iter()
        .any(|op| code.contains(op));
        assert_eq!(
            marked.contains(&name),
            calls,
            "{name}: subgroup operations {calls}, but its `enable subgroups;` mark does not match"
        );
    }
}

/// Writes every assembled build and its entry points where Dawn's validator
/// (scripts/dawn_validate.mjs, run by .ci/run) reads them: `$GRU_SHADER_DUMP`, default
/// target/shaders/: `<build>.wgsl` and kernels.json, `[{"shader", "entry", "subgroups",
/// "f16"}]`, the f16 storage builds included (`<build>__<mix>.wgsl`, "f16": true).
#[test]
fn dump_the_assembled_kernels_for_dawn() {
    let dir = std::env::var_os("GRU_SHADER_DUMP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/shaders").into());
    std::fs::create_dir_all(&dir).unwrap();
    for (name, src) in gru_engine::gpu::shader_sources() {
        std::fs::write(dir.join(format!("{name}.wgsl")), src).unwrap();
    }
    let mut kernels: Vec<serde_json::Value> = gru_engine::gpu::kernel_entry_points()
        .into_iter()
        .map(|(shader, entry, subgroups)| {
            serde_json::json!({ "shader": shader, "entry": entry, "subgroups": subgroups, "f16": false })
        })
        .collect();
    // The f16 storage builds, which Dawn checks on a device with shader-f16.
    for (name, src, entries) in gru_engine::gpu::half_builds() {
        std::fs::write(dir.join(format!("{name}.wgsl")), src).unwrap();
        for (entry, subgroups) in entries {
            kernels.push(serde_json::json!({ "shader": name, "entry": entry, "subgroups": subgroups, "f16": true }));
        }
    }
    assert!(!kernels.is_empty());
    std::fs::write(
        dir.join("kernels.json"),
        serde_json::to_string_pretty(&kernels).unwrap(),
    )
    .unwrap();
}

/// The window builds are chosen only where the adapter allows the uniform buffers they
/// bind (`UNIFORM_BUFFERS_PER_STAGE`); every other build stays within WebGPU's default 12.
#[test]
fn uniform_buffers_per_stage_stay_within_what_is_checked() {
    for (name, src) in gru_engine::gpu::shader_sources() {
        let n = src.matches("var<uniform>").count() as u32;
        let limit = if name.ends_with("_uniform") {
            gru_engine::gpu::UNIFORM_BUFFERS_PER_STAGE
        } else {
            12
        };
        assert!(n <= limit, "{name} binds {n} uniform buffers, over {limit}");
    }
}
