# Installs what the build and the tests need when it is missing; sourced by serve.sh and test.sh.
# Each step is skipped when its result is already there, so a warm machine pays nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

say() { printf '\033[1m[blindspot]\033[0m %s\n' "$*" >&2; }

ensure_wasm_target() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || { say "adding the wasm32-unknown-unknown target"; rustup target add wasm32-unknown-unknown; }
}

# The wasm-bindgen CLI must equal the wasm-bindgen crate in Cargo.lock, to the patch version.
ensure_wasm_bindgen() {
  local want have
  want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock")
  have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$want" ]; then
    # --locked fails for 0.2.130 (its lockfile pins a crate the registry no longer serves).
    say "installing wasm-bindgen-cli $want (about 11 minutes on 2 cores, once)"
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium for the browser tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
}

# Mesa's lavapipe: a CPU Vulkan driver, so the native WebGPU tests (tests/gpu.rs) find an adapter.
ensure_lavapipe() {
  if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    say "installing Mesa's lavapipe (CPU Vulkan) for the WebGPU tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
}

# Python packages for the tools the benchmark runs (tools/bench_attack.py); pip --user when missing.
ensure_python_packages() {
  local missing=()
  for p in "$@"; do python3 -c "import $p" 2>/dev/null || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Python packages: ${missing[*]}"
    python3 -m pip install --quiet --user "${missing[@]}" \
      || python3 -m pip install --quiet --user --break-system-packages "${missing[@]}"
  fi
}

# ONNX's conformance cases as gradient oracles (tools/conformance.py -> tests/fixtures/conformance/,
# about 2 minutes, 28 MB, not committed). The onnx wheel is pinned: its cases are what the committed
# coverage table in docs/gradients.md counts. Regenerated when missing or older than the tool.
ensure_conformance_cases() {
  local pins=(onnx==1.23.0 onnxruntime==1.32.0)
  if ! python3 -c "import onnx, onnxruntime, numpy, scipy; assert onnx.__version__ == '1.23.0' and onnxruntime.__version__ == '1.32.0'" 2>/dev/null; then
    say "installing Python packages: ${pins[*]} numpy scipy"
    python3 -m pip install --quiet --user "${pins[@]}" numpy scipy \
      || python3 -m pip install --quiet --user --break-system-packages "${pins[@]}" numpy scipy
  fi
  local manifest="$ROOT/tests/fixtures/conformance/cases.json"
  if [ ! -f "$manifest" ] || [ "$ROOT/tools/conformance.py" -nt "$manifest" ]; then
    say "writing ONNX's conformance cases (tools/conformance.py)"
    python3 "$ROOT/tools/conformance.py" >/dev/null
  fi
}

# The ONNX model zoo's classic ImageNet graphs with seeded weights (tools/model_zoo.py ->
# target/model-zoo/, 460 MB, about 30 s; their oracle is committed in tests/fixtures/model-zoo/).
ZOO_MODELS=bvlc_alexnet,inception_v1,inception_v2,resnet50,shufflenet,squeezenet,densenet121
ensure_model_zoo() {
  if ! python3 "$ROOT/tools/model_zoo.py" --check --models "$ZOO_MODELS" >/dev/null 2>&1; then
    say "writing the model zoo's graphs with seeded weights (tools/model_zoo.py)"
    python3 "$ROOT/tools/model_zoo.py" --weights-only --check --models "$ZOO_MODELS" >/dev/null
  fi
}

ensure_npm() {
  if [ ! -d "$ROOT/node_modules/playwright-core" ] \
     || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    say "installing npm packages (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund)
  fi
}

# Release wasm (fat LTO: `cargo rustc --crate-type cdylib` overrides the rlib that would drop it)
# plus the wasm-bindgen glue in pkg/.
build_wasm() {
  ensure_wasm_target
  ensure_wasm_bindgen
  say "building the wasm (release; a cold build takes several minutes)"
  (cd "$ROOT" && cargo rustc --lib --release --target wasm32-unknown-unknown --crate-type cdylib)
  wasm-bindgen "$ROOT/target/wasm32-unknown-unknown/release/blindspot.wasm" \
    --out-dir "$ROOT/pkg" --target web --no-typescript --remove-name-section
  say "pkg/blindspot_bg.wasm: $(stat -c %s "$ROOT/pkg/blindspot_bg.wasm") bytes"
}
