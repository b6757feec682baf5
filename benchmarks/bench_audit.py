"""Audit speed, side by side in one process.

1. Exhaustive check of a 4096-input mean squared error in float64, warm, against
   torch.autograd.gradcheck in its slow (exhaustive) mode on the same function and data
   (skipped when PyTorch is not installed; it is optional). Goal: >= 10x faster.
2. The whole lj.audit.catalog() (every loss, float32 and float64, generic and edge samples,
   Hessian diagonals), compile included. Goal: < 60 s on 2 cores.

    python benchmarks/bench_audit.py [--repeats 9] [--json PATH] [--skip-catalog]
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax import audit
from lossjax.lab import paired_best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--json")
    parser.add_argument("--skip-catalog", action="store_true")
    args = parser.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    p_np, t_np = rng.standard_normal(n), rng.standard_normal(n)
    with audit._oracle.x64():
        p, t = jnp.asarray(p_np, jnp.float64), jnp.asarray(t_np, jnp.float64)

    def mse(a, b):
        return jnp.mean((a - b) ** 2)

    def mse_grad(a, b):
        return 2 * (a - b) / a.size

    results = {"n": n, "backend": jax.default_backend()}
    checkers = []
    for label, options in [("lossjax audit (default: Richardson + kinks, complex step where "
                            "needed)", {}),
                           ("lossjax audit, oracle='complex'", {"oracle": "complex"})]:
        def run(options=options):
            report = audit.check(mse, p, t, grad=mse_grad, **options)
            assert report.ok, report.verdict
        checkers.append((label, run))
    try:
        import torch
        pt = torch.tensor(p_np, dtype=torch.float64, requires_grad=True)
        tt = torch.tensor(t_np, dtype=torch.float64)

        def torch_slow():
            assert torch.autograd.gradcheck(lambda a: torch.mean((a - tt) ** 2), (pt,),
                                            fast_mode=False)
        checkers.append(("torch.autograd.gradcheck slow mode", torch_slow))
        results["torch_version"] = torch.__version__
    except ImportError:
        results["torch.autograd.gradcheck slow mode"] = None
    # every checker once per round, rounds alternating: a slow spell hits them alike
    times = paired_best([fn for _, fn in checkers], (), args.repeats, reduce=statistics.median)
    rows = [(label, seconds) for (label, _), seconds in zip(checkers, times)]
    results.update(rows)
    print(f"## Exhaustive gradient check, {n}-input MSE, float64, warm "
          f"(median of {args.repeats} alternating rounds)\n")
    print("| checker | seconds | speed-up vs gradcheck slow |")
    print("|---|---|---|")
    ref = results.get("torch.autograd.gradcheck slow mode")
    for label, seconds in rows:
        ratio = f"{ref / seconds:.1f}x" if ref else "—"
        print(f"| {label} | {seconds:.4f} | {ratio} |")

    if args.skip_catalog:
        _write(args.json, results)
        return
    jax.clear_caches()
    start = time.perf_counter()
    catalog_rows = audit.catalog()
    seconds = time.perf_counter() - start
    results["catalog_seconds"] = seconds
    results["catalog_audits"] = len(catalog_rows)
    results["catalog_failures"] = sum(not r.ok for r in catalog_rows)
    print(f"\n## lj.audit.catalog(): {len(catalog_rows)} audits of {len(lj.catalog())} losses "
          f"(float32 + float64, generic + edge, Hessian diagonals), compile included: "
          f"{seconds:.1f} s, {results['catalog_failures']} failures")
    _write(args.json, results)


def _write(path, results):
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
