"""Diagnoses: the pattern behind a wrong derivative, stated with its evidence.

Given the audited values ``v`` (hand-derived, or autodiff when none), the oracle ``o`` and the
tolerance per element, each diagnosis holds only when the numbers prove it:

- a constant ratio v = c o at every element (c named; -1 is a sign flip, 2 or 1/2 a factor 2;
  c = N or 1/N where N is the size of an axis or of the whole argument: sum vs mean);
- an error confined to a region: every failing element has x < 0 (or x = 0, x > 0,
  |x| < 1, |x| > 1, the residual x - t of a same-shaped argument t below or above 0, or the
  oracle below or above 0) while every element outside that region passes;
- a shift along an axis (element i holds the oracle's i - 1: a misaligned time step), a
  permutation along an axis (the same values in other places), or a one-hot component
  displaced along an axis by the same offset in every row (a class index off by one);
- (Jacobians) a transposed Jacobian.
"""
from __future__ import annotations

import itertools

import numpy as np


def _fraction(c: float) -> str:
    """c as "300", "1/300" or "0.37"."""
    for v, text in ((c, "{:d}"), (1 / c if c else np.inf, "1/{:d}")):
        k = round(v) if np.isfinite(v) else 0
        if k >= 2 and abs(v - k) <= 1e-6 * k:
            return text.format(int(k))
    return f"{c:.6g}"


def _axis_sizes(shapes):
    """{N: description} for the sizes a reduction could have divided by: every axis, every
    product of axes of a leaf, and every leaf's size."""
    sizes = {}
    for leaf, shape in enumerate(shapes):
        shape = tuple(int(d) for d in shape)
        for k in range(1, len(shape) + 1):
            for axes in itertools.combinations(range(len(shape)), k):
                n = int(np.prod([shape[a] for a in axes]))
                if n >= 2:
                    what = (f"the size of axis {axes[0]}" if k == 1 else
                            f"the size of axes {axes}") + \
                           (f" of leaf {leaf}" if len(shapes) > 1 else "")
                    if k == len(shape) and len(shape) > 1:
                        what = "the number of elements" + \
                            (f" of leaf {leaf}" if len(shapes) > 1 else "")
                    sizes.setdefault(n, what)
    return sizes


def constant_ratio(v, o, tol, shapes):
    """A sentence when v = c o everywhere (c != 1) within tolerance, else None."""
    finite = np.isfinite(v) & np.isfinite(o)
    significant = finite & (np.abs(o) > 10 * tol)
    if significant.sum() < 2 or not finite.all():
        return None
    ratios = v[significant] / o[significant]
    c = float(np.median(ratios))
    if not np.isfinite(c) or c == 0 or abs(c - 1) <= 1e-6:
        return None
    if np.any(np.abs(v - c * o) > np.maximum(np.abs(c), 1) * tol):
        return None
    spread = float(np.max(np.abs(ratios - c)) / abs(c))
    evidence = (f"the audited value is {_fraction(c)} × the oracle at every element "
                f"(ratio spread {spread:.1g} over {int(significant.sum())} elements)")
    if abs(c + 1) <= 1e-6:
        return f"sign flip: {evidence}"
    if abs(c - 2) <= 1e-6 or abs(c - 0.5) <= 1e-6:
        return f"a factor 2: {evidence}"
    sizes = _axis_sizes(shapes)
    for n, what in sorted(sizes.items()):
        if abs(c - n) <= 1e-6 * n:
            return (f"sum vs mean: a missing 1/N with N = {n}, {what} — {evidence}")
        if abs(c * n - 1) <= 1e-6:
            return (f"sum vs mean: an extra 1/N with N = {n}, {what} — {evidence}")
    return f"constant ratio {_fraction(c)}: {evidence}"


def confined(failing, x, o, others):
    """A sentence when every failing element lies in one region (and every element outside it
    passes), else None. ``others``: [(name, array)] of same-shaped arguments held fixed, for
    residual regions x - t."""
    n = failing.size
    if not failing.any() or failing.all():
        return None
    regions = [("x = 0", x == 0), ("x < 0", x < 0), ("x > 0", x > 0),
               ("|x| < 1", np.abs(x) < 1), ("|x| > 1", np.abs(x) > 1)]
    for name, t in others:
        r = x - t
        regions += [(f"x - {name} < 0", r < 0), (f"x - {name} > 0", r > 0)]
    regions += [("the derivative < 0", o < 0), ("the derivative > 0", o > 0)]
    best = None
    for name, inside in regions:
        if np.all(inside[failing]) and not inside.all():
            if best is None or inside.sum() < best[1].sum():
                best = (name, inside)
    if best is None:
        return None
    name, inside = best
    return (f"the error is confined to {name}: all {int(failing.sum())} failing elements have "
            f"{name}, and all {int((~inside).sum())} elements outside it pass "
            f"({int(inside.sum())} of {n} elements are inside)")


