"""What the value checks of eager calls cost: an eager loss call with checks on (the default)
against the same call with ``lj.eager_checks(False)``, in the same process, alternating
repeats; and the first call's extra compilation of a new shape. Under jit nothing is added
(tests/test_checked.py reads the jaxpr), so only eager calls pay.

    python benchmarks/bench_eager_checks.py [--repeats 7] [--json P]
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

import lossjax as lj

CASES = {
    "cross_entropy (64, 10)": (lj.cross_entropy, lambda k: (
        jax.random.normal(k, (64, 10)), jax.random.randint(k, (64,), 0, 10))),
    "cross_entropy (4096, 1000)": (lj.cross_entropy, lambda k: (
        jax.random.normal(k, (4096, 1000)), jax.random.randint(k, (4096,), 0, 1000))),
    "binary_cross_entropy (4096,)": (lj.binary_cross_entropy, lambda k: (
        jax.nn.sigmoid(jax.random.normal(k, (4096,))), jax.random.bernoulli(k, 0.5, (4096,))
        .astype(jnp.float32))),
    "mse (4096,)": (lj.mse, lambda k: (jax.random.normal(k, (4096,)),
                                      jax.random.normal(k, (4096,)))),
}


def per_call(loss, args, calls=200):
    loss(*args).block_until_ready()
    start = time.perf_counter()
    for _ in range(calls):
        loss(*args).block_until_ready()
    return (time.perf_counter() - start) / calls


def first_call(loss, args, on, extra):
    """The first call at a shape not seen yet (``extra`` more rows): compilation included."""
    lj.eager_checks(on)
    shaped = [jnp.concatenate([a, a[:extra]]) for a in args]
    start = time.perf_counter()
    loss(*shaped).block_until_ready()
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows = []
    for name, (loss, make) in CASES.items():
        inputs = make(jax.random.PRNGKey(0))
        on, off = [], []
        for _ in range(args.repeats):          # alternating: the machine's drift hits both
            lj.eager_checks(True)
            on.append(per_call(loss, inputs))
            lj.eager_checks(False)
            off.append(per_call(loss, inputs))
        lj.eager_checks(True)
        t_on, t_off = statistics.median(on), statistics.median(off)
        rows.append({"case": name, "checked_us": 1e6 * t_on, "unchecked_us": 1e6 * t_off,
                     "overhead_us": 1e6 * (t_on - t_off), "ratio": t_on / t_off,
                     "first_call_extra_ms": 1e3 * (first_call(loss, inputs, True, 1)
                                                   - first_call(loss, inputs, False, 2))})
    lj.eager_checks(True)
    print("| eager call | checks on (µs) | off (µs) | overhead (µs) | ratio | first call at a "
          "new shape: extra (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['checked_us']:.0f} | {r['unchecked_us']:.0f} | "
              f"{r['overhead_us']:.0f} | {r['ratio']:.2f}× | {r['first_call_extra_ms']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
