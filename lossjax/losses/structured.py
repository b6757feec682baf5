"""Structured-prediction and margin losses from optax (family "classification"): Poly-1 cross
entropy, the perceptron, multi-class hinge and sparsemax losses, the ranking softmax loss, and
:func:`fenchel_young`, which builds a loss from any regularized max.

Multi-class losses here take scores with the classes along ``axis`` and integer labels shaped
like the scores without that axis; out-of-range labels and ``ignore_index`` contribute nothing
and do not count in the mean (the conventions of :mod:`lossjax.losses.classification`).

A max over classes is not differentiable where two classes tie for it. ``.grad`` then splits
the derivative evenly among the tied classes, as ``jax.grad`` of ``jnp.max`` does: a valid
subgradient, and for a two-way tie the midpoint of the one-sided derivatives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Loss, Sample, Terms, loss
from lossjax.losses._common import hinge_slope
from lossjax.losses.classification import (
    _back, _beyond_margin, _hinge_sample, _index_labels, _logits_sampler, _margin,
    _one_hot_logits, _take)

__all__ = ["poly_loss_cross_entropy", "perceptron", "multiclass_perceptron", "multiclass_hinge",
           "sparsemax", "multiclass_sparsemax", "ranking_softmax", "fenchel_young"]


# -- shared pieces ------------------------------------------------------------------------

def _scores_and_labels(name, scores, labels, axis, ignore_index):
    """Scores with the classes moved last, safe labels, the valid mask and the class axis."""
    ax = _checks.class_axis(name, "scores", scores, axis)
    z = jnp.moveaxis(scores, ax, -1)
    safe, valid = _index_labels(name, "scores", scores, labels, ax, z.shape[-1], ignore_index)
    return z, safe, valid, ax


def _split_among_maxima(a):
    """d max(a) / da along the last axis: 1/k on each of the k entries tied for the max (what
    autodiff of jnp.max gives)."""
    is_max = a == jnp.max(a, axis=-1, keepdims=True)
    return is_max / jnp.sum(is_max, axis=-1, keepdims=True)


def _tied_maxima(a):
    """Entries that share the row's maximum with another entry (last axis)."""
    is_max = a == jnp.max(a, axis=-1, keepdims=True)
    return is_max & (jnp.sum(is_max, axis=-1, keepdims=True) > 1)


def _index_sampler(edge_scores, edge_labels):
    """Generic: the multi-class logits sampler (integer labels, one ignored); edge: the rows
    given, with ``"s"`` standing for a saturating score and ``"-s"`` for its negative."""
    generic = _logits_sampler(labels="index")

    def sample(key, dtype, kind):
        if kind == "generic":
            return generic(key, dtype, kind)
        s = _sampling.saturating(dtype)
        rows = [[{"s": s, "-s": -s}.get(v, v) for v in row] for row in edge_scores]
        return Sample((jnp.asarray(rows, dtype), jnp.asarray(edge_labels, jnp.int32)), {})
    return sample


# -- Poly-1 ---------------------------------------------------------------------------------

def _poly_sample(key, dtype, kind):
    """Integer labels with epsilon = 1 (generic); probability targets at saturated logits with
    epsilon = -1, the smallest allowed (edge)."""
    if kind == "generic":
        return _logits_sampler(labels="index", hyper={"epsilon": 1.0})(key, dtype, kind)
    return _logits_sampler(labels="probabilities", hyper={"epsilon": -1.0})(key, dtype, kind)


@loss(constraints=[_domain.class_index("labels", "logits"), _domain.unit_interval("labels")],
      nonnegative=True, perfect=_one_hot_logits,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -\sum_k t_{nk}\log p_{nk} + \epsilon\sum_k t_{nk}(1 - p_{nk}),\ p_n = \operatorname{softmax}(z_n)",
      sampler=_poly_sample,
      references=["Leng et al., PolyLoss: A Polynomial Expansion Perspective of "
                  "Classification Loss Functions, ICLR 2022."])
