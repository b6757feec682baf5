"""PyTorch's margin losses that optax lacks: soft_margin, multilabel_soft_margin,
multilabel_margin, multi_margin (family "classification") and hinge_embedding (family
"metric"), with PyTorch's semantics (``torch.nn.functional.*_loss``) and argument names.

The multi-class and multi-label losses take scores with the classes along ``axis`` (default
-1, PyTorch's class dimension for these losses); their elements are the examples (the
scores' shape without the class axis), each the per-example value PyTorch returns with
``reduction="none"``. The mean over examples is PyTorch's ``reduction="mean"``.

Subgradients at hinges: ``.grad`` returns the midpoint of the one-sided derivatives (half the
active slope), the catalogue's convention, which autodiff of ``jnp.maximum`` also picks.
PyTorch's backward takes one side (multi_margin and multilabel_margin count a hinge exactly at
0 as inactive, hinge_embedding as active); away from the hinges the gradients are identical.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import hinge_slope, lookup
from lossjax.losses.classification import (
    _back, _class_weight, _hard_logits, _index_labels, _take)

__all__ = ["soft_margin", "multilabel_soft_margin", "multilabel_margin", "multi_margin",
           "hinge_embedding"]


def _signs(name, first_name, first, labels):
    """``labels`` in {-1, +1} (integers or floats) shaped like ``first``, in its dtype."""
    labels = jnp.asarray(labels)
    if labels.dtype == jnp.bool_ or not (jnp.issubdtype(labels.dtype, jnp.floating)
                                         or jnp.issubdtype(labels.dtype, jnp.signedinteger)):
        raise TypeError(f"{name}: `labels` must be numbers in {{-1, +1}}, got "
                        f"{_checks.describe(labels)}.")
    _checks.same_shape(name, first_name, first, "labels", labels)
    return labels.astype(first.dtype)


# -- soft margin (logistic loss on +-1 labels) -------------------------------------------------

def _soft_margin_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 2.0),
                       _sampling.signs(k2, _sampling.GENERIC_SHAPE, dtype)), {})
    s = _sampling.saturating(dtype)
    scores = [s, -s, s, -s, 0, 0, 30, -30, 2]
    labels = [1, 1, -1, -1, 1, -1, -1, 1, 1]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, dtype)), {})


def _saturated_on_labels(s):
    scores, labels = s.args
    return Sample((_sampling.saturated_signs(labels > 0, scores.dtype), labels), s.kwargs)


@loss(constraints=[_domain.signs("labels")],
      nonnegative=True, perfect=_saturated_on_labels, family="classification", elementwise=True,
      formula=r"\ell = \log(1 + e^{-y z}),\ y \in \{-1, +1\}",
      sampler=_soft_margin_sample,
      references=["PyTorch torch.nn.functional.soft_margin_loss."])
def soft_margin(scores, labels):
    r"""Soft margin loss :math:`\log(1 + e^{-yz})` (PyTorch ``F.soft_margin_loss``): the
    logistic loss on labels in {-1, +1}, a smooth hinge.

    Args:
      scores: real classifier outputs z, any shape.
      labels: -1 or +1 (integers or floats), same shape.

    Computed as :math:`\operatorname{softplus}(-yz)`, finite for any magnitude (PyTorch's
    value overflows to inf for :math:`yz \lesssim -89` in float32 and -710 in float64;
    elsewhere the two agree). Derivatives: :math:`-y\,\sigma(-yz)` and
    :math:`y^2\sigma(yz)\sigma(-yz)`. Equal to binary_cross_entropy_with_logits with
    targets :math:`(1 + y)/2`.

    References:
      PyTorch ``torch.nn.functional.soft_margin_loss``.
    """
    y = _signs("soft_margin", "scores", scores, labels)
    yz = y * scores
    return Terms(jax.nn.softplus(-yz), grad=lambda: -y * jax.nn.sigmoid(-yz),
                 hess=lambda: y * y * jax.nn.sigmoid(yz) * jax.nn.sigmoid(-yz))


# -- multi-label soft margin (per-class logistic loss, averaged over the classes) -------------

def _multilabel_soft_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        logits = _sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 3.0)
        targets = _sampling.bernoulli(k2, 0.4, _sampling.GENERIC_SHAPE, dtype)
        return Sample((logits, targets),
                      _sampling.hyper({"weight": np.linspace(0.5, 2.0, 5)}, dtype))
    s = _sampling.saturating(dtype)
    logits = [[s, -s, 0, 30], [s, s, -s, -s], [0, 0, 0, 0], [-s, 3, 2, -30]]
    targets = [[1, 0, 0.5, 0], [0, 1, 1, 0], [1, 0, 0.25, 1], [1, 1, 0, 0]]
    return Sample((jnp.asarray(logits, dtype), jnp.asarray(targets, dtype)), {})


@loss(constraints=[_domain.unit_interval("targets")],
      nonnegative=True, perfect=_hard_logits,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \frac{1}{C}\sum_c w_c\left[-y_{nc}\log\sigma(z_{nc}) - (1 - y_{nc})\log\sigma(-z_{nc})\right]",
      sampler=_multilabel_soft_sample,
      references=["PyTorch torch.nn.functional.multilabel_soft_margin_loss."])
def multilabel_soft_margin(logits, targets, *, weight=None, axis=-1):
    r"""Multi-label soft margin loss (PyTorch ``F.multilabel_soft_margin_loss``): per example,
    the mean over the C classes of the (class-weighted) binary cross-entropy with logits.

    Args:
      logits: real scores with the C classes along ``axis``.
      targets: multi-hot targets in [0, 1] (soft targets allowed), same shape.
      weight: optional (C,) class weights :math:`w_c` (>= 0 for a nonnegative loss); the
        per-example value is still divided by C, and the mean over examples by their number,
        as in PyTorch.
      axis: the class axis.

    Gradient w.r.t. the logits: :math:`w_c(\sigma(z_c) - y_c)/C`; Hessian diagonal
    :math:`w_c\sigma(z_c)\sigma(-z_c)/C`. Computed with softplus, finite for saturated
    logits (as PyTorch's log-sigmoid form).

    References:
      PyTorch ``torch.nn.functional.multilabel_soft_margin_loss``.
    """
    name = "multilabel_soft_margin"
    ax = _checks.class_axis(name, "logits", logits, axis)
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "logits", logits, "targets", t)
    z = jnp.moveaxis(logits, ax, -1)
    t = jnp.moveaxis(t.astype(z.dtype), ax, -1)
    num_classes = z.shape[-1]
    w = _class_weight(name, weight, num_classes, z.dtype)
    scale = (1.0 if w is None else w) / num_classes
    per_class = t * jax.nn.softplus(-z) + (1 - t) * jax.nn.softplus(z)
    return Terms(jnp.sum(scale * per_class, axis=-1), class_axis=ax,
                 grad=lambda: _back(scale * (jax.nn.sigmoid(z) - t), ax),
                 hess=lambda: _back(scale * jax.nn.sigmoid(z) * jax.nn.sigmoid(-z), ax))


# -- multi-label margin (target classes listed, padded with -1) -------------------------------

def _listed_counts(labels, num_classes, dtype):
    """How many times each class is listed in ``labels`` (..., L) before the first negative
    entry: PyTorch reads the list up to the first -1 and counts a repeated class each time.
    Entries >= num_classes (invalid) count nothing."""
    listed = jnp.cumprod(labels >= 0, axis=-1).astype(bool)
    return jnp.sum(jax.nn.one_hot(jnp.where(listed, labels, -1), num_classes, dtype=dtype),
                   axis=-2)


def _multilabel_pairs(scores, labels, axis):
    """(pair weights [j, i] = count_j * [i not listed], margins 1 - (z_j - z_i), class axis)
    with the classes last."""
    ax = axis % scores.ndim
    z = jnp.moveaxis(scores, ax, -1)
    y = jnp.moveaxis(labels, ax, -1)
    counts = _listed_counts(y, z.shape[-1], z.dtype)
    unlisted = (counts == 0).astype(z.dtype)
    pairs = counts[..., :, None] * unlisted[..., None, :]
    margins = 1 - z[..., :, None] + z[..., None, :]
    return pairs, margins, ax


def _multilabel_on_hinge(scores, labels, axis=-1):
    """Scores in a (listed j, unlisted i) pair exactly on the hinge."""
    pairs, margins, ax = _multilabel_pairs(scores, labels, axis)
    tied = (pairs > 0) & (margins == 0)
    return _back(jnp.any(tied, axis=-1) | jnp.any(tied, axis=-2), ax)


def _listed_or_padding():
    """multilabel_margin's labels: class indices or -1, PyTorch's valid range."""
    def classes(a):
        return a["scores"].shape[a["axis"]]

    def holds(a):
        y = jnp.asarray(a["labels"])
        return (y >= -1) & (y < classes(a))
    return _domain.Constraint(
        "labels", lambda a: f"a class index in [0, {classes(a)}) or -1 (end of the list)", holds)


def _multilabel_margin_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        n, c = _sampling.GENERIC_SHAPE
        rng = _sampling.host_rng(k2)
        labels = rng.integers(-1, c, (n, c))              # anything in [-1, C) after the -1
        for row, size in zip(labels, rng.integers(1, c, n)):
            row[:size] = rng.permutation(c)[:size]
            row[size:size + 1] = -1
        return Sample((_sampling.normal(k1, (n, c), dtype),
                       jnp.asarray(labels, jnp.int32)), {})
    b = _sampling.big(dtype)
    scores = [[2, 1, 1, 0], [0.5, 1.5, 0.5, -0.5], [1, 0, 3, 2], [0, 1, 2, 3], [b, -b, 0, 0.25]]
    labels = [[0, -1, 3, 3],      # class 0 listed: on the hinge against classes 1 and 2
              [1, 1, -1, 0],      # class 1 listed twice (counted twice, as PyTorch)
              [-1, 0, 1, 2],      # an empty list: loss 0
              [0, 1, 2, 3],       # every class listed: loss 0
              [1, 2, -1, -1]]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, jnp.int32)), {})


def _listed_high(s):
    scores, labels = s.args
    ax = s.kwargs.get("axis", -1) % scores.ndim
    counts = _listed_counts(jnp.moveaxis(labels, ax, -1), scores.shape[ax], scores.dtype)
    return Sample((_back(2 * (counts > 0).astype(scores.dtype), ax), labels), s.kwargs)


@loss(constraints=[_listed_or_padding()],
      nonnegative=True, perfect=_listed_high,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \frac{1}{C}\sum_{j \in Y_n}\sum_{i \notin Y_n}\max(0,\ 1 - (z_{nj} - z_{ni}))",
      sampler=_multilabel_margin_sample,
      kinks=[Kink("z_j - z_i == 1 for a listed class j and an unlisted class i",
                  "half the hinge's slope (midpoint of the one-sided derivatives)",
                  _multilabel_on_hinge)],
      references=["PyTorch torch.nn.functional.multilabel_margin_loss."])
def multilabel_margin(scores, labels, *, axis=-1):
    r"""Multi-label margin loss (PyTorch ``F.multilabel_margin_loss``): every listed (target)
    class should score at least 1 above every unlisted class.

    Args:
      scores: real scores with the C classes along ``axis``.
      labels: integer array shaped like the scores: along ``axis``, the target classes'
        indices, ended by -1 (PyTorch's layout; entries after the first -1 are ignored, e.g.
        ``[3, 0, -1, 1]`` lists classes 3 and 0). A class listed twice counts twice, as in
        PyTorch. Indices >= C (PyTorch raises) are skipped, any negative index ends the list;
        ``lj.checked`` rejects both.
      axis: the class axis.

    Per example, with listed multiplicities :math:`k_j` and the unlisted set
    :math:`\bar Y`: :math:`\ell = \frac1C\sum_j k_j\sum_{i\in\bar Y} \max(0, 1 - z_j + z_i)`.
    Gradient: :math:`\partial\ell/\partial z_c = \frac1C\left(\sum_j a_{jc} - \sum_i
    a_{ci}\right)` with :math:`a_{ji} = k_j [i \in \bar Y]\, h(1 - z_j + z_i)`, h the hinge's
    slope (1/2 on the hinge, where PyTorch takes 0). The Hessian diagonal is 0 (piecewise
    linear). Cost O(C^2) per example, as PyTorch's.

    References:
      PyTorch ``torch.nn.functional.multilabel_margin_loss``.
    """
    name = "multilabel_margin"
    ax = _checks.class_axis(name, "scores", scores, axis)
    labels = _checks.integer_labels(name, "labels", labels)
    if labels.shape != scores.shape:
        raise ValueError(f"{name}: `labels` must have the shape of `scores` "
                         f"{tuple(scores.shape)} (class indices padded with -1 along axis "
                         f"{axis}), got {tuple(labels.shape)}.")
    pairs, margins, _ = _multilabel_pairs(scores, labels, ax)
    num_classes = scores.shape[ax]
    value = jnp.sum(pairs * jnp.maximum(margins, 0.0), axis=(-2, -1)) / num_classes

    def grad():
        slopes = pairs * hinge_slope(margins)
        return _back((jnp.sum(slopes, axis=-2) - jnp.sum(slopes, axis=-1)) / num_classes, ax)

    return Terms(value, class_axis=ax, grad=grad, hess=lambda: jnp.zeros_like(scores))


# -- multi-class margin (the Weston-Watkins hinge on integer labels) --------------------------

def _multi_margin_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype),
                       _sampling.class_labels(k2, _sampling.GENERIC_SHAPE[:1],
                                              _sampling.GENERIC_SHAPE[1])),
                      _sampling.hyper({"p": 2, "margin": 0.5,
                                       "weight": np.asarray([0.5, 1.0, 2.0, 1.5, 0.25])},
                                      dtype))
    b = _sampling.big(dtype)
    scores = [[1, 0, 0, -1], [0, 0, 0, 0], [b, -b, 0, 0], [0.5, 2, -0.5, 1], [-b, 0, 0, 3]]
    labels = [0, 3, 1, 1, 3]    # rows 0 and 3 have classes exactly on the hinge
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, jnp.int32)),
                  _sampling.hyper({"weight": np.asarray([1.0, 0.5, 2.0, 0.25])}, dtype))


def _multi_margin_parts(scores, labels, margin, axis):
    """(margins m - z_y + z_i, one-hot labels, labels with those out of range replaced by 0,
    which rows are valid, class axis), with the classes last."""
    ax = axis % scores.ndim
    z = jnp.moveaxis(scores, ax, -1)
    labels = jnp.asarray(labels)
    num_classes = z.shape[-1]
    valid = (labels >= 0) & (labels < num_classes)
    safe = jnp.where(valid, labels, 0)
    onehot = jax.nn.one_hot(safe, num_classes, dtype=z.dtype)
    return margin - _take(z, safe)[..., None] + z, onehot, safe, valid, ax


def _multi_margin_on_hinge(scores, labels, p=1, margin=1.0, weight=None, axis=-1):
    """With p = 1: a class other than the label exactly on the hinge, and the label's score."""
    margins, onehot, _, valid, ax = _multi_margin_parts(scores, labels, margin, axis)
    tied = (margins == 0) & (onehot == 0) & valid[..., None] & (p == 1)
    return _back(tied | (onehot > 0) & jnp.any(tied, axis=-1, keepdims=True), ax)


def _label_high(s):
    scores, labels = s.args
    lift = s.kwargs.get("margin", 1.0) + 1
    ax = s.kwargs.get("axis", -1) % scores.ndim
    onehot = jax.nn.one_hot(labels, scores.shape[ax], dtype=scores.dtype)
    return Sample((_back(lift * onehot, ax), labels), s.kwargs)


@loss(constraints=[_domain.class_index(scores="scores", ignore=None)],
      nonnegative=True, perfect=_label_high,
      family="classification", elementwise=False, has_hess_diag=False,
      formula=r"\ell_n = \frac{w_{y_n}}{C}\sum_{i \ne y_n}\max(0,\ m - z_{n y_n} + z_{ni})^p",
      sampler=_multi_margin_sample,
      kinks=[Kink("p == 1 and m - z_y + z_i == 0 for a class i other than the label",
                  "half the hinge's slope (midpoint of the one-sided derivatives); for p == 2 "
                  "the gradient is continuous there", _multi_margin_on_hinge)],
      references=["PyTorch torch.nn.functional.multi_margin_loss.",
                  "Weston, Watkins, Support Vector Machines for Multi-Class Pattern "
                  "Recognition, ESANN 1999."])
def multi_margin(scores, labels, *, p=1, margin=1.0, weight=None, axis=-1):
    r"""Multi-class margin (hinge) loss on integer labels (PyTorch ``F.multi_margin_loss``):
    the label's score should exceed every other class's by ``margin``.

    Args:
      scores: real scores with the C classes along ``axis``.
      labels: integer class indices shaped like the scores without ``axis``. Labels out of
        range (PyTorch raises) contribute 0 and do not count in the mean; ``lj.checked``
        rejects them.
      p: 1 (hinge) or 2 (squared hinge), a Python int.
      margin: the margin m (any real, as PyTorch).
      weight: optional (C,) class weights; example n is scaled by :math:`w_{y_n}`, and the mean
        still divides by the number of examples (PyTorch's convention, unlike cross_entropy's
        weighted mean).
      axis: the class axis.

    Gradient of one example, with :math:`s_i = p\max(0, m - z_y + z_i)^{p-1}` for
    :math:`i \ne y` (the hinge's slope 1/2 on the hinge for p = 1, where PyTorch takes 0):
    :math:`w_y s_i / C` w.r.t. :math:`z_i` and :math:`-w_y\sum_{i\ne y} s_i / C` w.r.t.
    :math:`z_y`.

    References:
      PyTorch ``torch.nn.functional.multi_margin_loss``; Weston and Watkins (1999).
    """
    name = "multi_margin"
    ax = _checks.class_axis(name, "scores", scores, axis)
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"{name}: `p` must be 1 or 2 (a Python int), got {p!r}.")
    num_classes = scores.shape[ax]
    # the labels' dtype and shape (no ignore index: every negative label is out of range)
    _index_labels(name, "scores", scores, labels, ax, num_classes, ignore_index=-1)
    w = _class_weight(name, weight, num_classes, scores.dtype)
    margins, onehot, safe, valid, _ = _multi_margin_parts(scores, labels, margin, ax)
    wy = jnp.ones(safe.shape, scores.dtype) if w is None else lookup(w, safe)
    scale = (wy / num_classes)[..., None]
    others = 1 - onehot
    hinge = others * jnp.maximum(margins, 0.0)
    value = jnp.sum(scale * (hinge if p == 1 else hinge * hinge), axis=-1)

    def grad():
        slopes = others * (hinge_slope(margins) if p == 1 else 2 * hinge)
        total = jnp.sum(slopes, axis=-1, keepdims=True)
        return _back(scale * (slopes - onehot * total), ax)

    return Terms(value, class_axis=ax, mask=valid, grad=grad)


