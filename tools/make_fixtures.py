"""Builds the small, deliberately broken ONNX files the tests feed to blindspot.

Run: python3 tools/make_fixtures.py   (writes tests/fixtures/*.onnx; needs the onnx package)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def image_input(name="input"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1, 28, 28])


def save(graph, name, opset=13):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((784, 10)).astype(np.float32), "w")
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])

    # An operator no ONNX runtime knows, between two ordinary ones.
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("FancyWarp", ["flat"], ["warped"], name="warp_layer"),
         helper.make_node("MatMul", ["warped", "w"], ["logits"], name="dense")],
        "unsupported_op", [image_input()], [logits], [w]), "unsupported-op.onnx")

    # Two image inputs added together: not a single-input classifier.
    save(helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
         helper.make_node("Flatten", ["sum"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "two_inputs", [image_input("a"), image_input("b")], [logits], [w]), "two-inputs.onnx")

    # Runs forward, but ReduceProd (over the single channel: the identity) has no gradient rule
    # in blindspot: gradients must be refused by name. (Sin served here until it got a rule.)
    save(helper.make_graph(
        [helper.make_node("ReduceProd", ["input"], ["wavy"], name="wobble", axes=[1], keepdims=1),
         helper.make_node("Flatten", ["wavy"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "no_gradient", [image_input()], [logits], [w]), "no-gradient.onnx")

    # A valid tiny softmax regression (784 -> 10), for shape checks.
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "tiny_linear", [image_input()], [logits], [w]), "tiny-linear.onnx")

    # The same regression with one weight NaN, and with a row of infinities: refused at load.
    bad = rng.standard_normal((784, 10)).astype(np.float32)
    bad[300, 4] = np.nan
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "nan_weights", [image_input()], [logits], [numpy_helper.from_array(bad, "w")]), "nan-weights.onnx")
    bad = rng.standard_normal((784, 10)).astype(np.float32)
    bad[100, :] = np.inf
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "inf_weights", [image_input()], [logits], [numpy_helper.from_array(bad, "w")]), "inf-weights.onnx")

    # An input whose height and width are symbolic: its shape must be given.
    dynamic = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])
    save(helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
         helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w1"], ["logits"], name="dense")],
        "dynamic_shape", [dynamic], [logits],
        [numpy_helper.from_array(rng.standard_normal((1, 10)).astype(np.float32), "w1")]), "dynamic-shape.onnx")

    # A valid classifier of 32x32 images: loads, but does not fit the 28x28 digits.
    w32 = numpy_helper.from_array(rng.standard_normal((1024, 10)).astype(np.float32), "w")
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "size_32", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 32, 32])], [logits], [w32]),
        "size-32.onnx")

    # PRelu at opset 6, its 1-D slope per channel, after a Relu whose output's rank the file does
    # not declare: tract would broadcast the slope against the last axis, so it is refused.
    slope = numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "slope")
    save(helper.make_graph(
        [helper.make_node("Relu", ["input"], ["r"], name="relu"),
         helper.make_node("PRelu", ["r", "slope"], ["p"], name="prelu"),
         helper.make_node("Flatten", ["p"], ["logits"], name="flatten", axis=1)],
        "prelu_6", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 2, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 18])], [slope]), "prelu-6.onnx", opset=6)

    # Pad in wrap mode (opset 19), which tract 0.23.9 does not know: blindspot rewrites it as slices
    # and concatenations. wrap-pad.npz holds the oracle: x, numpy's np.pad(x, mode="wrap") (which
    # onnxruntime's output equals), a direction v and the exact gradient of <v, pad(x)>: the pad
    # is linear, so its Jacobian is np.pad of each basis vector. wrap-pad-long.onnx pads an axis
    # of 3 cells by 4: more than once around, refused.
    shape, widths = (1, 2, 3, 4), ((0, 0), (0, 0), (1, 2), (2, 1))
    for name, pads in [("wrap-pad.onnx", widths), ("wrap-pad-long.onnx", ((0, 0), (0, 0), (4, 0), (0, 0)))]:
        flat = np.array([p[0] for p in pads] + [p[1] for p in pads], np.int64)
        save(helper.make_graph(
            [helper.make_node("Pad", ["input", "pads"], ["padded"], name="wrap", mode="wrap")],
            "wrap_pad", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
            [helper.make_tensor_value_info("padded", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(flat, "pads")]), name, opset=19)
    x = rng.random(shape).astype(np.float32)
    expected = np.pad(x, widths, mode="wrap")
    import onnxruntime
    session = onnxruntime.InferenceSession(os.path.join(OUT, "wrap-pad.onnx"))
    assert np.array_equal(session.run(None, {"input": x})[0], expected)
    v = rng.standard_normal(expected.shape).astype(np.float32)
    n = x.size
    jacobian = np.stack([np.pad(np.eye(n)[i].reshape(shape), widths, mode="wrap").ravel() for i in range(n)], axis=1)
    gradient = (jacobian.T @ v.ravel().astype(np.float64)).astype(np.float32).reshape(shape)
    np.savez(os.path.join(OUT, "wrap-pad.npz"), x=x, expected=expected, v=v, gradient=gradient)

    # An input that is a single number (rank 0): no batch axis to read, refused at load. (Its own
    # generator, after the others, so their random draws stay as they were.)
    scale = numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(1, 10), "scale")
    save(helper.make_graph(
        [helper.make_node("Mul", ["input", "scale"], ["logits"], name="times")],
        "scalar_input", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], [scale]), "scalar-input.onnx")

    # A wrap-mode Pad with no output (a hand-edited or broken file): refused naming the node, where
    # the rewrite of wrap pads once indexed past the end of its outputs.
    save(helper.make_graph(
        [helper.make_node("Pad", ["input", "pads"], [], name="wrap", mode="wrap"),
         helper.make_node("Flatten", ["input"], ["logits"], name="flatten", axis=1)],
        "wrap_pad_no_output", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int64), "pads")]), "wrap-pad-no-output.onnx", opset=19)

    # A softmax regression whose weight is a Constant node, not an initializer (some exporters
    # write weights so): trained like an initializer, and written back as one. And a graph with
    # no weights at all (a Softmax of the flattened image): nothing to train.
    save(helper.make_graph(
        [helper.make_node("Constant", [], ["w"], name="weight", value=numpy_helper.from_array(
            rng.standard_normal((784, 10)).astype(np.float32) * 0.01, "w")),
         helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="dense")],
        "constant_weight", [image_input()], [logits], []), "constant-weight.onnx")
    save(helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
         helper.make_node("Slice", ["flat", "start", "end", "axes"], ["logits"], name="first10")],
        "no_weights", [image_input()], [logits],
        [numpy_helper.from_array(np.array([0], np.int64), "start"), numpy_helper.from_array(np.array([10], np.int64), "end"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")]),
        "no-weights.onnx")

    # The shipped fc100-100-10 as exporters lay out a grey digit: a flat [N, 784] vector (an
    # sklearn or Keras MLP) and channels-last [N, 28, 28, 1] (Keras): a Reshape in front of the
    # same graph, so each must classify every digit exactly as the shipped model does.
    shipped = onnx.load(os.path.join(os.path.dirname(__file__), "..", "models", "fc100-100-10.onnx"))
    for name, dims in [("digits-flat.onnx", ["N", 784]), ("digits-nhwc.onnx", ["N", 28, 28, 1])]:
        model = onnx.ModelProto()
        model.CopyFrom(shipped)
        graph = model.graph
        inner = graph.input[0].name
        graph.input[0].name = "pixels"
        graph.input[0].type.tensor_type.ClearField("shape")
        for d in dims:
            dim = graph.input[0].type.tensor_type.shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d
        graph.initializer.append(numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "to_planes"))
        graph.node.insert(0, helper.make_node("Reshape", ["pixels", "to_planes"], [inner], name="to_planes"))
        onnx.checker.check_model(model)
        onnx.save(model, os.path.join(OUT, name))


if __name__ == "__main__":
    main()
