"""Writes a copy of an ONNX classifier with its weights drawn afresh: the start of a training run
from scratch (blindspot train), so runs with and without adversarial training share one start.

    python3 tools/init_weights.py models/fc100-100-10.onnx target/fc100-100-10-init.onnx [--seed 2013]

Every float initializer of two or more dimensions (a layer's weight) is drawn from Glorot and
Bengio's uniform distribution, +-sqrt(6 / (fan_in + fan_out)); every one-dimensional one (a bias)
becomes zeros. The graph is unchanged.
"""
import argparse

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=2013)
    args = parser.parse_args()
    model = onnx.load(args.model)
    rng = np.random.default_rng(args.seed)
    for i, t in enumerate(model.graph.initializer):
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        shape = tuple(t.dims)
        if len(shape) >= 2:
            receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[0] * receptive, shape[1] * receptive
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            values = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:
            values = np.zeros(shape, np.float32)
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values, t.name))
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(f"wrote {args.out}: {len(model.graph.initializer)} initializers drawn with seed {args.seed}")


if __name__ == "__main__":
    main()
