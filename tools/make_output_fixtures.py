#!/usr/bin/env python3
"""Builds the output-kind fixtures: the shipped FC100-100-10 and CNN ending the way exporters end
them (Softmax, Softmax behind Flatten/Reshape, LogSoftmax opsets 11 and 13, a [1,10,1,1] output,
a hand-written exp/sum normalisation, skl2onnx's label + probabilities pair), and graphs blindspot
must refuse (a final Sigmoid, two float score outputs, no score output), with onnxruntime's own
outputs on the first five MNIST test digits as the oracle.

    python3 tools/make_output_fixtures.py

writes tests/fixtures/outputs/*.onnx and tests/fixtures/outputs/expected.json. Needs numpy, onnx,
onnxruntime. Deterministic: the shipped models and digits are the only inputs.
"""
import gzip
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "outputs")


def digits(n=5):
    """The first n test digits of models/data/mnist-test-1k.bin (tools/pack_digits.py's format),
    as floats in [0, 1], shape [n, 1, 28, 28]."""
    raw = open(os.path.join(ROOT, "models", "data", "mnist-test-1k.bin"), "rb").read()
    assert raw[:4] == b"BSDG"
    count, rows, cols = np.frombuffer(raw[8:20], "<u4")
    start = 20 + count
    pixels = np.frombuffer(raw[start : start + n * rows * cols], np.uint8)
    return pixels.astype(np.float32).reshape(n, 1, rows, cols) / 255.0


def end_with(base, name, nodes, outputs, opset=None, extra_inits=()):
    """A copy of `base` whose graph output `logits` feeds `nodes`; the graph outputs become `outputs`."""
    m = onnx.load(os.path.join(ROOT, "models", base))
    g = m.graph
    g.node.extend(nodes)
    g.initializer.extend(extra_inits)
    del g.output[:]
    g.output.extend(outputs)
    if opset is not None:
        m.opset_import[0].version = opset
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, name))
    return m


def f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    N = "N"
    cases = {}
    mlp, cnn = "fc100-100-10.onnx", "cnn.onnx"
    # what exporters write
    cases["mlp-softmax.onnx"] = end_with(mlp, "mlp-softmax.onnx",
        [helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)], [f("probs", [N, 10])])
    cases["mlp-softmax-reshape.onnx"] = end_with(mlp, "mlp-softmax-reshape.onnx",
        [helper.make_node("Reshape", ["logits", "shape4"], ["l4"], name="to4d"),
         helper.make_node("Softmax", ["l4"], ["p4"], name="softmax", axis=1),
         helper.make_node("Flatten", ["p4"], ["probs"], name="flatten_out", axis=1)],
        [f("probs", [1, 10])], extra_inits=[numpy_helper.from_array(np.array([1, 10, 1, 1], np.int64), "shape4")])
    cases["mlp-softmax-opset11.onnx"] = end_with(mlp, "mlp-softmax-opset11.onnx",
        [helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)], [f("probs", [N, 10])], opset=11)
    cases["mlp-logsoftmax.onnx"] = end_with(mlp, "mlp-logsoftmax.onnx",
        [helper.make_node("LogSoftmax", ["logits"], ["logp"], name="log_softmax", axis=-1)], [f("logp", [N, 10])])
    cases["mlp-logsoftmax-opset11.onnx"] = end_with(mlp, "mlp-logsoftmax-opset11.onnx",
        [helper.make_node("LogSoftmax", ["logits"], ["logp"], name="log_softmax", axis=1)], [f("logp", [N, 10])], opset=11)
    # SqueezeNet's ending: scores as [1, K, 1, 1], Softmax over axis 1
    cases["mlp-softmax-4d.onnx"] = end_with(mlp, "mlp-softmax-4d.onnx",
        [helper.make_node("Reshape", ["logits", "shape4"], ["l4"], name="to4d"),
         helper.make_node("Softmax", ["l4"], ["probs"], name="softmax", axis=1)],
        [f("probs", [1, 10, 1, 1])], extra_inits=[numpy_helper.from_array(np.array([1, 10, 1, 1], np.int64), "shape4")])
    # a normalisation written by hand: exp(z - max) / sum
    cases["mlp-manual-softmax.onnx"] = end_with(mlp, "mlp-manual-softmax.onnx",
        [helper.make_node("ReduceMax", ["logits"], ["m"], name="max", axes=[1], keepdims=1),
         helper.make_node("Sub", ["logits", "m"], ["shifted"], name="shift"),
         helper.make_node("Exp", ["shifted"], ["e"], name="exp"),
         helper.make_node("ReduceSum", ["e", "axes"], ["s"], name="sum", keepdims=1),
         helper.make_node("Div", ["e", "s"], ["probs"], name="normalise")],
        [f("probs", [N, 10])], extra_inits=[numpy_helper.from_array(np.array([1], np.int64), "axes")])
    # skl2onnx's MLPClassifier (zipmap=False): an int64 label and the probabilities
    cases["mlp-label-and-probs.onnx"] = end_with(mlp, "mlp-label-and-probs.onnx",
        [helper.make_node("ArgMax", ["logits"], ["label"], name="argmax", axis=1, keepdims=0),
         helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1)],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [N]), f("probabilities", [N, 10])])
    cases["cnn-softmax.onnx"] = end_with(cnn, "cnn-softmax.onnx",
        [helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)], [f("probs", [N, 10])])
    # refused: multi-label sigmoid scores, two float score outputs, no score output
    end_with(mlp, "mlp-sigmoid.onnx",
        [helper.make_node("Sigmoid", ["logits"], ["scores"], name="multi_label")], [f("scores", [N, 10])])
    end_with(mlp, "two-score-outputs.onnx",
        [helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)],
        [f("logits", [N, 10]), f("probs", [N, 10])])
    end_with(mlp, "no-score-output.onnx",
        [helper.make_node("ArgMax", ["logits"], ["label"], name="argmax", axis=1, keepdims=0)],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [N])])

    x = digits()
    expected = {"digits": x.reshape(5, -1).tolist(), "models": {}}
    for name, m in cases.items():
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        scores = outs[-1]
        rows = [sess.run([scores], {"input": x[i : i + 1]})[0].reshape(-1).tolist() for i in range(5)]
        expected["models"][name] = {"output": scores, "values": rows}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=0, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main()
