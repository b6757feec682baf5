"""Timing on a noisy machine: alternate the functions compared, keep the best run."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from lossjax._loss import get


def run_times(fn, *args, repeats=20):
    """Seconds of ``repeats`` calls of fn(*args) after one warm-up call (compilation),
    waiting for device results."""
    return paired_best([fn], args, repeats, reduce=None)[0]


def paired_best(fns, args, repeats, reduce=min):
    """Times of each of ``fns`` over ``repeats`` rounds in which they run one after the other
    on ``args`` (after one warm-up call each), so that a slow spell of a shared machine hits
    them alike. ``reduce`` (default ``min``, the reproducible figure) turns each function's
    list of seconds into one number; None keeps the lists."""
    jax.block_until_ready([fn(*args) for fn in fns])
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            out.append(time.perf_counter() - start)
    return [reduce(t) for t in times] if reduce is not None else times


def _inputs(key, big):
    """(family, loss name, args, kwargs) at a size where time is measurable."""
    k = jax.random.split(key, 8)
    n = 1 << (20 if big else 17)
    x = jax.random.normal(k[0], (n,))
    t = jax.random.normal(k[1], (n,))
    bits = jax.random.bernoulli(k[2], 0.5, (n,)).astype(jnp.float32)
    rows, classes = (4096, 1000) if big else (1024, 1000)
    logits = jax.random.normal(k[3], (rows, classes))
    labels = jax.random.randint(k[4], (rows,), 0, classes)
    emb = jax.random.normal(k[5], (1024 if big else 256, 64))
    emb_labels = jax.random.randint(k[6], (emb.shape[0],), 0, 16)
    masks = jax.random.uniform(k[7], (32, 128, 128)) > 0.9
    seq = jax.random.normal(k[3], (256, 64, 32))
    seq_labels = jax.random.randint(k[4], (256, 64), 0, 32)
    return [
        ("regression", "huber", (x, t), {}),
        ("regression", "log_cosh", (x, t), {}),
        ("classification", "binary_cross_entropy_with_logits", (x, bits), {}),
        ("classification", "cross_entropy", (logits, labels), {}),
        ("classification", "focal_loss", (x, bits), {}),
        ("metric", "mined_triplet", (emb, emb_labels), {}),
        ("segmentation", "dice", (jax.random.normal(k[0], masks.shape),
                                  masks.astype(jnp.float32)), {"activation": "sigmoid"}),
        ("sequence", "soft_hamming", (seq, seq_labels), {}),
        ("robust", "adaptive_robust", (x, t), {"alpha": 0.5}),
        ("adversarial", "nonsaturating_generator", (x,), {}),
    ]


def analytic_speed(key, big, repeats):
    """[family, loss, size, autodiff ms, analytic ms, ratio, max relative gradient difference]
    for one representative loss per family: training through ``with_analytic_vjp()`` against
    autodiff (the lab's analytic_vs_autodiff experiment and benchmarks/bench_losses.py)."""
    rows = []
    for family, name, args, kwargs in _inputs(key, big):
        loss = get(name)
        auto = jax.jit(jax.value_and_grad(lambda *a: loss(*a, **kwargs)))
        fast = loss.with_analytic_vjp()
        analytic = jax.jit(jax.value_and_grad(lambda *a: fast(*a, **kwargs)))
        (_, ga), (_, gb) = auto(*args), analytic(*args)
        agree = float(jnp.max(jnp.abs(ga - gb)) / (jnp.max(jnp.abs(ga)) + 1e-30))
        t_auto, t_analytic = paired_best([auto, analytic], args, repeats)
        size = "×".join(str(d) for d in args[0].shape)
        rows.append([family, name, size, 1e3 * t_auto, 1e3 * t_analytic, t_analytic / t_auto,
                     agree])
    return rows
