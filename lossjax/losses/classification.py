"""Classification losses, binary and margin ones (elementwise); the multi-class losses over a
class axis are in :mod:`lossjax.losses.multiclass` (same family, "classification").

Multi-class losses take logits (or log-probabilities) with the classes along ``axis``
(default -1) and either integer class indices, shaped like the logits without that axis, or,
where stated, probability targets shaped like the logits. Their elements (what ``weights``
and ``where`` refer to) are the examples, i.e. the logits' shape without the class axis.

Label values that are out of range (negative other than ``ignore_index``, or >= the number of
classes) cannot be seen at trace time. They are treated exactly like ``ignore_index``: they
contribute 0 to the value and the gradient and do not count in the mean's denominator.
``lj.checked`` turns them into errors.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import hinge_slope


# -- shared pieces ------------------------------------------------------------------------

def _clamped_log(x):
    """``max(log x, -100)`` (PyTorch's clamp) with a derivative that is 0, not NaN, where the
    clamp is active. Returns (value, where the log is not clamped)."""
    positive = x > 0
    log_x = jnp.log(jnp.where(positive, x, 1.0))
    inside = positive & (log_x > -100)
    return jnp.where(inside, log_x, -100.0), inside


def _class_weight(name, weight, num_classes, dtype):
    if weight is None:
        return None
    weight = _checks.floating(name, "weight", weight)
    if weight.shape != (num_classes,):
        raise ValueError(f"{name}: `weight` must have shape ({num_classes},), one weight per "
                         f"class, got {tuple(weight.shape)}.")
    return weight.astype(dtype)


def _index_labels(name, predictions_name, predictions, labels, axis, num_classes, ignore_index):
    """Validate integer labels against the (unmoved) predictions; return (safe labels,
    valid mask)."""
    labels = _checks.integer_labels(name, "labels", labels)
    expected = predictions.shape[:axis] + predictions.shape[axis + 1:]
    if labels.shape != expected:
        raise ValueError(
            f"{name}: integer `labels` must have the shape of `{predictions_name}` without the "
            f"class axis {axis}, i.e. {tuple(expected)}; got {tuple(labels.shape)}.")
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    return jnp.where(valid, labels, 0), valid


def _take(x, labels):
    return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _back(x, axis):
    """Move a last-axis class dimension back to ``axis``."""
    return jnp.moveaxis(x, -1, axis)


def _logits_sampler(*, labels, hyper=None, edge_hyper=None, shape=_sampling.GENERIC_SHAPE):
    """Sampler over (logits, labels) for multi-class losses.

    labels: "index" (integers, one of them ignored) or "probabilities"; edge samples saturate
    the logits (+-1e4) with the label on the largest and on the smallest logit.
    """
    num_classes = shape[-1]

    def sample(key, dtype, kind):
        k1, k2, k3 = jax.random.split(key, 3)
        if kind == "generic":
            logits = _sampling.normal(k1, shape, dtype, 2.0)
            target = _sampling.class_labels(k2, shape[:-1], num_classes)
            if labels == "probabilities":
                target = jax.nn.softmax(_sampling.normal(k2, shape, jnp.float32)).astype(dtype)
            else:
                target = target.at[0].set(-100)
            return Sample((logits, target), _sampling.hyper(hyper, dtype))
        s = _sampling.saturating(dtype)
        logits = jnp.asarray([[s, 0, 0, -s], [s, 0, 0, -s], [0, 0, 0, 0], [s, s, -s, -s],
                              [-s, 3, 2, 1]], dtype)
        index = jnp.asarray([0, 3, 2, 1, 0], jnp.int32)
        target = index
        if labels == "probabilities":
            target = jnp.asarray([[1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0.5, 0, 0],
                                  [0, 0.25, 0.25, 0.5], [0, 0, 0, 1]], dtype)
        return Sample((logits, target),
                      _sampling.hyper(edge_hyper if edge_hyper is not None else hyper, dtype))
    return sample


# -- binary ---------------------------------------------------------------------------------

def _bce_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        p = _sampling.uniform(k1, _sampling.GENERIC_SHAPE, dtype, 0.02, 0.98)
        t = _sampling.uniform(k2, _sampling.GENERIC_SHAPE, dtype)
        return Sample((p, t), {})
    eps = 2.0 ** -10
    p = [0, 0, 0, 1, 1, 1, 0.5, eps, 1 - eps, eps, 1 - eps]
    t = [0, 1, 0.5, 0, 1, 0.5, 1, 1, 0, 0, 1]
    return Sample((jnp.asarray(p, dtype), jnp.asarray(t, dtype)), {})


# -- perfect predictions (Loss.perfect) -------------------------------------------------------

def _hard_probabilities(s):
    p, t = s.args
    hard = (t > 0.5).astype(t.dtype)
    return Sample((hard.astype(p.dtype), hard), s.kwargs)


def _hard_logits(s):
    z, t = s.args
    hard = t > 0.5
    return Sample((_sampling.saturated_signs(hard, z.dtype), hard.astype(t.dtype)), s.kwargs)


def _beyond_margin(s):
    scores, labels = s.args
    return Sample(((2 * labels).astype(scores.dtype), labels), s.kwargs)


def _one_hot_logits(s):
    """Saturated logits on the label; probability targets made one-hot; no smoothing."""
    z, labels = s.args
    kwargs = {k: v for k, v in s.kwargs.items() if k != "label_smoothing"}
    index = labels
    if jnp.issubdtype(labels.dtype, jnp.floating):          # probability targets -> one-hot
        index = jnp.argmax(labels, -1)
        labels = jax.nn.one_hot(index, z.shape[-1], dtype=labels.dtype)
    return Sample((_sampling.saturated_one_hot(index, z.shape[-1], z.dtype), labels), kwargs)


def _one_hot_log_probs(s):
    lp, labels = s.args
    return Sample((_sampling.saturated_one_hot(labels, lp.shape[-1], lp.dtype)
                   - _sampling.saturating(lp.dtype), labels), s.kwargs)


def _log_of_targets(s):
    lq, t = s.args
    return Sample((jnp.log(jnp.where(t > 0, t, 1)).astype(lq.dtype), t), s.kwargs)


@loss(constraints=[_domain.unit_interval("probabilities"), _domain.unit_interval("targets")],
      nonnegative=True, perfect=_hard_probabilities, family="classification", elementwise=True,
      formula=r"\ell = -\left[y \max(\log p, -100) + (1 - y)\max(\log(1-p), -100)\right]",
      sampler=_bce_sample,
      kinks=[Kink("log p == -100 or log(1-p) == -100 (p within e^-100 of 0 or 1, below "
                  "float32's normal range)", "the clamped term contributes 0",
                  lambda p, t: (jnp.log(p) == -100) | (jnp.log1p(-p) == -100))])
def binary_cross_entropy(probabilities, targets):
    r"""Binary cross-entropy on probabilities (PyTorch binary_cross_entropy).

    Args:
      probabilities: predicted probabilities in [0, 1]; exactly 0 and 1 are valid.
      targets: target probabilities in [0, 1] (hard 0/1 or soft), same shape.

    Each log is clamped at -100 like PyTorch, so p = 0 or 1 gives a finite loss (at most 100),
    and the gradient of the clamped value is exact: :math:`-y/p + (1-y)/(1-p)`, with a term
    that is 0 where its log is clamped. ``log(1-p)`` is computed as ``log1p(-p)``, accurate for
    small p. Values outside [0, 1] count as clamped (deterministic, meaningless);
    ``lj.checked`` rejects them.
    """
    t = _checks.floating("binary_cross_entropy", "targets", targets)
    _checks.same_shape("binary_cross_entropy", "probabilities", probabilities, "targets", t)
    p, t = probabilities, t.astype(probabilities.dtype)
    log_p, in_p = _clamped_log(p)
    q = 1 - p
    below_one = p < 1
    log_q = jnp.log1p(-jnp.where(below_one, p, 0.0))
    in_q = below_one & (log_q > -100)
    log_q = jnp.where(in_q, log_q, -100.0)
    safe_p, safe_q = jnp.where(in_p, p, 1.0), jnp.where(in_q, q, 1.0)
    return Terms(
        -(t * log_p + (1 - t) * log_q),
        grad=lambda: -t * in_p / safe_p + (1 - t) * in_q / safe_q,
        hess=lambda: t * in_p / safe_p ** 2 + (1 - t) * in_q / safe_q ** 2)


def _binary_logits_sample(hyper, edge_hyper):
    def sample(key, dtype, kind):
        k1, k2 = jax.random.split(key)
        if kind == "generic":
            z = _sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 3.0)
            t = _sampling.bernoulli(k2, 0.3, _sampling.GENERIC_SHAPE, dtype)
            return Sample((z, t), _sampling.hyper(hyper, dtype))
        s = _sampling.saturating(dtype)
        z = [s, s, s, -s, -s, -s, 0, 0, 30, -30, 2]
        t = [1, 0, 0.5, 1, 0, 0.5, 1, 0.5, 0, 1, 0.25]
        return Sample((jnp.asarray(z, dtype), jnp.asarray(t, dtype)), dict(edge_hyper))
    return sample


@loss(constraints=[_domain.unit_interval("targets")],
      nonnegative=True, perfect=_hard_logits, family="classification", elementwise=True,
      formula=r"\ell = -\left[w_+ y \log\sigma(z) + (1 - y)\log\sigma(-z)\right]",
      sampler=_binary_logits_sample(
          {"pos_weight": np.linspace(0.5, 3.0, 5)},
          {"pos_weight": 2.0}))
def binary_cross_entropy_with_logits(logits, targets, *, pos_weight=None):
    r"""Binary cross-entropy on logits (optax sigmoid_binary_cross_entropy; PyTorch
    binary_cross_entropy_with_logits).

    Args:
      logits: real scores z; finite for any magnitude (computed with softplus).
      targets: target probabilities in [0, 1], same shape.
      pos_weight: weight of the positive term, a scalar or an array broadcastable to the
        logits (one per class along the last axis, as PyTorch).

    Derivatives: :math:`(1-y)\sigma(z) - w_+ y\,\sigma(-z)` (:math:`\sigma(z) - y` when
    :math:`w_+ = 1`) and :math:`(w_+ y + 1 - y)\sigma(z)\sigma(-z)`.
    """
    name = "binary_cross_entropy_with_logits"
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "logits", logits, "targets", t)
    z, t = logits, t.astype(logits.dtype)
    pw = 1.0
    if pos_weight is not None:
        pw = jnp.asarray(pos_weight)
        _checks.broadcastable_to(name, "pos_weight", pw, z.shape, "the logits' shape")
        pw = pw.astype(z.dtype)
    value = pw * t * jax.nn.softplus(-z) + (1 - t) * jax.nn.softplus(z)
    s, s_bar = jax.nn.sigmoid(z), jax.nn.sigmoid(-z)
    return Terms(value, grad=lambda: (1 - t) * s - pw * t * s_bar,
                 hess=lambda: (pw * t + 1 - t) * s * s_bar)


def _log_one_minus_pt(t, ls_pos, ls_neg):
    """log(1 - p_t) = log(t sigma(-z) + (1 - t) sigma(z)), formed in log space (finite at
    saturated logits); log t and log(1 - t) are -inf at hard targets, taken without NaN."""
    log_t = jnp.where(t > 0, jnp.log(jnp.where(t > 0, t, 1.0)), -jnp.inf)
    log_1mt = jnp.where(t < 1, jnp.log1p(-jnp.where(t < 1, t, 0.0)), -jnp.inf)
    return jnp.logaddexp(log_t + ls_neg, log_1mt + ls_pos), log_t, log_1mt


@jax.custom_jvp
def _focal_factor(t, ls_pos, ls_neg, gamma):
    """The modulating factor (1 - p_t)^gamma. Its derivatives are written out: autodiff of the
    log-space form differentiates log t and log(1 - t), which is 0 x inf = NaN at hard targets,
    while the derivative in t is gamma (1 - p_t)^(gamma - 1) (sigma(-z) - sigma(z))."""
    return jnp.exp(gamma * _log_one_minus_pt(t, ls_pos, ls_neg)[0])


def _focal_factor_jvp(primals, tangents):
    t, ls_pos, ls_neg, gamma = primals
    dt, d_pos, d_neg, d_gamma = tangents
    log_q, log_t, log_1mt = _log_one_minus_pt(t, ls_pos, ls_neg)
    factor = jnp.exp(gamma * log_q)
    d_factor = jnp.zeros_like(factor)

    def given(d):
        return not isinstance(d, jax.custom_derivatives.SymbolicZero)
    if given(d_pos) or given(d_neg):      # logaddexp's weights, each in [0, 1]
        d_log_q = 0.0
        if given(d_neg):
            d_log_q = d_log_q + jnp.exp(log_t + ls_neg - log_q) * d_neg
        if given(d_pos):
            d_log_q = d_log_q + jnp.exp(log_1mt + ls_pos - log_q) * d_pos
        d_factor = d_factor + gamma * factor * d_log_q
    if given(dt):       # infinite for gamma < 1 at saturated logits: the largest finite number
        slope = gamma * jnp.exp((gamma - 1) * log_q) * (jnp.exp(ls_neg) - jnp.exp(ls_pos))
        big = jnp.finfo(log_q.dtype).max
        d_factor = d_factor + jnp.nan_to_num(slope, nan=0.0, posinf=big, neginf=-big) * dt
    if given(d_gamma):
        d_factor = d_factor + jnp.where(factor > 0, factor * log_q, 0.0) * d_gamma
    return factor, d_factor


_focal_factor.defjvp(_focal_factor_jvp, symbolic_zeros=True)


@loss(constraints=[_domain.unit_interval("targets")],
      nonnegative=True, perfect=_hard_logits, family="classification", elementwise=True,
      formula=r"\ell = -\alpha_y (1 - p_t)^\gamma \log p_t,\ p_t = y\sigma(z) + (1-y)\sigma(-z)",
      sampler=_binary_logits_sample({"alpha": 0.25, "gamma": 2.0}, {"gamma": 0.5}),
      references=["Lin, Goyal, Girshick, He, Dollar, Focal Loss for Dense Object Detection, "
                  "ICCV 2017."])
def focal_loss(logits, targets, *, alpha=None, gamma=2.0):
    r"""Binary focal loss on logits (Lin et al. 2017; optax sigmoid_focal_loss).

    :math:`\ell = a_y\,(1-p_t)^\gamma\,\mathrm{BCE}(z, y)` with :math:`a_y = \alpha y +
    (1-\alpha)(1-y)` when ``alpha`` is given. Soft targets are allowed (as optax); with
    gamma = 0 and no alpha it is exactly binary cross-entropy with logits.

    The modulating factor is computed in log space,
    :math:`(1-p_t)^\gamma = \exp(\gamma\,\mathrm{logaddexp}(\log y + \log\sigma(-z),
    \log(1-y) + \log\sigma(z)))`, so gamma < 1 and saturated logits give a finite value and
    finite gradients (the direct power has an infinite derivative at :math:`p_t = 1`).

    Args:
      logits: real scores.
      targets: labels in [0, 1], same shape.
      alpha: weight of the positive class in [0, 1], or None for no weighting.
      gamma: focusing parameter >= 0.
    """
    name = "focal_loss"
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "logits", logits, "targets", t)
    _checks.in_range(name, "gamma", gamma, lo=0)
    z, t = logits, t.astype(logits.dtype)
    a = 1.0
    if alpha is not None:
        _checks.in_range(name, "alpha", alpha, lo=0, hi=1)
        a = alpha * t + (1 - alpha) * (1 - t)
    ls_pos, ls_neg = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    ce = -(t * ls_pos + (1 - t) * ls_neg)
    factor = _focal_factor(t, ls_pos, ls_neg, gamma)
    log_one_minus_pt = _log_one_minus_pt(t, ls_pos, ls_neg)[0]

    def pieces():
        s, s_bar = jnp.exp(ls_pos), jnp.exp(ls_neg)
        dlog = (1 - 2 * t) * jnp.exp(ls_pos + ls_neg - log_one_minus_pt)   # d log(1-p_t)/dz
        dfactor = gamma * factor * dlog
        return s, s_bar, dlog, dfactor

    def grad():
        s, _, _, dfactor = pieces()
        return a * (dfactor * ce + factor * (s - t))

    def hess():
        s, s_bar, dlog, dfactor = pieces()
        d2factor = gamma * factor * ((gamma - 1) * dlog ** 2 + dlog * (s_bar - s))
        return a * (d2factor * ce + 2 * dfactor * (s - t) + factor * s * s_bar)

    return Terms(a * factor * ce, grad=grad, hess=hess)


def _hinge_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 2.0),
                       _sampling.signs(k2, _sampling.GENERIC_SHAPE, dtype)), {})
    b = _sampling.big(dtype)
    scores = [1, -1, 0, 0, 2, -2, 0.5, b, -b]
    labels = [1, -1, 1, -1, 1, 1, -1, 1, 1]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(labels, dtype)), {})


def _margin(name, scores, labels):
    labels = jnp.asarray(labels)
    if labels.dtype == jnp.bool_ or not (jnp.issubdtype(labels.dtype, jnp.floating)
                                         or jnp.issubdtype(labels.dtype, jnp.signedinteger)):
        raise TypeError(f"{name}: `labels` must be numbers in {{-1, +1}}, got "
                        f"{_checks.describe(labels)}.")
    _checks.same_shape(name, "scores", scores, "labels", labels)
    y = labels.astype(scores.dtype)
    return y, 1 - y * scores


def _on_margin(s, y):
    return y * s == 1


@loss(constraints=[_domain.signs("labels")],
      nonnegative=True, perfect=_beyond_margin, family="classification", elementwise=True,
      formula=r"\ell = \max(0,\ 1 - y z),\ y \in \{-1, +1\}",
      sampler=_hinge_sample,
      kinks=[Kink("labels * scores == 1", "-labels / 2 (midpoint of -labels and 0)", _on_margin)])
def hinge(scores, labels):
    r"""Hinge loss :math:`\max(0, 1 - yz)` (optax hinge_loss).

    Args:
      scores: real classifier outputs.
      labels: -1 or +1 (integers or floats), same shape. Other values are used as given in
        the formula.

    Derivative: :math:`-y` inside the margin, 0 outside.
    """
    y, m = _margin("hinge", scores, labels)
    return Terms(jnp.maximum(0.0, m),
                 grad=lambda: -y * hinge_slope(m),
                 hess=lambda: jnp.zeros_like(m))


@loss(constraints=[_domain.signs("labels")],
      nonnegative=True, perfect=_beyond_margin, family="classification", elementwise=True,
      formula=r"\ell = \max(0,\ 1 - y z)^2,\ y \in \{-1, +1\}",
      sampler=_hinge_sample,
      kinks=[Kink("labels * scores == 1", "second derivative labels^2 (midpoint of 2 labels^2 "
                  "and 0); the gradient is continuous", _on_margin, order=2)])
def squared_hinge(scores, labels):
    r"""Squared hinge loss :math:`\max(0, 1 - yz)^2`: differentiable, quadratic inside the margin.

    Derivatives: :math:`-2y\max(0, 1 - yz)` and :math:`2y^2` inside the margin.
    """
    y, m = _margin("squared_hinge", scores, labels)
    h = jnp.maximum(0.0, m)
    return Terms(h * h, grad=lambda: -2 * y * h,
                 hess=lambda: 2 * y * y * hinge_slope(m))


# -- multi-class ----------------------------------------------------------------------------
