#!/usr/bin/env python3
"""The ONNX model zoo's classic ImageNet classifiers, made runnable with seeded weights, with
oracle data for a consumer that loads them at batch 1 and checks (a) its outputs against
onnxruntime and (b) the input gradient of cross-entropy against float64 finite differences.

Where the graphs come from (nothing is downloaded)
--------------------------------------------------
The installed `onnx` wheel (1.23.0) ships, as backend test data,
onnx/backend/test/data/light/light_<name>.onnx for

    bvlc_alexnet  densenet121  inception_v1  inception_v2  resnet50  shufflenet  squeezenet
    vgg19  zfnet512

the model zoo's Caffe2-converted classifiers (producer "onnx-caffe2", ir_version 3, ai.onnx
opset 9, input [1, 3, 224, 224] float32, 1000 classes) "made light": every large weight is the
output of a ConstantOfShape node (value 0.02, float32) reading an int64 shape initializer
"<weight>__SHAPE"; small float tensors (here: those of at most 64 elements, biases and the
BatchNormalization parameters of 16-64-channel layers; the smallest ConstantOfShape weight has
96) are kept as initializers with their trained values. As IR 3 requires, every initializer is
also listed in graph.input, and in four graphs the image is not the first graph input
('data_0' is graph.input[12] of 849 in densenet121, [23] in inception_v1, [13] in squeezenet,
[2] in vgg19): the image is the one graph input without an initializer.

What this tool changes (and nothing else: node order, names, attributes, ir_version, opset,
producer, doc strings and the graph inputs' order are the shipped ones)
  * each ConstantOfShape node is removed, and its output becomes an initializer of the same
    name, shape and dtype (float32), put where the "<weight>__SHAPE" initializer was (which is
    removed, with its graph.input entry, where the weight's float32 entry takes its place);
  * every float32 initializer a node reads as a parameter is drawn from a seed, the ones the
    light files kept at their trained values included (trained biases and BatchNorm statistics
    mean nothing beside random weights; an inception_v1 conv bias of 8 would swamp its layer);
  * a float32 initializer no node reads (resnet50's and zfnet512's
    'gpu_0/imagenet1k_blobs_queue_*' [1, 1]) is kept as shipped.

The parameters, by the role their consumer gives them (seeds: seed_of(model + "/" + tensor
name), numpy's default_rng, so a tensor's values do not depend on the order of processing):
  Conv W, Gemm B           He normal, N(0, 2 / fan_in) (fan_in = prod(W.shape[1:]) for Conv,
                           K for Gemm; inception_v1's classifier weight is Reshape'd to
                           [1000, 1024] before its Gemm: that shape counts)
  Conv B, Gemm C           N(0, 0.05^2)
  BatchNormalization       scale 1 + N(0, 0.1^2), B N(0, 0.1^2); but 1 and 0 where the
                           BatchNormalization is followed by Caffe2's Scale layer, written as
                           Mul(Unsqueeze(s)) and Add(Unsqueeze(b)) (densenet121, inception_v2,
                           as the converter writes them); input_mean / input_var calibrated
  the Scale layer s, b     1 + N(0, 0.1^2), N(0, 0.1^2)
  the head                 the last Conv/Gemm of the graph (the classifier: Gemm fc8/pred/
                           loss3, densenet121's fc6 and squeezenet's conv10 1x1 Convs):
                           W ~ N(0, 1 / fan_in), B calibrated, then W and B scaled
Calibration, in float64, by a pass of 4 seeded calibration images (2 uniform noise, 2 smooth
patterns: exporters.canonical_images) through the graph, node by node in graph order, each
node run by onnx.reference's kernel for it (see "the float64 evaluator" below): at each
BatchNormalization, input_mean and input_var are set to the mean and (population) variance,
over images and positions, of the input it receives (from the layers before it, already
calibrated), rounded to 4 significant digits; at the head, B := -(the mean of its output per
channel over images and positions), rounded to 4 significant digits (so the logits are
centred); then W and B are multiplied by s = LOGIT_STD / std(logits over the calibration
images and classes), s rounded to 2 significant digits (the path from the head to the logits,
ReLU / GlobalAveragePool / Reshape, is positively homogeneous, so s scales the logits
exactly). The logits are the input of the final Softmax where the graph ends in one, else the
graph output (densenet121's fc6, [1, 1000, 1, 1]). LOGIT_STD = 2.5: softmax's top-1 at the two
oracle inputs is then 0.045-0.69 and the least likely class's probability 1e-7..1e-13 (a
classifier, neither saturated nor uniform). What the logits vary with is mostly the kind of
image (noise or smooth), centred over 2 of each, so the two oracle inputs (one of each) get
roughly mirrored logits: in bvlc_alexnet, inception_v1 and zfnet512 each one's least likely
class is the other's top-1. The roundings make the bytes independent of the last bits of the float64 kernels
(BLAS, numpy's reductions): a last-bit difference changes a rounded value only when it falls
within ~1e-12 of a rounding boundary.

Inputs and directions (the same for every model: all take [1, 3, 224, 224]): x [2, 3, 224, 224]
(feed x[i:i+1]), two seeded images in [0, 1] (exporters.canonical_images: the first uniform
noise, the second a smooth random pattern mixed 80/20 with noise); the graphs take whatever
range they are given (the zoo's real models expect mean-subtracted 0-255 or normalised
pixels; [0, 1] is fine for this test). directions [3, 1, 3, 224, 224]: seeded standard normal,
rounded to float32.

The oracle
----------
For each input x_i: onnxruntime's (CPU, one thread) output row (1000 float32s); top5 (class
indices, most likely first); target t_i = argmin of the row (the least likely class);
f(x) = -log p_t(x), p = the output for kind "probabilities" (graphs ending in Softmax), p =
softmax(output) for kind "logits" (densenet121), in float64; loss = f(x_i) by the oracle; and
central differences d(u, h) = (f(x_i + h u_k) - f(x_i - h u_k)) / (2 h) for k = 1..3 at
h in STEPS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10), in float64. |u_k| ~ 388, so h |u_k| runs from
4e-4 down to 4e-8. These are piecewise-linear networks of millions of ReLUs and max-pools,
and a step still crosses a kink now and then (a unit whose pre-activation lies within
h |grad z . u| of zero); where it does, the larger steps disagree: by up to 30% between 1e-6
and 1e-7 and ~1% between 1e-8 and 1e-9 in the BatchNormalization networks, whose input
gradients are large (directional derivatives of ~15-1100 against ~0.2-20 for the others:
normalising every layer by its calibration spread compounds the sensitivity through depth),
and in inception_v1 (0.6% between 1e-8 and 1e-9). Float64 roundoff, ~1e-14 / h (f ~ 15-30,
errors of ~20 ulp), is ~1e-5 at 1e-9 and ~1e-4 at 1e-10. d(u, 1e-9) is the value to compare a
gradient with: on every model and direction here it agrees with d(u, 1e-10) to 7e-5 relative
or 4e-5 absolute (the roundoff at 1e-10), and in the models without BatchNormalization but
inception_v1 also with d(u, 1e-8) to 7e-5. steps_agree[j] is the largest, over the 2 x 3
(input, direction) pairs, of |d(u, h_j) - d(u, h_j+1)| / max(|d(u, 1e-9)|, 1e-3); notes says
the same in words.

The float64 evaluator ("reference-f64"): onnx.reference.ReferenceEvaluator's kernels (its
rt_nodes_) for the graph's nodes, fed the model's float32 initializers upcast to float64 (what
conformance.to_double does to a proto, done on the arrays here: these graphs hold no Cast,
Constant or ConstantOfShape, and a double copy of VGG-19's proto would be 1.1 GB), run in graph
order by a loop that drops each value after its last use (ReferenceEvaluator.run keeps every
intermediate: gigabytes for densenet121), with every floating-point result checked to be
float64. Five of onnx 1.23's kernels are replaced (patch_reference_kernels; all checked
against onnxruntime through forward_ok):
  * MaxPool and AveragePool (2-D, explicit pads, no dilation, ceil_mode 0: the only kind these
    graphs hold) by vectorised numpy computing the spec's result (onnx's loop over every
    output element in Python would take hours per model);
  * LRN, whose onnx kernel loops over the batch dimension where it means the channels (for
    batch 1 it sums the squares of channel 0 only and divides every other channel by
    bias^beta), by the spec's cross-channel sum;
  * Softmax, which onnx computes with the opset-13 meaning only (one axis, default -1; on
    squeezenet's [1, 1000, 1, 1] output it returns all ones), by the opset-9 meaning (flatten
    to 2-D at axis, default 1);
  * BatchNormalization-9, which uses batch statistics whenever momentum is set, as the
    schema's default 0.9 sets it on every node, by inference with input_mean / input_var
    where Y is the only output (the spec's rule; exporters.py makes the same fix).
One more patch is for speed only: Conv's im2col gather (fancy indexing, two thirds of VGG-19's
time) is done from a strided view, giving the same matrix element for element, so Conv's
results are bit-identical.
The same evaluator computes the calibration above. forward_ok records that its output at both
inputs matches onnxruntime's (np.allclose, rtol 1e-3, atol 1e-4, as exporters.py;
forward_max_abs_diff in notes). `seconds` is the oracle's wall time for the model (the two
forward passes and the 60 perturbed ones).

Files
-----
Under --out DIR (default target/model-zoo/, not committed; AlexNet is 244 MB, VGG-19 575 MB):
  <name>.onnx      the filled model
  <name>.npz       uncompressed .npz (np.load reads it; fixed timestamps) of float32 arrays:
                   x [2, 3, 224, 224], directions [3, 1, 3, 224, 224]
tests/fixtures/model-zoo/expected.json (committed): a JSON list, one object per line, sorted by
name: name, file and arrays (relative to the out dir), sha256, npz_sha256, bytes, source (the
light file, relative to the onnx package), opset, ir_version, ops (distinct op types), input,
input_shape, output, output_shape, kind, classes, oracle, forward_ok, seconds, onnxruntime
(per input, the output row, float32 shortest decimals), top5, target, loss (per input, f(x_i)),
steps, derivatives (per input, [[d(u_k, h) for h in steps] for k = 1..3], 12 significant
digits), steps_agree, notes.

Run (python3 with numpy, onnx 1.23 and onnxruntime; nothing else):

    python3 tools/model_zoo.py                    # weights, arrays and the oracle for all 9
                                                  # models (about 5 minutes on 2 cores, VGG-19
                                                  # 2 of them; 3.4 GB of memory); writes
                                                  # DIR/*.onnx, DIR/*.npz, expected.json
    python3 tools/model_zoo.py --weights-only     # only DIR/*.onnx and DIR/*.npz (what CI runs:
                                                  # about 50 s for all 9, 0.3-8 s a model and
                                                  # 23 s for VGG-19), then compares their
                                                  # sha256 with expected.json
    python3 tools/model_zoo.py --check            # only compares DIR's files with expected.json:
                                                  # exit 1 on a missing file or a difference
    options: --models a,b (a subset; "alexnet" is bvlc_alexnet; a full run merges its entries
             into expected.json), --out DIR, --weights-only --check (write, then exit 1 on
             any difference), --no-derivatives a,b (those entries get the onnxruntime rows,
             targets and losses but no derivatives: for a machine too slow for the oracle;
             not used for the committed file, where every model has them)

Deterministic: every draw is seeded; BLAS and onnxruntime run on one thread; so two runs give
byte-identical files. Provenance of the committed numbers: onnx 1.23.0, onnxruntime 1.32.0,
numpy 2.4.6 (its PCG64 standard_normal stream, stable since numpy 1.17).
"""
import os

