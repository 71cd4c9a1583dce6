"""Reference check of blindspot's L-BFGS attack against scipy's fmin_l_bfgs_b.

Same models, digits and targets (read from `blindspot table1 --csv`), the same loss and gradient
(the model evaluated by `blindspot serve-loss`, so both optimisers see identical numbers), the same
objective c*||r||^2 + loss and the same search over c (src/attack/lbfgs.rs): only the optimiser
differs. Prints a Markdown table of average distortion and success rate, blindspot beside scipy.

Run from the repository root, after `cargo build --release`:
    target/release/blindspot table1 --n 100 --csv /tmp/ours.csv > /dev/null
    python3 tools/reference_attack.py /tmp/ours.csv > docs/reference.md.part
"""
import csv
import subprocess
import sys
from collections import defaultdict

import numpy as np
from scipy.optimize import fmin_l_bfgs_b

BLINDSPOT = "target/release/blindspot"
PACK = "models/data/mnist-test-10k.bin"
# blindspot's defaults (attack::lbfgs::Options)
MEMORY, MAX_ITERATIONS, C_STEPS, BRACKET_STEPS, C_INITIAL = 15, 150, 5, 6, 1.0


def load_pack(path):
    b = open(path, "rb").read()
    count, rows, cols = np.frombuffer(b[8:20], dtype="<u4")
    labels = np.frombuffer(b[20:20 + count], dtype=np.uint8)
    pixels = np.frombuffer(b[20 + count:], dtype=np.uint8).reshape(count, rows * cols)
    return labels, pixels.astype(np.float32) / np.float32(255)


class Loss:
    """The attack's loss through `blindspot serve-loss`: one process per model."""

    def __init__(self, model_file, n, classes=10):
        self.proc = subprocess.Popen([BLINDSPOT, "serve-loss", model_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.n, self.classes = n, classes

    def __call__(self, target, x):
        frame = np.uint32(target).tobytes() + np.asarray(x, dtype=np.float32).tobytes()
        self.proc.stdin.write(frame)
        self.proc.stdin.flush()
        reply = self.proc.stdout.read(8 + 4 * (self.n + self.classes))
        value = np.frombuffer(reply[:8], dtype="<f8")[0]
        rest = np.frombuffer(reply[8:], dtype="<f4")
        return value, rest[:self.n].astype(np.float64), rest[self.n:]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def attack(loss, x, target):
    """blindspot's c-search around scipy's optimiser; returns (success, distortion)."""
    x64 = x.astype(np.float64)
    best = None

    def run(c):
        nonlocal best

        def f(xp):
            value, grad, _ = loss(target, xp.astype(np.float32))
            r = xp - x64
            return c * r.dot(r) + value, 2 * c * r + grad

        xp, _, _ = fmin_l_bfgs_b(f, x64, bounds=[(0.0, 1.0)] * len(x64), m=MEMORY, maxiter=MAX_ITERATIONS,
                                 maxfun=MAX_ITERATIONS * 20, factr=1e7, pgtol=1e-5)
        adv = np.clip(xp, 0, 1).astype(np.float32)
        _, _, logits = loss(target, adv)
        success = int(np.argmax(logits)) == target
        if success:
            d = float(np.sqrt(np.mean((adv.astype(np.float64) - x64) ** 2)))
            if best is None or d < best:
                best = d
        return success

    c, lo, hi = C_INITIAL, None, None
    for _ in range(BRACKET_STEPS + 1):
        if run(c):
            lo = c
            if hi is not None:
                break
            c *= 10
        else:
            hi = c
            if lo is not None:
                break
            c /= 10
    if lo is not None and hi is not None:
        for _ in range(C_STEPS):
            mid = np.sqrt(lo * hi)
            if run(mid):
                lo = mid
            else:
                hi = mid
    return best is not None, best


def main():
    ours = defaultdict(list)
    for row in csv.DictReader(open(sys.argv[1])):
        ours[row["model"]].append(row)
    labels, pixels = load_pack(PACK)
    print("| model | digits | blindspot successes | scipy successes | blindspot av. distortion | scipy av. distortion | blindspot / scipy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, rows in ours.items():
        loss = Loss(f"models/{model}.onnx", pixels.shape[1])
        ref = [attack(loss, pixels[int(r["digit"])], int(r["target"])) for r in rows]
        loss.close()
        mine = [float(r["distortion"]) for r in rows if r["success"] == "true"]
        theirs = [d for ok, d in ref if ok]
        a, b = np.mean(mine), np.mean(theirs)
        print(f"| {model} | {len(rows)} | {len(mine)} | {len(theirs)} | {a:.5f} | {b:.5f} | {a / b:.4f} |", flush=True)


if __name__ == "__main__":
    main()
