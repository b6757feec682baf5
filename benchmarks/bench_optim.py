"""Optimizers and training loops, side by side in one process.

1. The paper-written reference rules vs the optax transformations of lj.optim.make:
   lj.audit.check_update over 100 steps, float64.
2. Adam with L2 in the loss vs AdamW (decoupled decay), same λ: the measured gap.
3. Steps to a relative parameter error of 1e-6 on a quadratic (condition 10 and 100) and on
   L2-regularised logistic regression, for every optimizer.
4. Loop speed: lj.train.fit (one lax.scan) vs a Python loop over a jitted step; fit_many over
   64 learning rates vs 64 separate fits. Medians after warm-up.

    python benchmarks/bench_optim.py [--repeats 3] [--json PATH]
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lossjax as lj
from lossjax.optim import reference

jax.config.update("jax_enable_x64", True)


def median_time(fn, repeats):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def l2_vs_decoupled(steps=2000, lam=0.1, lr=0.01):
    """Least squares whose features differ in scale by 100×: Adam's 1/√v̂ rescales the L2
    gradient per weight, so weights with large gradients are decayed less; AdamW decays all
    weights at the same rate."""
    rng = np.random.default_rng(0)
    scale = np.array([100.0, 10.0, 1.0, 0.1])
    x = jnp.asarray(rng.normal(size=(256, 4)) * scale)
    y = x @ jnp.asarray(1.0 / scale) + 0.1 * jnp.asarray(rng.normal(size=256))
    data = {"x": x, "y": y}
    mse = lambda p, b: jnp.mean((b["x"] @ p - b["y"]) ** 2)
    p0 = jnp.zeros(4)
    adam_l2 = lj.train.fit(lambda p, b: mse(p, b) + 0.5 * lam * p @ p, p0, data,
                           lj.optim.make("adam", learning_rate=lr), steps)
    adamw = lj.train.fit(mse, p0, data,
                         lj.optim.make("adamw", learning_rate=lr, weight_decay=lam), steps)
    plain = lj.train.fit(mse, p0, data, lj.optim.make("adam", learning_rate=lr), steps)
    out = {}
    for label, r in [("adam + L2 in the loss", adam_l2), ("adamw (decoupled)", adamw),
                     ("adam, no decay", plain)]:
        out[label] = {"weights x feature scale": (np.asarray(r.params) * scale).tolist(),
                      "data loss": float(mse(r.params, data))}
    diff = np.asarray(adam_l2.params - adamw.params) * scale
    out["max |Δθ·scale| L2 vs decoupled"] = float(np.max(np.abs(diff)))
    return out


def _problems():
    out = {}
    for label, cond in [("quadratic, cond 10", 10.0), ("quadratic, cond 100", 100.0)]:
        rng = np.random.default_rng(1)
        q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
        a = jnp.asarray(q @ np.diag(np.logspace(0, np.log10(cond), 6)) @ q.T)
        theta = jnp.asarray(rng.normal(size=6))
        out[label] = (lambda p, a=a, t=theta: 0.5 * (p - t) @ a @ (p - t), None, jnp.zeros(6),
                      np.asarray(theta))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    y = (rng.uniform(size=80) < 1 / (1 + np.exp(-(x @ [1.5, -2.0, 0.5])))).astype(float)
    xb, w = np.hstack([x, np.ones((80, 1))]), np.zeros(4)
    reg = 0.1 * np.diag([1, 1, 1, 0.0])
    for _ in range(50):
        p = 1 / (1 + np.exp(-xb @ w))
        w -= np.linalg.solve(xb.T @ (xb * (p * (1 - p))[:, None]) / 80 + reg,
                             xb.T @ (p - y) / 80 + reg @ w)
    xbj = jnp.asarray(xb)
    out["logistic regression"] = (
        lambda p, b: lj.binary_cross_entropy_with_logits(b["x"] @ p, b["y"]) + 0.5 * 0.1 * (
            p[:3] @ p[:3]), {"x": xbj, "y": jnp.asarray(y)}, jnp.zeros(4), w)
    return out


# One setting per optimizer for every problem: step sizes stable on the condition-100
# quadratic (L = 100), otherwise untuned; constant steps (adaptive methods then hover).
SETTINGS = {"sgd": {"learning_rate": 0.015}, "momentum": {"learning_rate": 0.01},
            "nesterov": {"learning_rate": 0.01}, "adagrad": {"learning_rate": 0.5},
            "adadelta": {"learning_rate": 0.1}, "rmsprop": {"learning_rate": 0.01},
            "adam": {"learning_rate": 0.05}, "adamw": {"learning_rate": 0.05, "weight_decay": 0.0},
            "lbfgs": {}, "cg": {}}


def convergence_table(steps=3000, tol=1e-6):
    rows = []
    problems = _problems()
    for name, hp in SETTINGS.items():
        row = {"optimizer": name, "hparams": hp}
        for label, (f, data, p0, star) in problems.items():
            n_steps = 100 if name in ("lbfgs", "cg") else steps
            errs = _errors(f, data, p0, star, lj.optim.make(name, **hp), n_steps)
            below = np.nonzero(errs < tol)[0]
            row[label] = (int(below[0]) + 1 if below.size
                          else f"> {n_steps} (err {errs[-1]:.1e})")
        rows.append(row)
    return rows


def _errors(f, data, p0, star, tx, n_steps):
    """Relative parameter error after each step: lj.train.fit's loop, recording the error."""
    star = jnp.asarray(star)
    value_fn = f if data is None else (lambda q: f(q, data))

    @jax.jit
    def run():
        def body(carry, _):
            p, s = carry
            v, g = jax.value_and_grad(value_fn)(p)
            u, s = tx.update(g, s, p, value=v, grad=g, value_fn=value_fn)
            p = optax.apply_updates(p, u)
            return (p, s), jnp.linalg.norm(p - star) / jnp.linalg.norm(star)
        return jax.lax.scan(body, (p0, tx.init(p0)), None, length=n_steps)[1]
    return np.asarray(run())


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

    scan = median_time(lambda: lj.train.fit(loss, p0, data, tx, steps).params, repeats)
    loop = median_time(python_loop, repeats)
    lrs = jnp.logspace(-3, -1, 64)
    many = median_time(lambda: lj.train.fit_many(loss, p0, data, "momentum", steps,
                                                 hparams={"learning_rate": lrs}).params,
                       repeats)
    txs = [lj.optim.make("momentum", learning_rate=float(lr)) for lr in lrs]
    for t in txs:                                  # compile each once, outside the timing
        lj.train.fit(loss, p0, data, t, steps)
    separate = median_time(lambda: [lj.train.fit(loss, p0, data, t, steps).params
                                    for t in txs], repeats)
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

    print("\n## Adam + L2 in the loss vs AdamW, λ = 0.1, 2000 steps, features scaled "
          "100, 10, 1, 0.1\n")
    gap = results["l2_vs_decoupled"] = l2_vs_decoupled()
    print("| run | weight × feature scale (1 = unregularised fit) | data loss |")
    print("|---|---|---|")
    for label, r in gap.items():
        if isinstance(r, dict):
            w = ", ".join(f"{v:.3f}" for v in r["weights x feature scale"])
            print(f"| {label} | {w} | {r['data loss']:.4g} |")
    print(f"\nlargest difference between the two regularised fits (in units of the true "
          f"weight): {gap['max |Δθ·scale| L2 vs decoupled']:.3f}")

    print("\n## Steps to a relative parameter error of 1e-6 (float64)\n")
    results["convergence"] = rows = convergence_table()
    labels = [k for k in rows[0] if k not in ("optimizer", "hparams")]
    print("| optimizer | hyperparameters | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for r in rows:
        hp = ", ".join(f"{k}={v}" for k, v in r["hparams"].items()) or "defaults"
        print(f"| {r['optimizer']} | {hp} | " + " | ".join(str(r[k]) for k in labels) + " |")

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
