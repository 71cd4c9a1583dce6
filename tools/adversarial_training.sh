#!/usr/bin/env bash
# The paper's section 4.2 experiment as blindspot runs it (docs/results.md, "Adversarial
# training"): FC100-100-10 from one seeded initialisation, trained 20 epochs (a) with weight decay
# alone, (b) with the paper's refreshed pool of L-BFGS adversarial examples, (d) with FGSM
# examples (Goodfellow et al. 2014), (c) with the paper's per-layer pools too; then Table 1's
# minimal L-BFGS distortion on 1,000 test digits for each, beside the shipped model.
# Writes target/adversarial-training/; about 75 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/adversarial-training
mkdir -p "$OUT"
cargo build --release --bin blindspot
B=target/release/blindspot
python3 tools/init_weights.py models/fc100-100-10.onnx "$OUT/init.onnx" --seed 2013
common="--epochs 20 --batch 32 --lr 0.1 --weight-decay 1e-5 --seed 2013"
$B train "$OUT/init.onnx" --out "$OUT/a.onnx" $common | tee "$OUT/a.jsonl"
$B train "$OUT/init.onnx" --out "$OUT/b.onnx" $common --adversarial lbfgs --pool 1000 --refresh 0.1 | tee "$OUT/b.jsonl"
$B train "$OUT/init.onnx" --out "$OUT/c.onnx" $common --adversarial layers --pool 1000 --refresh 0.1 | tee "$OUT/c.jsonl"
$B train "$OUT/init.onnx" --out "$OUT/d.onnx" $common --adversarial fgsm --epsilon 0.1 | tee "$OUT/d.jsonl"
$B table1 --n 1000 --models "fc100-100-10,$OUT/a.onnx,$OUT/b.onnx,$OUT/c.onnx,$OUT/d.onnx"
