"""The adaptive robust loss of Barron (CVPR 2019): one loss whose shape parameter alpha moves
continuously between L2 (alpha = 2), pseudo-Huber / Charbonnier (1), Cauchy (0),
Geman-McClure (-2) and Welsch (-inf), with a scale c; both can be learned.

Written as ``rho = b (L / 2) phi(alpha L / 2)`` with ``b = |alpha - 2|``,
``L = log(1 + (x/c)^2 / b)`` and ``phi(t) = expm1(t) / t``: algebraically the paper's
``b/alpha ((x^2/(c^2 b) + 1)^(alpha/2) - 1)``, but with no division by alpha, so alpha = 0 is
an ordinary point. alpha = 2 (b = 0) and alpha = -inf are limits, computed exactly.

A fact worth knowing when learning alpha: rho is continuous in alpha but its derivative in
alpha diverges logarithmically at alpha = 2 (like delta log(1/|delta|)); ``.grad(wrt="alpha")``
returns +inf there for non-zero residuals (autodiff returns 0, the special case's slope).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss

_SMALL_T = 1e-3


def _phi(t):
    """expm1(t) / t, 1 at t = 0, smooth under autodiff."""
    small = jnp.abs(t) < _SMALL_T
    safe = jnp.where(small, 1.0, t)
    return jnp.where(small, 1 + t / 2 + t * t / 6, jnp.expm1(safe) / safe)


def _horner(coefficients, x):
    out = jnp.zeros_like(x)
    for c in reversed(coefficients):
        out = out * x + c
    return out


# psi(t) = sum_{n>=2} (n-1)/n! t^(n-2); 18 terms are exact to rounding for |t| <= 1.
_PSI_SERIES = [(n - 1) / math.factorial(n) for n in range(2, 20)]
# log1p(w) - w/(1+w) = sum_{k>=2} (-1)^k (k-1)/k w^k; 40 terms are exact for w <= 0.3.
_GAP_SERIES = [0.0, 0.0] + [(-1) ** k * (k - 1) / k for k in range(2, 42)]


def _psi(t):
    """(1 - e^t (1 - t)) / t^2 = phi'(t), 1/2 at t = 0. The direct form cancels for |t| < 1
    (t = 0.1 costs 200 ulps), so a series is used there."""
    small = jnp.abs(t) <= 1
    safe = jnp.where(small, 2.0, t)
    return jnp.where(small, _horner(_PSI_SERIES, jnp.where(small, t, 0.0)),
                     (1 - jnp.exp(safe) * (1 - safe)) / (safe * safe))


def _log1p_gap(w):
    """log1p(w) - w / (1 + w) >= 0, without the cancellation at small w (series to 0.3)."""
    small = w <= 0.3
    wl = jnp.where(small, 1.0, w)
    return jnp.where(small, _horner(_GAP_SERIES, jnp.where(small, w, 0.0)),
                     jnp.log1p(wl) - wl / (1 + wl))


def _robust_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = _sampling.GENERIC_SHAPE
        alpha = _sampling.uniform(k3, shape, dtype, -4.0, 1.8)
        return Sample((_sampling.normal(k1, shape, dtype, 2.0), _sampling.normal(k2, shape, dtype)),
                      {"alpha": alpha, "scale": jnp.asarray(1.3, dtype)})
    b = min(_sampling.big(dtype), 64.0)
    residuals = [0.0, 1.0, -3.0, 0.5, b, 2.0, -1.0, 0.25]
    alpha = jnp.asarray([1.0, 0.0, -2.0, -np.inf, 1.0, 4.0, 2.5, -10.0], dtype)
    predictions, targets = _sampling.residual_edge(k1, dtype, residuals)
    return Sample((predictions, targets), {"alpha": alpha, "scale": jnp.asarray(0.5, dtype)})


@loss(constraints=[_domain.positive("scale")],
      nonnegative=True, perfect=_sampling.exact_fit,
      family="robust", elementwise=True, grad_wrt=("alpha", "scale"),
      formula=r"\ell = \frac{|\alpha-2|}{\alpha}\left(\left(\frac{(x/c)^2}{|\alpha-2|}+1\right)^{\alpha/2}-1\right),\ x = \hat y - y",
      sampler=_robust_sample, batch_args=("predictions", "targets", "alpha"),
      kinks=[Kink("alpha == 2 and predictions != targets (a singularity in alpha)",
                  "d/d alpha is +inf (log divergence); autodiff returns 0",
                  lambda p, t, alpha=1.0, scale=1.0: jnp.broadcast_to(
                      (jnp.asarray(alpha) == 2) & (p != t), jnp.broadcast_shapes(
                          jnp.shape(p), jnp.shape(alpha))), argument="alpha")],
      references=["Barron, A General and Adaptive Robust Loss Function, CVPR 2019."])
def adaptive_robust(predictions, targets, *, alpha=1.0, scale=1.0):
    r"""Barron's general and adaptive robust loss.

    Args:
      predictions, targets: same shape; x = predictions - targets.
      alpha: shape, a scalar or an array broadcastable to the predictions; any value in
        [-inf, inf) (2: half squared error; 1: sqrt((x/c)^2 + 1) - 1; 0: log(x^2/(2c^2) + 1);
        -2: Geman-McClure 2(x/c)^2 / ((x/c)^2 + 4); -inf: 1 - exp(-(x/c)^2 / 2)).
      scale: c > 0, scalar or broadcastable; the width of the quadratic bowl near 0.

    Derivatives: :math:`\partial\rho/\partial x = (x/c^2)\,u^{\alpha/2-1}` with
    :math:`u = (x/c)^2/|\alpha-2| + 1`; :math:`\partial\rho/\partial c = -(x/c)\,\partial\rho/\partial x`;
    ``.grad(wrt="alpha")`` and ``.grad(wrt="scale")`` give the hand-derived gradients w.r.t.
    the shape and scale (summed over broadcast axes), so both can be learned.
    """
    name = "adaptive_robust"
    targets = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "predictions", predictions, "targets", targets)
    _checks.in_range(name, "scale", scale, lo=0, lo_open=True)
    a_concrete = alpha if isinstance(alpha, jax.core.Tracer) else np.asarray(alpha)
    if not isinstance(a_concrete, jax.core.Tracer) and (
            np.any(np.isnan(a_concrete)) or np.any(np.isposinf(a_concrete))):
        raise ValueError(f"{name}: `alpha` must lie in [-inf, inf), got {np.asarray(alpha).tolist()}.")
    dtype = predictions.dtype
    x = predictions - targets.astype(dtype)
    alpha = jnp.broadcast_to(jnp.asarray(alpha, dtype), x.shape)
    c = jnp.asarray(scale, dtype)
    z2 = (x / c) ** 2

    is_two, is_welsch = alpha == 2, jnp.isneginf(alpha)
    a = jnp.where(is_two | is_welsch, 1.0, alpha)       # safe stand-in for the general branch
    b = jnp.abs(a - 2)
    s = jnp.sign(a - 2)
    L = jnp.log1p(z2 / b)
    t = a * L / 2
    general = b * (L / 2) * _phi(t)
    value = jnp.where(is_two, z2 / 2, jnp.where(is_welsch, -jnp.expm1(-z2 / 2), general))

    def power():  # u^(alpha/2 - 1), with its limits
        general_ = jnp.exp((a / 2 - 1) * L)
        return jnp.where(is_two, 1.0, jnp.where(is_welsch, jnp.exp(-z2 / 2), general_))

    def d_x():
        return x / c ** 2 * power()

    def d2_x():
        u = 1 + z2 / b
        general_ = jnp.exp((a / 2 - 1) * L) * (1 + s * z2 / u)
        welsch = jnp.exp(-z2 / 2) * (1 - z2)
        return jnp.where(is_two, 1.0, jnp.where(is_welsch, welsch, general_)) / c ** 2

    def d_alpha():
        # d rho / d alpha = s phi(t) [L - w/(1+w)] / 2 + b (L/2) psi(t) (L + alpha L') / 2,
        # w = (x/c)^2 / b, L' = dL/d alpha; the first bracket is computed without cancelling.
        w = z2 / b
        dL = -s * w / (b * (1 + w))
        general_ = s * _phi(t) * _log1p_gap(w) / 2 + b * (L / 2) * _psi(t) * (L + a * dL) / 2
        at_two = jnp.where(x == 0, 0.0, jnp.inf)
        return jnp.where(is_two, at_two, jnp.where(is_welsch, 0.0, general_))

    return Terms(value, grad=d_x, hess=d2_x,
                 partials={"alpha": d_alpha, "scale": lambda: -(x / c) * d_x()})
