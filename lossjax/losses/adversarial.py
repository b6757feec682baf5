"""Adversarial (GAN) losses on discriminator/critic outputs, and the WGAN-GP penalty.

Discriminator losses take ``(real_logits, fake_logits)`` of the same shape (paired batches;
the elements are the pairs, so the mean is mean_real + mean_fake); generator losses take
``fake_logits``. Logits are the discriminator's raw outputs D(x) before any sigmoid; for the
Wasserstein losses they are the critic's scores. ``.grad`` is w.r.t. the first argument and
``.grad(..., wrt="fake_logits")`` w.r.t. the fake logits.

Why the generator losses differ (Goodfellow et al. 2014): with D(G(z)) = sigmoid(f), the
minimax generator minimises log(1 - sigmoid(f)), whose derivative -sigmoid(f) vanishes when
the discriminator confidently rejects the fakes (f very negative) early in training; the
non-saturating generator minimises -log sigmoid(f), derivative -sigmoid(-f), close to -1
there.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import hinge_slope

_GOODFELLOW = "Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014."


def _pair(name, real, fake):
    fake = _checks.floating(name, "fake_logits", fake)
    _checks.same_shape(name, "real_logits", real, "fake_logits", fake)
    return real, fake.astype(real.dtype)


def _pair_sampler(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.normal(k1, _sampling.GENERIC_SHAPE, dtype, 3.0),
                       _sampling.normal(k2, _sampling.GENERIC_SHAPE, dtype, 3.0)), {})
    s = _sampling.big(dtype)   # saturates the sigmoid, and its square still fits the dtype
    real = jnp.asarray([s, -s, 0.0, 1.0, -1.0, 2.0, 0.5], dtype)
    fake = jnp.asarray([-s, s, 0.0, -1.0, 1.0, -3.0, 1.0], dtype)
    return Sample((real, fake), {})


def _fake_sampler(key, dtype, kind):
    if kind == "generic":
        return Sample((_sampling.normal(key, _sampling.GENERIC_SHAPE, dtype, 3.0),), {})
    s = _sampling.big(dtype)
    return Sample((jnp.asarray([-s, s, 0.0, -1.0, 1.0, -30.0, 3.0], dtype),), {})


def _sigmoids(z):
    return jax.nn.sigmoid(z), jax.nn.sigmoid(-z)


# -- perfect predictions (Loss.perfect) -------------------------------------------------------

def _confident_discriminator(s):
    real, _ = s.args
    big = _sampling.saturating(real.dtype)
    return Sample((jnp.full_like(real, big), jnp.full_like(real, -big)), s.kwargs)


def _fooled_discriminator(s):
    (fake,) = s.args
    return Sample((jnp.full_like(fake, _sampling.saturating(fake.dtype)),), s.kwargs)


def _least_squares_targets(s):
    real, _ = s.args
    return Sample((jnp.ones_like(real), jnp.zeros_like(real)), s.kwargs)


def _least_squares_fake(s):
    (fake,) = s.args
    return Sample((jnp.ones_like(fake),), s.kwargs)


def _beyond_hinges(s):
    real, _ = s.args
    return Sample((jnp.ones_like(real), -jnp.ones_like(real)), s.kwargs)


@loss(nonnegative=True, perfect=_confident_discriminator, family="adversarial", elementwise=True,
      grad_wrt=("fake_logits",),
      formula=r"\ell = -\log\sigma(D_{real}) - \log(1 - \sigma(D_{fake}))",
      sampler=_pair_sampler, references=[_GOODFELLOW])
def minimax_discriminator(real_logits, fake_logits):
    r"""Minimax (standard) discriminator loss: binary cross-entropy with real = 1, fake = 0,
    computed as :math:`\operatorname{softplus}(-r) + \operatorname{softplus}(f)` (finite for any
    logits).

    Derivatives: :math:`-\sigma(-r)` w.r.t. the real logits, :math:`\sigma(f)` w.r.t. the fake
    ones; second derivative :math:`\sigma(r)\sigma(-r)`.
    """
    r, f = _pair("minimax_discriminator", real_logits, fake_logits)
    sr, sr_bar = _sigmoids(r)
    return Terms(jax.nn.softplus(-r) + jax.nn.softplus(f), grad=lambda: -sr_bar,
                 hess=lambda: sr * sr_bar, partials={"fake_logits": lambda: jax.nn.sigmoid(f)})


@loss(family="adversarial", elementwise=True,
      formula=r"\ell = \log(1 - \sigma(D_{fake}))", sampler=_fake_sampler,
      references=[_GOODFELLOW])
def minimax_generator(fake_logits):
    r"""Minimax (saturating) generator loss :math:`\log(1 - \sigma(f)) = -\operatorname{softplus}(f)`.

    Its derivative :math:`-\sigma(f)` vanishes when the discriminator rejects the fakes
    confidently (f very negative): the generator stops learning early. Negative by design.
    """
    f = fake_logits
    s, s_bar = _sigmoids(f)
    return Terms(-jax.nn.softplus(f), grad=lambda: -s, hess=lambda: -s * s_bar)


@loss(nonnegative=True, perfect=_fooled_discriminator, family="adversarial", elementwise=True,
      formula=r"\ell = -\log\sigma(D_{fake})", sampler=_fake_sampler, references=[_GOODFELLOW])
def nonsaturating_generator(fake_logits):
    r"""Non-saturating generator loss :math:`-\log\sigma(f) = \operatorname{softplus}(-f)`.

    Derivative :math:`-\sigma(-f)`: about -1 exactly where the minimax generator's vanishes.
    """
    f = fake_logits
    s, s_bar = _sigmoids(f)
    return Terms(jax.nn.softplus(-f), grad=lambda: -s_bar, hess=lambda: s * s_bar)


@loss(nonnegative=True, perfect=_least_squares_targets, family="adversarial", elementwise=True,
      grad_wrt=("fake_logits",),
      formula=r"\ell = \tfrac12 (D_{real} - 1)^2 + \tfrac12 D_{fake}^2",
      sampler=_pair_sampler,
      references=["Mao et al., Least Squares Generative Adversarial Networks, ICCV 2017."])
def lsgan_discriminator(real_logits, fake_logits):
    r"""Least-squares GAN discriminator loss with targets 1 (real) and 0 (fake).

    Derivatives: :math:`r - 1` w.r.t. the real scores and :math:`f` w.r.t. the fake ones;
    the penalty grows quadratically with the distance to the target, so it never saturates.
    """
    r, f = _pair("lsgan_discriminator", real_logits, fake_logits)
    return Terms(0.5 * (r - 1) ** 2 + 0.5 * f ** 2, grad=lambda: r - 1,
                 hess=lambda: jnp.ones_like(r), partials={"fake_logits": lambda: f})


@loss(nonnegative=True, perfect=_least_squares_fake, family="adversarial", elementwise=True,
      formula=r"\ell = \tfrac12 (D_{fake} - 1)^2", sampler=_fake_sampler,
      references=["Mao et al., Least Squares Generative Adversarial Networks, ICCV 2017."])
def lsgan_generator(fake_logits):
    r"""Least-squares GAN generator loss: the fakes' scores pushed to the real target 1.

    Derivative :math:`f - 1`, second derivative 1.
    """
    f = fake_logits
    return Terms(0.5 * (f - 1) ** 2, grad=lambda: f - 1, hess=lambda: jnp.ones_like(f))


@loss(nonnegative=True, perfect=_beyond_hinges, family="adversarial", elementwise=True,
      grad_wrt=("fake_logits",),
      formula=r"\ell = \max(0, 1 - D_{real}) + \max(0, 1 + D_{fake})",
      sampler=_pair_sampler,
      kinks=[Kink("real_logits == 1", "-1/2 (midpoint of -1 and 0)", lambda r, f: r == 1),
             Kink("fake_logits == -1", "1/2 (midpoint of 0 and 1)", lambda r, f: f == -1,
                  argument="fake_logits")],
      references=["Lim & Ye, Geometric GAN, 2017; Miyato et al., Spectral Normalization, "
                  "ICLR 2018."])
def hinge_discriminator(real_logits, fake_logits):
    r"""Hinge discriminator loss :math:`\max(0, 1 - r) + \max(0, 1 + f)`.

    Derivatives: -1 for real logits below the margin 1, +1 for fake logits above -1, 0
    beyond the margins; on a margin, the midpoint (see ``.kinks``).
    """
    r, f = _pair("hinge_discriminator", real_logits, fake_logits)
    return Terms(jnp.maximum(0.0, 1 - r) + jnp.maximum(0.0, 1 + f),
                 grad=lambda: -hinge_slope(1 - r), hess=lambda: jnp.zeros_like(r),
                 partials={"fake_logits": lambda: hinge_slope(1 + f)})


@loss(family="adversarial", elementwise=True,
      formula=r"\ell = -D_{fake}", sampler=_fake_sampler,
      references=["Lim & Ye, Geometric GAN, 2017."])
def hinge_generator(fake_logits):
    r"""Hinge generator loss :math:`-f` (as in SN-GAN): the generator raises the critic's
    score of its samples; derivative -1 everywhere, so it never saturates."""
    f = fake_logits
    return Terms(-f, grad=lambda: -jnp.ones_like(f), hess=lambda: jnp.zeros_like(f))


@loss(family="adversarial", elementwise=True, grad_wrt=("fake_logits",),
      formula=r"\ell = D_{fake} - D_{real}", sampler=_pair_sampler,
      references=["Arjovsky, Chintala, Bottou, Wasserstein GAN, ICML 2017."])
def wasserstein_critic(real_logits, fake_logits):
    r"""Wasserstein critic loss :math:`f - r`: its negative mean estimates the Wasserstein-1
    distance when the critic is 1-Lipschitz (enforce it with :func:`gradient_penalty`)."""
    r, f = _pair("wasserstein_critic", real_logits, fake_logits)
    return Terms(f - r, grad=lambda: -jnp.ones_like(r), hess=lambda: jnp.zeros_like(r),
                 partials={"fake_logits": lambda: jnp.ones_like(f)})


@loss(family="adversarial", elementwise=True,
      formula=r"\ell = -D_{fake}", sampler=_fake_sampler,
      references=["Arjovsky, Chintala, Bottou, Wasserstein GAN, ICML 2017."])
def wasserstein_generator(fake_logits):
    r"""Wasserstein generator loss :math:`-f`: the generator raises the critic's score of its
    samples; derivative -1 everywhere, so it never saturates."""
    f = fake_logits
    return Terms(-f, grad=lambda: -jnp.ones_like(f), hess=lambda: jnp.zeros_like(f))


def gradient_penalty(critic_fn, real, fake, key, *, target_norm=1.0):
    r"""WGAN-GP gradient penalty (Gulrajani et al. 2017):
    :math:`\mathbb{E}_{\hat x}\left[(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2\right]`
    at :math:`\hat x = \epsilon x_{real} + (1 - \epsilon) x_{fake}`, one
    :math:`\epsilon \sim U(0, 1)` per example.

    Args:
      critic_fn: maps one example (shaped like ``real[0]``) to a scalar score; close over
        the critic's parameters to differentiate the penalty w.r.t. them.
      real, fake: batches of the same shape (N, ...).
      key: PRNG key for the interpolation weights.
      target_norm: the norm the gradient is pulled towards (1 for a 1-Lipschitz critic).

    Returns the mean penalty; multiply by lambda (10 in the paper) and add it to the critic's
    loss. A gradient inside a loss: its derivative is second order, so there is no
    hand-derived gradient; ``lj.audit.check`` verifies autodiff against the oracle. The norm
    is computed as sqrt(sum g^2 + tiny) so that a zero gradient gives a finite derivative.
    """
    real = _checks.floating("gradient_penalty", "real", real)
    fake = _checks.floating("gradient_penalty", "fake", fake)
    _checks.same_shape("gradient_penalty", "real", real, "fake", fake)
    if real.ndim < 1:
        raise ValueError("gradient_penalty: `real` must have a leading batch axis, got a scalar.")
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = eps * real + (1 - eps) * fake
    grads = jax.vmap(jax.grad(critic_fn))(mixed)
    squared = jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1)
    norm = jnp.sqrt(squared + jnp.finfo(squared.dtype).tiny)
    return jnp.mean((norm - target_norm) ** 2)
