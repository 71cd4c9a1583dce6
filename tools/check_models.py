#!/usr/bin/env python3
"""Check models/ against the blindspot model contract: every models.json entry's ONNX file
(opset 13, IR 8, float32 initializers, input `input` [N,1,28,28], output `logits` [N,10], allowed
ops only, no Softmax, named nodes), its size and parameter count, and its error counts on the
digit packs models/data/mnist-test-{10k,1k}.bin recomputed with onnxruntime.

    python3 tools/check_models.py
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_digits import unpack  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
ALLOWED = {"Flatten", "Gemm", "MatMul", "Add", "Sigmoid", "Relu", "Conv", "MaxPool", "Sub", "Div",
           "Reshape"}


def dims(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def main():
    manifest = json.load(open(os.path.join(MODELS, "models.json")))["models"]
    packs = {k: unpack(open(os.path.join(MODELS, "data", f"mnist-test-{k}.bin"), "rb").read())
             for k in ("10k", "1k")}
    bad = 0
    assert manifest[0]["id"] == "cnn" and manifest[0]["default"]
    assert sum(m["default"] for m in manifest) == 1
    for m in manifest:
        path = os.path.join(MODELS, m["file"])
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        g = model.graph
        problems = []
        if model.ir_version != 8:
            problems.append(f"ir_version {model.ir_version}")
        if [(o.domain, o.version) for o in model.opset_import] != [("", 13)]:
            problems.append("opset")
        if [i.name for i in g.input] != ["input"] or dims(g.input[0]) != ["N", 1, 28, 28]:
            problems.append("input")
        if g.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append("input type")
        if [o.name for o in g.output] != ["logits"] or dims(g.output[0]) != ["N", 10]:
            problems.append("output")
        ops = {n.op_type for n in g.node}
        if not ops <= ALLOWED:
            problems.append(f"ops {ops - ALLOWED}")
        if any(not n.name for n in g.node):
            problems.append("unnamed node")
        if any(t.data_type != onnx.TensorProto.FLOAT for t in g.initializer):
            problems.append("non-float32 initializer")
        params = sum(int(np.prod(t.dims)) for t in g.initializer if t.name not in ("mean", "std"))
        if params != m["params"]:
            problems.append(f"params {params} != {m['params']}")
        if os.path.getsize(path) != m["bytes"]:
            problems.append("bytes")
        if not os.path.exists(os.path.join(MODELS, m["card"])):
            problems.append("card missing")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for k, (imgs, labels) in packs.items():
            x = (imgs.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
            pred = np.concatenate([sess.run(["logits"], {"input": x[i:i + 1000]})[0].argmax(1)
                                   for i in range(0, len(x), 1000)])
            errs = int(np.sum(pred != labels))
            if errs != m[f"test_errors_{k}"]:
                problems.append(f"test_errors_{k} {errs} != {m[f'test_errors_{k}']}")
            if k == "10k" and abs(errs / 10000 - m["test_error"]) > 1e-9:
                problems.append("test_error")
        print(f"{m['id']:18s} {'OK' if not problems else 'FAIL ' + '; '.join(problems)}")
        bad += bool(problems)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
