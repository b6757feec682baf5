"""Reductions, per-element weights and masks: the one implementation every loss uses.

A loss produces one value per *element* (per entry for elementwise losses such as mse, per
example for losses over a class axis such as cross_entropy). This module turns those values
into the reported result:

- ``reduction="none"``: ``where(mask, w * l, 0)`` with the elements' shape;
- ``reduction="sum"``:  ``sum(mask * w * l)``;
- ``reduction="mean"``: ``sum(mask * w * s * l) / sum(mask * w * n)``, the weighted mean. ``n``
  is a per-element normaliser a loss may add (class-weighted cross-entropy divides by the sum
  of the weights of the targets' classes, as PyTorch does), ``s`` a per-element scale of the
  mean only (CTC divides each sequence's loss by its target length, as PyTorch does); both
  are 1 otherwise.

A fully masked batch (or all weights zero) gives 0 with a zero gradient, never NaN. Masked
elements contribute exactly zero to the value and to the gradient as long as the loss is
finite there (a masked NaN still poisons the gradient through 0 * NaN).
"""
from __future__ import annotations

import jax.numpy as jnp

from lossjax import _checks

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(loss: str, reduction) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{loss}: `reduction` must be one of {', '.join(map(repr, REDUCTIONS))}, "
            f"got {reduction!r}.")


def prepare(loss: str, shape, dtype, weights=None, where=None, mask=None):
    """Validated weights and mask, broadcast to the elements' shape.

    ``mask`` is the loss's own mask (ignored labels); ``where`` the caller's.
    Returns ``(weights or None, mask or None)``.
    """
    if weights is not None:
        weights = jnp.asarray(weights)
        if not (jnp.issubdtype(weights.dtype, jnp.floating)
                or jnp.issubdtype(weights.dtype, jnp.integer)):
            raise TypeError(f"{loss}: `weights` must be numeric, got {_checks.describe(weights)}.")
        _checks.broadcastable_to(loss, "weights", weights, shape, "the loss elements' shape")
        weights = jnp.broadcast_to(weights.astype(dtype), shape)
    if where is not None:
        where = jnp.asarray(where)
        if where.dtype != jnp.bool_:
            raise TypeError(
                f"{loss}: `where` must be a boolean mask, got {_checks.describe(where)}.")
        _checks.broadcastable_to(loss, "where", where, shape, "the loss elements' shape")
        where = jnp.broadcast_to(where, shape)
    if mask is not None:
        where = mask if where is None else where & mask
    return weights, where


def reduce(values, reduction="mean", weights=None, where=None, normalizer=None,
           mean_scale=None):
    """Reduce per-element ``values``; ``weights``/``where``/``normalizer``/``mean_scale`` as
    described above."""
    check_reduction("reduce", reduction)
    if reduction == "mean" and mean_scale is not None:
        values = values * mean_scale
    weighted = values if weights is None else weights * values
    if where is not None:
        weighted = jnp.where(where, weighted, jnp.zeros((), values.dtype))
    if reduction == "none":
        return weighted
    total = jnp.sum(weighted)
    if reduction == "sum":
        return total
    return total / _denominator(values, weights, where, normalizer)


def coefficients(values, reduction="mean", weights=None, where=None, normalizer=None,
                 cotangent=None, mean_scale=None):
    """d(reduced)/d(values) contracted with ``cotangent``: the vector-Jacobian product of
    the reduction, shaped like ``values``. ``cotangent`` defaults to ones (the gradient of
    the reduced value; for ``reduction="none"`` the gradient of its sum)."""
    if cotangent is None:
        cotangent = jnp.ones((), values.dtype)
    coef = jnp.broadcast_to(jnp.asarray(cotangent, values.dtype), values.shape)
    if weights is not None:
        coef = coef * weights
    if where is not None:
        coef = jnp.where(where, coef, jnp.zeros((), values.dtype))
    if reduction == "mean":
        coef = coef / _denominator(values, weights, where, normalizer)
        if mean_scale is not None:
            coef = coef * mean_scale
    return coef


def count(values, weights=None, where=None, normalizer=None):
    """The mean's denominator before the empty-selection guard: sum(mask * w * n)."""
    n = jnp.ones(values.shape, values.dtype)
    if normalizer is not None:
        n = n * normalizer
    if weights is not None:
        n = n * weights
    if where is not None:
        n = jnp.where(where, n, jnp.zeros((), values.dtype))
    return jnp.sum(n)


def _denominator(values, weights, where, normalizer):
    den = count(values, weights, where, normalizer)
    # An empty selection has mean 0: dividing 0 by 1 keeps value and gradient finite.
    return jnp.where(den == 0, jnp.ones((), values.dtype), den)
