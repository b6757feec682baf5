"""The Loss object behaves like a plain function under every JAX transformation, and carries
its catalogue data."""
import functools
import inspect
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import chex
import numpy as np
import pytest
from absl.testing import parameterized

import lossjax as lj
from lossjax._compile import fast_jit
from conftest import NAMES, compiled, mean_numerator, sample

EXPECTED = {
    "large_vocab": {"linear_cross_entropy"},
    "regression": {"mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll",
                   "gaussian_nll", "mape", "msle", "poisson", "l2_loss"},
    "classification": {"binary_cross_entropy", "binary_cross_entropy_with_logits",
                       "binary_focal_cross_entropy", "cross_entropy", "nll", "kl_divergence",
                       "generalized_kl_divergence", "focal_loss", "softmax_focal_loss", "hinge",
                       "squared_hinge", "categorical_hinge", "soft_margin",
                       "multilabel_soft_margin", "multilabel_margin", "multi_margin",
                       "poly_loss_cross_entropy", "perceptron", "multiclass_perceptron",
                       "multiclass_hinge", "sparsemax", "multiclass_sparsemax",
                       "ranking_softmax", "generalized_cross_entropy",
                       "symmetric_cross_entropy", "arcface", "cosface"},
    "segmentation": {"dice", "tversky", "jaccard", "focal_tversky",
                     "multiclass_generalized_dice", "lovasz_softmax", "lovasz_hinge"},
    "metric": {"triplet_margin", "triplet_margin_with_distance", "mined_triplet", "contrastive",
               "center_loss", "ntxent", "info_nce", "cosine_embedding", "margin_ranking",
               "hinge_embedding", "cosine_similarity", "cosine_distance", "supcon",
               "lifted_structured", "multi_similarity", "circle"},
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
    assert sum(map(len, EXPECTED.values())) >= 75


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
        chex.assert_trees_all_equal(a, b)
        assert np.isfinite(compiled(loss, *a.args, **a.kwargs))
    with pytest.raises(ValueError, match="`kind` must be 'generic' or 'edge'"):
        loss.sample(jax.random.PRNGKey(0), kind="typical")


@functools.lru_cache(maxsize=None)
def _jitted_reference(name):
    """value, .grad, sum and count in one compiled program: what the eager variant must equal."""
    loss = lj.get(name)
    args, kwargs = sample(loss)
    return jax.device_get(jax.jit(functools.partial(_invariants, loss, kwargs))(*args))


def _invariants(loss, kwargs, *args):
    out = {"value": loss(*args, **kwargs), "sum": loss(*args, reduction="sum", **kwargs),
           "count": loss.count(*args, **kwargs),
           "none": loss(*args, reduction="none", **kwargs)}
    if loss.has_grad:
        out["grad"] = loss.grad(*args, **kwargs)
    return out


# Eagerly, JAX compiles every primitive of every shape on its own (seconds per loss): the
# eager path is checked on the first loss of every module, the jitted invariants of every
# loss on its hypothesis draws (tests/test_fuzz.py).
EAGER = list({loss.__module__: loss.name for loss in reversed(lj.catalog())}.values())


class LossObjectUnderJitAndEagerly(chex.TestCase):
    """The Loss-object invariants hold eagerly (chex.variants without jit) and equal the
    compiled program's (`_jitted_reference`)."""

    @chex.variants(without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in EAGER])
    def test_value_grad_sum_and_count(self, name):
        loss = lj.get(name)
        args, kwargs = sample(loss)
        out = self.variant(functools.partial(_invariants, loss, kwargs))(*args)
        chex.assert_shape(out["value"], ())
        chex.assert_type([out["value"], out["sum"]], args[0].dtype)
        chex.assert_tree_all_finite(out)
        chex.assert_trees_all_close(mean_numerator(name, out["none"], args, kwargs),
                                    out["value"] * out["count"], rtol=1e-12, atol=1e-12)
        chex.assert_trees_all_close(out["sum"], jnp.sum(out["none"]), rtol=1e-12, atol=1e-12)
        if loss.has_grad:
            chex.assert_equal_shape([out["grad"], args[0]])
            chex.assert_type(out["grad"], args[0].dtype)
        # eager and jit agree
        chex.assert_trees_all_close(out, _jitted_reference(name), rtol=1e-12, atol=1e-14)


def test_reverse_mode_only_losses_refuse_forward_mode_clearly():
    """Forward mode = reverse mode for every other loss: tests/test_derivatives.py."""
    reverse_only = [loss for loss in lj.catalog() if not loss.forward_mode]
    assert reverse_only
    for loss in reverse_only:
        args, kwargs = sample(loss)
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jacfwd(lambda *a: loss(*a, **kwargs))(*args)


def _split(kwargs):
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    return arrays, {k: v for k, v in kwargs.items() if k not in arrays}


def test_a_loss_and_its_grad_compile_once_and_never_retrace_on_new_values():
    for loss in (lj.huber, lj.cross_entropy, lj.ntxent, lj.dice, lj.linear_cross_entropy):
        chex.clear_trace_counter()           # chex counts by the function's code: per loss
        _, static = _split(loss.sample(jax.random.PRNGKey(0), jnp.float32).kwargs)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(args, arrays, loss=loss, static=static):
            return loss(*args, **arrays, **static), loss.grad(*args, **arrays, **static)

        for seed in range(3):                   # new values, same shapes and dtypes
            s = loss.sample(jax.random.PRNGKey(seed), jnp.float32)
            step(s.args, _split(s.kwargs)[0])
    chex.clear_trace_counter()


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
