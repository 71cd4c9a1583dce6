"""The scipy side of the attack benchmark (scripts/bench.mjs): the paper's attack natively.

Reads JSON on stdin, {"model": "fc200-200-10", "rows": [{"digit", "target"}, ...],
"firstObjective": blindspot's cross-entropy at the first digit}, and runs the same c-search as
tools/reference_attack.py (blindspot's, src/attack/lbfgs.rs) around scipy's fmin_l_bfgs_b, with
the model evaluated in-process by numpy (forward and backward through the ONNX graph's Gemm,
MatMul, Add, Sub, Div, Flatten, Relu and Sigmoid nodes, float32 as in blindspot). Writes JSON on
stdout: {"rows": [{"digit", "target", "success", "distortion", "ms"}], "objective": numpy's
cross-entropy at the first digit, "objectiveDifference": relative to blindspot's}.

Run it single-threaded (OPENBLAS_NUM_THREADS=1, as scripts/bench.mjs does): the page's wasm is.
"""
import json
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

from reference_attack import PACK, attack, load_pack


class NumpyLoss:
    """Cross-entropy of softmax(logits) against the target and its input gradient, in numpy."""

    def __init__(self, path):
        graph = onnx.load(path).graph
        self.weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
        self.nodes = list(graph.node)
        self.input = graph.input[0].name
        self.output = graph.output[0].name
        supported = {"Gemm", "MatMul", "Add", "Sub", "Div", "Flatten", "Relu", "Sigmoid"}
        for n in self.nodes:
            if n.op_type not in supported:
                raise SystemExit(f"bench_attack.py: {n.op_type} (node {n.name}) is not in its numpy model")
        self.shape = [d.dim_value or 1 for d in graph.input[0].type.tensor_type.shape.dim]

    def value(self, name, values):
        return values[name] if name in values else self.weights[name]

    def __call__(self, target, x):
        values = {self.input: np.asarray(x, np.float32).reshape(self.shape)}
        for n in self.nodes:
            a = self.value(n.input[0], values)
            attrs = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
            if n.op_type == "Gemm":
                b = self.value(n.input[1], values)
                b = b.T if attrs.get("transB", 0) else b
                y = attrs.get("alpha", 1.0) * (a @ b)
                if len(n.input) > 2:
                    y = y + attrs.get("beta", 1.0) * self.value(n.input[2], values)
            elif n.op_type == "MatMul":
                y = a @ self.value(n.input[1], values)
            elif n.op_type in ("Add", "Sub", "Div"):
                b = self.value(n.input[1], values)
                y = a + b if n.op_type == "Add" else a - b if n.op_type == "Sub" else a / b
            elif n.op_type == "Flatten":
                axis = attrs.get("axis", 1)
                y = a.reshape(int(np.prod(a.shape[:axis])), -1)
            elif n.op_type == "Relu":
                y = np.maximum(a, 0)
            else:
                y = 1 / (1 + np.exp(-a))
            values[n.output[0]] = y.astype(np.float32)
        z = values[self.output].reshape(-1).astype(np.float64)
        shifted = z - z.max()
        p = np.exp(shifted) / np.exp(shifted).sum()
        loss = np.log(np.exp(shifted).sum()) - shifted[target]
        grad = {self.output: (p - np.eye(len(z))[target]).astype(np.float32).reshape(values[self.output].shape)}
        for n in reversed(self.nodes):
            g = grad.pop(n.output[0], None)
            if g is None:
                continue
            a_name = n.input[0]
            a = self.value(a_name, values)
            if n.op_type == "Gemm":
                b = self.value(n.input[1], values)
                b = b.T if n.attribute and any(at.name == "transB" and at.i for at in n.attribute) else b
                alpha = next((at.f for at in n.attribute if at.name == "alpha"), 1.0)
                da = alpha * (g @ b.T)
            elif n.op_type == "MatMul":
                da = g @ self.value(n.input[1], values).T
            elif n.op_type in ("Add", "Sub"):
                da = g
            elif n.op_type == "Div":
                da = g / self.value(n.input[1], values)
            elif n.op_type == "Flatten":
                da = g.reshape(a.shape)
            elif n.op_type == "Relu":
                da = g * (a > 0)
            else:
                s = values[n.output[0]]
                da = g * s * (1 - s)
            if a_name in values:
                grad[a_name] = grad.get(a_name, 0) + da
        return float(loss), grad[self.input].reshape(-1).astype(np.float64), z


def main():
    job = json.load(sys.stdin)
    loss = NumpyLoss(f"models/{job['model']}.onnx")
    _, pixels = load_pack(PACK)
    first = job["rows"][0]
    objective, _, _ = loss(first["target"], pixels[first["digit"]])
    out = {"objective": objective, "rows": []}
    if job.get("firstObjective"):
        out["objectiveDifference"] = abs(objective - job["firstObjective"]) / abs(job["firstObjective"])
    for row in job["rows"]:
        start = time.perf_counter()
        success, distortion = attack(loss, pixels[row["digit"]], row["target"])
        ms = (time.perf_counter() - start) * 1000
        out["rows"].append({"digit": row["digit"], "target": row["target"], "success": bool(success),
                            "distortion": distortion, "ms": ms})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
