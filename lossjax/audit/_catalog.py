"""Audit every catalogue entry's hand-derived gradient and Hessian diagonal."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lossjax._loss import catalog as _catalog
from lossjax.audit import _oracle
from lossjax.audit._check import check

DTYPES = ("float32", "float64")
KINDS = ("generic", "edge")


@dataclasses.dataclass
class CatalogRow:
    loss: str
    dtype: str
    kind: str
    ok: bool
    verdict: str
    kinks: int
    worst: float            # largest error / tolerance among the elements (<= 1 passes)
    report: object


def audit_loss(loss, dtype="float64", kind="generic", key=None):
    """The AuditReport of one loss's .grad (and .hess_diag) at its ``kind`` sample."""
    key = jax.random.PRNGKey(0) if key is None else key
    with _oracle.x64():
        args, kwargs = loss.sample(key, jnp.dtype(dtype), kind)
        fn = lambda p, *rest: loss(p, *rest, **kwargs)  # noqa: E731
        grad = lambda p, *rest: loss.grad(p, *rest, **kwargs)  # noqa: E731
        hess = (lambda p, *rest: loss.hess_diag(p, *rest, **kwargs)) if loss.has_hess_diag \
            else None
        return check(fn, *args, grad=grad, hess=hess, name=f"{loss.name}[{kind}]")


def catalog(losses=None, dtypes=DTYPES, kinds=KINDS, progress=None) -> list[CatalogRow]:
    """Audit every catalogue entry (or ``losses``) in each dtype at each sample kind."""
    rows = []
    for loss in losses or _catalog():
        for dtype in dtypes:
            for kind in kinds:
                report = audit_loss(loss, dtype, kind)
                worst = max((e.abs_error / e.tolerance for e in report.worst
                             if e.classification != "kink" and e.tolerance > 0), default=0.0)
                kinks = len(report.kinks) + sum(len(s.kinks) for s in report.sub_reports)
                rows.append(CatalogRow(loss.name, dtype, kind, report.ok, report.verdict, kinks,
                                       worst, report))
        if progress is not None:
            progress(loss.name)
    return rows


def to_markdown(rows) -> str:
    lines = ["| loss | dtype | sample | result | worst error / tolerance | kinks | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.loss} | {r.dtype} | {r.kind} | {'PASS' if r.ok else 'FAIL'} | "
                     f"{r.worst:.2g} | {r.kinks} | {r.verdict} |")
    return "\n".join(lines)