# One BLAS thread: the same summation order on every run, and a moderate load. Set before
# numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import hashlib
import json
import math
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import conformance as C  # noqa: E402  (to_double, Evaluator, number formats)
import exporters as E  # noqa: E402  (canonical_images, npz_bytes, cross_entropy)

ROOT = os.path.dirname(TOOLS)
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
DEFAULT_OUT = os.path.join(ROOT, "target", "model-zoo")
MANIFEST = os.path.join(ROOT, "tests", "fixtures", "model-zoo", "expected.json")
MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet", "vgg19", "zfnet512")
ALIASES = {"alexnet": "bvlc_alexnet"}
SEED_SALT = b"blindspot-model-zoo-v1"
INPUTS = 2
DIRECTIONS = 3
CALIBRATION = 4
STEPS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
REFERENCE_STEP = 1e-9  # the one to compare a gradient with (see the docstring)
LOGIT_STD = 2.5
BIAS_STD = 0.05
AFFINE_STD = 0.1
FORWARD_RTOL, FORWARD_ATOL = 1e-3, 1e-4  # exporters.py's


# ---------------------------------------------------------------------------------------------
# seeds, inputs

def seed_of(tag):
    digest = hashlib.sha256(SEED_SALT + b"/" + tag.encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_of(tag):
    return np.random.default_rng(seed_of(tag))


def oracle_arrays(shape):
    """x [2, *shape[1:]] and directions [3, *shape], float32 (shape: the input, batch 1)."""
    c, h, w = shape[1:]
    x = E.canonical_images(rng_of("inputs/%dx%dx%d" % (c, h, w)), INPUTS, c, h, w)
    dirs = rng_of("directions/%dx%dx%d" % (c, h, w)).standard_normal(
        [DIRECTIONS] + list(shape)).astype(np.float32)
    return x, dirs


def calibration_images(shape):
    c, h, w = shape[1:]
    return E.canonical_images(rng_of("calibration/%dx%dx%d" % (c, h, w)), CALIBRATION, c, h, w)


def round_sig(a, digits):
    """Each value of a float64 array to `digits` significant digits (through its decimal
    text: exact and the same everywhere)."""
    flat = np.asarray(a, dtype=np.float64).reshape(-1)
    out = np.array([float("%.*g" % (digits, v)) for v in flat.tolist()], dtype=np.float64)
    return out.reshape(np.shape(a))


# ---------------------------------------------------------------------------------------------
# the graphs

def light_path(name):
    return os.path.join(LIGHT, "light_%s.onnx" % name)


def data_input(model):
    inits = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise RuntimeError("expected one non-initializer input, found %s" % [i.name for i in ins])
    return ins[0]


def dims(vi):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in vi.type.tensor_type.shape.dim]


