"""Jacobian audits: every entry of a vector-valued function's Jacobian, reverse and forward
mode against a Richardson oracle along each input direction."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._sampling import host_rng
from lossjax.audit import _oracle, _report as R
from lossjax.audit._flat import _Bound, _Flat, _FlatCall, _select, _to_float64, custom_rules
from lossjax.audit._diagnose import transposed
from lossjax.audit._verdict import (KAPPA, Evidence, _classify, _counts, _elements, _hull_slack,
                                    _verdict, user_tolerance, worst_relative)


def check_jacobian(fn, *args, jac=None, argnums=0, kappa=KAPPA, rtol=0.0, atol=0.0, name=None,
                   memory=256 * 2 ** 20) -> R.AuditReport:
    """Audit the Jacobian of a vector-valued ``fn(*args)`` w.r.t. ``args[argnums]``.

    ``jac`` (optional) is called like ``fn`` and returns the Jacobian as ``jax.jacrev`` does:
    for each leaf of the argument an array of shape ``output.shape + leaf.shape``. Every entry
    is compared (reverse and forward mode, Richardson oracle per input direction).
    ``argnums``, ``kappa``, ``rtol``, ``atol``, ``name`` and ``memory`` are as for
    :func:`check`. Functions built on ``jax.custom_vjp`` (reverse mode only) are audited
    through reverse mode; the forward-mode comparison then says it was not possible.
    """
    with _oracle.x64():
        return _check_jacobian(fn, args, jac, argnums, kappa, rtol, atol, name, memory)


def _check_jacobian(fn, args, jac, argnums, kappa, rtol, atol, name, memory,
                    quantity="Jacobian") -> R.AuditReport:
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
    try:
        fwd = as_matrix(jax.jacfwd(g)(target), "jacfwd")
    except (TypeError, NotImplementedError) as e:      # a custom_vjp has no forward mode
        fwd = f"forward mode unavailable ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    a = None if jac is None else as_matrix(jac(*args), "jac(*args)")
    x = flat.ravel(target, who, "target")
    orc = _oracle.Oracle(_FlatCall(bound, "ravel"), x, _to_float64(dynamic), memory, outputs=m,
                         magnitude=np.max(np.abs(rev) @ np.abs(x), initial=0.0))
    scale_r = np.max(np.abs(rev), axis=1, keepdims=True)
    tol_model = kappa * flat.eps * (np.abs(rev) + scale_r)
    est = orc.refined(np.arange(flat.n), target=(tol_model / 3).T)
    o, oe = est.value.T, est.error.T
    scale_o = np.max(np.abs(o), axis=1, keepdims=True)
    model = kappa * flat.eps * (np.abs(o) + scale_o)
    tol_model = model + user_tolerance(o, rtol, atol)
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
                             outputs=[p[0] for p in pairs], part=quantity)
    if isinstance(fwd, str):
        checks = [R.ProbeCheck("forward mode (jacfwd) vs reverse mode (jacrev)", 0.0, True, fwd)]
    else:
        fwd_gap = float(np.max(np.abs(fwd - rev) / (2 * tol_model + 1e-300), initial=0.0))
        checks = [R.ProbeCheck("forward mode (jacfwd) vs reverse mode (jacrev)", fwd_gap,
                               fwd_gap <= 1.0, "every entry")]
    diagnoses = []
    if a is not None:
        flip = transposed(a, o, tol_model + 3 * oe)
        diagnoses = [flip] if flip else []

    def where(k):
        path, idx = flat.locate(pairs[k][1])
        return f"{path}{list(idx)} (output {pairs[k][0]})"
    evidence = Evidence(None if a is None else a.ravel(), rev.ravel(), o.ravel(), tol, where,
                        est.left.T.ravel(), est.right.T.ravel(), diagnoses=diagnoses)
    verdict, blame, ok, notes = _verdict(labels, a is not None, quantity, checks,
                                         evidence=evidence)
    chosen = rev.ravel() if a is None else a.ravel()
    return R.AuditReport(name, quantity, "exhaustive", flat.n * m, flat.dtype,
                         "Richardson central differences", kappa, verdict, blame, ok,
                         f"every entry checked; tolerance median {np.median(tol):.2g}",
                         _counts(labels), worst, kinks, checks, rtol=rtol, atol=atol,
                         worst_relative=worst_relative(chosen, o.ravel(), labels),
                         diagnoses=diagnoses, notes=notes)


MAX_RULE_ENTRIES = 65_536       # Jacobian entries audited exhaustively by check_rule


def check_rule(op, *args, argnums=0, probes=16, max_entries=MAX_RULE_ENTRIES, kappa=KAPPA,
               rtol=0.0, atol=0.0, key=None, name=None,
               memory=256 * 2 ** 20) -> R.AuditReport:
    """Audit the custom derivative rule (``jax.custom_vjp`` / ``jax.custom_jvp``) of a
    vector-valued ``op(*args)`` w.r.t. ``args[argnums]`` against the float64 oracle.

    Up to ``max_entries`` Jacobian entries, every entry: reverse mode under every unit
    cotangent (the rule's VJP, i.e. what ``jax.grad`` of anything built on ``op`` runs) and,
    where the rule has forward mode, every tangent, each against Richardson differences per
    input direction. Beyond that, ``probes`` random cotangents u and tangents v:
    ``(u^T J) v`` from the rule against ``u^T (J v)`` from the oracle. A wrong rule fails
    with blame "autodiff"."""
    with _oracle.x64():
        who = f"lj.audit.check_rule({name or getattr(op, '__name__', 'op')})"
        name = name or getattr(op, "__name__", repr(op))
        target = _select(args, argnums)
        flat = _Flat(target, who)
        bound, dynamic = _Bound(op, args, argnums, flat), _Bound.dynamic(args)
        out = jax.eval_shape(lambda t: bound.call(t, dynamic), target)
        m = int(np.prod(out.shape, dtype=int))
        rules = custom_rules(lambda t: bound.call(t, dynamic), target)
        if m * flat.n <= max_entries:
            report = _check_jacobian(op, args, None, argnums, kappa, rtol, atol, name, memory,
                                     quantity="custom rule")
            report.mode = "exhaustive (every unit cotangent and tangent)"
        else:
            report = _rule_probes(bound, dynamic, flat, target, out, m, probes, kappa, rtol,
                                  atol, name, memory, key)
        if rules:
            report.notes.append(f"custom rules met: {', '.join(dict.fromkeys(rules))}")
            if not report.ok and report.blame == "autodiff":
                report.verdict = (f"the custom derivative rule of {name} is wrong: " +
                                  report.verdict.split(": ", 1)[-1])
        else:
            report.notes.append(f"{name} contains no custom_vjp/custom_jvp: the audit covers "
                                f"JAX's own derivative rules of its primitives")
        return report


def _rule_probes(bound, dynamic, flat, target, out, m, probes, kappa, rtol, atol, name, memory,
                 key):
    """Random cotangents u and tangents v: (u^T J) v from the rule vs u^T (J v) from the
    oracle."""
    key = jax.random.PRNGKey(0) if key is None else key
    rng = host_rng(key)
    u = rng.standard_normal((probes, m))
    v = rng.standard_normal((probes, flat.n))
    g = lambda t: jnp.ravel(bound.call(t, dynamic))  # noqa: E731
    y, pullback = jax.vjp(g, target)
    dtype = y.dtype
    rows = np.stack([flat.ravel(pullback(jnp.asarray(ui, dtype))[0], "check_rule", "vjp")
                     for ui in u])                                   # u^T J, (probes, n)
    rule = np.sum(rows * v, axis=1)
    x = flat.ravel(target, "check_rule", "target")
    orc = _oracle.Oracle(_FlatCall(bound, "ravel"), x, _to_float64(dynamic), memory, outputs=m,
                         magnitude=float(np.max(np.abs(rows) @ np.abs(x), initial=0.0)))
    est = orc.finite_differences(vectors=v)                          # J v, (probes, m)
    o = np.sum(u * est.value, axis=1)
    oe = np.sum(np.abs(u) * est.error, axis=1)
    scale = np.sum(np.abs(rows) * np.abs(v), axis=1)
    tol = kappa * flat.eps * (scale + np.abs(o)) + 3 * oe + user_tolerance(o, rtol, atol)
    worst = float(np.max(np.abs(rule - o) / tol))
    ok = bool(np.all(np.abs(rule - o) <= tol))
    checks = [R.ProbeCheck("reverse mode (the rule's VJP) vs oracle, u^T J v", worst, ok,
                           f"{probes} random cotangents u and tangents v")]
    verdict = (f"the rule and the oracle agree along {probes} random (u, v) pairs" if ok else
               f"autodiff: the rule's u^T J v differs from the oracle's at "
               f"{int(np.sum(np.abs(rule - o) > tol))} of {probes} random (u, v) pairs (worst "
               f"{worst:.3g} × tolerance)")
    rel = float(np.max(np.abs(rule - o) / np.maximum(np.abs(o), 1e-300)))
    return R.AuditReport(name, "custom rule", "random probes", flat.n * m, flat.dtype,
                         "Richardson central differences", kappa, verdict,
                         "none" if ok else "autodiff", ok,
                         f"{probes} random (cotangent, tangent) pairs; tolerance median "
                         f"{np.median(tol):.2g}", {"probes": probes}, [], [], checks,
                         rtol=rtol, atol=atol, worst_relative=rel)
