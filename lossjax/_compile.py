"""Compiling fast where compiling costs more than running.

The audit's kernels, the catalogue's test programs and most of the lab run small arrays, for
which XLA's CPU compiler spends far longer optimising a program than the program then runs.
``fast_jit`` compiles such programs with LLVM's optimisation level 0 and XLA's classic loop
emitters on the CPU backend: measured on 2 cores, the audit's derivative programs of ntxent,
cross_entropy, dice and ctc compiled in 0.07-0.21 s instead of 0.24-0.93 s, and an
exhaustive 10^4-input check ran no slower. Other backends compile with their defaults.
"""
from __future__ import annotations

import functools
import os

import jax

CPU_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def classic_cpu_emitters():
    """Call before JAX starts a backend: the whole process compiles with XLA's classic CPU
    emitters (``--xla_cpu_use_fusion_emitters=false``), unless XLA_FLAGS already decides.
    The lab's quick programs are small; measured on 2 cores, the GAN and optimizer
    experiments took 37 and 38 s with the default emitters, 22 and 15 s with the classic ones,
    and no experiment ran slower. LLVM's optimisation level stays at its default (level 0
    made a training-heavy experiment 4x slower); other backends ignore the flag."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_fusion_emitters=false".strip()


def fast_jit(fun=None, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` whose CPU compilations use :data:`CPU_FAST_COMPILE`.
    Usable as a decorator, with or without keyword arguments."""
    if fun is None:
        return functools.partial(fast_jit, **jit_kwargs)
    cpu = jax.jit(fun, compiler_options=CPU_FAST_COMPILE, **jit_kwargs)
    other = jax.jit(fun, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return (cpu if jax.default_backend() == "cpu" else other)(*args, **kwargs)
    call.clear_cache = lambda: (cpu.clear_cache(), other.clear_cache())
    return call