def consumers(model):
    cons = {}
    for n in model.graph.node:
        for j, i in enumerate(n.input):
            cons.setdefault(i, []).append((n, j))
    return cons


def analyse(model):
    """Returns (params, cos, head, bn_calib): params {name: (role, shape, fan_in, consumer)}
    for every float32 value a node reads as a parameter (an initializer or a ConstantOfShape
    output; one consumer each, checked);
    cos {output name: node} of the ConstantOfShape nodes; head, the last Conv/Gemm node;
    bn_calib, the BatchNormalization nodes whose mean/var are calibrated."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    cos = {n.output[0]: n for n in g.node if n.op_type == "ConstantOfShape"}
    cons = consumers(model)
    shapes = {}
    for name, n in cos.items():
        shape = numpy_helper.to_array(inits[n.input[0]])
        val = next((a.t for a in n.attribute if a.name == "value"), None)
        if val is None or val.data_type != TensorProto.FLOAT:
            raise RuntimeError("ConstantOfShape %s is not float32" % name)
        if len(cons.get(n.input[0], [])) != 1:
            raise RuntimeError("shape %s is read by more than its ConstantOfShape" % n.input[0])
        shapes[name] = [int(s) for s in shape]
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            shapes[t.name] = list(t.dims)
    heads = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
    head = heads[-1]
    producer = {o: n for n in g.node for o in n.output}
    affine_bns = set()  # BatchNormalization outputs scaled by Mul(., Unsqueeze(s))
    for n in g.node:
        if n.op_type == "Mul" and len(n.input) == 2:
            a, b = (producer.get(i) for i in n.input)
            for p, q in ((a, b), (b, a)):
                if p is not None and q is not None and p.op_type == "BatchNormalization" \
                        and q.op_type == "Unsqueeze":
                    affine_bns.add(p.output[0])
    params = {}
    for name, shape in shapes.items():
        uses = cons.get(name, [])
        if not uses:
            continue  # an unused initializer: kept as shipped
        if len(uses) != 1:
            raise RuntimeError("%s has %d consumers" % (name, len(uses)))
        node, j = uses[0]
        op = node.op_type
        fan_shape = shape
        if op == "Reshape" and j == 0:  # inception_v1's classifier weight
            target = [int(s) for s in numpy_helper.to_array(inits[node.input[1]])]
            (node2, j2), = cons[node.output[0]]
            node, j, op, fan_shape = node2, j2, node2.op_type, target
        if op == "Unsqueeze":
            (node2, j2), = cons[node.output[0]]
            role = {"Mul": "affine_scale", "Add": "affine_shift"}[node2.op_type]
            params[name] = (role, shape, None, node2)
            continue
        head_tag = "head_" if node is head else ""
        if op == "Conv" and j == 1:
            params[name] = (head_tag + "weight", shape, int(np.prod(fan_shape[1:])), node)
        elif op == "Gemm" and j == 1:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            fan = fan_shape[1] if trans_b else fan_shape[0]
            params[name] = (head_tag + "weight", shape, int(fan), node)
        elif op in ("Conv", "Gemm") and j == 2:
            params[name] = (head_tag + "bias", shape, None, node)
        elif op == "BatchNormalization" and j in (1, 2):
            role = ("bn_unit_" if node.output[0] in affine_bns else "bn_") + \
                ("scale" if j == 1 else "shift")
            params[name] = (role, shape, None, node)
        elif op == "BatchNormalization" and j in (3, 4):
            params[name] = ("bn_" + ("mean" if j == 3 else "var"), shape, None, node)
        else:
            raise RuntimeError("%s: no role for input %d of %s" % (name, j, op))
    bn_calib = [n for n in g.node if n.op_type == "BatchNormalization"]
    return params, cos, head, bn_calib


def draw(model_name, name, role, shape, fan_in):
    """The seeded float64 values of a parameter (before calibration)."""
    rng = rng_of(model_name + "/" + name)
    if role in ("weight", "head_weight"):
        a = rng.standard_normal(shape)
        a *= math.sqrt((2.0 if role == "weight" else 1.0) / fan_in)  # in place: VGG's 411 MB
        return a
    if role == "bias":
        return rng.standard_normal(shape) * BIAS_STD
    if role == "head_bias":
        return np.zeros(shape)
    if role in ("bn_scale", "affine_scale"):
        return 1.0 + rng.standard_normal(shape) * AFFINE_STD
    if role in ("bn_shift", "affine_shift"):
        return rng.standard_normal(shape) * AFFINE_STD
    if role == "bn_unit_scale":
        return np.ones(shape)
    if role in ("bn_unit_shift", "bn_mean"):
        return np.zeros(shape)
    if role == "bn_var":
        return np.ones(shape)
    raise ValueError(role)


# ---------------------------------------------------------------------------------------------
# the float64 evaluator

_PATCHED = []


def _pool2d(x, kind, kernel_shape, pads, strides, count_include_pad):
    n, c, h, w = x.shape
    kh, kw = kernel_shape
    sh, sw = strides or (1, 1)
    pt, pl, pb, pr = pads or (0, 0, 0, 0)
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    fill = -np.inf if kind == "MAX" else 0.0
    xp = np.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    acc = None
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            if acc is None:
                acc = win.copy()
            elif kind == "MAX":
                np.maximum(acc, win, out=acc)
            else:
                acc += win
    if kind == "AVG":
        if count_include_pad:
            acc /= kh * kw
        else:
            ones = np.zeros((h + pt + pb, w + pl + pr))
            ones[pt:pt + h, pl:pl + w] = 1.0
            cnt = np.zeros((ho, wo))
            for i in range(kh):
                for j in range(kw):
                    cnt += ones[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            acc /= cnt
    return acc


def _simple_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads):
    return (x.ndim == 4 and auto_pad in (None, "NOTSET", b"NOTSET") and not ceil_mode
            and (dilations is None or all(d == 1 for d in dilations))
            and kernel_shape is not None and len(kernel_shape) == 2
            and (pads is None or len(pads) == 4))


def patch_reference_kernels():
    """onnx 1.23's MaxPool and AveragePool kernels loop in Python over every output element
    (hours on a 224x224 network), and its LRN kernel sums over the wrong axis (the batch: for
    batch 1 only channel 0 is normalised); the 2-D, explicit-pad, undilated, floor-mode pools
    these graphs hold get vectorised numpy, LRN the spec's cross-channel sum. Patched on the
    classes; other configurations fall through to onnx's own code."""
    if _PATCHED:
        return
    from onnx.reference.ops import (op_average_pool, op_batch_normalization, op_conv, op_lrn,
                                    op_max_pool, op_softmax)

    max_run = op_max_pool.MaxPool._run

    def max_pool(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None,
                 pads=None, storage_order=None, strides=None):
        if len([o for o in self.onnx_node.output if o]) == 1 \
                and _simple_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads):
            return (_pool2d(x, "MAX", kernel_shape, pads, strides, 0),)
        return max_run(self, x, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                       kernel_shape=kernel_shape, pads=pads, storage_order=storage_order,
                       strides=strides)

    op_max_pool.MaxPool._run = max_pool

    def avg_patch(cls):
        orig = cls._run

        def avg_pool(self, x, auto_pad=None, ceil_mode=None, kernel_shape=None, pads=None,
                     strides=None, count_include_pad=None, **kw):
            if not kw.get("dilations") and _simple_pool(x, auto_pad, ceil_mode, None,
                                                       kernel_shape, pads):
                return (_pool2d(x, "AVG", kernel_shape, pads, strides, count_include_pad),)
            return orig(self, x, auto_pad=auto_pad, ceil_mode=ceil_mode,
                        kernel_shape=kernel_shape, pads=pads, strides=strides,
                        count_include_pad=count_include_pad, **kw)
        cls._run = avg_pool

    for cls_name in ("AveragePool_1", "AveragePool_7", "AveragePool_10", "AveragePool_11",
                     "AveragePool_19", "AveragePool_22"):
        cls = getattr(op_average_pool, cls_name, None)
        if cls is not None:
            avg_patch(cls)

    def lrn(self, x, alpha=None, beta=None, bias=None, size=None):
        # spec: square_sum[n, c] = sum of x[n, i]^2 for
        # max(0, c - floor((size - 1) / 2)) <= i <= min(C - 1, c + ceil((size - 1) / 2))
        ch = x.shape[1]
        sq = x * x
        ss = np.zeros_like(x)
        for d in range(-((size - 1) // 2), int(math.ceil((size - 1) / 2)) + 1):
            if d >= 0:
                ss[:, :ch - d] += sq[:, d:]
            else:
                ss[:, -d:] += sq[:, :ch + d]
        return ((x / (bias + (alpha / size) * ss) ** beta).astype(x.dtype),)

    op_lrn.LRN._run = lrn

    softmax_run = op_softmax.Softmax._run

    def softmax(self, X, axis=None):
        # before opset 13, Softmax flattens X to 2-D at `axis` (default 1) and normalises the
        # rows; onnx's kernel has the opset-13 meaning only (one axis, default -1), so on
        # squeezenet's [1, 1000, 1, 1] it returned all ones
        opset = (self.run_params or {}).get("opsets", {}).get("", 13)
        if opset >= 13:
            return softmax_run(self, X, axis=axis)
        ax = next((a.i for a in self.onnx_node.attribute if a.name == "axis"), 1)
        ax = ax + X.ndim if ax < 0 else ax
        x2 = X.reshape(int(np.prod(X.shape[:ax])), -1)
        y = np.exp(x2 - x2.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        return (y.reshape(X.shape).astype(X.dtype),)

    op_softmax.Softmax._run = softmax

    # onnx's BatchNormalization-9 kernel (opsets 9-13) uses batch statistics whenever momentum
    # is set, and the schema's default (0.9) sets it on every node; the spec's mode is set by
    # the outputs (Y alone: inference with input_mean/input_var). The fix exporters.py makes.
    bn9_run = op_batch_normalization.BatchNormalization_9._run

    def bn9(self, x, scale, bias, mean, var, epsilon=None, momentum=None):
        if len([o for o in self.onnx_node.output if o]) == 1:
            return (op_batch_normalization._batchnorm_test_mode(
                x, scale, bias, mean, var, epsilon=epsilon),)
        return bn9_run(self, x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum)

    op_batch_normalization.BatchNormalization_9._run = bn9

    # Speed only, not values: onnx's Conv gathers its im2col matrix by fancy indexing (10 of
    # VGG-19's 15 s); the same matrix, element for element and in the same layout, from a
    # strided view. The matmul that follows is unchanged, so Conv's results are bit-identical.
    im2col = op_conv.im2col

    def fast_im2col(X, kernel_shape, pads, strides, dilations=None):
        if X.ndim != 4 or len(kernel_shape) != 2 or (dilations is not None
                                                     and any(d != 1 for d in dilations)):
            return im2col(X, kernel_shape, pads, strides, dilations)
        m, c = X.shape[:2]
        kh, kw = (int(k) for k in kernel_shape)
        sh, sw = (int(v) for v in strides)
        xp = np.pad(X, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                    mode="constant")
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh,
                                                                                  ::sw]
        ho, wo = win.shape[2:4]
        cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))
        return cols.reshape(c * kh * kw, m * ho * wo), (ho, wo)

    op_conv.im2col = fast_im2col
    _PATCHED.append(True)


