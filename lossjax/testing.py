"""Derivative audits as test assertions.

    from lossjax.testing import assert_gradients

    def test_my_loss_gradient():
        assert_gradients(my_loss, x, y, grad=my_loss_grad, hess=my_loss_hess)

The one line a user puts in their test suite: it runs :func:`lossjax.audit.check` and raises
``AssertionError`` carrying the audit's markdown report (verdict, diagnosis, the worst
elements with every route's value) when any part fails.
"""
from __future__ import annotations

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
