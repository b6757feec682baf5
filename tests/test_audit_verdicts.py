"""Audit verdicts a user can trust: every failing part named in the headline and ranked first,
a wrong custom rule fails, diagnoses stated with their evidence, user tolerances, reports
whose every claim is true of the numbers beside them, plots that leave matplotlib alone."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossjax import audit
from lossjax.audit import _report as R
from lossjax.testing import assert_gradients

X = jax.random.normal(jax.random.PRNGKey(10), (24,), jnp.float64)
T = jax.random.normal(jax.random.PRNGKey(11), (24,), jnp.float64)
Z = jax.random.normal(jax.random.PRNGKey(12), (6, 5), jnp.float64)
LABELS = jnp.asarray([0, 3, 1, 4, 2, 2])


def mean_abs_cubed(p, t):
    return jnp.mean(jnp.abs(p - t) ** 3)


def grad_abs_cubed(p, t):
    r = p - t
    return 3 * r * jnp.abs(r) / p.size


def hess_abs_cubed(p, t):
    return 6 * jnp.abs(p - t) / p.size


def softmax_ce(z, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], 1))


def softmax_ce_grad(z, labels):
    return (jax.nn.softmax(z) - jax.nn.one_hot(labels, z.shape[1])) / z.shape[0]


# -- the corpus: (name, fn, args, options, what must be said) --------------------------------

@jax.custom_vjp
def leaky_square(x):
    return x ** 2


leaky_square.defvjp(lambda x: (x ** 2, x),
                    lambda x, g: (g * jnp.where(x < 0, 2.034 * x, 2 * x),))   # 1.7% off, x < 0


@jax.custom_jvp
def nearly_square(x):
    return x ** 2


# a rule off by 1e-10 relative: beyond float64's tolerance, far inside sqrt(eps) (rounding)
nearly_square.defjvp(lambda p, t: (p[0] ** 2, 2 * p[0] * (1 + 1e-10) * t[0]))

CORPUS = {
    "right": (mean_abs_cubed, (X, T), dict(grad=grad_abs_cubed, hess=hess_abs_cubed)),
    "sum-vs-mean": (mean_abs_cubed, (X, T), dict(grad=lambda p, t: grad_abs_cubed(p, t) * 24)),
    "sign": (mean_abs_cubed, (X, T), dict(grad=lambda p, t: -grad_abs_cubed(p, t))),
    "factor-2": (mean_abs_cubed, (X, T), dict(grad=lambda p, t: 2 * grad_abs_cubed(p, t))),
    "branch": (mean_abs_cubed, (X, T), dict(grad=lambda p, t: jnp.where(
        p - t < 0, 1.25, 1.0) * grad_abs_cubed(p, t))),
    "hessian-only": (mean_abs_cubed, (X, T), dict(grad=grad_abs_cubed,
                                                  hess=lambda p, t: hess_abs_cubed(p, t) / 2)),
    "both-wrong": (mean_abs_cubed, (X, T), dict(grad=lambda p, t: -grad_abs_cubed(p, t),
                                                hess=lambda p, t: hess_abs_cubed(p, t) / 2)),
    "off-by-one-class": (softmax_ce, (Z, LABELS), dict(grad=lambda z, y: softmax_ce_grad(
        z, (y + 1) % 5))),
    "custom-rule-wrong": (lambda x: jnp.sum(leaky_square(x)), (X,), dict(
        grad=lambda x: 2 * x)),
    "custom-rule-rounding": (lambda x: jnp.sum(nearly_square(x)), (X,), dict(
        grad=lambda x: 2 * x)),
    "kink-wrong": (lambda x: jnp.sum(jax.nn.relu(x)), (jnp.asarray([-1.0, 0.0, 2.0, 0.0]),),
                   dict(grad=lambda x: jnp.where(x > 0, 1.0, jnp.where(x == 0, 6.0, 0.0)))),
    "kink-right": (lambda x: jnp.sum(jax.nn.relu(x)), (jnp.asarray([-1.0, 0.0, 2.0, 0.0]),),
                   dict(grad=lambda x: jnp.where(x > 0, 1.0, jnp.where(x == 0, 0.5, 0.0)))),
    "no-hand": (mean_abs_cubed, (X, T), {}),
}


@pytest.fixture(scope="module")
def reports():
    return {k: audit.check(fn, *args, name=k, **opts) for k, (fn, args, opts) in CORPUS.items()}


def all_reports(report):
    yield report
    for sub in report.sub_reports:
        yield from all_reports(sub)


def test_every_claim_in_every_report_is_true_of_its_numbers(reports):
    """Generated across the corpus, each report's sentences are checked against its element
    data: classifications, counts, the ratio a diagnosis names, the parts named."""
    for key, report in reports.items():
        for r in all_reports(report):
            for e in r.worst:
                err, tol = e.abs_error, e.tolerance
                if e.classification == R.HAND_WRONG:
                    assert err > tol and abs(e.autodiff - e.oracle) <= tol, (key, e)
                elif e.classification == R.AUTODIFF_WRONG:
                    assert abs(e.autodiff - e.oracle) > tol, (key, e)
                    assert e.analytic is None or abs(e.analytic - e.oracle) <= tol, (key, e)
                elif e.classification == R.AUTODIFF_INACCURATE:
                    assert tol < abs(e.autodiff - e.oracle) <= np.sqrt(2.2e-16) * 2 * abs(
                        e.oracle) + 1e-12, (key, e)
                elif e.classification == R.NOT_SUBGRADIENT:
                    assert not (min(e.left, e.right) <= e.value <= max(e.left, e.right))
                    assert np.isfinite(e.rel_error) and err > 0
                elif e.classification == R.KINK:
                    assert min(e.left, e.right) - tol <= e.value <= max(e.left, e.right) + tol
                elif e.classification == R.PASS:
                    assert err <= tol, (key, e)
            own = r.parts[0].verdict if r.parts else r.verdict     # this part's sentences
            for m in re.finditer(r"at (\d+) of (\d+) elements it differs from the oracle while "
                                 r"autodiff agrees", own):
                assert int(m.group(1)) == r.counts[R.HAND_WRONG] and int(m.group(2)) == r.size
            m = re.search(r"is (\S+) × the oracle at every element", own)
            if m:
                text = m.group(1)
                c = 1 / float(text[2:]) if text.startswith("1/") else float(text)
                for e in r.worst:
                    if e.part == r.quantity and abs(e.oracle) > 10 * e.tolerance:
                        assert e.value == pytest.approx(c * e.oracle, rel=1e-6)
        # the top line fails iff a part fails, and names every failing part
        failing = [p for p in report.parts if not p.ok]
        assert report.ok == (not failing), key
        for p in failing[1:]:
            assert p.part in report.verdict, (key, p.part)
        if failing:
            assert report.worst[0].failing, key
            assert report.worst[0].part == failing[0].part or any(
                e.failing and e.part == failing[0].part for e in report.worst), key


def test_a_right_derivative_passes_every_part(reports):
    r = reports["right"]
    assert r.ok and [p.part for p in r.parts] == ["gradient", "Hessian diagonal"]
    assert all(p.ok for p in r.parts) and r.worst_relative < 1e-6


@pytest.mark.parametrize("key, diagnosis", [
    ("sum-vs-mean", "sum vs mean: a missing 1/N with N = 24, the size of axis 0"),
    ("sign", "sign flip: the audited value is -1 × the oracle at every element"),
    ("factor-2", "a factor 2: the audited value is 2 × the oracle at every element"),
    ("branch", "the error is confined to x - args[1] < 0"),
    ("off-by-one-class", "off by +1 along axis 1: in each of the 6 affected rows"),
])
def test_diagnoses_are_in_the_headline(reports, key, diagnosis):
    r = reports[key]
    assert not r.ok and r.blame == "hand-derived"
    assert diagnosis in r.verdict, r.verdict
    assert any(diagnosis in d for d in r.diagnoses)


def test_branch_diagnosis_counts_are_the_elements(reports):
    r = reports["branch"]
    below = int(np.sum(np.asarray(X - T) < 0))
    assert f"all {below} failing elements" in r.verdict
    assert r.counts[R.HAND_WRONG] == below


def test_permutation_and_transposed_jacobian_are_diagnosed():
    perm = audit.check(softmax_ce, Z, LABELS,
                       grad=lambda z, y: softmax_ce_grad(z, y)[:, ::-1])
    assert not perm.ok and "permuted along axis 1" in perm.verdict
    w = jax.random.normal(jax.random.PRNGKey(3), (4, 4), jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(4), (4,), jnp.float64)
    f = lambda v: jnp.tanh(w @ v)  # noqa: E731
    right = lambda v: (1 - jnp.tanh(w @ v) ** 2)[:, None] * w  # noqa: E731
    assert audit.check_jacobian(f, x, jac=right).ok
    flipped = audit.check_jacobian(f, x, jac=lambda v: right(v).T)
    assert not flipped.ok and "transposed Jacobian" in flipped.verdict


def test_a_wrong_hessian_with_a_right_gradient_fails_and_leads(reports):
    r = reports["hessian-only"]
    assert not r.ok and r.blame == "hand-derived"
    assert r.verdict.startswith("Hessian diagonal: hand-derived Hessian diagonal is wrong")
    assert "(gradient passes)" in r.verdict and "a factor 2" in r.verdict
    assert r.worst[0].part == "Hessian diagonal" and r.worst[0].failing
    assert [p.ok for p in r.parts] == [True, False]


def test_when_both_fail_the_headline_names_both(reports):
    r = reports["both-wrong"]
    assert r.verdict.startswith("2 parts fail — hand-derived gradient is wrong")
    assert "; AND Hessian diagonal: hand-derived Hessian diagonal is wrong" in r.verdict
    assert {e.part for e in r.worst if e.failing} == {"gradient", "Hessian diagonal"}


def test_a_wrong_custom_rule_fails_even_with_a_right_grad(reports):
    r = reports["custom-rule-wrong"]
    assert not r.ok and r.blame == "autodiff"
    assert r.verdict.startswith("autodiff: a custom derivative rule in fn is wrong")
    below = int(np.sum(np.asarray(X) < 0))
    assert f"at {below} of 24 elements" in r.verdict and "x < 0" in r.verdict
    assert "jax.grad of fn (what training uses)" in r.verdict
    e = r.worst[0]                  # rows, ranks and plots measure autodiff's error here
    assert e.classification == R.AUTODIFF_WRONG and e.score > 1
    assert e.abs_error == pytest.approx(abs(e.autodiff - e.oracle))
    with pytest.raises(AssertionError, match="custom derivative rule in fn is wrong"):
        assert_gradients(lambda x: jnp.sum(leaky_square(x)), X, grad=lambda x: 2 * x)


def test_a_rounding_level_autodiff_gap_is_a_note_with_its_size(reports):
    r = reports["custom-rule-rounding"]
    assert r.ok, r.verdict
    assert r.counts.get(R.AUTODIFF_INACCURATE, 0) > 0
    note = r.notes[0]
    assert "autodiff is less accurate" in note and "× tolerance" in note
    size = float(re.search(r"worst (\S+) × tolerance", note).group(1))
    worst = max(abs(e.autodiff - e.oracle) / e.tolerance for e in r.worst
                if e.classification == R.AUTODIFF_INACCURATE)
    assert size == pytest.approx(worst, rel=1e-2) and size > 1
    assert f"note: {note}" in r.to_markdown()


def test_a_wrong_subgradient_at_a_kink_says_so_with_finite_numbers(reports):
    r = reports["kink-wrong"]
    assert not r.ok
    assert "at 2 kinks it lies outside the one-sided derivatives" in r.verdict
    assert "hand 6, autodiff 0, one-sided" in r.verdict
    assert "the error is confined to x = 0: all 2 failing elements have x = 0" in r.verdict
    assert "autodiff agrees" not in r.verdict
    md = r.to_markdown()
    assert "inf" not in md.lower()
    e = r.worst[0]
    assert e.classification == R.NOT_SUBGRADIENT and e.abs_error == pytest.approx(5.0, rel=1e-6)
    assert e.rel_error == pytest.approx(5.0, rel=1e-6)
    assert reports["kink-right"].ok


def test_a_hessian_kink_where_the_gradient_jumps_shows_no_infinities():
    f = lambda x: jnp.sum(jnp.abs(x) * x)  # noqa: E731 - gradient 2|x|, Hessian 2 sign(x)
    x = jnp.asarray([-1.5, 0.0, 0.7])
    r = audit.check(f, x, grad=lambda v: 2 * jnp.abs(v), hess=lambda v: 2 * jnp.sign(v))
    assert r.ok, r.verdict
    assert "inf" not in r.to_markdown().lower()


def test_user_tolerances_accept_a_deliberate_approximation():
    def approx_grad(p, t):
        return grad_abs_cubed(p, t) * (1 + 2e-9)
    strict = audit.check(mean_abs_cubed, X, T, grad=approx_grad)
    assert not strict.ok
    assert strict.worst_relative == pytest.approx(2e-9, rel=0.05)
    assert "worst relative discrepancy from the oracle: 2e-09" in strict.to_markdown()
    loose = audit.check(mean_abs_cubed, X, T, grad=approx_grad, rtol=1e-8)
    assert loose.ok
    assert loose.verdict.startswith("approximately right (within rtol=1e-08")
    assert "worst relative error 2e-09" in loose.verdict
    assert audit.check(mean_abs_cubed, X, T, grad=lambda p, t: approx_grad(p, t) + 1e-7,
                       atol=2e-7).ok
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        audit.check(mean_abs_cubed, X, T, rtol=-1)


def test_plot_draws_the_failing_parts_and_leaves_matplotlib_alone(reports, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    fig = reports["hessian-only"].plot(tmp_path / "h.png")
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures
    titles = [ax.get_title() for ax in fig.axes]
    assert any("Hessian diagonal: FAIL" in t for t in titles)
    assert not any(t.startswith("hessian-only — gradient") for t in titles)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig).draw()                   # every title fits inside the figure
    for text in [ax.title for ax in fig.axes] + [fig._suptitle]:
        box = text.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width, text.get_text()
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    both = reports["both-wrong"].plot()
    assert sum("FAIL" in ax.get_title() for ax in both.axes) == 2


def test_reports_render_in_notebooks(reports):
    r = reports["sign"]
    assert r._repr_markdown_() == r.to_markdown()
    html = r._repr_html_()
    assert "<table>" in html and "<b>FAIL</b>" in html and "sign flip" in html


def test_assert_gradients_is_one_line_in_a_test_suite():
    report = assert_gradients(mean_abs_cubed, X, T, grad=grad_abs_cubed, hess=hess_abs_cubed)
    assert report.ok
    with pytest.raises(AssertionError) as info:
        assert_gradients(mean_abs_cubed, X, T, grad=lambda p, t: -grad_abs_cubed(p, t))
    assert "sign flip" in str(info.value) and "| element |" in str(info.value)


# -- custom rules -----------------------------------------------------------------------------

@jax.custom_vjp
def softmax_rule(z):
    return jax.nn.softmax(z)


def _softmax_fwd(z):
    s = jax.nn.softmax(z)
    return s, s


softmax_rule.defvjp(_softmax_fwd, lambda s, g: (s * (g - jnp.sum(g * s)),))


@jax.custom_vjp
def softmax_wrong(z):
    return jax.nn.softmax(z)


softmax_wrong.defvjp(_softmax_fwd, lambda s, g: (s * (g - jnp.sum(g * s)) + 1e-3 * g,))


def test_check_rule_audits_a_custom_vjp_exhaustively_and_by_probes():
    z = jax.random.normal(jax.random.PRNGKey(5), (7,), jnp.float64)
    ok = audit.check_rule(softmax_rule, z)
    assert ok.ok and ok.mode.startswith("exhaustive") and ok.size == 49
    assert "custom rules met" in ok.notes[0]
    bad = audit.check_rule(softmax_wrong, z)
    assert not bad.ok and bad.blame == "autodiff"
    assert bad.verdict.startswith("the custom derivative rule of softmax_wrong is wrong")
    big = jax.random.normal(jax.random.PRNGKey(6), (300,), jnp.float64)
    assert audit.check_rule(softmax_rule, big, max_entries=1000).mode == "random probes"
    assert audit.check_rule(softmax_rule, big, max_entries=1000).ok
    assert not audit.check_rule(softmax_wrong, big, max_entries=1000).ok
    plain = audit.check_rule(jnp.tanh, z)
    assert plain.ok and "contains no custom_vjp" in plain.notes[0]


def test_check_jacobian_of_a_custom_vjp_function_does_not_crash():
    z = jax.random.normal(jax.random.PRNGKey(5), (5,), jnp.float64)
    r = audit.check_jacobian(softmax_rule, z)
    assert r.ok and "forward mode unavailable" in r.probes[0].detail
    assert not audit.check_jacobian(softmax_wrong, z).ok