class Net:
    """The graph's nodes run one by one by onnx.reference's kernels, in graph order, on
    float64 values; consts holds the parameters (float64); each activation is dropped after
    its last use. run() takes several images in lockstep (each one fed alone, batch 1: the
    graphs' Reshape shapes fix the batch), so a hook sees one node's inputs for all of them."""

    def __init__(self, model, consts):
        from onnx.reference import ReferenceEvaluator
        patch_reference_kernels()
        g = model.graph
        # nodes whose outputs are all given in consts (the shipped ConstantOfShape weights,
        # while the filled model is calibrated) do not run
        nodes = [n for n in g.node if not all(o in consts for o in n.output)]
        skeleton = helper.make_model(
            helper.make_graph(nodes, "skeleton", list(g.input), list(g.output)),
            opset_imports=list(model.opset_import), ir_version=model.ir_version)
        self.sess = ReferenceEvaluator(skeleton)
        if len(self.sess.rt_nodes_) != len(nodes):
            raise RuntimeError("the evaluator has %d nodes for %d" % (len(self.sess.rt_nodes_),
                                                                     len(nodes)))
        self.nodes = nodes
        self.consts = consts
        self.input_name = data_input(model).name
        self.last = {}
        for k, n in enumerate(self.nodes):
            for i in n.input:
                self.last[i] = k

    def run(self, xs, keep=(), before=None, after=None):
        keep = set(keep)
        envs = [{self.input_name: np.asarray(x, dtype=np.float64)} for x in xs]
        for k, (n, rt) in enumerate(zip(self.nodes, self.sess.rt_nodes_)):
            if before is not None:
                before(k, n, envs)
            for env in envs:
                args = [None if not i else env[i] if i in env else self.consts[i]
                        for i in n.input]
                outs = rt.run(*args)
                for name, v in zip(n.output, outs):
                    if isinstance(v, np.ndarray) and v.dtype.kind in "fc" \
                            and v.dtype != np.float64:
                        raise RuntimeError("%s (%s) is %s" % (name, n.op_type, v.dtype))
                    env[name] = v
            if after is not None:
                after(k, n, envs)
            for env in envs:
                for i in n.input:
                    if self.last.get(i) == k and i in env and i not in keep:
                        del env[i]
        return envs


