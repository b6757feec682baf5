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

import collections
import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from lossjax.audit import _report as R

KAPPA = 16.0
KEEP = 50               # ranked elements kept in a report


def _classify(a, r, o, oe, tol_model, left=None, right=None, hull_slack=None, side_err=None,
              tol_kink=None, rounding=None):
    """Element classifications (object array) for flat arrays; ``a`` may be None.

    ``tol_kink`` (default ``tol_model``) is the tolerance for calling the one-sided
    derivatives different; it must not include the measured ulp-sensitivity, which is itself
    large at a kink (a one-ulp move flips the side). ``rounding`` (with ``a``): where autodiff
    misses the oracle by less than this while the hand-derived value agrees, the gap is
    rounding (a note), not a wrong rule."""
    tol = tol_model + 3 * oe
    labels = np.full(r.shape, R.PASS, dtype=object)
    finite_o = np.isfinite(o)
    ro_ok = np.abs(r - o) <= tol
    if a is not None:
        ao_ok = np.abs(a - o) <= tol
        ar_ok = np.abs(a - r) <= 2 * tol_model
        labels[ro_ok & ~ao_ok] = R.HAND_WRONG
        labels[~ro_ok & ao_ok] = R.AUTODIFF_WRONG
        if rounding is not None:
            labels[~ro_ok & ao_ok & (np.abs(r - o) <= rounding)] = R.AUTODIFF_INACCURATE
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


def rounding_level(eps, o):
    """What rounding can explain of an autodiff/oracle gap: half the digits of the
    derivative's scale, sqrt(eps) × (|o_i| + max |o|) (as for forward vs reverse mode). A
    wrong derivative rule misses by far more (a percent); saturated intermediates cost
    autodiff a few digits, not half of them."""
    scale = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    return np.sqrt(eps) * (np.abs(o) + scale)


def user_tolerance(o, rtol, atol):
    """The user's allowance for a deliberate approximation: atol + rtol × |oracle|."""
    return atol + rtol * np.abs(np.where(np.isfinite(o), o, 0.0))


def _hull_slack(est):
    """Allowance around the one-sided derivatives at a kink: their error estimates plus the
    curvature of each smooth side over one step (the central second difference is spurious
    across a kink, the one-sided ones are not)."""
    curvature = np.maximum(np.abs(est.second_left), np.abs(est.second_right))
    step = est.step if est.step.ndim == 2 else est.step[:, None]
    out = 4 * est.side_error + step * curvature
    return out[:, 0] if out.shape[1] == 1 and est.value.shape[1] == 1 else out


def _elements(flat, labels, a, r, o, oe, tol, left=None, right=None, index=None, outputs=None,
              part="gradient"):
    """Element records, failing first then worst first (by error / tolerance), and the
    kinks."""
    index = np.arange(r.size) if index is None else np.asarray(index)
    chosen = compared(labels, a, r)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(np.isfinite(chosen), np.abs(chosen - o) / np.maximum(tol, 1e-300), np.inf)
    score = np.where(np.isnan(score), np.inf, score)
    failing = failing_mask(labels)
    order = np.lexsort((-score, ~failing))

    def record(k):
        path, idx = flat.locate(index[k])
        return R.Element(
            path=path, index=idx, classification=str(labels[k]),
            autodiff=float(r[k]), oracle=float(o[k]), oracle_error=float(oe[k]),
            tolerance=float(tol[k]), analytic=None if a is None else float(a[k]),
            left=None if left is None else float(left[k]),
            right=None if right is None else float(right[k]),
            output=None if outputs is None else tuple(outputs[k]), part=part)

    worst = [record(k) for k in order[:KEEP]]
    kinks = [record(k) for k in np.nonzero(labels == R.KINK)[0][:1000]]
    return worst, kinks


def element_names(flat, index=None):
    """``where(k)``: element k's name, e.g. "['w'][1, 2]" (``index`` maps k to the flat
    position when only some elements were judged)."""
    def where(k):
        path, idx = flat.locate(k if index is None else index[k])
        return f"{path}{list(idx)}"
    return where


def compared(labels, a, r):
    """Per element, the value its classification is about: autodiff's for the autodiff
    classes, else the audited value (hand-derived when given)."""
    if a is None:
        return r
    autodiff = np.asarray((labels == R.AUTODIFF_WRONG) | (labels == R.AUTODIFF_INACCURATE),
                          bool)
    return np.where(autodiff, r, a)


def failing_mask(labels) -> np.ndarray:
    """True where a classification is a failure (one vectorised comparison: most pass)."""
    mask = np.asarray(labels != R.PASS, bool)
    for i in np.nonzero(mask)[0]:
        mask[i] = labels[i] not in R.NOT_FAILING
    return mask


def _counts(labels):
    names = [R.PASS, R.KINK, R.SKIPPED, R.HAND_WRONG, R.NOT_SUBGRADIENT, R.ALL_DISAGREE,
             R.SHARED_WRONG, R.AUTODIFF_WRONG, R.AUTODIFF_INACCURATE, R.UNSTABLE]
    tally = collections.Counter(labels.tolist())
    return {n: int(tally[n]) for n in names if n == R.PASS or tally[n]}