def poly_loss_cross_entropy(logits, labels, *, epsilon=2.0, axis=-1, ignore_index=-100):
    r"""Poly-1 loss: softmax cross-entropy plus :math:`\epsilon (1 - p_t)` (optax
    ``optax.losses.poly_loss_cross_entropy``).

    Args:
      logits: real scores with the C classes along ``axis``.
      labels: probability targets shaped like the logits (as optax; the bonus is then
        :math:`\epsilon \sum_k t_k (1 - p_k)`), or integer class indices shaped like the logits
        without ``axis`` (the same as their one-hot targets).
      epsilon: coefficient of the first polynomial term, >= -1 (the paper recommends 2 for
        ImageNet classification and -1 for detection). Below -1 the loss is negative near a
        perfect prediction, which then no longer minimises it; optax accepts it, lossjax
        raises.
      axis: the class axis.
      ignore_index: integer label that contributes nothing (integer labels only).

    optax's ``where`` (classes left out of the softmax) is not offered; our ``where`` masks
    examples. Gradient for one example, with :math:`S = \sum_k t_k` and
    :math:`B = \sum_k t_k(1 - p_k)`: :math:`S p - t + \epsilon\, p \odot (S - B - t)`;
    Hessian diagonal :math:`S p(1-p) + \epsilon\, p (S - B - t)(1 - 2p)`.
    """
    name = "poly_loss_cross_entropy"
    ax = _checks.class_axis(name, "logits", logits, axis)
    _checks.in_range(name, "epsilon", epsilon, lo=-1)
    z = jnp.moveaxis(logits, ax, -1)
    num_classes = z.shape[-1]
    labels = jnp.asarray(labels)
    mask = None
    if jnp.issubdtype(labels.dtype, jnp.floating):
        _checks.targets_shaped_like(name, labels, "logits", logits)
        t = jnp.moveaxis(labels.astype(z.dtype), ax, -1)
    else:
        safe, mask = _index_labels(name, "logits", logits, labels, ax, num_classes,
                                   ignore_index)
        t = jax.nn.one_hot(safe, num_classes, dtype=z.dtype)
    log_p = jax.nn.log_softmax(z, axis=-1)
    p = jax.nn.softmax(z, axis=-1)
    one_minus_p = -jnp.expm1(log_p)           # full precision where p is close to 1
    total = jnp.sum(t, axis=-1, keepdims=True)
    bonus = jnp.sum(t * one_minus_p, axis=-1)
    value = -jnp.sum(t * log_p, axis=-1) + epsilon * bonus
    # t.p - t_k, formed as S - B - t_k: exact where p_t is close to 1 (t.p - 1 would cancel)
    spread = total - bonus[..., None] - t
    return Terms(value, class_axis=ax, mask=mask,
                 grad=lambda: _back(total * p - t + epsilon * p * spread, ax),
                 hess=lambda: _back(total * p * one_minus_p
                                    + epsilon * p * spread * (1 - 2 * p), ax))


# -- perceptron and multi-class hinge -------------------------------------------------------

@loss(constraints=[_domain.signs("labels")],
      nonnegative=True, perfect=_beyond_margin, family="classification", elementwise=True,
      formula=r"\ell = \max(0,\ -y z),\ y \in \{-1, +1\}",
      sampler=_hinge_sample,
      kinks=[Kink("scores == 0", "-labels / 2 (midpoint of -labels and 0)",
                  lambda scores, labels: scores == 0)],
      references=["Rosenblatt, The Perceptron, Psychological Review 1958."])
def perceptron(scores, labels):
    r"""Binary perceptron loss :math:`\max(0, -yz)` (optax ``optax.losses.perceptron_loss``):
    the hinge loss without its margin.

    Args:
      scores: real classifier outputs.
      labels: -1 or +1 (integers or floats), same shape.

    Derivative: :math:`-y` for a misclassified score (:math:`yz < 0`), 0 for a correct one.
    """
    y, _ = _margin("perceptron", scores, labels)
    m = -y * scores
    return Terms(jnp.maximum(0.0, m), grad=lambda: -y * hinge_slope(m),
                 hess=lambda: jnp.zeros_like(m))


def _perceptron_kinks(scores, labels, axis=-1, ignore_index=-100):
    return jnp.moveaxis(_tied_maxima(jnp.moveaxis(scores, axis, -1)), -1, axis)


