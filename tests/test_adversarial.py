"""GAN losses: the saturation claim in numbers, and the WGAN-GP gradient penalty."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from lossjax import audit


def test_minimax_generator_saturates_where_the_nonsaturating_one_does_not():
    confident_reject = jnp.asarray([-8.0, -12.0])          # D(G(z)) = sigmoid(f) ~ 0
    sat = lj.minimax_generator.grad(confident_reject, reduction="none")
    nonsat = lj.nonsaturating_generator.grad(confident_reject, reduction="none")
    np.testing.assert_allclose(sat, -1 / (1 + np.exp(-np.asarray(confident_reject))), rtol=1e-12)
    assert np.all(np.abs(sat) < 4e-4) and np.all(np.abs(nonsat) > 0.999)


def test_discriminator_mean_is_mean_real_plus_mean_fake():
    r, f = lj.minimax_discriminator.sample(jax.random.PRNGKey(0), jnp.float64).args
    np.testing.assert_allclose(
        lj.minimax_discriminator(r, f),
        lj.binary_cross_entropy_with_logits(r, jnp.ones_like(r))
        + lj.binary_cross_entropy_with_logits(f, jnp.zeros_like(f)), rtol=1e-13)


def test_pair_losses_reject_mismatched_batches():
    with pytest.raises(ValueError, match="`fake_logits` has shape \\(3,\\) but `real_logits` "
                                         "has shape \\(4,\\)"):
        lj.hinge_discriminator(jnp.ones(4), jnp.ones(3))


KEY = jax.random.PRNGKey(3)
REAL = jax.random.normal(jax.random.PRNGKey(1), (6, 3), jnp.float64)
FAKE = jax.random.normal(jax.random.PRNGKey(2), (6, 3), jnp.float64) + 2.0


def test_gradient_penalty_of_a_linear_critic_is_exact():
    w = jnp.asarray([0.6, -1.2, 2.0])
    expected = (np.linalg.norm(np.asarray(w)) - 1.0) ** 2     # the gradient is w everywhere
    np.testing.assert_allclose(lj.gradient_penalty(lambda x: x @ w, REAL, FAKE, KEY), expected,
                               rtol=1e-12)
    unit = w / jnp.linalg.norm(w)
    assert lj.gradient_penalty(lambda x: x @ unit, REAL, FAKE, KEY) < 1e-20


def test_gradient_penalty_with_a_constant_critic_is_finite():
    params = jnp.zeros(3)
    gp = lambda p: lj.gradient_penalty(lambda x: 0.0 * (x @ p), REAL, FAKE, KEY)  # noqa: E731
    np.testing.assert_allclose(gp(params), 1.0)
    assert np.all(np.isfinite(np.asarray(jax.grad(gp)(params))))


def test_gradient_penalty_autodiff_is_audited_against_the_oracle():
    w = jax.random.normal(KEY, (3, 4), jnp.float64)

    def penalty(w_):
        return lj.gradient_penalty(lambda x: jnp.sum(jnp.tanh(x @ w_)), REAL, FAKE, KEY)

    report = audit.check(penalty, w)
    assert report.ok and report.blame == "none", report.verdict
    assert report.size == 12 and report.mode == "exhaustive"
