"""Optimizers and training loops, side by side in one process.

1. The paper-written reference rules vs the optax transformations of lj.optim.make:
   lj.audit.check_update over 100 steps, float64 (and Adam + L2 against AdamW: the gap).
2. Loop speed: lj.train.fit (one lax.scan) vs a Python loop over a jitted step; fit_many over
   64 learning rates vs 64 separate fits. Medians after warm-up.

Convergence of every optimizer and the troubleshooting claims are measured by the lab's
optimizers experiment (`lossjax lab optimizers`).

    python benchmarks/bench_optim.py [--repeats 3] [--json PATH]
"""
import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lossjax as lj
from lossjax.optim import reference
from lossjax.lab import run_times

jax.config.update("jax_enable_x64", True)


def _median_time(fn, *args, repeats=20):
    return statistics.median(run_times(fn, *args, repeats=repeats))


def reference_table():
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(3)}
    rows = []
    for rule, (_, name) in reference.RULES.items():
        a = reference.audit(rule, params, steps=100)
        target = f'make("{name}"' + (', weight_decay=1e-4)' if rule == "adam_l2" else ")")
        rows.append({"rule": rule, "optax": target, "ok": a.ok,
                     "worst_error_over_tolerance": max(a.per_step), "verdict": a.verdict})
    gap = lj.audit.check_update(reference.adam_l2(1e-3, weight_decay=1e-2),
                                lj.optim.make("adamw", learning_rate=1e-3, weight_decay=1e-2),
                                params, steps=3)
    rows.append({"rule": "adam_l2 (λ=1e-2)", "optax": 'make("adamw", weight_decay=1e-2)',
                 "ok": gap.ok, "worst_error_over_tolerance": max(gap.per_step),
                 "verdict": gap.verdict})
    return rows


def loop_speed(repeats):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 8)))
    y = x @ jnp.asarray(rng.normal(size=8))
    data = {"x": x, "y": y}
    loss = lambda p, b: jnp.mean((b["x"] @ p - b["y"]) ** 2)
    p0 = jnp.zeros(8)
    tx = lj.optim.make("momentum", learning_rate=0.01)
    steps = 1000

    @jax.jit
    def step(p, s):
        v, g = jax.value_and_grad(loss)(p, data)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, v

    def python_loop():
        p, s = p0, tx.init(p0)
        for _ in range(steps):
            p, s, v = step(p, s)
        return p

    scan = _median_time(lambda: lj.train.fit(loss, p0, data, tx, steps).params,
                       repeats=repeats)
    loop = _median_time(python_loop, repeats=repeats)
    lrs = jnp.logspace(-3, -1, 64)
    many = _median_time(lambda: lj.train.fit_many(loss, p0, data, "momentum", steps,
                                                 hparams={"learning_rate": lrs}).params,
                       repeats=repeats)
    txs = [lj.optim.make("momentum", learning_rate=float(lr)) for lr in lrs]
    for t in txs:                                  # compile each once, outside the timing
        lj.train.fit(loss, p0, data, t, steps)
    separate = _median_time(lambda: [lj.train.fit(loss, p0, data, t, steps).params
                                    for t in txs], repeats=repeats)
    return {"steps": steps, "fit (lax.scan) s": scan, "python loop of jitted step s": loop,
            "fit_many 64 learning rates s": many, "64 separate fits s (warm)": separate}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"backend": jax.default_backend(), "device": str(jax.devices()[0])}

    print("## Reference update rules vs optax (lj.audit.check_update, 100 steps, float64)\n")
    print("| rule | audited against | result | worst error / tolerance | verdict |")
    print("|---|---|---|---|---|")
    results["reference"] = reference_table()
    for r in results["reference"]:
        print(f"| {r['rule']} | `{r['optax']}` | {'PASS' if r['ok'] else 'FAIL'} | "
              f"{r['worst_error_over_tolerance']:.3g} | {r['verdict']} |")

    print("\n## Loop speed (momentum, 256×8 least squares, 1000 steps, warm, median)\n")
    speed = results["loop_speed"] = loop_speed(args.repeats)
    print("| loop | seconds | ratio |")
    print("|---|---|---|")
    print(f"| lj.train.fit (one lax.scan) | {speed['fit (lax.scan) s']:.4f} | 1 |")
    print(f"| Python loop over a jitted step | {speed['python loop of jitted step s']:.4f} | "
          f"{speed['python loop of jitted step s'] / speed['fit (lax.scan) s']:.1f}× |")
    print(f"| lj.train.fit_many, 64 learning rates | {speed['fit_many 64 learning rates s']:.4f}"
          f" | 1 |")
    print(f"| 64 separate fits (compiled) | {speed['64 separate fits s (warm)']:.4f} | "
          f"{speed['64 separate fits s (warm)'] / speed['fit_many 64 learning rates s']:.1f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
