#!/usr/bin/env python3
"""Turns ONNX's own backend conformance material into input-gradient oracle cases.

Sources (all shipped inside the installed `onnx` package, nothing is downloaded):

  node               onnx.backend.test.case.node.collect_testcases(""): the node test cases
                     the onnx package writes with its own tooling (model, inputs, outputs)
  pytorch-converted  onnx/backend/test/data/pytorch-converted/<case>/model.onnx + test_data_set_0
  pytorch-operator   onnx/backend/test/data/pytorch-operator/<case>/model.onnx + test_data_set_0

Each case becomes a single-input, single-output float32 model:

  * the differentiable input x is the first graph input of type float32 (graph inputs that
    are initializers, as IR-3 models list their weights, do not count); every other graph
    input is baked into the graph as an initializer holding the case's value and removed
    from graph.input, except in models with ir_version < 4, whose IR requires every
    initializer to be listed as a graph input (their own weights are listed that way too);
  * only the first float32 graph output is kept (all nodes are kept);
  * opset imports and ir_version are the case's own.

The oracle is a float64 central finite difference of the scalar objective

    f(x) = <v, out(x)>      (v: seeded standard normal, the expected output's shape)

along 3 seeded standard-normal directions u_k (x's shape), each with the steps
h in (1e-3, 1e-5, 1e-7) * max(1, rms(x)) for a float64 oracle, (1e-2, 1e-3, 1e-4) * max(1, rms(x))
for a float32 one:  d(u, h) = (f(x + h u) - f(x - h u)) / (2 h),
an estimate of <grad f(x), u>. v and u_k are drawn in float64 and rounded to float32; those
float32 values are what the oracle uses and what is stored, so a consumer replays them
exactly. All 3 x 3 numbers are stored: at a kink (ReLU at 0, a max-pool tie) or a jump
(Round at .5) the steps disagree, and the smaller steps are usually the right ones.

out(x) comes from onnx.reference.ReferenceEvaluator in float64 ("reference-f64"): first the
case's model with x fed as float64 (numpy upcasts the float32 constants); then, if that
raises or is not a float64 computation, a double copy of the model (float32 initializers and
Constant/ConstantOfShape values -> float64, Cast/dtype=FLOAT and stash_type -> DOUBLE, float
graph input/output/value_info types -> DOUBLE). "Not a float64 computation" is checked three
ways: an intermediate result the output is computed from, and that depends on x, is not
float64; a node reads float64 values depending on x and writes float32-representable
(non-integer) values that change with x (a kernel that casts to float32 inside); finite
differences at steps 1e-7 and 1e-8 disagree (a float32 computation hidden inside an op, e.g.
an expanded function body). onnx's Erf kernel, which computes in float32, is replaced by
scipy's float64 erf, and its LpNormalization, which sums x^p instead of |x|^p, by the spec's
norm. If neither attempt is float64, onnxruntime runs the float32 model ("onnxruntime-f32":
its finite differences carry float32 roundoff, ~1e-7 |f| / h, so trust the largest step);
if onnxruntime cannot run it either, a reference evaluator that ran is used as "reference-f32"; else the case is skipped ("oracle failed: ..."). "forward_ok" says whether
the oracle's out(x) matches the case's expected output (np.allclose, rtol 1e-3, atol 1e-4).

Cases are skipped, with a reason, for: control flow (Loop/If/Scan or any graph attribute),
sequence / optional / map / sparse types, training-domain ops, random ops (Bernoulli,
Random*, Multinomial, Dropout in training mode), no float32 input, no float32 output, an input
over 200,000 elements ("too large"), an empty input or output, a non-finite input or expected
output, an output whose size changes under the perturbations (Unique, Range), an oracle over
300 CPU seconds ("oracle too slow"; CPU time, so a loaded machine gives the same verdict), a
non-finite finite difference ("non-finite oracle", e.g. acos at +-1), or any exception (its
message is the reason). One case failing never stops the run.

Writes, under tests/fixtures/conformance/ (or --out DIR):

  <source>/<case>.onnx   the single-input, single-output float32 model
  cases.json             the manifest: a JSON list, one object per line, sorted by
                         (source, case). A written case:
      source, case       "node" | "pytorch-converted" | "pytorch-operator", the case's name
      ops                the graph's op types, sorted, unique, "domain:Op" outside ai.onnx
      opset              the ai.onnx opset import (the first import where there is none)
      model              the .onnx path from the repository root
      input, input_shape       x's graph input name and shape
      output, output_shape     the kept output's name and shape (the expected output's)
      oracle             "reference-f64" | "onnxruntime-f32" | "reference-f32"
      forward_ok         the oracle's out(x) matches the case's expected output
      x, expected, v     float32 arrays, flat, row-major
      directions         [u_1, u_2, u_3], each flat, row-major (x's shape)
      steps              [h_1, h_2, h_3], the scaled steps actually used
      derivatives        [[d(u_k, h_1), d(u_k, h_2), d(u_k, h_3)] for k = 1..3]
      one_sided          [[(f(x) - f(x - h_3 u_k)) / h_3, (f(x + h_3 u_k) - f(x)) / h_3] for k]:
                         the left and right derivatives at the smallest step; they differ
                         where x sits on a kink
      jittered           only where they differ: the derivatives at x_jittered (in the .npz),
                         x + 1e-3 max(1, rms(x)) w, off the kinks (w seeded standard normal)
  a skipped case: {source, case, ops, skipped: reason}.
  Float32 values are written as the shortest decimal that reads back (through float64, as
  JSON parsers do) as the same float32; steps are float64 reprs; derivatives are rounded to
  12 significant digits (far finer than their own truncation error). If the manifest with
  the arrays inline would exceed 40 MB, x, expected, v and directions (shape (3, *x.shape))
  go instead into an uncompressed <source>/<case>.npz beside the model (np.load reads it, as
  does ndarray-npy's `npz` feature), stored as float32 in their own shapes, and the entry
  names it: "arrays": path from the repository root.

Run (needs numpy, scipy, onnx 1.23, onnxruntime; about a minute on 2 cores):

    python3 tools/conformance.py                 # regenerate everything
    python3 tools/conformance.py --only softmax  # regenerate the cases whose name contains
                                                 # it, merged into the existing manifest
    python3 tools/conformance.py --check         # regenerate into a temp dir, compare with the
                                                 # committed files, exit 1 on any difference
    options: --jobs N (worker processes, default 2), --out DIR

It prints a summary: cases written, skipped by reason, the oracle fallbacks and why, the
slowest cases, sizes and the run time.

Deterministic: every random draw is seeded from the case's source and name, never from the
order of processing; BLAS runs single-threaded; so two runs (any --jobs) give
byte-identical files.
"""
import os

