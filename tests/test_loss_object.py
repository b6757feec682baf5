"""The Loss object behaves like a plain function under every JAX transformation, and carries
its catalogue data."""
import inspect
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from conftest import NAMES, sample

EXPECTED = {
    "large_vocab": {"linear_cross_entropy"},
    "regression": {"mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll",
                   "gaussian_nll"},
    "classification": {"binary_cross_entropy", "binary_cross_entropy_with_logits",
                       "cross_entropy", "nll", "kl_divergence", "focal_loss",
                       "softmax_focal_loss", "hinge", "squared_hinge"},
    "segmentation": {"dice", "tversky", "jaccard"},
    "metric": {"triplet_margin", "mined_triplet", "contrastive", "center_loss", "ntxent",
               "info_nce", "cosine_embedding", "margin_ranking"},
    "robust": {"adaptive_robust"},
    "composite": {"uncertainty_weighting"},
    "sequence": {"hamming", "soft_hamming", "ctc"},
    "adversarial": {"minimax_discriminator", "minimax_generator", "nonsaturating_generator",
                    "lsgan_discriminator", "lsgan_generator", "hinge_discriminator",
                    "hinge_generator", "wasserstein_critic", "wasserstein_generator"},
}


def test_catalog_and_get():
    by_family = {}
    for loss in lj.catalog():
        by_family.setdefault(loss.family, set()).add(loss.name)
        assert lj.get(loss.name) is loss
        assert getattr(lj, loss.name) is loss
    assert by_family == EXPECTED


@pytest.mark.parametrize("name", NAMES)
def test_catalogue_data(name):
    loss = lj.get(name)
    assert isinstance(loss.formula, str) and "\\ell" in loss.formula
    assert loss.__doc__ and len(loss.__doc__) > 80
    assert all(isinstance(k, lj.Kink) and k.where and k.subgradient for k in loss.kinks)
    params = inspect.signature(loss).parameters
    for kw in ("reduction", "weights", "where"):
        assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY
    hyper = [p for p in params.values() if p.default is not inspect.Parameter.empty]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in hyper)
    assert name in repr(loss)


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_valid_and_seeded(name):
    loss = lj.get(name)
    for kind in ("generic", "edge"):
        a = loss.sample(jax.random.PRNGKey(5), jnp.float32, kind)
        b = loss.sample(jax.random.PRNGKey(5), jnp.float32, kind)
        assert isinstance(a, lj.Sample)
        assert a.args[0].dtype == jnp.float32
        jax.tree_util.tree_map(np.testing.assert_array_equal, a.args, b.args)
        assert np.isfinite(float(loss(*a.args, **a.kwargs)))
    with pytest.raises(ValueError, match="`kind` must be 'generic' or 'edge'"):
        loss.sample(jax.random.PRNGKey(0), kind="typical")


@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_and_forward_mode_like_a_plain_function(name):
    loss = lj.get(name)
    args, kwargs = sample(loss)
    f = lambda q, *r: loss(q, *r, **kwargs)  # noqa: E731
    eager = f(*args)
    np.testing.assert_allclose(jax.jit(f)(*args), eager, rtol=1e-13)
    if loss.has_grad:
        g = loss.grad(*args, **kwargs)
        np.testing.assert_allclose(jax.jit(lambda *a: loss.grad(*a, **kwargs))(*args), g,
                                   rtol=1e-13, atol=1e-15 * float(jnp.max(jnp.abs(g))))
    # vmap over a new leading batch axis = a Python loop
    args2, _ = sample(loss, seed=1)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), args, args2)
    batched = jax.vmap(f)(*stacked)
    np.testing.assert_allclose(batched, [eager, f(*args2)], rtol=1e-13)
    # forward mode equals reverse mode (where the loss supports forward mode)
    if not loss.forward_mode:
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jacfwd(f)(*args)
        return
    fwd = jax.jacfwd(f)(*args)
    np.testing.assert_allclose(fwd, jax.grad(f)(*args), rtol=1e-10, atol=1e-14)


def test_hessian_of_a_loss():
    p, t = sample(lj.cross_entropy).args
    h = jax.hessian(lj.cross_entropy)(p, t)
    assert h.shape == p.shape + p.shape
    np.testing.assert_allclose(h.reshape(p.size, p.size), h.reshape(p.size, p.size).T,
                               atol=1e-14)


def test_grad_keeps_positional_and_keyword_predictions_equal():
    p, t = sample(lj.mse).args
    np.testing.assert_array_equal(lj.mse.grad(predictions=p, targets=t), lj.mse.grad(p, t))
    np.testing.assert_array_equal(lj.mse(predictions=p, targets=t), lj.mse(p, t))


def test_importing_lossjax_does_not_start_a_backend():
    """Users must still be able to configure JAX (device count, platforms) after the import."""
    code = ("import os, lossjax, jax\n"
            "os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=3'\n"
            "print(jax.device_count())\n")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "3"
