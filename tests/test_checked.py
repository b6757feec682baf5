"""Checked mode (lj.checked, built on checkify): values that trace-time checks cannot see raise
inside jit with the argument, the index of the first bad entry and what was expected; valid
input gives the unchecked value; unchecked losses carry no checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import lossjax as lj
from conftest import compiled

Z = jnp.zeros((4, 3))


def _raises(fn, *args, match, **kwargs):
    with pytest.raises(Exception, match=match) as info:
        fn(*args, **kwargs)
    assert "JaxRuntimeError" in type(info.value).__name__
    return str(info.value)


# (loss, args, kwargs, expected message): one bad value each, at a known index
BAD = [
    ("cross_entropy", (Z, jnp.asarray([0, 1, 7, -100])), {},
     r"cross_entropy: `labels`\[2\] = 7 must be a class index in \[0, 3\) or `ignore_index` "
     r"\(1 of 4 entries\)"),
    ("cross_entropy", (Z, jnp.asarray([-3, 1, 2, 0])), {}, r"`labels`\[0\] = -3"),
    ("nll", (Z, jnp.asarray([0, 3, 1, 1])), {}, r"nll: `labels`\[1\] = 3 must be a class index"),
    ("nll", (Z.at[1, 2].set(0.5), jnp.asarray([0, 1, 1, 1])), {},
     r"`log_probs`\[1, 2\] = 0.5 must be <= 0 \(a log-probability\)"),
    ("softmax_focal_loss", (Z, jnp.asarray([0, 1, 1, 9])), {}, r"`labels`\[3\] = 9"),
    ("binary_cross_entropy", (jnp.asarray([[0.2, 0.1], [1.5, 0.3]]), jnp.ones((2, 2))), {},
     r"`probabilities`\[1, 0\] = 1.5 must be in \[0, 1\] \(1 of 4 entries\)"),
    ("binary_cross_entropy", (jnp.full(3, 0.5), jnp.asarray([0.0, -0.25, 1.0])), {},
     r"`targets`\[1\] = -0.25 must be in \[0, 1\]"),
    ("binary_cross_entropy_with_logits", (jnp.zeros(3), jnp.asarray([0.0, 1.0, 2.0])), {},
     r"`targets`\[2\] = 2.0 must be in \[0, 1\]"),
    ("gaussian_nll", (jnp.ones(3), jnp.ones(3), jnp.asarray([1.0, -1.0, -2.0])), {},
     r"gaussian_nll: `var`\[1\] = -1.0 must be >= 0 \(2 of 3 entries\)"),
    ("poisson_nll", (jnp.ones(3), jnp.asarray([1.0, 2.0, -1.0])), {}, r"`targets`\[2\] = -1.0"),
    ("poisson_nll", (jnp.asarray([1.0, -0.5, 1.0]), jnp.ones(3)), {"log_input": False},
     r"`predictions`\[1\] = -0.5 must be >= 0"),
    ("hinge", (jnp.zeros(3), jnp.asarray([1.0, 0.0, -1.0])), {},
     r"hinge: `labels`\[1\] = 0.0 must be -1 or \+1"),
    ("kl_divergence", (jnp.log(jnp.full((2, 2), 0.5)), jnp.asarray([[0.5, 0.5], [1.5, -0.5]])),
     {}, r"`targets`\[1, 0\] = 1.5 must be in \[0, 1\] \(2 of 4 entries\)"),
    ("center_loss", (jnp.zeros((3, 2)), jnp.asarray([0, 5, -1]), jnp.zeros((2, 2))), {},
     r"`labels`\[1\] = 5 must be a class index in \[0, 2\) \(negative: ignored\)"),
    ("dice", (jnp.zeros((2, 4, 3)), jnp.asarray([[0, 1, 2, 3], [0, 0, 0, 0]])),
     {"activation": "softmax", "class_axis": -1}, r"dice: `targets`\[0, 3\] = 3"),
    ("hamming", (jnp.zeros((2, 3, 4)), jnp.asarray([[0, 1, 2], [3, 4, -100]])), {},
     r"`labels`\[1, 1\] = 4 must be a class index in \[0, 4\)"),
    ("linear_cross_entropy", (jnp.ones((3, 2)), jnp.ones((2, 5)), jnp.asarray([0, 5, 1])), {},
     r"`labels`\[1\] = 5 must be a class index in \[0, 5\)"),
    ("adaptive_robust", (jnp.ones(2), jnp.zeros(2)), {"scale": jnp.asarray([1.0, 0.0])},
     r"`scale`\[1\] = 0.0 must be > 0"),
    ("mse", (jnp.asarray([1.0, jnp.nan, 2.0]), jnp.ones(3)), {},
     r"mse: `predictions`\[1\] = nan must be a number, not NaN"),
    ("mse", (jnp.ones(3), jnp.ones(3)), {"weights": jnp.asarray([1.0, 2.0, -1.0])},
     r"mse: `weights`\[2\] = -1.0 must be >= 0"),
]


@pytest.mark.parametrize("name, args, kwargs, message", BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_values_raise_with_the_index_eagerly_and_under_jit(name, args, kwargs, message):
    safe = lj.checked(name)
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    if not arrays:              # concrete hyperparameters are range-checked at trace time
        _raises(safe, *args, match=message, **kwargs)
    _raises(jax.jit(lambda a, kw: safe(*a, **kw, **static)), args, arrays, match=message)


def test_gradients_and_vmap_are_checked_too():
    safe = lj.checked(lj.cross_entropy)
    labels = jnp.asarray([0, 1, 7, 2])
    message = r"`labels`\[2\] = 7"
    _raises(jax.jit(jax.grad(safe)), Z, labels, match=message)
    _raises(safe.grad, Z, labels, match=message)
    var = jnp.asarray([[1.0, 1.0], [1.0, -1.0]])
    _raises(jax.vmap(lj.checked(lj.gaussian_nll)), jnp.ones((2, 2)), jnp.ones((2, 2)), var,
            match=r"`var`\[1\] = -1.0 must be >= 0")


def test_valid_input_gives_the_unchecked_numbers():
    key = jax.random.PRNGKey(0)
    for loss in (lj.cross_entropy, lj.binary_cross_entropy, lj.gaussian_nll, lj.ctc, lj.dice):
        for kind in ("generic", "edge"):
            s = loss.sample(key, jnp.float32, kind)
            safe = lj.checked(loss)
            value, g = compiled(lambda *a, **k: (loss(*a, **k), loss.grad(*a, **k)
                                                 if loss.has_grad else None),
                                *s.args, **s.kwargs)
            # checked vs unchecked, two programs: the same numbers up to float32 reassociation
            np.testing.assert_allclose(safe(*s.args, **s.kwargs), value, rtol=1e-6)
            if loss.has_grad:
                np.testing.assert_allclose(safe.grad(*s.args, **s.kwargs), g, rtol=1e-6,
                                           atol=1e-6 * float(jnp.max(jnp.abs(g))))
    # ignored and masked entries are valid: ignore_index, probability targets, all-masked
    ce = lj.checked(lj.cross_entropy)
    assert float(jax.jit(ce)(Z, jnp.asarray([-100, -100, 0, 2]))) == pytest.approx(np.log(3))
    soft = jnp.full((4, 3), 1 / 3)
    assert float(ce(Z, soft)) == pytest.approx(np.log(3))


def test_check_inputs_composes_with_a_users_checkify():
    def step(z, labels):
        lj.check_inputs(lj.cross_entropy, z, labels)
        return lj.cross_entropy(z, labels)
    err, value = jax.jit(checkify.checkify(step))(Z, jnp.asarray([0, 1, 2, 3]))
    assert "`labels`[3] = 3" in err.get()
    err, value = jax.jit(checkify.checkify(step))(Z, jnp.asarray([0, 1, 2, 2]))
    assert err.get() is None and float(value) == pytest.approx(np.log(3))


def test_unchecked_losses_carry_no_checks():
    """Zero cost when not used: the plain loss's program has no check or callback in it."""
    for loss, args in ((lj.cross_entropy, (Z, jnp.asarray([0, 1, 2, 7]))),
                       (lj.gaussian_nll, (jnp.ones(3), jnp.ones(3), -jnp.ones(3)))):
        text = str(jax.make_jaxpr(jax.value_and_grad(loss))(*args))
        assert "check" not in text and "callback" not in text
    checked_text = str(jax.make_jaxpr(lj.checked(lj.gaussian_nll))(
        jnp.ones(3), jnp.ones(3), jnp.ones(3)))
    assert "callback" in checked_text