# One BLAS thread: the same summation order on every machine and run (and a CPU-time limit
# that means the same thing everywhere). Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import concurrent.futures
import glob
import hashlib
import io
import json
import math
import shutil
import signal
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "conformance")
DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
SOURCES = ("node", "pytorch-converted", "pytorch-operator")

MAX_ELEMENTS = 200_000
ORACLE_CPU_LIMIT_S = 300  # CPU seconds, not wall time: the same verdict on a loaded machine
STEPS = (1e-2, 1e-3, 1e-4)  # float32 oracles; the probes that choose an oracle
STEPS_F64 = (1e-3, 1e-5, 1e-7)  # float64 oracles: small enough for x ~ 1e4 ("large_number")
DIRECTIONS = 3
FORWARD_RTOL, FORWARD_ATOL = 1e-3, 1e-4
MANIFEST_LIMIT = 40_000_000
SEED_SALT = b"blindspot-conformance-v1"

CONTROL_FLOW = {"Loop", "If", "Scan"}
SEQUENCE_OPS = {"SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
                "SequenceInsert", "SequenceLength", "SequenceMap", "SplitToSequence",
                "ConcatFromSequence", "Optional", "OptionalGetElement", "OptionalHasElement"}
TRAINING_DOMAINS = {"ai.onnx.preview.training", "ai.onnx.training"}
RANDOM_OPS = {"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
              "RandomUniformLike"}

CASES = []  # filled in the parent before the workers fork: (source, name, loader)


class OracleTimeout(Exception):
    pass