def logits_name(model):
    """The input of the final Softmax, else the graph output."""
    out = model.graph.output[0].name
    last = next(n for n in model.graph.node if out in n.output)
    return last.input[0] if last.op_type == "Softmax" else out


# ---------------------------------------------------------------------------------------------
# filling

def fill(name):
    """Returns (the filled float32 ModelProto, info)."""
    t0 = time.time()
    shipped = onnx.load(light_path(name))
    params, cos, head, bn_nodes = analyse(shipped)
    weights = {}
    for p, (role, shape, fan, _node) in sorted(params.items()):
        weights[p] = draw(name, p, role, shape, fan).astype(np.float32)
    consts = {p: w.astype(np.float64) for p, w in weights.items()}
    g = shipped.graph
    for t in g.initializer:  # the non-parameter initializers (shapes, unused tensors)
        if t.name not in weights:
            consts[t.name] = numpy_helper.to_array(t)
    shape = dims(data_input(shipped))
    calib = calibration_images(shape)
    lname = logits_name(shipped)
    head_w = next(p for p, v in params.items() if v[0] == "head_weight")
    head_b = next((p for p, v in params.items() if v[0] == "head_bias"), None)
    bn_set = {n.output[0] for n in bn_nodes}

    def set_param(p, value64):
        weights[p] = np.asarray(value64, dtype=np.float64).astype(np.float32)
        consts[p] = weights[p].astype(np.float64)

    def before(k, n, envs):
        if n.op_type == "BatchNormalization" and n.output[0] in bn_set:
            xs = np.concatenate([env[n.input[0]] for env in envs], axis=0)
            axes = (0,) + tuple(range(2, xs.ndim))
            mean = xs.mean(axis=axes)
            var = ((xs - mean.reshape([1, -1] + [1] * (xs.ndim - 2))) ** 2).mean(axis=axes)
            set_param(n.input[3], round_sig(mean, 4))
            set_param(n.input[4], round_sig(var, 4))

    def after(k, n, envs):
        if n is head and head_b is not None and head_b == n.input[2]:
            ys = np.concatenate([env[n.output[0]] for env in envs], axis=0)
            axes = (0,) + tuple(range(2, ys.ndim))
            if ys.ndim == 2:
                axes = (0,)
            b = round_sig(-ys.mean(axis=axes), 4)
            set_param(head_b, b)
            bb = consts[head_b].reshape([1, -1] + [1] * (ys.ndim - 2))
            for env in envs:  # the kernel adds B last: the same numbers as a rerun
                env[n.output[0]] = env[n.output[0]] + bb

    net = Net(shipped, consts)
    envs = net.run([calib[i:i + 1] for i in range(CALIBRATION)], keep=(lname,),
                   before=before, after=after)
    logits = np.stack([env[lname].reshape(-1) for env in envs])
    std = float(np.std(logits))
    s = float(round_sig(LOGIT_STD / std, 2))
    set_param(head_w, consts[head_w] * s)
    if head_b is not None:
        set_param(head_b, consts[head_b] * s)
    model = build(shipped, weights, cos)
    info = {"calibration_logit_std": std, "head_scale": s, "fill_seconds": time.time() - t0,
            "params": len(weights), "cos": len(cos)}
    return model, info


