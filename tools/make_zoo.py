#!/usr/bin/env python3
"""Builds the "zoo" fixtures: two small ImageNet-style classifiers with random (seeded) weights,
laid out and named the way torch.onnx.export (opset 13, BatchNormalization kept) writes them,
plus a reference input and onnxruntime's logits for each, and the README that describes them.

    python3 tools/make_zoo.py

writes tests/fixtures/zoo/{mobilenet,resnet}.onnx, <name>-input.npy, <name>-logits.npy and
README.md. Needs numpy, onnx and onnxruntime. Deterministic: running it twice gives
byte-identical files.
"""
import os
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "zoo")
SEED = 20240613
SIZE = 64
CLASSES = 10
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # what torch writes for its default momentum of 0.1


class Graph:
    """Collects nodes and initializers, naming them like the TorchScript ONNX exporter:
    node `/features/features.1/conv/conv.0/conv.0.0/Conv`, its output `<node>_output_0`,
    parameters `features.1.conv.0.0.weight`."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.used = set()
        self.params = 0   # trainable parameters (what torch's model.parameters() counts)
        self.buffers = 0  # BatchNorm running mean/var

    def node(self, op, scope, inputs, **attrs):
        """`scope` is the module path, e.g. "features.1.conv.0.0" (or "" for the top level)."""
        name = module_path(scope) + "/" + op
        base, i = name, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        out = name + "_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def constant(self, scope, value):
        return self.node("Constant", scope, [], value=numpy_helper.from_array(value, "value"))

    def init(self, name, array, buffer=False):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        if buffer:
            self.buffers += array.size
        else:
            self.params += array.size
        return name

    # --- layers -------------------------------------------------------------------------

    def conv(self, scope, x, cin, cout, k, stride=1, group=1, pad=None):
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        pad = k // 2 if pad is None else pad
        return self.node("Conv", scope, [x, self.init(scope + ".weight", w.astype(np.float32))],
                         dilations=[1, 1], group=group, kernel_shape=[k, k],
                         pads=[pad, pad, pad, pad], strides=[stride, stride])

    def bn(self, scope, x, c, gamma=(0.7, 1.3)):
        r = self.rng
        scale = r.uniform(*gamma, c)
        bias = r.uniform(-0.2, 0.3, c)
        mean = r.normal(0.0, 0.2, c)
        var = r.uniform(0.6, 1.6, c)
        ins = [x,
               self.init(scope + ".weight", scale.astype(np.float32)),
               self.init(scope + ".bias", bias.astype(np.float32)),
               self.init(scope + ".running_mean", mean.astype(np.float32), buffer=True),
               self.init(scope + ".running_var", var.astype(np.float32), buffer=True)]
        return self.node("BatchNormalization", scope, ins, epsilon=BN_EPS, momentum=BN_MOMENTUM)

    def relu6(self, scope, x):
        # ReLU6 as opset >= 11 exporters write it: Clip with min/max as scalar Constant inputs.
        lo = self.constant(scope, np.array(0.0, np.float32))
        hi = self.constant(scope, np.array(6.0, np.float32))
        return self.node("Clip", scope, [x, lo, hi])

    def gemm(self, scope, x, cin, cout):
        bound = 1.0 / np.sqrt(cin)
        # uniform like torch.nn.Linear's default, but sqrt(3) wider (std 1/sqrt(fan_in)) so the
        # logits of a random net are not squeezed together
        w = self.rng.uniform(-bound, bound, (cout, cin)) * np.sqrt(3.0)
        b = self.rng.uniform(-bound, bound, cout)
        return self.node("Gemm", scope, [x, self.init(scope + ".weight", w.astype(np.float32)),
                                         self.init(scope + ".bias", b.astype(np.float32))],
                         alpha=1.0, beta=1.0, transB=1)

    def model(self, name, x_name, y_name, doc):
        graph = helper.make_graph(
            self.nodes, "main_graph",
            [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
            [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, [1, CLASSES])],
            self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="blindspot-make_zoo", producer_version="1",
                              doc_string=doc)
        m.ir_version = 8
        m.model_version = 1
        return m


def module_path(scope):
    """"features.1.conv.0.0" -> "/features/features.1/conv/conv.0/conv.0.0", as torch writes it:
    one segment per module, each the dotted name since the last named (non-index) module."""
    segs, anchor = [], 0
    for i, p in enumerate(scope.split(".") if scope else []):
        if not p.isdigit():
            anchor = i
        segs.append(".".join(scope.split(".")[anchor:i + 1]))
    return "".join("/" + s for s in segs)


def fix_output(model, out_name):
    """Rename the last node's output to the graph output name."""
    last = model.graph.node[-1]
    old = last.output[0]
    last.output[0] = out_name
    for n in model.graph.node:
        for k, v in enumerate(n.input):
            if v == old:
                n.input[k] = out_name


