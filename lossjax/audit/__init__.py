"""Gradient-correctness audits: hand-derived derivatives vs autodiff vs numerical oracles.

    report = lj.audit.check(fn, *args, grad=my_grad)
    report.ok, report.verdict, report.to_markdown(), report.to_json(), report.plot()

See :func:`check`, :func:`check_jacobian`, :func:`check_rule` (custom derivative rules),
:func:`check_objective` (GBDT objectives), :func:`check_update`, :func:`catalog` and
:func:`precision_matrix` (the dtype matrix).
"""
from lossjax.audit._catalog import audit_loss, catalog, to_markdown
from lossjax.audit._check import check
from lossjax.audit._jacobian import check_jacobian, check_rule
from lossjax.audit._objective import check_objective
from lossjax.audit._verdict import KAPPA
from lossjax.audit._precision import PrecisionRow, precision_markdown, precision_matrix
from lossjax.audit._report import AuditReport, Element, ProbeCheck
from lossjax.audit._update import UpdateAudit, check_update

__all__ = ["AuditReport", "Element", "ProbeCheck", "UpdateAudit", "KAPPA", "audit_loss",
           "catalog", "check", "check_jacobian", "check_rule", "check_objective", "check_update", "to_markdown", "PrecisionRow",
           "precision_matrix", "precision_markdown"]
