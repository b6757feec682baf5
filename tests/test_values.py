"""Values against independent NumPy float64 formulas and against optax."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lossjax as lj
import reference as ref
from conftest import sample

ELEMENTWISE = ["mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll",
               "gaussian_nll", "binary_cross_entropy", "binary_cross_entropy_with_logits",
               "focal_loss", "hinge", "squared_hinge", "minimax_discriminator",
               "minimax_generator", "nonsaturating_generator", "lsgan_discriminator",
               "lsgan_generator", "hinge_discriminator", "hinge_generator", "wasserstein_critic",
               "wasserstein_generator", "adaptive_robust", "uncertainty_weighting"]


def np_tree(x):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64)
                                  if np.issubdtype(np.asarray(a).dtype, np.floating)
                                  else np.asarray(a), x)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("kind", ["generic", "edge"])
def test_elementwise_values_match_numpy(name, kind):
    loss = lj.get(name)
    args, kwargs = sample(loss, kind)
    expected = getattr(ref, name)(*np_tree(args), **np_tree(kwargs))
    got = loss(*args, reduction="none", **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss(*args, **kwargs), expected.mean(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss(*args, reduction="sum", **kwargs), expected.sum(),
                               rtol=1e-12, atol=1e-12)


def test_smooth_l1_beta_zero_is_mae():
    args, _ = sample(lj.smooth_l1)
    np.testing.assert_allclose(lj.smooth_l1(*args, beta=0.0, reduction="none"),
                               ref.smooth_l1(*np_tree(args), beta=0.0), rtol=1e-14)


def test_poisson_rate_input_matches_numpy():
    key = jax.random.PRNGKey(3)
    rates = jax.random.uniform(key, (7,), jnp.float64, 0.0, 4.0)
    counts = jnp.asarray([0.0, 1.0, 2.0, 5.0, 0.0, 3.0, 9.0])
    for full in (False, True):
        np.testing.assert_allclose(
            lj.poisson_nll(rates, counts, log_input=False, full=full, reduction="none"),
            ref.poisson_nll(np.asarray(rates), np.asarray(counts), log_input=False, full=full),
            rtol=1e-12)


def test_gaussian_nll_shared_variance_over_last_axis():
    args, _ = sample(lj.gaussian_nll)
    p, t, v = args
    shared = v[:, :1]
    np.testing.assert_allclose(lj.gaussian_nll(p, t, shared, reduction="none"),
                               ref.gaussian_nll(*np_tree((p, t)), np.asarray(shared)), rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_integer_labels_follow_pytorch_mean(smoothing, weighted):
    args, kwargs = sample(lj.cross_entropy)
    z, labels = args
    weight = kwargs["weight"] if weighted else None
    got = lj.cross_entropy(z, labels, weight=weight, label_smoothing=smoothing)
    expected = ref.cross_entropy_mean(np.asarray(z), np.asarray(labels),
                                      None if weight is None else np.asarray(weight),
                                      label_smoothing=smoothing)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cross_entropy_probability_targets():
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)
    t = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (4, 6), jnp.float64))
    w = jnp.linspace(0.5, 2.0, 6)
    got = lj.cross_entropy(z, t, weight=w, label_smoothing=0.1, reduction="none")
    np.testing.assert_allclose(got, ref.cross_entropy_probabilities(
        np.asarray(z), np.asarray(t), np.asarray(w), 0.1), rtol=1e-12)
    # PyTorch: probability targets average over examples, not over target weights.
    np.testing.assert_allclose(lj.cross_entropy(z, t, weight=w, label_smoothing=0.1),
                               np.mean(np.asarray(got)), rtol=1e-12)


def test_cross_entropy_class_axis():
    z = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 4), jnp.float64)   # classes on axis 1
    labels = jax.random.randint(jax.random.PRNGKey(2), (3, 4), 0, 5)
    moved = jnp.moveaxis(z, 1, -1)
    np.testing.assert_allclose(lj.cross_entropy(z, labels, axis=1, reduction="none"),
                               lj.cross_entropy(moved, labels, reduction="none"), rtol=1e-14)
    g = lj.cross_entropy.grad(z, labels, axis=1)
    np.testing.assert_allclose(jnp.moveaxis(g, 1, -1), lj.cross_entropy.grad(moved, labels),
                               rtol=1e-14)


def test_nll_weighted_mean_and_ignore():
    args, kwargs = sample(lj.nll)
    lp, labels = np.asarray(args[0]), np.asarray(args[1])
    w = np.asarray(kwargs["weight"])
    keep = labels != -100
    per = ref.nll(lp[keep], labels[keep], w)
    np.testing.assert_allclose(lj.nll(*args, **kwargs), per.sum() / w[labels[keep]].sum(),
                               rtol=1e-12)
    none = np.asarray(lj.nll(*args, reduction="none", **kwargs))
    assert none[~keep].tolist() == [0.0] * int((~keep).sum())
    np.testing.assert_allclose(none[keep], per, rtol=1e-12)


def test_cross_entropy_out_of_range_labels_count_like_ignore_index():
    z = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
    labels = jnp.asarray([0, 7, 2, -3, 1])
    ignored = jnp.asarray([0, -100, 2, -100, 1])
    # under jit nothing is checked (the compiled program is the user's): such labels count
    # like ignore_index; an eager call checks the values and refuses them
    for fn in (lj.cross_entropy, lj.softmax_focal_loss):
        value, grad = jax.jit(fn), jax.jit(fn.grad)
        np.testing.assert_allclose(value(z, labels), value(z, ignored), rtol=1e-15)
        np.testing.assert_allclose(grad(z, labels), grad(z, ignored), rtol=1e-15)
        assert jax.jit(functools.partial(fn, reduction="none"))(z, labels)[1] == 0.0
        message = r"`labels`\[1\] = 7 must be a class index in \[0, 3\) or `ignore_index`"
        with lj.eager_checks(True), pytest.raises(Exception, match=message):
            fn(z, labels)
    np.testing.assert_allclose(jax.jit(lj.nll)(z, labels), jax.jit(lj.nll)(z, ignored),
                               rtol=1e-15)


def test_kl_divergence_matches_numpy_with_zero_targets():
    args, _ = sample(lj.kl_divergence, "edge")
    np.testing.assert_allclose(lj.kl_divergence(*args, reduction="none"),
                               ref.kl_divergence(*np_tree(args)), rtol=1e-12, atol=1e-300)
    lq, t = args
    np.testing.assert_allclose(
        lj.kl_divergence(lq, jnp.log(jnp.where(t > 0, t, 1e-300)), log_target=True,
                         reduction="none")[t.min(axis=-1) > 0],
        ref.kl_divergence(*np_tree(args))[np.asarray(t.min(axis=-1) > 0)], rtol=1e-12)


@pytest.mark.parametrize("kind", ["generic", "edge"])
def test_softmax_focal_matches_numpy(kind):
    args, kwargs = sample(lj.softmax_focal_loss, kind)
    z, labels = np.asarray(args[0]), np.asarray(args[1])
    keep = labels != -100
    alpha = kwargs.get("alpha")
    expected = ref.softmax_focal_loss(z[keep], labels[keep],
                                      None if alpha is None else np.asarray(alpha),
                                      kwargs["gamma"])
    got = np.asarray(lj.softmax_focal_loss(*args, reduction="none", **kwargs))[keep]
    finite = np.isfinite(expected)  # NumPy's direct formula overflows where lossjax does not
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-300)


def test_softmax_focal_with_gamma_zero_is_cross_entropy():
    args, _ = sample(lj.softmax_focal_loss)
    np.testing.assert_allclose(lj.softmax_focal_loss(*args, gamma=0.0),
                               lj.cross_entropy(*args), rtol=1e-13)
    zb, tb = sample(lj.focal_loss).args
    np.testing.assert_allclose(lj.focal_loss(zb, tb, gamma=0.0),
                               lj.binary_cross_entropy_with_logits(zb, tb), rtol=1e-13)


# -- optax, where it has the same loss ----------------------------------------------------

def _pair(name, kind="generic"):
    return sample(lj.get(name), kind)


@pytest.mark.parametrize("kind", ["generic", "edge"])
def test_equals_optax(kind):
    p, t = _pair("mse", kind).args
    np.testing.assert_allclose(lj.mse(p, t, reduction="none"), optax.losses.squared_error(p, t),
                               rtol=1e-14)
    np.testing.assert_allclose(lj.huber(p, t, delta=0.7, reduction="none"),
                               optax.losses.huber_loss(p, t, delta=0.7), rtol=1e-13)
    np.testing.assert_allclose(lj.log_cosh(p, t, reduction="none"),
                               optax.losses.log_cosh(p, t), rtol=1e-12, atol=1e-300)
    z, y = _pair("binary_cross_entropy_with_logits", kind).args
    np.testing.assert_allclose(lj.binary_cross_entropy_with_logits(z, y, reduction="none"),
                               optax.losses.sigmoid_binary_cross_entropy(z, y), rtol=1e-12,
                               atol=1e-300)
    z, y = _pair("focal_loss", kind).args
    for alpha in (None, 0.25):
        np.testing.assert_allclose(
            lj.focal_loss(z, y, alpha=alpha, gamma=2.0, reduction="none"),
            optax.losses.sigmoid_focal_loss(z, y, alpha=alpha, gamma=2.0), rtol=1e-10,
            atol=1e-300)
    s, y = _pair("hinge", kind).args
    np.testing.assert_allclose(lj.hinge(s, y, reduction="none"), optax.losses.hinge_loss(s, y),
                               rtol=1e-15)
    z, t = _pair("kl_divergence", kind).args   # logits-like rows with probability targets
    np.testing.assert_allclose(lj.cross_entropy(z, t, reduction="none"),
                               optax.losses.softmax_cross_entropy(z, t), rtol=1e-12)
    z, labels = _pair("softmax_focal_loss", kind).args
    keep = labels >= 0
    np.testing.assert_allclose(
        lj.cross_entropy(z[keep], labels[keep], reduction="none"),
        optax.losses.softmax_cross_entropy_with_integer_labels(z[keep], labels[keep]),
        rtol=1e-12)
    lq, t = _pair("kl_divergence", "generic").args
    np.testing.assert_allclose(lj.kl_divergence(lq, t, reduction="none"),
                               optax.losses.kl_divergence(lq, t), rtol=1e-12)


def test_cross_entropy_masked_classes_with_probability_targets():
    """-inf logits (masked classes) with zero targets: 0 log 0 = 0, finite value and gradient,
    as optax's safe_softmax_cross_entropy; a non-zero target on a masked class is +inf."""
    z = jnp.asarray([[2.0, -jnp.inf, 0.5, -1.0], [-jnp.inf, 1.0, -jnp.inf, 3.0]])
    t = jnp.asarray([[0.7, 0.0, 0.3, 0.0], [0.0, 0.25, 0.0, 0.75]])
    finite = np.where(np.isinf(np.asarray(z)), -1e300, np.asarray(z))     # NumPy float64
    lp = finite - np.log(np.sum(np.exp(finite - finite.max(-1, keepdims=True)), -1,
                                keepdims=True)) - finite.max(-1, keepdims=True)
    expected = -np.sum(np.asarray(t) * lp, axis=-1)
    np.testing.assert_allclose(lj.cross_entropy(z, t, reduction="none"), expected, rtol=1e-12)
    np.testing.assert_allclose(lj.cross_entropy(z, t, reduction="none"),
                               optax.losses.safe_softmax_cross_entropy(z, t), rtol=1e-12)
    want = jax.grad(lambda q: jnp.sum(optax.losses.safe_softmax_cross_entropy(q, t)))(z)
    for grad in (jax.grad(lj.cross_entropy)(z, t), lj.cross_entropy.grad(z, t)):
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, want / 2, rtol=1e-12, atol=1e-15)
    # derivatives w.r.t. the targets are finite too (no 0 x -inf inside)
    assert np.all(np.isfinite(jax.grad(lambda q: lj.cross_entropy(z, q))(t)))
    assert float(lj.cross_entropy(z, t.at[0, 1].set(0.1))) == np.inf
