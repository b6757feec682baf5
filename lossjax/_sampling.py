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


def host_rng(key) -> np.random.Generator:
    """A NumPy generator seeded by a JAX PRNG key. Samples are drawn on the host: the same key
    gives the same sample, and no random-number program is compiled per shape (drawing the
    whole catalogue's samples on the device cost 14 s of compilation on 2 CPU cores)."""
    data = np.asarray(jax.random.key_data(key)).ravel()
    return np.random.default_rng([int(v) for v in data])


def _device(x, dtype):
    return jnp.asarray(np.asarray(x, np.dtype(dtype)))


def normal(key, shape, dtype, scale=1.0):
    """Normal draws of standard deviation ``scale``, rounded to float32, in ``dtype``."""
    return _device((scale * host_rng(key).standard_normal(shape)).astype(np.float32), dtype)


def uniform(key, shape, dtype, lo=0.0, hi=1.0):
    return _device(host_rng(key).uniform(lo, hi, shape).astype(np.float32), dtype)


def integers(key, shape, lo, hi):
    """Integers in [lo, hi), int32."""
    return _device(host_rng(key).integers(lo, hi, shape), np.int32)


def bernoulli(key, p, shape, dtype=bool):
    return _device(host_rng(key).random(shape) < p, dtype)


def poisson(key, lam, shape, dtype):
    return _device(host_rng(key).poisson(lam, shape), dtype)


def residual_edge(key, dtype, residuals):
    """(predictions, targets) with ``predictions - targets`` exactly equal to ``residuals``."""
    residuals = np.asarray(residuals, np.float64)
    targets = host_rng(key).integers(-4, 5, residuals.shape).astype(np.float64) / 4
    return _device(targets + residuals, dtype), _device(targets, dtype)


def class_labels(key, shape, num_classes):
    return integers(key, shape, 0, num_classes)


def signs(key, shape, dtype):
    return _device(np.where(host_rng(key).random(shape) < 0.5, 1.0, -1.0), dtype)


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
