"""Jacobian audits: every entry of a vector-valued function's Jacobian, reverse and forward
mode against a Richardson oracle along each input direction."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax.audit import _oracle, _report as R
from lossjax.audit._flat import _Bound, _Flat, _FlatCall, _select, _to_float64
from lossjax.audit._verdict import KAPPA, _classify, _counts, _elements, _hull_slack, _verdict


def check_jacobian(fn, *args, jac=None, argnums=0, kappa=KAPPA, name=None,
                   memory=256 * 2 ** 20) -> R.AuditReport:
    """Audit the Jacobian of a vector-valued ``fn(*args)`` w.r.t. ``args[argnums]``.

    ``jac`` (optional) is called like ``fn`` and returns the Jacobian as ``jax.jacrev`` does:
    for each leaf of the argument an array of shape ``output.shape + leaf.shape``. Every entry
    is compared (reverse and forward mode, Richardson oracle per input direction).
    ``argnums``, ``kappa``, ``name`` and ``memory`` are as for :func:`check`.
    """
    with _oracle.x64():
        return _check_jacobian(fn, args, jac, argnums, kappa, name, memory)


def _check_jacobian(fn, args, jac, argnums, kappa, name, memory) -> R.AuditReport:
    who = f"lj.audit.check_jacobian({name or getattr(fn, '__name__', 'fn')})"
    name = name or getattr(fn, "__name__", repr(fn))
    target = _select(args, argnums)
    flat = _Flat(target, who)
    bound, dynamic = _Bound(fn, args, argnums, flat), _Bound.dynamic(args)
    g = lambda t: bound.call(t, dynamic)  # noqa: E731
    out_shape = jnp.shape(g(target))
    m = int(np.prod(out_shape, dtype=int))

    def as_matrix(tree, what):
        leaves = jax.tree_util.tree_leaves(tree)
        if jax.tree_util.tree_structure(tree) != flat.treedef:
            raise ValueError(f"{who}: {what} must have the structure of the audited argument.")
        mats = []
        for leaf, shape in zip(leaves, flat.shapes):
            if tuple(np.shape(leaf)) != tuple(out_shape) + tuple(shape):
                raise ValueError(f"{who}: {what} leaf has shape {np.shape(leaf)}, expected "
                                 f"{tuple(out_shape) + tuple(shape)} (output + input shape).")
            mats.append(np.asarray(leaf, np.float64).reshape(m, -1))
        return np.concatenate(mats, axis=1)

    rev = as_matrix(jax.jacrev(g)(target), "jacrev")
    fwd = as_matrix(jax.jacfwd(g)(target), "jacfwd")
    a = None if jac is None else as_matrix(jac(*args), "jac(*args)")
    x = flat.ravel(target, who, "target")
    orc = _oracle.Oracle(_FlatCall(bound, "ravel"), x, _to_float64(dynamic), memory, outputs=m,
                         magnitude=np.max(np.abs(rev) @ np.abs(x), initial=0.0))
    scale_r = np.max(np.abs(rev), axis=1, keepdims=True)
    tol_model = kappa * flat.eps * (np.abs(rev) + scale_r)
    est = orc.refined(np.arange(flat.n), target=(tol_model / 3).T)
    o, oe = est.value.T, est.error.T
    scale_o = np.max(np.abs(o), axis=1, keepdims=True)
    tol_model = kappa * flat.eps * (np.abs(o) + scale_o)
    slack = _hull_slack(est).T
    labels = _classify(None if a is None else a.ravel(), rev.ravel(), o.ravel(), oe.ravel(),
                       tol_model.ravel(), est.left.T.ravel(), est.right.T.ravel(), slack.ravel(),
                       est.side_error.T.ravel())
    outs = [tuple(int(k) for k in np.unravel_index(i, out_shape)) if out_shape else ()
            for i in range(m)]
    pairs = [(outs[i], j) for i in range(m) for j in range(flat.n)]
    tol = (tol_model + 3 * oe).ravel()
    worst, kinks = _elements(flat, labels, None if a is None else a.ravel(), rev.ravel(),
                             o.ravel(), oe.ravel(), tol, est.left.T.ravel(), est.right.T.ravel(),
                             index=np.array([p[1] for p in pairs]),
                             outputs=[p[0] for p in pairs])
    fwd_gap = float(np.max(np.abs(fwd - rev) / (2 * tol_model + 1e-300), initial=0.0))
    checks = [R.ProbeCheck("forward mode (jacfwd) vs reverse mode (jacrev)", fwd_gap,
                           fwd_gap <= 1.0, "every entry")]
    verdict, blame, ok = _verdict(labels, a is not None, "Jacobian", checks)
    return R.AuditReport(name, "Jacobian", "exhaustive", flat.n * m, flat.dtype,
                         "Richardson central differences", kappa, verdict, blame, ok,
                         f"every entry checked; tolerance median {np.median(tol):.2g}",
                         _counts(labels), worst, kinks, checks)
