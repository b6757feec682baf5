"""Error model, element classification and the verdict.

Tolerance model, per element i of a derivative (never scaled by the number of elements):

    tol_i = kappa * eps(audited dtype) * (|d_i| + max_j |d_j|)  +  4 * s_i
            +  3 * oracle_error_i

where d is the oracle's derivative (one row of it for a Jacobian). ``kappa`` (default 16)
absorbs the few roundings of a typical derivative computation; ``max_j |d_j|`` stands for the
magnitude of the intermediate terms, whose rounding does not shrink with |d_i| (as in
sigmoid(z) - t near 0); s_i is the measured change of the derivatives when the input moves by
one ulp (the conditioning that large inputs cost). Comparisons between the hand-derived and
autodiff values (both in the audited dtype) leave out the oracle term.

Blame, element by element: the hand-derived value is wrong when it differs from the oracle
while autodiff agrees with it; autodiff is wrong (a custom derivative rule, or the function is
numerically unstable under autodiff) when it differs while the hand-derived value agrees;
an element whose one-sided derivatives differ is a kink, and passes when the chosen values
lie between them.
"""
from __future__ import annotations

import numpy as np

from lossjax.audit import _report as R

KAPPA = 16.0
KEEP = 50               # ranked elements kept in a report


def _classify(a, r, o, oe, tol_model, left=None, right=None, hull_slack=None, side_err=None,
              tol_kink=None):
    """Element classifications (object array) for flat arrays; ``a`` may be None.

    ``tol_kink`` (default ``tol_model``) is the tolerance for calling the one-sided
    derivatives different; it must not include the measured ulp-sensitivity, which is itself
    large at a kink (a one-ulp move flips the side)."""
    tol = tol_model + 3 * oe
    labels = np.full(r.shape, R.PASS, dtype=object)
    finite_o = np.isfinite(o)
    ro_ok = np.abs(r - o) <= tol
    if a is not None:
        ao_ok = np.abs(a - o) <= tol
        ar_ok = np.abs(a - r) <= 2 * tol_model
        labels[ro_ok & ~ao_ok] = R.HAND_WRONG
        labels[~ro_ok & ao_ok] = R.AUTODIFF_WRONG
        # Hand-derived and autodiff agree but the oracle, confident, does not: autodiff is
        # using the hand-derived rule (custom_vjp) or both share a mistake.
        confident = oe <= 0.1 * np.abs(a - o)
        labels[~ro_ok & ~ao_ok & ar_ok & confident] = R.SHARED_WRONG
        labels[~ro_ok & ~ao_ok & ar_ok & ~confident] = R.UNSTABLE
        labels[~ro_ok & ~ao_ok & ~ar_ok] = R.ALL_DISAGREE
    else:
        bad = ~ro_ok
        confident = oe <= 0.1 * np.abs(r - o)
        labels[bad & ~confident] = R.UNSTABLE
        labels[bad & confident] = R.AUTODIFF_WRONG
    labels[~finite_o] = R.UNSTABLE
    if left is not None:
        tol_kink = tol_model if tol_kink is None else tol_kink
        kink = np.isfinite(left) & np.isfinite(right) & \
            (np.abs(right - left) > 2 * tol_kink + 10 * side_err)
        lo = np.minimum(left, right) - hull_slack - tol_kink
        hi = np.maximum(left, right) + hull_slack + tol_kink
        chosen = a if a is not None else r
        inside = (chosen >= lo) & (chosen <= hi)
        labels[kink & inside] = R.KINK
        labels[kink & ~inside] = R.NOT_SUBGRADIENT if a is not None else R.AUTODIFF_WRONG
    return labels


def _hull_slack(est):
    """Allowance around the one-sided derivatives at a kink: their error estimates plus the
    curvature of each smooth side over one step (the central second difference is spurious
    across a kink, the one-sided ones are not)."""
    curvature = np.maximum(np.abs(est.second_left), np.abs(est.second_right))
    step = est.step if est.step.ndim == 2 else est.step[:, None]
    out = 4 * est.side_error + step * curvature
    return out[:, 0] if out.shape[1] == 1 and est.value.shape[1] == 1 else out


