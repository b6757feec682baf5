"""Fused linear cross-entropy vs the dense computation, side by side.

For each (N, D, V): value and gradients w.r.t. hidden and weight of
  dense: lj.cross_entropy(hidden @ weight, labels)        (the N×V logits materialised)
  fused: lj.linear_cross_entropy(hidden, weight, labels)  (blocks, online logsumexp)
Each variant runs in its own subprocess so that its peak resident memory (ru_maxrss) is its
own; reported: the peak minus the resident size just before the first call (inputs already
created, JAX imported), and the median time of value+grad over repeats after a warm-up call.

    python benchmarks/bench_fused_ce.py [--sizes 8192,512,32768 4096,512,131072] [--json P]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant, n, d, v, repeats, dtype, block):
    import jax
    import jax.numpy as jnp
    import lossjax as lj
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    dt = jnp.dtype(dtype)
    hidden = jax.random.normal(k1, (n, d), dt)
    weight = (jax.random.normal(k2, (d, v), dt) / d ** 0.5).astype(dt)
    labels = jax.random.randint(k3, (n,), 0, v)
    if variant == "dense":
        f = lambda h, w: lj.cross_entropy(jnp.dot(h, w, preferred_element_type=jnp.float32),
                                          labels)
    else:
        kw = {} if block is None else {"token_block": block[0], "vocab_block": block[1]}
        f = lambda h, w: lj.linear_cross_entropy(h, w, labels, **kw)
    step = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    jax.block_until_ready((hidden, weight, labels))
    base = _rss_mb()
    start = time.perf_counter()
    out = jax.block_until_ready(step(hidden, weight))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(step(hidden, weight))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": variant, "seconds": statistics.median(times),
                      "first_call_seconds": first, "peak_mb": peak, "base_mb": base,
                      "added_mb": peak - base, "loss": float(out[0]),
                      "backend": jax.default_backend()}))


def run(variant, n, d, v, repeats, dtype, block=None):
    cmd = [sys.executable, __file__, "--child", variant, "--sizes", f"{n},{d},{v}",
           "--repeats", str(repeats), "--dtype", dtype]
    if block:
        cmd += ["--block", f"{block[0]},{block[1]}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["8192,512,32768", "4096,512,131072"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--block")
    p.add_argument("--child")
    p.add_argument("--json")
    a = p.parse_args()
    block = tuple(int(x) for x in a.block.split(",")) if a.block else None
    if a.child:
        n, d, v = (int(x) for x in a.sizes[0].split(","))
        child(a.child, n, d, v, a.repeats, a.dtype, block)
        return
    rows = []
    print("| N | D | V | dtype | dense s | fused s | time ratio | dense MB | fused MB | "
          "memory ratio | loss difference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes:
        n, d, v = (int(x) for x in size.split(","))
        dense = run("dense", n, d, v, a.repeats, a.dtype)
        fused = run("fused", n, d, v, a.repeats, a.dtype, block)
        row = {"N": n, "D": d, "V": v, "dtype": a.dtype, "dense": dense, "fused": fused,
               "time_ratio": fused["seconds"] / dense["seconds"],
               "memory_ratio": fused["added_mb"] / dense["added_mb"]}
        rows.append(row)
        print(f"| {n} | {d} | {v} | {a.dtype} | {dense['seconds']:.2f} | {fused['seconds']:.2f} "
              f"| {row['time_ratio']:.2f} | {dense['added_mb']:.0f} | {fused['added_mb']:.0f} | "
              f"{row['memory_ratio']:.3f} | {abs(dense['loss'] - fused['loss']):.1e} |",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
