"""Metric-learning losses on embeddings (rows of shape (N, D)).

Elements are the rows (pairs, triplets, anchors); ``.grad`` is w.r.t. the first argument and
``.grad(..., wrt=name)`` w.r.t. the other embeddings where listed in ``.grad_wrt``.
Distances are safe at zero: the norm's derivative there is taken as 0 (the minimal-norm
subgradient; the norm is not differentiable at 0), so identical embeddings and zero vectors
give finite gradients, and the p-norm uses absolute values for every p (optax's triplet loss
forgets them for odd p).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import abs_mid as _abs, hinge_slope, lookup


def _pnorm(u, p):
    """||u||_p over the last axis and its derivative d||u||/du (0 where u = 0)."""
    if isinstance(p, (int, float)) and p == 2:        # the default: no abs, no powers
        s = jnp.sum(u * u, axis=-1)
        positive = s > 0
        norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)
        safe_norm = jnp.where(positive, norm, 1.0)[..., None]
        return norm, jnp.where(positive[..., None], u / safe_norm, 0.0)
    s = jnp.sum(_abs(u) ** p, axis=-1)
    positive = s > 0
    safe = jnp.where(positive, s, 1.0)
    norm = jnp.where(positive, safe ** (1.0 / p), 0.0)
    safe_norm = jnp.where(positive, norm, 1.0)[..., None]
    direction = jnp.where(positive[..., None],
                          jnp.sign(u) * (_abs(u) / safe_norm) ** (p - 1), 0.0)
    return norm, direction


def _rows(name, first_name, first, others):
    """Validate (N, D) embeddings of identical shapes."""
    if first.ndim != 2:
        raise ValueError(f"{name}: `{first_name}` must have shape (N, D), got "
                         f"{tuple(first.shape)}.")
    out = []
    for other_name, other in others:
        other = _checks.floating(name, other_name, other)
        _checks.same_shape(name, first_name, first, other_name, other)
        out.append(other.astype(first.dtype))
    return out


def _labelled_rows(name, rows_name, rows, labels):
    """Validate (N, D) rows with one integer label each; return the labels."""
    if rows.ndim != 2:
        raise ValueError(f"{name}: `{rows_name}` must have shape (N, D), got "
                         f"{tuple(rows.shape)}.")
    labels = _checks.integer_labels(name, "labels", labels)
    if labels.shape != rows.shape[:1]:
        raise ValueError(f"{name}: `labels` must have shape ({rows.shape[0]},), got "
                         f"{tuple(labels.shape)}.")
    return labels


def _triplet_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = (5, 4)
        a = _sampling.normal(k1, shape, dtype)
        return Sample((a, a + _sampling.normal(k2, shape, dtype, 0.5),
                       _sampling.normal(k3, shape, dtype)), {"margin": 1.0})
    a = jnp.asarray([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype)
    p = jnp.asarray([[0.0, 0.0], [1.0, 2.0], [1.0, 0.0], [3.0, 0.0]], dtype)   # zero distances
    n = jnp.asarray([[0.0, 0.0], [4.0, 2.0], [0.0, 2.0], [3.0, 1.0]], dtype)   # on the hinge
    return Sample((a, p, n), {"margin": 1.0, "eps": 0.0})


# -- perfect predictions (Loss.perfect) -------------------------------------------------------

def _separated_triplets(s):
    a, _, _ = s.args
    far = a + 2 * (s.kwargs.get("margin", 1.0) + 1)
    return Sample((a, a, far), s.kwargs)


def _separated_pairs(s):
    x1, _, same = s.args
    far = x1.at[:, 0].add(2 * (s.kwargs.get("neg_margin", 1.0) + 1))
    return Sample((x1, jnp.where(same[:, None] > 0.5, x1, far), same), s.kwargs)


def _aligned_pairs(s):
    x1, _, y = s.args
    return Sample((x1, y[:, None] * x1, y), s.kwargs)


def _ranked_pairs(s):
    _, x2, y = s.args
    return Sample((x2 + y * (s.kwargs.get("margin", 0.0) + 1), x2, y), s.kwargs)


def _on_centers(s):
    _, labels, centers = s.args
    return Sample((centers[jnp.clip(labels, 0)], labels, centers), s.kwargs)


def _separated_classes(s):
    e, labels = s.args
    spacing = 2 * (s.kwargs.get("margin", 1.0) + 1)
    return Sample((jnp.zeros_like(e).at[:, 0].set(spacing * labels), labels), s.kwargs)


@loss(nonnegative=True, perfect=_separated_triplets, family="metric", elementwise=False,
      has_hess_diag=False,
      grad_wrt=("positive", "negative"),
      formula=r"\ell = \max(d(a, p) - d(a, n) + m,\ 0),\ d(x, y) = \lVert x - y + \epsilon\rVert_p",
      sampler=_triplet_sample,
      kinks=[Kink("on the hinge: d(a,p) - d(a,n) + margin == 0", "half the active gradient",
                  lambda anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False:
                  jnp.broadcast_to((_triplet_margin_gap(anchor, positive, negative, margin, p,
                                                        eps, swap) == 0)[:, None],
                                   anchor.shape)),
             Kink("a zero distance, anchor == positive - eps (the norm's kink)",
                  "the norm contributes 0 (its minimal subgradient)",
                  lambda anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False:
                  jnp.broadcast_to(jnp.all(anchor - positive + eps == 0, axis=-1)[:, None]
                                   & (_triplet_margin_gap(anchor, positive, negative, margin, p,
                                                          eps, swap) >= 0)[:, None],
                                   anchor.shape))],
      references=["Schroff, Kalenichenko, Philbin, FaceNet, CVPR 2015.",
                  "Balntas et al., Learning local feature descriptors with triplets "
                  "(distance swap), BMVC 2016."])
def triplet_margin(anchor, positive, negative, *, margin=1.0, p=2.0, eps=1e-6, swap=False):
    r"""Triplet margin loss (PyTorch triplet_margin_loss): pull the positive closer than the
    negative by ``margin``.

    Args:
      anchor, positive, negative: (N, D) embeddings.
      margin: >= 0.
      p: the norm's order p >= 1 (absolute values are taken for every p).
      eps: added to the difference before the norm, as PyTorch's pairwise_distance.
      swap: use min(d(a, n), d(p, n)) as the negative distance (Balntas et al.).
    """
    name = "triplet_margin"
    positive, negative = _rows(name, "anchor", anchor, [("positive", positive),
                                                        ("negative", negative)])
    _checks.in_range(name, "margin", margin, lo=0)
    _checks.in_range(name, "p", p, lo=1)
    d_ap, g_ap = _pnorm(anchor - positive + eps, p)
    d_an, g_an = _pnorm(anchor - negative + eps, p)
    if swap:
        d_pn, g_pn = _pnorm(positive - negative + eps, p)
        use_pn = jnp.where(d_pn < d_an, 1.0, jnp.where(d_pn == d_an, 0.5, 0.0))[:, None]
        d_neg = jnp.minimum(d_an, d_pn)
    else:
        use_pn, g_pn, d_neg = 0.0, 0.0, d_an
    gap = d_ap - d_neg + margin
    active = hinge_slope(gap)[:, None]
    return Terms(
        jnp.maximum(gap, 0.0), class_axis=-1,
        grad=lambda: active * (g_ap - (1 - use_pn) * g_an),
        partials={"positive": lambda: active * (-g_ap - use_pn * g_pn),
                  "negative": lambda: active * ((1 - use_pn) * g_an + use_pn * g_pn)})


def _triplet_margin_gap(anchor, positive, negative, margin, p, eps, swap):
    d_ap = _pnorm(anchor - positive + eps, p)[0]
    d_an = _pnorm(anchor - negative + eps, p)[0]
    if swap:
        d_an = jnp.minimum(d_an, _pnorm(positive - negative + eps, p)[0])
    return d_ap - d_an + margin


# -- triplet margin with any distance (PyTorch triplet_margin_with_distance_loss) -------------

_PAIRWISE_EPS = 1e-6              # torch.nn.functional.pairwise_distance's default eps
_COSINE_SIMILARITY_EPS = 1e-8     # torch.nn.functional.cosine_similarity's default eps


def _euclidean_distance(x1, x2):
    """PyTorch's pairwise_distance(x1, x2) = ||x1 - x2 + eps||_2 per row, and its derivatives
    w.r.t. x1 and x2 (0 where the argument is 0, the norm's minimal subgradient)."""
    d, g = _pnorm(x1 - x2 + _PAIRWISE_EPS, 2.0)
    return d, g, -g


def _unit_rows(x):
    """x / max(||x||, eps) as cosine_similarity normalises, that denominator, and the weight
    of the norm's term in the derivative: 1 where ||x|| > eps, 0 below (the denominator is
    then the constant eps), 1/2 at ||x|| == eps (jnp.maximum's tie)."""
    norm = _pnorm(x, 2.0)[0]
    denom = jnp.maximum(norm, _COSINE_SIMILARITY_EPS)[:, None]
    return x / denom, denom, hinge_slope(norm - _COSINE_SIMILARITY_EPS)[:, None]


def _cosine_distance(x1, x2):
    """1 - cosine_similarity(x1, x2) per row (PyTorch's: each row divided by max(||x||, eps))
    and its derivatives w.r.t. x1 and x2."""
    u1, n1, s1 = _unit_rows(x1)
    u2, n2, s2 = _unit_rows(x2)
    cos = jnp.sum(u1 * u2, axis=-1)
    c = cos[:, None]
    return 1 - cos, -(u2 - s1 * c * u1) / n1, -(u1 - s2 * c * u2) / n2


_DISTANCES = {"euclidean": _euclidean_distance, "cosine": _cosine_distance}


class _Distance(NamedTuple):
    """d(x1, x2) per row, with back(c) = (sum_i c_i dd_i/dx1, sum_i c_i dd_i/dx2) and
    forward(t1, t2) = the directional derivatives of the d_i along (t1, t2)."""
    value: Any
    back: Callable
    forward: Callable


def _distance(name, distance_function):
    """(x1, x2) -> _Distance: hand-derived for the built-in distances, autodiff through a
    user's callable."""
    if distance_function is None or isinstance(distance_function, str):
        if distance_function is not None and distance_function not in _DISTANCES:
            raise ValueError(
                f"{name}: `distance_function` must be None (Euclidean), "
                f"{', '.join(map(repr, _DISTANCES))} or a callable (x1, x2) -> (N,) distances, "
                f"got {distance_function!r}.")
        builtin = _DISTANCES[distance_function or "euclidean"]

        def hand_derived(x1, x2):
            d, g1, g2 = builtin(x1, x2)
            return _Distance(d, lambda c: (c[:, None] * g1, c[:, None] * g2),
                             lambda t1, t2: jnp.sum(g1 * t1 + g2 * t2, axis=-1))
        return hand_derived
    if not callable(distance_function):
        raise TypeError(f"{name}: `distance_function` must be None, a name in "
                        f"{tuple(_DISTANCES)} or a callable, got {distance_function!r}.")

    def through_autodiff(x1, x2):
        d = jnp.asarray(distance_function(x1, x2))
        if d.shape != x1.shape[:1] or not jnp.issubdtype(d.dtype, jnp.floating):
            raise ValueError(
                f"{name}: `distance_function` must return one floating distance per row, "
                f"shape ({x1.shape[0]},), for inputs of shape {tuple(x1.shape)}; got "
                f"{_checks.describe(d)}.")

        def back(c):
            dx1, dx2 = jax.vjp(distance_function, x1, x2)[1](c.astype(d.dtype))
            return dx1.astype(x1.dtype), dx2.astype(x2.dtype)

        def forward(t1, t2):
            return jax.jvp(distance_function, (x1, x2), (t1, t2))[1].astype(x1.dtype)
        return _Distance(d.astype(x1.dtype), back, forward)
    return through_autodiff


def _triplet_distances(name, anchor, positive, negative, distance_function, margin, swap):
    """The _Distance of (a, p), of (a, n) and, with ``swap``, of (p, n) (else None); the
    share of d(p, n) in the negative distance min(d(a, n), d(p, n)) (1, 0, or 1/2 at a tie,
    as jnp.minimum's autodiff); and the gap margin + d(a, p) - that negative distance."""
    distance = _distance(name, distance_function)
    ap, an = distance(anchor, positive), distance(anchor, negative)
    if swap:
        pn = distance(positive, negative)
        use_pn = jnp.where(pn.value < an.value, 1.0, jnp.where(pn.value == an.value, 0.5, 0.0))
        d_neg = jnp.minimum(an.value, pn.value)
    else:
        pn, use_pn, d_neg = None, 0.0, an.value
    return ap, an, pn, use_pn, margin + ap.value - d_neg


def _distance_kink(which):
    """Kink.locate for triplet_margin_with_distance, rows broadcast over the anchor."""
    def locate(anchor, positive, negative, distance_function=None, margin=1.0, swap=False):
        _, an, pn, _, gap = _triplet_distances("triplet_margin_with_distance", anchor,
                                               positive, negative, distance_function, margin,
                                               swap)
        if which == "hinge":
            rows = gap == 0
        elif which == "swap":
            rows = (an.value == pn.value) & (gap > 0) if swap else jnp.zeros_like(gap, bool)
        else:       # a zero argument of the Euclidean norm, in a distance that counts
            pairs = [(anchor, positive), (anchor, negative)]
            pairs += [(positive, negative)] if swap else []
            zero = jnp.any(jnp.stack([jnp.all(x1 - x2 + _PAIRWISE_EPS == 0, axis=-1)
                                      for x1, x2 in pairs]), axis=0)
            euclidean = distance_function is None or distance_function == "euclidean"
            rows = zero & (gap >= 0) & euclidean
        return jnp.broadcast_to(rows[:, None], anchor.shape)
    return locate


def _with_distance_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = (5, 4)
        a = _sampling.normal(k1, shape, dtype)
        return Sample((a, a + _sampling.normal(k2, shape, dtype, 0.5),
                       _sampling.normal(k3, shape, dtype)),
                      {"distance_function": "cosine", "margin": 1.0, "swap": True})
    # pairwise_distance's eps = 1e-6 is not a binary fraction, so a row can sit exactly on an
    # eps-dependent kink only in one arithmetic: float64 (where the derivative tests run).
    # Other dtypes are compared with float64 arithmetic on the same inputs (the dtype
    # matrix), so there those rows are moved clearly off the kinks.
    exact = jnp.dtype(dtype) == jnp.float64
    eps = np.float64(_PAIRWISE_EPS)

    def towards(c):
        """A row x with 0 - x + eps == c exactly in float64: with anchor 0, the Euclidean
        distance's argument is exactly c."""
        return eps - np.asarray(c, np.float64)
    b = _sampling.big(dtype)
    rows = [  # (anchor, positive, negative)
        # d = 5 and 6: on the hinge (elsewhere d = 5 and 5.75)
        ([0, 0], towards([3, 4]), towards([-6, 0] if exact else [-5.75, 0])),
        # d(a, n) = 0, the norm's kink, with the loss active (elsewhere d(a, n) = 1/16)
        ([0, 0], [0.25, 0.5], towards([0, 0] if exact else [0.0625, 0])),
        ([1, 0.5], [0.5, 1], [0, 0]),                  # d(a, n) == d(p, n): the swap's tie
        ([b, b], [0, 0], [b, b + 1]),                  # large, active
        ([1, 0], [1, 0.25], [-3, 0]),                  # satisfied: loss 0
    ]
    a, p, n = (jnp.asarray(np.asarray([r[i] for r in rows], dtype)) for i in range(3))
    return Sample((a, p, n), {"swap": True})


def _separated_by_distance(s):
    anchor = s.args[0]
    if s.kwargs.get("distance_function") == "cosine":
        negative = -anchor                  # the largest cosine distance, 2 (> the margin)
    else:
        negative = anchor + 2 * (s.kwargs.get("margin", 1.0) + 1)
    return Sample((anchor, anchor, negative), s.kwargs)


@loss(nonnegative=True, perfect=_separated_by_distance, family="metric", elementwise=False,
      has_hess_diag=False, grad_wrt=("positive", "negative"),
      formula=r"\ell = \max(m + d(a, p) - d(a, n),\ 0)",
      sampler=_with_distance_sample,
      kinks=[Kink("on the hinge: margin + d(a, p) - d(a, n) == 0", "half the active gradient",
                  _distance_kink("hinge")),
             Kink("swap and d(a, n) == d(p, n), the loss active",
                  "each of the two distances carries half (jnp.minimum's autodiff)",
                  _distance_kink("swap")),
             Kink("Euclidean distance with a zero argument, x1 - x2 + eps == 0, the loss active",
                  "the norm contributes 0 (its minimal subgradient)", _distance_kink("zero"))],
      references=["PyTorch torch.nn.functional.triplet_margin_with_distance_loss.",
                  "Balntas et al., Learning local feature descriptors with triplets "
                  "(distance swap), BMVC 2016."])
def triplet_margin_with_distance(anchor, positive, negative, *, distance_function=None,
                                 margin=1.0, swap=False):
    r"""Triplet margin loss with a chosen distance (PyTorch
    ``F.triplet_margin_with_distance_loss``): :math:`\max(m + d(a, p) - d(a, n), 0)` per
    triplet.

    Args:
      anchor, positive, negative: (N, D) embeddings (PyTorch also takes single (D,) vectors:
        pass ``x[None]``).
      distance_function: how to measure d(x1, x2) row by row; a static argument (not traced):
        - None or ``"euclidean"``: PyTorch's default ``pairwise_distance``,
          :math:`\lVert x_1 - x_2 + \epsilon
Vert_2` with :math:`\epsilon = 10^{-6}`;
        - ``"cosine"``: :math:`1 - \cos(x_1, x_2)` as ``1 - F.cosine_similarity(x1, x2)``,
          each row divided by :math:`\max(\lVert x
Vert, 10^{-8})`;
        - any callable ``(x1, x2) -> (N,)`` distances written in JAX, as in PyTorch.
      margin: > 0 (PyTorch rejects 0 too).
      swap: use :math:`\min(d(a, n), d(p, n))` as the negative distance (Balntas et al.).

    Derivatives: ``.grad`` (w.r.t. the anchor, or ``wrt="positive"`` / ``"negative"``) is
    hand-derived for the built-in distances, and for a callable it is the hinge and swap
    logic (hand-derived) applied to the callable's own derivative, taken by autodiff
    (``jax.vjp`` / ``jax.jvp`` through it): the callable must be differentiable by JAX, and
    ``.grad`` then agrees with ``jax.grad`` of the loss. On the hinge and at a swap tie the
    gradient is the midpoint of the one-sided ones; at a zero Euclidean argument the norm
    contributes 0 (PyTorch too). The built-in cosine's gradient is that of its value
    everywhere (at a row norm of exactly 1e-8, the clamp's kink, the midpoint too; no sample
    can sit exactly there, so it is not a declared Kink); PyTorch's cosine_similarity backward
    differs from its own value's derivative where a row's norm is below 1e-8 (it clamps the
    norm without differentiating the clamp).

    References:
      PyTorch ``torch.nn.functional.triplet_margin_with_distance_loss``; Balntas et al. (2016).
    """
    name = "triplet_margin_with_distance"
    positive, negative = _rows(name, "anchor", anchor, [("positive", positive),
                                                        ("negative", negative)])
    _checks.in_range(name, "margin", margin, lo=0, lo_open=True)
    ap, an, pn, use_pn, gap = _triplet_distances(name, anchor, positive, negative,
                                                 distance_function, margin, swap)
    active = hinge_slope(gap)

    def split(c):        # the cotangent of each distance, from that of the triplets
        c = c * active
        return c, -c * (1 - use_pn), -c * use_pn

    def anchor_vjp(c):
        c_ap, c_an, _ = split(c)
        return ap.back(c_ap)[0] + an.back(c_an)[0]

    def positive_vjp(c):
        c_ap, _, c_pn = split(c)
        return ap.back(c_ap)[1] + (pn.back(c_pn)[0] if swap else 0.0)

    def negative_vjp(c):
        _, c_an, c_pn = split(c)
        return an.back(c_an)[1] + (pn.back(c_pn)[1] if swap else 0.0)

    def jvp(tangent):
        still = jnp.zeros_like(tangent)
        return active * (ap.forward(tangent, still) - (1 - use_pn) * an.forward(tangent, still))

    return Terms(jnp.maximum(gap, 0.0), grad=None, vjp=anchor_vjp, jvp=jvp,
                 partial_vjps={"positive": positive_vjp, "negative": negative_vjp})


def _pair_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        x1 = _sampling.normal(k1, (6, 3), dtype)
        x2 = _sampling.normal(k2, (6, 3), dtype)
        same = _sampling.bernoulli(k3, 0.5, (6,), dtype)
        return Sample((x1, x2, same), {"pos_margin": 0.25, "neg_margin": 2.0})
    x1 = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype)
    x2 = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype)
    same = jnp.asarray([1.0, 0.0, 1.0, 0.0, 0.0], dtype)
    return Sample((x1, x2, same), {"neg_margin": 1.0})


