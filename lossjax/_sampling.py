"""Building blocks for the catalogue's samplers: seeded, dtype-aware, exact where it matters.

Edge samples use dyadic numbers (multiples of powers of two) so that a residual placed
exactly on a kink stays exactly there in every dtype, float16 included.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._loss import Sample

GENERIC_SHAPE = (6, 5)


def big(dtype) -> float:
    """A large but safe magnitude for ``dtype``: its square still fits comfortably."""
    return {16: 64.0}.get(jnp.finfo(dtype).bits, 4096.0) if dtype != jnp.bfloat16 else 1024.0


def saturating(dtype) -> float:
    """A logit at which sigmoid/softmax saturate completely in ``dtype``."""
    return 1e4 if jnp.finfo(dtype).bits >= 32 or dtype == jnp.bfloat16 else 1e4 / 2


def normal(key, shape, dtype, scale=1.0):
    return (scale * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


def uniform(key, shape, dtype, lo=0.0, hi=1.0):
    return jax.random.uniform(key, shape, jnp.float32, lo, hi).astype(dtype)


def residual_edge(key, dtype, residuals):
    """(predictions, targets) with ``predictions - targets`` exactly equal to ``residuals``."""
    residuals = np.asarray(residuals, np.float64)
    targets = np.asarray(jax.random.randint(key, residuals.shape, -4, 5), np.float64) / 4
    return jnp.asarray(targets + residuals, dtype), jnp.asarray(targets, dtype)


def class_labels(key, shape, num_classes):
    return jax.random.randint(key, shape, 0, num_classes, dtype=jnp.int32)


def signs(key, shape, dtype):
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(dtype)


def hyper(values, dtype) -> dict:
    """Sample keyword arguments: NumPy arrays (kept NumPy at import time so that importing
    lossjax never starts a JAX backend) become arrays of ``dtype``."""
    return {k: jnp.asarray(v, dtype) if isinstance(v, np.ndarray) else v
            for k, v in (values or {}).items()}


# -- perfect predictions (Loss.perfect): arguments at which a loss is exactly 0 ---------------

def exact_fit(sample):
    """The sample with the predictions (first argument) replaced by the targets (second)."""
    p, t, *rest = sample.args
    return Sample((t.astype(p.dtype), t, *rest), sample.kwargs)


def saturated_one_hot(labels, num_classes, dtype):
    """Logits whose softmax is exactly one-hot at ``labels`` (rows of an ignored or
    out-of-range label are all 0)."""
    return (saturating(dtype) * jax.nn.one_hot(labels, num_classes)).astype(dtype)


def saturated_signs(hard, dtype):
    """Logits whose sigmoid is exactly 1 where ``hard`` and exactly 0 elsewhere."""
    return jnp.where(hard, saturating(dtype), -saturating(dtype)).astype(dtype)
