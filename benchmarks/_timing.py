"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""
import statistics
import time

import jax


def run_times(fn, *args, repeats=20):
    """Seconds of ``repeats`` calls of fn(*args) after one warm-up call (compilation),
    waiting for device results."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def median_time(fn, *args, repeats=20):
    return statistics.median(run_times(fn, *args, repeats=repeats))


def best_time(fn, *args, repeats=20):
    """The minimum: on a shared, noisy machine the reproducible figure."""
    return min(run_times(fn, *args, repeats=repeats))
