"""Seeds, confidence intervals and verdicts decided on them.

An experiment trains every configuration over several seeds (vmapped: ``lj.train.fit_many``)
and reports each number as a mean with a 95% Student-t interval over the seeds::

    acc = interval(per_seed_accuracy)                 # Interval: mean, low, high, values
    d = difference(per_seed_a, per_seed_b)            # paired over seeds: a − b
    verdict, reasons = decide([claim("MAE beats CE at 40% noise", d, "greater")])

``decide`` gives "holds" only when every claimed difference has its whole interval on the
claimed side of 0, "does not hold" when some interval lies wholly on the contrary side, and
"depends" otherwise, naming the interval that straddles 0. Each check also counts the seeds
that agree with the claim, so a reader sees how robust it is ("5/5 seeds").
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

LEVEL = 0.95


@functools.lru_cache(maxsize=None)
def _t_quantile(p, df):
    from scipy.stats import t          # scipy is a dependency of jax
    return float(t.ppf(p, df))


@dataclasses.dataclass(frozen=True)
class Interval:
    """The mean of ``values`` (one per seed) with its two-sided ``level`` Student-t interval."""
    mean: float
    low: float
    high: float
    values: tuple
    level: float = LEVEL

    @property
    def n(self):
        return len(self.values)

    def excludes(self, x=0.0) -> bool:
        return self.low > x or self.high < x

    def fmt(self, spec="{:.3f}") -> str:
        """``mean [low, high]`` with ``spec`` for each number."""
        return f"{spec.format(self.mean)} [{spec.format(self.low)}, {spec.format(self.high)}]"

    def __str__(self):
        return self.fmt("{:.3g}")

    def to_dict(self):
        return {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level,
                "n": self.n, "per_seed": list(self.values)}


def interval(values, level=LEVEL) -> Interval:
    """Mean and Student-t interval of per-seed ``values`` (1-d, at least 2 of them, finite).

    With n seeds the half-width is t_{(1+level)/2, n-1} · s / √n; identical values give a
    zero-width interval."""
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"interval: `values` must be 1-d with at least 2 per-seed numbers, "
                         f"got shape {v.shape}.")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"interval: `values` must be finite, got {v.tolist()}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval: `level` must be in (0, 1), got {level}.")
    mean = float(v.mean())
    half = _t_quantile((1 + level) / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(mean, mean - half, mean + half, tuple(float(x) for x in v), level)


def geometric_interval(values, level=LEVEL) -> Interval:
    """For positive per-seed values spread over orders of magnitude (gradient norms, losses
    along a curve): the Student-t interval of log10 of the values, drawn back on the original
    scale, so ``mean`` is the geometric mean; ``values`` stay the per-seed values."""
    v = np.asarray(values, np.float64)
    if np.any(v <= 0):
        raise ValueError(f"geometric_interval: `values` must be > 0, got {v.tolist()}.")
    iv = interval(np.log10(v), level)
    return Interval(10 ** iv.mean, 10 ** iv.low, 10 ** iv.high, tuple(float(x) for x in v),
                    level)


def intervals(values, level=LEVEL):
    """``interval`` along the last axis of an array (seeds last): a nested list of Intervals
    with the leading shape."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        return interval(v, level)
    return [intervals(row, level) for row in v]


def difference(a, b, level=LEVEL) -> Interval:
    """The paired difference a − b over seeds (seed i of ``a`` against seed i of ``b``: the
    same data and initialisation), as an Interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"difference: per-seed values must pair up, got shapes {a.shape} and "
                         f"{b.shape}.")
    return interval(a - b, level)


@dataclasses.dataclass(frozen=True)
class Check:
    """One claimed inequality: ``what`` (a sentence), the Interval of a difference, and the
    side of 0 the claim puts it on ("greater": > 0, "less": < 0)."""
    what: str
    diff: Interval
    side: str = "greater"

    def __post_init__(self):
        if self.side not in ("greater", "less"):
            raise ValueError(f"Check: `side` must be 'greater' or 'less', got {self.side!r}.")

    @property
    def agree(self) -> int:
        """Seeds whose own difference is on the claimed side."""
        v = np.asarray(self.diff.values)
        return int(np.sum(v > 0) if self.side == "greater" else np.sum(v < 0))

    @property
    def outcome(self) -> str:
        d = self.diff
        if (d.low > 0) if self.side == "greater" else (d.high < 0):
            return "supported"
        if (d.high < 0) if self.side == "greater" else (d.low > 0):
            return "contradicted"
        return "undecided"

    def sentence(self, spec="{:.3f}") -> str:
        words = {"supported": "holds", "contradicted": "does not hold",
                 "undecided": "undecided: the interval includes 0"}[self.outcome]
        return (f"{self.what}: {words} (difference {self.diff.fmt(spec)}, "
                f"{self.agree}/{self.diff.n} seeds agree)")

    def to_dict(self):
        return {"what": self.what, "side": self.side, "outcome": self.outcome,
                "seeds_agree": self.agree, "seeds": self.diff.n, "difference": self.diff.to_dict()}


def claim(what, diff, side="greater") -> Check:
    return Check(what, diff, side)


def decide(checks) -> tuple[str, list[str]]:
    """A verdict from claimed differences: "holds" when every interval is on the claimed side
    of 0, "does not hold" when any is wholly on the contrary side, otherwise "depends"; and one
    sentence per check (what, outcome, interval, seeds agreeing)."""
    checks = list(checks)
    if not checks:
        raise ValueError("decide: no checks given.")
    outcomes = [c.outcome for c in checks]
    if "contradicted" in outcomes:
        verdict = "does not hold"
    elif all(o == "supported" for o in outcomes):
        verdict = "holds"
    else:
        verdict = "depends"
    return verdict, [c.sentence() for c in checks]


def robustness(checks) -> str:
    """'every check agrees in 5/5 seeds' or the weakest check's count."""
    checks = list(checks)
    weakest = min(checks, key=lambda c: c.agree / c.diff.n)
    if all(c.agree == c.diff.n for c in checks):
        return f"all {len(checks)} comparisons agree in every one of {checks[0].diff.n} seeds"
    return (f"the least robust comparison ({weakest.what}) agrees in {weakest.agree}/"
            f"{weakest.diff.n} seeds")


def errorbar(ax, xs, ivs, **kwargs):
    """Draw Intervals as means with asymmetric error bars (the interval) on ``ax``."""
    means = np.array([i.mean for i in ivs])
    err = np.array([[i.mean - i.low for i in ivs], [i.high - i.mean for i in ivs]])
    kwargs.setdefault("capsize", 3)
    return ax.errorbar(xs, means, yerr=err, **kwargs)


def band(ax, xs, ivs, label=None, **kwargs):
    """Draw Intervals as a mean line with a shaded interval band; returns the line."""
    means = np.array([i.mean for i in ivs])
    (line,) = ax.plot(xs, means, label=label, **kwargs)
    ax.fill_between(xs, [i.low for i in ivs], [i.high for i in ivs], color=line.get_color(),
                    alpha=0.2, linewidth=0)
    return line


def bar(ax, xs, ivs, width, **kwargs):
    """Bars at the means with the intervals as error bars."""
    means = np.array([i.mean for i in ivs])
    err = np.array([[i.mean - i.low for i in ivs], [i.high - i.mean for i in ivs]])
    kwargs.setdefault("error_kw", {"ecolor": "k", "color": "k"})
    return ax.bar(xs, means, width, yerr=err, capsize=2, **kwargs)