# --- MobileNetV2 ------------------------------------------------------------------------------

# (expand ratio t, output channels c, repeats n, first stride s), as in torchvision's table but
# narrow and with fewer stages for a 64x64 input.
MOBILENET_SETTING = [
    (1, 8, 1, 1),    # 32x32
    (6, 12, 2, 2),   # 16x16
    (6, 16, 2, 2),   # 8x8
    (6, 24, 3, 2),   # 4x4
    (6, 32, 1, 1),   # 4x4
]
MOBILENET_STEM = 16
MOBILENET_LAST = 128


def mobilenet(rng):
    g = Graph(rng)
    layers = []
    # features.0: Conv2dNormActivation(3, 16, stride 2) = Conv + BN + ReLU6
    x = g.conv("features.0.0", "input", 3, MOBILENET_STEM, 3, stride=2)
    x = g.bn("features.0.1", x, MOBILENET_STEM)
    x = g.relu6("features.0.2", x)
    layers.append(f"features.0: Conv 3x3 s2 3->{MOBILENET_STEM} + BN + ReLU6 (Clip)  -> 32x32")
    cin, idx, hw = MOBILENET_STEM, 1, SIZE // 2
    for t, c, n, s in MOBILENET_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            f = f"features.{idx}.conv"
            y, j = x, 0
            if t != 1:  # 1x1 expand
                y = g.conv(f"{f}.{j}.0", y, cin, hidden, 1)
                y = g.bn(f"{f}.{j}.1", y, hidden)
                y = g.relu6(f"{f}.{j}.2", y)
                j += 1
            # 3x3 depthwise
            y = g.conv(f"{f}.{j}.0", y, hidden, hidden, 3, stride=stride, group=hidden)
            y = g.bn(f"{f}.{j}.1", y, hidden)
            y = g.relu6(f"{f}.{j}.2", y)
            j += 1
            # 1x1 linear project (no activation)
            y = g.conv(f"{f}.{j}", y, hidden, c, 1)
            residual = stride == 1 and cin == c
            # the last BN of a residual branch gets smaller scales, as trained nets tend to
            y = g.bn(f"{f}.{j + 1}", y, c, gamma=(0.3, 0.7) if residual else (0.7, 1.3))
            hw //= stride
            if residual:
                y = g.node("Add", f"features.{idx}", [x, y])
            layers.append(
                f"features.{idx}: inverted residual t={t} {cin}->{hidden}->{c} stride {stride}"
                f"{' (no expand conv, as torchvision for t=1)' if t == 1 else ''}"
                f"{' + residual Add' if residual else ''}  -> {hw}x{hw}")
            x, cin, idx = y, c, idx + 1
    # final 1x1 Conv + BN + ReLU6
    x = g.conv(f"features.{idx}.0", x, cin, MOBILENET_LAST, 1)
    x = g.bn(f"features.{idx}.1", x, MOBILENET_LAST)
    x = g.relu6(f"features.{idx}.2", x)
    layers.append(f"features.{idx}: Conv 1x1 {cin}->{MOBILENET_LAST} + BN + ReLU6 (Clip)")
    # A leftover Identity, as exporters sometimes leave them.
    x = g.node("Identity", "", [x])
    layers.append("Identity (no-op left in the graph)")
    x = g.node("GlobalAveragePool", "", [x])
    # torch.flatten written as Reshape with a constant shape
    shape = g.constant("", np.array([1, MOBILENET_LAST], np.int64))
    x = g.node("Reshape", "", [x, shape])
    layers.append(f"GlobalAveragePool + Reshape to [1, {MOBILENET_LAST}] (constant shape)")
    # classifier = Sequential(Dropout(0.2), Linear)
    ratio = g.constant("classifier.0", np.array(0.2, np.float32))
    x = g.node("Dropout", "classifier.0", [x, ratio])
    layers.append("classifier.0: Dropout, ratio 0.2 as an input (opset 12+ form), inference mode")
    g.gemm("classifier.1", x, MOBILENET_LAST, CLASSES)
    layers.append(f"classifier.1: Gemm transB=1 {MOBILENET_LAST}->{CLASSES} -> logits")
    doc = ("MobileNetV2-style classifier with random weights (seed %d), generated by "
           "tools/make_zoo.py; not trained." % SEED)
    m = g.model("mobilenet", "input", "logits", doc)
    fix_output(m, "logits")
    return m, g, layers


