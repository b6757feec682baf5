"""Agreement of every catalogue entry's hand-derived derivatives with JAX autodiff.

For each loss and sample (generic and edge, float64): the largest relative difference between
``.grad`` and ``jax.grad``, between ``.hess_diag`` and the diagonal of ``jax.hessian``, and
between the gradient of ``.with_analytic_vjp()`` and autodiff. Elements on a declared kink are
compared instead with the midpoint of the one-sided autodiff derivatives there, which is what
``.grad`` promises at a kink. This is what ``lossjax lab`` prints; ``lj.audit`` goes further
(numerical oracles, blame and localisation).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._loss import Loss, catalog

KINDS = ("generic", "edge")


@dataclasses.dataclass
class Agreement:
    name: str
    family: str
    grad: dict            # kind -> relative difference, .grad vs jax.grad
    hess: dict            # kind -> relative difference, .hess_diag vs jax.hessian (or None)
    analytic_vjp: dict    # kind -> relative difference, grad of with_analytic_vjp() vs jax.grad
    kink_elements: int    # elements checked against one-sided midpoints

    def worst(self) -> float:
        values = [*self.grad.values(), *self.hess.values(), *self.analytic_vjp.values()]
        return max(v for v in values if v is not None)


def relative_difference(a, b) -> float:
    """max |a - b| / max |b| (0 when both are zero); NaN anywhere gives inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf") if not np.array_equal(a, b, equal_nan=True) else 0.0
    scale = np.max(np.abs(b), initial=0.0)
    diff = np.max(np.abs(a - b), initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def kink_mask(loss: Loss, args, kwargs, order: int):
    mask = np.zeros(np.shape(args[0]), bool)
    for kink in loss.kinks:
        if kink.order == order:
            mask |= np.asarray(kink.locate(*args, **kwargs), bool)
    return mask


def one_sided_midpoint(derivative, predictions, step):
    """(derivative(p + h) + derivative(p - h)) / 2: elementwise losses only."""
    return (np.asarray(derivative(predictions + step)) + np.asarray(derivative(predictions - step))) / 2


def _compare(analytic, autodiff, kinked, at_kinks):
    analytic, autodiff = np.asarray(analytic), np.asarray(autodiff)
    expected = np.where(kinked, at_kinks, autodiff) if kinked.any() else autodiff
    return relative_difference(analytic, expected)


def agreement(loss: Loss, key=None, dtype=jnp.float64) -> Agreement:
    if key is None:
        key = jax.random.PRNGKey(0)
    grads, hesses, vjps, kinks = {}, {}, {}, 0
    for kind in KINDS:
        args, kwargs = loss.sample(key, dtype, kind)
        p, rest = args[0], args[1:]
        f = lambda q: loss(q, *rest, **kwargs)  # noqa: E731
        g = lambda q: jax.grad(f)(q)  # noqa: E731
        step = 1e-6 * (1 + jnp.abs(p))

        kinked = kink_mask(loss, args, kwargs, order=1)
        kinks += int(kinked.sum())
        at = one_sided_midpoint(g, p, step) if kinked.any() else None
        grads[kind] = _compare(loss.grad(*args, **kwargs), g(p), kinked, at)

        hesses[kind] = None
        if loss.has_hess_diag:
            n = p.size
            auto_h = jnp.diagonal(jax.hessian(f)(p).reshape(n, n)).reshape(p.shape)
            kinked2 = kink_mask(loss, args, kwargs, order=2) | kinked
            kinks += int((kinked2 & ~kinked).sum())
            h_diag = lambda q: jnp.diagonal(  # noqa: E731
                jax.hessian(f)(q).reshape(n, n)).reshape(p.shape)
            at2 = one_sided_midpoint(h_diag, p, step) if kinked2.any() else None
            hesses[kind] = _compare(loss.hess_diag(*args, **kwargs), auto_h, kinked2, at2)

        analytic_f = loss.with_analytic_vjp()
        vjps[kind] = _compare(jax.grad(lambda q: analytic_f(q, *rest, **kwargs))(p),
                              g(p), kinked, at)
    return Agreement(loss.name, loss.family, grads, hesses, vjps, kinks)


def agreement_table(losses=None, progress=None) -> list[Agreement]:
    rows = []
    for loss in losses or catalog():
        rows.append(agreement(loss))
        if progress is not None:
            progress(loss.name)
    return rows


def to_markdown(rows: list[Agreement]) -> str:
    def fmt(x):
        return "—" if x is None else f"{x:.1e}"
    lines = ["| loss | family | grad generic | grad edge | hess generic | hess edge | "
             "analytic VJP | kink elements |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.family} | {fmt(r.grad['generic'])} | {fmt(r.grad['edge'])} | "
            f"{fmt(r.hess['generic'])} | {fmt(r.hess['edge'])} | "
            f"{fmt(max(r.analytic_vjp.values()))} | {r.kink_elements} |")
    return "\n".join(lines)