@loss(constraints=[_domain.unit_interval("same")],
      nonnegative=True, perfect=_separated_pairs,
      family="metric", elementwise=False, has_hess_diag=False, grad_wrt=("x2",),
      formula=r"\ell = y\,\tfrac12\max(d - m_+, 0)^2 + (1 - y)\,\tfrac12\max(m_- - d, 0)^2",
      sampler=_pair_sample,
      kinks=[Kink("x1 == x2 in a dissimilar pair: no direction to push apart",
                  "0 (the distance's minimal subgradient)",
                  lambda x1, x2, same, pos_margin=0.0, neg_margin=1.0:
                  jnp.broadcast_to((jnp.all(x1 == x2, axis=-1) & (same == 0)
                                    & (neg_margin > 0))[:, None], x1.shape))],
      references=["Hadsell, Chopra, LeCun, Dimensionality Reduction by Learning an Invariant "
                  "Mapping, CVPR 2006."])
def contrastive(x1, x2, same, *, pos_margin=0.0, neg_margin=1.0):
    r"""Pairwise contrastive loss (Hadsell et al. 2006) on Euclidean distances: similar pairs
    (``same`` = 1) are pulled within ``pos_margin``, dissimilar ones (0) pushed beyond
    ``neg_margin``.

    Args: x1, x2 (N, D); same (N,) in {0, 1} (or soft); margins >= 0.
    Derivative w.r.t. x1: :math:`[y\max(d-m_+,0) - (1-y)\max(m_- - d,0)]\,(x_1 - x_2)/d`.
    """
    name = "contrastive"
    (x2,) = _rows(name, "x1", x1, [("x2", x2)])
    same = _checks.floating(name, "same", same)
    if same.shape != x1.shape[:1]:
        raise ValueError(f"{name}: `same` must have shape ({x1.shape[0]},), one label per pair, "
                         f"got {tuple(same.shape)}.")
    same = same.astype(x1.dtype)
    _checks.in_range(name, "pos_margin", pos_margin, lo=0)
    _checks.in_range(name, "neg_margin", neg_margin, lo=0)
    d, g = _pnorm(x1 - x2, 2.0)
    pull, push = jnp.maximum(d - pos_margin, 0.0), jnp.maximum(neg_margin - d, 0.0)
    slope = (same * pull - (1 - same) * push)[:, None]
    return Terms(same * 0.5 * pull ** 2 + (1 - same) * 0.5 * push ** 2, class_axis=-1,
                 grad=lambda: slope * g, partials={"x2": lambda: -slope * g})


