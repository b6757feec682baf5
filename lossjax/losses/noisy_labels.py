"""Losses robust to noisy labels (family "classification"): generalized cross-entropy and
symmetric cross-entropy, on logits with integer labels (conventions of
:mod:`lossjax.losses.classification`: classes along ``axis``, ``ignore_index``, elements are
the examples).

Both are bounded-influence relatives of cross-entropy: the gradient of a confidently wrong
example (whose label may be wrong) is damped by :math:`p_y^q` (GCE) or grows only to a
bounded multiple of CE's (SCE), rather than dominating the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _domain
from lossjax._loss import Terms, loss
from lossjax.losses.classification import (
    _back, _index_labels, _logits_sampler, _one_hot_logits, _take)

__all__ = ["generalized_cross_entropy", "symmetric_cross_entropy"]


def _log_softmax_parts(name, logits, labels, axis, ignore_index):
    """Shared start: class axis last, validated labels, log p_y and log(1 - p_y) formed from
    logsumexps (exact for saturated logits), softmax probabilities and the one-hot labels."""
    ax = _checks.class_axis(name, "logits", logits, axis)
    z = jnp.moveaxis(logits, ax, -1)
    num_classes = z.shape[-1]
    safe, valid = _index_labels(name, "logits", logits, labels, ax, num_classes, ignore_index)
    onehot = jax.nn.one_hot(safe, num_classes, dtype=z.dtype)
    # shifted by the row maximum: log p_y is then a difference of moderate numbers
    z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    lse = jax.nn.logsumexp(z, axis=-1)
    log_py = _take(z, safe) - lse
    log_rest = jax.nn.logsumexp(jnp.where(onehot > 0, -jnp.inf, z), axis=-1) - lse
    p = jax.nn.softmax(z, axis=-1)
    return ax, log_py, log_rest, p, onehot, valid


@loss(constraints=[_domain.class_index()],
      nonnegative=True, perfect=_one_hot_logits,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \frac{1 - p_{n, y_n}^q}{q},\ p_n = \operatorname{softmax}(z_n)",
      sampler=_logits_sampler(labels="index", hyper={"q": 0.5}, edge_hyper={}),
      references=["Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural "
                  "Networks with Noisy Labels, NeurIPS 2018.",
                  "Keras 3 keras.losses.CategoricalGeneralizedCrossEntropy."])
def generalized_cross_entropy(logits, labels, *, q=0.7, axis=-1, ignore_index=-100):
    r"""Generalized cross-entropy (the negative Box-Cox transform of p_y):
    :math:`(1 - p_y^q)/q` on the softmax of the logits.

    q -> 0 gives cross-entropy :math:`-\log p_y`; q = 1 gives :math:`1 - p_y`, half the MAE
    between the probabilities and the one-hot labels. The paper's default is q = 0.7 (ours);
    Keras's is 0.5.

    Args:
      logits: real scores with the C classes along ``axis``.
      labels: integer class indices shaped like the logits without ``axis``.
      q: in (0, 1].
      ignore_index: label that contributes nothing; the mean is over the other examples.

    Keras 3 ``keras.losses.CategoricalGeneralizedCrossEntropy`` takes probabilities (and
    integer labels): ``generalized_cross_entropy(z, y, q=q)`` equals Keras's loss of
    ``softmax(z)``. Here :math:`p_y^q = e^{q \log p_y}` comes from log-softmax, so
    saturated logits give exact values (1/q when confidently wrong).

    Gradient w.r.t. the logits of one example: :math:`p_y^q (p - e_y)` (cross-entropy's,
    damped by :math:`p_y^q`); Hessian diagonal :math:`p_y^q [p(1 - p) - q (p - e_y)^2]`.
    """
    name = "generalized_cross_entropy"
    _checks.in_range(name, "q", q, lo=0, lo_open=True, hi=1)
    ax, log_py, _, p, onehot, valid = _log_softmax_parts(name, logits, labels, axis,
                                                         ignore_index)
    damping = jnp.exp(q * log_py)[..., None]
    return Terms(-jnp.expm1(q * log_py) / q, class_axis=ax, mask=valid,
                 grad=lambda: _back(damping * (p - onehot), ax),
                 hess=lambda: _back(damping * (p * (1 - p) - q * (p - onehot) ** 2), ax))


@loss(constraints=[_domain.class_index()],
      nonnegative=True, perfect=_one_hot_logits,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -\alpha \log p_{n, y_n} - \beta A (1 - p_{n, y_n}),\ "
              r"p_n = \operatorname{softmax}(z_n)",
      sampler=_logits_sampler(labels="index", hyper={"alpha": 0.5, "beta": 2.0,
                                                     "log_zero": -9.0}, edge_hyper={}),
      references=["Wang, Ma, Chen, Luo, Yi, Bailey, Symmetric Cross Entropy for Robust "
                  "Learning with Noisy Labels, ICCV 2019."])
def symmetric_cross_entropy(logits, labels, *, alpha=0.1, beta=1.0, log_zero=-4.0, axis=-1,
                            ignore_index=-100):
    r"""Symmetric cross-entropy :math:`\alpha\,CE + \beta\,RCE` on logits.

    The reverse cross-entropy swaps prediction and label:
    :math:`RCE = -\sum_k p_k \log q_k` with q the one-hot label, whose :math:`\log 0` is
    clamped to A = ``log_zero`` (the paper's A = -4), so :math:`RCE = -A (1 - p_y)`, a
    multiple of MAE. Defaults alpha = 0.1, beta = 1.0 are the paper's CIFAR-10 setting
    (it uses alpha = 6.0, beta = 0.1 on CIFAR-100).

    Args:
      logits: real scores with the C classes along ``axis``.
      labels: integer class indices shaped like the logits without ``axis``.
      alpha, beta: >= 0, the weights of CE and RCE.
      log_zero: A <= 0, the value taken for log 0. The authors' code clamps the one-hot
        labels to [1e-4, 1], i.e. A = log(1e-4) = -9.21; it also clamps the probabilities to
        at least 1e-7 in RCE, which this does not (it changes RCE only where some
        :math:`p_k < 10^{-7}`, by at most :math:`-A (C - 1) 10^{-7}`).
      ignore_index: label that contributes nothing; the mean is over the other examples.

    :math:`1 - p_y` is formed as :math:`e^{\log\sum_{k \ne y} e^{z_k} - \log\sum_k e^{z_k}}`,
    exact for saturated logits. Gradient w.r.t. the logits of one example:
    :math:`(\alpha - \beta A p_y)(p - e_y)`; Hessian diagonal
    :math:`(\alpha - \beta A p_y)\,p(1 - p) + \beta A p_y (p - e_y)^2`.
    """
    name = "symmetric_cross_entropy"
    _checks.in_range(name, "alpha", alpha, lo=0)
    _checks.in_range(name, "beta", beta, lo=0)
    _checks.in_range(name, "log_zero", log_zero, hi=0)
    ax, log_py, log_rest, p, onehot, valid = _log_softmax_parts(name, logits, labels, axis,
                                                                ignore_index)
    reverse = -beta * log_zero
    value = -alpha * log_py + reverse * jnp.exp(log_rest)
    scale = (alpha + reverse * jnp.exp(log_py))[..., None]
    return Terms(value, class_axis=ax, mask=valid,
                 grad=lambda: _back(scale * (p - onehot), ax),
                 hess=lambda: _back(scale * p * (1 - p)
                                    - reverse * jnp.exp(log_py)[..., None] * (p - onehot) ** 2,
                                    ax))
