"""The gradient audit's two modes: exhaustive (an oracle per element, up to
``MAX_EXHAUSTIVE`` inputs) and random probes (the oracle along Gaussian directions, with
hand-derived vs autodiff still compared at every element and disagreements localised)."""
from __future__ import annotations

import math

import numpy as np

from lossjax._sampling import host_rng
from lossjax.audit import _oracle, _report as R
from lossjax.audit._diagnose import diagnose
from lossjax.audit._verdict import (Evidence, _classify, _counts, _elements, _hull_slack,
                                    _verdict, approximate, element_names, failing_mask,
                                    rounding_level, user_tolerance, worst_relative)

MAX_EXHAUSTIVE = 10_000
LOCALISE = 256          # probe mode: elements given a per-element oracle when analytic != autodiff
ORACLE_GOAL = 1e-9      # oracle accuracy sought, relative to the derivative's scale, before
                        # smaller steps or the complex step are tried (when the model is tighter)


def _magnitude(derivative, x):
    """sum |x_i df/dx_i|: the size of what f is computed from, to first order. When those
    terms cancel (f - r with large scores), rounding is relative to them, not to |f|."""
    with np.errstate(invalid="ignore"):
        terms = np.abs(derivative) * np.abs(x)
    return float(np.sum(terms[np.isfinite(terms)]))


def _z_for(probes, miss=0.01):
    """z with P(|N(0,1)| < z)^probes = miss: a discrepancy of norm >= tol/z is caught with
    probability >= 1 - miss by ``probes`` Gaussian probes."""
    target = miss ** (1.0 / probes)
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < target else (lo, mid)
    return lo


def _complex_where_needed(orc, oracle, index, o, oe, target, key, who):
    """Replace finite-difference estimates that missed ``target`` by complex-step ones
    (exact to rounding) where the function is complex-safe. Returns the oracle's name."""
    poor = np.ones(len(index), bool) if oracle == "complex" else \
        ~(oe <= target) | ~np.isfinite(o)
    if oracle == "richardson" or not poor.any():
        return "Richardson central differences"
    if not orc.detect_complex_safe(key):
        if oracle == "complex":
            raise ValueError(f"{who}: oracle='complex' but the function is not complex-safe "
                             f"(it rejects complex input or its complex step disagrees with "
                             f"finite differences); use oracle='auto'.")
        return "Richardson central differences (complex step not usable: not complex-safe)"
    o[poor] = orc.complex_step(index=np.asarray(index)[poor])[:, 0]
    oe[poor] = 4 * _oracle.EPS64 * np.abs(o[poor])
    if poor.all():
        return "complex step"
    return f"Richardson central differences; complex step at {int(poor.sum())} elements"


def _oracle_target(tol_model, r):
    scale = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
    return np.maximum(tol_model, ORACLE_GOAL * scale) / 3


def _exhaustive(flat, orc, a, r, tol_model, oracle, kappa, name, sensitivity, key, who,
                rtol=0.0, atol=0.0, custom=None, others=()):
    index = np.arange(flat.n)
    target = _oracle_target(tol_model, r)[:, None]
    est = orc.refined(index, target=target)
    o, oe = est.value[:, 0].copy(), est.error[:, 0].copy()
    method = _complex_where_needed(orc, oracle, index, o, oe, target[:, 0], key, who)
    scale_o = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    tol_base = kappa * flat.eps * (np.abs(o) + scale_o)
    model = tol_base + sensitivity
    tol_model = model + user_tolerance(o, rtol, atol)
    sides = (est.left[:, 0], est.right[:, 0], _hull_slack(est), est.side_error[:, 0])
    labels = _classify(a, r, o, oe, tol_model, *sides, tol_kink=tol_base,
                       rounding=None if a is None else rounding_level(flat.eps, o))
    # An infinite input (alpha = -inf) cannot be perturbed: its derivative is a limit.
    x = np.asarray(orc.x)
    labels[~np.isfinite(x)] = R.SKIPPED
    tol = tol_model + 3 * oe
    worst, kinks = _elements(flat, labels, a, r, o, oe, tol, sides[0], sides[1])
    chosen = a if a is not None else r
    failing = failing_mask(labels)
    evidence = Evidence(a, r, o, tol, element_names(flat), sides[0], sides[1], custom,
                        model + 3 * oe, diagnose(chosen, o, tol, failing, flat, x, others))
    verdict, blame, ok, notes = _verdict(labels, a is not None, "gradient", evidence=evidence)
    if ok:
        verdict = approximate(verdict, evidence, labels, rtol, atol)
    median_rel = float(np.median(tol / np.maximum(np.abs(o), 1e-300))) if flat.n else 0.0
    detection = (f"every element checked; an element is flagged when off by more than its "
                 f"tolerance (median {np.median(tol):.2g} absolute, {median_rel:.2g} relative "
                 f"to its own value)")
    report = R.AuditReport(name, "gradient", "exhaustive", flat.n, flat.dtype, method, kappa,
                           verdict, blame, ok, detection, _counts(labels), worst, kinks, [],
                           rtol=rtol, atol=atol, worst_relative=worst_relative(chosen, o, labels),
                           diagnoses=evidence.diagnoses, notes=notes)
    report._sweep = _sweeper(orc, worst, flat, o)
    return report