def _elements(flat, labels, a, r, o, oe, tol, left=None, right=None, index=None, outputs=None):
    """Element records, worst first (by error / tolerance), and the kinks."""
    index = np.arange(r.size) if index is None else np.asarray(index)
    chosen = a if a is not None else r
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(np.isfinite(chosen), np.abs(chosen - o) / np.maximum(tol, 1e-300), np.inf)
    score = np.where(np.isnan(score), np.inf, score)
    failing = np.array([lab not in (R.PASS, R.KINK, R.SKIPPED) for lab in labels])
    order = np.lexsort((-score, ~failing))

    def record(k):
        path, idx = flat.locate(index[k])
        return R.Element(
            path=path, index=idx, classification=str(labels[k]),
            autodiff=float(r[k]), oracle=float(o[k]), oracle_error=float(oe[k]),
            tolerance=float(tol[k]), analytic=None if a is None else float(a[k]),
            left=None if left is None else float(left[k]),
            right=None if right is None else float(right[k]),
            output=None if outputs is None else tuple(outputs[k]))

    worst = [record(k) for k in order[:KEEP]]
    kinks = [record(k) for k in np.nonzero(labels == R.KINK)[0][:1000]]
    return worst, kinks


def _counts(labels):
    names = [R.PASS, R.KINK, R.SKIPPED, R.HAND_WRONG, R.NOT_SUBGRADIENT, R.ALL_DISAGREE,
             R.SHARED_WRONG,
             R.AUTODIFF_WRONG, R.UNSTABLE]
    return {n: int(np.sum(labels == n)) for n in names if n == R.PASS or np.any(labels == n)}


def _verdict(labels, has_analytic, quantity, probe_checks=(), scope=None):
    """(verdict, blame, ok). With a hand-derived derivative, that derivative is what is
    audited: autodiff's own inaccuracies are reported as notes, not failures. ``scope``
    says what a pass covered (default: every element)."""
    n = labels.size
    count = lambda *names: int(sum(np.sum(labels == x) for x in names))  # noqa: E731
    failed = [p for p in probe_checks if not p.ok]
    hand_probes = [p for p in failed if p.what.startswith("hand-derived")]
    auto_probes = [p for p in failed if not p.what.startswith("hand-derived")]
    hand, shared = count(R.HAND_WRONG, R.NOT_SUBGRADIENT, R.ALL_DISAGREE), count(R.SHARED_WRONG)
    auto, unstable, kinks = count(R.AUTODIFF_WRONG), count(R.UNSTABLE), count(R.KINK)
    kink_note = f" ({kinks} kink{'s' if kinks != 1 else ''} classified)" if kinks else ""
    if has_analytic and (hand or hand_probes):
        where = f" at {hand + shared} of {n} elements" if hand + shared else \
            " along random probes"
        return (f"hand-derived {quantity} is wrong{where}: it differs from the oracle while "
                f"autodiff agrees"), "hand-derived", False
    if has_analytic and shared:
        return (f"hand-derived {quantity} is wrong at {shared} of {n} elements: it agrees with "
                f"autodiff but both differ from the oracle, beyond its error estimate (autodiff "
                f"uses the hand-derived rule through custom_vjp/custom_jvp, or both share the "
                f"mistake)"), "hand-derived", False
    if not has_analytic and (auto or auto_probes):
        what = f"at {auto} of {n} elements" if auto else \
            "; ".join(p.what for p in auto_probes)
        return (f"autodiff disagrees with the oracle {what}: the function is not "
                f"differentiable there or its derivative rule is wrong"), "autodiff", False
    if unstable:
        return (f"inconclusive at {unstable} of {n} elements: the oracle's estimate is too "
                f"uncertain there to judge (numerically unstable function or a "
                f"non-differentiable point the oracle cannot resolve)"), "unstable", False
    agree = "hand-derived, autodiff and oracle agree" if has_analytic else \
        "autodiff and oracle agree"
    scope = scope or f"at all {n} elements"
    verdict = f"{agree} {scope}{kink_note}" if not auto else \
        f"hand-derived {quantity} and oracle agree {scope}{kink_note}"
    if auto or auto_probes:
        verdict += (f"; note: autodiff is less accurate than the hand-derived {quantity}"
                    + (f" at {auto} elements" if auto else "")
                    + ("; " + "; ".join(f"{p.what} differ" for p in auto_probes)
                       if auto_probes else ""))
    return verdict, "none", True

