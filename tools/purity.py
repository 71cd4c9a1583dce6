#!/usr/bin/env python3
"""The label-purity table of docs/property1.md: for each layer of the CNN, the mean share of the
top 8 test digits (of all 10,000) carrying their most common label, over 12 units (0, 7, ..., 77)
and over 12 random directions (seeds 1-12), all ranked by `blindspot units`.

    cargo build && python3 tools/purity.py            # or --blindspot target/release/blindspot

Prints the Markdown table. Each `blindspot units` call ranks one unit and one direction (about
3 s each in a debug build; 24 calls).
"""
import argparse
import json
import os
import subprocess
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = [("features", "(128)"), ("pool2", "(32x7x7)")]
UNITS = list(range(0, 78, 7))
SEEDS = list(range(1, 13))
TOP = 8


def purity(entries):
    """The share of the entries carrying the most common label."""
    labels = Counter(e["label"] for e in entries)
    return labels.most_common(1)[0][1] / len(entries)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blindspot", default=os.path.join(ROOT, "target", "debug", "blindspot"))
    parser.add_argument("--model", default="models/cnn.onnx")
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    print("| layer | units | random directions |")
    print("|---|---:|---:|")
    for tensor, shape in LAYERS:
        units, directions = [], []
        for unit, seed in zip(UNITS, SEEDS):
            out = subprocess.run(
                [args.blindspot, "units", args.model, "--tensor", tensor, "--unit", str(unit), "--seed", str(seed),
                 "--top", str(TOP), "--n", str(args.n)],
                cwd=ROOT, check=True, capture_output=True, text=True,
            ).stdout
            line = json.loads(out)
            units.append(purity(line["unit_top"]))
            directions.append(purity(line["direction_top"]))
        print(f"| `{tensor}` {shape} | {sum(units) / len(units):.2f} | {sum(directions) / len(directions):.2f} |")


if __name__ == "__main__":
    main()