# --- ResNet-18 --------------------------------------------------------------------------------

RESNET_WIDTHS = [12, 24, 48, 96]  # torchvision's ResNet-18 is 64, 128, 256, 512


def resnet(rng):
    g = Graph(rng)
    layers = []
    w0 = RESNET_WIDTHS[0]
    x = g.conv("conv1", "input", 3, w0, 7, stride=2, pad=3)
    x = g.bn("bn1", x, w0)
    x = g.node("Relu", "relu", [x])
    layers.append(f"conv1: Conv 7x7 s2 p3 3->{w0} + BN + Relu  -> 32x32")
    x = g.node("MaxPool", "maxpool", [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1], strides=[2, 2])
    layers.append("maxpool: MaxPool 3x3 s2 p1  -> 16x16")
    cin, hw = w0, SIZE // 4
    for li, c in enumerate(RESNET_WIDTHS, start=1):
        for b in range(2):
            stride = 2 if (li > 1 and b == 0) else 1
            p = f"layer{li}.{b}"
            y = g.conv(f"{p}.conv1", x, cin, c, 3, stride=stride)
            y = g.bn(f"{p}.bn1", y, c)
            y = g.node("Relu", f"{p}.relu", [y])
            y = g.conv(f"{p}.conv2", y, c, c, 3)
            y = g.bn(f"{p}.bn2", y, c, gamma=(0.3, 0.7))
            short = x
            downsample = stride != 1 or cin != c
            if downsample:
                short = g.conv(f"{p}.downsample.0", x, cin, c, 1, stride=stride, pad=0)
                short = g.bn(f"{p}.downsample.1", short, c)
            y = g.node("Add", p, [y, short])
            # torch reuses the block's single ReLU module; its second call is scoped relu_1
            x = g.node("Relu", f"{p}.relu_1", [y])
            hw //= stride
            layers.append(
                f"{p}: basic block {cin}->{c}: Conv 3x3 s{stride} + BN + Relu, Conv 3x3 + BN, "
                f"Add {'downsample (Conv 1x1 s2 + BN)' if downsample else 'identity'} "
                f"shortcut, Relu  -> {hw}x{hw}")
            cin = c
    x = g.node("GlobalAveragePool", "avgpool", [x])
    x = g.node("Flatten", "", [x], axis=1)
    layers.append(f"avgpool: GlobalAveragePool; Flatten (axis 1) -> [1, {cin}]")
    g.gemm("fc", x, cin, CLASSES)
    layers.append(f"fc: Gemm transB=1 {cin}->{CLASSES} -> logits")
    doc = ("ResNet-18-style classifier (narrow) with random weights (seed %d), generated by "
           "tools/make_zoo.py; not trained." % SEED)
    m = g.model("resnet", "input", "logits", doc)
    fix_output(m, "logits")
    return m, g, layers


# --- checks and reference data ---------------------------------------------------------------