def _sweeper(orc, worst, flat, o):
    if not worst:
        return None
    e = worst[0]
    leaf = flat.paths.index(e.path)
    i = int(flat.offsets[leaf] + (np.ravel_multi_index(e.index, flat.shapes[leaf])
                                  if e.index else 0))

    def sweep():
        steps = np.logspace(-1, -13, 25) * max(1.0, abs(float(orc.x[i])))
        with _oracle.x64():
            estimates = orc.sweep(i, steps)[:, 0]
        return steps, np.abs(estimates - o[i]), e.where
    return sweep


def _probe_mode(flat, orc, a, r, oracle, kappa, name, probes, key, sensitivity, key_cs, who,
                rtol=0.0, atol=0.0, custom=None):
    v = host_rng(key).standard_normal((probes, flat.n))
    est = orc.finite_differences(vectors=v)
    o_v, oe_v = est.value[:, 0].copy(), est.error[:, 0].copy()
    vn = np.asarray(v)
    target = flat.eps * (np.abs(vn) @ np.abs(r))
    method = "Richardson central differences"
    if oracle == "complex" or (oracle == "auto" and np.any(~(oe_v <= target))):
        if orc.detect_complex_safe(key_cs):
            o_v = orc.complex_step(vectors=v)[:, 0]
            oe_v = 4 * _oracle.EPS64 * (np.abs(o_v) + np.abs(vn) @ np.abs(r))
            method = "complex step"
        elif oracle == "complex":
            raise ValueError(f"{who}: oracle='complex' but the function is not complex-safe; "
                             f"use oracle='auto'.")
    r_v = vn @ r
    tol_v = kappa * flat.eps * (np.abs(vn) @ np.abs(r) + np.abs(o_v)) + 3 * oe_v + \
        np.abs(vn) @ sensitivity + np.abs(vn) @ user_tolerance(r, rtol, atol)
    checks = [R.ProbeCheck("autodiff vs oracle along random probes",
                           float(np.max(np.abs(r_v - o_v) / tol_v)),
                           bool(np.all(np.abs(r_v - o_v) <= tol_v)), f"{probes} probes")]
    if a is not None:
        a_v = vn @ a
        checks.append(R.ProbeCheck("hand-derived vs oracle along random probes",
                                   float(np.max(np.abs(a_v - o_v) / tol_v)),
                                   bool(np.all(np.abs(a_v - o_v) <= tol_v)), f"{probes} probes"))
    # Elementwise: hand-derived vs autodiff everywhere (cheap), oracle where they differ.
    scale_r = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
    tol_model = kappa * flat.eps * (np.abs(r) + scale_r) + sensitivity + \
        user_tolerance(r, rtol, atol)
    labels = np.array([], dtype=object)
    worst, kinks, evidence = [], [], None
    if a is not None:
        gap = np.where(np.isfinite(a - r), np.abs(a - r) / (2 * tol_model + 1e-300), np.inf)
        suspicious = np.nonzero(gap > 1)[0]
        suspicious = suspicious[np.argsort(-gap[suspicious])][:LOCALISE]
        if suspicious.size:
            e = orc.refined(suspicious, target=np.broadcast_to(
                tol_model[:, None] / 3, (flat.n, 1)))
            o, oe = e.value[:, 0].copy(), e.error[:, 0].copy()
            tm = tol_model[suspicious]
            _complex_where_needed(orc, oracle, suspicious, o, oe, tm / 3, key_cs, who)
            labels = _classify(a[suspicious], r[suspicious], o, oe, tm, e.left[:, 0],
                               e.right[:, 0], _hull_slack(e), e.side_error[:, 0],
                               tol_kink=tm - sensitivity[suspicious],
                               rounding=rounding_level(flat.eps, o))
            worst, kinks = _elements(flat, labels, a[suspicious], r[suspicious], o, oe,
                                     tm + 3 * oe, e.left[:, 0], e.right[:, 0], index=suspicious)
            evidence = Evidence(a[suspicious], r[suspicious], o, tm + 3 * oe,
                                element_names(flat, suspicious), e.left[:, 0], e.right[:, 0], custom)
    scope = f"along {probes} random probes" + \
        (" and elementwise (hand-derived vs autodiff)" if a is not None else "")
    verdict, blame, ok, notes = _verdict(labels, a is not None, "gradient", checks, scope=scope,
                                         evidence=evidence, total=flat.n)
    z = _z_for(probes)
    caught = float(np.median(tol_v)) / z          # the discrepancy norm caught at 99%
    gnorm = float(np.linalg.norm(r))
    detection = (f"{probes} Gaussian probes catch an autodiff/oracle discrepancy vector of "
                 f"norm >= {caught:.2g} ({caught / max(gnorm, 1e-300):.2g} "
                 f"of the gradient's norm) with probability >= 99%"
                 + ("; hand-derived vs autodiff compared at every element (tolerance median "
                    f"{np.median(2 * tol_model):.2g}), the oracle localising up to {LOCALISE} "
                    f"disagreeing elements" if a is not None else ""))
    counts = {"probes": probes, **(_counts(labels) if labels.size else {})}
    rel = float(np.max(np.abs(vn @ (a if a is not None else r) - o_v) /
                       np.maximum(np.abs(o_v), 1e-300)))
    return R.AuditReport(name, "gradient", "random probes", flat.n, flat.dtype, method, kappa,
                         verdict, blame, ok, detection, counts, worst, kinks, checks,
                         rtol=rtol, atol=atol, worst_relative=rel, notes=notes)