def worst_relative(chosen, o, labels):
    """max |chosen - o| / |o| over the elements that are not kinks and whose oracle is at
    least 1e-6 of the largest (relative error is meaningless where the derivative is 0)."""
    scale = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    keep = np.isfinite(o) & np.isfinite(chosen) & (np.abs(o) >= 1e-6 * scale) & (scale > 0) & \
        ~np.asarray((labels == R.KINK) | (labels == R.NOT_SUBGRADIENT) | (labels == R.SKIPPED),
                    bool)
    if not keep.any():
        return None
    return float(np.max(np.abs(chosen[keep] - o[keep]) / np.abs(o[keep])))


@dataclasses.dataclass
class Evidence:
    """The numbers a verdict's sentences quote: per element, the hand-derived value (or
    None), autodiff, the oracle, the tolerance and the one-sided derivatives; ``where(k)``
    names element k; ``custom``: whether fn contains a custom derivative rule (None:
    unknown); ``model_tol``: the error model's tolerance alone (without rtol/atol)."""
    a: Optional[np.ndarray]
    r: np.ndarray
    o: np.ndarray
    tol: np.ndarray
    where: Callable
    left: Optional[np.ndarray] = None
    right: Optional[np.ndarray] = None
    custom: Any = None                # bool, None (unknown) or a function giving one
    model_tol: Optional[np.ndarray] = None
    diagnoses: list = dataclasses.field(default_factory=list)

    def example(self, labels, *classes) -> str:
        """The worst element of ``classes`` with its values, e.g. "[3]: hand 6, autodiff 3,
        oracle 3"."""
        mask = np.isin(labels, classes)
        chosen = compared(labels, self.a, self.r)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(mask, np.abs(chosen - self.o) / np.maximum(self.tol, 1e-300), -1)
        score = np.where(np.isnan(score), np.inf, score)
        k = int(np.argmax(score))
        parts = [] if self.a is None else [f"hand {self.a[k]:.6g}"]
        parts.append(f"autodiff {self.r[k]:.6g}")
        if labels[k] in (R.KINK, R.NOT_SUBGRADIENT) and self.left is not None:
            parts.append(f"one-sided {self.left[k]:.6g} and {self.right[k]:.6g}")
        else:
            parts.append(f"oracle {self.o[k]:.6g}")
        return f"{self.where(k)}: " + ", ".join(parts)

    def times_tolerance(self, labels, *classes) -> float:
        mask = np.isin(labels, classes)
        return float(np.max(np.abs(self.r[mask] - self.o[mask]) / np.maximum(
            self.tol[mask], 1e-300), initial=0.0))