@loss(constraints=[_domain.class_index("labels", "scores")],
      nonnegative=True, perfect=_one_hot_logits, family="classification", elementwise=False,
      formula=r"\ell_n = \max_k z_{nk} - z_{n y_n}",
      sampler=_index_sampler(
          [["s", 0, 0, "-s"], ["s", 0, 0, "-s"], [1, 1, 0, -1], [2, 0, 2, 1], ["-s", 3, 2, 1],
           [0.5, -1, 0.25, 0]],
          [0, 3, 0, 3, 1, -100]),
      kinks=[Kink("two classes tie for the maximum score",
                  "the max's derivative split evenly: 1/k to each of k tied classes (for two, "
                  "1/2: the midpoint of the one-sided derivatives)",
                  _perceptron_kinks)],
      references=["Collins, Discriminative Training Methods for Hidden Markov Models: Theory "
                  "and Experiments with Perceptron Algorithms, EMNLP 2002."])
def multiclass_perceptron(scores, labels, *, axis=-1, ignore_index=-100):
    r"""Multi-class perceptron loss :math:`\max_k z_k - z_y` (optax
    ``optax.losses.multiclass_perceptron_loss``).

    Args:
      scores: real scores with the classes along ``axis``.
      labels: integer class indices shaped like the scores without ``axis``.
      axis: the class axis.
      ignore_index: label that contributes nothing.

    Gradient: :math:`e_{\arg\max} - e_y`; classes tied for the max share the first term evenly.
    """
    z, safe, valid, ax = _scores_and_labels("multiclass_perceptron", scores, labels, axis,
                                            ignore_index)
    onehot = lambda: jax.nn.one_hot(safe, z.shape[-1], dtype=z.dtype)  # noqa: E731
    return Terms(jnp.max(z, axis=-1) - _take(z, safe), class_axis=ax, mask=valid,
                 grad=lambda: _back(_split_among_maxima(z) - onehot(), ax))


def _augmented(z, labels):
    """z + 1 - e_y: the scores with the margin added to every class but the label."""
    return z + 1 - jax.nn.one_hot(labels, z.shape[-1], dtype=z.dtype)


def _hinge_kinks(scores, labels, axis=-1, ignore_index=-100):
    a = _augmented(jnp.moveaxis(scores, axis, -1), labels)
    return jnp.moveaxis(_tied_maxima(a), -1, axis)


@loss(constraints=[_domain.class_index("labels", "scores")],
      nonnegative=True, perfect=_one_hot_logits, family="classification", elementwise=False,
      formula=r"\ell_n = \max_k \left(z_{nk} + 1 - [k = y_n]\right) - z_{n y_n}",
      sampler=_index_sampler(
          [["s", 0, 0, "-s"], ["s", 0, 0, "-s"], [1, 0, -2, -1], [3, 0, 1, 3], [0, 2, 0, 0.5],
           [0.5, -1, 0.25, 0]],
          [0, 3, 0, 2, 1, -100]),
      kinks=[Kink("two classes tie for the max of z + 1 - e_y (e.g. a class exactly on the "
                  "margin of the label)",
                  "the max's derivative split evenly: 1/k to each of k tied classes (for two, "
                  "1/2: the midpoint of the one-sided derivatives)",
                  _hinge_kinks)],
      references=["Crammer & Singer, On the Algorithmic Implementation of Multiclass "
                  "Kernel-based Vector Machines, JMLR 2001."])
def multiclass_hinge(scores, labels, *, axis=-1, ignore_index=-100):
    r"""Multi-class hinge loss (Crammer-Singer) :math:`\max_k (z_k + 1 - [k = y]) - z_y`
    (optax ``optax.losses.multiclass_hinge_loss``): 0 once the label's score beats every
    other class by a margin of 1.

    Args:
      scores: real scores with the classes along ``axis``.
      labels: integer class indices shaped like the scores without ``axis``.
      axis: the class axis.
      ignore_index: label that contributes nothing.

    Gradient: :math:`e_{k^*} - e_y` with :math:`k^*` the maximiser of :math:`z + 1 - e_y`;
    tied maximisers share :math:`e_{k^*}` evenly.
    """
    z, safe, valid, ax = _scores_and_labels("multiclass_hinge", scores, labels, axis,
                                            ignore_index)
    a = _augmented(z, safe)
    onehot = lambda: jax.nn.one_hot(safe, z.shape[-1], dtype=z.dtype)  # noqa: E731
    return Terms(jnp.max(a, axis=-1) - _take(z, safe), class_axis=ax, mask=valid,
                 grad=lambda: _back(_split_among_maxima(a) - onehot(), ax))


