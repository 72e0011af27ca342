#!/usr/bin/env bash
# The browser tests (web/tests/browser.rs) in headless Firefox ESR, whose WebGPU is wgpu
# on Mesa's lavapipe, with the prefs dom.webgpu.enabled and gfx.webgpu.ignore-blocklist
# (web/webdriver.json). Needs
# `apt-get install firefox-esr` and `cargo install geckodriver` (.ci/run runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export GECKODRIVER=${GECKODRIVER:-$(command -v geckodriver || echo "$HOME/.cargo/bin/geckodriver")}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900}
(cd web && cargo test --release --target wasm32-unknown-unknown --test browser)
