"""Overlap losses for segmentation: Dice, Tversky and Jaccard (soft IoU).

Layout: predictions of shape (N, *spatial) for one foreground class, or (N, *spatial, C)
with ``class_axis=-1`` for several; targets of the same shape (masks, hard or soft), or, with
``activation="softmax"``, integer labels of shape (N, *spatial). Predictions are
probabilities (``activation=None``) or logits turned into probabilities by ``"sigmoid"`` or
``"softmax"`` (over the class axis). Everything is jittable (optax's dice loss with
apply_softmax=False is not).

The elements (what ``reduction``, ``weights`` and ``where`` act on) are the (example, class)
pairs, shape (N,) or (N, C): per-class weights are ``weights=w`` with w of shape (C,), and
the weighted mean is sum w l / sum w. Sums run over the spatial axes; ``smooth`` is added to
numerator and denominator, so an empty prediction of an empty target has loss 0 (with
smooth = 0 that 0/0 is also defined as 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Sample, Terms, loss

ACTIVATIONS = (None, "sigmoid", "softmax")


def _prepare(name, predictions, targets, activation, class_axis, smooth):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name}: `activation` must be None, 'sigmoid' or 'softmax', got "
                         f"{activation!r}.")
    if class_axis not in (None, -1):
        raise ValueError(f"{name}: `class_axis` must be None (one foreground class) or -1 "
                         f"(classes last), got {class_axis!r}.")
    if activation == "softmax" and class_axis is None:
        raise ValueError(f"{name}: activation='softmax' needs the classes on the last axis: "
                         f"pass class_axis=-1.")
    _checks.in_range(name, "smooth", smooth, lo=0)
    if predictions.ndim < 2 + (class_axis is not None):
        raise ValueError(f"{name}: `predictions` must have a batch axis and at least one "
                         f"spatial axis{' and a class axis' if class_axis is not None else ''}; "
                         f"got shape {tuple(predictions.shape)}.")
    t = jnp.asarray(targets)
    if jnp.issubdtype(t.dtype, jnp.integer):
        if activation != "softmax" or t.shape != predictions.shape[:-1]:
            raise TypeError(f"{name}: integer `targets` ({_checks.describe(t)}) are class labels: "
                            f"they need activation='softmax' and shape "
                            f"{tuple(predictions.shape[:-1])}; otherwise pass float masks shaped "
                            f"like the predictions {tuple(predictions.shape)}.")
        num_classes = predictions.shape[-1]
        t = jax.nn.one_hot(t, num_classes, dtype=predictions.dtype)   # out of range -> zeros
    else:
        t = _checks.floating(name, "targets", t)
        _checks.same_shape(name, "predictions", predictions, "targets", t)
        t = t.astype(predictions.dtype)
    if activation == "sigmoid":
        p = jax.nn.sigmoid(predictions)
    elif activation == "softmax":
        p = jax.nn.softmax(predictions, axis=-1)
    else:
        p = predictions
    last = predictions.ndim - (1 if class_axis is not None else 0)
    axes = tuple(range(1, last))
    return p, t, axes


def _overlap_terms(name, predictions, targets, activation, class_axis, smooth, index):
    """Terms for a loss l(I, P, T) of I = sum p t, P = sum p, T = sum t per element.

    ``index(I, P, T)`` returns (l, dl/dI, dl/dP); the per-pixel derivative is
    dl/dI t + dl/dP, then the activation's chain rule."""
    p, t, axes = _prepare(name, predictions, targets, activation, class_axis, smooth)
    inter, pred_sum, target_sum = (jnp.sum(p * t, axis=axes), jnp.sum(p, axis=axes),
                                   jnp.sum(t, axis=axes))
    value, d_inter, d_pred = index(inter, pred_sum, target_sum)

    def expand(a):
        return jnp.expand_dims(a, axes)

    def through_activation(g):          # vjp of the activation at g = dL/dp
        if activation == "sigmoid":
            return g * p * (1 - p)
        if activation == "softmax":
            return p * (g - jnp.sum(g * p, axis=-1, keepdims=True))
        return g

    def vjp(coef):
        return through_activation(expand(coef * d_inter) * t + expand(coef * d_pred))

    def jvp(tangent):
        if activation == "sigmoid":
            dp = tangent * p * (1 - p)
        elif activation == "softmax":
            dp = p * (tangent - jnp.sum(tangent * p, axis=-1, keepdims=True))
        else:
            dp = tangent
        return d_inter * jnp.sum(dp * t, axis=axes) + d_pred * jnp.sum(dp, axis=axes)

    return Terms(value, grad=None, vjp=vjp, jvp=jvp)


def _ratio(numerator, denominator, d_num_d_inter, d_den_d_inter, d_den_d_pred):
    """l = 1 - num/den and its derivatives in I and P; 0/0 (all empty, smooth 0) is l = 0."""
    empty = denominator == 0
    den = jnp.where(empty, 1.0, denominator)
    value = jnp.where(empty, 0.0, 1 - numerator / den)
    d_inter = jnp.where(empty, 0.0, -(d_num_d_inter * den - numerator * d_den_d_inter) / den ** 2)
    d_pred = jnp.where(empty, 0.0, numerator * d_den_d_pred / den ** 2)
    return value, d_inter, d_pred


