"""Sequence losses: the Hamming metric, its differentiable surrogate, and CTC.

Token-level losses take logits of shape (..., L, C) (classes last) and integer labels of
shape (..., L); their elements are the positions, so ``where=`` (or ``ignore_index``) masks
padding and the mean is the Hamming loss over all real positions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses.classification import _index_labels, _take


def _token_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        logits = _sampling.normal(k1, (2, 5, 4), dtype, 2.0)
        labels = _sampling.class_labels(k2, (2, 5), 4).at[1, 4].set(-100)   # one padded
        return Sample((logits, labels), {})
    s = _sampling.saturating(dtype)
    logits = jnp.asarray([[[s, 0, 0], [0, s, 0], [1, 1, 0], [0, 0, -s]],
                          [[-s, s, s], [2, 0, 1], [0, 0, 0], [s, -s, 0]]], dtype)
    labels = jnp.asarray([[0, 2, 1, 0], [1, 0, 2, -100]], jnp.int32)
    return Sample((logits, labels), {})


def _tied_maximum(logits, labels, **_):
    top = jnp.max(logits, axis=-1, keepdims=True)
    ties = jnp.sum(logits == top, axis=-1, keepdims=True) > 1
    return (logits == top) & ties


def _one_hot_tokens(s):
    z, labels = s.args
    return Sample((_sampling.saturated_one_hot(labels, z.shape[-1], z.dtype), labels), s.kwargs)


@loss(constraints=[_domain.class_index(axis=None)],
      nonnegative=True, perfect=_one_hot_tokens,
      family="sequence", elementwise=False, has_hess_diag=True,
      formula=r"\ell_i = [\arg\max_k z_{ik} \ne y_i]",
      sampler=_token_sample,
      kinks=[Kink("a tie between the largest logits (the metric jumps there: a discontinuity)",
                  "0, like everywhere else", _tied_maximum)])
def hamming(logits, labels, *, ignore_index=-100):
    r"""Hamming loss: the fraction of positions whose arg-max prediction differs from the
    label. A metric, not a training objective: it is piecewise constant in the logits, so
    its gradient is 0 almost everywhere (and undefined where the arg-max changes). Train
    with :func:`soft_hamming` or cross-entropy and report this.

    Args:
      logits: (..., L, C) scores; labels: (..., L) integers; ``ignore_index`` marks padding.
    Ties pick the first largest logit (``jnp.argmax``).
    """
    name = "hamming"
    ax = _checks.class_axis(name, "logits", logits, -1)
    safe, valid = _index_labels(name, "logits", logits, labels, ax, logits.shape[-1],
                                ignore_index)
    wrong = (jnp.argmax(logits, axis=-1) != safe).astype(logits.dtype)
    return Terms(wrong, grad=lambda: jnp.zeros_like(logits), hess=lambda: jnp.zeros_like(logits),
                 class_axis=ax, mask=valid)


@loss(constraints=[_domain.class_index(axis=None)],
      nonnegative=True, perfect=_one_hot_tokens,
      family="sequence", elementwise=False, has_hess_diag=True,
      formula=r"\ell_i = 1 - \operatorname{softmax}(z_i)_{y_i}",
      sampler=_token_sample)
def soft_hamming(logits, labels, *, ignore_index=-100):
    r"""Expected Hamming loss under the predicted distribution: :math:`1 - p_{y}` per
    position, a differentiable surrogate of :func:`hamming` (equal to it when the softmax is
    one-hot).

    Gradient per position: :math:`p_y (p - e_y)`; Hessian diagonal
    :math:`p_y p_k (1 - p_k) - p_y (p_k - [k = y])^2`. Unlike cross-entropy, its gradient
    vanishes for confidently wrong positions (p_y -> 0): bounded, robust to label noise,
    slow to escape bad starts.
    """
    name = "soft_hamming"
    ax = _checks.class_axis(name, "logits", logits, -1)
    num_classes = logits.shape[-1]
    safe, valid = _index_labels(name, "logits", logits, labels, ax, num_classes, ignore_index)
    lp = jax.nn.log_softmax(logits, axis=-1)
    p_y = jnp.exp(_take(lp, safe))

    def parts():
        p = jnp.exp(lp)
        return p, p - jax.nn.one_hot(safe, num_classes, dtype=logits.dtype)

    def hess():
        p, diff = parts()
        return p_y[..., None] * (p * (1 - p) - diff * diff)

    return Terms(1 - p_y, grad=lambda: p_y[..., None] * parts()[1], hess=hess, class_axis=ax,
                 mask=valid)


def _ctc_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        logits = _sampling.normal(k1, (2, 6, 4), dtype, 1.5)
        labels = _sampling.integers(k2, (2, 3), 1, 4)
        label_paddings = jnp.asarray([[0, 0, 0], [0, 0, 1]], dtype)
        logit_paddings = jnp.asarray([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], dtype)
        return Sample((logits, labels), {"logit_paddings": logit_paddings,
                                         "label_paddings": label_paddings})
    logits = jnp.asarray([[[8.0, -8, 0], [-8, 8, 0], [8, -8, 0], [-8, 8, 0]],
                          [[0.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype)
    labels = jnp.asarray([[1, 1], [2, 1]], jnp.int32)      # a repeat needs a blank between
    return Sample((logits, labels), {})


@loss(constraints=[_domain.class_index(axis=None, ignore=None), _domain.flags("logit_paddings"),
          _domain.flags("label_paddings")],
      nonnegative=True, family="sequence", elementwise=False, has_hess_diag=False,
      formula=r"\ell_b = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_b)} \prod_t \operatorname{softmax}(z_{bt})_{\pi_t}",
      sampler=_ctc_sample,
      batch_args=("logits", "labels", "logit_paddings", "label_paddings"),
      grad_note="CTC's gradient is the softmax minus the forward-backward occupancy of each "
                "label state; it is not written out here, so the catalogue audits autodiff "
                "through optax's forward recursion against the numerical oracle.",
      references=["Graves et al., Connectionist Temporal Classification, ICML 2006.",
                  "optax.ctc_loss (the forward recursion used here)."])
def ctc(logits, labels, *, logit_paddings=None, label_paddings=None, blank_id=0,
        log_epsilon=-1e5, zero_infinity=False):
    r"""Connectionist temporal classification loss per sequence (built on optax.ctc_loss).

    Args:
      logits: (B, T, K) unnormalised scores over K tokens including the blank.
      labels: (B, N) integer targets (no blanks).
      logit_paddings, label_paddings: (B, T) and (B, N), 1.0 at padding (default none).
      blank_id: index of the blank token.
      log_epsilon: log of "impossible"; an unalignable pair (a label sequence that needs more
        frames than there are, counting the blanks between repeats) gets a large finite loss
        of order ``-log_epsilon`` (1e5) instead of inf, and finite gradients.

      zero_infinity: give unalignable pairs a loss of 0 and a zero gradient (PyTorch's
        ``zero_infinity=True``), instead of the large finite value above.

    Elements are the sequences (B,). Reductions follow PyTorch's ``F.ctc_loss``: ``"none"``
    gives each sequence's loss, ``"sum"`` their sum, and ``"mean"`` divides each sequence's
    loss by its target length (at least 1) before averaging over the batch,
    :math:`\frac1B \sum_b \ell_b / \max(L_b, 1)`. With ``weights=`` the mean is
    :math:`\sum_b w_b \ell_b / L_b \,/\, \sum_b w_b`, so ``weights=target_lengths`` gives
    the per-token mean :math:`\sum_b \ell_b / \sum_b L_b`; the plain mean over sequences is
    ``reduction="sum"`` divided by B. No hand-derived gradient (see ``.grad_note``).
    """
    name = "ctc"
    if logits.ndim != 3:
        raise ValueError(f"{name}: `logits` must have shape (batch, frames, tokens), got "
                         f"{tuple(logits.shape)}.")
    labels = _checks.integer_labels(name, "labels", labels)
    if labels.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{name}: `labels` must have shape (batch={logits.shape[0]}, length), "
                         f"got {tuple(labels.shape)}.")
    dtype = logits.dtype
    if logit_paddings is None:
        logit_paddings = jnp.zeros(logits.shape[:2], dtype)
    if label_paddings is None:
        label_paddings = jnp.zeros(labels.shape, dtype)
    logit_paddings = _checks.floating(name, "logit_paddings", logit_paddings)
    label_paddings = _checks.floating(name, "label_paddings", label_paddings)
    _checks.same_shape(name, "logits[..., 0]", logits[..., 0], "logit_paddings", logit_paddings)
    _checks.same_shape(name, "labels", labels, "label_paddings", label_paddings)
    value = optax.ctc_loss(logits, logit_paddings.astype(dtype), labels,
                           label_paddings.astype(dtype), blank_id=blank_id,
                           log_epsilon=log_epsilon)
    label_valid = label_paddings < 0.5
    target_lengths = jnp.sum(label_valid, axis=-1).astype(dtype)
    if zero_infinity:
        # an alignment needs one frame per label and a blank between repeated labels
        repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) & label_valid[:, 1:], axis=-1)
        frames = jnp.sum(logit_paddings < 0.5, axis=-1)
        value = jnp.where(target_lengths + repeats > frames, jnp.zeros((), dtype), value)
    return Terms(value, grad=None, mean_scale=1 / jnp.maximum(target_lengths, 1))
