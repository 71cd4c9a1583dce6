#!/usr/bin/env bash
# Builds the wasm and serves the site on 127.0.0.1 (PORT, default 8080; 0 picks a free one).
source "$(dirname "$0")/ensure.sh"
build_wasm
exec node "$ROOT/scripts/serve.mjs" --port "${PORT:-8080}"
