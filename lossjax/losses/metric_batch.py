"""Metric-learning losses over the whole batch (family "metric"): NT-Xent and InfoNCE on
cosine similarities between every pair of rows, and triplets mined inside the batch. The
conventions are in :mod:`lossjax.losses.metric`."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _sampling
from lossjax._loss import Sample, Terms, loss
from lossjax.losses._common import gathered, hinge_slope
from lossjax.losses.metric import _labelled_rows, _rows, _separated_classes


_NORMALIZE_EPS = 1e-8


def _normalized(z):
    """z / max(|z|, eps) (as torch.nn.functional.normalize) with its VJP and JVP."""
    sq = jnp.sum(z * z, axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.where(sq > 0, sq, 1.0)) * (sq > 0)   # safe at 0 under autodiff
    inside = norm > _NORMALIZE_EPS
    denom = jnp.where(inside, norm, _NORMALIZE_EPS)
    unit = z / denom

    def back(g):      # d/dz of sum g . unit
        radial = jnp.where(inside, jnp.sum(g * unit, axis=-1, keepdims=True) * unit, 0.0)
        return (g - radial) / denom

    def forward(dz):
        radial = jnp.where(inside, jnp.sum(dz * unit, axis=-1, keepdims=True) * unit, 0.0)
        return (dz - radial) / denom
    return unit, back, forward


def _similarity_terms(name, a, b, temperature, self_pairs):
    """Cross-entropy over cosine-similarity rows: element i has logits s_ij = a_i . b_j / tau
    and target j = target(i); with ``self_pairs`` (NT-Xent) a = b = [z1; z2], s_ii is
    excluded and target(i) = i +- N."""
    _checks.in_range(name, "temperature", temperature, lo=0, lo_open=True)
    ua, back_a, fwd_a = _normalized(a)
    ub, back_b, fwd_b = _normalized(b)
    logits = ua @ ub.T / temperature
    rows = logits.shape[0]
    if self_pairs:
        half = rows // 2
        target = (jnp.arange(rows) + half) % rows
        logits = jnp.where(jnp.eye(rows, dtype=bool), -jnp.inf, logits)
    else:
        target = jnp.arange(rows)
    lse = jax.nn.logsumexp(logits, axis=-1)
    value = lse - logits[jnp.arange(rows), target]
    probs = jnp.exp(logits - lse[:, None])
    onehot = jax.nn.one_hot(target, rows, dtype=a.dtype)

    def ds(coef):            # dL/dS, S the similarity matrix (before 1/tau)
        coef = gathered(coef)
        return coef[:, None] * (probs - onehot) / temperature

    def jvp_rows(dsim):      # d value_i for a change dS of the similarities
        return (jnp.sum(probs * dsim, axis=-1) - jnp.sum(onehot * dsim, axis=-1)) / temperature

    return value, ua, ub, back_a, back_b, fwd_a, fwd_b, ds, jvp_rows


def _views_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        z1 = _sampling.normal(k1, (4, 3), dtype)
        return Sample((z1, z1 + _sampling.normal(k2, (4, 3), dtype, 0.5)),
                      {"temperature": 0.5})
    # a zero vector (its gradient is of order 1/eps = 1e8: beyond float16, so only in wider
    # dtypes), identical views, opposite views
    zero = 0.0 if jnp.finfo(dtype).bits >= 32 else 0.5
    z1 = jnp.asarray([[zero, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype)
    z2 = jnp.asarray([[1.0, 1.0], [1.0, 0.0], [0.0, -3.0]], dtype)
    return Sample((z1, z2), {"temperature": 0.1})


@loss(nonnegative=True, family="metric", elementwise=False, has_hess_diag=False, grad_wrt=("z2",),
      formula=r"\ell_i = -\log\frac{e^{\cos(z_i, z_{i^+})/\tau}}{\sum_{j \ne i} e^{\cos(z_i, z_j)/\tau}}",
      sampler=_views_sample,
      references=["Chen, Kornblith, Norouzi, Hinton, A Simple Framework for Contrastive "
                  "Learning of Visual Representations (SimCLR, NT-Xent), ICML 2020.",
                  "optax.losses.ntxent (the labelled form)."])
def ntxent(z1, z2, *, temperature=0.5):
    r"""NT-Xent (SimCLR), in two forms chosen by the second argument's dtype.

    Paired views, ``ntxent(z1, z2)`` with z1, z2 floating (N, D): each of the 2N embeddings
    must pick its other view among the 2N - 1 others by cosine similarity / temperature.
    Elements are the 2N embeddings.

    Labelled, ``ntxent(embeddings, labels)`` with integer labels (N,) (optax
    ``optax.losses.ntxent(embeddings, labels, temperature)``): every pair (i, j), j != i, of
    the same label is a positive pair, with loss
    :math:`-\log\frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k: y_k \ne y_i} e^{s_{ik}}}`,
    :math:`s = \cos / \tau` (the other positives of i are not in the denominator). Elements
    are the N anchors, each the sum over its positive pairs, and the mean divides by the
    number of positive pairs: optax's average over positive pairs. An anchor without a
    positive contributes nothing and does not count; a batch without any positive pair has
    mean 0 (optax: NaN, 0 / 0). An anchor without negatives has loss 0 on each of its pairs
    (as optax). The paired form equals the labelled one on [z1; z2] with labels
    [0..N-1, 0..N-1].

    Zero vectors are normalised as in ``torch.nn.functional.normalize`` (divided by
    max(|z|, 1e-8)): finite gradients. (optax clamps the squared norm at the dtype's eps
    instead; the two differ only for vectors shorter than sqrt(eps).) The default temperature
    is 0.5; optax's is 0.07. ``.grad`` is hand-derived in both forms; ``wrt="z2"`` exists in
    the paired form.
    """
    name = "ntxent"
    second = jnp.asarray(z2)
    if jnp.issubdtype(second.dtype, jnp.integer):
        return _labelled_ntxent(name, z1, second, temperature)
    if not jnp.issubdtype(second.dtype, jnp.floating):
        raise TypeError(f"{name}: `z2` must be the second views, floating (N, D), or integer "
                        f"labels (N,), got {_checks.describe(second)}.")
    (z2,) = _rows(name, "z1", z1, [("z2", z2)])
    z1, z2 = gathered(z1, z2)          # every embedding meets every other
    n = z1.shape[0]
    z = jnp.concatenate([z1, z2])
    value, u, _, back, _, fwd, _, ds, jvp_rows = _similarity_terms(name, z, z, temperature, True)

    def full_vjp(coef):
        g = ds(coef)
        return back((g + g.T) @ u)

    def jvp(dz1):
        du = fwd(jnp.concatenate([dz1, jnp.zeros_like(dz1)]))
        dsim = du @ u.T + u @ du.T
        return jvp_rows(dsim)

    return Terms(value, grad=None, vjp=lambda c: full_vjp(c)[:n], jvp=jvp,
                 partial_vjps={"z2": lambda c: full_vjp(c)[n:]})


def _labelled_ntxent(name, embeddings, labels, temperature):
    """optax's NT-Xent over (embeddings, labels): per anchor i, the sum over its positives j of
    softplus(lse_{k in N_i} s_ik - s_ij), N_i the anchors of another label."""
    labels = _labelled_rows(name, "z1", embeddings, labels)
    _checks.in_range(name, "temperature", temperature, lo=0, lo_open=True)
    embeddings, labels = gathered(embeddings, labels)
    n = embeddings.shape[0]
    u, back, fwd = _normalized(embeddings)
    logits = u @ u.T / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(n, dtype=bool)
    negative = ~same
    has_negative = jnp.any(negative, axis=1, keepdims=True)
    # logsumexp over the negatives, -inf (softplus(-inf) = 0) for an anchor with none, written
    # so that no -inf - -inf or log 0 reaches autodiff
    top = jax.lax.stop_gradient(jnp.max(jnp.where(negative, logits, -jnp.inf), axis=1,
                                        keepdims=True))
    top = jnp.where(has_negative, top, 0.0)
    total = jnp.sum(jnp.exp(jnp.where(negative, logits - top, -jnp.inf)), axis=1, keepdims=True)
    lse_neg = jnp.where(has_negative, jnp.log(jnp.where(has_negative, total, 1.0)) + top,
                        -jnp.inf)
    gap = lse_neg - logits                       # -log sigma_ij = softplus(gap)
    value = jnp.sum(jnp.where(positive, jax.nn.softplus(gap), 0.0), axis=1)
    # d value_i / d s_ij: -(1 - sigma_ij) on the positives; on the negatives the softmax over
    # N_i times sum_j (1 - sigma_ij)
    miss = jnp.where(positive, jax.nn.sigmoid(gap), 0.0)
    softmax_neg = jnp.exp(jnp.where(negative, logits - lse_neg, -jnp.inf))
    weights = softmax_neg * jnp.sum(miss, axis=1, keepdims=True) - miss
    pairs = jnp.sum(positive, axis=1)

    def vjp(coef):
        g = gathered(coef)[:, None] * weights / temperature
        return back((g + g.T) @ u)

    def jvp(dz):
        du = fwd(gathered(dz))
        return jnp.sum(weights * (du @ u.T + u @ du.T), axis=1) / temperature

    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=pairs > 0,
                 normalizer=pairs.astype(value.dtype))


@loss(nonnegative=True, family="metric", elementwise=False, has_hess_diag=False,
      grad_wrt=("keys",),
      formula=r"\ell_i = -\log\frac{e^{\cos(q_i, k_i)/\tau}}{\sum_j e^{\cos(q_i, k_j)/\tau}}",
      sampler=_views_sample,
      references=["van den Oord, Li, Vinyals, Representation Learning with Contrastive "
                  "Predictive Coding (InfoNCE), 2018."])
def info_nce(queries, keys, *, temperature=0.1):
    r"""InfoNCE with in-batch negatives: query i must pick key i among the N keys by cosine
    similarity / temperature (one direction; average it with the swapped call for the
    symmetric CLIP-style loss). Elements are the queries.
    """
    name = "info_nce"
    (keys,) = _rows(name, "queries", queries, [("keys", keys)])
    queries, keys = gathered(queries, keys)      # every query meets every key
    value, uq, uk, back_q, back_k, fwd_q, _, ds, jvp_rows = _similarity_terms(
        name, queries, keys, temperature, False)
    return Terms(value, grad=None, vjp=lambda c: back_q(ds(c) @ uk),
                 jvp=lambda dq: jvp_rows(fwd_q(dq) @ uk.T),
                 partial_vjps={"keys": lambda c: back_k(ds(c).T @ uq)})


# -- mined triplets ------------------------------------------------------------------------

def _distances(e):
    """Euclidean distance matrix, 0 (with derivative 0) on the diagonal and for equal rows."""
    diff = e[:, None, :] - e[None, :, :]
    sq = jnp.sum(diff * diff, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0), diff


def _distances_vjp(d_dist, dist, e):
    """sum_ab d_dist[a, b] dD_ab/de for D = _distances(e): each pair pulls its two rows along
    their difference (zero distances contribute 0, their derivative)."""
    a = d_dist / jnp.where(dist > 0, dist, 1.0) * (dist > 0)
    s = a + a.T
    return jnp.sum(s, axis=1)[:, None] * e - s @ e


def _distances_jvp(de, dist, diff):
    """dD_ab along the tangent ``de`` of the rows, for D, diff = _distances(e)."""
    return jnp.where(dist > 0, jnp.sum(diff * (de[:, None, :] - de[None, :, :]), axis=-1)
                     / jnp.where(dist > 0, dist, 1.0), 0.0)


def _mining_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        centers = jnp.asarray([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
        labels = jnp.asarray([0, 0, 1, 1, 2, 2, 0, 1], jnp.int32)
        e = (centers[labels] + _sampling.normal(k1, (8, 2), jnp.float32)).astype(dtype)
        return Sample((e, labels), {"margin": 0.5})
    e = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype)
    return Sample((e, jnp.asarray([0, 0, 1, 1, 2], jnp.int32)), {"margin": 1.0})


STRATEGIES = ("batch_hard", "semi_hard", "all")


@loss(nonnegative=True, perfect=_separated_classes, family="metric", elementwise=False,
      has_hess_diag=False,
      formula=r"\ell = \max(d(a, p) - d(a, n) + m, 0)\ \text{over mined (a, p, n)}",
      sampler=_mining_sample,
      references=["Hermans, Beyer, Leibe, In Defense of the Triplet Loss for Person "
                  "Re-Identification (batch hard, batch all), 2017.",
                  "Schroff et al., FaceNet (semi-hard negatives), CVPR 2015."])
def mined_triplet(embeddings, labels, *, strategy="batch_hard", margin=1.0):
    r"""Triplet loss with triplets mined inside the batch from (embeddings, labels), by
    masking (no Python loops); Euclidean distances.

    strategy:
      "batch_hard": per anchor, the farthest positive and the closest negative; elements
        are the anchors (those with no positive or no negative are masked out).
      "semi_hard": per (anchor, positive) pair, the closest negative farther than the
        positive, or the farthest negative when there is none (as FaceNet / TF-Addons);
        elements are the valid (anchor, positive) pairs.
      "all": every valid (anchor, positive, negative) triplet is an element; the mean is over
        all of them (pass ``where=`` to average over the active ones only).

    The mining choice is piecewise constant, so the gradient flows through the selected
    distances: ``.grad`` is that, hand-derived. Ties in the mining are discontinuities of
    the selection (the loss itself stays continuous there). Zero distances (duplicate
    embeddings) have derivative 0.
    """
    name = "mined_triplet"
    if strategy not in STRATEGIES:
        raise ValueError(f"{name}: `strategy` must be one of {', '.join(map(repr, STRATEGIES))},"
                         f" got {strategy!r}.")
    _checks.in_range(name, "margin", margin, lo=0)
    labels = _labelled_rows(name, "embeddings", embeddings, labels)
    embeddings, labels = gathered(embeddings, labels)    # mining looks across the batch
    n = embeddings.shape[0]
    dist, diff = _distances(embeddings)
    same = labels[:, None] == labels[None, :]
    pos_mask = same & ~jnp.eye(n, dtype=bool)
    neg_mask = ~same
    big = jnp.asarray(jnp.finfo(dist.dtype).max, dist.dtype)

    if strategy == "all":
        gap = dist[:, :, None] - dist[:, None, :] + margin                    # (a, p, n)
        valid = pos_mask[:, :, None] & neg_mask[:, None, :]
        gap = jnp.where(valid, gap, 0.0)

        def weights(c):          # dL/dD from coefficients over (a, p, n)
            act = c * hinge_slope(gap) * valid
            return jnp.sum(act, axis=2) - jnp.sum(act, axis=1)

        def delta(dd):           # d gap for a change dD of the distances
            return dd[:, :, None] - dd[:, None, :]
    elif strategy == "batch_hard":
        hardest_pos = jnp.argmax(jnp.where(pos_mask, dist, -1.0), axis=1)
        hardest_neg = jnp.argmin(jnp.where(neg_mask, dist, big), axis=1)
        valid = jnp.any(pos_mask, axis=1) & jnp.any(neg_mask, axis=1)
        rows = jnp.arange(n)
        gap = jnp.where(valid, dist[rows, hardest_pos] - dist[rows, hardest_neg] + margin, 0.0)
        sel_pos = jax.nn.one_hot(hardest_pos, n, dtype=dist.dtype)
        sel_neg = jax.nn.one_hot(hardest_neg, n, dtype=dist.dtype)

        def weights(c):
            act = (c * hinge_slope(gap) * valid)[:, None]
            return act * (sel_pos - sel_neg)

        def delta(dd):
            return jnp.sum(dd * (sel_pos - sel_neg), axis=1)
    else:  # semi_hard
        d_an = dist[:, None, :]                                               # (a, 1, n)
        farther = neg_mask[:, None, :] & (d_an > dist[:, :, None])            # (a, p, n)
        closest_farther = jnp.argmin(jnp.where(farther, d_an, big), axis=2)
        farthest = jnp.argmax(jnp.where(neg_mask, dist, -1.0), axis=1)        # (a,)
        chosen = jnp.where(jnp.any(farther, axis=2), closest_farther, farthest[:, None])
        valid = pos_mask & jnp.any(neg_mask, axis=1)[:, None]
        d_neg = jnp.take_along_axis(dist, chosen, axis=1)
        gap = jnp.where(valid, dist - d_neg + margin, 0.0)
        sel = jax.nn.one_hot(chosen, n, dtype=dist.dtype)                     # (a, p, n)

        def weights(c):
            act = c * hinge_slope(gap) * valid
            return act - jnp.einsum("ap,apn->an", act, sel)

        def delta(dd):
            return dd - jnp.einsum("apn,an->ap", sel, dd)

    def vjp(coef):
        return _distances_vjp(weights(gathered(coef)), dist, embeddings)

    def jvp(de):
        dd = _distances_jvp(gathered(de), dist, diff)
        return hinge_slope(gap) * delta(dd) * valid

    return Terms(jnp.maximum(gap, 0.0), grad=None, vjp=vjp, jvp=jvp, mask=valid)
