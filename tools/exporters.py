#!/usr/bin/env python3
"""The "exporter matrix": small image classifiers exported to ONNX by real exporters (PyTorch's
TorchScript exporter, tf2onnx, skl2onnx), each with oracle data for a consumer that loads it
with `Classifier::load(bytes, Some(&input_shape))` at batch 1 and checks (a) its scores
against onnxruntime and (b) the input gradient of cross-entropy against float64 finite
differences.

Regenerate everything (about 40 s on 2 cores, once the packages are installed):

    pip install torch torchvision onnxscript scikit-learn skl2onnx tensorflow-cpu tf2onnx
    python3 tools/exporters.py            # writes tests/fixtures/exporters/
    python3 tools/exporters.py --check    # regenerates into a temp dir (a fresh process) and
                                          # compares: exit 1 on any difference
    options: --out DIR

(PyTorch's CPU wheel index is not reachable from this workplace; plain PyPI's torch wheel,
with its CUDA dependencies, installs in about 2 minutes and runs on the CPU.)

Where each model comes from (nothing is downloaded: every weight is drawn from a seed)
---------------------------------------------------------------------------------------
PyTorch (torch.onnx.export(..., dynamo=False), the TorchScript exporter, opset 13 and 17, a
symbolic batch dimension: dynamic_axes={'input': {0: 'batch'}, '<output>': {0: 'batch'}},
input "input" [N, 3, 32, 32], output "logits"; 10 classes; models in eval mode), built from
torchvision's own classes, narrow:

  torch_resnet_basic          ResNet (torchvision.models.resnet.ResNet's _make_layer and
                              forward, BasicBlock, layers [1,1,1,1], planes 8/16/32/64,
                              torchvision's 7x7/2 stem + 3x3/2 max-pool)
  torch_resnet_basic_bnkept   the same weights, opset 13, do_constant_folding=False: the
                              exporter then keeps BatchNormalization nodes (by default it folds
                              every BatchNorm into the Conv before it, as all the others show)
  torch_resnet_bottleneck     ResNet with Bottleneck blocks, planes 4/8/16/32
  torch_resnet_bottleneck_softmax   the bottleneck ResNet followed by torch.nn.Softmax(dim=1),
                              opset 13, output "probabilities"
  torch_mobilenet_v2          torchvision.models.MobileNetV2(width_mult=0.25,
                              inverted_residual_setting (t,c,n,s) [1,16,1,1] [6,24,2,2]
                              [6,32,3,2] [6,64,2,2] [6,96,2,1]: the standard one with fewer
                              repeats and without its 160/320 stages; the 1280-wide last conv
                              is torchvision's): Clip (ReLU6), depthwise Conv
  torch_mobilenet_v3_small    torchvision.models.mobilenet_v3_small(width_mult=0.25,
                              reduced_tail=True): HardSwish/HardSigmoid (opset 13 writes
                              HardSwish as HardSigmoid+Mul), squeeze-excitation
  torch_efficientnet          torchvision.models.efficientnet.EfficientNet with a 4-stage
                              MBConvConfig setting, last_channel 128: SiLU (Sigmoid+Mul),
                              squeeze-excitation, stochastic depth (identity in eval)
  torch_convnext              torchvision.models.convnext.ConvNeXt, block_setting
                              [CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)],
                              layer_scale 0.5 (torchvision's default 1e-6 would make the blocks
                              invisible): LayerNorm2d (ReduceMean/Pow/Sqrt at 13,
                              LayerNormalization at 17), GELU (Erf), Linear on NHWC (MatMul)
  torch_vit                   torchvision.models.vision_transformer.VisionTransformer(
                              image_size=32, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=32, mlp_dim=64): class token (Concat/Expand), Gather,
                              Slice, LayerNorm, attention MatMul-Softmax-MatMul, GELU. Opset 13
                              fails (aten::scaled_dot_product_attention needs opset 14), which
                              the manifest records as a skipped entry; exported at 14 and 17.

  Weights: torch.manual_seed(a seed derived from the architecture's name) before the
  constructor (torchvision's own initialisation); then BatchNorm running statistics are
  measured in train mode (momentum=None: an exact average) on 64 seeded calibration images
  (below) and momentum is put back to torchvision's 0.1; then the classifier head (the last
  nn.Linear) is re-drawn with nn.Linear's default init under a second seed (torchvision
  zero-initialises ViT's head) and scaled, weight and bias, by 1/std of the logits over the
  calibration images, rounded to 2 significant digits, so the logits spread over a few units.
  No graph is post-processed: the files are the exporter's bytes as written.

Keras through tf2onnx (tf2onnx.convert.from_function, opset 13 and 17):

  tf2onnx_keras_cnn           keras.Sequential: Conv2D(8,3,relu), BatchNormalization,
                              MaxPooling2D, Conv2D(16,3,relu), BatchNormalization,
                              MaxPooling2D, Flatten, Dropout(0.25), Dense(32,relu),
                              Dense(10,softmax); NHWC input "input" [N, 32, 32, 3], output
                              "probabilities" (the tf.function returns {"probabilities": ...}).
  keras.utils.set_random_seed(a seed derived from the name); BatchNormalization moving
  statistics set from the calibration images (momentum 0 for one train-mode call). tf2onnx's
  from_keras fails on Keras 3 (KeyError 'keras_tensor_N'; the entry's notes record what it
  says), so the model is converted through from_function on a tf.function that calls it with
  training=False. tf2onnx writes BatchNormalization after a ReLU as Mul+Add and inserts the
  NHWC->NCHW Transposes. It runs in a child process (PYTHONHASHSEED=0) so TensorFlow and torch
  never share one. tf2onnx's node and initializer names are not reproducible from run to run
  (the weights and graph are), so --check compares .onnx files by a name-blind fingerprint.
  If TensorFlow or tf2onnx is missing or fails, the manifest gets a skipped entry with the
  error instead.

scikit-learn through skl2onnx (to_onnx(..., options={'zipmap': False}), opsets ai.onnx 17,
ai.onnx.ml 1):

  skl2onnx_mlp                MLPClassifier(hidden_layer_sizes=(32,), random_state=0,
                              max_iter=30) trained on 500 seeded samples of 64 features (an
                              8x8 one-channel "image" in [0,1], like sklearn's digits: 10
                              seeded smooth prototypes plus noise); input "X" [N, 64]; two
                              outputs, "label" (int64, through ai.onnx.ml ArrayFeatureExtractor)
                              and "probabilities" (float32, the one the oracle and the loader
                              use).

The oracle data
---------------
Inputs: two seeded images in [0,1], the same for every model of one layout (the NHWC ones
are the NCHW ones transposed; the flat ones are 8x8 one-channel images of their own): the
first uniform noise, the second a smooth random pattern (three random cosines per channel)
mixed 80/20 with noise. The 64
calibration images (half of each kind) come from another seed. Directions u_1..u_3: seeded
standard normal, rounded to float32, one set per layout.

For each input x_i: onnxruntime's (CPU, one thread) raw output row; target t_i = argmin of it
(the least likely class); f(x) = -log p_t(x), p = softmax(output) for kind "logits", p =
output for kind "probabilities"; and central differences (f(x + h u_k) - f(x - h u_k)) / (2h)
for k = 1..3 at h in (1e-2, 1e-3, 1e-4), computed from float64 inputs by
onnx.reference.ReferenceEvaluator through tools/conformance.py's choose_oracle: the model fed
float64, else its double copy (conformance.to_double), each checked to be a float64
computation ("reference-f64"); onnx's Erf kernel is replaced by scipy's float64 erf
(conformance.patch_reference_kernels); its LayerNormalization kernel, which computes in the
input's dtype whatever stash_type says, is told to accept the double copy's stash_type=DOUBLE;
and its BatchNormalization-9 kernel (opsets 9-13), which uses batch statistics whenever the
node has a `momentum` attribute (torch writes one on every BatchNormalization it keeps; ORT
and the spec use the running statistics when Y is the only output), is made to follow the
spec. If no reference evaluation is float64, onnxruntime float32 is used ("onnxruntime-f32":
trust the largest step).

The steps 1e-2..1e-4 are too coarse for the ReLU/ReLU6/max-pool networks: along a standard
normal direction (L2 norm ~55 for a 3x32x32 input) a step of 1e-4 still crosses kinks, and
the three values disagree (by up to ~50% for MobileNetV2). So float64 oracles also store
central differences at steps_fine = (1e-5, 1e-6, 1e-7), which agree with each other at 1e-6
and 1e-7 on every model here (the summary prints that check): derivatives_fine[i][k][1] is
the directional derivative <grad f(x_i), u_k> to compare a gradient with.

Self-checks, recorded per model: forward_ok, the oracle's output at both inputs matches
onnxruntime's (np.allclose, rtol 1e-3, atol 1e-4); framework_ok, onnxruntime's output matches
the source framework's own forward pass (torch, Keras, predict_proba) at rtol 1e-3, atol 1e-5;
and onnx.checker.check_model passes on every file.

Files, under tests/fixtures/exporters/ (paths in the manifest are relative to it):

  <name>.onnx      the exporter's model
  <name>.npz       uncompressed .npz (np.load reads it; fixed timestamps) of float32 arrays:
                   x [2, *input_shape[1:]] (feed x[i:i+1]), directions [3, *input_shape]
  expected.json    a JSON list, one object per line, in this order:
      name, file, arrays, exporter ("torch 2.15.0 torch.onnx (TorchScript)", "tf2onnx 1.17.0",
      "skl2onnx 1.20.0"), framework (the libraries that built the model), architecture,
      opset (ai.onnx), ops (distinct op types, "domain:Op" outside ai.onnx), input (the graph
      input's name), input_shape (batch 1), layout ("NCHW" | "NHWC" | "flat"), output (the
      output tensor's name), kind ("logits" | "probabilities"), classes, oracle
      ("reference-f64" | "onnxruntime-f32"), forward_ok, framework_ok, onnxruntime (per input,
      the output row, float32 shortest decimals), target (per input), loss (per input, f(x_i)),
      steps, derivatives (per input, [[d(u_k, h) for h in steps] for k = 1..3], 12 significant
      digits), steps_fine, derivatives_fine (the same at steps_fine; reference-f64 only),
      notes (oracle fallbacks, exporter remarks; absent when none).
    A model that failed to export: {name, exporter, architecture, opset, skipped: reason}.

Provenance (what wrote the committed files): torch 2.15.0, torchvision 0.29.2, onnxscript
0.7.2 (unused by the TorchScript path), tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0,
scikit-learn 1.9.1, skl2onnx 1.20.0, onnx 1.23.0, onnxruntime 1.32.0, numpy 2.4.6; every seed is
derived (seed_of) from SEED_SALT below and a tag: the architecture's name for weights, the
layout for inputs and directions; BLAS, torch, TensorFlow and onnxruntime
run on one thread. Two runs on one machine give identical expected.json and .npz files and
identical (torch, skl2onnx) or fingerprint-identical (tf2onnx) .onnx files; another CPU may
differ in the last bits of float32 kernels (calibration, onnxruntime), which shows in --check.
"""
import os

