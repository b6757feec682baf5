"""The audit engine: a corpus of deliberately wrong derivatives, each flagged with the right
blame and location; the correct versions pass; kinks are classified, not failed."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lossjax as lj
from lossjax import audit

KEY = jax.random.PRNGKey(0)
X = jax.random.normal(KEY, (40,), jnp.float64)
T = jax.random.normal(jax.random.PRNGKey(1), (40,), jnp.float64)


def mean_square(p, t):
    return jnp.mean((p - t) ** 2)


def good_grad(p, t):
    return 2 * (p - t) / p.size


def assert_hand_wrong(report, n_wrong=None):
    assert not report.ok
    assert report.blame == "hand-derived"
    assert report.verdict.startswith("hand-derived")
    if n_wrong is not None:
        assert report.counts.get("hand-derived wrong", 0) == n_wrong


# -- the corpus ------------------------------------------------------------------------------

def test_correct_gradient_passes():
    report = audit.check(mean_square, X, T, grad=good_grad)
    assert report.ok and report.blame == "none"
    assert report.counts == {"pass": 40}
    assert report.mode == "exhaustive"


@pytest.mark.parametrize("wrong", [
    lambda p, t: -2 * (p - t) / p.size,          # sign error
    lambda p, t: 2 * (p - t),                    # missing 1/N
    lambda p, t: 4 * (p - t) / p.size,           # factor 2
], ids=["sign", "missing-1/N", "factor-2"])
def test_wrong_gradients_are_blamed_on_the_hand_derived_one(wrong):
    report = audit.check(mean_square, X, T, grad=wrong)
    assert_hand_wrong(report, n_wrong=int(np.sum(np.asarray(X - T) != 0)))


def test_sigmoid_derivative_written_as_s_times_1_plus_s():
    f = lambda z: jnp.sum(jax.nn.sigmoid(z))  # noqa: E731
    good = lambda z: jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z))  # noqa: E731
    bad = lambda z: jax.nn.sigmoid(z) * (1 + jax.nn.sigmoid(z))  # noqa: E731
    assert audit.check(f, X, grad=good).ok
    assert_hand_wrong(audit.check(f, X, grad=bad), n_wrong=40)


def test_wrong_focal_loss_derivative():
    """Treating the modulating factor (1 - p_t)^gamma as a constant is a classic mistake."""
    z, t = lj.focal_loss.sample(KEY, jnp.float64).args

    def constant_factor_grad(z_, t_):
        p = jax.nn.sigmoid(z_)
        p_t = p * t_ + (1 - p) * (1 - t_)
        return (1 - p_t) ** 2 * (p - t_) / z_.size

    f = lambda z_, t_: lj.focal_loss(z_, t_, gamma=2.0)  # noqa: E731
    assert audit.check(f, z, t, grad=lambda z_, t_: lj.focal_loss.grad(z_, t_, gamma=2.0)).ok
    report = audit.check(f, z, t, grad=constant_factor_grad)
    assert_hand_wrong(report)
    assert report.counts["hand-derived wrong"] >= z.size // 2


@pytest.mark.parametrize("dtype, relative", [("float32", 1e-3), ("float64", 1e-7)])
def test_one_wrong_element_among_ten_thousand_is_found(dtype, relative):
    with audit._oracle.x64():
        p = jax.random.normal(jax.random.PRNGKey(2), (100, 100), dtype)
        t = jax.random.normal(jax.random.PRNGKey(3), (100, 100), dtype)
        g = np.asarray(lj.mse.grad(p, t))
    flat = np.argsort(np.abs(g).ravel())[g.size // 2]          # a median-size element
    where = tuple(int(k) for k in np.unravel_index(flat, g.shape))
    wrong = lambda p_, t_: lj.mse.grad(p_, t_).at[where].multiply(1 + relative)  # noqa: E731
    report = audit.check(lj.mse, p, t, grad=wrong)
    assert_hand_wrong(report, n_wrong=1)
    assert report.size == 10_000 and report.mode == "exhaustive"
    worst = report.worst[0]
    assert worst.index == where and worst.path == ""
    np.testing.assert_allclose(worst.rel_error, relative, rtol=0.05)
    assert audit.check(lj.mse, p, t, grad=lj.mse.grad).ok


def test_wrong_element_is_located_by_pytree_path():
    params = {"w": jnp.arange(1.0, 4.0), "b": jnp.asarray(0.5)}

    def f(params, x):
        return jnp.sum(jnp.tanh(params["w"] * x + params["b"]) ** 2)

    def grad(params, x):
        h = jnp.tanh(params["w"] * x + params["b"])
        d = 2 * h * (1 - h ** 2)
        return {"w": (d * x).at[1].multiply(1.01), "b": jnp.sum(d)}

    x = jnp.asarray([0.3, -0.2, 0.1])
    report = audit.check(f, params, x, grad=grad)
    assert_hand_wrong(report, n_wrong=1)
    assert report.worst[0].path == "['w']" and report.worst[0].index == (1,)
    assert "`['w'][1]`" in report.to_markdown()


def test_argnums_tuple_and_structure_errors():
    report = audit.check(mean_square, X, T, grad=lambda p, t: (good_grad(p, t), -good_grad(p, t)),
                         argnums=(0, 1))
    assert report.ok and report.size == 80
    with pytest.raises(ValueError, match="grad\\(\\*args\\) must have the structure and shapes"):
        audit.check(mean_square, X, T, grad=lambda p, t: good_grad(p, t)[:3])
    with pytest.raises(ValueError, match="fn must return a scalar"):
        audit.check(lambda p: p * 2, X)
    with pytest.raises(TypeError, match="must hold floating-point arrays"):
        audit.check(lambda p: jnp.sum(p), jnp.arange(3))


def test_custom_vjp_with_the_same_wrong_rule_is_caught_by_the_oracle():
    """When autodiff itself uses the wrong hand-derived rule, only the oracle can tell."""
    def wrong_terms(predictions, targets):
        r = predictions - targets
        return lj.Terms(r * r, grad=lambda: 3 * r)

    wrong = lj.Loss(wrong_terms, family="test", formula="r^2", sampler=None, elementwise=True)
    fused = wrong.with_analytic_vjp()
    report = audit.check(fused, X, T, grad=wrong.grad)
    assert_hand_wrong(report)
    assert report.counts.get("hand-derived and autodiff agree, oracle differs", 0) > 0
    assert "custom_vjp" in report.verdict


def test_autodiff_blamed_when_no_hand_derivative_and_rule_is_wrong():
    @jax.custom_jvp
    def square(x):
        return x ** 2

    square.defjvp(lambda p, t: (p[0] ** 2, 3 * p[0] * t[0]))
    report = audit.check(lambda x: jnp.sum(square(x)), X)
    assert not report.ok and report.blame == "autodiff"
    assert audit.check(lambda x: jnp.sum(x ** 2), X).ok


# -- kinks -------------------------------------------------------------------------------------

def test_abs_relu_and_max_ties_are_kinks_not_failures():
    x = jnp.asarray([0.0, 1.5, -2.0, 0.0])
    r = audit.check(lambda v: jnp.sum(jnp.abs(v)), x, grad=lambda v: jnp.sign(v))
    assert r.ok and [k.index for k in r.kinks] == [(0,), (3,)]
    k = r.kinks[0]
    assert (k.left, k.right, k.analytic) == pytest.approx((-1.0, 1.0, 0.0), abs=1e-6)
    r = audit.check(lambda v: jnp.sum(jax.nn.relu(v)), x,
                    grad=lambda v: (v > 0).astype(v.dtype))
    assert r.ok and len(r.kinks) == 2 and r.kinks[0].left == pytest.approx(0.0, abs=1e-6)
    ties = jnp.asarray([1.0, 3.0, 3.0, -1.0])
    r = audit.check(jnp.max, ties, grad=lambda v: jnp.asarray([0.0, 0.5, 0.5, 0.0]))
    assert r.ok and {k.index for k in r.kinks} == {(1,), (2,)}
    assert "kink" in r.verdict


def test_a_value_outside_the_subdifferential_is_not_accepted_at_a_kink():
    x = jnp.asarray([0.0, 1.0])
    r = audit.check(lambda v: jnp.sum(jnp.abs(v)), x, grad=lambda v: jnp.asarray([3.0, 1.0]))
    assert not r.ok and r.counts.get("kink: hand-derived value is not a subgradient") == 1


# -- half precision --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_functions_against_the_float64_oracle(dtype):
    p, t = lj.huber.sample(KEY, dtype).args
    good = audit.check(lj.huber, p, t, grad=lj.huber.grad)
    assert good.ok and good.dtype == str(jnp.dtype(dtype))
    # A formula mistake (a 50% error) is far beyond half precision's rounding (eps 1e-3/8e-3).
    wrong = audit.check(lj.huber, p, t, grad=lambda a, b: lj.huber.grad(a, b) * 1.5)
    assert_hand_wrong(wrong)


# -- Hessians --------------------------------------------------------------------------------

def test_hessian_diagonal_and_hvp():
    f = lambda v: jnp.sum(jnp.sin(v) * v)  # noqa: E731
    d2 = lambda v: 2 * jnp.cos(v) - v * jnp.sin(v)  # noqa: E731
    r = audit.check(f, X, hess=d2, hvp=lambda u, v: d2(v) * u)
    assert r.ok and [s.quantity for s in r.sub_reports] == ["Hessian diagonal",
                                                           "Hessian-vector product"]
    r = audit.check(f, X, hess=lambda v: 2 * jnp.cos(v) + v * jnp.sin(v))
    assert not r.ok and r.sub_reports[0].blame == "hand-derived"
    assert "Hessian diagonal" in r.verdict


def test_asymmetric_hvp_is_flagged():
    a = jax.random.normal(KEY, (5, 5), jnp.float64)
    sym = a + a.T
    f = lambda v: 0.5 * v @ sym @ v  # noqa: E731
    x = jnp.arange(5.0)
    assert audit.check(f, x, hvp=lambda u, v: sym @ u).ok
    r = audit.check(f, x, hvp=lambda u, v: (sym + 0.1 * a) @ u)
    sub = r.sub_reports[0]
    assert not sub.ok
    assert {p.what: p.ok for p in sub.probes}["hand-derived HVP symmetry u.Hv = v.Hu"] is False


def test_huber_second_derivative_jump_is_a_kink():
    p = jnp.asarray([0.5, 2.0, -0.5, 0.1])
    t = jnp.zeros(4)
    r = audit.check(lambda q: lj.huber(q, t, delta=0.5), p,
                    hess=lambda q: lj.huber.hess_diag(q, t, delta=0.5))
    assert r.ok
    assert {k.index for k in r.sub_reports[0].kinks} == {(0,), (2,)}


# -- probe mode ------------------------------------------------------------------------------

def test_probe_mode_localises_a_wrong_element_and_states_its_threshold():
    p = jax.random.normal(KEY, (3000,), jnp.float64)
    t = jnp.zeros(3000)
    wrong = lambda a, b: good_grad(a, b).at[17].multiply(1.001)  # noqa: E731
    r = audit.check(mean_square, p, t, grad=wrong, mode="probe", probes=8)
    assert r.mode == "random probes" and not r.ok and r.blame == "hand-derived"
    assert r.worst[0].index == (17,)
    assert "at 1 of 1 localised elements (of 3000) it differs from the oracle" in r.verdict
    assert "8 Gaussian probes catch" in r.detection and "99%" in r.detection
    ok = audit.check(mean_square, p, t, grad=good_grad, mode="probe", probes=8)
    assert ok.ok and "random probes" in ok.verdict


def test_probe_mode_catches_wrong_autodiff():
    @jax.custom_jvp
    def cube(x):
        return x ** 3

    cube.defjvp(lambda p, t: (p[0] ** 3, 3.3 * p[0] ** 2 * t[0]))
    r = audit.check(lambda x: jnp.sum(cube(x)), X, mode="probe", probes=4)
    assert not r.ok and r.blame == "autodiff"


# -- Jacobians -------------------------------------------------------------------------------

def test_check_jacobian_softmax():
    z = jax.random.normal(KEY, (5,), jnp.float64)

    def jac(z_):
        s = jax.nn.softmax(z_)
        return jnp.diag(s) - jnp.outer(s, s)

    assert audit.check_jacobian(jax.nn.softmax, z, jac=jac).ok
    r = audit.check_jacobian(jax.nn.softmax, z, jac=lambda z_: jac(z_).at[2, 3].add(0.01))
    assert not r.ok and r.counts.get("hand-derived wrong") == 1
    assert r.worst[0].output == (2,) and r.worst[0].index == (3,)


# -- optimizer update rules ------------------------------------------------------------------

def _adam(lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, bias_correction=True):
    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return (jnp.zeros((), jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        count, m, v = state
        count = count + 1
        m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
        c1 = 1 - b1 ** count if bias_correction else 1.0
        c2 = 1 - b2 ** count if bias_correction else 1.0
        u = jax.tree_util.tree_map(lambda m_, v_: -lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + eps), m, v)
        return u, (count, m, v)
    return init, update


def test_check_update_adam_with_and_without_bias_correction():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    ok = audit.check_update(_adam(), optax.adam(1e-2), params, steps=8)
    assert ok.ok and len(ok.per_step) == 8
    bad = audit.check_update(_adam(bias_correction=False), optax.adam(1e-2), params, steps=8)
    assert not bad.ok and bad.first_step == 1 and bad.leaf in ("['b']", "['w']")
    assert "diverges at step 1" in bad.verdict
    assert json.loads(bad.to_json())["first_step"] == 1
    with pytest.raises(TypeError, match="GradientTransformation or an \\(init, update\\) pair"):
        audit.check_update(object(), optax.adam(1e-2), params)


# -- reports ---------------------------------------------------------------------------------

def test_report_outputs(tmp_path):
    r = audit.check(mean_square, X, T, grad=lambda p, t: good_grad(p, t).at[3].add(1.0))
    d = json.loads(r.to_json(tmp_path / "r.json"))
    assert d["ok"] is False and d["worst"][0]["index"] == [3]
    assert {"analytic", "autodiff", "oracle", "abs_error", "rel_error", "where"} <= \
        set(d["worst"][0])
    md = r.to_markdown()
    assert "**FAIL**" in md and "| `[3]` | hand-derived wrong |" in md
    fig = r.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000 and len(fig.axes) == 2
    assert not bool(r) and "FAIL" not in repr(audit.check(mean_square, X, T))


def test_catalog_audit_of_two_losses():
    rows = audit.catalog([lj.huber, lj.cross_entropy], dtypes=("float32",))
    assert [(r.loss, r.kind) for r in rows] == [("huber", "generic"), ("huber", "edge"),
                                               ("cross_entropy", "generic"),
                                               ("cross_entropy", "edge")]
    assert all(r.ok for r in rows)
    assert "| huber | float32 | edge | PASS |" in audit.to_markdown(rows)
