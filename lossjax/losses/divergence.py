"""Divergences and similarities from optax: the generalized (unnormalized) KL divergence
(family "classification"), optax's L2 loss (family "regression") and the cosine similarity and
distance between vectors (family "metric").

The losses over an axis (``generalized_kl_divergence``, ``cosine_similarity``,
``cosine_distance``) have one element per vector: the inputs' shape without ``axis``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import hinge_slope
from lossjax.losses.regression import _STANDARD_EDGE, _residual, _residual_sampler

__all__ = ["generalized_kl_divergence", "convex_kl_divergence", "l2_loss", "cosine_similarity",
           "cosine_distance"]


# -- generalized KL ---------------------------------------------------------------------------

def _generalized_kl_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    shape = _sampling.GENERIC_SHAPE
    if kind == "generic":
        log_predictions = _sampling.normal(k1, shape, dtype)
        targets = _sampling.uniform(k2, shape, dtype, 0.0, 2.0)
        zero = _sampling.bernoulli(k3, 0.2, shape)
        return Sample((log_predictions, jnp.where(zero, 0, targets).astype(dtype)), {})
    # zero targets against finite and vanishing predictions, exact fits, q = 0 against t > 0
    s = _sampling.saturating(dtype)
    log_predictions = [[0, -s, 0, -s], [-1, 2, -0.5, 0], [-s, 0, 1, -2]]
    targets = [[0, 0, 1, 0.5], [0, 4, 0.25, 1], [2, 1, 0, 0]]
    return Sample((jnp.asarray(log_predictions, dtype), jnp.asarray(targets, dtype)), {})


def _fitted_log_predictions(s):
    """Log-predictions equal to log t (q = 0 where t = 0: a saturated negative log)."""
    lq, t = s.args
    log_t = jnp.log(jnp.where(t > 0, t, 1))
    return Sample((jnp.where(t > 0, log_t, -_sampling.saturating(lq.dtype)).astype(lq.dtype), t),
                  s.kwargs)


@loss(constraints=[_domain.nonnegative("targets")],
      nonnegative=True, perfect=_fitted_log_predictions,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \sum_k \left(t_{nk}\log\frac{t_{nk}}{q_{nk}} - t_{nk} + q_{nk}\right),\ q = e^{\log q}",
      sampler=_generalized_kl_sample,
      references=["Boyd & Vandenberghe, Convex Optimization, 2004, p. 90.",
                  "Bregman, The relaxation method of finding the common point of convex sets "
                  "and its application to the solution of problems in convex programming, "
                  "1967."])
def generalized_kl_divergence(log_predictions, targets, *, axis=-1):
    r"""Generalized Kullback-Leibler divergence between unnormalized nonnegative measures t and
    q (optax ``optax.losses.generalized_kl_divergence``; ``convex_kl_divergence`` is the same
    loss, optax's deprecated name): the Bregman divergence of :math:`x\log x - x`.

    Args:
      log_predictions: log q, real, the measure along ``axis`` (need not be normalized).
      targets: t >= 0, same shape (need not be normalized). Zero targets contribute exactly
        :math:`q`, with finite gradients w.r.t. both arguments (optax's gradient w.r.t. the
        targets is NaN there): the derivative of :math:`t\log(t/q)`, -inf at t = 0, is taken
        as 0 (as ``lj.kl_divergence``), so d/dt = -1 there.
      axis: the axis summed over.

    When t and q are normalized it is the KL divergence (``lj.kl_divergence``). Gradient w.r.t.
    log q: :math:`q - t`; Hessian diagonal :math:`q`.
    """
    name = "generalized_kl_divergence"
    ax = _checks.class_axis(name, "log_predictions", log_predictions, axis)
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "log_predictions", log_predictions, "targets", t)
    lq, t = log_predictions, t.astype(log_predictions.dtype)
    q = jnp.exp(lq)
    positive = t > 0
    kl = jnp.where(positive, t * (jnp.log(jnp.where(positive, t, 1.0)) - lq), 0.0)
    return Terms(jnp.sum(kl - t + q, axis=ax), class_axis=ax,
                 grad=lambda: q - t, hess=lambda: q)


# optax's deprecated name for the same loss: the same object, one catalogue entry
convex_kl_divergence = generalized_kl_divergence


# -- L2 ---------------------------------------------------------------------------------------

@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \tfrac12 (\hat y - y)^2",
      sampler=_residual_sampler(residuals_edge=_STANDARD_EDGE))
def l2_loss(predictions, targets):
    r"""Half the squared error :math:`\tfrac12(\hat y - y)^2` (optax ``optax.losses.l2_loss``;
    Bishop's convention, half of ``lj.mse``'s elements).

    Args:
      predictions: floating array of any shape.
      targets: array of the same shape. optax's default ``targets=None`` (zeros) is
        ``jnp.zeros_like(predictions)`` here, and its broadcasting of the targets is not
        done (pass the shape you mean).

    Derivatives: :math:`\hat y - y`, second derivative 1.
    """
    r = _residual("l2_loss", predictions, targets)
    return Terms(0.5 * r * r, grad=lambda: r, hess=lambda: jnp.ones_like(r))


# -- cosine similarity and distance -------------------------------------------------------------

def _scaled(x, epsilon, ax):
    """Along ``ax``: u = x / N with N = sqrt(max(|x|^2, epsilon)) (u = 0 for a zero vector with
    epsilon = 0), |u|^2 computed as |x|^2 / N^2 (<= 1 exactly), 1 / N (0 where u is 0), and
    dN^2/d|x|^2: 1 where the clip is inactive, 0 where active, 1/2 on its edge."""
    sq = jnp.sum(x * x, axis=ax, keepdims=True)
    clipped = jnp.maximum(sq, epsilon)
    positive = clipped > 0
    safe = jnp.where(positive, clipped, 1.0)
    inverse = jnp.where(positive, 1 / jnp.sqrt(safe), 0.0)
    return x * inverse, jnp.where(positive, sq / safe, 0.0), inverse, hinge_slope(sq - epsilon)


def _cosine(name, predictions, targets, epsilon, axis):
    """The class axis, cos, u_a, u_b, (|u_a|^2, |u_b|^2) and the derivatives of cos w.r.t.
    the predictions and the targets."""
    ax = _checks.class_axis(name, "predictions", predictions, axis)
    _checks.in_range(name, "epsilon", epsilon, lo=0)
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "predictions", predictions, "targets", t)
    t = t.astype(predictions.dtype)
    ua, ra, inv_a, slope_a = _scaled(predictions, epsilon, ax)
    ub, rb, inv_b, slope_b = _scaled(t, epsilon, ax)
    cos = jnp.sum(ua * ub, axis=ax)

    def derivative(u_self, u_other, inverse, slope):
        """d cos / d x for x the vector behind u_self: (u_other - cos * slope * u_self) / N,
        the radial part only where the norm is not clipped."""
        return (u_other - jnp.expand_dims(cos, ax) * slope * u_self) * inverse

    return (ax, cos, ua, ub, (ra, rb),
            lambda: derivative(ua, ub, inv_a, slope_a), lambda: derivative(ub, ua, inv_b, slope_b))


def _cosine_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, (6, 4), dtype), _sampling.normal(k2, (6, 4), dtype)),
                      {})
    # epsilon = 1/16: zero vectors, vectors inside the clip (|x|^2 = 1/32), on its edge
    # (|x|^2 = 1/16, both arguments), parallel, opposite, orthogonal and large vectors
    b = _sampling.big(dtype) / 4
    predictions = [[0, 0, 0], [0.125, 0.125, 0], [0.25, 0, 0], [1, 2, 2], [1, 2, 2],
                   [0, 3, 0], [b, 0, b], [0.5, -1, 0]]
    targets = [[1, 1, 0], [-1, 0, 1], [1, 1, 0], [2, 4, 4], [-1, -2, -2], [4, 0, 0],
               [0, 0, 0], [0, 0, 0.25]]
    return Sample((jnp.asarray(predictions, dtype), jnp.asarray(targets, dtype)),
                  {"epsilon": 2.0 ** -4})


def _on_clip_edge(x, epsilon, axis):
    """Entries of vectors whose squared norm equals epsilon > 0 (the clip's kink): the
    non-zero coordinates (moving a zero one changes the norm only to second order)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return (sq == epsilon) & (epsilon > 0) & (x != 0)


def _cosine_kinks(sign):
    subgradient = (f"{sign}half the radial term of the unclipped gradient, the midpoint of "
                   f"the clipped (no radial term) and unclipped one-sided gradients")
    return [
        Kink("|predictions|^2 == epsilon > 0: the norm's clip starts", subgradient,
             lambda p, t, epsilon=0.0, axis=-1: _on_clip_edge(p, epsilon, axis)),
        Kink("|targets|^2 == epsilon > 0: the norm's clip starts", subgradient,
             lambda p, t, epsilon=0.0, axis=-1: _on_clip_edge(t, epsilon, axis),
             argument="targets"),
    ]


_COSINE_DOC = r"""

    Args:
      predictions: vectors along ``axis`` (any leading shape).
      targets: vectors of the same shape (optax broadcasts; lossjax requires equal shapes).
      epsilon: >= 0, a lower bound on the *squared* norms (optax's meaning: each norm is
        :math:`\sqrt{\max(\lVert x\rVert^2, \epsilon)}`).
      axis: the vectors' axis.

    Zero vectors are safe: with epsilon > 0 the clipped norm is positive; with epsilon = 0 a
    zero vector's normalized form is taken as 0, so the cosine is 0 and its gradient 0 there
    (optax returns NaN). The cosine jumps at a zero vector, so prefer epsilon > 0 where one
    can occur. optax's ``where`` (coordinates left out) equals zeroing those coordinates in
    both arguments; our ``where`` masks whole vectors.

    Gradient w.r.t. a prediction a (b the target, :math:`N_x = \sqrt{\max(\lVert x\rVert^2,
    \epsilon)}`): :math:`\partial\cos/\partial a = (b / N_b - \cos\, s\, a / N_a) / N_a` with
    :math:`s = 1` where the clip is inactive, 0 where active, 1/2 on its edge; likewise
    w.r.t. the target (``.grad(..., wrt="targets")``).
    """


def _cosine_documented(fn):
    fn.__doc__ += _COSINE_DOC
    return fn


@loss(family="metric", elementwise=False, grad_wrt=("targets",),
      formula=r"\ell_n = \frac{\langle a_n, b_n\rangle}{\sqrt{\max(\lVert a_n\rVert^2, \epsilon)}\sqrt{\max(\lVert b_n\rVert^2, \epsilon)}}",
      sampler=_cosine_sample, kinks=_cosine_kinks(""),
      references=["optax.losses.cosine_similarity."])
@_cosine_documented
def cosine_similarity(predictions, targets, *, epsilon=0.0, axis=-1):
    r"""Cosine similarity :math:`\cos(a, b)` per vector, in [-1, 1] (optax
    ``optax.losses.cosine_similarity``). As a loss it *rewards* dissimilarity (minimising it
    pushes the vectors apart) and is negative for vectors more than 90 degrees apart;
    ``cosine_distance`` is 1 minus it."""
    ax, cos, _, _, _, grad_a, grad_b = _cosine("cosine_similarity", predictions, targets,
                                               epsilon, axis)
    return Terms(cos, class_axis=ax, grad=grad_a, partials={"targets": grad_b})


def _aligned(s):
    """Predictions equal to the targets; targets too short for the clip replaced by ones."""
    p, t = s.args
    eps = s.kwargs.get("epsilon", 0.0)
    short = jnp.sum(t * t, axis=-1, keepdims=True) <= eps
    t = jnp.where(short, 1, t).astype(t.dtype)
    return Sample((t.astype(p.dtype), t), s.kwargs)


@loss(family="metric", elementwise=False, grad_wrt=("targets",), nonnegative=True,
      perfect=_aligned,
      formula=r"\ell_n = 1 - \frac{\langle a_n, b_n\rangle}{\sqrt{\max(\lVert a_n\rVert^2, \epsilon)}\sqrt{\max(\lVert b_n\rVert^2, \epsilon)}}",
      sampler=_cosine_sample, kinks=_cosine_kinks("minus "),
      references=["optax.losses.cosine_distance."])
@_cosine_documented
def cosine_distance(predictions, targets, *, epsilon=0.0, axis=-1):
    r"""Cosine distance :math:`1 - \cos(a, b)` per vector, in [0, 2] (optax
    ``optax.losses.cosine_distance``): 0 for vectors pointing the same way.

    Computed as :math:`\tfrac12\lVert u_a - u_b\rVert^2 + \tfrac12(1 - \lVert u_a\rVert^2) +
    \tfrac12(1 - \lVert u_b\rVert^2)` with :math:`u_x = x / N_x`: a sum of nonnegative terms,
    accurate for nearly parallel vectors (where 1 - cos cancels, and can round below 0)."""
    ax, _, ua, ub, (ra, rb), grad_a, grad_b = _cosine("cosine_distance", predictions, targets,
                                                      epsilon, axis)
    d = ua - ub
    value = jnp.sum(0.5 * d * d, axis=ax) + 0.5 * jnp.squeeze((1 - ra) + (1 - rb), ax)
    return Terms(value, class_axis=ax, grad=lambda: -grad_a(),
                 partials={"targets": lambda: -grad_b()})
