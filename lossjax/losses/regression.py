"""Regression losses: elementwise functions of predictions and targets of the same shape.

Every loss here takes ``(predictions, targets)`` of identical shape (no silent broadcasting)
plus keyword-only hyperparameters and the reduction keywords ``reduction``, ``weights`` and
``where`` (see :mod:`lossjax.reduce`). Values and hand-derived derivatives are computed in
float32 for float16/bfloat16 inputs and returned in the input dtype.

At a kink ``.grad`` returns the midpoint of the one-sided derivatives, the centre of the
subdifferential (0 for |r| at 0); JAX's own ``maximum`` makes the same choice at ties, so
autodiff of these definitions agrees with ``.grad`` there too.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import abs_mid as _abs, hinge_slope

_LOG2 = math.log(2.0)


def _targets(name, predictions, targets):
    """Floating targets of the predictions' shape, in the predictions' dtype."""
    targets = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "predictions", predictions, "targets", targets)
    return targets.astype(predictions.dtype)


def _residual(name, predictions, targets):
    return predictions - _targets(name, predictions, targets)


def _residual_sampler(*, residuals_edge, hyper=None, edge_hyper=None):
    """Sampler over (predictions, targets): normal for generic, exact residuals for edge."""
    def sample(key, dtype, kind):
        k1, k2 = jax.random.split(key)
        if kind == "generic":
            predictions = _sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 2.0)
            targets = _sampling.normal(k2, _sampling.GENERIC_SHAPE, dtype)
            return Sample((predictions, targets), _sampling.hyper(hyper, dtype))
        b = _sampling.big(dtype)
        residuals = [r if r != "big" else b for r in residuals_edge]
        residuals = residuals + [-r for r in residuals if r != 0]
        return Sample(_sampling.residual_edge(k1, dtype, residuals),
                      _sampling.hyper(edge_hyper or hyper, dtype))
    return sample


_STANDARD_EDGE = [0.0, 2.0 ** -12, 1.0, "big"]


def _residual_is_zero(predictions, targets, **_):
    return predictions == targets


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = (\hat y - y)^2",
      sampler=_residual_sampler(residuals_edge=_STANDARD_EDGE))
def mse(predictions, targets):
    r"""Squared error :math:`(\hat y - y)^2`; with the default mean reduction, the MSE.

    Args:
      predictions: floating array of any shape.
      targets: array of the same shape.

    Derivatives: :math:`2(\hat y - y)`, second derivative 2.
    """
    r = _residual("mse", predictions, targets)
    return Terms(r * r, grad=lambda: 2 * r, hess=lambda: jnp.full_like(r, 2))


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \lvert \hat y - y\rvert",
      sampler=_residual_sampler(residuals_edge=_STANDARD_EDGE),
      kinks=[Kink("predictions == targets", "0 (midpoint of -1 and +1)", _residual_is_zero)])
def mae(predictions, targets):
    r"""Absolute error :math:`|\hat y - y|`; with the mean reduction, the MAE (PyTorch's l1_loss).

    Derivative: :math:`\operatorname{sign}(\hat y - y)`, 0 at a zero residual (a kink).
    """
    r = _residual("mae", predictions, targets)
    return Terms(_abs(r), grad=lambda: jnp.sign(r), hess=lambda: jnp.zeros_like(r))


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \begin{cases} \tfrac12 r^2 & \lvert r\rvert \le \delta \\ \delta(\lvert r\rvert - \tfrac12\delta) & \lvert r\rvert > \delta \end{cases},\ r = \hat y - y",
      sampler=_residual_sampler(residuals_edge=[0.0, 0.5, 2.0 ** -12, "big"],
                                hyper={"delta": 0.5}),
      kinks=[Kink("abs(predictions - targets) == delta",
                  "second derivative 1/2 (midpoint of 1 and 0); the gradient is continuous",
                  lambda p, t, delta=1.0: _abs(p - t) == delta, order=2)],
      references=["Huber, Robust Estimation of a Location Parameter, 1964."])
def huber(predictions, targets, *, delta=1.0):
    r"""Huber loss: quadratic for :math:`|r| \le \delta`, linear beyond (optax huber_loss, PyTorch
    huber_loss).

    Args:
      delta: positive threshold between the quadratic and linear regimes.

    Derivative: :math:`\operatorname{clip}(r, -\delta, \delta)`.
    """
    _checks.in_range("huber", "delta", delta, lo=0, lo_open=True)
    r = _residual("huber", predictions, targets)
    a = _abs(r)
    value = jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    return Terms(value, grad=lambda: jnp.clip(r, -delta, delta),
                 hess=lambda: hinge_slope(delta - a))


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \begin{cases} \tfrac{1}{2\beta} r^2 & \lvert r\rvert < \beta \\ \lvert r\rvert - \tfrac12\beta & \lvert r\rvert \ge \beta \end{cases},\ r = \hat y - y",
      sampler=_residual_sampler(residuals_edge=[0.0, 0.5, 2.0 ** -12, "big"],
                                hyper={"beta": 0.5}),
      kinks=[Kink("abs(predictions - targets) == beta > 0",
                  "second derivative 1/(2 beta) (midpoint of 1/beta and 0)",
                  lambda p, t, beta=1.0: (_abs(p - t) == beta) & (beta > 0), order=2),
             Kink("predictions == targets with beta == 0 (the loss is then |r|)",
                  "0 (midpoint of -1 and +1)",
                  lambda p, t, beta=1.0: (p == t) & (beta == 0))],
      references=["Girshick, Fast R-CNN, ICCV 2015."])
def smooth_l1(predictions, targets, *, beta=1.0):
    r"""Smooth L1 loss (PyTorch smooth_l1_loss): Huber divided by beta; beta = 0 gives |r|.

    Args:
      beta: non-negative width of the quadratic zone.

    Derivative: :math:`\operatorname{clip}(r/\beta, -1, 1)` (sign(r) when beta = 0).
    """
    _checks.in_range("smooth_l1", "beta", beta, lo=0)
    r = _residual("smooth_l1", predictions, targets)
    a = _abs(r)
    safe_beta = jnp.where(beta > 0, beta, 1.0)
    value = jnp.where(a < beta, 0.5 * r * r / safe_beta, a - 0.5 * beta)
    return Terms(
        value,
        grad=lambda: jnp.where(a < beta, r / safe_beta, jnp.sign(r)),
        hess=lambda: hinge_slope(beta - a) / safe_beta * (beta > 0))


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \log\cosh(\hat y - y)",
      sampler=_residual_sampler(residuals_edge=_STANDARD_EDGE))
def log_cosh(predictions, targets):
    r"""Log-cosh loss :math:`\log\cosh r`: about :math:`r^2/2` near 0 and :math:`|r| - \log 2`
    far out. Computed as :math:`r + \operatorname{softplus}(-2r) - \log 2`, finite for any r
    and smooth to every order under autodiff (a form through |r| has a wrong autodiff
    second derivative at 0).

    Derivatives: :math:`\tanh r` and :math:`\operatorname{sech}^2 r` (computed as
    :math:`1/\cosh^2 r`, which keeps full relative precision where :math:`1 - \tanh^2 r`
    cancels).
    """
    r = _residual("log_cosh", predictions, targets)
    value = r + jax.nn.softplus(-2 * r) - _LOG2
    return Terms(value, grad=lambda: jnp.tanh(r), hess=lambda: 1 / jnp.cosh(r) ** 2)


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \max(\tau (y - \hat y),\ (\tau - 1)(y - \hat y))",
      sampler=_residual_sampler(residuals_edge=_STANDARD_EDGE, hyper={"tau": 0.3}),
      kinks=[Kink("predictions == targets", "1/2 - tau (midpoint of -tau and 1 - tau)",
                  _residual_is_zero)],
      references=["Koenker & Bassett, Regression Quantiles, Econometrica 1978."])
def quantile(predictions, targets, *, tau=0.5):
    r"""Pinball (quantile) loss; minimised by the tau-quantile of the targets.

    Args:
      tau: quantile level in (0, 1); tau = 0.5 gives half the absolute error.

    Derivative w.r.t. the prediction: :math:`-\tau` below the target, :math:`1 - \tau` above.
    """
    _checks.in_range("quantile", "tau", tau, lo=0, hi=1, lo_open=True, hi_open=True)
    r = -_residual("quantile", predictions, targets)  # y - y_hat
    value = jnp.maximum(tau * r, (tau - 1) * r)
    return Terms(value,
                 grad=lambda: jnp.where(r > 0, -tau, jnp.where(r < 0, 1 - tau, 0.5 - tau)),
                 hess=lambda: jnp.zeros_like(r))


def _poisson_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        rates = _sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype)
        counts = _sampling.poisson(k2, 2.0, _sampling.GENERIC_SHAPE, dtype)
        return Sample((rates, counts), {})
    log_rates = jnp.asarray([-40.0, -40.0, 0.0, 0.0, 8.0, 8.0, 3.0], dtype)
    counts = jnp.asarray([0.0, 3.0, 0.0, 1.0, 0.0, 2000.0, 1.0], dtype)
    return Sample((log_rates, counts), {"full": True})


@loss(constraints=[_domain.nonnegative("targets"),
          _domain.nonnegative("predictions", when=lambda a: not a["log_input"])],
      family="regression", elementwise=True,
      formula=r"\ell = e^{\hat y} - y\hat y\ \text{(log input)};\quad \hat y - y\log(\hat y + \epsilon)\ \text{(rate input)}",
      sampler=_poisson_sample)
def poisson_nll(predictions, targets, *, log_input=True, full=False, eps=1e-8):
    r"""Poisson negative log-likelihood (PyTorch poisson_nll_loss).

    Args:
      predictions: log-rates (``log_input=True``) or rates >= 0 (``log_input=False``).
      targets: observed counts (non-negative floats), same shape.
      log_input: whether predictions are log-rates.
      full: add the Stirling approximation of :math:`\log y!`,
        :math:`y\log y - y + \tfrac12\log(2\pi y)`, for targets > 1 (as PyTorch).
      eps: added to rates before the log when ``log_input=False``.

    Derivatives: :math:`e^{\hat y} - y` and :math:`e^{\hat y}` (log input);
    :math:`1 - y/(\hat y + \epsilon)` and :math:`y/(\hat y + \epsilon)^2` (rates).
    """
    _checks.in_range("poisson_nll", "eps", eps, lo=0, lo_open=True)
    y = _targets("poisson_nll", predictions, targets)
    if log_input:
        rate = jnp.exp(predictions)
        value = rate - y * predictions
        grad, hess = (lambda: rate - y), (lambda: rate)
    else:
        shifted = predictions + eps
        value = predictions - y * jnp.log(shifted)
        grad, hess = (lambda: 1 - y / shifted), (lambda: y / shifted ** 2)
    if full:
        safe_y = jnp.where(y > 1, y, 1.0)
        stirling = safe_y * jnp.log(safe_y) - safe_y + 0.5 * jnp.log(2 * jnp.pi * safe_y)
        value = value + jnp.where(y > 1, stirling, 0.0)
    return Terms(value, grad=grad, hess=hess)


def _gaussian_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = _sampling.GENERIC_SHAPE
        var = _sampling.uniform(k3, shape, dtype, 0.2, 3.0)
        return Sample((_sampling.normal(k1, shape, dtype, 2.0),
                       _sampling.normal(k2, shape, dtype), var), {})
    # Variances on the clamp (a dyadic eps, exact in every dtype) and just above it, large
    # residuals over small variances. None below eps: there the derivative w.r.t. var is
    # PyTorch's straight-through one, not the derivative of the (flat) value, so a numerical
    # oracle would disagree by design (tests/test_peer_keras.py checks it against torch).
    eps = 2.0 ** -6
    predictions, targets = _sampling.residual_edge(
        k1, dtype, [0.0, 1.0, -1.0, 8.0, 0.5, 2.0 ** -4])
    var = jnp.asarray([eps, 4.0, 2 * eps, 2.0, 1.0, eps], dtype)
    return Sample((predictions, targets, var), {"full": True, "eps": eps})


@jax.custom_jvp
def _clamp_straight_through(x, floor):
    """max(x, floor) whose derivative is 1 everywhere, as a clamp done under torch.no_grad."""
    return jnp.maximum(x, floor)


@_clamp_straight_through.defjvp
def _clamp_straight_through_jvp(primals, tangents):
    """The tangent of x passes unchanged; the floor (eps) is a constant, as in PyTorch."""
    x, floor = primals
    return jnp.maximum(x, floor), tangents[0]


def _at_or_below_eps(predictions, targets, var, full=False, eps=1e-6):
    return jnp.asarray(var) <= eps


@loss(constraints=[_domain.nonnegative("var")],
      family="regression", elementwise=True, grad_wrt=("var",),
      formula=r"\ell = \tfrac12\left(\log\max(\sigma^2,\epsilon) + \frac{(\hat y - y)^2}{\max(\sigma^2,\epsilon)}\right) [+\tfrac12\log 2\pi]",
      sampler=_gaussian_sample,
      kinks=[Kink("var <= eps (the clamp max(var, eps)); below eps the value does not depend "
                  "on var",
                  "straight-through, as PyTorch (its clamp runs under torch.no_grad): "
                  "1/2 (1/v - r^2/v^2) at v = max(var, eps), the derivative from above, for "
                  "every var <= eps; not the value's own derivative, 0 below eps",
                  _at_or_below_eps, argument="var")],
      references=["PyTorch torch.nn.functional.gaussian_nll_loss.",
                  "Nix & Weigend, Estimating the mean and variance of the target probability "
                  "distribution, ICNN 1994."])
def gaussian_nll(predictions, targets, var, *, full=False, eps=1e-6):
    r"""Gaussian negative log-likelihood with predicted variance (PyTorch gaussian_nll_loss).

    Args:
      predictions: predicted means.
      targets: observations, same shape.
      var: predicted variances: the same shape as predictions, the same shape with a last
        dimension of 1 (one variance shared over the last axis), or a scalar. Values below
        ``eps`` (including negative ones) are clamped to ``eps``, so the loss stays finite;
        ``lj.checked`` rejects negative variances.
      full: add the constant :math:`\tfrac12\log 2\pi`.
      eps: the variance clamp, > 0.

    Derivatives w.r.t. the mean: :math:`(\hat y - y)/v` and :math:`1/v`, with
    :math:`v = \max(\sigma^2, \epsilon)`; the loss is smooth in the predictions.

    Derivative w.r.t. the variance (``.grad(..., wrt="var")`` and autodiff alike), PyTorch's
    convention: :math:`\tfrac12(1/v - (\hat y - y)^2/v^2)` for *every* variance, clamped or
    not. PyTorch clamps a copy of ``var`` under ``torch.no_grad``, so its gradient passes the
    clamp as if it were the identity (straight-through): a variance head stuck below ``eps``
    still receives the gradient that pushes it up or down. This is not the derivative of the
    value, which is flat in ``var`` below ``eps`` (a clamp with a true derivative would leave
    such a head with gradient 0 for ever). Differentiating w.r.t. ``eps`` gives 0, as in
    PyTorch, where ``eps`` is a Python float.
    """
    _checks.in_range("gaussian_nll", "eps", eps, lo=0, lo_open=True)
    r = _residual("gaussian_nll", predictions, targets)
    var = _checks.floating("gaussian_nll", "var", var)
    ok = var.shape == r.shape or var.ndim == 0 or (
        var.ndim == r.ndim and var.shape[:-1] == r.shape[:-1] and var.shape[-1] == 1)
    if not ok:
        raise ValueError(
            f"gaussian_nll: `var` has shape {tuple(var.shape)}; expected the predictions' shape "
            f"{tuple(r.shape)}, that shape with a last dimension of 1, or a scalar.")
    v = _clamp_straight_through(var.astype(r.dtype), jnp.asarray(eps, r.dtype))
    value = 0.5 * (jnp.log(v) + r * r / v)
    if full:
        value = value + 0.5 * math.log(2 * math.pi)
    return Terms(value, grad=lambda: r / v, hess=lambda: jnp.broadcast_to(1 / v, r.shape),
                 partials={"var": lambda: 0.5 * (1 / v - r * r / v ** 2)})


# -- Keras 3's regression losses ------------------------------------------------------------
# Keras averages each sample's elements over the last axis and then the batch; these entries
# return the elements themselves, so their default mean over all elements is Keras's value
# (every sample has the same number of elements). Keras's epsilon is keras.backend.epsilon(),
# 1e-7 by default: here the keyword ``eps``.

_KERAS_EPS = 1e-7


def _keras_eps(name, eps):
    _checks.in_range(name, "eps", eps, lo=0, lo_open=True)


def _edge_eps(dtype):
    """A dyadic floor for edge samples: kinks at it are exact in every dtype, and in half
    precision derivatives of order 1/eps still fit."""
    return 2.0 ** -10 if jnp.finfo(dtype).bits >= 32 else 2.0 ** -6


def _mape_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = _sampling.GENERIC_SHAPE
        targets = _sampling.signs(k1, shape, dtype) * _sampling.uniform(k2, shape, dtype, 0.5, 3)
        return Sample((targets + _sampling.normal(k3, shape, dtype), targets), {})
    eps = _edge_eps(dtype)
    off = 1.0 if jnp.finfo(dtype).bits >= 32 else 2.0 ** -4   # a residual over y = 0 (100/eps)
    targets = [0, 0, eps, -eps, eps / 4, 1, -2, 0.5, 3, 1]
    predictions = [0, off, eps, 0, off, 1, -2, 0.25, _sampling.big(dtype), 1 + 2.0 ** -12]
    return Sample((jnp.asarray(predictions, dtype), jnp.asarray(targets, dtype)), {"eps": eps})


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = 100\,\frac{\lvert \hat y - y\rvert}{\max(\lvert y\rvert, \epsilon)}",
      sampler=_mape_sample,
      kinks=[Kink("predictions == targets", "0 (midpoint of -100/max(|y|, eps) and "
                  "+100/max(|y|, eps))", _residual_is_zero),
             Kink("|targets| == eps (the floor of the denominator; the derivative w.r.t. the "
                  "predictions is continuous there)",
                  "w.r.t. the targets, autodiff takes the midpoint (jnp.maximum's tie rule)",
                  lambda p, t, eps=_KERAS_EPS: _abs(t) == eps, argument="targets")],
      references=["Keras 3 keras.losses.MeanAbsolutePercentageError "
                  "(keras.losses.mean_absolute_percentage_error)."])
def mape(predictions, targets, *, eps=_KERAS_EPS):
    r"""Absolute percentage error :math:`100\,|\hat y - y| / \max(|y|, \epsilon)` (Keras 3
    ``keras.losses.MeanAbsolutePercentageError``, ``keras.losses.MAPE``).

    Args:
      predictions: floating array of any shape.
      targets: array of the same shape; targets closer to 0 than ``eps`` divide by ``eps``.
      eps: the floor of the denominator, > 0 (Keras's ``keras.backend.epsilon()``, 1e-7).

    Keras returns the mean over the last axis per sample; the mean over all elements here
    (the default reduction) equals Keras's value averaged over the batch.

    Derivative: :math:`100\,\operatorname{sign}(\hat y - y)/\max(|y|, \epsilon)`, 0 at a zero
    residual (a kink); the second derivative is 0.
    """
    _keras_eps("mape", eps)
    y = _targets("mape", predictions, targets)
    r = predictions - y
    scale = 100 / jnp.maximum(_abs(y), eps)
    return Terms(scale * _abs(r), grad=lambda: scale * jnp.sign(r),
                 hess=lambda: jnp.zeros_like(r))


def _msle_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        shape = _sampling.GENERIC_SHAPE
        return Sample((_sampling.uniform(k1, shape, dtype, 0.05, 4),
                       _sampling.uniform(k2, shape, dtype, 0.05, 4)), {})
    eps = _edge_eps(dtype)
    predictions = [eps, eps, -1, 0, 2, _sampling.big(dtype), 0.5, eps, 3]
    targets = [0, 1, 3, 0, 2, 0, eps, eps, -2]
    return Sample((jnp.asarray(predictions, dtype), jnp.asarray(targets, dtype)), {"eps": eps})


@loss(nonnegative=True, perfect=_sampling.exact_fit, family="regression", elementwise=True,
      formula=r"\ell = \left(\log(1 + \max(\hat y, \epsilon)) - \log(1 + \max(y, \epsilon))\right)^2",
      sampler=_msle_sample,
      kinks=[Kink("predictions == eps (the floor max(predictions, eps))",
                  "the midpoint: half the derivative from above, for .grad and .hess_diag "
                  "alike (below eps the loss is constant)",
                  lambda p, t, eps=_KERAS_EPS: p == eps),
             Kink("targets == eps (the floor max(targets, eps))",
                  "w.r.t. the targets, autodiff takes the midpoint (jnp.maximum's tie rule)",
                  lambda p, t, eps=_KERAS_EPS: t == eps, argument="targets")],
      references=["Keras 3 keras.losses.MeanSquaredLogarithmicError "
                  "(keras.losses.mean_squared_logarithmic_error)."])
def msle(predictions, targets, *, eps=_KERAS_EPS):
    r"""Squared logarithmic error :math:`(\log(1 + \max(\hat y, \epsilon)) - \log(1 +
    \max(y, \epsilon)))^2` (Keras 3 ``keras.losses.MeanSquaredLogarithmicError``,
    ``keras.losses.MSLE``).

    Args:
      predictions: floating array of any shape; values below ``eps`` (zero and negative ones
        included) count as ``eps``, as in Keras.
      targets: array of the same shape, floored at ``eps`` likewise.
      eps: the floor, > 0 (Keras's ``keras.backend.epsilon()``, 1e-7).

    Keras returns the mean over the last axis per sample; the mean over all elements here
    (the default reduction) equals Keras's value averaged over the batch. The logs are
    computed with ``log1p``.

    Derivatives, with :math:`d` the difference of the logs and :math:`u = \max(\hat y,
    \epsilon)`: :math:`2d/(1 + u)` and :math:`2(1 - d)/(1 + u)^2` above ``eps``, 0 below
    (the loss is constant there); at ``predictions == eps`` half of each (a kink).
    """
    _keras_eps("msle", eps)
    y = _targets("msle", predictions, targets)
    u = jnp.maximum(predictions, eps)
    d = jnp.log1p(u) - jnp.log1p(jnp.maximum(y, eps))
    slope = hinge_slope(predictions - eps)
    return Terms(d * d, grad=lambda: 2 * d * slope / (1 + u),
                 hess=lambda: 2 * (1 - d) * slope / (1 + u) ** 2)


def _keras_poisson_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        rates = _sampling.uniform(k1, _sampling.GENERIC_SHAPE, dtype, 0.1, 4)
        counts = _sampling.poisson(k2, 2.0, _sampling.GENERIC_SHAPE, dtype)
        return Sample((rates, counts), {})
    # Small rates, not 0: a numerical oracle's central differences step about 2^-5 either
    # side, and the log is undefined at negative rates (tests/test_peer_keras.py checks rate 0);
    # rate = count (a negative loss); large counts
    small = 2.0 ** -4
    rates = [small, small, 3, 2.0 ** -3, _sampling.big(dtype), 1, 0.5]
    counts = [0, 2, 3, 1, 2000, 0, 1]
    return Sample((jnp.asarray(rates, dtype), jnp.asarray(counts, dtype)), {})


@loss(constraints=[_domain.nonnegative("predictions"), _domain.nonnegative("targets")],
      family="regression", elementwise=True,
      formula=r"\ell = \hat y - y\log(\hat y + \epsilon)",
      sampler=_keras_poisson_sample,
      references=["Keras 3 keras.losses.Poisson (keras.losses.poisson)."])
def poisson(predictions, targets, *, eps=_KERAS_EPS):
    r"""Poisson loss on rates, :math:`\hat y - y\log(\hat y + \epsilon)` (Keras 3
    ``keras.losses.Poisson``): the Poisson negative log-likelihood without the
    :math:`\log y!` term, so it can be negative.

    Args:
      predictions: predicted rates >= 0.
      targets: observed counts >= 0 (floats), same shape.
      eps: added to the rate inside the log, > 0 (Keras's ``keras.backend.epsilon()``, 1e-7).

    Keras returns the mean over the last axis per sample; the mean over all elements here
    (the default reduction) equals Keras's value averaged over the batch. It is
    :func:`poisson_nll` with ``log_input=False`` (PyTorch ``F.poisson_nll_loss``) up to the
    default ``eps``: PyTorch adds 1e-8, Keras 1e-7, so
    ``poisson(p, y) == poisson_nll(p, y, log_input=False, eps=1e-7)``.

    Derivatives: :math:`1 - y/(\hat y + \epsilon)` and :math:`y/(\hat y + \epsilon)^2`.
    """
    _keras_eps("poisson", eps)
    y = _targets("poisson", predictions, targets)
    shifted = predictions + eps
    return Terms(predictions - y * jnp.log(shifted), grad=lambda: 1 - y / shifted,
                 hess=lambda: y / shifted ** 2)
