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


def _smoothed(name, targets, label_smoothing):
    """Keras's binary label smoothing, y (1 - ls) + ls / 2: targets squeezed towards 1/2."""
    _checks.in_range(name, "label_smoothing", label_smoothing, lo=0, hi=1)
    if isinstance(label_smoothing, (int, float)) and label_smoothing == 0:
        return targets
    return targets * (1 - label_smoothing) + 0.5 * label_smoothing


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

def _unsmoothed(kwargs):
    return {k: v for k, v in kwargs.items() if k != "label_smoothing"}


def _hard_probabilities(s):
    """Probabilities equal to hard targets; no label smoothing."""
    p, t = s.args
    hard = (t > 0.5).astype(t.dtype)
    return Sample((hard.astype(p.dtype), hard), _unsmoothed(s.kwargs))


def _hard_logits(s):
    """Saturated logits on hard targets; no label smoothing."""
    z, t = s.args
    hard = t > 0.5
    return Sample((_sampling.saturated_signs(hard, z.dtype), hard.astype(t.dtype)),
                  _unsmoothed(s.kwargs))


def _beyond_margin(s):
    scores, labels = s.args
    return Sample(((2 * labels).astype(scores.dtype), labels), s.kwargs)


def _one_hot_logits(s):
    """Saturated logits on the label; probability targets made one-hot; no smoothing."""
    z, labels = s.args
    kwargs = _unsmoothed(s.kwargs)
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
def binary_cross_entropy(probabilities, targets, *, label_smoothing=0.0):
    r"""Binary cross-entropy on probabilities (PyTorch binary_cross_entropy).

    Args:
      probabilities: predicted probabilities in [0, 1]; exactly 0 and 1 are valid.
      targets: target probabilities in [0, 1] (hard 0/1 or soft), same shape.
      label_smoothing: :math:`\lambda \in [0, 1]`: the targets become
        :math:`y(1 - \lambda) + \lambda/2` (Keras's ``label_smoothing``; PyTorch has none).

    Each log is clamped at -100 like PyTorch, so p = 0 or 1 gives a finite loss (at most 100),
    and the gradient of the clamped value is exact: :math:`-y/p + (1-y)/(1-p)`, with a term
    that is 0 where its log is clamped. ``log(1-p)`` is computed as ``log1p(-p)``, accurate for
    small p. Values outside [0, 1] count as clamped (deterministic, meaningless);
    ``lj.checked`` rejects them.

    Keras 3 ``keras.losses.BinaryCrossentropy(from_logits=False)`` differs near 0 and 1: it
    clips the probabilities to :math:`[\epsilon, 1 - \epsilon]` (:math:`\epsilon` = 1e-7)
    before the logs. The two agree for :math:`p \in [\epsilon, 1 - \epsilon]`; outside,
    Keras's value is the one at the clip (a term is at most :math:`-\log\epsilon = 16.1`, not
    100) and its gradient is 0. Keras's loss is :func:`binary_focal_cross_entropy` with
    ``gamma=0``.
    """
    t = _checks.floating("binary_cross_entropy", "targets", targets)
    _checks.same_shape("binary_cross_entropy", "probabilities", probabilities, "targets", t)
    p = probabilities
    t = _smoothed("binary_cross_entropy", t.astype(p.dtype), label_smoothing)
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
def binary_cross_entropy_with_logits(logits, targets, *, pos_weight=None, label_smoothing=0.0):
    r"""Binary cross-entropy on logits (optax sigmoid_binary_cross_entropy; PyTorch
    binary_cross_entropy_with_logits; Keras 3 ``keras.losses.BinaryCrossentropy(
    from_logits=True)``, whose mean over the last axis and then the batch is the mean here).

    Args:
      logits: real scores z; finite for any magnitude (computed with softplus).
      targets: target probabilities in [0, 1], same shape.
      pos_weight: weight of the positive term, a scalar or an array broadcastable to the
        logits (one per class along the last axis, as PyTorch).
      label_smoothing: :math:`\lambda \in [0, 1]`: the targets become
        :math:`y(1 - \lambda) + \lambda/2`, as Keras (the formulas below then hold with the
        smoothed y).

    Derivatives: :math:`(1-y)\sigma(z) - w_+ y\,\sigma(-z)` (:math:`\sigma(z) - y` when
    :math:`w_+ = 1`) and :math:`(w_+ y + 1 - y)\sigma(z)\sigma(-z)`.
    """
    name = "binary_cross_entropy_with_logits"
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "logits", logits, "targets", t)
    z = logits
    t = _smoothed(name, t.astype(z.dtype), label_smoothing)
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
def focal_loss(logits, targets, *, alpha=None, gamma=2.0, label_smoothing=0.0):
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
      label_smoothing: :math:`\lambda \in [0, 1]`: the targets become
        :math:`y(1 - \lambda) + \lambda/2` everywhere (in :math:`p_t` and :math:`a_y` too),
        as Keras.

    Keras 3 ``keras.losses.BinaryFocalCrossentropy(from_logits=True,
    apply_class_balancing=alpha is not None)`` is the same loss (mean over the last axis,
    then the batch) as long as :math:`\sigma(z) \in [10^{-7}, 1 - 10^{-7}]`: Keras takes the
    sigmoid first and clips it there before the log, so for :math:`|z| \gtrsim 16` its
    cross-entropy term saturates at :math:`-\log 10^{-7}` with gradient 0, while here it
    keeps growing linearly (the exact value). For probabilities see
    :func:`binary_focal_cross_entropy`.
    """
    name = "focal_loss"
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "logits", logits, "targets", t)
    _checks.in_range(name, "gamma", gamma, lo=0)
    z = logits
    t = _smoothed(name, t.astype(z.dtype), label_smoothing)
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


_KERAS_EPS = 1e-7


@jax.custom_jvp
def _power(x, e):
    """x ** e for x >= 0, with 0 ** 0 = 1 and, for e < 0, 0 ** e = a quarter of the largest
    finite number (for +inf: products by the small factors of its derivatives stay finite).
    Its JVP is written with itself, so derivatives of every order are finite at x = 0 and
    match :func:`_power_slope`."""
    positive = x > 0
    value = jnp.exp(e * jnp.log(jnp.where(positive, x, 1.0)))
    at_zero = jnp.where(e > 0, 0.0, jnp.where(e == 0, 1.0, jnp.finfo(value.dtype).max / 4))
    return jnp.where(positive, value, at_zero)


def _power_slope(x, e):
    """d(x ** e)/dx = e x ** (e - 1), 0 when e = 0."""
    return jnp.where(e == 0, 0.0, e * _power(x, e - 1))


@_power.defjvp
def _power_jvp(primals, tangents):
    x, e = primals
    dx, de = tangents
    value = _power(x, e)
    d_e = jnp.where(x > 0, value * jnp.log(jnp.where(x > 0, x, 1.0)), 0.0)   # x^e log x
    return value, _power_slope(x, e) * dx + d_e * de


def _keras_focal_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        p = _sampling.uniform(k1, _sampling.GENERIC_SHAPE, dtype, 0.02, 0.98)
        t = _sampling.bernoulli(k2, 0.3, _sampling.GENERIC_SHAPE, dtype)
        return Sample((p, t), {"gamma": 2.0, "apply_class_balancing": True, "alpha": 0.25,
                               "label_smoothing": 0.1})
    # hard predictions on hard targets (the focal factor 0), confidently wrong ones (outside
    # the clip: only the focal factor varies), the clip's ends (kinks), soft targets. A
    # dyadic eps, exact in every dtype, and wide enough for a numerical oracle's steps to
    # resolve the clip (Keras's 1e-7 is tests/test_peer_keras.py's)
    eps = 2.0 ** -4
    p = [0, 0, 1, 1, 0.5, eps, 1 - eps, eps, 1 - eps, eps / 2, 0.25]
    t = [0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0.5]
    return Sample((jnp.asarray(p, dtype), jnp.asarray(t, dtype)),
                  {"apply_class_balancing": True, "eps": eps})


def _at_the_clip(p, t, eps=_KERAS_EPS, **_):
    return (p == eps) | (p == 1 - eps)


@loss(constraints=[_domain.unit_interval("probabilities"), _domain.unit_interval("targets")],
      nonnegative=True, perfect=_hard_probabilities, family="classification", elementwise=True,
      formula=r"\ell = -a_y (1 - p_t)^\gamma \left[y \log \bar p + (1 - y)\log(1 - \bar p)\right],\ \bar p = \operatorname{clip}(p, \epsilon, 1 - \epsilon),\ p_t = y p + (1 - y)(1 - p)",
      sampler=_keras_focal_sample,
      kinks=[Kink("probabilities == eps or 1 - eps (the ends of the clip)",
                  "the midpoint: the cross-entropy term's derivatives count half (outside the "
                  "clip they are 0)", _at_the_clip)],
      references=["Keras 3 keras.losses.BinaryFocalCrossentropy "
                  "(keras.losses.binary_focal_crossentropy), from_logits=False.",
                  "Lin, Goyal, Girshick, He, Dollar, Focal Loss for Dense Object Detection, "
                  "ICCV 2017."])
def binary_focal_cross_entropy(probabilities, targets, *, gamma=2.0, alpha=0.25,
                               apply_class_balancing=False, label_smoothing=0.0,
                               eps=_KERAS_EPS):
    r"""Binary focal cross-entropy on probabilities, with Keras's conventions (Keras 3
    ``keras.losses.BinaryFocalCrossentropy(from_logits=False)``).

    :math:`\ell = a_y\,(1 - p_t)^\gamma\,\mathrm{BCE}(\bar p, y)`, where the cross-entropy
    takes the probabilities clipped to :math:`[\epsilon, 1 - \epsilon]`, :math:`\bar p`, and
    the focal factor the unclipped :math:`p`: :math:`1 - p_t = y(1 - p) + (1 - y)p`. With
    ``gamma=0`` and no class balancing it is Keras's ``binary_crossentropy`` on
    probabilities. For logits see :func:`focal_loss` (optax's convention, no clip).

    Args:
      probabilities: predicted probabilities in [0, 1]; exactly 0 and 1 are valid.
      targets: target probabilities in [0, 1], same shape.
      gamma: focusing parameter >= 0.
      alpha: weight of the positive class in [0, 1], used when ``apply_class_balancing``:
        :math:`a_y = \alpha y + (1 - \alpha)(1 - y)`; otherwise :math:`a_y = 1`.
      apply_class_balancing: whether to weight the classes by ``alpha``.
      label_smoothing: :math:`\lambda \in [0, 1]`: y becomes :math:`y(1 - \lambda) +
        \lambda/2` everywhere (cross-entropy, focal factor, class weight), as Keras.
      eps: the clip, in (0, 1/2) (Keras's ``keras.backend.epsilon()``, 1e-7).

    Keras returns the mean over the last axis per sample; the mean over all elements here
    (the default reduction) equals Keras's value averaged over the batch.

    Derivative, with :math:`u = 1 - p_t`, :math:`F = u^\gamma`, :math:`B` the clipped
    cross-entropy and :math:`s` = 1 inside the clip, 1/2 at its ends and 0 outside (the
    clipped term is constant there): :math:`a_y[F'(u)(1 - 2y)B + F s(-y/\bar p + (1 - y)/(1 -
    \bar p))]`. The factor is computed as :math:`(u^2)^{\gamma/2}`, even in u: at a hard
    prediction on a hard target (u = 0, where the loss is 0, its minimum) its derivative is
    0 for every gamma, where the one-sided one is infinite for gamma < 1 (Keras's autodiff
    gives +-inf there); its second derivative is the true one for gamma >= 2 and a large
    finite number for 0 < gamma < 2.
    """
    name = "binary_focal_cross_entropy"
    t = _checks.floating(name, "targets", targets)
    _checks.same_shape(name, "probabilities", probabilities, "targets", t)
    _checks.in_range(name, "gamma", gamma, lo=0)
    _checks.in_range(name, "alpha", alpha, lo=0, hi=1)
    _checks.in_range(name, "eps", eps, lo=0, hi=0.5, lo_open=True, hi_open=True)
    p = probabilities
    t = _smoothed(name, t.astype(p.dtype), label_smoothing)
    a = alpha * t + (1 - alpha) * (1 - t) if apply_class_balancing else 1.0
    clipped = jnp.minimum(jnp.maximum(p, eps), 1 - eps)
    inside = hinge_slope(p - eps) * hinge_slope(1 - eps - p)
    ce = -(t * jnp.log(clipped) + (1 - t) * jnp.log1p(-clipped))
    u = t * (1 - p) + (1 - t) * p                           # 1 - p_t
    du = 1 - 2 * t
    half = gamma / 2
    factor = _power(u * u, half)

    def pieces():
        d_ce = inside * (-t / clipped + (1 - t) / (1 - clipped))
        d_factor = _power_slope(u * u, half) * 2 * u             # dF/du
        return d_ce, d_factor

    def grad():
        d_ce, d_factor = pieces()
        return a * (d_factor * du * ce + factor * d_ce)

    def hess():
        d_ce, d_factor = pieces()
        d2_ce = inside * (t / clipped ** 2 + (1 - t) / (1 - clipped) ** 2)
        d2_factor = (jnp.where(half == 0, 0.0, half * _power_slope(u * u, half - 1)) * 4 * u * u
                     + 2 * _power_slope(u * u, half))
        return a * (d2_factor * du ** 2 * ce + 2 * d_factor * du * d_ce + factor * d2_ce)

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

def _categorical_hinge_parts(name, scores, labels, axis, ignore_index):
    """Keras's margin 1 + max_k (1 - t_k) z_k - sum_k t_k z_k with the classes last:
    (margin, the (1 - t) z, their max, targets t, valid examples, the class axis)."""
    ax = _checks.class_axis(name, "scores", scores, axis)
    z = jnp.moveaxis(scores, ax, -1)
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        _checks.targets_shaped_like(name, labels, "scores", scores,
                                    "one-hot or probability targets")
        t, valid = jnp.moveaxis(labels.astype(z.dtype), ax, -1), None
    else:
        safe, valid = _index_labels(name, "scores", scores, labels, ax, z.shape[-1],
                                    ignore_index)
        t = jax.nn.one_hot(safe, z.shape[-1], dtype=z.dtype)
    others = (1 - t) * z
    neg = jnp.max(others, axis=-1)
    return 1 + neg - jnp.sum(t * z, axis=-1), others, neg, t, valid, ax


def _categorical_hinge_ties(scores, labels, axis=-1, ignore_index=-100):
    margin, others, neg, _, _, ax = _categorical_hinge_parts(
        "categorical_hinge", scores, labels, axis, ignore_index)
    at_max = others == neg[..., None]
    tie = at_max & (jnp.sum(at_max, axis=-1, keepdims=True) > 1) & (margin >= 0)[..., None]
    return _back(tie, ax)


def _on_categorical_hinge(scores, labels, axis=-1, ignore_index=-100):
    margin, others, _, _, _, ax = _categorical_hinge_parts(
        "categorical_hinge", scores, labels, axis, ignore_index)
    return _back(jnp.broadcast_to((margin == 0)[..., None], others.shape), ax)


def _categorical_hinge_sample(key, dtype, kind):
    if kind == "generic":
        return _logits_sampler(labels="index")(key, dtype, kind)
    s = _sampling.saturating(dtype)
    # one-hot rows: a tie for the max (active), on the hinge, every other score negative
    # (the label's own 0 is the max), a tie with that 0, confidently wrong and right; soft
    # rows: a tie, a unique max
    scores = [[1, 1, 1, -3], [2, 1, 0.5, -1], [-0.5, -1, -2, -3], [0.5, 0, -1, -2],
              [s, -s, 0, 0.25], [-s, s, -1, -2], [4, 3, 2, -1], [2, 1, 0.5, 0]]
    targets = [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1],
               [0, 1, 0, 0], [0.25, 0, 0.75, 0], [0.5, 0.5, 0, 0]]
    return Sample((jnp.asarray(scores, dtype), jnp.asarray(targets, dtype)), {})


def _beyond_categorical_margin(s):
    """Scores c on the classes a target puts mass on, 0 elsewhere, with c = 2 / (the smallest
    positive target): every margin is then -1."""
    z, labels = s.args
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        return Sample((2 * jax.nn.one_hot(labels, z.shape[-1], dtype=z.dtype), labels),
                      s.kwargs)
    smallest = jnp.min(jnp.where(labels > 0, labels, 1), axis=-1, keepdims=True)
    return Sample((jnp.where(labels > 0, 2 / smallest, 0).astype(z.dtype), labels), s.kwargs)


@loss(constraints=[_domain.class_index(scores="scores"), _domain.unit_interval("labels")],
      nonnegative=True, perfect=_beyond_categorical_margin,
      family="classification", elementwise=False, has_hess_diag=True,
      formula=r"\ell_n = \max\left(0,\ 1 + \max_k (1 - t_{nk}) z_{nk} - \sum_k t_{nk} z_{nk}\right)",
      sampler=_categorical_hinge_sample,
      kinks=[Kink("a tie for the max of (1 - t_k) z_k (with the margin >= 0)",
                  "the tied entries share the max's slope equally (jnp.max's rule)",
                  _categorical_hinge_ties),
             Kink("on the hinge: margin == 0", "half the active gradient",
                  _on_categorical_hinge)],
      references=["Keras 3 keras.losses.CategoricalHinge (keras.losses.categorical_hinge).",
                  "Crammer & Singer, On the Algorithmic Implementation of Multiclass "
                  "Kernel-based Vector Machines, JMLR 2001."])
def categorical_hinge(scores, labels, *, axis=-1, ignore_index=-100):
    r"""Multi-class hinge loss as Keras 3 ``keras.losses.CategoricalHinge``:
    :math:`\max(0, 1 + \mathrm{neg} - \mathrm{pos})` with :math:`\mathrm{neg} = \max_k (1 -
    t_k) z_k` and :math:`\mathrm{pos} = \sum_k t_k z_k`.

    With one-hot targets this is :math:`\max(0, 1 + \max(0, \max_{k \ne y} z_k) - z_y)`: the
    label's own entry enters the max as :math:`(1 - 1) z_y = 0`, so when every other score is
    negative the margin is measured from 0, not from the largest other score (Keras's
    definition; Crammer & Singer's hinge uses :math:`\max_{k \ne y} z_k`).

    Args:
      scores: real scores with the C classes along ``axis``.
      labels: one-hot or probability targets shaped like the scores (as Keras takes them), or
        integer class indices shaped like the scores without ``axis`` (made one-hot).
      axis: the class axis.
      ignore_index: integer label that contributes nothing (integer labels only).

    Elements are the examples; Keras returns the same per-example values, so the default
    mean is Keras's value. Gradient for one example, inside the margin: :math:`(1 - t)\odot
    e_{\arg\max} - t`, the max's slope shared equally by tied entries (ties and the hinge are
    kinks; on the hinge, half); 0 outside. The Hessian is 0.
    """
    margin, others, neg, t, valid, ax = _categorical_hinge_parts(
        "categorical_hinge", scores, labels, axis, ignore_index)
    active = hinge_slope(margin)[..., None]

    def grad():
        at_max = (others == neg[..., None]).astype(t.dtype)
        share = at_max / jnp.sum(at_max, axis=-1, keepdims=True)
        return _back(active * ((1 - t) * share - t), ax)

    return Terms(jnp.maximum(margin, 0.0), grad=grad, hess=lambda: jnp.zeros_like(scores),
                 class_axis=ax, mask=valid)