def build(shipped, weights, cos):
    """The shipped model with the ConstantOfShape weights as initializers and every parameter's
    values replaced."""
    m = onnx.ModelProto()
    m.CopyFrom(shipped)
    g = m.graph
    by_shape = {n.input[0]: out for out, n in cos.items()}
    inits = []
    for t in g.initializer:
        if t.name in by_shape:
            w = by_shape[t.name]
            inits.append(numpy_helper.from_array(weights[w], w))
        elif t.name in weights:
            if list(t.dims) != list(weights[t.name].shape) or t.data_type != TensorProto.FLOAT:
                raise RuntimeError("%s changed shape" % t.name)
            inits.append(numpy_helper.from_array(weights[t.name], t.name))
        else:
            inits.append(t)
    del g.initializer[:]
    g.initializer.extend(inits)
    new_inputs = []
    for vi in g.input:
        if vi.name in by_shape:
            w = by_shape[vi.name]
            new_inputs.append(helper.make_tensor_value_info(w, TensorProto.FLOAT,
                                                            list(weights[w].shape)))
        else:
            new_inputs.append(vi)
    del g.input[:]
    g.input.extend(new_inputs)
    nodes = [n for n in g.node if not (n.op_type == "ConstantOfShape" and n.output[0] in cos)]
    del g.node[:]
    g.node.extend(nodes)
    missing = [w for w in weights if w not in {t.name for t in g.initializer}]
    if missing:
        raise RuntimeError("weights without an initializer: %s" % missing[:3])
    return m


