"""Metric-learning losses against NumPy references, mined triplets against explicit loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj

KEY = jax.random.PRNGKey(0)


def test_triplet_margin_uses_absolute_values_for_odd_p():
    a = jnp.asarray([[0.0, 0.0]])
    p = jnp.asarray([[1.0, -2.0]])
    n = jnp.asarray([[-3.0, 1.0]])
    # p = 3: (|1|^3 + |-2|^3)^(1/3) = 9^(1/3); without abs it would be (1 - 8)^(1/3) (NaN)
    want = max(9 ** (1 / 3) - 28 ** (1 / 3) + 1.0, 0.0)
    got = lj.triplet_margin(a, p, n, p=3.0, eps=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(lj.triplet_margin.grad(a, p, n, p=3.0))))


def test_triplet_margin_matches_numpy_with_swap():
    a, p, n = (jax.random.normal(k, (5, 3), jnp.float64) for k in jax.random.split(KEY, 3))
    A, P, N = (np.asarray(x) for x in (a, p, n))
    d = lambda x, y: np.linalg.norm(x - y + 1e-6, axis=1)  # noqa: E731
    for swap in (False, True):
        d_neg = np.minimum(d(A, N), d(P, N)) if swap else d(A, N)
        want = np.maximum(d(A, P) - d_neg + 1.0, 0)
        np.testing.assert_allclose(lj.triplet_margin(a, p, n, swap=swap, reduction="none"), want,
                                   rtol=1e-12)


def brute_force_mined(e, labels, strategy, margin):
    e, labels = np.asarray(e, np.float64), np.asarray(labels)
    n = len(labels)
    d = np.linalg.norm(e[:, None] - e[None], axis=-1)
    losses = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [k for k in range(n) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        if strategy == "batch_hard":
            losses.append(max(max(d[a, p] for p in pos) - min(d[a, k] for k in neg) + margin, 0))
        for p in pos:
            if strategy == "all":
                losses += [max(d[a, p] - d[a, k] + margin, 0) for k in neg]
            elif strategy == "semi_hard":
                farther = [d[a, k] for k in neg if d[a, k] > d[a, p]]
                d_neg = min(farther) if farther else max(d[a, k] for k in neg)
                losses.append(max(d[a, p] - d_neg + margin, 0))
    return np.mean(losses)


@pytest.mark.parametrize("strategy", ["batch_hard", "semi_hard", "all"])
@pytest.mark.parametrize("kind", ["generic", "edge"])
def test_mined_triplets_match_explicit_loops(strategy, kind):
    (e, labels), kw = lj.mined_triplet.sample(KEY, jnp.float64, kind)
    got = lj.mined_triplet(e, labels, strategy=strategy, **kw)
    np.testing.assert_allclose(got, brute_force_mined(e, labels, strategy, kw["margin"]),
                               rtol=1e-12)
    g = lj.mined_triplet.grad(e, labels, strategy=strategy, **kw)
    auto = jax.grad(lambda x: lj.mined_triplet(x, labels, strategy=strategy, **kw))(e)
    np.testing.assert_allclose(g, auto, rtol=1e-10, atol=1e-14)


def test_mined_triplet_rejects_unknown_strategy():
    (e, labels), _ = lj.mined_triplet.sample(KEY, jnp.float64)
    with pytest.raises(ValueError, match="`strategy` must be one of 'batch_hard'"):
        lj.mined_triplet(e, labels, strategy="hardest")


def np_normalize(z):
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)


def test_info_nce_and_ntxent_match_numpy():
    (z1, z2), kw = lj.ntxent.sample(KEY, jnp.float64)
    tau = kw["temperature"]
    q, k = np_normalize(np.asarray(z1)), np_normalize(np.asarray(z2))
    s = q @ k.T / tau
    want = np.log(np.exp(s).sum(1)) - np.diag(s)
    np.testing.assert_allclose(lj.info_nce(z1, z2, temperature=tau, reduction="none"), want,
                               rtol=1e-12)
    z = np.concatenate([q, k])
    s = z @ z.T / tau
    np.fill_diagonal(s, -np.inf)
    n = len(q)
    pos = (np.arange(2 * n) + n) % (2 * n)
    want = np.log(np.exp(s).sum(1)) - s[np.arange(2 * n), pos]
    np.testing.assert_allclose(lj.ntxent(z1, z2, temperature=tau, reduction="none"), want,
                               rtol=1e-12)


def test_center_loss_and_update():
    (x, y, c), _ = lj.center_loss.sample(KEY, jnp.float64)
    X, Y, C = np.asarray(x), np.asarray(y), np.asarray(c)
    keep = Y >= 0
    want = 0.5 * np.sum((X[keep] - C[Y[keep]]) ** 2, axis=1)
    np.testing.assert_allclose(lj.center_loss(x, y, c), want.mean(), rtol=1e-12)
    new = lj.center_update(c, x, y, alpha=0.5)
    for j in range(C.shape[0]):
        members = X[Y == j]
        delta = (len(members) * C[j] - members.sum(0)) / (1 + len(members))
        np.testing.assert_allclose(new[j], C[j] - 0.5 * delta, rtol=1e-12)
    lonely = lj.center_update(c, x[:1], y[:1], alpha=1.0)          # centers without samples stay
    others = [j for j in range(C.shape[0]) if j != int(Y[0])]
    np.testing.assert_allclose(np.asarray(lonely)[others], C[others])


def test_mined_triplet_one_member_classes():
    """The README's convention: a one-member class is never an anchor but is a negative for
    the others; no valid triplet at all gives 0, a zero gradient and count 0."""
    e = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    y = jnp.asarray([0, 0, 1, 1, 2])                # class 2 has one member
    d = np.linalg.norm(np.asarray(e)[:, None] - np.asarray(e)[None], axis=-1)
    same = np.asarray(y)[:, None] == np.asarray(y)[None]
    hard = [max(d[a, p] for p in range(5) if same[a, p] and p != a)
            - min(d[a, n] for n in range(5) if not same[a, n]) + 1.0 for a in range(4)]
    np.testing.assert_allclose(lj.mined_triplet(e, y), np.mean(np.maximum(hard, 0)),
                               rtol=1e-12)
    # moving the lone member changes the loss only through its role as a negative
    assert float(lj.mined_triplet.count(e, y)) == 4.0
    for strategy in ("batch_hard", "semi_hard", "all"):
        singletons = jnp.arange(5)
        assert float(lj.mined_triplet(e, singletons, strategy=strategy)) == 0.0
        assert float(lj.mined_triplet.count(e, singletons, strategy=strategy)) == 0.0
        assert not np.any(jax.grad(lj.mined_triplet)(e, singletons, strategy=strategy))