def _cosine_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        return Sample((_sampling.normal(k1, (6, 3), dtype), _sampling.normal(k2, (6, 3), dtype),
                       _sampling.signs(k3, (6,), dtype)), {"margin": 0.1})
    x1 = jnp.asarray([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [2.0, 0.0]], dtype)
    x2 = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [2.0, 2.0], [-1.0, 0.0]], dtype)   # zero vectors
    y = jnp.asarray([1.0, -1.0, -1.0, 1.0], dtype)
    return Sample((x1, x2, y), {})


_COSINE_EPS = 1e-12


def _cosine(x1, x2):
    """PyTorch's cosine: x1.x2 / sqrt((|x1|^2 + eps)(|x2|^2 + eps)); finite for zero vectors."""
    n1 = jnp.sum(x1 * x1, axis=-1) + _COSINE_EPS
    n2 = jnp.sum(x2 * x2, axis=-1) + _COSINE_EPS
    dot = jnp.sum(x1 * x2, axis=-1)
    cos = dot / jnp.sqrt(n1 * n2)
    d1 = x2 / jnp.sqrt(n1 * n2)[:, None] - (cos / n1)[:, None] * x1
    d2 = x1 / jnp.sqrt(n1 * n2)[:, None] - (cos / n2)[:, None] * x2
    return cos, d1, d2