def sha256(blob):
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------
# the oracle

def ort_rows(blob, input_name, output_name, x):
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    return [np.asarray(sess.run([output_name], {input_name: x[i:i + 1]})[0],
                       dtype=np.float32).reshape(-1) for i in range(x.shape[0])]


def oracle(model, x, dirs, kind, rows, derivatives=True):
    """reference-f64 forward at both inputs and the central differences. Returns a dict."""
    t0 = time.time()
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consts = {k: (v.astype(np.float64) if v.dtype == np.float32 else v)
              for k, v in consts.items()}
    net = Net(model, consts)
    out_name = model.graph.output[0].name

    def forward(point):
        return net.run([point])[0][out_name].reshape(-1)

    targets = [int(np.argmin(r)) for r in rows]
    losses, derivs, diffs, ok = [], [], [], True
    agree = [0.0] * (len(STEPS) - 1)
    ref = STEPS.index(REFERENCE_STEP)
    for i in range(INPUTS):
        x64 = x[i:i + 1].astype(np.float64)
        out = forward(x64)
        ok = ok and bool(np.allclose(out, rows[i].astype(np.float64), rtol=FORWARD_RTOL,
                                     atol=FORWARD_ATOL))
        diffs.append(float(np.max(np.abs(out - rows[i]))))
        losses.append(E.cross_entropy(out, targets[i], kind))
        if not derivatives:
            continue
        per_input = []
        for u in dirs:
            u64 = u.astype(np.float64)
            row = []
            for h in STEPS:
                fp = E.cross_entropy(forward(x64 + h * u64), targets[i], kind)
                fm = E.cross_entropy(forward(x64 - h * u64), targets[i], kind)
                d = (fp - fm) / (2 * h)
                if not math.isfinite(d):
                    raise RuntimeError("non-finite finite difference")
                row.append(d)
            per_input.append(row)
            scale = max(abs(row[ref]), 1e-3)
            for j in range(len(STEPS) - 1):
                agree[j] = max(agree[j], abs(row[j] - row[j + 1]) / scale)
        derivs.append(per_input)
    res = {"oracle": "reference-f64", "forward_ok": ok, "target": targets, "loss": losses,
           "forward_max_abs_diff": max(diffs), "seconds": round(time.time() - t0, 1)}
    if derivatives:
        res.update({"steps": list(STEPS), "derivatives": derivs,
                    "steps_agree": [float("%.2g" % a) for a in agree]})
    return res


# ---------------------------------------------------------------------------------------------
# writing

ORDER = ["name", "file", "arrays", "sha256", "npz_sha256", "bytes", "source", "opset",
         "ir_version", "ops", "input", "input_shape", "output", "output_shape", "kind",
         "classes", "oracle", "forward_ok", "seconds", "onnxruntime", "top5", "target", "loss",
         "steps", "derivatives", "steps_agree", "notes"]


def entry_text(e):
    return E.entry_text(e, ORDER)


def read_manifest():
    if not os.path.exists(MANIFEST):
        return []
    with open(MANIFEST) as fh:
        return json.load(fh)


def write_manifest(entries):
    os.makedirs(os.path.dirname(MANIFEST), exist_ok=True)
    entries = sorted(entries, key=lambda e: e["name"])
    with open(MANIFEST, "w") as fh:
        fh.write("[\n" + ",\n".join(entry_text(e) for e in entries) + "\n]\n")


def make_files(name, out_dir):
    """Fills one model and writes DIR/<name>.onnx and .npz. Returns (model, blob, npz, info)."""
    model, info = fill(name)
    blob = model.SerializeToString()
    shape = dims(data_input(model))
    x, dirs = oracle_arrays(shape)
    npz = E.npz_bytes([("x", x), ("directions", dirs)])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name + ".onnx"), "wb") as fh:
        fh.write(blob)
    with open(os.path.join(out_dir, name + ".npz"), "wb") as fh:
        fh.write(npz)
    return model, blob, npz, x, dirs, info