# -- sparsemax ------------------------------------------------------------------------------

def _binary_labels(name, scores, labels):
    labels = jnp.asarray(labels)
    if not (labels.dtype == jnp.bool_ or jnp.issubdtype(labels.dtype, jnp.floating)
            or jnp.issubdtype(labels.dtype, jnp.integer)):
        raise TypeError(f"{name}: `labels` must be 0 or 1 (bool, integer or float), got "
                        f"{_checks.describe(labels)}.")
    _checks.same_shape(name, "scores", scores, "labels", labels)
    return labels != 0


def _sparse_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 1.5),
                       _sampling.bernoulli(k2, 0.4, _sampling.GENERIC_SHAPE, dtype)), {})
    b = _sampling.big(dtype)
    scores = [1, -1, 1, -1, 0, 0.5, -0.5, 2, -2, b, -b, 0.25]
    labels = [1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, dtype)), {})


def _sparse_fit(s):
    scores, labels = s.args
    return Sample((jnp.where(labels != 0, 2, -2).astype(scores.dtype), labels), s.kwargs)


@loss(constraints=[_domain.flags("labels")],
      nonnegative=True, perfect=_sparse_fit, family="classification", elementwise=True,
      formula=r"\ell = \operatorname{sparseplus}((1 - 2y) z),\ \operatorname{sparseplus}(u) = \begin{cases} 0 & u \le -1 \\ (u+1)^2/4 & |u| < 1 \\ u & u \ge 1 \end{cases}",
      sampler=_sparse_sample,
      kinks=[Kink("abs(scores) == 1: the sparse sigmoid reaches 0 or 1",
                  "second derivative 1/4 (midpoint of 1/2 and 0); the gradient is continuous",
                  lambda scores, labels: jnp.abs(scores) == 1, order=2)],
      references=["Blondel, Martins, Niculae, Learning with Fenchel-Young Losses, JMLR 2020 "
                  "(Sec. 4.4)."])
def sparsemax(scores, labels):
    r"""Binary sparsemax loss (optax ``optax.losses.sparsemax_loss``): the Fenchel-Young loss
    of the sparse sigmoid :math:`\operatorname{clip}((z + 1)/2, 0, 1)`, 0 exactly when that
    equals the label.

    Args:
      scores: real scores z.
      labels: 0 or 1 (bool, integer or float), same shape.

    Derivatives: :math:`(1 - 2y)\,\operatorname{clip}((u + 1)/2, 0, 1)` with
    :math:`u = (1 - 2y) z`, and :math:`1/2` for :math:`|z| < 1`, 0 outside.
    """
    positive = _binary_labels("sparsemax", scores, labels)
    sign = jnp.where(positive, -1.0, 1.0).astype(scores.dtype)
    u = sign * scores
    value = jnp.where(u <= -1, 0.0, jnp.where(u >= 1, u, (u + 1) ** 2 / 4))
    inside = 1 - jnp.abs(u)
    return Terms(value, grad=lambda: sign * jnp.clip((u + 1) / 2, 0, 1),
                 hess=lambda: hinge_slope(inside) / 2)