@pytest.mark.parametrize("case", [0, 3, 5, 8, 11, 19])
def test_eager_calls_check_values_like_checked_mode(case):
    """Every argument concrete (the notebook case): the plain loss raises lj.checked's error
    for the value, .grad and .hess_diag; Python lists are checked as arrays."""
    name, args, kwargs, message = BAD[case]
    loss = lj.get(name)
    with lj.eager_checks(True):                    # the suite runs with them off (conftest)
        _raises(loss, *args, match=message, **kwargs)
        _raises(loss.grad, *args, match=message, **kwargs)
        if loss.has_hess_diag:
            _raises(loss.hess_diag, *args, match=message, **kwargs)


def test_eager_checks_take_lists_add_nothing_to_programs_and_can_be_turned_off():
    with lj.eager_checks(True):                    # the suite runs with them off (conftest)
        _eager_checks_take_lists_add_nothing_to_programs_and_can_be_turned_off()


def _eager_checks_take_lists_add_nothing_to_programs_and_can_be_turned_off():
    for labels in ([0, 2, 7, 1], [5, 5, 5, 5]):          # silently 0.97 and 0.0 unchecked
        _raises(lj.cross_entropy, Z, labels, match=r"`labels`\[0|2\] = [57] must be a class")
    bad = jnp.asarray([0, 2, 7, 1])
    # under jit / grad / vmap and inside any trace (even of constants): no check, no error
    jax.jit(lj.cross_entropy)(Z, bad)
    jax.grad(lj.cross_entropy)(Z, bad)
    jax.vmap(lj.cross_entropy)(Z[:, None], bad[:, None])
    jax.jit(lambda z: lj.cross_entropy(jnp.zeros((4, 3)), bad) + z)(1.0)
    eager_jaxpr = str(jax.make_jaxpr(lj.cross_entropy)(Z, bad))
    with lj.eager_checks(False):
        assert str(jax.make_jaxpr(lj.cross_entropy)(Z, bad)) == eager_jaxpr
        assert float(lj.cross_entropy(Z, bad)) == float(jax.jit(lj.cross_entropy)(Z, bad))
    assert "check" not in eager_jaxpr and "callback" not in eager_jaxpr
    assert float(lj.cross_entropy(Z, [0, 2, 1, 1])) == pytest.approx(np.log(3))


def test_checked_needs_a_loss():
    with pytest.raises(TypeError, match="expected a lossjax Loss or its name"):
        lj.checked(jnp.sum)
    with pytest.raises(KeyError, match="no loss named 'crossentropy'"):
        lj.checked("crossentropy")
    assert lj.checked("mse").name == "mse" and "checked mse" in repr(lj.checked(lj.mse))
