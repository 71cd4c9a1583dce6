#!/usr/bin/env bash
# Runs every test: the Rust core natively, then the page in Debian's Chromium.
source "$(dirname "$0")/ensure.sh"
cd "$ROOT"
ensure_lavapipe
ensure_conformance_cases
ensure_model_zoo
say "native tests (cargo test)"
cargo test --all-targets
build_wasm
ensure_chromium
ensure_npm
say "browser tests (node --test, Chromium)"
node --test --test-concurrency=1 tests/e2e/