@loss(constraints=[_domain.signs("y")],
      nonnegative=True, perfect=_aligned_pairs,
      family="metric", elementwise=False, has_hess_diag=False, grad_wrt=("x2",),
      formula=r"\ell = 1 - \cos(x_1, x_2)\ (y = 1);\quad \max(0, \cos(x_1, x_2) - m)\ (y = -1)",
      sampler=_cosine_sample,
      kinks=[Kink("cos == margin for a dissimilar pair", "half the active gradient",
                  lambda x1, x2, y, margin=0.0: jnp.broadcast_to(
                      ((_cosine(x1, x2)[0] == margin) & (y == -1))[:, None], x1.shape))],
      references=["PyTorch torch.nn.functional.cosine_embedding_loss."])
def cosine_embedding(x1, x2, y, *, margin=0.0):
    r"""Cosine embedding loss (PyTorch): similar pairs (y = 1) towards cosine 1, dissimilar
    pairs (y = -1) below ``margin``. The cosine uses PyTorch's stabiliser
    :math:`\sqrt{(|x_1|^2+\epsilon)(|x_2|^2+\epsilon)}`, so zero vectors give cosine 0 and finite
    gradients.
    """
    name = "cosine_embedding"
    (x2,) = _rows(name, "x1", x1, [("x2", x2)])
    y = jnp.asarray(y)
    if y.shape != x1.shape[:1]:
        raise ValueError(f"{name}: `y` must have shape ({x1.shape[0]},) with values +-1, got "
                         f"{tuple(y.shape)}.")
    y = y.astype(x1.dtype)
    _checks.in_range(name, "margin", margin, lo=-1, hi=1)
    cos, d1, d2 = _cosine(x1, x2)
    similar = (y == 1).astype(x1.dtype)
    slope = (-similar + (1 - similar) * hinge_slope(cos - margin))[:, None]
    value = similar * (1 - cos) + (1 - similar) * jnp.maximum(cos - margin, 0.0)
    return Terms(value, class_axis=-1, grad=lambda: slope * d1,
                 partials={"x2": lambda: slope * d2})


