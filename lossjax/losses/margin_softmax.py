"""Margin softmax losses on cosine logits (family "classification"): ArcFace and CosFace.

Both take the cosines cos(theta_k) between L2-normalised embeddings and L2-normalised class
weights, shape (..., C) with the classes last (:func:`cosine_logits` computes them), and
integer labels; they subtract a margin from the target class's logit and apply softmax
cross-entropy to ``scale`` times the result. Elements are the examples; ``.grad`` is the
derivative w.r.t. the cosines (row i: the derivative of example i's loss), and labels equal
to ``ignore_index`` contribute nothing (PyTorch's cross_entropy convention).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses.classification import _index_labels, _take
from lossjax.losses.metric_batch import _normalized

__all__ = ["arcface", "cosface", "cosine_logits"]


def cosine_logits(embeddings, class_weights):
    """Cosines between rows of ``embeddings`` (N, D) and rows of ``class_weights`` (C, D):
    the (N, C) input of :func:`arcface` and :func:`cosface`. Both are L2-normalised first
    (divided by max(|x|, 1e-8), as ``torch.nn.functional.normalize`` and the library's other
    cosine losses), so a zero row gives cosines 0. Differentiate it with autodiff."""
    name = "cosine_logits"
    embeddings = _checks.floating(name, "embeddings", embeddings)
    class_weights = _checks.floating(name, "class_weights", class_weights)
    if embeddings.ndim != 2 or class_weights.ndim != 2 or \
            embeddings.shape[1] != class_weights.shape[1]:
        raise ValueError(f"{name}: expected `embeddings` (N, D) and `class_weights` (C, D) with "
                         f"the same D, got {tuple(embeddings.shape)} and "
                         f"{tuple(class_weights.shape)}.")
    return _normalized(embeddings)[0] @ _normalized(class_weights)[0].T


def _classes(name, cosines, labels, ignore_index):
    """Validate (..., C) cosines and integer labels; return (safe labels, valid mask, C)."""
    if cosines.ndim < 1:
        raise ValueError(f"{name}: `cosines` must have the classes on its last axis, got a "
                         f"scalar.")
    num_classes = cosines.shape[-1]
    safe, valid = _index_labels(name, "cosines", cosines, labels, cosines.ndim - 1,
                                num_classes, ignore_index)
    return safe, valid, num_classes


def _margin_cross_entropy(cosines, safe, num_classes, scale, target, slope, curvature):
    """Softmax cross-entropy on ``scale`` x cosines with the target cosine replaced by
    ``target`` = phi(cos theta_y); ``slope`` = phi' and ``curvature`` = phi'' at the target.
    Returns the per-example value and the grad / hess callables w.r.t. the cosines."""
    onehot = jax.nn.one_hot(safe, num_classes, dtype=cosines.dtype)
    # the target logit exactly s * target, so that logsumexp >= it: the value stays >= 0
    logits = scale * jnp.where(onehot > 0, target[..., None], cosines)
    value = jax.nn.logsumexp(logits, axis=-1) - scale * target
    p = lambda: jax.nn.softmax(logits, axis=-1)   # noqa: E731
    # d value / d cos_k = s (p_k - [k = y]) times phi' on the target
    chain = 1 + onehot * (slope[..., None] - 1)

    def grad():
        return scale * (p() - onehot) * chain

    def hess():
        q = p()
        return scale ** 2 * q * (1 - q) * chain ** 2 \
            + onehot * (scale * (q - 1) * curvature[..., None])
    return value, grad, hess


# Edge rows (C = 4): the target at cos = 1 in a saturated row (the ArcFace singularity),
# the target at cos = -1 (theta + m > pi: the fallback), all logits tied, non-targets at +-1,
# the target at 0, an ignored label.
_EDGE_COSINES = [[1.0, -1.0, -1.0, -1.0], [0.5, 0.25, -0.5, -1.0], [0.5, 0.5, 0.5, 0.5],
                 [1.0, -1.0, 0.25, 0.0], [0.0, 0.75, -0.75, 0.5], [0.25, 0.5, 0.0, 1.0]]
_EDGE_LABELS = [0, 3, 2, 2, 0, -100]


def _cosines_sample(hyper):
    """Cosines in [-1, 1] with integer labels: generic draws (one ignored label) inside
    [-0.75, 0.95], well away from the ArcFace fallback threshold (with ``hyper``); the dyadic
    edge rows above (default hyperparameters)."""
    def sample(key, dtype, kind):
        k1, k2 = jax.random.split(key)
        if kind == "generic":
            cos = _sampling.uniform(k1, _sampling.GENERIC_SHAPE, dtype, -0.75, 0.95)
            labels = _sampling.class_labels(k2, _sampling.GENERIC_SHAPE[:1],
                                            _sampling.GENERIC_SHAPE[1]).at[0].set(-100)
            return Sample((cos, labels), dict(hyper))
        return Sample((jnp.asarray(_EDGE_COSINES, dtype),
                       jnp.asarray(_EDGE_LABELS, jnp.int32)), {})
    return sample


def _one_hot_cosines(s):
    """Cosine 1 on the label, -1 elsewhere: at scale 64 the softmax is one-hot in float32."""
    cos, labels = s.args
    onehot = jax.nn.one_hot(labels, cos.shape[-1], dtype=cos.dtype)
    return Sample(((2 * onehot - 1).astype(cos.dtype), labels), s.kwargs)


def _hyper(name, scale, margin, margin_hi):
    _checks.in_range(name, "scale", scale, lo=0, lo_open=True)
    _checks.in_range(name, "margin", margin, lo=0, hi=margin_hi, hi_open=margin_hi is not None)


def _arcface_target_at_one(cosines, labels, *, scale=64.0, margin=0.5, easy_margin=False,
                           ignore_index=-100):
    """Where the target cosine is exactly 1 (theta_y = 0)."""
    safe = jnp.where((labels >= 0) & (labels < cosines.shape[-1]), labels, 0)
    onehot = jax.nn.one_hot(safe, cosines.shape[-1], dtype=bool)
    return onehot & (cosines == 1) & (labels != ignore_index)[..., None]


@loss(constraints=[_domain.class_index(scores="cosines", axis=None)],
      nonnegative=True, perfect=_one_hot_cosines,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -\log\frac{e^{s\,\phi(\cos\theta_{y})}}{e^{s\,\phi(\cos\theta_{y})} "
              r"+ \sum_{k \ne y} e^{s \cos\theta_k}},\ \phi(c) = \cos(\arccos c + m)",
      sampler=_cosines_sample({}),
      kinks=[Kink("target cosine == 1 (theta_y = 0), where d cos(theta + m) / d cos theta "
                  "-> +inf",
                  "cos m (the sine's derivative at 0 taken as 0); Hessian diagonal: the "
                  "cross-entropy term alone (phi'' taken as 0)",
                  _arcface_target_at_one)],
      references=["Deng, Guo, Xue, Zafeiriou, ArcFace: Additive Angular Margin Loss for Deep "
                  "Face Recognition, CVPR 2019.",
                  "InsightFace (deepinsight/insightface), the reference implementation: the "
                  "fallback below cos(pi - m) and easy_margin."])
def arcface(cosines, labels, *, scale=64.0, margin=0.5, easy_margin=False, ignore_index=-100):
    r"""ArcFace (additive angular margin): softmax cross-entropy on
    :math:`s \cos\theta_k` with the target's angle widened by ``margin``,
    :math:`s\cos(\theta_y + m)`.

    Args:
      cosines: (..., C) cosines :math:`\cos\theta_k` between L2-normalised embeddings and
        L2-normalised class weights (:func:`cosine_logits`), in [-1, 1]; rounding slightly
        outside is harmless (the sine is clamped at 0, as InsightFace does).
      labels: integer class indices, shaped like ``cosines`` without the last axis.
      scale: :math:`s > 0`, the logits' scale (64 in the paper).
      margin: the angular margin :math:`m \in [0, \pi)`, in radians (0.5 in the paper;
        pytorch-metric-learning's ArcFaceLoss takes degrees: 28.6 for 0.5 rad).
      easy_margin: InsightFace's variant: the margin only where :math:`\cos\theta_y > 0`.
      ignore_index: a label that contributes nothing.

    The target logit follows InsightFace exactly: :math:`\phi(c) = c\cos m - \sqrt{1 - c^2}
    \sin m` where :math:`c > \cos(\pi - m)`, else the fallback :math:`c - m\sin m` (with
    ``easy_margin``: :math:`\phi` where :math:`c > 0`, else :math:`c`). The fallback keeps the
    logit decreasing in :math:`\theta` past :math:`\theta + m > \pi`, but it is not continuous:
    the loss jumps at :math:`c = \cos(\pi - m)` (by :math:`s(\cos m + m\sin m - 1)` in the
    logit; at :math:`c = 0` with ``easy_margin``). The jumps are not kinks: ``.grad`` there is
    the selected branch's derivative, and samples stay away from them.

    Derivative w.r.t. the cosines: :math:`s(p_k - [k = y])` times, on the target,
    :math:`\phi'(c) = \cos m + \sin m\, c / \sqrt{1 - c^2}` (1 on the fallback). It tends to
    :math:`+\infty` as :math:`c \to 1`; at :math:`c = 1` exactly ``.grad`` (and autodiff of this
    implementation) uses :math:`\cos m`, a finite convention; elsewhere at cosines of
    :math:`\pm 1` the derivative is finite too (InsightFace-style PyTorch code, which takes
    the sine of every entry, backpropagates NaN from any cosine of :math:`\pm 1`). Peers: InsightFace's ArcFace head followed by ``F.cross_entropy``, and
    pytorch-metric-learning's ``ArcFaceLoss`` (which computes the cosines itself from its own
    class weights, with the margin in degrees and no fallback).
    """
    name = "arcface"
    _hyper(name, scale, margin, math.pi)
    safe, valid, num_classes = _classes(name, cosines, labels, ignore_index)
    cos_m, sin_m = jnp.cos(margin), jnp.sin(margin)
    c = _take(cosines, safe)
    one_minus_sq = (1 - c) * (1 + c)               # accurate near c = +-1
    inside = one_minus_sq > 0
    sine = jnp.where(inside, jnp.sqrt(jnp.where(inside, one_minus_sq, 1.0)), 0.0)
    safe_sine = jnp.where(inside, sine, 1.0)
    phi = c * cos_m - sine * sin_m
    if easy_margin:
        use_margin, fallback = c > 0, c
    else:                                           # c > cos(pi - m): theta + m < pi
        use_margin, fallback = c > -cos_m, c - sin_m * margin
    target = jnp.where(use_margin, phi, fallback)
    slope = jnp.where(use_margin, cos_m + jnp.where(inside, sin_m * c / safe_sine, 0.0), 1.0)
    curvature = jnp.where(use_margin & inside, sin_m / safe_sine ** 3, 0.0)
    value, grad, hess = _margin_cross_entropy(cosines, safe, num_classes, scale, target, slope,
                                              curvature)
    return Terms(value, grad=grad, hess=hess, class_axis=cosines.ndim - 1, mask=valid)


@loss(constraints=[_domain.class_index(scores="cosines", axis=None)],
      nonnegative=True, perfect=_one_hot_cosines,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = -\log\frac{e^{s(\cos\theta_{y} - m)}}{e^{s(\cos\theta_{y} - m)} "
              r"+ \sum_{k \ne y} e^{s \cos\theta_k}}",
      sampler=_cosines_sample({"scale": 30.0, "margin": 0.4}),
      references=["Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition, "
                  "CVPR 2018.",
                  "Wang, Cheng, Liu, Liu, Additive Margin Softmax for Face Verification "
                  "(AM-Softmax), IEEE SPL 2018."])
def cosface(cosines, labels, *, scale=64.0, margin=0.35, ignore_index=-100):
    r"""CosFace / AM-Softmax (additive cosine margin): softmax cross-entropy on
    :math:`s(\cos\theta_k - m[k = y])`.

    Args:
      cosines: (..., C) cosines between L2-normalised embeddings and L2-normalised class
        weights (:func:`cosine_logits`).
      labels: integer class indices, shaped like ``cosines`` without the last axis.
      scale: :math:`s > 0` (64 in the paper).
      margin: :math:`m \ge 0` (0.35 in the paper; InsightFace uses 0.4).
      ignore_index: a label that contributes nothing.

    Equals ``cross_entropy(scale * (cosines - margin * one_hot(labels)), labels)``, InsightFace's
    CosFace head followed by ``F.cross_entropy``, and pytorch-metric-learning's
    ``CosFaceLoss(margin, scale)`` given the same cosines. Smooth: gradient
    :math:`s(p - \mathrm{onehot})`, Hessian diagonal :math:`s^2 p(1 - p)`.
    """
    name = "cosface"
    _hyper(name, scale, margin, None)
    safe, valid, num_classes = _classes(name, cosines, labels, ignore_index)
    target = _take(cosines, safe) - margin
    ones = jnp.ones(target.shape, cosines.dtype)
    value, grad, hess = _margin_cross_entropy(cosines, safe, num_classes, scale, target, ones,
                                              jnp.zeros_like(ones))
    return Terms(value, grad=grad, hess=hess, class_axis=cosines.ndim - 1, mask=valid)