def shifted(v, o, tol, shapes, offsets, paths):
    """A sentence when a leaf of v is the oracle shifted by one along an axis (ignoring the
    element that falls off), or the oracle's values permuted along an axis."""
    for leaf, shape in enumerate(shapes):
        lo, hi = offsets[leaf], offsets[leaf + 1]
        vl, ol, tl = (np.reshape(a[lo:hi], shape) for a in (v, o, tol))
        if vl.size < 3 or not (np.isfinite(vl).all() and np.isfinite(ol).all()):
            continue
        if np.all(np.abs(vl - ol) <= tl):
            continue
        where = f" of {paths[leaf]}" if paths[leaf] else ""
        for axis, size in enumerate(shape):
            if size < 3:
                continue
            for step in (1, -1):
                a = np.take(vl, range(1, size) if step == 1 else range(0, size - 1), axis)
                b = np.take(ol, range(0, size - 1) if step == 1 else range(1, size), axis)
                t = np.take(tl, range(1, size) if step == 1 else range(0, size - 1), axis)
                if np.all(np.abs(a - b) <= t) and np.any(np.abs(b) > t):
                    return (f"shifted by {step:+d} along axis {axis}{where}: element i holds "
                            f"the oracle's element i{'-' if step == 1 else '+'}1 (an off-by-one "
                            f"index, e.g. a class or time step)")
            vs, os_ = np.sort(vl, axis=axis), np.sort(ol, axis=axis)
            ts = np.max(tl, axis=axis, keepdims=True)
            if np.all(np.abs(vs - os_) <= ts):
                return (f"permuted along axis {axis}{where}: along that axis the audited values "
                        f"are the oracle's values in other places")
    return None


def displaced(v, o, tol, shapes, offsets, paths):
    """A sentence when, along one axis, each affected row's error moves a one-hot component
    from position i to i + s (the same s in every row): a class index off by s."""
    for leaf, shape in enumerate(shapes):
        if len(shape) < 2:
            continue
        lo, hi = offsets[leaf], offsets[leaf + 1]
        d = np.reshape(v[lo:hi] - o[lo:hi], shape)
        t = np.reshape(tol[lo:hi], shape)
        if not np.isfinite(d).all():
            continue
        for axis, size in enumerate(shape):
            if size < 3:
                continue
            rows_d = np.moveaxis(d, axis, -1).reshape(-1, size)
            rows_t = np.moveaxis(t, axis, -1).reshape(-1, size)
            bad = np.abs(rows_d) > rows_t
            affected = np.nonzero(bad.any(axis=1))[0]
            if affected.size == 0 or np.any(bad[affected].sum(axis=1) != 2):
                continue
            shifts = set()
            for row in affected:
                i, j = np.nonzero(bad[row])[0]
                if abs(rows_d[row, i] + rows_d[row, j]) > rows_t[row, i] + rows_t[row, j]:
                    break
                pos, neg = (i, j) if rows_d[row, i] > 0 else (j, i)
                shifts.add(int((neg - pos) % size))
            else:
                if len(shifts) == 1:
                    s = shifts.pop()
                    s = s if s <= size // 2 else s - size
                    where = f" of {paths[leaf]}" if paths[leaf] else ""
                    return (f"off by {s:+d} along axis {axis}{where}: in each of the "
                            f"{affected.size} affected rows the error (value − oracle) is +c "
                            f"at one index i and −c at index i{s:+d}, zero elsewhere — a "
                            f"one-hot term at the wrong index (e.g. a class index off by "
                            f"{abs(s)})")
    return None


def transposed(a, o, tol):
    """For a square Jacobian (m == n): a sentence when the hand-derived matrix is the
    oracle's transpose."""
    if a is None or a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        return None
    if np.all(np.abs(a - o) <= tol) or not np.all(np.abs(a - o.T) <= np.maximum(tol, tol.T)):
        return None
    return ("transposed Jacobian: the hand-derived matrix equals the oracle's transpose at "
            "every entry (rows and columns swapped: output i, input j read as input i, "
            "output j)")


def diagnose(v, o, tol, failing, flat, x, others=()):
    """Every diagnosis that holds (sentences), for a derivative that fails somewhere."""
    if not failing.any():
        return []
    out = []
    ratio = constant_ratio(v, o, tol, flat.shapes)
    if ratio:
        return [ratio]
    for sentence in (confined(failing, x, o, others),
                     shifted(v, o, tol, flat.shapes, flat.offsets, flat.paths)
                     or displaced(v, o, tol, flat.shapes, flat.offsets, flat.paths)):
        if sentence:
            out.append(sentence)
    return out