# -- hinge embedding (similar pairs: the distance; dissimilar pairs: a hinge) -----------------

def _hinge_embedding_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.uniform(k1, _sampling.GENERIC_SHAPE, dtype, 0.0, 3.0),
                       _sampling.signs(k2, _sampling.GENERIC_SHAPE, dtype)), {"margin": 1.5})
    b = _sampling.big(dtype)
    distances = [1, 1, 0, 0, 2, 0.5, -0.5, b, b]     # 1: on the hinge for dissimilar pairs
    labels = [-1, 1, 1, -1, -1, -1, 1, 1, -1]       # -0.5 with label 1: a negative loss
    return Sample((jnp.asarray(distances, dtype), jnp.asarray(labels, dtype)), {})


def _matched_distances(s):
    distances, labels = s.args
    apart = s.kwargs.get("margin", 1.0) + 1
    return Sample((jnp.where(labels == 1, 0, apart).astype(distances.dtype), labels), s.kwargs)


@loss(constraints=[_domain.signs("labels")],
      perfect=_matched_distances, family="metric", elementwise=True,
      formula=r"\ell = x\ (y = 1);\quad \max(0,\ m - x)\ (y = -1)",
      sampler=_hinge_embedding_sample,
      kinks=[Kink("labels != 1 and distances == margin",
                  "-1/2 from the hinge (midpoint of -1 and 0)",
                  lambda x, y, margin=1.0: (y != 1) & (x == margin))],
      references=["PyTorch torch.nn.functional.hinge_embedding_loss."])
