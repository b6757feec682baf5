"""Pair-similarity losses over the whole batch (family "metric"): Circle loss on the cosine
similarities between every pair of embeddings, with labels saying which pairs are positive.
The conventions are in :mod:`lossjax.losses.metric`; the elements are the anchors (rows)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import gathered, hinge_slope
from lossjax.losses.metric import _labelled_rows
from lossjax.losses.metric_batch import _normalized

__all__ = ["circle"]


def _pairs(embeddings, labels, remove_diagonal):
    """Cosine similarities between the rows, the positive and negative pair masks, and the
    normalisation's VJP and JVP."""
    unit, back, forward = _normalized(embeddings)
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(labels.shape[0], dtype=bool) if remove_diagonal else same
    return unit @ unit.T, positive, ~same, unit, back, forward


def _negatives_on_the_margin(embeddings, labels, gamma=80.0, margin=0.4, remove_diagonal=True,
                             detach_weights=False):
    s, _, negative, *_ = _pairs(embeddings, labels, remove_diagonal)
    row = jnp.any(negative & (s == -margin), axis=1)
    return jnp.broadcast_to(row[:, None], embeddings.shape)


def _circle_sample(key, dtype, kind):
    if kind == "generic":
        centers = jnp.asarray([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0],
                               [-2.0, 0.0, 0.0]])
        labels = jnp.asarray([0, 0, 1, 1, 2, 2, 0, 3], jnp.int32)   # class 3: no positive
        e = (centers[labels] + _sampling.normal(key, (8, 3), jnp.float32)).astype(dtype)
        return Sample((e, labels), {"gamma": 8.0, "margin": 0.25})
    # Rows whose norms are powers of 2, so the cosines are exact: rows 0 and 2 point the same
    # way (a positive at similarity 1), rows 0 and 1 are a negative at similarity -1/2 =
    # -margin (the kink), row 3 is orthogonal to row 0; self-pairs are positives; a zero row
    # (its gradient is of order 1/1e-8, beyond half precision: there a unit row instead).
    zero = 0.0 if jnp.finfo(dtype).bits >= 32 else 1.0
    e = jnp.asarray([[2, 0, 0, 0], [-1, 1, 1, 1], [4, 0, 0, 0], [0, 0, 3, 0],
                     [0, zero, 0, 0], [0, 1, -1, 0]], dtype)
    labels = jnp.asarray([0, 1, 0, 1, 2, 2], jnp.int32)
    return Sample((e, labels), {"gamma": 8.0, "margin": 0.5, "remove_diagonal": False})


@loss(nonnegative=True, family="metric", elementwise=False, has_hess_diag=False,
      formula=r"\ell_i = \operatorname{softplus}\Big(\log\sum_{n} e^{\gamma \alpha_n (s_{in} - m)} + \log\sum_{p} e^{-\gamma \alpha_p (s_{ip} - 1 + m)}\Big),\ \alpha_n = [s_{in} + m]_+,\ \alpha_p = [1 + m - s_{ip}]_+",
      sampler=_circle_sample,
      kinks=[Kink("a negative pair at cosine similarity == -margin (its weight [s + m]_+ "
                  "switches on)", "the weight's slope is 1/2 (midpoint)",
                  _negatives_on_the_margin)],
      references=["Sun, Cheng, Zhang, Zhang, Zheng, Wang, Wei, Circle Loss: A Unified "
                  "Perspective of Pair Similarity Optimization, CVPR 2020.",
                  "Keras 3 keras.losses.Circle (keras.losses.circle)."])
