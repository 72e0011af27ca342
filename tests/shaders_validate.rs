//! Parses and validates every WGSL file with naga: no GPU needed.

use std::fs;

#[test]
fn every_shader_parses_and_validates() {
    let mut count = 0;
    for entry in fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        count += 1;
    }
    // As many files as the library embeds, so none is skipped here.
    let kernels =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gpu/kernels.rs")).unwrap();
    let embedded = kernels.matches("include_str!(\"../../shaders/").count();
    assert!(count > 0);
    assert_eq!(
        count, embedded,
        "shaders/ holds {count} files, the library embeds {embedded}"
    );
}
