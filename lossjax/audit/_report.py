"""Audit reports: a verdict, who is wrong, where, by how much, and with what sensitivity."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import numpy as np

# Element classifications, from worst to best.
HAND_WRONG = "hand-derived wrong"
NOT_SUBGRADIENT = "kink: hand-derived value is not a subgradient"
ALL_DISAGREE = "all three disagree"
SHARED_WRONG = "hand-derived and autodiff agree, oracle differs"
AUTODIFF_WRONG = "autodiff wrong"
UNSTABLE = "unstable"
KINK = "kink"
SKIPPED = "not checked (input not finite)"
PASS = "pass"
FAILURES = (HAND_WRONG, NOT_SUBGRADIENT, ALL_DISAGREE, SHARED_WRONG)


@dataclasses.dataclass
class Element:
    """One element of a derivative, with every route's value."""
    path: str                     # pytree path of the leaf, e.g. "[0]['w']"
    index: tuple                  # index inside the leaf
    classification: str
    autodiff: float
    oracle: float
    oracle_error: float
    tolerance: float
    analytic: Optional[float] = None
    left: Optional[float] = None   # one-sided derivatives (kinks)
    right: Optional[float] = None
    output: Optional[tuple] = None  # output index (Jacobians)

    @property
    def abs_error(self) -> float:
        """The audited value's distance from the oracle (analytic if given, else autodiff)."""
        value = self.analytic if self.analytic is not None else self.autodiff
        return abs(value - self.oracle)

    @property
    def rel_error(self) -> float:
        return self.abs_error / abs(self.oracle) if self.oracle != 0 else float("inf") \
            if self.abs_error > 0 else 0.0

    @property
    def where(self) -> str:
        out = "" if not self.output else f" (output {self.output})"
        return f"{self.path}{list(self.index)}{out}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(abs_error=self.abs_error, rel_error=self.rel_error, where=self.where)
        return {k: _jsonable(v) for k, v in d.items()}


@dataclasses.dataclass
class ProbeCheck:
    """A directional comparison (forward mode, random-probe mode, Hessian-vector products)."""
    what: str
    max_discrepancy: float        # largest |difference| / tolerance over the probes (<= 1 passes)
    ok: bool
    detail: str = ""


@dataclasses.dataclass
class AuditReport:
    function: str
    quantity: str                 # "gradient", "Jacobian", "Hessian diagonal", ...
    mode: str                     # "exhaustive" | "random probes" | "sampled elements"
    size: int                     # number of inputs audited
    dtype: str                    # dtype of the audited inputs
    oracle: str                   # "complex step" | "Richardson central differences"
    kappa: float
    verdict: str
    blame: str                    # "none" | "hand-derived" | "autodiff" | "unstable"
    ok: bool
    detection: str                # the sensitivity achieved, in words
    counts: dict
    worst: list                   # [Element], worst first (normalised error)
    kinks: list                   # [Element] classified as kinks
    probes: list                  # [ProbeCheck]
    sub_reports: list = dataclasses.field(default_factory=list)   # e.g. the Hessian audit
    _sweep: Any = None            # callable -> (steps, errors) for plot()

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"<AuditReport {self.function} {self.quantity}: {self.verdict}>"

    # -- output -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "function": self.function, "quantity": self.quantity, "mode": self.mode,
            "size": self.size, "dtype": self.dtype, "oracle": self.oracle, "kappa": self.kappa,
            "verdict": self.verdict, "blame": self.blame, "ok": self.ok,
            "detection": self.detection, "counts": self.counts,
            "worst": [e.to_dict() for e in self.worst],
            "kinks": [e.to_dict() for e in self.kinks],
            "probes": [dataclasses.asdict(p) for p in self.probes],
            "sub_reports": [r.to_dict() for r in self.sub_reports],
        }

    def to_json(self, path=None, indent=2) -> str:
        text = json.dumps(_jsonable(self.to_dict()), indent=indent)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def to_markdown(self, rows: int = 10) -> str:
        lines = [f"### Audit of the {self.quantity} of `{self.function}`", "",
                 f"**{'PASS' if self.ok else 'FAIL'}** — {self.verdict}", "",
                 f"- inputs: {self.size} ({self.dtype}), mode: {self.mode}, oracle: {self.oracle}",
                 f"- tolerance model: {self.kappa:g} × eps({self.dtype}) × derivative scale "
                 f"+ measured sensitivity to one-ulp input changes + 3 × oracle error estimate "
                 f"(never scaled by the size)",
                 f"- sensitivity: {self.detection}",
                 "- counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        for p in self.probes:
            lines.append(f"- {p.what}: {'ok' if p.ok else 'DISAGREE'} "
                         f"(worst {p.max_discrepancy:.2g} × tolerance){' — ' + p.detail if p.detail else ''}")
        shown = [e for e in self.worst if e.classification != PASS][:rows] or self.worst[:rows]
        if shown:
            lines += ["", "| element | class | analytic | autodiff | oracle (± err) | abs err | rel err | tolerance |",
                      "|---|---|---|---|---|---|---|---|"]
            for e in shown:
                a = "—" if e.analytic is None else f"{e.analytic:.10g}"
                lines.append(f"| `{e.where}` | {e.classification} | {a} | {e.autodiff:.10g} | "
                             f"{e.oracle:.10g} ± {e.oracle_error:.1g} | {e.abs_error:.3g} | "
                             f"{e.rel_error:.3g} | {e.tolerance:.3g} |")
        if self.kinks:
            lines += ["", f"Kinks ({len(self.kinks)}; not failures when the chosen value lies "
                          f"between the one-sided derivatives):", "",
                      "| element | left | right | analytic chose | autodiff chose |", "|---|---|---|---|---|"]
            for e in self.kinks[:rows]:
                a = "—" if e.analytic is None else f"{e.analytic:.6g}"
                lines.append(f"| `{e.where}` | {e.left:.6g} | {e.right:.6g} | {a} | {e.autodiff:.6g} |")
        for sub in self.sub_reports:
            lines += ["", sub.to_markdown(rows)]
        return "\n".join(lines)

    def plot(self, path=None):
        """Error per element (left) and central-difference error vs step for the worst element
        (right). Returns the matplotlib figure; saves it when ``path`` is given."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        elements = sorted(self.worst, key=lambda e: e.where)
        if elements:
            xs = np.arange(len(elements))
            ax1.semilogy(xs, [max(e.abs_error, 1e-300) for e in elements], ".", label="|error|")
            ax1.semilogy(xs, [e.tolerance for e in elements], "-", label="tolerance")
            ax1.set_xlabel("element (ranked subset)" if len(elements) < self.size else "element")
            ax1.set_ylabel("absolute error vs oracle")
            ax1.legend()
        ax1.set_title(f"{self.function}: {self.verdict[:60]}")
        if self._sweep is not None:
            steps, errors, label = self._sweep()
            ax2.loglog(steps, np.maximum(errors, 1e-300), "o-")
            ax2.set_xlabel("step h")
            ax2.set_ylabel("|central difference - reference|")
            ax2.set_title(f"error vs step at {label}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else str(f)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v
