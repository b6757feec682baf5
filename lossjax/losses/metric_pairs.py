"""Metric-learning losses over every pair of a labelled batch (family "metric"): supervised
contrastive (SupCon), lifted structured and multi-similarity losses.

Inputs are embeddings (N, D) and integer labels (N,); rows with equal labels are positives of
each other, rows with different labels negatives. Every embedding feeds several elements, so
``.grad`` is a hand-derived vector-Jacobian product (``Terms.vjp``, as NT-Xent in
:mod:`lossjax.losses.metric_batch`). Cosine similarities normalise each row as
``torch.nn.functional.normalize`` does (divided by max(|z|, 1e-8)): a zero row has similarity 0
with everything and finite (large, order 1e8) gradients. Euclidean distances are safe at 0
(derivative 0 there, the norm's minimal subgradient).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import gathered
from lossjax.losses.metric import _labelled_rows
from lossjax.losses.metric_batch import (
    _distances, _distances_jvp, _distances_vjp, _normalized)

__all__ = ["supcon", "lifted_structured", "multi_similarity"]


def _pairs(name, embeddings, labels):
    """Validate, gather the batch (every row meets every other); return (embeddings, positive
    mask without the diagonal, negative mask)."""
    labels = _labelled_rows(name, "embeddings", embeddings, labels)
    if embeddings.shape[0] < 2:
        raise ValueError(f"{name}: needs at least 2 rows of `embeddings` to form pairs, got "
                         f"shape {tuple(embeddings.shape)}.")
    embeddings, labels = gathered(embeddings, labels)
    n = embeddings.shape[0]
    same = labels[:, None] == labels[None, :]
    return embeddings, same & ~jnp.eye(n, dtype=bool), ~same


def _cosine_vjp_jvp(u, back, forward, slope):
    """VJP and JVP of per-row values l_i of the similarities S = u u^T, given
    ``slope`` = d l_i / d S_ij (N, N); ``back`` / ``forward`` differentiate the
    normalisation z -> u."""
    def vjp(coef):
        g = gathered(coef)[:, None] * slope
        return back((g + g.T) @ u)

    def jvp(dz):
        du = forward(gathered(dz))
        return jnp.sum(slope * (du @ u.T + u @ du.T), axis=1)
    return vjp, jvp


# -- supervised contrastive -----------------------------------------------------------------

def _views(key, dtype, kind):
    """Labelled rows drawn around per-class centres (generic) or hand-placed (edge)."""
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        labels = np.asarray([0, 0, 1, 1, 2, 2, 0, 3])          # class 3: no positive
        centers = _sampling.normal(k1, (4, 4), jnp.float32)
        z = centers[labels] + _sampling.normal(k2, (8, 4), jnp.float32, 0.5)
        return Sample((z.astype(dtype), jnp.asarray(labels, jnp.int32)),
                      {"temperature": 0.1, "base_temperature": 0.07})
    # identical rows (similarity 1), opposite rows (-1), a zero row, a row without positives,
    # and a temperature at which exp(s / tau) spans e^-20 .. e^20. The zero row only in
    # float64: its gradient, of order 1/eps = 1e8, is beyond float16, and the float32 audit's
    # finite-difference steps (> 1e-8) leave the region |z| < 1e-8 where the normalisation is
    # linear (tests/test_research_metric.py checks zero rows in float32)
    zero = 0.0 if jnp.finfo(dtype).bits >= 64 else 0.5
    z = jnp.asarray([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [0.0, -1.0, 1.0],
                     [3.0, 0.0, 0.0], [zero, 0.0, 0.0]], dtype)
    return Sample((z, jnp.asarray([0, 0, 1, 1, 2, 0], jnp.int32)),
                  {"temperature": 0.05, "base_temperature": 0.07})


@loss(nonnegative=True, family="metric", elementwise=False, has_hess_diag=False,
      formula=r"\ell_i = -\frac{\tau}{\tau_b}\frac{1}{|P(i)|}\sum_{p \in P(i)} "
              r"\log\frac{e^{s_{ip}/\tau}}{\sum_{a \ne i} e^{s_{ia}/\tau}}",
      sampler=_views,
      references=["Khosla et al., Supervised Contrastive Learning, NeurIPS 2020 "
                  "(L^sup_out).",
                  "HobbitLong/SupContrast losses.py SupConLoss, the reference implementation."])
def supcon(features, labels, *, temperature=0.07, base_temperature=0.07):
    r"""Supervised contrastive loss (SupCon, the paper's :math:`L^{sup}_{out}`): each anchor i
    must pick out its positives P(i) (the other rows with its label) among all other rows by
    cosine similarity :math:`s_{ia}` / temperature.

    Args:
      features: (N, D) embeddings, normalised inside. For several views of each example,
        concatenate the views along axis 0 and repeat the labels.
      labels: (N,) integer class labels.
      temperature: :math:`\tau > 0`.
      base_temperature: :math:`\tau_b > 0`; the loss is scaled by :math:`\tau / \tau_b`.

    Elements are the anchors. An anchor without positives (its label appears once) has no
    term: it is masked out (value 0, not counted by the mean) rather than NaN.

    Peer: HobbitLong's ``SupConLoss(temperature, 'all', base_temperature)`` on
    ``F.normalize(features)`` shaped (N / V, V, D) with its views along axis 1 equals this loss on
    the views concatenated along axis 0 whenever every anchor has a positive (HobbitLong divides
    by the zero positive count otherwise: NaN), up to its 1e-9 inside the log's denominator.
    pytorch-metric-learning's ``SupConLoss`` is the same per-anchor loss without the
    :math:`\tau/\tau_b` factor, averaged over the anchors whose loss is nonzero.

    Derivative w.r.t. the similarities: :math:`\partial \ell_i / \partial s_{ij} =
    (q_{ij} - [j \in P(i)] / |P(i)|) / \tau_b`, q the softmax of row i over :math:`a \ne i`;
    then through :math:`s = u u^T` and the normalisation.
    """
    name = "supcon"
    _checks.in_range(name, "temperature", temperature, lo=0, lo_open=True)
    _checks.in_range(name, "base_temperature", base_temperature, lo=0, lo_open=True)
    features, positive, _ = _pairs(name, features, labels)
    u, back, forward = _normalized(features)
    n = features.shape[0]
    logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, u @ u.T / temperature)
    lse = jax.nn.logsumexp(logits, axis=1)
    count = jnp.sum(positive, axis=1).astype(features.dtype)
    has_positive = count > 0
    per_count = jnp.where(has_positive, 1.0 / jnp.maximum(count, 1), 0.0)[:, None]
    # each positive's -log softmax is >= 0 in floating point too: the loss stays >= 0
    neg_log_q = jnp.where(positive, lse[:, None] - logits, 0.0)
    value = temperature / base_temperature * jnp.sum(neg_log_q * per_count, axis=1)
    q = jnp.exp(logits - lse[:, None])
    slope = (q - positive * per_count) / base_temperature * has_positive[:, None]
    vjp, jvp = _cosine_vjp_jvp(u, back, forward, slope)
    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=has_positive)


# -- lifted structured ------------------------------------------------------------------------

def _clusters(key, dtype, kind):
    if kind == "generic":
        centers = jnp.asarray([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
        labels = jnp.asarray([0, 0, 1, 1, 2, 2, 0, 1], jnp.int32)
        e = centers[labels] + _sampling.normal(key, (8, 2), jnp.float32, 0.75)
        return Sample((e.astype(dtype), labels), {"margin": 1.0})
    # duplicates within a class and across classes (zero distances: the norm's kink), a far
    # row whose exp(margin - d) underflows, a row without positives, an inactive pair
    e = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [64.0, 0.0],
                     [0.0, 3.0], [0.0, 3.5], [1.0, 1.0]], dtype)
    return Sample((e, jnp.asarray([0, 0, 1, 1, 2, 3, 3, 4], jnp.int32)), {"margin": 1.0})


def _duplicated_rows(embeddings, labels, *, margin=1.0):
    """Rows equal to another row: a zero distance."""
    n = embeddings.shape[0]
    equal = jnp.all(embeddings[:, None, :] == embeddings[None, :, :], axis=-1)
    return jnp.broadcast_to(jnp.any(equal & ~jnp.eye(n, dtype=bool), axis=1)[:, None],
                            embeddings.shape)


def _far_apart_classes(s):
    """Classes collapsed to points spaced margin + 32 apart: every J_ij <= margin - 32 +
    log(2N) < 0."""
    e, labels = s.args
    spacing = s.kwargs.get("margin", 1.0) + 32.0
    return Sample((jnp.zeros_like(e).at[:, 0].set(spacing * labels), labels), s.kwargs)


@loss(nonnegative=True, perfect=_far_apart_classes, family="metric", elementwise=False,
      has_hess_diag=False,
      formula=r"\ell_{ij} = \tfrac12\max\big(0,\ \log\big(\sum_{k \in N(i)} e^{m - D_{ik}} + "
              r"\sum_{l \in N(j)} e^{m - D_{jl}}\big) + D_{ij}\big)^2",
      sampler=_clusters,
      kinks=[Kink("two equal rows: a zero Euclidean distance", "the distance contributes 0 "
                  "(its minimal subgradient, the midpoint along each coordinate)",
                  _duplicated_rows)],
      references=["Oh Song, Xiang, Jegelka, Savarese, Deep Metric Learning via Lifted "
                  "Structured Feature Embedding, CVPR 2016 (eq. 4, the smooth bound).",
                  "pytorch-metric-learning LiftedStructureLoss."])
def lifted_structured(embeddings, labels, *, margin=1.0):
    r"""Lifted structured embedding loss, the paper's smooth form (Oh Song et al. 2016,
    eq. 4): for each positive pair (i, j), a log-sum-exp over the negatives of both i and j
    pushes them beyond ``margin`` while :math:`D_{ij}` pulls the pair together.

    Args:
      embeddings: (N, D); Euclidean distances :math:`D` (not squared, as the paper).
      labels: (N,) integer class labels.
      margin: :math:`m`, the paper's :math:`\alpha` (1 in the paper).

    Elements are the unordered positive pairs i < j, as an (N, N) array masked to them (pairs
    of a class with no negative in the batch are masked too): the mean is the paper's
    :math:`J = \frac{1}{2|P|}\sum_{(i,j) \in P}\max(0, J_{ij})^2`. It equals
    pytorch-metric-learning's ``LiftedStructureLoss(neg_margin=margin, pos_margin=0)``
    (ordered pairs, each halved). Not the "generalized" variant of Hermans et al.
    (pytorch-metric-learning's ``GeneralizedLiftedStructureLoss``, one term per anchor).

    Derivative: :math:`\partial\ell_{ij}/\partial J_{ij} = \max(0, J_{ij})`;
    :math:`\partial J_{ij}/\partial D_{ij} = 1`, :math:`\partial J_{ij}/\partial D_{ik} =
    -e^{m - D_{ik}} / e^{J_{ij} - D_{ij}}` for the negatives k of i (and of j alike); then
    through :math:`D_{ab} = |x_a - x_b|`. At a zero distance the norm has no derivative: its
    contribution is taken as 0 (a declared kink). Squaring the hinge makes the loss smooth
    where :math:`J_{ij} = 0`.
    """
    name = "lifted_structured"
    embeddings, positive, negative = _pairs(name, embeddings, labels)
    n = embeddings.shape[0]
    dist, diff = _distances(embeddings)
    has_negative = jnp.any(negative, axis=1)
    # log sum_k exp(m - D_ik) over i's negatives (0 for rows without: those pairs are masked)
    exponents = jnp.where(has_negative[:, None], jnp.where(negative, margin - dist, -jnp.inf),
                          0.0)
    lse = jax.nn.logsumexp(exponents, axis=1)
    share = jnp.where(negative, jnp.exp(exponents - lse[:, None]), 0.0)   # d lse_i / d(-D_ik)
    both = jnp.logaddexp(lse[:, None], lse[None, :])
    weight = jnp.exp(lse[:, None] - both)           # d both_ij / d lse_i; weight.T for lse_j
    valid = positive & has_negative[:, None] & jnp.triu(jnp.ones((n, n), bool), 1)
    hinge = jnp.where(valid, jnp.maximum(both + dist, 0.0), 0.0)

    def vjp(coef):
        h = gathered(coef) * hinge                  # d L / d J_ij
        per_lse = jnp.sum((h + h.T) * weight, axis=1)
        return _distances_vjp(h - per_lse[:, None] * share, dist, embeddings)

    def jvp(de):
        dd = _distances_jvp(gathered(de), dist, diff)
        d_lse = -jnp.sum(share * dd, axis=1)
        return hinge * (dd + weight * d_lse[:, None] + weight.T * d_lse[None, :])

    return Terms(0.5 * hinge ** 2, grad=None, vjp=vjp, jvp=jvp, mask=valid)


# -- multi-similarity -----------------------------------------------------------------------

_MINING_CLEARANCE = 0.05     # samples keep every similarity this far from a mining threshold


def _mining_check(z, labels, epsilon):
    """NumPy, float64: the smallest distance of a similarity to a mining threshold (where it
    is small the mined set changes under a tiny move) and the number of anchors with kept
    positives and kept negatives."""
    z = np.asarray(z, np.float64)
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)
    s = u @ u.T
    same = labels[:, None] == labels[None, :]
    pos, neg = same & ~np.eye(len(labels), dtype=bool), ~same
    gaps, active = [np.inf], 0
    for i in np.nonzero(pos.any(axis=1) & neg.any(axis=1))[0]:
        hardest_pos, hardest_neg = s[i, pos[i]].min(), s[i, neg[i]].max()
        gaps += list(np.abs(s[i, neg[i]] + epsilon - hardest_pos))
        gaps += list(np.abs(s[i, pos[i]] - epsilon - hardest_neg))
        active += bool(np.any(s[i, neg[i]] + epsilon > hardest_pos)
                       and np.any(s[i, pos[i]] - epsilon < hardest_neg))
    return min(gaps), active


def _similarity_clusters(key, dtype, kind):
    """Clustered rows, redrawn until at least 3 anchors mine pairs and every similarity keeps
    _MINING_CLEARANCE from the mining thresholds, in the sample's dtype."""
    labels = np.asarray([0, 0, 0, 1, 1, 2, 2, 3])               # class 3: no positive
    if kind == "generic":
        rng = _sampling.host_rng(key)
        while True:
            centers = rng.standard_normal((4, 4))
            z = (centers[labels] + 0.8 * rng.standard_normal((8, 4))).astype(np.dtype(dtype))
            gap, active = _mining_check(z, labels, 0.1)
            if gap > _MINING_CLEARANCE and active >= 3:
                return Sample((jnp.asarray(z), jnp.asarray(labels, jnp.int32)), {})
    # identical positives (similarity 1), opposite rows (-1), a zero row (similarity 0 with
    # every row; a small row below float32, as in supcon), a row without positives; six of
    # the seven anchors mine pairs, every similarity 0.1 or more from a threshold
    small = [0.0, 0.0, 0.0 if jnp.finfo(dtype).bits >= 32 else 0.5, 0.0]
    z = jnp.asarray([[2.0, -2.0, -1.0, 0.0], [2.0, -2.0, -1.0, 0.0], [-2.0, 1.0, -2.0, -1.0],
                     [0.0, 0.0, -2.0, 2.0], [1.0, 2.0, -2.0, 1.0], [2.0, -1.0, 2.0, 1.0],
                     [1.0, -2.0, -1.0, 2.0], small], dtype)
    return Sample((z, jnp.asarray(labels, jnp.int32)), {})


def _one_hot_classes(s):
    """Each class on its own axis: positives at similarity 1, negatives at 0, nothing mined."""
    e, labels = s.args
    return Sample((jax.nn.one_hot(labels, e.shape[1], dtype=e.dtype), labels), s.kwargs)


@loss(nonnegative=True, perfect=_one_hot_classes, family="metric", elementwise=False,
      has_hess_diag=False,
      formula=r"\ell_i = \frac{1}{\alpha}\log\big(1 + \sum_{p \in \tilde P_i} "
              r"e^{-\alpha(S_{ip} - \lambda)}\big) + \frac{1}{\beta}\log\big(1 + "
              r"\sum_{n \in \tilde N_i} e^{\beta(S_{in} - \lambda)}\big)",
      sampler=_similarity_clusters,
      references=["Wang, Han, Huang, Dong, Scott, Multi-Similarity Loss with General Pair "
                  "Weighting for Deep Metric Learning, CVPR 2019.",
                  "msight-tech/research-ms-loss (the authors' code) and "
                  "pytorch-metric-learning MultiSimilarityLoss + MultiSimilarityMiner."])
def multi_similarity(embeddings, labels, *, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    r"""Multi-similarity loss with its pair mining (Wang et al. 2019) on cosine similarities
    :math:`S_{ij}` of the embeddings.

    Mining (per anchor i, against all its positives P_i and negatives N_i): a negative is kept
    when :math:`S_{in} + \epsilon > \min_{p \in P_i} S_{ip}`, a positive when
    :math:`S_{ip} - \epsilon < \max_{n \in N_i} S_{in}`; the kept sets are
    :math:`\tilde P_i, \tilde N_i`. An anchor whose kept positives or kept negatives are empty
    contributes 0 (as the authors' code, which skips it but still divides by the batch size).

    Args:
      embeddings: (N, D), normalised inside (cosine similarities).
      labels: (N,) integer class labels.
      alpha, beta: the positive and negative weights' scales (2 and 50 in the paper).
      base: :math:`\lambda`, the similarity margin (0.5).
      epsilon: the mining margin (0.1).

    Elements are the anchors; anchors with no positive or no negative in the batch are masked
    out (the authors' code fails on them). The default mean is then the authors' loss: the sum
    over anchors divided by the batch size. Their code drops positives with similarity above
    1 - 1e-5 to skip the anchor itself; here the anchor is excluded by index (identical
    positives stay). pytorch-metric-learning's ``MultiSimilarityLoss`` with the
    ``MultiSimilarityMiner(epsilon)`` differs where one kept set is empty (it keeps the other
    term).

    Mining is a discrete selection: where a similarity crosses a threshold the loss jumps (a
    pair enters a sum), which is a discontinuity, not a kink; the thresholds are strict, and
    the selection carries no gradient. Between thresholds the loss is smooth:
    :math:`\partial\ell_i/\partial S_{ip} = -e^{-\alpha(S_{ip}-\lambda)} / (1 + \sum)`,
    :math:`\partial\ell_i/\partial S_{in} = e^{\beta(S_{in}-\lambda)} / (1 + \sum)` over the kept
    pairs; then through :math:`S = u u^T` and the normalisation.
    """
    name = "multi_similarity"
    for hyper, value in (("alpha", alpha), ("beta", beta)):
        _checks.in_range(name, hyper, value, lo=0, lo_open=True)
    _checks.in_range(name, "epsilon", epsilon, lo=0)
    embeddings, positive, negative = _pairs(name, embeddings, labels)
    u, back, forward = _normalized(embeddings)
    sim = u @ u.T
    hardest_positive = jnp.min(jnp.where(positive, sim, jnp.inf), axis=1, keepdims=True)
    hardest_negative = jnp.max(jnp.where(negative, sim, -jnp.inf), axis=1, keepdims=True)
    kept_negative = negative & (sim + epsilon > hardest_positive)
    kept_positive = positive & (sim - epsilon < hardest_negative)
    valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
    active = jnp.any(kept_positive, axis=1) & jnp.any(kept_negative, axis=1)

    def soft_count(kept, exponent):
        """log(1 + sum_kept e^exponent) and its derivative e^exponent / (1 + sum)."""
        x = jnp.where(kept, exponent, -jnp.inf)
        x = jnp.concatenate([jnp.zeros((x.shape[0], 1), x.dtype), x], axis=1)   # the "1 +"
        lse = jax.nn.logsumexp(x, axis=1)
        return lse, jnp.exp(x[:, 1:] - lse[:, None])

    pull, pull_slope = soft_count(kept_positive, -alpha * (sim - base))
    push, push_slope = soft_count(kept_negative, beta * (sim - base))
    value = jnp.where(active, pull / alpha + push / beta, 0.0)
    slope = (push_slope - pull_slope) * active[:, None]
    vjp, jvp = _cosine_vjp_jvp(u, back, forward, slope)
    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=valid)
