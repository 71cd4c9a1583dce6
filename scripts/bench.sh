#!/usr/bin/env bash
# The benchmark: builds what it needs, then prints the tables (see docs/performance.md).
# Arguments go to scripts/bench.mjs: --quick, --digits N, --window S, --visits N, --json FILE.
source "$(dirname "$0")/ensure.sh"
build_wasm
ensure_chromium
ensure_npm
ensure_python_packages numpy scipy onnx
exec node "$ROOT/scripts/bench.mjs" "$@"