def hinge_embedding(distances, labels, *, margin=1.0):
    r"""Hinge embedding loss (PyTorch ``F.hinge_embedding_loss``): for pairs with a distance x
    (e.g. an L1 distance between two embeddings), similar pairs (y = 1) pay x and dissimilar
    ones (y = -1) pay :math:`\max(0, m - x)`.

    Args:
      distances: the inputs x, any shape; typically distances >= 0. Any real is accepted, as
        in PyTorch, and then the loss of a similar pair, x, is negative for x < 0 (this entry
        is not declared nonnegative).
      labels: -1 or +1 (integers or floats), same shape. As in PyTorch, a label that is
        neither (which ``lj.checked`` rejects) pays both terms.
      margin: the margin m (any real, as PyTorch).

    Derivative: 1 for y = 1; :math:`-[x < m]` for y = -1 (-1/2 at x = m, where PyTorch
    takes -1). Second derivative 0.

    References:
      PyTorch ``torch.nn.functional.hinge_embedding_loss``.
    """
    x = distances
    y = _signs("hinge_embedding", "distances", x, labels)
    similar = (y != -1).astype(x.dtype)      # PyTorch: x where y != -1
    dissimilar = (y != 1).astype(x.dtype)    # and max(0, m - x) where y != 1
    gap = margin - x
    return Terms(similar * x + dissimilar * jnp.maximum(gap, 0.0),
                 grad=lambda: similar - dissimilar * hinge_slope(gap),
                 hess=lambda: jnp.zeros_like(x))
