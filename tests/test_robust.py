"""Barron's adaptive robust loss: exact special cases, and gradients in alpha and scale."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj

X = jnp.linspace(-6.0, 6.0, 25)
ZERO = jnp.zeros_like(X)


@pytest.mark.parametrize("alpha, closed_form", [
    (2.0, lambda z: z ** 2 / 2),
    (1.0, lambda z: np.sqrt(z ** 2 + 1) - 1),
    (0.0, lambda z: np.log(z ** 2 / 2 + 1)),
    (-2.0, lambda z: 2 * z ** 2 / (z ** 2 + 4)),
    (-np.inf, lambda z: 1 - np.exp(-z ** 2 / 2)),
], ids=["L2", "pseudo-Huber", "Cauchy", "Geman-McClure", "Welsch"])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_special_cases_are_exact(alpha, closed_form, scale):
    got = lj.adaptive_robust(X, ZERO, alpha=alpha, scale=scale, reduction="none")
    np.testing.assert_allclose(got, closed_form(np.asarray(X) / scale), rtol=1e-13, atol=1e-300)
    assert np.all(np.isfinite(np.asarray(lj.adaptive_robust.grad(X, ZERO, alpha=alpha,
                                                                 scale=scale))))


def test_continuous_in_alpha_through_the_special_values():
    for special in (2.0, 0.0, 1.0, -2.0):
        near = [lj.adaptive_robust(X, ZERO, alpha=special + d, reduction="none") for d in
                (-1e-6, 1e-6)]
        exact = lj.adaptive_robust(X, ZERO, alpha=special, reduction="none")
        for v in near:
            np.testing.assert_allclose(v, exact, rtol=2e-5, atol=1e-12)
    far = lj.adaptive_robust(X, ZERO, alpha=-1e6, reduction="none")
    np.testing.assert_allclose(far, lj.adaptive_robust(X, ZERO, alpha=-np.inf, reduction="none"),
                               rtol=1e-4, atol=1e-9)


def test_alpha_and_scale_gradients_at_special_values():
    for alpha in (0.0, 1.0, -2.0, 3.0):
        f = lambda a, c: lj.adaptive_robust(X, ZERO, alpha=a, scale=c)  # noqa: E731
        da, dc = jax.grad(f, argnums=(0, 1))(alpha, 1.5)
        np.testing.assert_allclose(lj.adaptive_robust.grad(X, ZERO, alpha=alpha, scale=1.5,
                                                           wrt="alpha"), da, rtol=1e-9)
        np.testing.assert_allclose(lj.adaptive_robust.grad(X, ZERO, alpha=alpha, scale=1.5,
                                                           wrt="scale"), dc, rtol=1e-10)


def test_alpha_derivative_diverges_at_two():
    """Central differences around alpha = 2 grow like log(1/h): no finite derivative."""
    f = lambda a: float(lj.adaptive_robust(jnp.asarray([1.0]), jnp.zeros(1), alpha=a))  # noqa
    slopes = [(f(2 + h) - f(2 - h)) / (2 * h) for h in (1e-2, 1e-4, 1e-6)]
    assert slopes[0] < slopes[1] < slopes[2]
    np.testing.assert_allclose(np.diff(slopes), 0.25 * np.log(100), rtol=0.1)  # (z^2/2)/2 log
    g = lj.adaptive_robust.grad(jnp.asarray([1.0, 0.0]), jnp.zeros(2), alpha=jnp.full(2, 2.0),
                                wrt="alpha", reduction="none")
    assert g[0] == np.inf and g[1] == 0


def test_learnable_alpha_and_scale_under_vmap():
    alphas = jnp.asarray([-3.0, 0.0, 0.5, 1.0, 1.9])
    vals = jax.vmap(lambda a: lj.adaptive_robust(X, ZERO, alpha=a))(alphas)
    loop = [lj.adaptive_robust(X, ZERO, alpha=float(a)) for a in alphas]
    np.testing.assert_allclose(vals, loop, rtol=1e-12)


def test_bad_alpha_and_scale():
    with pytest.raises(ValueError, match="`scale` must lie in \\(0, inf\\]"):
        lj.adaptive_robust(X, ZERO, scale=0.0)
    with pytest.raises(ValueError, match="`alpha` must lie in \\[-inf, inf\\)"):
        lj.adaptive_robust(X, ZERO, alpha=np.inf)
