"""A user's own loss in the lab: @lj.define_loss and lossjax.testing.assert_loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from lossjax.testing import assert_loss


@lj.define_loss(family="robust", formula=r"\rho(r) = \tfrac{c^2}{6}\left(1 - (1 - (r/c)^2)^3\right)",
                references=["Beaton & Tukey, The fitting of power series, 1974."],
                example=((6, 4), (6, 4)), nonnegative=True)
def tukey_biweight(predictions, targets, *, c=4.685):
    """Tukey's biweight: quadratic near 0, constant c^2/6 beyond |r| = c."""
    r = predictions - targets
    inside = jnp.abs(r) <= c
    u = jnp.where(inside, 1 - (r / c) ** 2, 0.0)
    return lj.Terms(c * c / 6 * (1 - u ** 3),
                    grad=lambda: r * u * u,
                    hess=lambda: jnp.where(inside, u * (1 - 5 * (r / c) ** 2), 0.0))


def numpy_tukey(r, c=4.685):
    r = np.asarray(r, np.float64)
    return np.where(np.abs(r) <= c, c * c / 6 * (1 - (1 - (r / c) ** 2) ** 3), c * c / 6)


def test_a_defined_loss_is_a_full_loss():
    p = jnp.asarray(np.random.default_rng(0).normal(0, 4, (6, 4)))
    y = jnp.zeros((6, 4))
    w = jnp.linspace(0.5, 2, 24).reshape(6, 4)
    m = jnp.arange(24).reshape(6, 4) % 3 != 0
    want = numpy_tukey(p)
    assert isinstance(tukey_biweight, lj.Loss) and tukey_biweight.elementwise
    assert tukey_biweight.has_hess_diag and tukey_biweight not in lj.catalog()
    np.testing.assert_allclose(tukey_biweight(p, y, reduction="none"), want, rtol=1e-12)
    np.testing.assert_allclose(tukey_biweight(p, y, weights=w, where=m),
                               np.sum(want * w * m) / np.sum(w * m), rtol=1e-12)
    # derivatives: hand-derived = autodiff = analytic VJP; Hessian diagonal = autodiff's
    g = jax.grad(tukey_biweight)(p, y)
    np.testing.assert_allclose(tukey_biweight.grad(p, y), g, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.grad(tukey_biweight.with_analytic_vjp())(p, y), g,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tukey_biweight.hess_diag(p, y, reduction="sum"),
                               jnp.diag(jax.hessian(lambda q: tukey_biweight(
                                   q.reshape(6, 4), y, reduction="sum"))(p.ravel())).reshape(6, 4),
                               rtol=1e-10, atol=1e-12)
    # half precision in, half precision out, computed in float32
    half = tukey_biweight(p.astype(jnp.bfloat16), y.astype(jnp.bfloat16))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(half), want.mean(), rtol=1e-2)
    # the precision matrix and sharding take it like a catalogue entry
    rows = lj.audit.precision_matrix([tukey_biweight], dtypes=("float32",), kinds=("generic",))
    assert rows[0].ok
    mesh = lj.sharding.batch_mesh(jax.devices()[:2])
    args, kwargs = lj.sharding.shard_inputs(tukey_biweight, mesh, p, y)
    np.testing.assert_allclose(jax.jit(tukey_biweight)(*args, **kwargs), want.mean(),
                               rtol=1e-12)


def test_assert_loss_passes_a_right_loss_and_names_a_wrong_gradient():
    reports = assert_loss(tukey_biweight)
    assert len(reports) == 4 and all(r.ok for r in reports)

    @lj.define_loss(example=((5,), (5,)))
    def off_by_two(predictions, targets):
        r = predictions - targets
        return lj.Terms(r * r, grad=lambda: r)          # should be 2 r

    with pytest.raises(AssertionError) as raised:
        assert_loss(off_by_two, dtypes=("float64",), kinds=("generic",))
    message = str(raised.value)
    assert "off_by_two" in message and "audit float64 generic" in message
    assert "hand-derived gradient is wrong" in message and "a factor 2" in message
    # the other properties hold (with_analytic_vjp uses the same wrong .grad consistently)
    assert message.startswith("off_by_two: 1 check(s) failed")


def test_a_loss_without_a_gradient_and_over_a_class_axis():
    @lj.define_loss(family="classification", example=((4, 5), np.array([0, 1, 2, 4])))
    def softmax_ce(logits, labels):
        lp = jax.nn.log_softmax(logits, axis=-1)
        return lj.Terms(-jnp.take_along_axis(lp, labels[:, None], axis=-1)[:, 0], grad=None,
                        class_axis=-1)

    assert not softmax_ce.has_grad and not softmax_ce.elementwise
    with pytest.raises(NotImplementedError, match="no hand-derived gradient was given"):
        softmax_ce.grad(jnp.zeros((2, 5)), jnp.asarray([0, 1]))
    args, _ = softmax_ce.sample(jax.random.PRNGKey(1), jnp.float64)
    assert args[1].dtype.kind == "i" and 0 <= int(args[1].min()) <= int(args[1].max()) <= 4
    np.testing.assert_allclose(softmax_ce(*args), lj.cross_entropy(*args), rtol=1e-12)
    assert_loss(softmax_ce, dtypes=("float64",), seeds=2)      # audits autodiff instead


def test_define_loss_errors_and_registration():
    def f(predictions, targets):
        return lj.Terms(predictions - targets, grad=None)
    with pytest.raises(TypeError, match="give `example=`"):
        lj.define_loss(f)
    with pytest.raises(ValueError, match="every required argument"):
        lj.define_loss(example=((3,),))(f)
    with pytest.raises(ValueError, match="not positional parameters"):
        lj.define_loss(example={"predictions": (3,), "target": (3,)})(f)

    def mse(predictions, targets):
        return lj.Terms((predictions - targets) ** 2, grad=None)
    with pytest.raises(ValueError, match="already in the catalogue"):
        lj.define_loss(example=((3,), (3,)), register=True)(mse)
    registered = lj.define_loss(example=((3,), (3,)), register=True)(f)
    try:
        assert lj.get("f") is registered and registered in lj.catalog()
    finally:
        from lossjax._loss import _REGISTRY
        del _REGISTRY["f"]
