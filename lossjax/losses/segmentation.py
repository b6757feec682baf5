"""Overlap losses for segmentation: Dice, Tversky, focal Tversky, Jaccard (soft IoU) and
generalised Dice (the Lovász losses are in :mod:`lossjax.losses.lovasz`).

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


def _focal_tversky_sample(key, dtype, kind):
    if kind == "generic":
        return _segmentation_sample(key, dtype, kind)
    # the edge rows of dice's sample, but no row with a perfect overlap (TI = 1, where the
    # derivative is unbounded for gamma < 1; tests/test_research_segmentation.py checks it):
    # a small foreground, an empty target under a faint prediction, exact 0/1 predictions
    # with one false positive, and an empty prediction of a foreground
    p = jnp.asarray([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2],
                     [0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype)
    t = jnp.asarray([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                     [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype)
    return Sample((p, t), {})


@loss(constraints=_SEGMENTATION_DOMAIN,
      nonnegative=True, perfect=_matching_masks,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell = \left(1 - \frac{\sum p t + s}{\sum p t + \alpha\sum p(1-t) + "
              r"\beta\sum(1-p)t + s}\right)^\gamma",
      sampler=_focal_tversky_sample,
      references=["Abraham & Khan, A Novel Focal Tversky Loss Function with Improved Attention "
                  "U-Net for Lesion Segmentation, ISBI 2019."])
def focal_tversky(predictions, targets, *, alpha=0.3, beta=0.7, gamma=0.75, activation=None,
                  class_axis=None, smooth=1.0):
    r"""Focal Tversky loss :math:`(1 - TI)^\gamma` per (example, class), TI the Tversky index
    of :func:`tversky` (``alpha`` weights false positives, ``beta`` false negatives).

    Exponent convention: ``gamma`` is the exponent itself. The paper writes
    :math:`(1 - TI)^{1/\gamma_{paper}}` and recommends :math:`\gamma_{paper} = 4/3`, i.e.
    ``gamma = 0.75`` here (the default); gamma < 1 raises the loss of well-segmented
    examples (TI near 1) relative to Tversky, gamma = 1 is :func:`tversky`. The paper's
    :math:`\alpha = 0.7` weights false negatives: that is ``beta = 0.7, alpha = 0.3`` here,
    the defaults.

    Args:
      predictions, targets, activation, class_axis, smooth: as for :func:`tversky` (see the
        module docstring).
      alpha, beta: >= 0, weights of false positives and false negatives.
      gamma: > 0, the exponent.

    Derivative: :math:`\gamma (1 - TI)^{\gamma - 1}` times Tversky's. At a perfect overlap
    (TI = 1, the loss's minimum 0) that factor is unbounded for gamma < 1: ``.grad`` and
    autodiff both return 0 there (the loss taken as :math:`\max(1 - TI, 0)^\gamma`); for
    gamma = 1 the factor is 1 and for gamma > 1 it is 0, the true values.
    """
    name = "focal_tversky"
    _checks.in_range(name, "alpha", alpha, lo=0)
    _checks.in_range(name, "beta", beta, lo=0)
    _checks.in_range(name, "gamma", gamma, lo=0, lo_open=True)

    def index(inter, pred_sum, target_sum):
        den = (1 - alpha - beta) * inter + alpha * pred_sum + beta * target_sum + smooth
        d, d_inter, d_pred = _ratio(inter + smooth, den, 1.0, 1 - alpha - beta, alpha)
        positive = d > 0
        safe = jnp.where(positive, d, 1.0)
        # at d <= 0 (a perfect overlap, or its rounding): d itself for gamma = 1, else 0
        linear = jnp.asarray(gamma == 1, d.dtype)
        value = jnp.where(positive, safe ** gamma, linear * d)
        slope = jnp.where(positive, gamma * safe ** (gamma - 1), linear)
        return value, slope * d_inter, slope * d_pred
    return _overlap_terms(name, predictions, targets, activation, class_axis, smooth, index)


_GENERALIZED_DICE_EPS = 1e-7    # optax's guard in the class weights 1 / (f^2 + eps)


def _generalized_dice_sample(key, dtype, kind):
    if kind == "generic":                     # logits and integer labels
        return Sample(_segmentation_sample(key, dtype, kind).args, {"activation": "softmax"})
    # probabilities (N=2, 4 pixels, C=3): exact 0/1 and halves; class 2 is absent from the
    # targets (its weight dominates) but predicted once; class 0 (background) ignored
    p = jnp.asarray([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
                     [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                      [0.25, 0.75, 0.0]]], dtype)
    t = jnp.asarray([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
                     [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0],
                      [0.0, 1.0, 0.0]]], dtype)
    return Sample((p, t), {"activation": None, "ignore_background": True})


@loss(constraints=_SEGMENTATION_DOMAIN,
      nonnegative=True, perfect=_matching_masks,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell_{nc} = w_c\left(1 - \frac{\sum p t + s}{\frac12(\sum p + \sum t) + s}"
              r"\right),\ w_c \propto \frac{1}{f_c^2 + 10^{-7}}",
      sampler=_generalized_dice_sample,
      references=["Sudre, Li, Vercauteren, Ourselin, Cardoso, Generalised Dice overlap as a "
                  "deep learning loss function for highly unbalanced segmentations, DLMIA 2017.",
                  "optax.losses.multiclass_generalized_dice_loss (optax 0.2.8)."])
def multiclass_generalized_dice(predictions, targets, *, activation="softmax", smooth=1.0,
                                ignore_background=False):
    r"""Generalised Dice with automatic class weights, as optax's
    ``multiclass_generalized_dice_loss``: per-class Dice losses weighted by the inverse
    squared class frequency.

    Class c's frequency :math:`f_c = \sum t` runs over the whole batch and the spatial axes;
    its weight :math:`w_c = C\,u_c / \sum_k u_k` with :math:`u_c = 1 / (f_c^2 + 10^{-7})`
    (weights of mean 1; a class absent from the batch dominates). Element (n, c) is
    :math:`w_c (1 - (I + s) / (\frac12 (P + T) + s))` (optax's Dice with alpha = beta = 1/2:
    ``smooth`` enters as s, not 2s as in :func:`dice`). The weights are constants of the
    targets: no gradient flows into them.

    Args:
      predictions: (N, *spatial, C), logits (``activation="softmax"``, the default, as optax's
        ``apply_softmax=True``; or ``"sigmoid"``) or probabilities (``activation=None``).
      targets: one-hot (or soft) masks shaped like the predictions, or integer labels
        (N, *spatial) with ``activation="softmax"``.
      smooth: >= 0, added to numerator and denominator.
      ignore_background: leave class 0 out of the mean (it still counts in the weights'
        normalisation, as in optax).

    The elements are the (example, class) pairs, shape (N, C); the default mean is optax's
    value. Sudre et al.'s own form is one ratio of weighted sums over the classes,
    :math:`1 - 2\sum_c w_c I_c / \sum_c w_c (P_c + T_c)`; optax's (and this) is a weighted
    mean of per-class Dice losses.
    """
    name = "multiclass_generalized_dice"

    def index(inter, pred_sum, target_sum):
        frequency = jnp.sum(target_sum, axis=0)
        inverse = 1 / (frequency ** 2 + _GENERALIZED_DICE_EPS)
        weight = inverse / jnp.sum(inverse) * inverse.shape[0]
        d, d_inter, d_pred = _ratio(inter + smooth, 0.5 * (pred_sum + target_sum) + smooth,
                                    1.0, 0.0, 0.5)
        return weight * d, weight * d_inter, weight * d_pred
    terms = _overlap_terms(name, predictions, targets, activation, -1, smooth, index)
    if ignore_background:
        not_background = jnp.arange(terms.value.shape[-1]) > 0
        return terms._replace(mask=jnp.broadcast_to(not_background, terms.value.shape))
    return terms
