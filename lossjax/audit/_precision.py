"""The dtype matrix: how far each loss's value and hand-derived gradient are from the float64
result in float16, bfloat16, float32 and float64, against a bound declared per loss.

Inputs are drawn by the loss's sampler in the dtype under test; the reference is the same
(already rounded) inputs computed in float64, so the error measured is the computation's own,
not the rounding of the inputs. For float64 itself the value is the reference (error 0) and
the gradient is compared with float64 autodiff of the same loss, an independent route.

Errors are mixed absolute/relative, the way a float's precision is stated:
``|got - ref| / max(1, |ref|)`` for the value and ``max|got - ref| / max(1, max|ref|)`` for
the gradient, then divided by the dtype's machine epsilon: the table reads in units of eps.

    rows = lj.audit.precision_matrix()            # every loss, 4 dtypes, generic and edge
    print(lj.audit.precision_markdown(rows))
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._compile import fast_jit
from lossjax._loss import catalog as _catalog
from lossjax.audit import _oracle
from lossjax.audit._catalog import loss_calls
from lossjax.audit._flat import _to_float64

DTYPES = ("float16", "bfloat16", "float32", "float64")
KINDS = ("generic", "edge")

# Declared bounds, in units of the dtype's eps (float16 9.8e-4, bfloat16 7.8e-3, float32
# 1.2e-7, float64 2.2e-16): (value, gradient). The default holds for most losses (measured
# worst: 2.4 eps); the others carry a larger one and the reason. Measured worst cases are in
# the README's table (`make bench`, benchmarks/bench_precision.py).
DEFAULT_BOUND = (4.0, 4.0)
BOUNDS = {
    "ctc": (16.0, 16.0),                    # a forward recursion over frames
    "linear_cross_entropy": (8.0, 8.0),     # blockwise sums with an online logsumexp
    "ntxent": (8.0, 8.0),                   # normalisation, then a logsumexp over 2N - 1
    "info_nce": (8.0, 8.0),
}
# float64 gradients are compared with float64 autodiff, whose own error can dominate: for
# softmax_focal_loss at saturated logits autodiff forms log p_y (q - p) from two nearly equal
# softmaxes (the hand-derived gradient forms q - p from logs; its float32 error vs float64 is
# 0.2 eps); for adaptive_robust the two float64 routes differ by up to 83 eps where alpha is
# close to its special values (the general formula's |alpha - 2| / alpha factors cancel there)
FLOAT64_GRAD_BOUNDS = {"softmax_focal_loss": 1024.0, "adaptive_robust": 256.0}


def bound(name: str, dtype: str):
    """(value bound, gradient bound) of loss ``name`` in ``dtype``, absolute numbers."""
    eps = float(jnp.finfo(jnp.dtype(dtype)).eps)
    k_value, k_grad = BOUNDS.get(name, DEFAULT_BOUND)
    if jnp.dtype(dtype) == jnp.float64:
        k_grad = FLOAT64_GRAD_BOUNDS.get(name, k_grad)
    return k_value * eps, k_grad * eps


@dataclasses.dataclass
class PrecisionRow:
    loss: str
    dtype: str
    kind: str
    value_error: float          # mixed error, absolute number
    grad_error: float
    value_bound: float
    grad_bound: float
    dtype_kept: bool            # value and gradient come back in the input dtype
    finite: bool

    @property
    def eps(self) -> float:
        return float(jnp.finfo(jnp.dtype(self.dtype)).eps)

    @property
    def ok(self) -> bool:
        return (self.finite and self.dtype_kept and self.value_error <= self.value_bound
                and self.grad_error <= self.grad_bound)


def _mixed(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def _value_and_grad(value, grad, *inputs):
    """The value and the hand-derived ``grad``, or autodiff w.r.t. the first input when
    ``grad`` is None."""
    if grad is None:
        return jax.value_and_grad(value)(*inputs)
    return value(*inputs), grad(*inputs)


@fast_jit(static_argnums=0)
def _evaluate_all(calls, inputs):
    """Every cell's (value, gradient) in one program: ``calls`` are hashable (value, grad)
    pairs of the audit's calls (compiled once per loss, options and shapes). One program per
    loss instead of one per cell: compiling dominates on small samples."""
    return [_value_and_grad(value, grad, *x) for (value, grad), x in zip(calls, inputs)]


def _call_pair(loss, args, kwargs, autodiff=False):
    calls, inputs, _ = loss_calls(loss, args, kwargs)
    grad = None if autodiff or not loss.has_grad else calls["grad"]
    return (calls["__call__"], grad), tuple(inputs)


def _measure_cells(loss, cells, key):
    """PrecisionRows of ``loss`` at each (dtype, kind) of ``cells``, from one program."""
    with _oracle.x64():
        pairs, inputs, samples = [], [], []
        for dtype, kind in cells:
            args, kwargs = loss.sample(key, jnp.dtype(dtype), kind)
            up_args, up_kwargs = _to_float64((args, kwargs))
            for a, k, autodiff in ((args, kwargs, False),
                                   (up_args, up_kwargs, dtype == "float64")):
                pair, x = _call_pair(loss, a, k, autodiff)
                pairs.append(pair)
                inputs.append(x)
        out = jax.device_get(_evaluate_all(tuple(pairs), inputs))
        rows = []
        for i, (dtype, kind) in enumerate(cells):
            (value, grad), (ref_value, ref_grad) = out[2 * i], out[2 * i + 1]
            if dtype == "float64":          # float64: the value is its own reference
                ref_value = value
            kept = value.dtype == jnp.dtype(dtype) and grad.dtype == jnp.dtype(dtype)
            finite = bool(np.all(np.isfinite(np.asarray(value, np.float64)))
                          and np.all(np.isfinite(np.asarray(grad, np.float64))))
            v_bound, g_bound = bound(loss.name, dtype)
            rows.append(PrecisionRow(loss.name, dtype, kind, _mixed(value, ref_value),
                                     _mixed(grad, ref_grad), v_bound, g_bound, bool(kept),
                                     finite))
        return rows


def measure(loss, dtype: str, kind: str = "generic", key=None) -> PrecisionRow:
    """One cell of the matrix: ``loss`` on its ``kind`` sample drawn in ``dtype``."""
    key = jax.random.PRNGKey(0) if key is None else key
    return _measure_cells(loss, [(dtype, kind)], key)[0]


def precision_matrix(losses=None, dtypes=DTYPES, kinds=KINDS, seed: int = 0):
    """Every (loss, dtype, kind) cell, in catalogue order."""
    cells = [(dtype, kind) for dtype in dtypes for kind in kinds]
    return [row for loss in (_catalog() if losses is None else losses)
            for row in _measure_cells(loss, cells, jax.random.PRNGKey(seed))]


def precision_markdown(rows) -> str:
    """One line per loss: its declared bounds and, per dtype, the worst value / gradient error
    over the kinds, in units of eps (FAIL where a bound is exceeded)."""
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    by_loss = {}
    for r in rows:
        by_loss.setdefault(r.loss, {}).setdefault(r.dtype, []).append(r)
    head = ["loss", "bound (value, grad) × eps"] + [f"{d} value / grad" for d in dtypes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in by_loss.items():
        # the bounds as the rows carry them, in eps; a float64 gradient bound of its own shown
        first = next(iter(cells.values()))[0]
        k_value, k_grad = first.value_bound / first.eps, first.grad_bound / first.eps
        f64 = [r.grad_bound / r.eps for r in cells.get("float64", [])[:1]]
        row = [f"`{name}`", f"{k_value:g}, {k_grad:g}"
               + (f" ({f64[0]:g} float64)" if f64 and f64[0] != k_grad else "")]
        for d in dtypes:
            rs = cells.get(d, [])
            v = max(r.value_error / r.eps for r in rs)
            g = max(r.grad_error / r.eps for r in rs)
            flag = "" if all(r.ok for r in rs) else " **FAIL**"
            row.append(f"{v:.2g} / {g:.2g}{flag}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