def _sparsemax_threshold(z):
    """tau with sparsemax(z) = max(z - tau, 0) (last axis; sort-based, Martins & Astudillo)."""
    descending = -jnp.sort(-z, axis=-1)
    cumulative = jnp.cumsum(descending, axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    size = jnp.sum(1 + k * descending > cumulative, axis=-1)     # the support: a prefix
    return (_take(cumulative, size - 1) - 1) / size


def _sparsemax_kinks(scores, labels, axis=-1, ignore_index=-100):
    z = jnp.moveaxis(scores, axis, -1)
    tau = _sparsemax_threshold(z)[..., None]
    tied = jnp.any(z == tau, axis=-1, keepdims=True)
    return jnp.moveaxis(tied & (z >= tau), -1, axis)


@loss(constraints=[_domain.class_index("labels", "scores")],
      nonnegative=True, perfect=_one_hot_logits, family="classification", elementwise=False,
      has_hess_diag=True,
      formula=r"\ell_n = \tfrac12\lVert p_n\rVert^2 + \tau_n + \tfrac12 - z_{n y_n},\ p_n = \operatorname{sparsemax}(z_n) = \max(z_n - \tau_n, 0)",
      sampler=_index_sampler(
          [[1, 0, 0, -1], ["s", 0, 0, "-s"], [1, 0.5, 0.25, -1], [0.25, 0.25, 0.25, 0.25],
           [1.5, 1, 0, 0.5], [0.5, 0, -0.5, 2]],
          [0, 3, 2, 1, 3, 1]),
      kinks=[Kink("a class's score equals the sparsemax threshold tau (the support changes); "
                  "marked on the support and the tied classes",
                  "second derivative: the midpoint of the one-sided values, "
                  "1 - (1/n + 1/(n+m))/2 on the support and (1 - 1/(n+1))/2 on a tied class "
                  "(n classes above tau, m tied with it); the gradient is continuous",
                  _sparsemax_kinks, order=2)],
      references=["Martins & Astudillo, From Softmax to Sparsemax: A Sparse Model of "
                  "Attention and Multi-Label Classification, ICML 2016.",
                  "Blondel, Martins, Niculae, Learning with Fenchel-Young Losses, JMLR 2020."])
def multiclass_sparsemax(scores, labels, *, axis=-1, ignore_index=-100):
    r"""Multi-class sparsemax loss (optax ``optax.losses.multiclass_sparsemax_loss``): the
    Fenchel-Young loss of sparsemax, the Euclidean projection of the scores onto the simplex.

    Args:
      scores: real scores with the classes along ``axis``.
      labels: integer class indices shaped like the scores without ``axis``.
      axis: the class axis.
      ignore_index: label that contributes nothing.

    With :math:`p = \max(z - \tau, 0)` summing to 1, the value is written as
    :math:`\tfrac12\lVert p\rVert^2 + \tau + \tfrac12 - z_y` (equal to optax's
    :math:`p \cdot (z - z_y) + \tfrac12(1 - \lVert p\rVert^2)`), whose autodiff is exact where
    a class sits on the threshold (p's form picks up a spurious term there). Gradient
    :math:`p - e_y`: continuous, piecewise linear. Hessian diagonal
    :math:`1 - 1/|S|` on the support S, 0 off it.
    """
    z, safe, valid, ax = _scores_and_labels("multiclass_sparsemax", scores, labels, axis,
                                            ignore_index)
    # sparsemax is shift invariant: after the shift tau lies in [-1, 0) and the loss is formed
    # from numbers of order 1, not from differences of two large scores
    z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    tau = _sparsemax_threshold(z)
    p = jnp.maximum(z - tau[..., None], 0.0)
    value = 0.5 * jnp.sum(p * p, axis=-1) + 0.5 + tau - _take(z, safe)

    def hess():
        above = z > tau[..., None]
        n = jnp.sum(above, axis=-1, keepdims=True).astype(z.dtype)
        m = jnp.sum(z == tau[..., None], axis=-1, keepdims=True).astype(z.dtype)
        return _back(jnp.where(above, 1 - (1 / n + 1 / (n + m)) / 2,
                               jnp.where(z == tau[..., None], (1 - 1 / (n + 1)) / 2, 0.0)), ax)

    return Terms(value, class_axis=ax, mask=valid, hess=hess,
                 grad=lambda: _back(p - jax.nn.one_hot(safe, z.shape[-1], dtype=z.dtype), ax))


# -- ranking --------------------------------------------------------------------------------

def _ranking_sample(key, dtype, kind):
    """Generic: graded relevance with item weights; edge: saturated and tied scores, lists
    with missing items (item_where), with no relevant item and with no item at all."""
    k1, k2, k3 = jax.random.split(key, 3)
    shape = _sampling.GENERIC_SHAPE
    if kind == "generic":
        scores = _sampling.normal(k1, shape, dtype, 2.0)
        labels = _sampling.integers(k2, shape, 0, 4).astype(dtype)
        return Sample((scores, labels),
                      {"item_weights": _sampling.uniform(k3, shape, dtype, 0.5, 2.0)})
    s = _sampling.saturating(dtype)
    scores = [[s, 0, 0, -s], [s, 0, 0, -s], [0, 0, 0, 0], [1, 2, 3, 4], [-s, 3, 2, 1],
              [2, 1, 0.5, 0]]
    labels = [[1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 2], [0, 0, 0, 0], [3, 0, 0, 1],
              [1, 0, 0, 1]]
    item_where = [[True] * 4, [True] * 4, [True] * 4, [True] * 4, [False, True, True, True],
                  [False] * 4]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, dtype)),
                  {"item_where": jnp.asarray(item_where)})


