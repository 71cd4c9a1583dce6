#!/usr/bin/env python3
"""The test error of an MNIST ONNX classifier through onnxruntime (an oracle blindspot did not
write): the model's answers for every digit of a digit pack, one JSON line
{"errors", "count", "error", "ops"}. tests/e2e/train.test.mjs checks a model trained in the page.

    python3 tools/onnx_errors.py TRAINED.onnx [--pack models/data/mnist-test-10k.bin]
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_digits import unpack  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--pack", default=os.path.join(ROOT, "models/data/mnist-test-10k.bin"))
    args = parser.parse_args()
    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    with open(args.pack, "rb") as f:
        images, labels = unpack(f.read())
    x = images.reshape(len(labels), 1, 28, 28).astype(np.float32) / 255.0
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    step = 1 if first.shape[0] == 1 else 1000  # a file with a fixed batch of 1 takes one at a time
    x = x.reshape([len(labels)] + [d if isinstance(d, int) else -1 for d in first.shape[1:]]) if step == 1 else x
    answers = np.concatenate([session.run(None, {first.name: x[i:i + step]})[0].reshape(-1, 10).argmax(axis=1)
                              for i in range(0, len(x), step)])
    errors = int((answers != labels).sum())
    print(json.dumps({"errors": errors, "count": len(labels), "error": errors / len(labels),
                      "ops": [n.op_type for n in model.graph.node]}))


if __name__ == "__main__":
    main()
