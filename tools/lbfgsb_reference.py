#!/usr/bin/env python3
"""Reference optima from scipy's L-BFGS-B for tests/lbfgsb.rs (writes tests/fixtures/lbfgsb/*.json).

Every problem is run through scipy.optimize.fmin_l_bfgs_b with m=10, factr=1e7, pgtol=1e-5 and
the default maxiter/maxfun/maxls, i.e. the settings blindspot's `optim::lbfgsb::Options::default()`
mirrors. Each JSON file holds the full problem data (kind, x0, bounds, and A, b for the quadratic),
so the Rust test needs no data generator of its own, plus scipy's x*, f*, nit, nfev, warnflag and
the projected-gradient infinity norm at x*.

Problems (indices are 0-based):

* rosenbrock_n{2,10,25}: chained Rosenbrock
      f(x) = sum_{i=0}^{n-2} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2
  from the standard start x0 = (-1.2, 1, -1.2, 1, ...), bounds x_i in [-2, 2] for even i and
  x_i in [-2, 0.5] for odd i. The unconstrained optimum (1, ..., 1) is cut off, so the upper
  bound 0.5 is active at the optimum for odd coordinates. x0 violates those upper bounds (x0_i = 1
  for odd i): both scipy and blindspot project x0 into the box first.
* driver1_n25: the test problem of the L-BFGS-B 3.0 distribution (driver1.f),
      f(x) = (x_0 - 1)^2 + 4 sum_{i=1}^{n-1} (x_i - x_{i-1}^2)^2,
  x0 = (3, ..., 3), bounds [1, 100] for even i, [-100, 100] for odd i.
* quadratic_n50: f(x) = 0.5 x'Ax - b'x with A = Q diag(lambda) Q' (Q from the QR of a seeded
  standard normal matrix, lambda log-spaced in [1, 100]), b = 10 * standard normal, bounds
  [-1, 1] on every coordinate, x0 = 0. numpy.random.default_rng(20131221).

Run from the repository root:  python3 tools/lbfgsb_reference.py
"""

import json
import pathlib

import numpy as np
from scipy.optimize import fmin_l_bfgs_b

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "lbfgsb"

M, FACTR, PGTOL = 10, 1e7, 1e-5


def rosenbrock(x):
    d = x[1:] - x[:-1] ** 2
    e = 1.0 - x[:-1]
    f = float(np.sum(100.0 * d * d + e * e))
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * d - 2.0 * e
    g[1:] += 200.0 * d
    return f, g


def driver1(x):
    d = x[1:] - x[:-1] ** 2
    f = float((x[0] - 1.0) ** 2 + 4.0 * np.sum(d * d))
    g = np.zeros_like(x)
    g[0] = 2.0 * (x[0] - 1.0)
    g[:-1] += -16.0 * x[:-1] * d
    g[1:] += 8.0 * d
    return f, g


def quadratic(a, b):
    def fg(x):
        ax = a @ x
        return float(0.5 * x @ ax - b @ x), ax - b

    return fg


def projected_gradient_inf(x, g, lower, upper):
    """L-BFGS-B's projgr: the infinity norm of P(x - g) - x."""
    return float(np.max(np.abs(np.clip(x - g, lower, upper) - x)))


def solve(name, kind, fg, x0, lower, upper, extra=None):
    counter = {"n": 0}

    def counted(x):
        counter["n"] += 1
        return fg(x)

    bounds = list(zip(lower.tolist(), upper.tolist()))
    x, f, info = fmin_l_bfgs_b(counted, x0.copy(), m=M, factr=FACTR, pgtol=PGTOL, bounds=bounds)
    _, g = fg(x)
    lo_active = int(np.sum(x <= lower))
    up_active = int(np.sum(x >= upper))
    record = {
        "name": name,
        "kind": kind,
        "n": int(x0.size),
        "x0": x0.tolist(),
        "lower": lower.tolist(),
        "upper": upper.tolist(),
        "options": {"m": M, "factr": FACTR, "pgtol": PGTOL},
        "scipy": {
            "x": x.tolist(),
            "f": float(f),
            "nit": int(info["nit"]),
            "nfev": int(info["funcalls"]),
            "warnflag": int(info["warnflag"]),
            "task": info["task"] if isinstance(info["task"], str) else str(info["task"]),
            "projected_gradient_inf": projected_gradient_inf(x, g, lower, upper),
            "active_lower": lo_active,
            "active_upper": up_active,
        },
    }
    if extra:
        record.update(extra)
    assert counter["n"] == info["funcalls"], (counter["n"], info["funcalls"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    s = record["scipy"]
    print(
        f"{name:16s} f*={s['f']:.12e} nit={s['nit']:4d} nfev={s['nfev']:4d} "
        f"pg={s['projected_gradient_inf']:.2e} active={lo_active}+{up_active} warnflag={s['warnflag']} "
        f"task={s['task']}"
    )


def main():
    for n in (2, 10, 25):
        x0 = np.array([-1.2 if i % 2 == 0 else 1.0 for i in range(n)])
        lower = np.full(n, -2.0)
        upper = np.array([2.0 if i % 2 == 0 else 0.5 for i in range(n)])
        solve(f"rosenbrock_n{n}", "rosenbrock", rosenbrock, x0, lower, upper)

    for n in (10, 25):
        x0 = np.array([-1.2 if i % 2 == 0 else 1.0 for i in range(n)])
        lower = np.array([1.5 if i % 4 == 1 else -2.0 for i in range(n)])
        upper = np.array([0.5 if i % 4 == 3 else 2.0 for i in range(n)])
        solve(f"rosenbrock_mixed_n{n}", "rosenbrock", rosenbrock, x0, lower, upper)

    n = 25
    x0 = np.full(n, 3.0)
    lower = np.array([1.0 if i % 2 == 0 else -100.0 for i in range(n)])
    upper = np.full(n, 100.0)
    solve("driver1_n25", "driver1", driver1, x0, lower, upper)

    n = 50
    rng = np.random.default_rng(20131221)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.logspace(0.0, 2.0, n)
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)
    b = 10.0 * rng.standard_normal(n)
    lower = np.full(n, -1.0)
    upper = np.full(n, 1.0)
    x0 = np.zeros(n)
    solve(
        "quadratic_n50",
        "quadratic",
        quadratic(a, b),
        x0,
        lower,
        upper,
        extra={"a": a.tolist(), "b": b.tolist(), "seed": 20131221},
    )


if __name__ == "__main__":
    main()
