"""Derivative audits and loss properties as test assertions.

    from lossjax.testing import assert_gradients, assert_loss

    def test_my_loss_gradient():
        assert_gradients(my_loss, x, y, grad=my_loss_grad, hess=my_loss_hess)

    def test_my_loss():                 # a loss declared with @lj.define_loss
        assert_loss(my_loss)

The one line a user puts in their test suite: it runs :func:`lossjax.audit.check` and raises
``AssertionError`` carrying the audit's markdown report (verdict, diagnosis, the worst
elements with every route's value) when any part fails.
"""
from __future__ import annotations

from lossjax._loss import Sample
from lossjax.audit import check


def assert_gradients(fn, *args, grad=None, hess=None, hvp=None, **audit_options):
    """Audit ``fn(*args)``'s derivatives (``grad=``, ``hess=``, ``hvp=`` hand-derived, any of
    them optional: without them autodiff and its custom rules are audited) and raise
    ``AssertionError`` with the markdown report when the audit fails. ``audit_options`` go to
    :func:`lossjax.audit.check` (``argnums``, ``rtol``, ``atol``, ``kappa``, ``mode``...).
    Returns the report when it passes."""
    report = check(fn, *args, grad=grad, hess=hess, hvp=hvp, **audit_options)
    if not report.ok:
        raise AssertionError(f"{report.verdict}\n\n{report.to_markdown()}")
    return report


def assert_loss(loss, *, dtypes=("float32", "float64"), kinds=("generic", "edge"),
                seeds=3):
    """Run the catalogue's properties on ``loss`` (a :class:`lossjax.Loss`: a catalogue entry
    or your own, from :func:`lossjax.define_loss`) and raise ``AssertionError`` listing every
    failure, with the audit reports of the failing audits.

    Checked, on the loss's own samples (``kinds``; ``seeds`` draws for the properties):

    - **derivatives**: the hand-derived ``.grad`` and ``.hess_diag`` against autodiff and the
      float64 numerical oracle (``lj.audit.audit_loss`` in each of ``dtypes``);
    - **finite** value, autodiff gradient and ``.grad`` on the sampled domain;
    - **declared properties**: elements >= 0 where ``nonnegative``, 0 at ``perfect``;
    - **reductions**: sum = the elements' sum; mean x ``count`` = the mean's numerator;
      weights of ones and a mask of all True leave the mean unchanged;
    - **jit = eager** for value and ``.grad``, **vmap = a loop** over two draws, and
      ``jax.grad(loss.with_analytic_vjp())`` = ``.grad``.

    Returns the audit reports when everything holds.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lossjax import reduce as _reduce
    from lossjax.audit._catalog import audit_loss
    from lossjax.audit._oracle import x64

    failures, reports = [], []
    for dtype in dtypes:
        for kind in kinds:
            report = audit_loss(loss, dtype, kind)
            reports.append(report)
            if not report.ok:
                failures.append(f"audit {dtype} {kind}: {report.verdict}\n\n"
                                f"{report.to_markdown()}")

    def close(a, b, tol):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol * (1 + np.abs(b))))

    with x64():
        for kind in kinds:
            draws = [loss.sample(jax.random.PRNGKey(seed), jnp.float64, kind)
                     for seed in range(seeds)]
            for seed, (args, kwargs) in enumerate(draws):
                where = f"{kind} sample, seed {seed}"
                elements = np.asarray(loss(*args, reduction="none", **kwargs), np.float64)
                autodiff = jax.grad(loss)(*args, **kwargs)
                checked = {"value": elements, "jax.grad": autodiff}
                if loss.has_grad:
                    checked[".grad"] = loss.grad(*args, **kwargs)
                for label, x in checked.items():
                    if not np.all(np.isfinite(np.asarray(x, np.float64))):
                        failures.append(f"{where}: {label} is not finite")
                if loss.nonnegative and np.any(elements < 0):
                    failures.append(f"{where}: declared nonnegative, but elements "
                                    f"{elements[elements < 0][:3]} < 0")
                if loss.perfect is not None:
                    p_args, p_kwargs = loss.perfect(Sample(args, kwargs))
                    zero = np.asarray(loss(*p_args, reduction="none", **p_kwargs))
                    if np.max(np.abs(zero), initial=0.0) > 1e-6:
                        failures.append(f"{where}: not 0 at its perfect prediction "
                                        f"(max {np.max(np.abs(zero)):.3g})")
                terms, w, m, _ = loss._terms(loss._bind(args, kwargs), "mean", None, None)
                scale = 1.0 if terms.mean_scale is None else terms.mean_scale
                numerator = _reduce.reduce(terms.value * scale, "sum", w, m)
                mean = loss(*args, **kwargs)
                tol = 1e-10
                for label, got, want in [
                        ("sum = the elements' sum", loss(*args, reduction="sum", **kwargs),
                         elements.sum()),
                        ("mean x count = the mean's numerator",
                         mean * loss.count(*args, **kwargs), numerator),
                        ("weights of ones leave the mean unchanged",
                         loss(*args, weights=jnp.ones(elements.shape), **kwargs), mean),
                        ("a mask of all True leaves the mean unchanged",
                         loss(*args, where=jnp.ones(elements.shape, bool), **kwargs), mean)]:
                    if not close(got, want, tol):
                        failures.append(f"{where}: {label} ({float(got):.10g} vs "
                                        f"{float(want):.10g})")
                jitted = jax.jit(lambda *a: loss(*a, **kwargs))(*args)
                if not close(jitted, mean, tol):
                    failures.append(f"{where}: jit {float(jitted):.10g} != eager "
                                    f"{float(mean):.10g}")
                if loss.has_grad:
                    g = loss.grad(*args, **kwargs)
                    g_jit = jax.jit(lambda *a: loss.grad(*a, **kwargs))(*args)
                    g_vjp = jax.grad(loss.with_analytic_vjp())(*args, **kwargs)
                    if not close(g_jit, g, tol):
                        failures.append(f"{where}: .grad under jit != eager")
                    if not close(g_vjp, g, tol):
                        failures.append(f"{where}: jax.grad(loss.with_analytic_vjp()) != .grad")
            shapes = [jax.tree_util.tree_map(jnp.shape, d) for d in draws[:2]]
            if len(draws) >= 2 and shapes[0] == shapes[1]:
                static = {k: v for k, v in draws[0].kwargs.items() if not hasattr(v, "dtype")}
                stacked = jax.tree_util.tree_map(
                    lambda a, b: jnp.stack([a, b]),
                    *[(d.args, {k: v for k, v in d.kwargs.items() if k not in static})
                      for d in draws[:2]])
                vmapped = jax.vmap(lambda a, k: loss(*a, **k, **static))(*stacked)
                loop = [loss(*d.args, **d.kwargs) for d in draws[:2]]
                if not close(vmapped, jnp.stack(loop), 1e-10):
                    failures.append(f"{kind}: vmap over two draws {np.asarray(vmapped)} != a "
                                    f"loop {np.asarray(loop)}")
    if failures:
        raise AssertionError(f"{loss.name}: {len(failures)} check(s) failed\n- "
                             + "\n- ".join(failures))
    return reports