def _ranking_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        shape = _sampling.GENERIC_SHAPE
        return Sample((_sampling.normal(k1, shape, dtype), _sampling.normal(k2, shape, dtype),
                       _sampling.signs(k3, shape, dtype)), {"margin": 0.5})
    x1 = jnp.asarray([1.0, 0.0, 2.0, -1.0, 0.5], dtype)
    x2 = jnp.asarray([0.5, 0.0, -1.0, 1.0, 0.0], dtype)
    y = jnp.asarray([1.0, 1.0, -1.0, -1.0, 1.0], dtype)
    return Sample((x1, x2, y), {"margin": 0.5})


@loss(constraints=[_domain.signs("y")],
      nonnegative=True, perfect=_ranked_pairs, family="metric", elementwise=True, grad_wrt=("x2",),
      formula=r"\ell = \max(0,\ -y (x_1 - x_2) + m)",
      sampler=_ranking_sample,
      kinks=[Kink("-y (x1 - x2) + margin == 0", "half the active gradient",
                  lambda x1, x2, y, margin=0.0: -y * (x1 - x2) + margin == 0)],
      references=["PyTorch torch.nn.functional.margin_ranking_loss."])
def margin_ranking(x1, x2, y, *, margin=0.0):
    r"""Margin ranking loss (PyTorch): x1 should rank above x2 by ``margin`` when y = 1,
    below when y = -1. Derivatives: :math:`-y` w.r.t. x1 and :math:`y` w.r.t. x2 inside the
    margin."""
    name = "margin_ranking"
    x2 = _checks.floating(name, "x2", x2)
    _checks.same_shape(name, "x1", x1, "x2", x2)
    y = jnp.asarray(y)
    _checks.same_shape(name, "x1", x1, "y", y)
    y = y.astype(x1.dtype)
    gap = -y * (x1 - x2.astype(x1.dtype)) + margin
    active = hinge_slope(gap)
    return Terms(jnp.maximum(gap, 0.0), grad=lambda: -y * active, hess=lambda: jnp.zeros_like(gap),
                 partials={"x2": lambda: y * active})