def model_entry(name, model, blob, npz, x, dirs, derivatives):
    g = model.graph
    inp = data_input(model)
    out = g.output[0]
    last = next(n for n in g.node if out.name in n.output)
    kind = "probabilities" if last.op_type == "Softmax" else "logits"
    rows = ort_rows(blob, inp.name, out.name, x)
    res = oracle(model, x, dirs, kind, rows, derivatives)
    e = {"name": name, "file": name + ".onnx", "arrays": name + ".npz", "sha256": sha256(blob),
         "npz_sha256": sha256(npz), "bytes": len(blob),
         "source": os.path.relpath(light_path(name), os.path.dirname(onnx.__file__)),
         "opset": C.opset_of(model), "ir_version": model.ir_version, "ops": C.ops_of(model),
         "input": inp.name, "input_shape": dims(inp), "output": out.name,
         "output_shape": dims(out), "kind": kind, "classes": int(rows[0].size),
         "oracle": res["oracle"], "forward_ok": res["forward_ok"], "seconds": res["seconds"],
         "onnxruntime": rows, "top5": [[int(c) for c in np.argsort(-r, kind="stable")[:5]]
                                       for r in rows],
         "target": res["target"], "loss": res["loss"]}
    notes = ["forward_max_abs_diff (reference-f64 vs onnxruntime) %.2g"
             % res["forward_max_abs_diff"]]
    if derivatives:
        e.update({k: res[k] for k in ("steps", "derivatives", "steps_agree")})
        notes.append("steps agree: max over both inputs and the 3 directions of |d(h_j) - "
                     "d(h_j+1)| / max(|d(%g)|, 1e-3): %s" % (REFERENCE_STEP, ", ".join(
                         "%g vs %g: %.2g" % (STEPS[j], STEPS[j + 1], a)
                         for j, a in enumerate(res["steps_agree"]))))
    else:
        notes.append("no derivatives: %s" % derivatives_skipped_reason(name))
    e["notes"] = notes
    return e


NO_DERIVATIVES = {}  # name -> reason; filled by main when the budget says so


def derivatives_skipped_reason(name):
    return NO_DERIVATIVES.get(name, "not asked")


def check(out_dir, names):
    expected = {e["name"]: e for e in read_manifest()}
    bad = 0
    for name in names:
        e = expected.get(name)
        if e is None:
            print("%-14s not in %s" % (name, os.path.relpath(MANIFEST, ROOT)))
            bad += 1
            continue
        for key, fname in (("sha256", e["file"]), ("npz_sha256", e["arrays"])):
            path = os.path.join(out_dir, fname)
            if not os.path.exists(path):
                print("%-14s %s missing" % (name, path))
                bad += 1
                continue
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
            ok = h.hexdigest() == e[key]
            bad += not ok
            print("%-14s %-22s %s" % (name, fname, "ok" if ok else
                                      "DIFFERS (%s, expected %s)" % (h.hexdigest()[:16],
                                                                    e[key][:16])))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--weights-only", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--no-derivatives", default="",
                    help="models whose oracle skips the derivatives (comma-separated)")
    args = ap.parse_args()
    names = []
    for n in args.models.split(","):
        n = ALIASES.get(n.strip(), n.strip())
        if n not in MODELS:
            ap.error("unknown model %r (known: %s)" % (n, ", ".join(MODELS)))
        names.append(n)
    out_dir = os.path.abspath(args.out)
    if args.check and not args.weights_only:
        sys.exit(1 if check(out_dir, names) else 0)
    for n in args.no_derivatives.split(","):
        if n.strip():
            NO_DERIVATIVES[ALIASES.get(n.strip(), n.strip())] = (
                "--no-derivatives (the float64 oracle's time was spent on the others)")
    t_all = time.time()
    entries = {e["name"]: e for e in read_manifest()}
    for name in names:
        t0 = time.time()
        model, blob, npz, x, dirs, info = make_files(name, out_dir)
        t_fill = time.time() - t0
        line = "%-14s %7.1f MB  sha256 %s  fill %.1f s (logit std %.3g, head x%g)" % (
            name, len(blob) / 1e6, sha256(blob)[:16], t_fill, info["calibration_logit_std"],
            info["head_scale"])
        if not args.weights_only:
            e = model_entry(name, model, blob, npz, x, dirs, name not in NO_DERIVATIVES)
            entries[name] = e
            write_manifest(entries.values())
            p = [float(np.max(r if e["kind"] == "probabilities" else
                              np.exp(r - r.max()) / np.exp(r - r.max()).sum()))
                 for r in e["onnxruntime"]]
            line += "  top-1 p %s  oracle %.1f s  agree %s" % (
                ",".join("%.3f" % v for v in p), e["seconds"], e.get("steps_agree"))
        print(line, flush=True)
        del model, blob, npz
    print("total %.1f s" % (time.time() - t_all))
    if args.weights_only:
        bad = check(out_dir, names)
        if args.check and bad:
            sys.exit(1)


if __name__ == "__main__":
    main()