class Skip(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# collecting the cases

def collect(only):
    cases = []
    np.random.seed(0)  # the node generators draw from numpy's global state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        node_cases = collect_testcases("")
    for tc in node_cases:
        if only and only not in tc.name:
            continue
        ins, outs = tc.data_sets[0]
        cases.append(("node", tc.name, (tc.model.SerializeToString(), list(ins), list(outs))))
    for source in SOURCES[1:]:
        for d in sorted(os.listdir(os.path.join(DATA, source))):
            if only and only not in d:
                continue
            cases.append((source, d, os.path.join(DATA, source, d)))
    cases.sort(key=lambda c: (c[0], c[1]))
    return cases


def load_dir(path):
    model = onnx.load(os.path.join(path, "model.onnx"))

    def read(kind):
        files = glob.glob(os.path.join(path, "test_data_set_0", kind + "_*.pb"))
        files.sort(key=lambda f: int(os.path.basename(f)[len(kind) + 1:-3]))
        arrays = []
        for f in files:
            t = TensorProto()
            with open(f, "rb") as fh:
                t.ParseFromString(fh.read())
            arrays.append(numpy_helper.to_array(t))
        return arrays

    return model, read("input"), read("output")


def load_case(loader):
    if isinstance(loader, str):
        return load_dir(loader)
    blob, ins, outs = loader
    model = onnx.ModelProto()
    model.ParseFromString(blob)
    return model, ins, outs


# ---------------------------------------------------------------------------------------------
# graph inspection and surgery

def ops_of(model):
    ops = set()
    for n in model.graph.node:
        ops.add(n.op_type if n.domain in ("", "ai.onnx") else n.domain + ":" + n.op_type)
    return sorted(ops)


def opset_of(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return int(model.opset_import[0].version) if model.opset_import else 0


def all_nodes(model):
    """Every node of the model: graph, subgraphs and local functions."""
    stack = [model.graph]
    nodes = []
    for f in model.functions:
        nodes.extend(f.node)
    while stack:
        g = stack.pop()
        for n in g.node:
            nodes.append(n)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return nodes


def structural_skip(model):
    nodes = all_nodes(model)
    for n in nodes:
        if n.op_type in CONTROL_FLOW and n.domain in ("", "ai.onnx"):
            return "control flow"
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in n.attribute):
            return "control flow"
    for n in nodes:
        if n.domain in TRAINING_DOMAINS:
            return "training op"
    for n in nodes:
        if n.op_type in SEQUENCE_OPS and n.domain in ("", "ai.onnx"):
            return "sequence type"
    for n in nodes:
        if n.op_type in RANDOM_OPS and n.domain in ("", "ai.onnx"):
            return "random op"
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        kind = vi.type.WhichOneof("value")
        if kind in ("sequence_type", "optional_type"):
            return "sequence type"
        if kind == "map_type":
            return "map type"
        if kind == "sparse_tensor_type":
            return "sparse type"
    if len(g.sparse_initializer):
        return "sparse type"
    return None


def is_f32(vi):
    return (vi.type.WhichOneof("value") == "tensor_type"
            and vi.type.tensor_type.elem_type == TensorProto.FLOAT)


def as_array(a):
    """A case's value as a numpy array; None for a sequence (a list) or anything else."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, np.generic):
        return np.asarray(a)
    if isinstance(a, TensorProto):
        return numpy_helper.to_array(a)
    return None


def single_io(model, ins, outs):
    """Returns (model, x, input name, expected, output name) or raises Skip."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    feeds = [vi for vi in g.input if vi.name not in inits]
    if len(ins) != len(feeds):
        raise Skip("data has %d inputs, graph %d" % (len(ins), len(feeds)))
    if len(outs) != len(g.output):
        raise Skip("data has %d outputs, graph %d" % (len(outs), len(g.output)))
    xi = next((i for i, vi in enumerate(feeds) if is_f32(vi)), None)
    if xi is None:
        raise Skip("no float input")
    yi = next((i for i, vi in enumerate(g.output) if is_f32(vi)), None)
    if yi is None:
        raise Skip("no float output")
    x = as_array(ins[xi])
    expected = as_array(outs[yi])
    if x is None or expected is None:
        raise Skip("sequence type")
    if x.dtype != np.float32 or expected.dtype != np.float32:
        raise Skip("data is %s -> %s, not float32" % (x.dtype, expected.dtype))
    if x.size > MAX_ELEMENTS:
        raise Skip("too large")
    if x.size == 0:
        raise Skip("empty input")
    if expected.size == 0:
        raise Skip("empty output")
    if not np.all(np.isfinite(x)):
        raise Skip("non-finite input")
    if not np.all(np.isfinite(expected)):
        raise Skip("non-finite expected output")

    m = onnx.ModelProto()
    m.CopyFrom(model)
    mg = m.graph
    keep_listed = m.ir_version < 4
    baked = []
    for i, vi in enumerate(feeds):
        if i == xi:
            continue
        value = ins[i]
        if isinstance(value, TensorProto):  # the exotic types (float8, int4, ...) come so
            t = TensorProto()
            t.CopyFrom(value)
            t.name = vi.name
            baked.append(t)
            continue
        value = as_array(value)
        if value is None:
            raise Skip("sequence type")
        baked.append(numpy_helper.from_array(value, vi.name))
    if baked:
        names = {t.name for t in baked}
        if not keep_listed:
            kept = [vi for vi in mg.input if vi.name not in names]
            del mg.input[:]
            mg.input.extend(kept)
        mg.initializer.extend(baked)
    values = {t.name: t for t in mg.initializer}
    for n in mg.node:
        if n.op_type == "Dropout" and n.domain in ("", "ai.onnx") and len(n.input) >= 3 \
                and n.input[2]:
            t = values.get(n.input[2])
            if t is None or bool(np.any(numpy_helper.to_array(t))):
                raise Skip("random op")  # Dropout in training mode
    out_vi = onnx.ValueInfoProto()
    out_vi.CopyFrom(mg.output[yi])
    del mg.output[:]
    mg.output.append(out_vi)
    return m, x, feeds[xi].name, expected, out_vi.name


def to_double(model):
    """A float64 copy of a float32 model (for the oracle only)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)

    def tensor64(t):
        if t.data_type != TensorProto.FLOAT:
            return t
        n = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)
        return n

    def fix_nodes(nodes):
        for n in nodes:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(tensor64(a.t))
                elif a.type == onnx.AttributeProto.INT \
                        and a.name in ("to", "dtype", "stash_type") and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.DOUBLE
            if n.op_type == "ConstantOfShape" and n.domain in ("", "ai.onnx") \
                    and not any(a.name == "value" for a in n.attribute):
                # the default value is a float32 zero
                n.attribute.append(helper.make_attribute(
                    "value", numpy_helper.from_array(np.zeros(1, dtype=np.float64))))
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                for a in list(n.attribute):
                    if a.name in ("value_float", "value_floats"):
                        arr = (np.array(a.f, dtype=np.float64) if a.name == "value_float"
                               else np.array(list(a.floats), dtype=np.float64))
                        n.attribute.remove(a)
                        n.attribute.append(helper.make_attribute("value",
                                                                 numpy_helper.from_array(arr)))

    opsets = {o.domain or "": o.version for o in m.opset_import}

    def add_stash_type(nodes):
        """Normalizations whose spec computes in float32 (stash_type, default FLOAT) are
        told to compute in double."""
        for n in nodes:
            if any(a.name == "stash_type" for a in n.attribute):
                continue
            try:
                schema = onnx.defs.get_schema(n.op_type, opsets.get(n.domain or "", 1),
                                              n.domain or "")
            except Exception:  # noqa: BLE001 - not a known op: nothing to add
                continue
            if "stash_type" in schema.attributes:
                n.attribute.append(helper.make_attribute("stash_type", TensorProto.DOUBLE))

    g = m.graph
    add_stash_type(g.node)
    new_inits = [tensor64(t) for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(new_inits)
    fix_nodes(g.node)
    for f in m.functions:
        fix_nodes(f.node)
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if is_f32(vi):
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return m


# ---------------------------------------------------------------------------------------------
# the oracle

def ancestors(model, name):
    """Names of the top-level values `name` is computed from (itself included)."""
    anc = {name}
    for n in reversed(model.graph.node):
        if any(o in anc for o in n.output if o):
            anc.update(i for i in n.input if i)
    return anc


def dependents(model, name, results):
    """Names of the top-level values that depend differentiably on the graph input `name`:
    the outputs of nodes that read a floating-point value depending on it (a Shape's integer
    output, and what is computed from it alone, does not depend on x's values)."""
    dep = {name}

    def floating(n):
        v = results.get(n)
        return isinstance(v, np.ndarray) and v.dtype.kind in "fc"

    for n in model.graph.node:
        if any(i in dep and floating(i) for i in n.input if i):
            dep.update(o for o in n.output if o)
    return dep


_PATCHED = []


def patch_reference_kernels():
    """onnx reference kernels that compute in float32 whatever their input (found by the
    precision checks below) get the same function in float64. Patched on the class, so the
    kernels inside expanded function ops (Gelu's Erf) are covered too."""
    if _PATCHED:
        return
    import scipy.special
    from onnx.reference.ops import op_erf

    def erf_run(self, x):  # onnx's is np.vectorize(math.erf, otypes=["f"])
        return (scipy.special.erf(x).astype(x.dtype),)

    op_erf.Erf._run = erf_run

    # onnx 1.23's LpNormalization sums x ** p, not |x| ** p: for p = 1 that is sum(x), which agrees
    # with the L1 norm at the conformance inputs (all >= 0) but not a step below zero, so its
    # finite differences were of another function. The spec's norm, (sum |x|^p)^(1/p):
    from onnx.reference.ops import op_lp_normalization

    def lp_run(self, x, axis=None, p=None):
        axis = axis or self.axis
        p = p or self.p
        norm = np.expand_dims(np.power(np.power(np.abs(x), p).sum(axis=axis), 1.0 / p), axis)
        return (np.where(norm == 0, 0, x / norm).astype(x.dtype),)

    op_lp_normalization.LpNormalization._run = lp_run
    _PATCHED.append(True)


class Evaluator:
    def __init__(self, kind, model, input_name, output_name):
        self.kind = kind
        self.input_name = input_name
        self.output_name = output_name
        if kind == "onnxruntime-f32":
            import onnxruntime as ort
            ort.set_default_logger_severity(4)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.log_severity_level = 4
            self.sess = ort.InferenceSession(model.SerializeToString(), so,
                                             providers=["CPUExecutionProvider"])
            self.dtype = np.float32
        else:
            from onnx.reference import ReferenceEvaluator
            patch_reference_kernels()
            self.sess = ReferenceEvaluator(model)
            self.dtype = np.float64
            self.model = model

    def __call__(self, x):
        feed = {self.input_name: np.asarray(x, dtype=self.dtype)}
        return np.asarray(self.sess.run([self.output_name], feed)[0])

    def precision_problem(self, p1, p2):
        """For the reference evaluator, run at p1 and p2 (float64 points near x, off the
        float32 grid): why its result is not a float64 computation, or None. Only the values
        the kept output is computed from count. Either one that depends on x is not float64,
        or a node read a float64 value that depends on x and wrote values that change with x
        but are float32-representable and not all integers at both points (a kernel that
        computes in float32 inside and casts back, as some of onnx's reference kernels do)."""
        runs = [self.sess.run(None, {self.input_name: np.asarray(p, dtype=np.float64)},
                              intermediate=True) for p in (p1, p2)]
        res = runs[0]
        dep = dependents(self.model, self.input_name, res) & ancestors(self.model,
                                                                       self.output_name)
        for name in sorted(dep):
            v = res.get(name)
            if isinstance(v, np.ndarray) and v.dtype.kind in "fc" and v.dtype != np.float64:
                return "%s is %s" % (name, v.dtype)

        def off_grid(v):
            return (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.size > 0
                    and bool(np.any(v != v.astype(np.float32).astype(np.float64))))

        def on_grid(v):
            return (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.size > 0
                    and bool(np.all(np.isfinite(v))) and not off_grid(v)
                    and not bool(np.all(v == np.round(v))))

        for n in self.model.graph.node:
            if not any(i in dep and off_grid(res.get(i)) for i in n.input if i):
                continue
            for o in n.output:
                if o not in dep:
                    continue
                v1, v2 = runs[0].get(o), runs[1].get(o)
                if on_grid(v1) and on_grid(v2) and v1.shape == v2.shape \
                        and bool(np.any(v1 != v2)):
                    return "%s (%s) computes in float32" % (o, n.op_type)
        out = res.get(self.output_name)
        if not isinstance(out, np.ndarray) or out.dtype != np.float64:
            return "output is %s" % (getattr(out, "dtype", type(out)),)
        return None


def short_error(e):
    msg = (type(e).__name__ + ": " + str(e)).strip().splitlines()[0] if str(e) else type(e).__name__
    return msg[:160]


def choose_oracle(model, x, probes, tiny_fd, input_name, output_name):
    """Returns (Evaluator, out at x, notes). probes: two float64 points near x, off the
    float32 grid, where the reference evaluator's precision is checked; tiny_fd(ev): why
    finite differences at tiny steps show a float32 computation inside an op (a function op's
    expanded body, say), or None."""
    notes = []
    imprecise = None  # a reference evaluator that runs, but not in float64 throughout
    for kind, m in (("reference-f64", model), ("reference-f64-double", None)):
        try:
            if m is None:
                m = to_double(model)
            ev = Evaluator("reference-f64", m, input_name, output_name)
            out = ev(x.astype(np.float64))
            problem = ev.precision_problem(*probes) or tiny_fd(ev)
            if problem:
                notes.append(kind + ": " + problem)
                if imprecise is None:
                    imprecise = (ev, out)
                continue
            return ev, out, notes
        except OracleTimeout:
            raise
        except Exception as e:  # noqa: BLE001 - any failure moves on to the next oracle
            notes.append(kind + ": " + short_error(e))
    try:
        ev = Evaluator("onnxruntime-f32", model, input_name, output_name)
        out = ev(x)
        return ev, out, notes
    except OracleTimeout:
        raise
    except Exception as e:  # noqa: BLE001
        notes.append("onnxruntime-f32: " + short_error(e))
        if imprecise is not None:
            ev, out = imprecise
            ev.kind = "reference-f32"
            return ev, out, notes
        raise Skip("oracle failed: " + short_error(e))


def case_rng(source, name):
    digest = hashlib.sha256(SEED_SALT + b"/" + source.encode() + b"/" + name.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def oracle(source, name, model, x, input_name, expected, output_name):
    rng = case_rng(source, name)
    v = rng.standard_normal(expected.shape).astype(np.float32)
    us = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(DIRECTIONS)]
    x64 = x.astype(np.float64)
    scale0 = max(1.0, math.sqrt(float(np.mean(x64 * x64))))
    probes = [x64 + sign * STEPS[1] * scale0 * us[0].astype(np.float64) for sign in (1, -1)]
    v64 = v.astype(np.float64)

    def f_of(ev, point):
        return float(np.sum(v64.reshape(-1) * np.asarray(ev(point), dtype=np.float64).reshape(-1)))

    def tiny_fd(ev):
        """Central differences along u_1 at 1e-7 and 1e-8 (times the step scale). In float64
        they agree (roundoff is ~1e-16 * sum|v*out| / step); a float32 computation anywhere
        makes them noise, or exactly 0 where the perturbation is rounded away. A jump at x
        (a Round or Sign at its threshold) scales as 1/step and is not a precision problem."""
        u64 = us[0].astype(np.float64)
        out = np.asarray(ev(x64), dtype=np.float64).reshape(-1)
        if out.size != expected.size:
            return None  # reported by the caller
        mag = float(np.sum(np.abs(v64.reshape(-1) * out)))
        d1, d2 = [(f_of(ev, x64 + t * scale0 * u64) - f_of(ev, x64 - t * scale0 * u64))
                  / (2 * t * scale0) for t in (1e-7, 1e-8)]
        if not (math.isfinite(d1) and math.isfinite(d2)):
            return None  # non-finite values are reported by the finite differences
        if d1 != 0 and abs(d2 / d1 - 10.0) < 1e-3:
            return None  # a jump at x
        tol = 1e-3 * max(abs(d1), abs(d2)) + 1e-12 * mag / (1e-8 * scale0)
        if abs(d1 - d2) > tol:
            return "finite differences at steps 1e-7, 1e-8 are %.6g, %.6g" % (d1, d2)
        dref = (f_of(ev, x64 + STEPS[2] * scale0 * u64)
                - f_of(ev, x64 - STEPS[2] * scale0 * u64)) / (2 * STEPS[2] * scale0)
        if d1 == 0 and d2 == 0 and abs(dref) > 1e-6 * max(1.0, mag):
            return "perturbations below float32 resolution are lost (derivative %.6g)" % dref
        return None

    ev, out0, notes = choose_oracle(model, x, probes, tiny_fd, input_name, output_name)
    out0 = np.asarray(out0)
    if out0.shape != expected.shape:
        if out0.size != expected.size:
            raise Skip("oracle output shape %s, expected %s" % (list(out0.shape),
                                                                list(expected.shape)))
        out0 = out0.reshape(expected.shape)
    forward_ok = bool(np.allclose(out0.astype(np.float64), expected.astype(np.float64),
                                  rtol=FORWARD_RTOL, atol=FORWARD_ATOL))
    def f(point):
        try:
            out = np.asarray(ev(point), dtype=np.float64)
        except OracleTimeout:
            raise
        except Exception as e:  # noqa: BLE001
            raise Skip("oracle failed at a perturbed point: " + short_error(e))
        if out.size != expected.size:
            raise Skip("output shape changes under perturbation")
        out = out.reshape(expected.shape)
        return float(np.sum(v64 * out))

    steps = [h * scale0 for h in (STEPS_F64 if ev.kind == "reference-f64" else STEPS)]
    derivs, one_sided = [], []
    f0 = f(x64)
    for u in us:
        u64 = u.astype(np.float64)
        row = []
        for h in steps:
            up, down = f(x64 + h * u64), f(x64 - h * u64)
            d = (up - down) / (2.0 * h)
            if not math.isfinite(d):
                raise Skip("non-finite oracle")
            row.append(d)
        derivs.append(row)
        # at a kink (ReLU at 0, a tie in a max) the central difference is the mean of the two
        # one-sided derivatives, and any value between them is a valid reverse-mode answer
        one_sided.append([(f0 - down) / h, (up - f0) / h])
    # x on a kink or a tie (the conformance examples sit on them: ReLU at 0, repeated maxima):
    # there the gradient is any subgradient, which one-sided numbers cannot check when several
    # kinks add up with mixed signs. The same derivatives are then also taken at a point moved
    # off the kinks, x + 1e-3 max(1, rms(x)) w (w seeded standard normal, rounded to float32)
    jitter = None
    kinked = any(abs(l - r) > 1e-6 * max(1.0, abs(l), abs(r)) for l, r in one_sided)
    if kinked:
        w = case_rng(source, name + "/jitter").standard_normal(x.shape)
        xj = (x64 + 1e-3 * scale0 * w).astype(np.float32)
        xj64 = xj.astype(np.float64)
        rows = []
        for u in us:
            u64 = u.astype(np.float64)
            rows.append([(f(xj64 + h * u64) - f(xj64 - h * u64)) / (2.0 * h) for h in steps])
            if not all(math.isfinite(d) for d in rows[-1]):
                raise Skip("non-finite oracle at the jittered point")
        jitter = (xj, rows)
    return ev.kind, forward_ok, v, us, steps, derivs, one_sided, jitter, notes


# ---------------------------------------------------------------------------------------------
# one case, in a worker

def _alarm(signum, frame):
    raise OracleTimeout()


def run_case(index):
    """Returns (source, name, entry, model bytes or None, arrays or None, seconds)."""
    t0 = time.perf_counter()
    return case_result(index) + (time.perf_counter() - t0,)


def case_result(index):
    source, name, loader = CASES[index]
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    ops = []
    try:
        model, ins, outs = load_case(loader)
        ops = ops_of(model)
        reason = structural_skip(model)
        if reason:
            raise Skip(reason)
        m, x, input_name, expected, output_name = single_io(model, ins, outs)
        signal.signal(signal.SIGPROF, _alarm)
        signal.setitimer(signal.ITIMER_PROF, ORACLE_CPU_LIMIT_S)
        try:
            kind, forward_ok, v, us, steps, derivs, one_sided, jitter, notes = oracle(source, name, m, x, input_name,
                                                            expected, output_name)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except OracleTimeout:
        return source, name, skipped(source, name, ops, "oracle too slow"), None, None
    except Skip as e:
        return source, name, skipped(source, name, ops, str(e)), None, None
    except Exception as e:  # noqa: BLE001 - a case never stops the run
        return source, name, skipped(source, name, ops, "error: " + short_error(e)), None, None
    entry = {
        "source": source,
        "case": name,
        "ops": ops,
        "opset": opset_of(m),
        "model": "tests/fixtures/conformance/%s/%s.onnx" % (source, name),
        "input": input_name,
        "input_shape": [int(d) for d in x.shape],
        "output": output_name,
        "output_shape": [int(d) for d in expected.shape],
        "oracle": kind,
        "forward_ok": forward_ok,
        "steps": steps,
        "derivatives": derivs,
        "one_sided": one_sided,
        **({"jittered": jitter[1]} if jitter else {}),
        "_notes": notes,  # why the oracle is not the first choice (printed, not written)
    }
    arrays = {"x": x, "expected": expected.astype(np.float32), "v": v,
              "directions": np.stack(us)}
    if jitter:
        arrays["x_jittered"] = jitter[0]
    return source, name, entry, m.SerializeToString(), arrays


def skipped(source, name, ops, reason):
    return {"source": source, "case": name, "ops": ops, "skipped": reason}


# ---------------------------------------------------------------------------------------------
# writing

def f32_list(a):
    """JSON text of a float32 array, flat: the shortest decimal of each value that reads back
    (through float64, as JSON parsers do) as the same float32."""
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    texts = flat.astype(str)
    back = texts.astype(np.float64).astype(np.float32)
    bad = np.nonzero(back.view(np.uint32) != flat.view(np.uint32))[0]
    texts = texts.tolist()
    for i in bad:
        texts[i] = repr(float(flat[i]))
    for i, t in enumerate(texts):
        if t in ("nan", "inf", "-inf"):
            raise ValueError("non-finite value in an array")
    return "[" + ",".join(texts) + "]"


def f64_text(x):
    if not math.isfinite(x):
        raise ValueError("non-finite value")
    return repr(float(x))


def deriv_text(x):
    """A finite difference, to 12 significant digits: far finer than its own truncation error,
    coarse enough that last-bit differences between CPUs/numpy builds do not show."""
    if not math.isfinite(x):
        raise ValueError("non-finite value")
    return repr(float("%.12g" % x))


NPZ_ORDER = ("x", "expected", "v", "directions", "x_jittered")
ORDER = ["source", "case", "ops", "opset", "model", "input", "input_shape", "output",
         "output_shape", "oracle", "forward_ok", "arrays", "x", "expected", "v", "directions",
         "steps", "derivatives", "one_sided", "jittered", "skipped"]


def entry_text(entry, arrays, inline):
    parts = []
    for k in ORDER:
        if k in ("x", "expected", "v", "directions"):
            if arrays is None or not inline:
                continue
            if k == "directions":
                val = "[" + ",".join(f32_list(u) for u in arrays[k]) + "]"
            else:
                val = f32_list(arrays[k])
        elif k == "steps":
            if k not in entry:
                continue
            val = "[" + ",".join(f64_text(h) for h in entry[k]) + "]"
        elif k in ("derivatives", "one_sided", "jittered"):
            if k not in entry:
                continue
            val = "[" + ",".join("[" + ",".join(deriv_text(d) for d in row) + "]"
                                 for row in entry[k]) + "]"
        else:
            if k not in entry:
                continue
            val = json.dumps(entry[k], allow_nan=False, ensure_ascii=True, separators=(",", ":"))
        parts.append(json.dumps(k) + ":" + val)
    return "{" + ",".join(parts) + "}"


def npz_bytes(items):
    """An uncompressed .npz (what np.savez writes; np.load and ndarray-npy's `npz` feature,
    which needs no deflate, read it) of (name, array) pairs, with fixed timestamps, so reruns
    are byte-identical. tools/exporters.py and tools/model_zoo.py write theirs with it too."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for k, a in items:
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            z.writestr(info, arr.getvalue())
    return buf.getvalue()


def read_manifest_lines(path):
    """The existing manifest as {(source, case): its line}, for --only merges (the manifest
    holds one entry per line)."""
    if not os.path.exists(path):
        return {}
    lines = {}
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line in ("[", "]"):
                continue
            line = line[:-1] if line.endswith(",") else line
            e = json.loads(line)
            lines[(e["source"], e["case"])] = line
    return lines


def write_all(out_dir, results, merge):
    """Writes models, arrays and the manifest under out_dir. Returns the manifest mode."""
    results = sorted(results, key=lambda r: (r[0], r[1]))
    inline_texts = []
    for source, name, entry, blob, arrays, _t in results:
        inline_texts.append(entry_text(entry, arrays, inline=True))
    inline_size = sum(len(t) + 2 for t in inline_texts)
    inline = inline_size <= MANIFEST_LIMIT
    if merge is not None and merge["inline"] is not None:
        # stay in the mode the existing manifest uses
        inline = merge["inline"]
    lines = {}
    for (source, name, entry, blob, arrays, _t), text in zip(results, inline_texts):
        sub = os.path.join(out_dir, source)
        for ext in (".onnx", ".npz"):
            p = os.path.join(sub, name + ext)
            if os.path.exists(p):
                os.remove(p)
        if blob is not None:
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, name + ".onnx"), "wb") as fh:
                fh.write(blob)
            if not inline:
                entry = dict(entry)
                entry["arrays"] = "tests/fixtures/conformance/%s/%s.npz" % (source, name)
                with open(os.path.join(sub, name + ".npz"), "wb") as fh:
                    fh.write(npz_bytes([(k, arrays[k]) for k in NPZ_ORDER if k in arrays]))
                text = entry_text(entry, arrays, inline=False)
        lines[(source, name)] = text
    if merge is not None:
        for key, text in merge["lines"].items():
            lines.setdefault(key, text)
    body = "[\n" + ",\n".join(lines[k] for k in sorted(lines)) + "\n]\n"
    with open(os.path.join(out_dir, "cases.json"), "w") as fh:
        fh.write(body)
    return inline


def dir_size(path):
    total = 0
    for dp, _dn, fns in os.walk(path):
        for f in fns:
            total += os.path.getsize(os.path.join(dp, f))
    return total


def run_all(jobs):
    results = [None] * len(CASES)
    if jobs <= 1:
        for i in range(len(CASES)):
            results[i] = run_case(i)
        return results
    pending = list(range(len(CASES)))
    try:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            futs = {pool.submit(run_case, i): i for i in pending}
            for fut in concurrent.futures.as_completed(futs):
                i = futs[fut]
                try:
                    results[i] = fut.result()
                except Exception:  # noqa: BLE001 - a crashed worker: retried alone below
                    pass
    except Exception:  # noqa: BLE001
        pass
    for i, r in enumerate(results):
        if r is None:  # the worker died (a crash in native code): run it alone
            source, name, _ = CASES[i]
            try:
                with concurrent.futures.ProcessPoolExecutor(1) as pool:
                    results[i] = pool.submit(run_case, i).result(timeout=10 * ORACLE_CPU_LIMIT_S)
            except Exception as e:  # noqa: BLE001
                results[i] = (source, name,
                              skipped(source, name, [], "worker crashed: " + short_error(e)),
                              None, None, 0.0)
    return results


def generate(out_dir, only, jobs, quiet=False):
    global CASES
    t0 = time.time()
    CASES = collect(only)
    results = run_all(jobs)
    merge = None
    manifest = os.path.join(out_dir, "cases.json")
    if only:
        lines = read_manifest_lines(manifest)
        inline = None  # no manifest yet: decided by size
        for text in lines.values():
            if "skipped" not in json.loads(text):
                inline = '"arrays"' not in text
                break
        merge = {"lines": {k: t for k, t in lines.items()}, "inline": inline}
    else:
        # a full run replaces everything: stale models of renamed cases must not linger
        for source in SOURCES:
            shutil.rmtree(os.path.join(out_dir, source), ignore_errors=True)
        if os.path.exists(manifest):
            os.remove(manifest)
    os.makedirs(out_dir, exist_ok=True)
    inline = write_all(out_dir, results, merge)
    elapsed = time.time() - t0
    if not quiet:
        summarize(results, out_dir, inline, elapsed)
    return results


def summarize(results, out_dir, inline, elapsed):
    written = [r for r in results if "skipped" not in r[2]]
    skipped_ = [r for r in results if "skipped" in r[2]]
    print("cases: %d, written: %d, skipped: %d" % (len(results), len(written), len(skipped_)))
    per_source = Counter((r[0], "skipped" not in r[2]) for r in results)
    for source in SOURCES:
        print("  %-18s written %4d  skipped %4d" % (source, per_source[(source, True)],
                                                     per_source[(source, False)]))
    oracles = Counter(r[2]["oracle"] for r in written)
    print("oracles: " + ", ".join("%s %d" % kv for kv in sorted(oracles.items())))
    print("forward_ok: %d of %d" % (sum(r[2]["forward_ok"] for r in written), len(written)))
    reasons = Counter(short_reason(r[2]["skipped"]) for r in skipped_)
    print("skipped by reason:")
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        print("  %5d  %s" % (n, reason))
    for r in written:
        if r[2]["oracle"] != "reference-f64":
            print("  %s: %s (%s)" % (r[1], r[2]["oracle"], "; ".join(r[2]["_notes"])[:200]))
    slowest = sorted(results, key=lambda r: -r[5])[:5]
    print("slowest cases: " + ", ".join("%s %.1f s" % (r[1], r[5]) for r in slowest))
    manifest = os.path.join(out_dir, "cases.json")
    print("arrays: %s" % ("inline in cases.json" if inline else "per-case .npz files"))
    print("cases.json: %d bytes; total on disk: %d bytes" % (os.path.getsize(manifest),
                                                             dir_size(out_dir)))
    print("time: %.1f s" % elapsed)


def short_reason(reason):
    for prefix in ("oracle failed at a perturbed point", "oracle failed", "error",
                   "worker crashed", "data is", "data has", "oracle output shape"):
        if reason.startswith(prefix):
            return prefix
    return reason


def compare_dirs(a, b):
    diffs = []
    files_a = {os.path.relpath(os.path.join(dp, f), a)
               for dp, _dn, fns in os.walk(a) for f in fns}
    files_b = {os.path.relpath(os.path.join(dp, f), b)
               for dp, _dn, fns in os.walk(b) for f in fns}
    for f in sorted(files_a ^ files_b):
        diffs.append(("only in regenerated: " if f in files_a else "only in committed: ") + f)
    for f in sorted(files_a & files_b):
        with open(os.path.join(a, f), "rb") as fa, open(os.path.join(b, f), "rb") as fb:
            if fa.read() != fb.read():
                diffs.append("differs: " + f)
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", metavar="SUBSTRING",
                    help="only the cases whose name contains SUBSTRING (merged into the manifest)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with the committed files")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            if args.only:
                # start from the committed tree so that a subset merge compares like for like
                shutil.copytree(args.out, tmp, dirs_exist_ok=True)
            generate(tmp, args.only, args.jobs)
            diffs = compare_dirs(tmp, args.out)
        if diffs:
            print("conformance fixtures differ from a regeneration (%d):" % len(diffs))
            for d in diffs[:50]:
                print("  " + d)
            sys.exit(1)
        print("conformance fixtures match a regeneration")
        return
    generate(args.out, args.only, args.jobs)


if __name__ == "__main__":
    main()