def _segmentation_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        logits = _sampling.normal(k1, (2, 4, 4, 3), dtype, 2.0)
        labels = _sampling.class_labels(k2, (2, 4, 4), 3)
        return Sample((logits, labels), {"activation": "softmax", "class_axis": -1})
    # probabilities: a small foreground, an empty target with an empty prediction (loss 0),
    # exact 0/1 predictions, and a prediction where the target is empty
    p = jnp.asarray([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                     [0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype)
    t = jnp.asarray([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype)
    return Sample((p, t), {})


_MILLETARI = "Milletari, Navab, Ahmadi, V-Net, 3DV 2016 (soft Dice)."


def _matching_masks(s):
    """Predictions equal to the (one-hot) targets: saturated logits under softmax."""
    p, t = s.args
    if s.kwargs.get("activation") == "softmax":
        return Sample((_sampling.saturated_one_hot(t, p.shape[-1], p.dtype), t), s.kwargs)
    return _sampling.exact_fit(s)


_SEGMENTATION_DOMAIN = [
    _domain.unit_interval("predictions", when=lambda a: a["activation"] is None),
    _domain.class_index("targets", "predictions", axis=None, ignore=None),
    _domain.unit_interval("targets")]


@loss(constraints=_SEGMENTATION_DOMAIN,
      nonnegative=True, perfect=_matching_masks,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell = 1 - \frac{2\sum p t + s}{\sum p + \sum t + s}",
      sampler=_segmentation_sample, references=[_MILLETARI])
def dice(predictions, targets, *, activation=None, class_axis=None, smooth=1.0):
    r"""Soft Dice loss per (example, class): :math:`1 - (2I + s)/(P + T + s)` with
    :math:`I = \sum p t`, :math:`P = \sum p`, :math:`T = \sum t` over the spatial axes.

    Args: see the module docstring (``activation``, ``class_axis``, ``smooth``).
    Derivative w.r.t. a probability: :math:`-2t/(P+T+s) + (2I+s)/(P+T+s)^2`, then the
    activation's chain rule.
    """
    def index(inter, pred_sum, target_sum):
        return _ratio(2 * inter + smooth, pred_sum + target_sum + smooth, 2.0, 0.0, 1.0)
    return _overlap_terms("dice", predictions, targets, activation, class_axis, smooth, index)


@loss(constraints=_SEGMENTATION_DOMAIN,
      nonnegative=True, perfect=_matching_masks,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell = 1 - \frac{\sum p t + s}{\sum p t + \alpha\sum p(1-t) + \beta\sum(1-p)t + s}",
      sampler=_segmentation_sample,
      references=["Salehi, Erdogmus, Gholipour, Tversky loss function for image segmentation, "
                  "MLMI 2017."])
def tversky(predictions, targets, *, alpha=0.5, beta=0.5, activation=None, class_axis=None,
            smooth=1.0):
    r"""Tversky loss: Dice with false positives weighted by ``alpha`` and false negatives by
    ``beta`` (beta > alpha favours recall, useful for small foregrounds). alpha = beta = 1/2
    is Dice (up to where smooth enters), alpha = beta = 1 is Jaccard.

    Args: ``alpha, beta >= 0``; the rest as in the module docstring.
    """
    _checks.in_range("tversky", "alpha", alpha, lo=0)
    _checks.in_range("tversky", "beta", beta, lo=0)

    def index(inter, pred_sum, target_sum):
        den = (1 - alpha - beta) * inter + alpha * pred_sum + beta * target_sum + smooth
        return _ratio(inter + smooth, den, 1.0, 1 - alpha - beta, alpha)
    return _overlap_terms("tversky", predictions, targets, activation, class_axis, smooth,
                          index)


@loss(constraints=_SEGMENTATION_DOMAIN,
      nonnegative=True, perfect=_matching_masks,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell = 1 - \frac{\sum p t + s}{\sum p + \sum t - \sum p t + s}",
      sampler=_segmentation_sample,
      references=["Rahman & Wang, Optimizing Intersection-over-Union in Deep Neural Networks "
                  "for Image Segmentation, ISVC 2016."])
def jaccard(predictions, targets, *, activation=None, class_axis=None, smooth=1.0):
    r"""Soft Jaccard (IoU) loss :math:`1 - (I + s)/(P + T - I + s)`.

    Args: see the module docstring. Derivative w.r.t. a probability:
    :math:`-(U + I + s)t/U^2 + (I + s)/U^2` with :math:`U = P + T - I + s`.
    """
    def index(inter, pred_sum, target_sum):
        return _ratio(inter + smooth, pred_sum + target_sum - inter + smooth, 1.0, -1.0, 1.0)
    return _overlap_terms("jaccard", predictions, targets, activation, class_axis, smooth,
                          index)
