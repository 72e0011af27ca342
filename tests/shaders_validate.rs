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
