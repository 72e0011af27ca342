#!/usr/bin/env bash
# The browser tests (web/tests/browser.rs) in headless Chromium with WebGPU, through
# wasm-bindgen-test-runner and ChromeDriver; then the demo page end to end
# (scripts/browser_e2e.py), its screenshot saved as target/artifacts/web-demo.png.
# Needs chromium, chromium-driver, the wasm32-unknown-unknown target and the
# wasm-bindgen CLI of Cargo.lock's version (scripts/build-web.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# wasm-bindgen-test-runner reads web/webdriver.json (extra Chromium flags) from here.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900}
(cd web && cargo test --release --target wasm32-unknown-unknown --test browser)
python3 scripts/browser_e2e.py
