"""Property tests (hypothesis) on arbitrary arrays (any shape, logits anywhere in
[-1e4, 1e4]): invariants beyond the samplers' domains that tests/test_fuzz.py draws from."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import lossjax as lj
from conftest import compiled

SETTINGS = settings(max_examples=20, deadline=None)
REGRESSION = ["mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile"]
reals = st.floats(-1e4, 1e4, allow_nan=False, width=32)
vectors = hnp.arrays(np.float32, st.integers(1, 8), elements=reals)


@SETTINGS
@given(vectors, st.sampled_from(REGRESSION), st.integers(0, 2 ** 16))
def test_regression_nonnegative_zero_at_perfect_prediction_finite(p, name, seed):
    loss = lj.get(name)
    y = np.random.default_rng(seed).standard_normal(p.shape).astype(np.float32)
    value, at_perfect, g = compiled(lambda p, y: (
        loss(p, y, reduction="none"), loss(p, p, reduction="none"), loss.grad(p, y)),
        jnp.asarray(p), jnp.asarray(y))
    assert np.all(value >= 0)
    assert np.all(at_perfect == 0)
    assert np.all(np.isfinite(g))


@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(2, 5)), elements=reals),
       st.integers(0, 2 ** 16), st.floats(0.0, 3.0))
def test_multiclass_nonnegative_and_finite(z, seed, gamma):
    labels = jax.random.randint(jax.random.PRNGKey(seed), z.shape[:1], 0, z.shape[1])
    z = jnp.asarray(z)
    gamma = jnp.asarray(gamma, jnp.float32)       # traced: one program per shape, not per draw
    for loss, kw in ((lj.cross_entropy, {}), (lj.softmax_focal_loss, {"gamma": gamma})):
        value, g, auto = compiled(lambda z, labels, **kw: (
            loss(z, labels, reduction="none", **kw), loss.grad(z, labels, **kw),
            jax.grad(lambda q: loss(q, labels, **kw))(z)), z, labels, **kw)
        assert np.all(value >= 0)
        assert np.all(np.isfinite(g))
        assert np.all(np.isfinite(auto))


@SETTINGS
@given(hnp.arrays(np.float32, st.integers(1, 8), elements=reals), st.integers(0, 2 ** 16),
       st.floats(0.0, 3.0))
def test_binary_logit_losses_nonnegative_and_finite(z, seed, gamma):
    t = jax.random.bernoulli(jax.random.PRNGKey(seed), 0.5, z.shape).astype(jnp.float32)
    z = jnp.asarray(z)
    gamma = jnp.asarray(gamma, jnp.float32)       # traced: one program per shape, not per draw
    for loss, kw in ((lj.binary_cross_entropy_with_logits, {}), (lj.focal_loss, {"gamma": gamma}),
                     (lj.hinge, {}), (lj.squared_hinge, {})):
        y = 2 * t - 1 if "hinge" in loss.name else t
        value, g = compiled(lambda z, y, **kw: (loss(z, y, reduction="none", **kw),
                                                loss.grad(z, y, **kw)), z, y, **kw)
        assert np.all(value >= 0)
        assert np.all(np.isfinite(g))
