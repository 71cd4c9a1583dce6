"""Small, valid ONNX classifiers that seed the loading fuzzer (fuzz/corpus/load/).

Tiny inputs and weights, so libFuzzer's mutations land in the graph's structure (ops, attributes,
shapes) rather than in kilobytes of weights. Each uses a different slice of the op set.
Run: python3 tools/make_fuzz_seeds.py   (needs the onnx package)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "load")
rng = np.random.default_rng(1)


def w(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def save(nodes, inits, shape, name, classes=3):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, f"seed-{name}.onnx"))


def main():
    os.makedirs(OUT, exist_ok=True)
    n = helper.make_node
    save([n("Sub", ["input", "m"], ["a"]), n("Div", ["a", "s"], ["b"]),
          n("Conv", ["b", "k", "kb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
          n("Relu", ["c"], ["r"]), n("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
          n("Flatten", ["p"], ["f"], axis=1), n("Gemm", ["f", "g", "gb"], ["logits"], transB=1)],
         [numpy_helper.from_array(np.array([0.1], np.float32), "m"), numpy_helper.from_array(np.array([0.3], np.float32), "s"),
          w("k", 2, 1, 3, 3), w("kb", 2), w("g", 3, 8), w("gb", 3)], ["N", 1, 4, 4], "cnn")
    save([n("Flatten", ["input"], ["f"], axis=1), n("Gemm", ["f", "a", "ab"], ["h"]), n("Sigmoid", ["h"], ["s"]),
          n("MatMul", ["s", "b"], ["t"]), n("Add", ["t", "bb"], ["logits"])],
         [w("a", 9, 4), w("ab", 4), w("b", 4, 3), w("bb", 3)], ["N", 1, 3, 3], "mlp")
    save([n("Conv", ["input", "k"], ["c"], kernel_shape=[1, 1], group=1),
          n("BatchNormalization", ["c", "g", "b", "mu", "var"], ["bn"], epsilon=1e-5),
          n("Clip", ["bn", "lo", "hi"], ["r6"]),
          n("Conv", ["r6", "dw"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
          n("Add", ["d", "r6"], ["res"]), n("GlobalAveragePool", ["res"], ["gap"]),
          n("Reshape", ["gap", "shape"], ["flat"]), n("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1)],
         [w("k", 2, 3, 1, 1), w("g", 2), w("b", 2), w("mu", 2),
          numpy_helper.from_array(np.abs(rng.standard_normal(2)).astype(np.float32) + 0.5, "var"),
          numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi"),
          w("dw", 2, 1, 3, 3), numpy_helper.from_array(np.array([1, 2], np.int64), "shape"), w("fc", 3, 2), w("fcb", 3)],
         [1, 3, 4, 4], "mobile")
    save([n("Transpose", ["input"], ["t"], perm=[0, 1, 3, 2]), n("Concat", ["input", "t"], ["c"], axis=1),
          n("AveragePool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]), n("Flatten", ["p"], ["f"], axis=1),
          n("MatMul", ["f", "m"], ["z"]), n("Tanh", ["z"], ["logits"])],
         [w("m", 8, 3)], ["N", 1, 4, 4], "mixed")


if __name__ == "__main__":
    main()