def session(model, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def check(name, model, x, logits, verbose):
    std = float(logits.std())
    assert 0.3 < std < 30, f"{name}: logits std {std} out of range"
    assert np.ptp(logits) > 1e-3, f"{name}: logits do not differ across classes"
    assert np.isfinite(logits).all()
    # the classifier must depend on its input: another input gives other logits
    sess = session(model)
    x2 = np.random.default_rng(SEED + 1).random(x.shape, dtype=np.float32)
    other = sess.run(["logits"], {"input": x2})[0]
    assert np.abs(other - logits).max() > 0.01, f"{name}: logits ignore the input"
    if verbose:
        acts = [n.output[0] for n in model.graph.node if n.op_type in ("Clip", "Relu")]
        sess = session(model, acts)
        outs = sess.run(acts, {"input": x})
        print(f"{name}: logits std {std:.3f} range [{logits.min():.3f}, {logits.max():.3f}]"
              f" argmax {int(logits.argmax())}; other input argmax {int(other.argmax())}")
        for a, v in zip(acts, outs):
            print(f"  {a:70s} zero {np.mean(v <= 0):.2f} six {np.mean(v >= 6):.3f}"
                  f" mean {v.mean():.3f} std {v.std():.3f}")


def op_summary(model):
    return Counter(n.op_type for n in model.graph.node)


def readme(entries):
    lines = [
        "# Zoo fixtures: ImageNet-style classifiers with random weights",
        "",
        "Generated by `tools/make_zoo.py`; regenerate everything (models, reference data and "
        "this README) with",
        "",
        "    python3 tools/make_zoo.py",
        "",
        "The script is deterministic (numpy generator seeded with %d, onnxruntime run "
        "single-threaded with graph optimizations off): running it twice gives byte-identical "
        "files." % SEED,
        "",
        "The weights are **random, not trained**: the labels mean nothing. Conv weights are "
        "He-scaled (normal, std sqrt(2/fan_in)); every BatchNormalization has random scale, bias, "
        "running mean and (positive) running variance and is kept as a BatchNormalization node "
        "(not folded into the convolution). The graphs are laid out and named the way "
        "`torch.onnx.export` (opset 13) writes torchvision models: node names such as "
        "`/features/features.2/conv/conv.0/conv.0.0/Conv`, tensors `<node>_output_0`, "
        "parameters `features.2.conv.0.0.weight`, scalars as `Constant` nodes.",
        "",
        "All models: opset 13, IR version 8, input `input` float32 [1, 3, 64, 64] (fixed), "
        "output `logits` float32 [1, 10] (no Softmax). `onnx.checker.check_model(full_check=True)` "
        "passes.",
        "",
        "Reference data, per model `<name>`:",
        "",
        "- `<name>-input.npy`: float32 [1, 3, 64, 64], uniform in [0, 1), seeded;",
        "- `<name>-logits.npy`: float32 [1, 10], onnxruntime's logits for that input.",
        "",
    ]
    for e in entries:
        lines += [
            f"## {e['file']}",
            "",
            e["title"],
            "",
            f"- file size: {e['size']:,} bytes",
            f"- parameters: {e['params']:,} trainable (conv weights, BN scale/bias, Gemm "
            f"weight/bias) + {e['buffers']:,} BN running mean/var = {e['params'] + e['buffers']:,}"
            " stored values",
            f"- nodes: {e['nodes']}; op types: "
            + ", ".join(f"{op} ({k})" for op, k in sorted(e['ops'].items())),
            f"- reference logits std {e['std']:.3f}, argmax {e['argmax']}",
            "",
            "Layers:",
            "",
        ]
        lines += [f"- {l}" for l in e["layers"]]
        lines.append("")
    return "\n".join(lines)


def main():
    verbose = "-v" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    entries = []
    builders = [
        ("mobilenet", mobilenet, "MobileNetV2-class: stem, %d inverted-residual blocks "
         "(1x1 expand + 3x3 depthwise + 1x1 linear project, residual Add where shapes match), "
         "final 1x1 conv, global average pool, Dropout, linear classifier. ReLU6 is Clip(0, 6)."
         % sum(n for _, _, n, _ in MOBILENET_SETTING)),
        ("resnet", resnet, "ResNet-18 layout (4 stages x 2 basic blocks), narrow: widths %s "
         "instead of 64/128/256/512." % "/".join(map(str, RESNET_WIDTHS))),
    ]
    for idx, (name, build, title) in enumerate(builders):
        rng = np.random.default_rng([SEED, idx])
        model, g, layers = build(rng)
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(model, path)
        x = np.random.default_rng([SEED, idx, 1]).random((1, 3, SIZE, SIZE), dtype=np.float32)
        logits = session(model).run(["logits"], {"input": x})[0].astype(np.float32)
        assert logits.shape == (1, CLASSES)
        check(name, model, x, logits, verbose)
        np.save(os.path.join(OUT, name + "-input.npy"), x)
        np.save(os.path.join(OUT, name + "-logits.npy"), logits)
        entries.append(dict(file=name + ".onnx", title=title, size=os.path.getsize(path),
                            params=g.params, buffers=g.buffers, nodes=len(model.graph.node),
                            ops=op_summary(model), layers=layers, std=float(logits.std()),
                            argmax=int(logits.argmax())))
        print(f"{path}: {os.path.getsize(path):,} bytes, {g.params:,} params "
              f"(+{g.buffers:,} BN buffers), logits std {logits.std():.3f}")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(readme(entries))


if __name__ == "__main__":
    main()
