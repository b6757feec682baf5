"""Trace-time argument checks shared by every loss.

Every message names the loss, the argument, what it got (dtype and shape) and what was
expected, so that a mistake is found where it is made rather than as a wrong number later.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def describe(x) -> str:
    """`float32[8,3]`-style summary of an array-like."""
    x = jnp.asarray(x) if not hasattr(x, "dtype") else x
    return f"{x.dtype}[{','.join(str(d) for d in x.shape)}]"


def floating(loss: str, name: str, x):
    """`x` as a floating-point array; integers and booleans are a mistake, not data."""
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{loss}: `{name}` must be a floating-point array, got {describe(arr)}. "
            f"Cast it with .astype(jnp.float32) if the integer values are meant as numbers.")
    return arr


def integer_labels(loss: str, name: str, x):
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(
            f"{loss}: `{name}` must hold integer class indices, got {describe(arr)}.")
    return arr


def same_shape(loss: str, name_a: str, a, name_b: str, b) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{loss}: `{name_b}` has shape {tuple(b.shape)} but `{name_a}` has shape "
            f"{tuple(a.shape)}; they must match exactly (lossjax never broadcasts (N,) against "
            f"(N, 1) silently). Reshape one of them.")


def broadcastable_to(loss: str, name: str, x, shape, what: str) -> None:
    """`x` must broadcast to `shape` without changing it (trailing-aligned, NumPy rules)."""
    try:
        ok = np.broadcast_shapes(tuple(x.shape), tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{loss}: `{name}` has shape {tuple(x.shape)}, which does not broadcast to {what} "
            f"{tuple(shape)}.")


def _concrete(value):
    """The value as a NumPy array, or None when it is traced (unknown until run time)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def in_range(loss: str, name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False):
    """Check a hyperparameter's range when its value is known at trace time.

    Traced values (under vmap or jit arguments) cannot be seen here; they are used as given.
    """
    v = _concrete(value)
    if v is None:
        return value
    bad = np.zeros(v.shape, bool)
    if lo is not None:
        bad |= (v <= lo) if lo_open else (v < lo)
    if hi is not None:
        bad |= (v >= hi) if hi_open else (v > hi)
    bad |= np.isnan(v) if np.issubdtype(v.dtype, np.floating) else False
    if bad.any():
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ValueError(f"{loss}: `{name}` must lie in {interval}, got {v.tolist()}.")
    return value


def class_axis(loss: str, name: str, x, axis: int) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{loss}: `axis` must be a Python int, got {axis!r}.")
    if not -x.ndim <= axis < x.ndim or x.ndim == 0:
        raise ValueError(
            f"{loss}: `axis`={axis} is out of range for `{name}` of shape {tuple(x.shape)}.")
    return int(axis) % x.ndim


def targets_shaped_like(loss: str, labels, scores_name: str, scores,
                        read_as: str = "probability targets") -> None:
    """Floating ``labels`` are read as per-class targets: they must have the scores' shape."""
    if labels.shape != scores.shape:
        raise TypeError(
            f"{loss}: `labels` are floating ({describe(labels)}), so they are read as "
            f"{read_as}, which must have the {scores_name}' shape {tuple(scores.shape)}. "
            f"For class indices pass an integer array.")
