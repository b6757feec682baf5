"""Loss speed, side by side in one process (best of N runs after warm-up — the machine is
shared and noisy, the minimum is the reproducible figure —, float32, value + gradient w.r.t.
the predictions, jitted).

1. lossjax vs optax on identical inputs for every loss both have with the same definition
   (goal: ≤ 1.05× optax), and vs torch.nn.functional on the CPU when PyTorch is installed
   (optional). Not compared: ntxent and dice, whose optax versions define a different loss
   (labels-based NT-Xent over one embedding set; multi-class Dice with softmax by default).
2. Elementwise losses at 16M elements as a fraction of the machine's memory-copy bandwidth,
   counting the bytes value+grad must move at least: read predictions and targets, write the
   gradient (goal ≥ 70%). Two references: NumPy's copy into a preallocated buffer (the
   hardware's streaming bandwidth) and a jitted JAX copy (which, like every JAX function,
   writes a freshly allocated output).
3. The hand-derived VJP (with_analytic_vjp) vs autodiff, one loss per family.
4. jit compile time of value+grad per catalogue loss.

    python benchmarks/bench_losses.py [--repeats 20] [--json PATH]
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
from lossjax.lab import analytic_speed, paired_best, run_times


def _inputs(n=1 << 20, rows=4096, classes=1000, dim=128):
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    x = jax.random.normal(k[0], (n,))
    t = jax.random.normal(k[1], (n,))
    bits = jax.random.bernoulli(k[2], 0.5, (n,)).astype(jnp.float32)
    signs = 2 * bits - 1
    logits = jax.random.normal(k[3], (rows, classes))
    labels = jax.random.randint(k[4], (rows,), 0, classes)
    probs = jax.nn.softmax(jax.random.normal(k[5], (rows, classes)))
    a, p, q = (jax.random.normal(kk, (rows, dim)) for kk in jax.random.split(k[5], 3))
    ctc_logits = jax.random.normal(k[0], (64, 100, 32))
    ctc_labels = jax.random.randint(k[1], (64, 20), 1, 32)
    return dict(x=x, t=t, bits=bits, signs=signs, logits=logits, labels=labels, probs=probs,
                a=a, p=p, q=q, ctc_logits=ctc_logits, ctc_labels=ctc_labels)


def pairs(d):
    """(name, lossjax fn, optax fn, torch fn or None, args): fn(*args) -> scalar mean loss."""
    import importlib.util
    torch_ok = importlib.util.find_spec("torch") is not None
    F = None
    if torch_ok:
        import torch.nn.functional as F                      # noqa: N812
    m = jnp.mean
    lsm = jax.nn.log_softmax(d["logits"])
    return [
        ("mse", lambda p, t: lj.mse(p, t), lambda p, t: m(optax.losses.squared_error(p, t)),
         F and (lambda p, t: F.mse_loss(p, t)), ("x", "t")),
        ("huber", lambda p, t: lj.huber(p, t), lambda p, t: m(optax.losses.huber_loss(p, t)),
         F and (lambda p, t: F.huber_loss(p, t)), ("x", "t")),
        ("log_cosh", lambda p, t: lj.log_cosh(p, t), lambda p, t: m(optax.losses.log_cosh(p, t)),
         None, ("x", "t")),
        ("binary_cross_entropy_with_logits",
         lambda z, y: lj.binary_cross_entropy_with_logits(z, y),
         lambda z, y: m(optax.losses.sigmoid_binary_cross_entropy(z, y)),
         F and (lambda z, y: F.binary_cross_entropy_with_logits(z, y)), ("x", "bits")),
        ("focal_loss", lambda z, y: lj.focal_loss(z, y, gamma=2.0),
         lambda z, y: m(optax.losses.sigmoid_focal_loss(z, y, gamma=2.0)), None, ("x", "bits")),
        ("hinge", lambda s, y: lj.hinge(s, y), lambda s, y: m(optax.losses.hinge_loss(s, y)),
         None, ("x", "signs")),
        ("cross_entropy", lambda z, y: lj.cross_entropy(z, y),
         lambda z, y: m(optax.losses.softmax_cross_entropy_with_integer_labels(z, y)),
         F and (lambda z, y: F.cross_entropy(z, y)), ("logits", "labels")),
        ("cross_entropy (probability targets)", lambda z, t: lj.cross_entropy(z, t),
         lambda z, t: m(optax.losses.softmax_cross_entropy(z, t)),
         F and (lambda z, t: F.cross_entropy(z, t)), ("logits", "probs")),
        ("ctc", lambda z, y: lj.ctc(z, y),
         lambda z, y: m(optax.losses.ctc_loss(z, jnp.zeros(z.shape[:2]), y,
                                              jnp.zeros(y.shape))), None,
         ("ctc_logits", "ctc_labels")),
        ("kl_divergence", lambda q, t: lj.kl_divergence(q, t),
         lambda q, t: m(optax.losses.kl_divergence(q, t)),
         F and (lambda q, t: F.kl_div(q, t, reduction="batchmean")), ("lsm", "probs")),
        ("triplet_margin", lambda a, p, q: lj.triplet_margin(a, p, q),
         lambda a, p, q: m(optax.losses.triplet_margin_loss(a, p, q)),
         F and (lambda a, p, q: F.triplet_margin_loss(a, p, q)), ("a", "p", "q")),
    ], {**d, "lsm": lsm}


def _torch_time(fn, args, repeats):
    import torch
    tensors = [torch.from_numpy(np.array(a)) for a in args]          # writable copies
    tensors = [x.long() if x.dtype == torch.int32 else x for x in tensors]
    tensors[0].requires_grad_(True)

    def step():
        tensors[0].grad = None
        out = fn(*tensors)
        out.backward()
        return out
    return min(run_times(step, repeats=repeats))


def optax_table(repeats):
    rows = []
    plist, d = pairs(_inputs())
    for name, ours, theirs, torch_fn, keys in plist:
        args = [d[k] for k in keys]
        vg_ours = jax.jit(jax.value_and_grad(ours))
        vg_theirs = jax.jit(jax.value_and_grad(theirs))
        (v1, g1), (v2, g2) = vg_ours(*args), vg_theirs(*args)
        agree = float(jnp.max(jnp.abs(g1 - g2)) / (jnp.max(jnp.abs(g2)) + 1e-30))
        t_ours, t_theirs = paired_best([vg_ours, vg_theirs], args, 5 * repeats)
        t_torch = _torch_time(torch_fn, args, repeats) if torch_fn else None
        rows.append({"loss": name, "shape": "×".join(map(str, args[0].shape)),
                     "lossjax_ms": 1e3 * t_ours, "optax_ms": 1e3 * t_theirs,
                     "ratio_vs_optax": t_ours / t_theirs,
                     "torch_ms": None if t_torch is None else 1e3 * t_torch,
                     "value_difference": abs(float(v1) - float(v2)),
                     "gradient_difference": agree})
    return rows


def bandwidth_table(repeats, n=1 << 24):
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k1, (n,))
    t = jax.random.normal(k2, (n,))
    copy = jax.jit(lambda a: a * 2.0 + 1.0)                 # read n, write n floats
    jax_bandwidth = 2 * 4 * n / min(run_times(copy, x, repeats=repeats))
    src = np.asarray(x)
    dst = np.empty_like(src)
    bandwidth = 2 * 4 * n / min(run_times(lambda: np.copyto(dst, src), repeats=repeats))
    rows = []
    cases = [("mse", lj.mse, lambda p, q: jnp.mean(optax.losses.squared_error(p, q))),
             ("mae", lj.mae, None),
             ("huber", lj.huber, lambda p, q: jnp.mean(optax.losses.huber_loss(p, q))),
             ("log_cosh", lj.log_cosh, lambda p, q: jnp.mean(optax.losses.log_cosh(p, q))),
             ("binary_cross_entropy_with_logits", lj.binary_cross_entropy_with_logits, None)]
    target = {"binary_cross_entropy_with_logits": jnp.clip(t, 0, 1)}
    for name, loss, reference in cases:
        tt = target.get(name, t)
        variants = [("lossjax autodiff", loss), ("lossjax with_analytic_vjp",
                                                 loss.with_analytic_vjp())]
        if reference is not None:
            variants.append(("optax", reference))
        for label, f in variants:
            vg = jax.jit(jax.value_and_grad(lambda p, f=f: f(p, tt)))
            seconds = min(run_times(vg, x, repeats=repeats))
            rows.append({"loss": name, "variant": label, "ms": 1e3 * seconds,
                         "GBps": 3 * 4 * n / seconds / 1e9,
                         "fraction_of_copy_bandwidth": 3 * 4 * n / seconds / bandwidth,
                         "fraction_of_jax_copy": 3 * 4 * n / seconds / jax_bandwidth})
    return {"elements": n, "copy_bandwidth_GBps": bandwidth / 1e9,
            "jax_copy_bandwidth_GBps": jax_bandwidth / 1e9, "rows": rows}


def compile_table():
    rows = []
    for loss in lj.catalog():
        args, kwargs = loss.sample(jax.random.PRNGKey(0), jnp.float32)
        p, rest = args[0], args[1:]
        f = jax.jit(jax.value_and_grad(lambda q: loss(q, *rest, **kwargs)))
        start = time.perf_counter()
        f.lower(p).compile()
        rows.append({"loss": loss.name, "compile_s": time.perf_counter() - start})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"backend": jax.default_backend(), "device": str(jax.devices()[0])}

    print("## lossjax vs optax (and torch.nn.functional), value + gradient, float32\n")
    results["optax"] = rows = optax_table(args.repeats)
    print("| loss | shape | lossjax ms | optax ms | lossjax / optax | torch ms | "
          "gradient difference (relative) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        torch_ms = f"{r['torch_ms']:.3g}" if r["torch_ms"] is not None else "—"
        print(f"| {r['loss']} | {r['shape']} | {r['lossjax_ms']:.3g} | {r['optax_ms']:.3g} | "
              f"{r['ratio_vs_optax']:.2f} | {torch_ms} | {r['gradient_difference']:.1e} |")

    results["bandwidth"] = bw = bandwidth_table(args.repeats)
    print(f"\n## Elementwise losses at {bw['elements']:,} elements: bytes moved (read "
          f"predictions and targets, write the gradient) per second, against NumPy's copy into a "
          f"preallocated buffer ({bw['copy_bandwidth_GBps']:.1f} GB/s) and a jitted JAX copy "
          f"({bw['jax_copy_bandwidth_GBps']:.1f} GB/s)\n")
    print("| loss | variant | ms | GB/s | of NumPy copy | of JAX copy |")
    print("|---|---|---|---|---|---|")
    for r in bw["rows"]:
        print(f"| {r['loss']} | {r['variant']} | {r['ms']:.2f} | {r['GBps']:.1f} | "
              f"{100 * r['fraction_of_copy_bandwidth']:.0f}% | "
              f"{100 * r['fraction_of_jax_copy']:.0f}% |")

    print("\n## with_analytic_vjp() vs autodiff, one loss per family\n")
    results["analytic"] = speed = analytic_speed(jax.random.PRNGKey(0), big=True,
                                             repeats=args.repeats)
    print("| family | loss | size | autodiff ms | analytic ms | ratio |")
    print("|---|---|---|---|---|---|")
    for r in speed:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3g} | {r[4]:.3g} | {r[5]:.2f} |")

    print("\n## jit compile time of value + gradient, per loss (catalogue samples)\n")
    results["compile"] = comp = compile_table()
    times = [r["compile_s"] for r in comp]
    print(f"median {statistics.median(times):.3f} s, max {max(times):.3f} s "
          f"({max(comp, key=lambda r: r['compile_s'])['loss']}), total {sum(times):.1f} s "
          f"for {len(comp)} losses\n")
    print("| loss | compile s |")
    print("|---|---|")
    for r in comp:
        print(f"| {r['loss']} | {r['compile_s']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