def circle(embeddings, labels, *, gamma=80.0, margin=0.4, remove_diagonal=True,
           detach_weights=False):
    r"""Circle loss (Sun et al. 2020) over the pairs of a batch, as Keras 3
    ``keras.losses.Circle``.

    For anchor i, with :math:`s` the cosine similarity to another row, its positives p (same
    label) and negatives n (other labels):
    :math:`\ell_i = \operatorname{softplus}(\operatorname{lse}_n \gamma\alpha_n(s_n - \Delta_n)
    + \operatorname{lse}_p(-\gamma\alpha_p(s_p - \Delta_p)))` with weights
    :math:`\alpha_p = [1 + m - s_p]_+`, :math:`\alpha_n = [s_n + m]_+` and
    :math:`\Delta_p = 1 - m`, :math:`\Delta_n = m`.

    Args:
      embeddings: (N, D) rows; normalised here (divided by max(|e|, 1e-8), as
        ``torch.nn.functional.normalize``), so any scale is accepted.
      labels: (N,) integer class labels.
      gamma: scale, > 0 (Keras's default 80).
      margin: relaxation m, >= 0 (Keras's default 0.4).
      remove_diagonal: leave each row's pair with itself out of its positives (Keras's
        default); otherwise it is a positive at similarity 1.
      detach_weights: treat the weights :math:`\alpha` as constants in the gradient, as the
        paper's reference implementation and pytorch-metric-learning do (``detach()``).

    Anchors with no positive or no negative in the batch have value 0 and gradient 0 and are
    left out of the mean (they are masked). Keras gives them 0 too and its mean divides by
    the number of anchors whose loss is > 0: the same mean, unless a valid anchor's loss
    underflows to exactly 0.

    Differences from Keras: Keras expects L2-normalised embeddings and uses their dot
    products, clipping the distance 1 - s at 0; here they are normalised inside (for unit
    rows the values agree up to rounding; the gradient is Keras's composed with the
    normalisation, as with a ``UnitNormalization`` layer before Keras's loss) and no clip is
    needed (s <= 1). Keras has no stop-gradient on the weights: with the default
    ``detach_weights=False`` the gradient is Keras's, the derivative of the value.
    ``detach_weights=True`` gives the paper's gradient instead, which is *not* the derivative
    of the value (``.grad`` and autodiff agree with each other there, a numerical
    derivative does not). Keras's optional reference embeddings are not supported.

    ``.grad`` is the hand-derived vector-Jacobian product; at a negative pair exactly at
    similarity -margin its weight's slope is 1/2 (a kink).
    """
    name = "circle"
    _checks.in_range(name, "gamma", gamma, lo=0, lo_open=True)
    _checks.in_range(name, "margin", margin, lo=0)
    labels = _labelled_rows(name, "embeddings", embeddings, labels)
    embeddings, labels = gathered(embeddings, labels)       # every anchor meets every row
    s, positive, negative, unit, back, forward = _pairs(embeddings, labels, remove_diagonal)
    valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
    alpha_p = jnp.maximum(1 + margin - s, 0.0)
    alpha_n = jnp.maximum(s + margin, 0.0)
    if detach_weights:
        alpha_p, alpha_n = jax.lax.stop_gradient(alpha_p), jax.lax.stop_gradient(alpha_n)
    # the exponents, -inf outside each set; rows of an invalid anchor are zeroed so that its
    # (masked) logsumexps stay finite under autodiff
    x_p = jnp.where(positive, -gamma * alpha_p * (s - (1 - margin)), -jnp.inf)
    x_n = jnp.where(negative, gamma * alpha_n * (s - margin), -jnp.inf)
    x_p = jnp.where(valid[:, None], x_p, 0.0)
    x_n = jnp.where(valid[:, None], x_n, 0.0)
    lse_p = jax.nn.logsumexp(x_p, axis=1)
    lse_n = jax.nn.logsumexp(x_n, axis=1)
    value = jnp.where(valid, jax.nn.softplus(lse_p + lse_n), 0.0)

    def d_similarities():      # d value_i / d s_ij (row i: anchor i)
        outer = jax.nn.sigmoid(lse_p + lse_n) * valid
        w_p = jnp.exp(x_p - lse_p[:, None]) * positive
        w_n = jnp.exp(x_n - lse_n[:, None]) * negative
        dx_p = -gamma * alpha_p
        dx_n = gamma * alpha_n
        if not detach_weights:
            dx_p = dx_p + gamma * (s - (1 - margin)) * hinge_slope(1 + margin - s)
            dx_n = dx_n + gamma * (s - margin) * hinge_slope(s + margin)
        return outer[:, None] * (w_p * dx_p + w_n * dx_n)

    def vjp(coef):
        g = gathered(coef)[:, None] * d_similarities()
        return back((g + g.T) @ unit)

    def jvp(de):
        du = forward(gathered(de))
        return jnp.sum(d_similarities() * (du @ unit.T + unit @ du.T), axis=1)

    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=valid)