@loss(constraints=[_domain.nonnegative("labels"), _domain.nonnegative("item_weights")],
      nonnegative=True, family="classification", elementwise=False, has_hess_diag=True,
      batch_args=("scores", "labels", "item_where", "item_weights"),
      formula=r"\ell_n = -\sum_i y_{ni} \log\operatorname{softmax}(s_n)_i",
      sampler=_ranking_sample,
      references=["Cao, Qin, Liu, Tsai, Li, Learning to Rank: From Pairwise Approach to "
                  "Listwise Approach (ListNet), ICML 2007.",
                  "Bruch, Wang, Bendersky, Najork, An Analysis of the Softmax Cross Entropy "
                  "Loss for Learning-to-Rank with Binary Relevance, ICTIR 2019."])
def ranking_softmax(scores, labels, *, item_where=None, item_weights=None, axis=-1):
    r"""Listwise softmax ranking loss (ListNet-style; optax
    ``optax.losses.ranking_softmax_loss``): the cross-entropy between the softmax of each
    list's scores and its relevance labels, which are *not* normalised (as optax).

    Args:
      scores: real item scores, the items of each list along ``axis``.
      labels: relevance labels >= 0 (graded or binary), same shape.
      item_where: optional boolean array, same shape: the items that exist. The others are
        left out of the softmax and the sum (optax's ``where``); a list with no item is not
        an element (it is masked, and left out of the mean).
      item_weights: optional per-item weights >= 0 broadcastable to the scores' shape,
        multiplying the labels (optax's ``weights``).
      axis: the list axis.

    The elements are the lists: our ``weights`` and ``where`` act per list, and optax's
    ``reduce_fn`` = mean, sum or None is our ``reduction``. Gradient for one list, with
    :math:`S = \sum_i y_i` (after masking and weights): :math:`S p - y`; Hessian diagonal
    :math:`S p (1 - p)`; both 0 at missing items.
    """
    name = "ranking_softmax"
    ax = _checks.class_axis(name, "scores", scores, axis)
    y = _checks.floating(name, "labels", labels)
    _checks.same_shape(name, "scores", scores, "labels", y)
    y = jnp.moveaxis(y.astype(scores.dtype), ax, -1)
    z = jnp.moveaxis(scores, ax, -1)
    present = jnp.ones(z.shape, bool)
    if item_where is not None:
        item_where = jnp.asarray(item_where)
        if item_where.dtype != jnp.bool_:
            raise TypeError(f"{name}: `item_where` must be a boolean mask, got "
                            f"{_checks.describe(item_where)}.")
        _checks.same_shape(name, "scores", scores, "item_where", item_where)
        present = jnp.moveaxis(item_where, ax, -1)
    if item_weights is not None:
        w = _checks.floating(name, "item_weights", item_weights)
        _checks.broadcastable_to(name, "item_weights", w, scores.shape, "the scores' shape")
        y = y * jnp.moveaxis(jnp.broadcast_to(w.astype(z.dtype), scores.shape), ax, -1)
    y = jnp.where(present, y, 0.0)
    listed = jnp.any(present, axis=-1)
    top = jnp.max(jnp.where(present, z, -jnp.inf), axis=-1, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(listed[..., None], top, 0.0))
    shifted = jnp.where(present, z - top, -jnp.inf)        # missing items: probability 0
    lse = jnp.log(jnp.where(listed, jnp.sum(jnp.exp(shifted), axis=-1), 1.0))
    total = jnp.sum(y, axis=-1)
    value = total * lse - jnp.sum(y * jnp.where(present, z - top, 0.0), axis=-1)
    p = jnp.exp(shifted - lse[..., None])
    return Terms(value, class_axis=ax, mask=listed,
                 grad=lambda: _back(total[..., None] * p - y, ax),
                 hess=lambda: _back(total[..., None] * p * (1 - p), ax))


