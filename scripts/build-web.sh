#!/usr/bin/env bash
# Builds the browser demo into web/dist/: index.html, its JavaScript and style, the
# wasm-bindgen output (gru_web.js, gru_web_bg.wasm) and sample.txt. Serve the folder
# with any static file server, e.g. `python3 -m http.server -d web/dist 8000`.
# Needs the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`)
# and the wasm-bindgen CLI of the version in Cargo.lock, which this script installs from
# crates.io (built from source) when ~/.cargo/bin has another one or none.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
    echo "installing wasm-bindgen-cli $version (the version Cargo.lock pins)" >&2
    cargo install --quiet wasm-bindgen-cli --version "$version"
fi
cargo build --quiet -p gru-web --target wasm32-unknown-unknown --release
rm -rf web/dist
mkdir -p web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist \
    target/wasm32-unknown-unknown/release/gru_web.wasm
cp web/page/index.html web/page/demo.js web/page/style.css web/page/bench.html web/dist/
# The sample text the page offers: the README.
cp README.md web/dist/sample.txt
echo "built web/dist ($(du -sh web/dist | cut -f1)); serve it with: python3 -m http.server -d web/dist 8000" >&2
