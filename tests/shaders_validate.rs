//! Parses and validates every shader, as the device gets it, with naga: no GPU needed.

#[test]
fn every_shader_parses_and_validates() {
    let sources = gru_engine::gpu::shader_sources();
    for (name, src) in &sources {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        // Only the subgroup GEMM may need more than core WGSL (it runs only where the
        // device offers subgroups).
        let caps = if name.contains("subgroup") {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    }
    // As many as shaders/ holds, so none is skipped here.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .and_then(|x| x.to_str())
                == Some("wgsl")
        })
        .count();
    assert!(files > 0);
    assert_eq!(
        sources.len(),
        files,
        "shaders/ holds {files} files, the library loads {}",
        sources.len()
    );
}