# -- center loss ---------------------------------------------------------------------------

def _center_sample(key, dtype, kind):
    k1, k2, k3 = jax.random.split(key, 3)
    if kind == "generic":
        return Sample((_sampling.normal(k1, (6, 3), dtype),
                       _sampling.class_labels(k2, (6,), 3).at[5].set(-1),
                       _sampling.normal(k3, (3, 3), dtype)), {})
    centers = jnp.asarray([[0.0, 0.0], [1.0, 1.0]], dtype)
    features = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [5.0, -5.0]], dtype)    # on the centers
    return Sample((features, jnp.asarray([0, 1, 0], jnp.int32), centers), {})


@loss(constraints=[
          _domain.class_index(scores="centers", axis=None, ignore=None, classes_axis=0,
                              negative_ignored=True)],
      nonnegative=True, perfect=_on_centers,
      family="metric", elementwise=False, has_hess_diag=True,
      formula=r"\ell_i = \tfrac12 \lVert x_i - c_{y_i}\rVert^2",
      sampler=_center_sample, batch_args=("features", "labels"),
      references=["Wen, Zhang, Li, Qiao, A Discriminative Feature Learning Approach for Deep "
                  "Face Recognition (center loss), ECCV 2016."])
def center_loss(features, labels, centers):
    r"""Center loss (Wen et al. 2016): half the squared distance of each feature to its
    class center. Used with softmax cross-entropy; the centers are updated with
    :func:`center_update` (the paper's rule), not by gradient descent, so ``.grad`` is w.r.t.
    the features: :math:`x_i - c_{y_i}`. Labels out of range contribute 0 (like an ignored
    label).

    Args: features (N, D); labels (N,) integers; centers (K, D).
    """
    name = "center_loss"
    labels = _labelled_rows(name, "features", features, labels)
    centers = _checks.floating(name, "centers", centers)
    if centers.ndim != 2 or centers.shape[1] != features.shape[1]:
        raise ValueError(f"{name}: `centers` must have shape (K, {features.shape[1]}), got "
                         f"{tuple(centers.shape)}.")
    valid = (labels >= 0) & (labels < centers.shape[0])
    diff = features - lookup(centers.astype(features.dtype), jnp.where(valid, labels, 0))
    return Terms(0.5 * jnp.sum(diff * diff, axis=-1), grad=lambda: diff,
                 hess=lambda: jnp.ones_like(diff), class_axis=-1, mask=valid)


def center_update(centers, features, labels, alpha=0.5):
    r"""The center update of Wen et al. (2016), eq. (4):
    :math:`c_j \leftarrow c_j - \alpha\,\frac{\sum_i [y_i = j](c_j - x_i)}{1 + \sum_i [y_i = j]}`.

    Centers without samples in the batch stay where they are. Pure and jittable; alpha in
    [0, 1].
    """
    _checks.in_range("center_update", "alpha", alpha, lo=0, hi=1)
    centers = _checks.floating("center_update", "centers", centers)
    labels = _checks.integer_labels("center_update", "labels", labels)
    onehot = jax.nn.one_hot(labels, centers.shape[0], dtype=centers.dtype)      # (N, K)
    counts = jnp.sum(onehot, axis=0)                                            # (K,)
    pulled = counts[:, None] * centers - onehot.T @ features.astype(centers.dtype)
    return centers - alpha * pulled / (1 + counts)[:, None]


# -- InfoNCE / NT-Xent ---------------------------------------------------------------------
