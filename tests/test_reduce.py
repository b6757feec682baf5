"""Reduction semantics, written once in lossjax.reduce, checked through a loss and directly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from conftest import compiled
from lossjax import reduce as R

P = jnp.asarray([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
T = jnp.zeros((2, 3))
SQ = np.asarray(P) ** 2


def test_mean_sum_none():
    np.testing.assert_allclose(lj.mse(P, T), SQ.mean())
    np.testing.assert_allclose(lj.mse(P, T, reduction="sum"), SQ.sum())
    np.testing.assert_allclose(lj.mse(P, T, reduction="none"), SQ)


def test_weighted_mean_is_sum_w_l_over_sum_w():
    w = jnp.asarray([[1.0, 2.0, 0.0], [0.5, 1.0, 3.0]])
    np.testing.assert_allclose(lj.mse(P, T, weights=w), (w * SQ).sum() / w.sum())
    np.testing.assert_allclose(lj.mse(P, T, weights=w, reduction="sum"), (w * SQ).sum())
    np.testing.assert_allclose(lj.mse(P, T, weights=w, reduction="none"), w * SQ)


def test_weights_broadcast_from_trailing_axes_only():
    row = jnp.asarray([1.0, 2.0, 3.0])
    np.testing.assert_allclose(lj.mse(P, T, weights=row), (row * SQ).sum() / (2 * row.sum()))
    with pytest.raises(ValueError, match="`weights` has shape \\(2,\\)"):
        lj.mse(P, T, weights=jnp.ones(2))


def test_where_mask_selects_elements():
    m = jnp.asarray([[True, False, True], [False, False, True]])
    np.testing.assert_allclose(lj.mse(P, T, where=m), SQ[np.asarray(m)].mean())
    np.testing.assert_allclose(lj.mse(P, T, where=m, reduction="none"), np.where(m, SQ, 0))
    w = jnp.full((2, 3), 2.0)
    np.testing.assert_allclose(lj.mse(P, T, where=m, weights=w), SQ[np.asarray(m)].mean())


@pytest.mark.parametrize("name", [loss.name for loss in lj.catalog()])
def test_fully_masked_batch_gives_zero_and_zero_gradient(name):
    loss = lj.get(name)
    args, kwargs = loss.sample(jax.random.PRNGKey(0), jnp.float64, "edge")
    shape = jax.eval_shape(lambda: loss(*args, reduction="none", **kwargs)).shape
    masks = (dict(where=jnp.zeros(shape, bool)), dict(weights=jnp.zeros(shape)))

    def routes(*a, **k):            # both ways of emptying the batch, in one program
        return [(loss(*a, **k, **m), jax.grad(lambda p: loss(p, *a[1:], **k, **m))(a[0]),
                 loss.grad(*a, **k, **m) if loss.has_grad else None) for m in masks]
    for value, g, analytic in compiled(routes, *args, **kwargs):
        assert value == 0.0
        assert np.all(g == 0.0), g
        if loss.has_grad:
            assert np.all(analytic == 0.0)


def test_all_true_mask_and_unit_weights_change_nothing():
    for extra in (dict(where=jnp.ones((2, 3), bool)), dict(weights=jnp.ones((2, 3)))):
        for reduction in ("mean", "sum", "none"):
            np.testing.assert_allclose(lj.huber(P, T, reduction=reduction, **extra),
                                       lj.huber(P, T, reduction=reduction))


def test_coefficients_are_the_vjp_of_reduce():
    v = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    w = jnp.asarray([1.0, 0.5, 2.0, 0.0])
    m = jnp.asarray([True, True, False, True])
    n = jnp.asarray([2.0, 1.0, 1.0, 3.0])
    for reduction in ("mean", "sum"):
        auto = jax.grad(lambda x: R.reduce(x, reduction, w, m, n))(v)
        np.testing.assert_allclose(R.coefficients(v, reduction, w, m, n), auto)
    cot = jnp.asarray([0.3, -1.0, 2.0, 5.0])
    _, vjp = jax.vjp(lambda x: R.reduce(x, "none", w, m), v)
    np.testing.assert_allclose(R.coefficients(v, "none", w, m, cotangent=cot), vjp(cot)[0])


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError, match="mse: `reduction` must be one of 'mean', 'sum', "
                                         "'none', got 'avg'"):
        lj.mse(P, T, reduction="avg")


def test_where_must_be_boolean():
    with pytest.raises(TypeError, match="`where` must be a boolean mask, got float64\\[2,3\\]"):
        lj.mse(P, T, where=jnp.ones((2, 3)))


def test_count_is_the_means_denominator():
    """Loss.count: sum = mean x count, and means over microbatches combine as
    sum(sums) / sum(counts) (PyTorch's class-weighted denominator included)."""
    z = jnp.asarray(np.random.default_rng(0).standard_normal((6, 3)))
    y = jnp.asarray([0, 2, -100, 1, 2, 7])                 # one ignored, one out of range
    with lj.eager_checks(False):           # out of range on purpose: what jitted code computes
        _count_is_the_means_denominator(z, y)          # (the suite's default, made explicit)


def _count_is_the_means_denominator(z, y):
    w = jnp.asarray([0.5, 2.0, 1.5])
    # labels 0, 2, 1, 2 count with their class weights; -100 and 7 do not
    assert float(lj.cross_entropy.count(z, y, weight=w)) == 0.5 + 1.5 + 2.0 + 1.5
    m = jnp.asarray([True, True, True, False, True, True])
    assert float(lj.cross_entropy.count(z, y, where=m)) == 3.0
    assert float(lj.mse.count(z, z, weights=jnp.full((6, 3), 0.5))) == 9.0
    assert float(lj.mse.count(z, z, where=jnp.zeros((6, 3), bool))) == 0.0
    total = lj.cross_entropy(z, y, weight=w, reduction="sum")
    np.testing.assert_allclose(total, lj.cross_entropy(z, y, weight=w)
                               * lj.cross_entropy.count(z, y, weight=w), rtol=1e-14)
    halves = [(z[:3], y[:3]), (z[3:], y[3:])]
    combined = (sum(lj.cross_entropy(a, b, weight=w, reduction="sum") for a, b in halves)
                / sum(lj.cross_entropy.count(a, b, weight=w) for a, b in halves))
    np.testing.assert_allclose(combined, lj.cross_entropy(z, y, weight=w), rtol=1e-14)