def _verdict(labels, has_analytic, quantity, probe_checks=(), scope=None, evidence=None,
             total=None):
    """(verdict, blame, ok, notes). With a hand-derived derivative, that derivative is what is
    audited, but a custom derivative rule in fn that autodiff (and so training) runs through
    must be right too: autodiff missing the oracle beyond rounding fails. ``scope`` says
    what a pass covered (default: every element); ``evidence`` (an :class:`Evidence`) lets
    the sentences quote an element's numbers."""
    n = labels.size
    # probe mode judges only the elements it localised: say so, with the input's size
    elements = f"{n} elements" if total is None or total == n else \
        f"{n} localised elements (of {total})"
    tally = collections.Counter(labels.tolist())
    count = lambda *names: int(sum(tally[x] for x in names))  # noqa: E731
    ex = (lambda *c: f" (e.g. {evidence.example(labels, *c)})") if evidence is not None \
        else (lambda *c: "")
    failed = [p for p in probe_checks if not p.ok]
    hand_probes = [p for p in failed if p.what.startswith("hand-derived")]
    auto_probes = [p for p in failed if not p.what.startswith("hand-derived")]
    wrong, outside, all3 = count(R.HAND_WRONG), count(R.NOT_SUBGRADIENT), count(R.ALL_DISAGREE)
    shared = count(R.SHARED_WRONG)
    auto, inaccurate = count(R.AUTODIFF_WRONG), count(R.AUTODIFF_INACCURATE)
    unstable, kinks = count(R.UNSTABLE), count(R.KINK)
    kink_note = f" ({kinks} kink{'s' if kinks != 1 else ''} classified)" if kinks else ""
    diagnosis = ("; " + "; ".join(evidence.diagnoses)) if evidence is not None and \
        evidence.diagnoses else ""
    notes = []
    if inaccurate:
        size = "" if evidence is None else \
            f"worst {evidence.times_tolerance(labels, R.AUTODIFF_INACCURATE):.3g} × tolerance; "
        notes.append(f"autodiff is less accurate than the hand-derived {quantity} at "
                     f"{inaccurate} of {elements} ({size}within sqrt(eps) of the derivative's "
                     f"scale: rounding, not a wrong rule)")
    if has_analytic and (wrong or outside or all3 or hand_probes):
        pieces = []
        if wrong:
            pieces.append(f"at {wrong} of {elements} it differs from the oracle while "
                          f"autodiff agrees{ex(R.HAND_WRONG)}")
        if outside:
            pieces.append(f"at {outside} kink{'s' if outside != 1 else ''} it lies outside "
                          f"the one-sided derivatives{ex(R.NOT_SUBGRADIENT)}")
        if all3:
            pieces.append(f"at {all3} of {elements} it, autodiff and the oracle all "
                          f"differ{ex(R.ALL_DISAGREE)}")
        if hand_probes:
            pieces.append("along random probes it differs from the oracle")
        return (f"hand-derived {quantity} is wrong: " + "; ".join(pieces) + diagnosis,
                "hand-derived", False, notes)
    if has_analytic and shared:
        return (f"hand-derived {quantity} is wrong at {shared} of {elements}: it agrees with "
                f"autodiff but both differ from the oracle, beyond its error estimate (autodiff "
                f"uses the hand-derived rule through custom_vjp/custom_jvp, or both share the "
                f"mistake){ex(R.SHARED_WRONG)}{diagnosis}"), "hand-derived", False, notes
    if auto or auto_probes:
        what = f"at {auto} of {elements}{ex(R.AUTODIFF_WRONG)}" if auto else \
            "; ".join(p.what for p in auto_probes)
        custom = None if evidence is None else evidence.custom
        custom = custom() if callable(custom) else custom
        if custom:
            head = (f"autodiff: a custom derivative rule in fn is wrong: autodiff of fn "
                    f"differs from the oracle {what}")
        elif custom is False:
            head = (f"autodiff of fn differs from the oracle {what} (fn has no custom_vjp/"
                    f"custom_jvp: a non-differentiable point or numerically unstable autodiff)")
        else:
            head = (f"autodiff disagrees with the oracle {what}: the function is not "
                    f"differentiable there or its derivative rule is wrong")
        if has_analytic:
            head += (f"; the hand-derived {quantity} agrees with the oracle, but jax.grad of "
                     f"fn (what training uses) runs through autodiff")
        return head + diagnosis, "autodiff", False, notes
    if unstable:
        return (f"inconclusive at {unstable} of {elements}: the oracle's estimate is too "
                f"uncertain there to judge (numerically unstable function or a "
                f"non-differentiable point the oracle cannot resolve)"), "unstable", False, notes
    agree = "hand-derived, autodiff and oracle agree" if has_analytic else \
        "autodiff and oracle agree"
    scope = scope or f"at all {n} elements"
    verdict = f"{agree} {scope}{kink_note}" if not inaccurate else \
        f"hand-derived {quantity} and oracle agree {scope}{kink_note}"
    return verdict, "none", True, notes


def approximate(verdict, evidence, labels, rtol, atol):
    """A passing verdict that needed the user's rtol/atol says so, with the worst relative
    error: "approximately right (within rtol=1e-08): worst relative error 1.5e-09"."""
    if evidence is None or evidence.model_tol is None or not (rtol or atol):
        return verdict
    chosen = evidence.a if evidence.a is not None else evidence.r
    beyond = (np.abs(chosen - evidence.o) > evidence.model_tol) & (labels == R.PASS)
    if not beyond.any():
        return verdict
    rel = worst_relative(chosen, evidence.o, labels)
    given = ", ".join(f"{k}={v:g}" for k, v in (("rtol", rtol), ("atol", atol)) if v)
    return (f"approximately right (within {given} at {int(beyond.sum())} elements beyond the "
            f"error model): worst relative error {rel:.2g}; " + verdict)


def combine(report, parts):
    """The top-level verdict over every part: fails when any part fails and names each
    failing part; ``report.worst`` ranks failing elements of every part first."""
    report.parts = parts
    failing = [p for p in parts if not p.ok]
    if failing:
        passing = [p.part for p in parts if p.ok]
        report.ok = False
        report.blame = failing[0].blame
        report.verdict = "; AND ".join(
            p.verdict if p.part == report.quantity else f"{p.part}: {p.verdict}"
            for p in failing) + \
            (f" ({', '.join(passing)} pass{'es' if len(passing) == 1 else ''})"
             if passing else "")
        if len(failing) > 1:
            report.verdict = f"{len(failing)} parts fail — " + report.verdict
    own = getattr(report, "_own_worst", None)
    if own is None:                       # the first combine: report.worst is its own part's
        own = report._own_worst = list(report.worst)
    elements = list(own)
    for sub in report.sub_reports:
        for e in sub.worst:
            if e.part == "gradient" and sub.quantity != "gradient":
                e.part = sub.quantity     # a sub-audit renamed after it ran (w.r.t. another)
        elements += sub.worst
    elements.sort(key=lambda e: (not e.failing, -e.score))
    report.worst = elements[:KEEP * (1 + len(report.sub_reports))]
    return report