# One thread everywhere: the same summation order on every run. Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse
import contextlib
import hashlib
import io
import json
import math
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import conformance as C  # noqa: E402  (to_double, Evaluator, choose_oracle, number formats)

ROOT = os.path.dirname(TOOLS)
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "exporters")
MANIFEST = "expected.json"
SEED_SALT = b"blindspot-exporters-v1"
STEPS = (1e-2, 1e-3, 1e-4)
STEPS_FINE = (1e-5, 1e-6, 1e-7)  # float64 oracles only
INPUTS = 2
DIRECTIONS = 3
CLASSES = 10
CALIBRATION = 64
FORWARD_RTOL, FORWARD_ATOL = 1e-3, 1e-4
FRAMEWORK_RTOL, FRAMEWORK_ATOL = 1e-3, 1e-5
KERAS_TIMEOUT_S = 600
KERAS_OPSETS = (13, 17)
SKLEARN_OPSET = 17

SHAPES = {"NCHW": [1, 3, 32, 32], "NHWC": [1, 32, 32, 3], "flat": [1, 64]}


# ---------------------------------------------------------------------------------------------
# seeds and inputs

def seed_of(tag):
    digest = hashlib.sha256(SEED_SALT + b"/" + tag.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # < 2**63: what torch.manual_seed takes


def rng_of(tag):
    return np.random.default_rng(seed_of(tag))


def canonical_images(rng, n, c, h, w):
    """n images [c, h, w] in [0, 1]: even ones uniform noise, odd ones three random cosines
    per channel rescaled to [0, 1], mixed 80/20 with noise (no exact ties for max-pools)."""
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    out = np.empty((n, c, h, w))
    for i in range(n):
        noise = rng.random((c, h, w))
        if i % 2 == 0:
            out[i] = noise
            continue
        s = np.zeros((c, h, w))
        for ch in range(c):
            for _ in range(3):
                fy, fx = rng.uniform(0.3, 2.5, 2)
                phase = rng.uniform(0.0, 2 * math.pi)
                s[ch] += np.cos(2 * math.pi * (fy * yy + fx * xx) + phase)
        s = (s - s.min()) / (s.max() - s.min())
        out[i] = 0.8 * s + 0.2 * noise
    return out.astype(np.float32)


def in_layout(images, layout):
    """[n, 3, 32, 32] canonical images in `layout`; "flat" images are [n, 1, 8, 8]."""
    if layout == "NCHW":
        return np.ascontiguousarray(images)
    if layout == "NHWC":
        return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    return np.ascontiguousarray(images.reshape(images.shape[0], -1))


def layout_images(layout, tag, n):
    c, h, w = (1, 8, 8) if layout == "flat" else (3, 32, 32)
    return in_layout(canonical_images(rng_of(tag), n, c, h, w), layout)


def oracle_inputs(layout):
    """x [2, *shape[1:]] and directions [3, *shape] (shape with batch 1), float32."""
    x = layout_images(layout, "inputs/" + ("flat" if layout == "flat" else "image"), INPUTS)
    rng = rng_of("directions/" + layout)
    dirs = rng.standard_normal([DIRECTIONS] + SHAPES[layout]).astype(np.float32)
    return x, dirs


def calibration_images(layout):
    return layout_images(layout, "calibration/" + ("flat" if layout == "flat" else "image"),
                         CALIBRATION)


# ---------------------------------------------------------------------------------------------
# PyTorch

@contextlib.contextmanager
def quiet_fds():
    """Sends fds 1 and 2 to a scratch file (the TorchScript exporter prints whole graphs on
    failure); yields a function returning what was written."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: (tmp.seek(0), tmp.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def error_text(e, limit=400):
    msg = str(e).strip().splitlines()
    return (type(e).__name__ + (": " + msg[0] if msg else ""))[:limit]


def torch_models():
    """Yields exported models: dicts with name, blob, meta (manifest fields), framework_out;
    or a skipped entry: dict with name and skipped."""
    import torch
    import torch.nn as nn
    import torchvision
    from functools import partial
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig
    from torchvision.models.mobilenetv2 import MobileNetV2
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
    from torchvision.models.vision_transformer import VisionTransformer

    torch.set_num_threads(1)
    torch_version = torch.__version__.split("+")[0]
    exporter = "torch %s torch.onnx (TorchScript)" % torch_version
    framework = "torch %s, torchvision %s" % (torch_version, torchvision.__version__.split("+")[0])

    class NarrowResNet(ResNet):
        """torchvision's ResNet (its _make_layer, forward and initialisation) at planes
        `planes` instead of 64/128/256/512."""

        def __init__(self, block, layers, planes, num_classes=CLASSES):
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d
            self.inplanes = planes[0]
            self.dilation = 1
            self.groups = 1
            self.base_width = 64
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3,
                                   bias=False)
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, planes[0], layers[0])
            self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
            self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
            self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
            for m in self.modules():  # as ResNet.__init__ does
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def efficientnet():
        cfg = partial(MBConvConfig, width_mult=1.0, depth_mult=1.0)
        setting = [cfg(1, 3, 1, 16, 8, 1), cfg(6, 3, 2, 8, 16, 2), cfg(6, 5, 2, 16, 24, 1),
                   cfg(6, 3, 2, 24, 32, 1)]
        return EfficientNet(setting, dropout=0.2, num_classes=CLASSES, last_channel=128)

    mnv2_setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 2, 2], [6, 96, 2, 1]]
    archs = [
        ("resnet_basic", "torchvision ResNet, BasicBlock, layers [1,1,1,1], planes 8/16/32/64",
         lambda: NarrowResNet(BasicBlock, [1, 1, 1, 1], [8, 16, 32, 64])),
        ("resnet_bottleneck", "torchvision ResNet, Bottleneck, layers [1,1,1,1], planes 4/8/16/32",
         lambda: NarrowResNet(Bottleneck, [1, 1, 1, 1], [4, 8, 16, 32])),
        ("mobilenet_v2", "torchvision MobileNetV2, width_mult 0.25, stages t,c,n,s "
         + json.dumps(mnv2_setting),
         lambda: MobileNetV2(num_classes=CLASSES, width_mult=0.25,
                             inverted_residual_setting=mnv2_setting)),
        ("mobilenet_v3_small", "torchvision mobilenet_v3_small, width_mult 0.25, reduced_tail",
         lambda: torchvision.models.mobilenet_v3_small(width_mult=0.25, reduced_tail=True,
                                                      num_classes=CLASSES)),
        ("efficientnet", "torchvision EfficientNet, MBConv stages (expand,kernel,stride,in,out,"
         "layers) (1,3,1,16,8,1) (6,3,2,8,16,2) (6,5,2,16,24,1) (6,3,2,24,32,1), last_channel 128",
         efficientnet),
        ("convnext", "torchvision ConvNeXt, CNBlockConfig(16,32,2), CNBlockConfig(32,None,1), "
         "layer_scale 0.5",
         lambda: ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)],
                          stochastic_depth_prob=0.0, layer_scale=0.5, num_classes=CLASSES)),
        ("vit", "torchvision VisionTransformer, image 32, patch 8, 2 layers, 2 heads, hidden 32, "
         "mlp 64",
         lambda: VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                   hidden_dim=32, mlp_dim=64, num_classes=CLASSES)),
    ]
    # (file name, arch, opset, softmax appended, do_constant_folding)
    exports = []
    for arch, _desc, _build in archs:
        opsets = (13, 14, 17) if arch == "vit" else (13, 17)
        for op in opsets:
            exports.append(("torch_%s_op%d" % (arch, op), arch, op, False, True))
        if arch == "resnet_basic":
            exports.append(("torch_resnet_basic_bnkept_op13", arch, 13, False, False))
        if arch == "resnet_bottleneck":
            exports.append(("torch_resnet_bottleneck_softmax_op13", arch, 13, True, True))

    cal = torch.from_numpy(calibration_images("NCHW"))
    x, _dirs = oracle_inputs("NCHW")
    xt = torch.from_numpy(x)
    built = {}

    def prepare(arch, build):
        torch.manual_seed(seed_of("torch/" + arch))
        model = build()
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # an exact average over the calibration batches
        model.train()
        with torch.no_grad():
            for i in range(0, CALIBRATION, 16):
                model(cal[i:i + 16])
        for bn in bns:
            bn.momentum = 0.1
        model.eval()
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        torch.manual_seed(seed_of("torch-head/" + arch))
        head.reset_parameters()
        with torch.no_grad():
            std = float(model(cal).std())
            scale = float("%.2g" % (1.0 / std))
            head.weight.mul_(scale)
            head.bias.mul_(scale)
        return model

    for name, arch, opset, softmax, fold in exports:
        desc, build = next((d, b) for a, d, b in archs if a == arch)
        if arch not in built:
            built[arch] = prepare(arch, build)
        model = built[arch]
        output = "probabilities" if softmax else "logits"
        architecture = desc + (", then torch.nn.Softmax(dim=1)" if softmax else "")
        if softmax:
            model = nn.Sequential(model, nn.Softmax(dim=1)).eval()
        base = {"name": name, "exporter": exporter, "architecture": architecture, "opset": opset}
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings(), quiet_fds():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, xt[:1], buf, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=[output],
                                  dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
                                  do_constant_folding=fold)
        except Exception as e:  # noqa: BLE001 - a failed export is a result, recorded
            yield dict(base, skipped="export failed: " + error_text(e))
            continue
        with torch.no_grad():
            ref = model(xt).numpy()
        notes = []
        if not fold:
            notes.append("exported with do_constant_folding=False (keeps BatchNormalization)")
        yield {"name": name, "blob": buf.getvalue(), "framework_out": ref,
               "meta": dict(base, framework=framework, layout="NCHW", output=output,
                            kind="probabilities" if softmax else "logits"),
               "notes": notes}


# ---------------------------------------------------------------------------------------------
# Keras / tf2onnx, in a child process

def keras_worker(work):
    """Runs in the child: builds the Keras model, converts it, writes work/*.onnx and
    work/result.json."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import tf2onnx

    keras.utils.set_random_seed(seed_of("keras/cnn") % (2 ** 32))
    L = keras.layers
    model = keras.Sequential([
        keras.Input((32, 32, 3), name="input"),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.BatchNormalization(),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.BatchNormalization(),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(32, activation="relu"),
        L.Dense(CLASSES, activation="softmax", name="probabilities"),
    ], name="cnn")
    cal = np.load(os.path.join(work, "cal.npy"))
    x = np.load(os.path.join(work, "x.npy"))
    bns = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0  # the moving statistics become the calibration batch's
    model(cal, training=True)
    for bn in bns:
        bn.momentum = 0.99
    ref = np.asarray(model(x, training=False))
    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="input"),)
    notes = []
    try:
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=KERAS_OPSETS[0])
        notes.append("tf2onnx.convert.from_keras works here too; from_function is used")
    except Exception as e:  # noqa: BLE001 - informational
        notes.append("tf2onnx.convert.from_keras fails on Keras %s: %s; converted with "
                     "tf2onnx.convert.from_function" % (keras.__version__, error_text(e, 120)))
    fn = tf.function(lambda t: {"probabilities": model(t, training=False)})
    files = {}
    for opset in KERAS_OPSETS:
        try:
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
            path = os.path.join(work, "op%d.onnx" % opset)
            with open(path, "wb") as fh:
                fh.write(proto.SerializeToString())
            files[str(opset)] = path
        except Exception as e:  # noqa: BLE001
            files[str(opset)] = {"error": error_text(e)}
    np.save(os.path.join(work, "ref.npy"), ref)
    result = {"tensorflow": tf.__version__, "keras": keras.__version__,
              "tf2onnx": tf2onnx.__version__, "files": files, "notes": notes}
    with open(os.path.join(work, "result.json"), "w") as fh:
        json.dump(result, fh)


def keras_models():
    arch = ("keras.Sequential: Conv2D(8,3,relu), BatchNormalization, MaxPooling2D, "
            "Conv2D(16,3,relu), BatchNormalization, MaxPooling2D, Flatten, Dropout(0.25), "
            "Dense(32,relu), Dense(10,softmax)")
    with tempfile.TemporaryDirectory() as work:
        x, _ = oracle_inputs("NHWC")
        np.save(os.path.join(work, "x.npy"), x)
        np.save(os.path.join(work, "cal.npy"), calibration_images("NHWC"))
        env = dict(os.environ, PYTHONHASHSEED="0")
        reason = None
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--keras-worker",
                                   work], env=env, capture_output=True, text=True,
                                  timeout=KERAS_TIMEOUT_S)
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.strip().splitlines()
                         if ln.strip() and not ln.startswith(("W0000", "I0000", "WARNING"))]
                reason = "Keras/tf2onnx export failed: " + (lines[-1] if lines else
                                                            "exit %d" % proc.returncode)[:300]
        except subprocess.TimeoutExpired:
            reason = "Keras/tf2onnx export took over %d s" % KERAS_TIMEOUT_S
        if reason is not None:
            for opset in KERAS_OPSETS:
                yield {"name": "tf2onnx_keras_cnn_op%d" % opset, "exporter": "tf2onnx",
                       "architecture": arch, "opset": opset, "skipped": reason}
            return
        with open(os.path.join(work, "result.json")) as fh:
            res = json.load(fh)
        ref = np.load(os.path.join(work, "ref.npy"))
        exporter = "tf2onnx %s" % res["tf2onnx"]
        framework = "keras %s, tensorflow %s" % (res["keras"], res["tensorflow"])
        for opset in KERAS_OPSETS:
            name = "tf2onnx_keras_cnn_op%d" % opset
            base = {"name": name, "exporter": exporter, "architecture": arch, "opset": opset}
            f = res["files"][str(opset)]
            if isinstance(f, dict):
                yield dict(base, skipped="export failed: " + f["error"])
                continue
            with open(f, "rb") as fh:
                blob = fh.read()
            yield {"name": name, "blob": blob, "framework_out": ref,
                   "meta": dict(base, framework=framework, layout="NHWC",
                                output="probabilities", kind="probabilities"),
                   "notes": list(res["notes"])}


# ---------------------------------------------------------------------------------------------
# scikit-learn / skl2onnx

def sklearn_models():
    name = "skl2onnx_mlp_op%d" % SKLEARN_OPSET
    arch = ("scikit-learn MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=30), "
            "500 seeded samples of 8x8 features in [0,1], 10 classes")
    try:
        import sklearn
        import skl2onnx
        from skl2onnx import to_onnx
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except Exception as e:  # noqa: BLE001
        yield {"name": name, "exporter": "skl2onnx", "architecture": arch,
               "opset": SKLEARN_OPSET, "skipped": "not installed: " + error_text(e)}
        return
    rng = rng_of("sklearn/data")
    protos = canonical_images(rng, 2 * CLASSES, 1, 8, 8)[1::2].reshape(CLASSES, 64)
    y = rng.integers(0, CLASSES, 500)
    X = np.clip(protos[y] + 0.15 * rng.standard_normal((500, 64)), 0, 1).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    base = {"name": name, "exporter": "skl2onnx %s" % skl2onnx.__version__, "architecture": arch,
            "opset": SKLEARN_OPSET}
    try:
        proto = to_onnx(clf, X[:1], options={"zipmap": False},
                        target_opset={"": SKLEARN_OPSET, "ai.onnx.ml": 1})
    except Exception as e:  # noqa: BLE001
        yield dict(base, skipped="export failed: " + error_text(e))
        return
    x, _ = oracle_inputs("flat")
    yield {"name": name, "blob": proto.SerializeToString(),
           "framework_out": clf.predict_proba(x),
           "meta": dict(base, framework="scikit-learn %s" % sklearn.__version__, layout="flat",
                        output="probabilities", kind="probabilities"),
           "notes": ["training accuracy %.3f after %d iterations" % (clf.score(X, y),
                                                                      clf.n_iter_)]}


# ---------------------------------------------------------------------------------------------
# the oracle

_PATCHED = []


def patch_reference_kernels():
    """Two onnx reference kernels fixed for this oracle (patched on the classes, as
    conformance.patch_reference_kernels does for Erf):
      * LayerNormalization computes in X's dtype but refuses any stash_type but FLOAT, and
        conformance.to_double sets stash_type=DOUBLE: DOUBLE is accepted (with float64 X);
      * BatchNormalization-9 (opsets 9-13) switches to batch statistics whenever the node has a
        `momentum` attribute, which torch writes on every BatchNormalization it keeps; the
        spec's mode is set by the outputs (Y alone: inference with the running statistics),
        so a node with one output uses the running statistics."""
    C.patch_reference_kernels()
    if _PATCHED:
        return
    from onnx.reference.ops import op_batch_normalization as bn
    from onnx.reference.ops import op_layer_normalization as ln

    def ln_run(self, X, Scale, B=None, axis=None, epsilon=None, stash_type=None):
        if stash_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
            raise NotImplementedError("LayerNormalization stash_type=%s" % stash_type)
        if stash_type == TensorProto.DOUBLE and X.dtype != np.float64:
            raise NotImplementedError("LayerNormalization stash_type=DOUBLE on %s" % X.dtype)
        return ln._layer_normalization(X, Scale, B, axis=axis, epsilon=epsilon)

    bn9_run = bn.BatchNormalization_9._run

    def bn9(self, x, scale, bias, mean, var, epsilon=None, momentum=None):
        if len([o for o in self.onnx_node.output if o]) == 1:
            return (bn._batchnorm_test_mode(x, scale, bias, mean, var, epsilon=epsilon),)
        return bn9_run(self, x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum)

    ln.LayerNormalization._run = ln_run
    bn.BatchNormalization_9._run = bn9
    _PATCHED.append(True)


def cross_entropy(out, target, kind):
    z = np.asarray(out, dtype=np.float64).reshape(-1)
    if kind == "probabilities":
        return -math.log(z[target]) if z[target] > 0 else math.inf
    m = float(np.max(z))
    return m + math.log(float(np.sum(np.exp(z - m)))) - float(z[target])


def graph_input(model):
    inits = {t.name for t in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in inits)


def oracle(model, x, dirs, kind, input_name, output_name):
    """Returns a dict of manifest fields (onnxruntime, target, loss, oracle, forward_ok, steps,
    derivatives, forward_max_abs_diff) and the oracle notes."""
    ort = C.Evaluator("onnxruntime-f32", model, input_name, output_name)
    rows = [np.asarray(ort(x[i:i + 1]), dtype=np.float32).reshape(-1) for i in range(INPUTS)]
    targets = [int(np.argmin(r)) for r in rows]
    x64s = [x[i:i + 1].astype(np.float64) for i in range(INPUTS)]
    u64s = [u.astype(np.float64) for u in dirs]

    def f(ev, point, target):
        return cross_entropy(ev(point), target, kind)

    def tiny_fd(ev):
        """Central differences along u_1 at x_1 at steps 1e-7 and 1e-8 agree in float64; a
        float32 computation anywhere makes them noise (or 0: the perturbation is lost)."""
        x64, u64, t = x64s[0], u64s[0], targets[0]
        d1, d2 = [(f(ev, x64 + h * u64, t) - f(ev, x64 - h * u64, t)) / (2 * h)
                  for h in (1e-7, 1e-8)]
        if not (math.isfinite(d1) and math.isfinite(d2)):
            return None
        out = np.asarray(ev(x64), dtype=np.float64)
        mag = 1.0 + abs(f(ev, x64, t)) + float(np.max(np.abs(out)))
        if abs(d1 - d2) > 1e-3 * max(abs(d1), abs(d2)) + 1e-12 * mag / 1e-8:
            return "finite differences at steps 1e-7, 1e-8 are %.6g, %.6g" % (d1, d2)
        dref = (f(ev, x64 + 1e-4 * u64, t) - f(ev, x64 - 1e-4 * u64, t)) / 2e-4
        if d1 == 0 and d2 == 0 and abs(dref) > 1e-6 * mag:
            return "perturbations below float32 resolution are lost (derivative %.6g)" % dref
        return None

    probes = [x64s[0] + s * 1e-3 * u64s[0] for s in (1, -1)]
    ev, _out, notes = C.choose_oracle(model, x[0:1], probes, tiny_fd, input_name, output_name)
    fine = ev.kind == "reference-f64"
    forward_ok, max_diff, losses, derivs, derivs_fine = True, 0.0, [], [], []
    for i in range(INPUTS):
        out = np.asarray(ev(x64s[i]), dtype=np.float64).reshape(-1)
        ok = bool(np.allclose(out, rows[i].astype(np.float64), rtol=FORWARD_RTOL,
                              atol=FORWARD_ATOL))
        forward_ok = forward_ok and ok
        max_diff = max(max_diff, float(np.max(np.abs(out - rows[i]))))
        losses.append(cross_entropy(out, targets[i], kind))
        for steps, into in ((STEPS, derivs), (STEPS_FINE if fine else (), derivs_fine)):
            if not steps:
                continue
            per_input = []
            for u64 in u64s:
                row = []
                for h in steps:
                    d = (f(ev, x64s[i] + h * u64, targets[i])
                         - f(ev, x64s[i] - h * u64, targets[i])) / (2 * h)
                    if not math.isfinite(d):
                        raise C.Skip("non-finite oracle")
                    row.append(d)
                per_input.append(row)
            into.append(per_input)
    res = {"onnxruntime": rows, "target": targets, "loss": losses, "oracle": ev.kind,
           "forward_ok": forward_ok, "steps": list(STEPS), "derivatives": derivs,
           "forward_max_abs_diff": max_diff}
    if fine:
        res["steps_fine"] = list(STEPS_FINE)
        res["derivatives_fine"] = derivs_fine
    return res, notes


# ---------------------------------------------------------------------------------------------
# writing

ORDER = ["name", "file", "arrays", "exporter", "framework", "architecture", "opset", "ops",
         "input", "input_shape", "layout", "output", "kind", "classes", "oracle", "forward_ok",
         "framework_ok", "onnxruntime", "target", "loss", "steps", "derivatives", "steps_fine",
         "derivatives_fine", "notes", "skipped"]


def entry_text(e, order=None):
    """One manifest entry on one line, keys in `order` (this tool's ORDER by default; also
    tools/model_zoo.py's): float32 outputs as the shortest decimals that read back, steps as
    float64 reprs, losses and derivatives to 12 significant digits (tools/conformance.py's)."""
    parts = []
    for k in order or ORDER:
        if k not in e:
            continue
        v = e[k]
        if k == "onnxruntime":
            val = "[" + ",".join(C.f32_list(r) for r in v) + "]"
        elif k == "loss":
            val = "[" + ",".join(C.deriv_text(d) for d in v) + "]"
        elif k in ("steps", "steps_fine"):
            val = "[" + ",".join(C.f64_text(h) for h in v) + "]"
        elif k in ("derivatives", "derivatives_fine"):
            val = "[" + ",".join("[" + ",".join("[" + ",".join(C.deriv_text(d) for d in row)
                                                + "]" for row in per_input) + "]"
                                 for per_input in v) + "]"
        else:
            val = json.dumps(v, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
        parts.append(json.dumps(k) + ":" + val)
    return "{" + ",".join(parts) + "}"


npz_bytes = C.npz_bytes


def onnx_fingerprint(blob):
    """A digest of a model blind to value names and to the order of initializers: the op types
    and attributes of the nodes in order, the sorted digests of the initializers, and the
    graph's input/output names and types (tf2onnx's names change from run to run)."""
    m = onnx.load_from_string(blob)

    def tensor_digest(t):
        a = numpy_helper.to_array(t)
        return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode()
                              + np.ascontiguousarray(a).tobytes()).hexdigest()

    h = hashlib.sha256()
    for n in m.graph.node:
        h.update(("%s:%s:%d:%d;" % (n.domain, n.op_type, len(n.input), len(n.output))).encode())
        for a in sorted(n.attribute, key=lambda a: a.name):
            if a.type == onnx.AttributeProto.TENSOR:
                val = tensor_digest(a.t)
            else:
                val = str(onnx.helper.get_attribute_value(a))
            h.update((a.name + "=" + val + ";").encode())
    for d in sorted(tensor_digest(t) for t in m.graph.initializer):
        h.update(d.encode())
    for vi in list(m.graph.input) + list(m.graph.output):
        h.update(vi.name.encode() + vi.type.SerializeToString())
    for o in m.opset_import:
        h.update(("%s=%d" % (o.domain, o.version)).encode())
    return h.hexdigest()


def build_entry(item):
    """Loads, checks and runs the oracle on one exported model. Returns (entry, blob, npz)."""
    name, blob, meta = item["name"], item["blob"], item["meta"]
    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model)
    layout = meta["layout"]
    x, dirs = oracle_inputs(layout)
    inp = graph_input(model)
    outputs = [o.name for o in model.graph.output]
    if meta["output"] not in outputs:
        raise RuntimeError("output %r not among %s" % (meta["output"], outputs))
    res, onotes = oracle(model, x, dirs, meta["kind"], inp.name, meta["output"])
    fw = np.asarray(item["framework_out"], dtype=np.float64)
    framework_ok = bool(np.allclose(np.stack(res["onnxruntime"]).astype(np.float64),
                                    fw.reshape(INPUTS, -1), rtol=FRAMEWORK_RTOL,
                                    atol=FRAMEWORK_ATOL))
    entry = {"name": name, "file": name + ".onnx", "arrays": name + ".npz",
             "exporter": meta["exporter"], "framework": meta["framework"],
             "architecture": meta["architecture"], "opset": C.opset_of(model),
             "ops": C.ops_of(model), "input": inp.name, "input_shape": SHAPES[layout],
             "layout": layout, "output": meta["output"], "kind": meta["kind"],
             "classes": int(res["onnxruntime"][0].size), "framework_ok": framework_ok}
    entry.update({k: v for k, v in res.items() if k != "forward_max_abs_diff"})
    notes = list(item.get("notes", [])) + list(onotes)
    if notes:
        entry["notes"] = notes
    if entry["opset"] != meta["opset"]:
        raise RuntimeError("opset %s, asked for %s" % (entry["opset"], meta["opset"]))
    info = {"bytes": len(blob), "max_diff": res["forward_max_abs_diff"]}
    return entry, info, npz_bytes([("x", x), ("directions", dirs)])


def generate(out_dir):
    t0 = time.time()
    patch_reference_kernels()
    os.makedirs(out_dir, exist_ok=True)
    entries, infos, written = [], {}, set()
    timings = {}
    for family in (torch_models, keras_models, sklearn_models):
        t = time.time()
        try:
            items = list(family())
        except Exception as e:  # noqa: BLE001 - one exporter failing never stops the run
            traceback.print_exc()
            items = [{"name": family.__name__, "exporter": family.__name__, "architecture": "",
                      "opset": 0, "skipped": "exporter crashed: " + error_text(e)}]
        timings[family.__name__ + " (export)"] = time.time() - t
        t = time.time()
        for item in items:
            if "skipped" in item:
                entries.append(item)
                continue
            try:
                entry, info, npz = build_entry(item)
            except Exception as e:  # noqa: BLE001
                entries.append({"name": item["name"], "exporter": item["meta"]["exporter"],
                                "architecture": item["meta"]["architecture"],
                                "opset": item["meta"]["opset"],
                                "skipped": "oracle failed: " + error_text(e)})
                continue
            with open(os.path.join(out_dir, entry["file"]), "wb") as fh:
                fh.write(item["blob"])
            with open(os.path.join(out_dir, entry["arrays"]), "wb") as fh:
                fh.write(npz)
            written.update((entry["file"], entry["arrays"]))
            entries.append(entry)
            infos[entry["name"]] = info
        timings[family.__name__ + " (oracle)"] = time.time() - t
    entries.sort(key=lambda e: e["name"])
    text = "[\n" + ",\n".join(entry_text(e) for e in entries) + "\n]\n"
    with open(os.path.join(out_dir, MANIFEST), "w") as fh:
        fh.write(text)
    written.add(MANIFEST)
    for f in sorted(os.listdir(out_dir)):  # files of models no longer made
        if f not in written and f.endswith((".onnx", ".npz", ".json")):
            os.remove(os.path.join(out_dir, f))
    return entries, infos, timings, time.time() - t0


def summarize(entries, infos, timings, elapsed, out_dir):
    made = [e for e in entries if "skipped" not in e]
    print("%d models written to %s, %d skipped" % (len(made), os.path.relpath(out_dir),
                                                  len(entries) - len(made)))
    print("%-38s %8s %-16s %-9s %-9s %s" % ("name", "KB", "oracle", "forward", "framework",
                                            "exporter"))
    for e in made:
        print("%-38s %8.1f %-16s %-9s %-9s %s" % (
            e["name"], infos[e["name"]]["bytes"] / 1024, e["oracle"],
            "ok" if e["forward_ok"] else "MISMATCH", "ok" if e["framework_ok"] else "MISMATCH",
            e["exporter"]))
    print("\nops:")
    for e in made:
        print("  %s: %s" % (e["name"], " ".join(e["ops"])))
    print("\noracle detail: max |oracle - onnxruntime| over both inputs, targets, losses, and for"
          " input 1, direction 1: d at steps %s | at fine steps %s" % (list(STEPS),
                                                                     list(STEPS_FINE)))
    for e in made:
        fine = e.get("derivatives_fine")
        print("  %-38s %.2e  targets %s  loss %s  d %s | %s" % (
            e["name"], infos[e["name"]]["max_diff"], e["target"],
            ["%.4f" % v for v in e["loss"]], ["%.6g" % v for v in e["derivatives"][0][0]],
            ["%.6g" % v for v in fine[0][0]] if fine else "-"))
        for n in e.get("notes", []):
            print("      note: " + n)
    print("\nfine differences converged (|d(1e-6) - d(1e-7)| <= 1e-6 (1 + |d|), all inputs and"
          " directions); worst relative gap between the step-1e-4 and step-1e-6 values:")
    for e in made:
        fine = e.get("derivatives_fine")
        if not fine:
            print("  %-38s (no fine steps: %s)" % (e["name"], e["oracle"]))
            continue
        pairs = [(c[i][k], f[i][k]) for c, f in ((e["derivatives"], fine),)
                 for i in range(INPUTS) for k in range(DIRECTIONS)]
        conv = all(abs(fr[1] - fr[2]) <= 1e-6 * (1 + abs(fr[1])) for _c, fr in pairs)
        gap = max(abs(co[2] - fr[1]) / (1e-12 + abs(fr[1])) for co, fr in pairs)
        print("  %-38s %-5s %.2e" % (e["name"], "yes" if conv else "NO", gap))
    skipped = [e for e in entries if "skipped" in e]
    if skipped:
        print("\nskipped:")
        for e in skipped:
            print("  %s: %s" % (e["name"], e["skipped"]))
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print("\ntotal size %.1f KB (.onnx %.1f KB); largest .onnx %.1f KB" % (
        total / 1024, sum(i["bytes"] for i in infos.values()) / 1024,
        max([i["bytes"] for i in infos.values()] or [0]) / 1024))
    for k, v in timings.items():
        print("  %-32s %6.1f s" % (k, v))
    print("run time %.1f s" % elapsed)


def compare_dirs(new, old):
    """Differences between a regeneration and the committed files: expected.json and the .npz
    files byte for byte, the .onnx files by onnx_fingerprint (bytes differing with equal
    fingerprints are reported as notes)."""
    diffs, notes = [], []
    fa, fb = set(os.listdir(new)), set(os.listdir(old))
    for f in sorted(fa ^ fb):
        diffs.append(("only in regenerated: " if f in fa else "only in committed: ") + f)
    for f in sorted(fa & fb):
        with open(os.path.join(new, f), "rb") as ha, open(os.path.join(old, f), "rb") as hb:
            a, b = ha.read(), hb.read()
        if a == b:
            continue
        if f.endswith(".onnx") and onnx_fingerprint(a) == onnx_fingerprint(b):
            notes.append("bytes differ, same fingerprint (names/order): " + f)
        else:
            diffs.append("differs: " + f)
    return diffs, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with the committed files")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--keras-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.keras_worker:
        keras_worker(args.keras_worker)
        return
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--out", tmp])
            if proc.returncode != 0:
                print("regeneration failed (exit %d)" % proc.returncode)
                sys.exit(1)
            diffs, notes = compare_dirs(tmp, args.out)
        for n in notes:
            print("note: " + n)
        if diffs:
            print("exporter fixtures differ from a regeneration (%d):" % len(diffs))
            for d in diffs:
                print("  " + d)
            sys.exit(1)
        print("exporter fixtures match a regeneration")
        return
    entries, infos, timings, elapsed = generate(args.out)
    summarize(entries, infos, timings, elapsed, args.out)


if __name__ == "__main__":
    main()
