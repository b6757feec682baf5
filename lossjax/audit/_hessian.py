"""Hessian audits: a hand-derived Hessian diagonal against forward-over-reverse autodiff and
Richardson second differences (kinks of the second derivative recognised), and hand-derived
Hessian-vector products against autodiff, differences of the float64 gradient and symmetry."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._compile import fast_jit
from lossjax.audit import _oracle, _report as R
from lossjax._sampling import host_rng
from lossjax.audit._flat import _FlatCall, _select, _to_float64, one_hot_rows
from lossjax.audit._diagnose import diagnose
from lossjax.audit._verdict import (Evidence, _classify, _counts, _elements, _verdict,
                                    element_names, failing_mask, user_tolerance,
                                    worst_relative)

LOCALISE = 256          # sampled diagonal elements beyond the exhaustive size


def _hessian_rows(bound, target, dynamic, rows):
    """e_i . H e_i for unit vectors ``rows``: forward-over-reverse autodiff, batched."""
    grad = jax.grad(lambda t: bound.call(t, dynamic))

    def one(row):
        hv = jax.jvp(grad, (target,), (bound.flat.unravel(row, bound.flat.dtypes),))[1]
        return jnp.dot(jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(hv)]),
                       row)
    return jax.vmap(one)(rows)


_hessian_diagonal_kernel = fast_jit(_hessian_rows, static_argnums=0)


def _hessian_diagonal(bound, args, dynamic, flat, orc, hess, kappa, name, exhaustive, key,
                      who, auto=None, rtol=0.0, atol=0.0):
    """Hand-derived Hessian diagonal ``hess`` (its value at the input) vs forward-over-reverse
    autodiff (``auto``, the whole diagonal, when already computed) vs second differences."""
    h_hand = flat.ravel(hess, who, "hess(*args)")
    index = np.arange(flat.n) if exhaustive else np.sort(
        host_rng(key).choice(flat.n, min(flat.n, LOCALISE), replace=False))
    if auto is None:
        target = _select(args, bound.argnums)
        size = min(orc.chunk, len(index))         # every chunk padded to one compiled shape
        parts = []
        for lo in range(0, len(index), size):
            idx = index[lo:lo + size]
            rows = one_hot_rows(np.pad(idx, (0, size - len(idx))), flat.n,
                                np.dtype(flat.dtypes[0]))
            parts.append(np.asarray(_hessian_diagonal_kernel(bound, target, dynamic, rows),
                                    np.float64)[:len(idx)])
        auto = np.concatenate(parts)
    else:
        auto = np.asarray(auto, np.float64)[index]
    scale_auto = np.max(np.abs(auto[np.isfinite(auto)]), initial=0.0)
    second_target = np.zeros((flat.n, 1))
    second_target[index, 0] = kappa * flat.eps * (np.abs(auto) + scale_auto) / 3
    est = orc.refined(index, target=np.full((flat.n, 1), np.inf), second_target=second_target)
    o, oe = est.second[:, 0], est.second_error[:, 0]
    scale = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    tol_model = kappa * flat.eps * (np.abs(o) + scale) + user_tolerance(o, rtol, atol)
    hand = h_hand[index]
    labels = _classify(hand, auto, o, oe, tol_model)
    # A jump in the second derivative (huber at |r| = delta): the one-sided second
    # differences disagree by an amount that does not shrink with the step. Such an element
    # passes when the hand-derived value lies between the one-sided values.
    left, right = est.second_left[:, 0], est.second_right[:, 0]
    jump = est.second_jump[:, 0] & (np.abs(right - left) > 2 * tol_model)
    lo, hi = np.minimum(left, right) - tol_model, np.maximum(left, right) + tol_model
    labels[jump & (hand >= lo) & (hand <= hi)] = R.KINK
    labels[jump & ~((hand >= lo) & (hand <= hi))] = R.NOT_SUBGRADIENT
    # Where the gradient itself jumps the second derivative is a Dirac delta: any finite
    # value (the hand-derived one is usually the almost-everywhere value) is a kink choice.
    gap = np.abs(est.right[:, 0] - est.left[:, 0])
    gradient_kink = gap - 10 * est.side_error[:, 0] > \
        np.sqrt(_oracle.EPS64) * (np.abs(est.left[:, 0]) + np.abs(est.right[:, 0]))
    labels[gradient_kink] = R.KINK
    left = np.where(gradient_kink, -np.inf, left)
    right = np.where(gradient_kink, np.inf, right)
    tol = tol_model + 3 * oe
    worst, kinks = _elements(flat, labels, hand, auto, o, oe, tol, left, right, index=index,
                             part="Hessian diagonal")
    failing = failing_mask(labels)
    diagnoses = diagnose(hand, o, tol, failing, flat, np.asarray(orc.x)[index]) \
        if exhaustive else []
    evidence = Evidence(hand, auto, o, tol, element_names(flat, index), left, right,
                        diagnoses=diagnoses)
    verdict, blame, ok, notes = _verdict(labels, True, "Hessian diagonal", evidence=evidence)
    detection = (f"{'every' if exhaustive else len(index)} diagonal element"
                 f"{'' if exhaustive else 's (random sample)'} checked; tolerance median "
                 f"{np.median(tol):.2g}")
    return R.AuditReport(name, "Hessian diagonal", "exhaustive" if exhaustive else
                         "sampled elements", len(index), flat.dtype,
                         "Richardson second differences", kappa, verdict, blame, ok, detection,
                         _counts(labels), worst, kinks, [], rtol=rtol, atol=atol,
                         worst_relative=worst_relative(hand, o, labels), diagnoses=diagnoses,
                         notes=notes)


def _hessian_vector(bound, args, dynamic, flat, hvp, kappa, name, key, who, probes=4):
    """Hand-derived Hessian-vector products vs forward-over-reverse vs differences of the
    float64 autodiff gradient along the same vectors; symmetry u.Hv = v.Hu."""
    target = _select(args, bound.argnums)
    grad = jax.grad(lambda t: bound.call(t, dynamic))
    vs = host_rng(key).standard_normal((probes, flat.n))
    trees = [jax.tree_util.tree_map(jnp.asarray, flat.unravel(v, flat.dtypes)) for v in vs]
    hand = np.stack([flat.ravel(hvp(t, *args), who, "hvp(v, *args)") for t in trees])
    auto = np.stack([flat.ravel(jax.jvp(grad, (target,), (t,))[1], who, "jvp")
                     for t in trees])
    vs = np.stack([flat.ravel(t, who, "v") for t in trees])
    orc = _oracle.Oracle(_FlatCall(bound, "grad"), flat.ravel(target, who, "target"),
                         _to_float64(dynamic), outputs=flat.n)
    est = orc.finite_differences(vectors=jnp.asarray(vs))
    o, oe = est.value, est.error
    scale = np.max(np.abs(o), axis=1, keepdims=True)
    tol = kappa * flat.eps * (np.abs(o) + scale) + 3 * oe
    hand_ok = np.abs(hand - o) <= tol
    auto_ok = np.abs(auto - o) <= tol
    checks = [R.ProbeCheck("hand-derived HVP vs oracle", float(np.max(np.abs(hand - o) / tol)),
                           bool(np.all(hand_ok | ~auto_ok)), f"{probes} random vectors"),
              R.ProbeCheck("autodiff HVP vs oracle", float(np.max(np.abs(auto - o) / tol)),
                           bool(np.all(auto_ok)), "forward-over-reverse")]
    u_hv = np.sum(vs[1:] * hand[:-1], axis=1)
    v_hu = np.sum(vs[:-1] * hand[1:], axis=1)
    sym_tol = kappa * flat.eps * (np.abs(vs[1:]) * np.abs(hand[:-1])).sum(1) + \
        (np.abs(vs[1:]) * 3 * oe[:-1]).sum(1) + (np.abs(vs[:-1]) * 3 * oe[1:]).sum(1)
    checks.append(R.ProbeCheck("hand-derived HVP symmetry u.Hv = v.Hu",
                               float(np.max(np.abs(u_hv - v_hu) / sym_tol)),
                               bool(np.all(np.abs(u_hv - v_hu) <= sym_tol)), ""))
    labels = np.where(hand_ok, R.PASS, np.where(auto_ok, R.HAND_WRONG, R.UNSTABLE)).ravel()
    verdict, blame, ok, notes = _verdict(labels.astype(object), True, "Hessian-vector product",
                                         checks)
    return R.AuditReport(name, "Hessian-vector product", "random probes", flat.n, flat.dtype,
                         "central differences of the float64 autodiff gradient", kappa, verdict,
                         blame, ok, f"{probes} random vectors, every component compared",
                         _counts(labels.astype(object)), [], [], checks, notes=notes)

