"""Extreme but valid input gives finite, correct answers; half precision works."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from conftest import NAMES, sample

HALF = [jnp.float16, jnp.bfloat16]


def finite(x):
    return bool(np.all(np.isfinite(np.asarray(x, np.float64))))


def values_and_grads(loss, args, kwargs):
    p, rest = args[0], args[1:]
    value = loss(*args, **kwargs)
    auto = jax.grad(lambda q: loss(q, *rest, **kwargs))(p)
    return value, auto, (loss.grad(*args, **kwargs) if loss.has_grad else auto)


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "focal_loss", "hinge",
                                  "squared_hinge", "cross_entropy", "softmax_focal_loss"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_logits_of_magnitude_1e4_float32(name, gamma):
    loss = lj.get(name)
    key = jax.random.PRNGKey(1)
    z = jnp.asarray([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, 1e4, 3.0], [1e4, 1e4, 1e4, 1e4]],
                    jnp.float32)
    kwargs = {"gamma": gamma} if "focal" in name else {}
    if name in ("cross_entropy", "softmax_focal_loss"):
        labels = jnp.asarray([1, 0, 2])       # confidently wrong, wrong, tied
    elif name in ("hinge", "squared_hinge"):
        labels = jnp.where(jax.random.bernoulli(key, 0.5, z.shape), 1.0, -1.0).astype(jnp.float32)
    else:
        labels = jnp.asarray(jax.random.bernoulli(key, 0.5, z.shape), jnp.float32)
    for value in values_and_grads(loss, (z, labels), kwargs):
        assert finite(value), (name, value)


def test_confident_wrong_cross_entropy_is_large_and_exact():
    z = jnp.asarray([[1e4, -1e4]], jnp.float32)
    np.testing.assert_allclose(lj.cross_entropy(z, jnp.asarray([1])), 2e4, rtol=1e-6)
    np.testing.assert_allclose(lj.cross_entropy.grad(z, jnp.asarray([1])), [[1.0, -1.0]])
    np.testing.assert_allclose(lj.binary_cross_entropy_with_logits(z, jnp.asarray([[0.0, 1.0]],
                                                                                  jnp.float32)),
                               1e4, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64] + HALF)
def test_probabilities_of_exactly_zero_and_one(dtype):
    p = jnp.asarray([0.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype)
    t = jnp.asarray([0.0, 1.0, 0.0, 1.0, 0.5, 0.5], dtype)
    per = lj.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_allclose(np.asarray(per, np.float64), [0, 100, 100, 0, 50, 50])
    value, auto, analytic = values_and_grads(lj.binary_cross_entropy, (p, t), {})
    assert finite(value) and finite(auto) and finite(analytic)
    # d/dp of the clamped loss: the clamped log contributes 0, the other term its derivative.
    rtol = 1e-2 if dtype in HALF else 1e-7     # 1/6 itself is rounded to the dtype
    np.testing.assert_allclose(np.asarray(analytic, np.float64) * 6, [1, 0, 0, -1, 0.5, -0.5],
                               rtol=rtol)
    np.testing.assert_allclose(np.asarray(auto, np.float64), np.asarray(analytic, np.float64))


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile"])
def test_zero_residuals(name):
    loss = lj.get(name)
    p = jnp.asarray([0.0, 1.5, -2.0], jnp.float32)
    value, auto, analytic = values_and_grads(loss, (p, p), {})
    assert value == 0 or name == "quantile"
    assert finite(auto) and finite(analytic)
    if name != "quantile":
        assert np.all(np.asarray(analytic) == 0) and np.all(np.asarray(auto) == 0)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_matrix_within_each_losss_declared_bound(name):
    """float16, bfloat16, float32 on the generic and edge samples: the value and the
    hand-derived gradient come back in the input dtype, finite, and within the loss's declared
    bound (lossjax/audit/_precision.py) of the float64 computation on the same inputs. (The
    float64 cells compare .grad with float64 autodiff: tests/test_derivatives.py and the
    float64 catalogue audit do; `make bench` tabulates all four dtypes.)"""
    from lossjax.audit import _precision
    rows = lj.audit.precision_matrix([lj.get(name)], dtypes=("float16", "bfloat16", "float32"))
    assert len(rows) == 6
    for r in rows:
        where = f"{name} {r.dtype} {r.kind}"
        assert r.dtype_kept and r.finite, where
        assert r.value_error <= r.value_bound, (where, r.value_error / r.eps)
        assert r.grad_error <= r.grad_bound, (where, r.grad_error / r.eps)
    # the bound is the declared multiple of each dtype's eps
    k_value, _ = _precision.BOUNDS.get(name, _precision.DEFAULT_BOUND)
    assert rows[0].value_bound == k_value * float(jnp.finfo(jnp.float16).eps)


def test_dtype_matrix_detects_a_lossy_path(monkeypatch):
    """The matrix is not vacuous: a float32 path that silently computes in bfloat16 (as a
    mistaken mixed-precision policy would) fails its bound by orders of magnitude."""
    from lossjax import _loss

    def to_bfloat16(x):
        if hasattr(x, "dtype") and x.dtype == jnp.float32:
            return x.astype(jnp.bfloat16).astype(jnp.float32)
        return x
    assert lj.audit._precision.measure(lj.log_cosh, "float32", "generic").ok
    monkeypatch.setattr(_loss, "_upcast", to_bfloat16)
    lj.audit._precision._evaluate_all.clear_cache()   # compiled programs hold the old path
    try:
        row = lj.audit._precision.measure(lj.log_cosh, "float32", "generic")
    finally:
        lj.audit._precision._evaluate_all.clear_cache()
    assert not row.ok and row.value_error / row.eps > 100


def test_no_nan_gradient_through_where():
    # KL w.r.t. zero targets; smooth_l1 with beta = 0; focal with gamma < 1 at saturation.
    lq = jax.nn.log_softmax(jnp.asarray([[1.0, 2.0, 3.0]]))
    t = jnp.asarray([[0.0, 0.0, 1.0]])
    assert finite(jax.grad(lj.kl_divergence, argnums=(0, 1))(lq, t))
    p = jnp.asarray([0.0, 1.0])
    assert finite(jax.grad(lambda q: lj.smooth_l1(q, jnp.zeros(2), beta=0.0))(p))
    assert finite(jax.grad(lambda b: lj.smooth_l1(p, jnp.zeros(2), beta=b))(0.0))
    z = jnp.asarray([3e4, -3e4], jnp.float32)
    for gamma in (0.25, 0.5):
        assert finite(jax.hessian(lambda q: lj.focal_loss(q, jnp.asarray([1.0, 0.0]),
                                                          gamma=gamma))(z))


def test_traced_hyperparameters_under_vmap():
    z, t = sample(lj.focal_loss).args
    gammas = jnp.asarray([0.0, 0.5, 1.0, 2.0, 5.0])
    swept = jax.vmap(lambda g: lj.focal_loss(z, t, gamma=g))(gammas)
    looped = [lj.focal_loss(z, t, gamma=float(g)) for g in gammas]
    np.testing.assert_allclose(swept, looped, rtol=1e-12)
    g_swept = jax.vmap(lambda g: lj.focal_loss.grad(z, t, gamma=g))(gammas)
    np.testing.assert_allclose(g_swept[3], lj.focal_loss.grad(z, t, gamma=2.0), rtol=1e-12)


def test_focal_gradient_wrt_hard_targets_is_finite_and_right():
    """Found by fuzzing: log t and log(1 - t) inside (1 - p_t) gave NaN derivatives in t at
    t = 0 or 1. Reference: central differences of the direct float64 formula."""
    z = jnp.asarray([-2.0, 0.3, 1.5, 4.0, -0.7])
    t = jnp.asarray([0.0, 1.0, 0.3, 1.0, 0.0])

    def direct(t, gamma):
        s = 1 / (1 + np.exp(-np.asarray(z)))
        q = t * (1 - s) + (1 - t) * s
        return np.sum(q ** gamma * -(t * np.log(s) + (1 - t) * np.log1p(-s)))
    for gamma in (0.0, 0.5, 1.0, 2.0):
        got = jax.grad(lambda u: lj.focal_loss(z, u, gamma=gamma, reduction="sum"))(t)
        h = 1e-6
        fd = [(direct(np.asarray(t.at[i].add(h)), gamma) - direct(np.asarray(t.at[i].add(-h)),
                                                                  gamma)) / (2 * h)
              for i in range(5)]
        np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-8)
    saturated = jnp.asarray([1e4, -1e4, 1e4], jnp.float32)
    hard = jnp.asarray([1.0, 0.0, 0.0], jnp.float32)
    for gamma in (0.5, 2.0):
        g = jax.grad(lambda u: lj.focal_loss(saturated, u, gamma=gamma), argnums=0)(hard)
        assert finite(g)
