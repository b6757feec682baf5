"""Multi-task weighted sums and uncertainty weighting."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj

KEY = jax.random.PRNGKey(0)
P, T = lj.huber.sample(KEY, jnp.float64).args
Z, Y = lj.cross_entropy.sample(KEY, jnp.float64).args


def test_weighted_sum_value_parts_and_composed_grad():
    total = lj.weighted_sum(reg=(lj.huber, 2.0), cls=(lj.cross_entropy, 0.5))
    tasks = dict(reg=(P, T, {"delta": 0.5}), cls=(Z, Y))
    parts = total.parts(**tasks)
    np.testing.assert_allclose(parts["reg"], lj.huber(P, T, delta=0.5))
    np.testing.assert_allclose(total(**tasks), 2.0 * parts["reg"] + 0.5 * parts["cls"])
    grads = total.grad(**tasks)
    auto_reg = jax.grad(lambda p: total(reg=(p, T, {"delta": 0.5}), cls=(Z, Y)))(P)
    auto_cls = jax.grad(lambda z: total(reg=(P, T, {"delta": 0.5}), cls=(z, Y)))(Z)
    np.testing.assert_allclose(grads["reg"], auto_reg, rtol=1e-12)
    np.testing.assert_allclose(grads["cls"], auto_cls, rtol=1e-12, atol=1e-16)


def test_weighted_sum_sweeps_weights_under_vmap():
    weights = jnp.linspace(0.0, 1.0, 5)
    swept = jax.vmap(lambda w: lj.weighted_sum(a=(lj.mse, w), b=(lj.mae, 1 - w))(
        a=(P, T), b=(P, T)))(weights)
    np.testing.assert_allclose(swept, [float(w) * lj.mse(P, T) + (1 - float(w)) * lj.mae(P, T)
                                       for w in weights], rtol=1e-12)


def test_weighted_sum_errors():
    total = lj.weighted_sum(a=(lj.mse, 1.0))
    with pytest.raises(ValueError, match="missing \\['a'\\], unexpected \\['b'\\]"):
        total(b=(P, T))
    with pytest.raises(TypeError, match="must be given as a tuple"):
        total(a=P)
    with pytest.raises(TypeError, match="must be \\(loss, weight\\) with a lossjax Loss"):
        lj.weighted_sum(a=(lambda p, t: 0.0, 1.0))


def test_uncertainty_weighting_optimum_and_learning():
    losses = jnp.asarray([0.2, 1.0, 5.0])
    # d/ds (c e^{-s} L + s/2) = 0  at  s* = log(2 c L)
    s_star = jnp.log(2 * 0.5 * losses)
    g = lj.uncertainty_weighting.grad(losses, s_star, wrt="log_vars", reduction="sum")
    np.testing.assert_allclose(g, 0.0, atol=1e-15)
    # a few gradient steps on the log-variances move towards s*
    s = jnp.zeros(3)
    for _ in range(300):
        s = s - 0.5 * lj.uncertainty_weighting.grad(losses, s, wrt="log_vars", reduction="sum")
    np.testing.assert_allclose(s, s_star, atol=1e-6)
    # the noisiest task (largest loss) gets the smallest weight e^{-s}
    w = lj.uncertainty_weighting.grad(losses, s, reduction="none")
    assert w[0] > w[1] > w[2]
