"""Audit every catalogue entry's hand-derived gradient and Hessian diagonal."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import os

import jax
import jax.numpy as jnp

from lossjax._loss import catalog as _catalog
from lossjax.audit import _oracle
from lossjax.audit._check import check
from lossjax.audit._report import Part
from lossjax.audit._verdict import combine

DTYPES = ("float32", "float64")
KINDS = ("generic", "edge")


@dataclasses.dataclass
class CatalogRow:
    loss: str
    dtype: str
    kind: str
    ok: bool
    verdict: str
    kinks: int              # elements classified as kinks, over every part audited
    worst: float            # largest error / tolerance among the elements (<= 1 passes)
    report: object


class _Call:
    """``method(*args, **hyper)`` with the array hyperparameters passed positionally after
    the loss's own arguments. Hashable by value, so audits of the same loss share compiled
    kernels (the float64 oracle of a float32 and a float64 audit is the same program)."""

    def __init__(self, loss, method, n_args, array_names, static):
        self.loss, self.method, self.n_args = loss, method, n_args
        self.array_names, self.static = tuple(array_names), tuple(sorted(static.items()))
        self.__name__ = f"{loss.name}.{method}" if method != "__call__" else loss.name

    def with_static(self, **extra):
        return _Call(self.loss, self.method, self.n_args, self.array_names,
                     {**dict(self.static), **extra})

    def _key(self):
        # the Loss object itself, not its name: a user's loss may share a catalogue name
        return (self.loss, self.method, self.n_args, self.array_names, self.static)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Call) and self._key() == other._key()

    def __call__(self, *args):
        hyper = dict(self.static)
        hyper.update(zip(self.array_names, args[self.n_args:]))
        fn = self.loss if self.method == "__call__" else getattr(self.loss, self.method)
        return fn(*args[:self.n_args], **hyper)


def loss_calls(loss, args, kwargs):
    """A :class:`_Call` per method of ``loss`` (``__call__``, ``grad``, ``hess_diag``) for
    ``loss(*args, **kwargs)``, the positional inputs they take (the arguments, then the array
    hyperparameters) and those hyperparameters' names."""
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "dtype")}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    calls = {m: _Call(loss, m, len(args), arrays, static)
             for m in ("__call__", "grad", "hess_diag")}
    return calls, (*args, *arrays.values()), list(arrays)


def audit_loss(loss, dtype="float64", kind="generic", key=None):
    """The AuditReport of one loss's .grad (and .hess_diag) at its ``kind`` sample."""
    key = jax.random.PRNGKey(0) if key is None else key
    with _oracle.x64():
        args, kwargs = loss.sample(key, jnp.dtype(dtype), kind)
        calls, inputs, arrays = loss_calls(loss, args, kwargs)
        report = check(calls["__call__"], *inputs,
                       grad=calls["grad"] if loss.has_grad else None,
                       hess=calls["hess_diag"] if loss.has_hess_diag else None,
                       name=f"{loss.name}[{kind}]")
        if not loss.has_grad:
            report.verdict += f" (no hand-derived gradient: {loss.grad_note})"
        positions = {name: i for i, name in enumerate(
            list(inspect.signature(loss).parameters)[:len(args)] + list(arrays))}
        for wrt in loss.grad_wrt:
            if wrt not in positions:      # a hyperparameter the sample leaves at its default
                continue
            sub = check(calls["__call__"], *inputs, grad=calls["grad"].with_static(wrt=wrt),
                        argnums=positions[wrt], name=f"{loss.name}[{kind}] w.r.t. {wrt}")
            sub.quantity = f"gradient w.r.t. {wrt}"
            report.sub_reports.append(sub)
            combine(report, report.parts + [Part(sub.quantity, sub.ok, sub.verdict, sub.blame)])
        return report


def catalog(losses=None, dtypes=DTYPES, kinds=KINDS, progress=None,
            workers=None) -> list[CatalogRow]:
    """Audit every catalogue entry (or ``losses``) in each dtype at each sample kind.

    ``workers`` threads (default: the number of CPUs, at most 4) audit different losses at
    once: XLA compiles one loss's programs while Python traces the next one's."""
    losses = list(losses or _catalog())
    workers = workers or min(4, os.cpu_count() or 1)

    def one(loss):
        rows = []
        for dtype in dtypes:
            for kind in kinds:
                report = audit_loss(loss, dtype, kind)
                worst = max((e.abs_error / e.tolerance for e in report.worst
                             if e.classification != "kink" and e.tolerance > 0), default=0.0)
                kinks = len(report.kinks) + sum(len(s.kinks) for s in report.sub_reports)
                rows.append(CatalogRow(loss.name, dtype, kind, report.ok, report.verdict, kinks,
                                       worst, report))
        return rows

    rows = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for loss, done in zip(losses, pool.map(one, losses)):
            rows += done
            if progress is not None:
                progress(loss.name)
    return rows


def to_markdown(rows) -> str:
    """The rows as a markdown table. Kinks are counted as the verdict counts them (the
    gradient's classified elements), then over every part audited (Hessian diagonal, HVP,
    modes, other arguments)."""
    lines = ["| loss | dtype | sample | result | worst error / tolerance | kinks: gradient / "
             "all parts | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.loss} | {r.dtype} | {r.kind} | {'PASS' if r.ok else 'FAIL'} | "
                     f"{r.worst:.2g} | {len(r.report.kinks)} / {r.kinks} | {r.verdict} |")
    return "\n".join(lines)
