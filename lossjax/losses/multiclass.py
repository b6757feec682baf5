"""Multi-class classification losses over a class axis: cross_entropy, nll, kl_divergence,
softmax_focal_loss (family "classification"; the conventions are in
:mod:`lossjax.losses.classification`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Sample, Terms, loss
from lossjax.losses._common import lookup
from lossjax.losses.classification import (
    _back, _class_weight, _index_labels, _log_of_targets, _logits_sampler, _one_hot_log_probs,
    _one_hot_logits, _take)


@loss(constraints=[_domain.class_index(), _domain.unit_interval("labels")],
      nonnegative=True, perfect=_one_hot_logits,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -\sum_k w_k\, t'_{nk} \log\operatorname{softmax}(z_n)_k,\ t' = (1-\varepsilon)t + \varepsilon/C",
      sampler=_logits_sampler(
          labels="index",
          hyper={"weight": np.asarray([0.5, 1.0, 2.0, 1.5, 0.25]), "label_smoothing": 0.1},
          edge_hyper={}),
      references=["PyTorch torch.nn.functional.cross_entropy (weight, ignore_index and "
                  "label_smoothing semantics)."])
def cross_entropy(logits, labels, *, axis=-1, weight=None, ignore_index=-100,
                  label_smoothing=0.0):
    r"""Softmax cross-entropy on logits, with PyTorch's conventions.

    Args:
      logits: real scores with the C classes along ``axis``.
      labels: integer class indices shaped like the logits without ``axis``, or probability
        targets shaped like the logits.
      axis: the class axis.
      weight: optional (C,) class weights. With integer labels the mean is weighted as in
        PyTorch: :math:`\sum_n \ell_n / \sum_n w_{y_n}` over non-ignored examples; with
        probability targets the mean divides by the number of examples (also as PyTorch).
      ignore_index: integer label that contributes nothing (integer labels only).
      label_smoothing: :math:`\varepsilon \in [0, 1]`, mixes the targets with the uniform
        distribution.

    Masked classes: a ``-inf`` logit with a zero probability target contributes
    :math:`0 \log 0 = 0`, so value and gradient stay finite (as optax's
    ``safe_softmax_cross_entropy``; PyTorch returns NaN there). With label smoothing the target
    of such a class is :math:`\varepsilon/C > 0` and the loss is :math:`+\infty`, as it should.

    Gradient w.r.t. the logits of one example: :math:`S\,p - w \odot t'` with
    :math:`S = \sum_k w_k t'_k`; Hessian diagonal :math:`S\,p(1 - p)`.
    """
    name = "cross_entropy"
    ax = _checks.class_axis(name, "logits", logits, axis)
    _checks.in_range(name, "label_smoothing", label_smoothing, lo=0, hi=1)
    z = jnp.moveaxis(logits, ax, -1)
    num_classes = z.shape[-1]
    w = _class_weight(name, weight, num_classes, z.dtype)
    eps = label_smoothing
    labels_arr = jnp.asarray(labels)
    if jnp.issubdtype(labels_arr.dtype, jnp.floating):
        _checks.targets_shaped_like(name, labels_arr, "logits", logits)
        lp = jax.nn.log_softmax(z, axis=-1)       # only probability targets need all of it
        p = lambda: jnp.exp(lp)  # noqa: E731
        t = jnp.moveaxis(labels_arr.astype(z.dtype), ax, -1)
        t = (1 - eps) * t + eps / num_classes
        wt = t if w is None else w * t
        total = jnp.sum(wt, axis=-1, keepdims=True)
        # 0 log 0 = 0: a class masked out with a -inf logit and a zero target contributes
        # nothing (not 0 * -inf = NaN); the zero is taken before the product, so derivatives
        # w.r.t. the targets stay finite too
        lp_where_weighted = jnp.where(wt == 0, 0.0, lp)
        return Terms(-jnp.sum(wt * lp_where_weighted, axis=-1), class_axis=ax,
                     grad=lambda: _back(total * p() - wt, ax),
                     hess=lambda: _back(total * p() * (1 - p()), ax))
    safe, valid = _index_labels(name, "logits", logits, labels_arr, ax, num_classes,
                                ignore_index)
    wy = jnp.ones(safe.shape, z.dtype) if w is None else lookup(w, safe)
    wvec = jnp.ones((num_classes,), z.dtype) if w is None else w
    # -log p_y = lse - z_y, as optax writes it: log_softmax is never materialised and autodiff
    # differentiates two cheap terms (2-3x faster value+grad than through log_softmax).
    lse = jax.nn.logsumexp(z, axis=-1)
    value = lse - _take(z, safe) if w is None else wy * (lse - _take(z, safe))
    if not (isinstance(eps, (int, float)) and eps == 0):
        smooth = jnp.sum(wvec) * lse - jnp.sum(wvec * z, axis=-1)     # -sum_k w_k log p_k
        value = (1 - eps) * value + eps / num_classes * smooth
    wsum = jnp.sum(wvec)
    coef = ((1 - eps) * wy)[..., None]
    p = lambda: jax.nn.softmax(z, axis=-1)   # noqa: E731  (not exp(z - lse): lse's ulp)

    def grad():
        onehot = jax.nn.one_hot(safe, num_classes, dtype=z.dtype)
        return _back(coef * (p() - onehot) + eps / num_classes * (wsum * p() - wvec), ax)

    def hess():
        return _back((coef + eps / num_classes * wsum) * p() * (1 - p()), ax)

    return Terms(value, grad=grad, hess=hess, class_axis=ax, mask=valid,
                 normalizer=None if w is None else wy)


def _nll_sample(key, dtype, kind):
    args, kwargs = _logits_sampler(labels="index", hyper={})(key, dtype, kind)
    log_probs = jax.nn.log_softmax(args[0].astype(jnp.float32), axis=-1).astype(dtype)
    if kind == "generic":
        kwargs = _sampling.hyper({"weight": np.asarray([0.5, 1.0, 2.0, 1.5, 0.25])}, dtype)
    return Sample((log_probs, args[1]), kwargs)


@loss(constraints=[_domain.class_index(scores="log_probs"),
          _domain.nonpositive("log_probs", "a log-probability")],
      nonnegative=True, perfect=_one_hot_log_probs,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -w_{y_n} \log p_{n, y_n}",
      sampler=_nll_sample)
def nll(log_probs, labels, *, axis=-1, weight=None, ignore_index=-100):
    r"""Negative log-likelihood of integer labels under log-probabilities (PyTorch nll_loss).

    Args:
      log_probs: log-probabilities with the classes along ``axis`` (e.g. from log_softmax).
      labels: integer class indices shaped like log_probs without ``axis``.
      weight: optional (C,) class weights; the mean is :math:`\sum_n \ell_n / \sum_n w_{y_n}`.
      ignore_index: label that contributes nothing.

    Gradient: :math:`-w_{y}` at the label's entry, 0 elsewhere; the loss is linear.
    """
    name = "nll"
    ax = _checks.class_axis(name, "log_probs", log_probs, axis)
    lp = jnp.moveaxis(log_probs, ax, -1)
    num_classes = lp.shape[-1]
    w = _class_weight(name, weight, num_classes, lp.dtype)
    safe, valid = _index_labels(name, "log_probs", log_probs, labels, ax, num_classes,
                                ignore_index)
    wy = jnp.ones(safe.shape, lp.dtype) if w is None else lookup(w, safe)
    return Terms(
        -wy * _take(lp, safe), class_axis=ax, mask=valid,
        normalizer=None if w is None else wy,
        grad=lambda: _back(-wy[..., None] * jax.nn.one_hot(safe, num_classes, dtype=lp.dtype), ax),
        hess=lambda: jnp.zeros_like(log_probs))


def _kl_sample(key, dtype, kind):
    args, _ = _logits_sampler(labels="probabilities")(key, dtype, kind)
    log_predictions = jax.nn.log_softmax(args[0].astype(jnp.float32), axis=-1).astype(dtype)
    return Sample((log_predictions, args[1]), {})


@loss(constraints=[_domain.nonpositive("log_predictions", "a log-probability"),
          _domain.unit_interval("targets", when=lambda a: not a["log_target"]),
          _domain.nonpositive("targets", "a log-probability", when=lambda a: a["log_target"])],
      nonnegative=True, perfect=_log_of_targets,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \sum_k t_{nk}(\log t_{nk} - \log q_{nk})",
      sampler=_kl_sample)
def kl_divergence(log_predictions, targets, *, axis=-1, log_target=False):
    r"""Kullback-Leibler divergence KL(targets || predictions) per example (optax
    kl_divergence; PyTorch kl_div with reduction='batchmean' for the mean).

    Args:
      log_predictions: log-probabilities q along ``axis``.
      targets: probabilities t (or log-probabilities if ``log_target``), same shape.
        Zero targets contribute exactly 0, with finite gradients w.r.t. both arguments
        (optax's gradient is NaN there): d/dt of t log t, which is -inf at t = 0, is taken
        as 0 there, a kink in the targets; the loss is smooth in the predictions.
      axis: the class axis, summed over.
      log_target: whether ``targets`` holds log-probabilities.

    The elements are the examples: the default mean is the batch mean of the per-example
    divergence. Gradient w.r.t. log q: :math:`-t`; the loss is linear in log q.
    """
    name = "kl_divergence"
    ax = _checks.class_axis(name, "log_predictions", log_predictions, axis)
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "log_predictions", log_predictions, "targets", t)
    lq = log_predictions
    t = t.astype(lq.dtype)
    if log_target:
        pt = jnp.exp(t)
        pointwise = pt * (t - lq)
    else:
        pt = t
        positive = t > 0
        safe_t = jnp.where(positive, t, 1.0)
        pointwise = jnp.where(positive, t * (jnp.log(safe_t) - lq), 0.0)
    return Terms(jnp.sum(pointwise, axis=ax), class_axis=ax, grad=lambda: -pt,
                 hess=lambda: jnp.zeros_like(lq))


@loss(constraints=[_domain.class_index()],
      nonnegative=True, perfect=_one_hot_logits,
      family="classification", elementwise=False, has_hess_diag=False,
      formula=r"\ell_n = -\alpha_{y_n} (1 - p_{n,y_n})^\gamma \log p_{n,y_n}",
      sampler=_logits_sampler(
          labels="index",
          hyper={"alpha": np.asarray([0.25, 0.5, 0.75, 1.0, 0.5]), "gamma": 2.0},
          edge_hyper={"gamma": 0.5}),
      references=["Lin et al., Focal Loss for Dense Object Detection, ICCV 2017."])
def softmax_focal_loss(logits, labels, *, alpha=None, gamma=2.0, axis=-1, ignore_index=-100):
    r"""Multi-class focal loss on logits with integer labels.

    :math:`\log(1 - p_y)` is computed exactly as
    :math:`\operatorname{logsumexp}_{k \ne y} z_k - \operatorname{logsumexp}_k z_k`, so the
    modulating factor :math:`(1 - p_y)^\gamma = \exp(\gamma\log(1-p_y))` and its gradient stay
    finite for saturated logits and gamma < 1. gamma = 0 and no alpha give cross-entropy.

    Args:
      logits: real scores with C >= 2 classes along ``axis``.
      labels: integer class indices shaped like the logits without ``axis``.
      alpha: None, a scalar, or (C,) per-class weights.
      gamma: focusing parameter >= 0.
      ignore_index: label that contributes nothing. The mean is over non-ignored examples.

    Gradient for one example, with :math:`F = (1-p_y)^\gamma` and :math:`\tilde q` the softmax
    over the classes other than y (0 at y):
    :math:`-\alpha_y F\,[\gamma \log p_y (\tilde q - p) + (e_y - p)]`.
    """
    name = "softmax_focal_loss"
    ax = _checks.class_axis(name, "logits", logits, axis)
    _checks.in_range(name, "gamma", gamma, lo=0)
    z = jnp.moveaxis(logits, ax, -1)
    num_classes = z.shape[-1]
    if num_classes < 2:
        raise ValueError(f"{name}: needs at least 2 classes along axis {axis}, got "
                         f"{tuple(logits.shape)}.")
    safe, valid = _index_labels(name, "logits", logits, labels, ax, num_classes, ignore_index)
    a = 1.0
    if alpha is not None:
        alpha = jnp.asarray(alpha)
        _checks.in_range(name, "alpha", alpha, lo=0)
        if alpha.ndim == 1:
            _class_weight(name, alpha, num_classes, z.dtype)
            a = lookup(alpha.astype(z.dtype), safe)
        elif alpha.ndim == 0:
            a = alpha.astype(z.dtype)
        else:
            raise ValueError(f"{name}: `alpha` must be a scalar or have shape ({num_classes},), "
                             f"got {tuple(alpha.shape)}.")
    onehot = jax.nn.one_hot(safe, num_classes, dtype=z.dtype)
    # shifted by the row maximum first: log p_y and log(1 - p_y) are then differences of
    # moderate numbers, not of two logsumexps near |z| (whose ulp is 1e-3 at z = 1e4 in float32)
    z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    lse = jax.nn.logsumexp(z, axis=-1)
    others = jnp.where(onehot > 0, -jnp.inf, z)
    lse_others = jax.nn.logsumexp(others, axis=-1)
    log_py = _take(z, safe) - lse
    factor = jnp.exp(gamma * (lse_others - lse))

    def grad():
        log_p = z - lse[..., None]
        p = jnp.exp(log_p)
        # q - p, q the softmax without the label: p_k p_y / (1 - p_y) off the label, -p_y on it,
        # formed from logs; q and p themselves nearly cancel when p_y is tiny, and that
        # difference is multiplied by log p_y (large)
        log_odds = (log_py - (lse_others - lse))[..., None]
        q_minus_p = jnp.where(onehot > 0, -jnp.exp(log_py)[..., None], jnp.exp(log_p + log_odds))
        inner = gamma * log_py[..., None] * q_minus_p + (onehot - p)
        return _back(-(a * factor)[..., None] * inner, ax)

    return Terms(-a * factor * log_py, grad=grad, class_axis=ax, mask=valid)