# -- Fenchel-Young losses -------------------------------------------------------------------

def _fenchel_young_sample(key, dtype, kind):
    """Scores and targets in the simplex (generic: soft; edge: one-hot at saturated and tied
    scores)."""
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        scores = _sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 2.0)
        targets = jax.nn.softmax(_sampling.normal(k2, _sampling.GENERIC_SHAPE, jnp.float32))
        return Sample((scores, targets.astype(dtype)), {})
    s = _sampling.saturating(dtype)
    scores = jnp.asarray([[s, 0, 0, -s], [s, 0, 0, -s], [1, 1, 0, -1], [0.5, 0, -0.5, 2]],
                         dtype)
    targets = jnp.asarray(np.eye(4)[[0, 3, 1, 2]], dtype)
    return Sample((scores, targets), {})


def fenchel_young(max_fun, *, argmax_fun=None, name=None) -> Loss:
    r"""A Fenchel-Young loss :math:`\ell(s, t) = \max_\Omega(s) - \langle t, s\rangle` from a
    regularized max (optax ``optax.losses.make_fenchel_young_loss``).

    Args:
      max_fun: :math:`\max_\Omega`, a function of one score vector (the last axis) returning a
        scalar: e.g. ``jax.nn.logsumexp`` (giving softmax cross-entropy) or the sparsemax
        conjugate (giving the sparsemax loss). Bind its hyperparameters with
        ``functools.partial``.
      argmax_fun: its gradient, the regularized argmax
        :math:`\nabla\max_\Omega(s) = \arg\max_{\mu \in \operatorname{dom}\Omega}
        \langle\mu, s\rangle - \Omega(\mu)` (``jax.nn.softmax``, sparsemax...), used by the
        returned loss's hand-derived ``.grad``. When None it is ``jax.grad(max_fun)``; pass it
        when the closed form is cheaper or more accurate than autodiff of ``max_fun``.
      name: the loss's name (default ``fenchel_young_<max_fun's name>``).

    Returns:
      A :class:`lossjax.Loss` ``loss(scores, targets)`` over the last axis (one element per
      score vector, family "classification"), with ``.grad`` =
      :math:`\operatorname{argmax}_\Omega(s) - t`. It is not added to the catalogue. Like
      optax's, it leaves out :math:`\Omega(t)`, so it is 0 at a perfect prediction only where
      :math:`\Omega(t) = 0` (one-hot targets for the softmax and sparsemax regularizers).

    References:
      Blondel, Martins, Niculae, Learning with Fenchel-Young Losses, JMLR 2020.
    """
    argmax_fun = jax.grad(max_fun) if argmax_fun is None else argmax_fun
    rowwise_max = jnp.vectorize(max_fun, signature="(n)->()")
    rowwise_argmax = jnp.vectorize(argmax_fun, signature="(n)->(n)")
    label = name or f"fenchel_young_{getattr(max_fun, '__name__', 'max')}"

    def terms(scores, targets):
        if scores.ndim == 0:
            raise ValueError(f"{label}: `scores` must have a class axis (the last), got a "
                             f"scalar.")
        t = _checks.floating(label, "targets", targets)
        _checks.same_shape(label, "scores", scores, "targets", t)
        t = t.astype(scores.dtype)
        return Terms(rowwise_max(scores) - jnp.sum(t * scores, axis=-1), class_axis=-1,
                     grad=lambda: rowwise_argmax(scores) - t)

    terms.__name__ = terms.__qualname__ = label
    terms.__doc__ = (f"Fenchel-Young loss of `{getattr(max_fun, '__name__', max_fun)}` over "
                     f"the last axis: max_fun(scores) - <targets, scores>; .grad is "
                     f"argmax_fun(scores) - targets (lossjax.fenchel_young).")
    return Loss(terms, family="classification",
                formula=r"\ell_n = \max_\Omega(s_n) - \langle t_n, s_n\rangle",
                sampler=_fenchel_young_sample, elementwise=False, has_hess_diag=False,
                references=["Blondel, Martins, Niculae, Learning with Fenchel-Young Losses, "
                            "JMLR 2020."])
