//! The `gru` binary as a user runs it.

use std::process::Command;

fn gru(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(args)
        .output()
        .expect("the gru binary runs")
}

#[test]
fn devices_lists_adapters_and_marks_the_auto_pick() {
    let out = gru(&["devices"]);
    assert!(
        out.status.success(),
        "gru devices failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("no GPU adapter found") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but gru devices found no adapter"
        );
        assert!(text.contains("CPU reference path"), "{text}");
        return;
    }
    assert_eq!(
        text.matches("<- auto").count(),
        1,
        "exactly one adapter is marked auto:\n{text}"
    );
    for field in [
        "max storage buffer binding",
        "workgroup storage",
        "SHADER_F16",
        "SUBGROUP",
        "driver:",
    ] {
        assert!(text.contains(field), "missing `{field}` in:\n{text}");
    }
    if text.contains("(Vulkan, Cpu)  <- auto") {
        assert!(
            text.contains("only a software adapter"),
            "a software pick must say so:\n{text}"
        );
    }
}

#[test]
fn bad_flags_give_one_error_and_a_nonzero_exit() {
    let out = gru(&["devices", "--backend", "quantum"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'quantum'"), "{err}");
    let out = gru(&["frobnicate"]);
    assert!(!out.status.success());
}

#[test]
fn help_shows_examples() {
    let out = gru(&["devices", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("gru devices --backend vulkan"));
}
