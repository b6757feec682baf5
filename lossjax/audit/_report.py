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
AUTODIFF_INACCURATE = "autodiff inaccurate (rounding level)"
UNSTABLE = "unstable"
KINK = "kink"
SKIPPED = "not checked (input not finite)"
PASS = "pass"
FAILURES = (HAND_WRONG, NOT_SUBGRADIENT, ALL_DISAGREE, SHARED_WRONG)
NOT_FAILING = (PASS, KINK, SKIPPED, AUTODIFF_INACCURATE)
_AT_KINK = (KINK, NOT_SUBGRADIENT)


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
    part: str = "gradient"         # which derivative it belongs to ("Hessian diagonal", ...)

    @property
    def value(self) -> float:
        """The audited value: the hand-derived one when given, else autodiff's."""
        return self.analytic if self.analytic is not None else self.autodiff

    @property
    def _interval(self):
        """[lo, hi] of the one-sided derivatives at a kink (None elsewhere, or when a side is
        unbounded: a jump in the gradient makes the second derivative a Dirac delta)."""
        if self.classification not in _AT_KINK or self.left is None or self.right is None:
            return None
        lo, hi = min(self.left, self.right), max(self.left, self.right)
        return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None

    @property
    def compared(self) -> float:
        """The value this element's classification is about: autodiff's for the autodiff
        classes (a wrong custom rule), else the audited value."""
        if self.classification in (AUTODIFF_WRONG, AUTODIFF_INACCURATE):
            return self.autodiff
        return self.value

    @property
    def abs_error(self) -> float:
        """The distance of :attr:`compared` from the oracle; at a kink, of the audited value
        from the interval between the one-sided derivatives (0 inside it)."""
        interval = self._interval
        if interval is not None:
            lo, hi = interval
            return max(lo - self.value, self.value - hi, 0.0)
        if self.classification in _AT_KINK:
            return 0.0            # an unbounded side: every finite value is a valid choice
        return abs(self.compared - self.oracle)

    @property
    def rel_error(self) -> float:
        """``abs_error`` relative to the oracle (at a kink: to the larger one-sided value)."""
        interval = self._interval
        ref = max(abs(interval[0]), abs(interval[1])) if interval is not None else \
            abs(self.oracle)
        if self.abs_error == 0:
            return 0.0
        return self.abs_error / ref if ref > 0 and np.isfinite(ref) else float("inf")

    @property
    def failing(self) -> bool:
        return self.classification not in NOT_FAILING

    @property
    def score(self) -> float:
        """|error| / tolerance (inf for a non-finite audited value)."""
        if not np.isfinite(self.compared):
            return float("inf")
        return self.abs_error / max(self.tolerance, 1e-300)

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
    verdict: str                  # the headline: every failing part, with its evidence
    blame: str                    # "none" | "hand-derived" | "autodiff" | "unstable"
    ok: bool
    detection: str                # the sensitivity achieved, in words
    counts: dict
    worst: list                   # [Element], failing first, then by error / tolerance; at the
                                  # top level across every part (Element.part says which)
    kinks: list                   # [Element] classified as kinks
    probes: list                  # [ProbeCheck]
    sub_reports: list = dataclasses.field(default_factory=list)   # e.g. the Hessian audit
    rtol: float = 0.0             # the user's tolerances, added to the error model's
    atol: float = 0.0
    worst_relative: Optional[float] = None   # largest |value - oracle| / |oracle|, not at kinks
    diagnoses: list = dataclasses.field(default_factory=list)     # [str] patterns found
    notes: list = dataclasses.field(default_factory=list)         # [str] not failures
    parts: list = dataclasses.field(default_factory=list)         # [Part] at the top level
    _sweep: Any = None            # callable -> (steps, errors, label) for plot()

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"<AuditReport {self.function} {self.quantity}: {self.verdict}>"

    @property
    def failing_parts(self) -> list:
        """The parts (gradient, Hessian diagonal, HVP, forward mode, ...) that fail."""
        return [p for p in self.parts if not p.ok]

    # -- output -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "function": self.function, "quantity": self.quantity, "mode": self.mode,
            "size": self.size, "dtype": self.dtype, "oracle": self.oracle, "kappa": self.kappa,
            "rtol": self.rtol, "atol": self.atol,
            "verdict": self.verdict, "blame": self.blame, "ok": self.ok,
            "detection": self.detection, "counts": self.counts,
            "worst_relative": self.worst_relative, "diagnoses": list(self.diagnoses),
            "notes": list(self.notes),
            "parts": [dataclasses.asdict(p) for p in self.parts],
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

    def to_markdown(self, rows: int = 10, _table: bool = True) -> str:
        lines = [f"### Audit of the {self.quantity} of `{self.function}`", "",
                 f"**{'PASS' if self.ok else 'FAIL'}** — {self.verdict}", ""]
        if len(self.parts) > 1:
            lines += ["- parts: " + ", ".join(f"{p.part} {'ok' if p.ok else 'FAIL'}"
                                              for p in self.parts)]
        lines += [f"- inputs: {self.size} ({self.dtype}), mode: {self.mode}, oracle: {self.oracle}",
                  f"- tolerance model: {self.kappa:g} × eps({self.dtype}) × derivative scale "
                  f"+ measured sensitivity to one-ulp input changes + 3 × oracle error estimate "
                  f"(never scaled by the size)"
                  + (f" + {self.atol:g} + {self.rtol:g} × |oracle| (rtol/atol given)"
                     if self.rtol or self.atol else ""),
                  f"- sensitivity: {self.detection}",
                  "- counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        if self.worst_relative is not None:
            lines.append(f"- worst relative discrepancy from the oracle: "
                         f"{self.worst_relative:.3g}")
        for d in self.diagnoses:
            lines.append(f"- diagnosis: {d}")
        for n in self.notes:
            lines.append(f"- note: {n}")
        for p in self.probes:
            lines.append(f"- {p.what}: {'ok' if p.ok else 'DISAGREE'} "
                         f"(worst {p.max_discrepancy:.2g} × tolerance)"
                         f"{' — ' + p.detail if p.detail else ''}")
        shown = [e for e in self.worst if e.classification != PASS][:rows] or self.worst[:rows]
        parts = len({e.part for e in self.worst}) > 1
        if shown and _table:
            lines += ["", "| element |" + (" part |" if parts else "") + " class | analytic | "
                      "autodiff | oracle (± err) | abs err | rel err | tolerance |",
                      "|---|" + ("---|" if parts else "") + "---|---|---|---|---|---|---|"]
            for e in shown:
                a = "—" if e.analytic is None else f"{e.analytic:.10g}"
                oracle = f"{e.oracle:.10g} ± {e.oracle_error:.1g}"
                if e.classification in _AT_KINK:
                    oracle = _sides(e)
                lines.append(f"| `{e.where}` |" + (f" {e.part} |" if parts else "") +
                             f" {e.classification} | {a} | {e.autodiff:.10g} | {oracle} | "
                             f"{e.abs_error:.3g} | {e.rel_error:.3g} | {e.tolerance:.3g} |")
        if self.kinks:
            lines += ["", f"Kinks ({len(self.kinks)}; not failures when the chosen value lies "
                          f"between the one-sided derivatives):", "",
                      "| element | one-sided derivatives | analytic chose | autodiff chose |",
                      "|---|---|---|---|"]
            for e in self.kinks[:rows]:
                a = "—" if e.analytic is None else f"{e.analytic:.6g}"
                lines.append(f"| `{e.where}` | {_sides(e)} | {a} | {e.autodiff:.6g} |")
        for sub in self.sub_reports:
            lines += ["", sub.to_markdown(rows, _table=not parts)]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        return markdown_to_html(self.to_markdown())

    def plot(self, path=None):
        """Error / tolerance per element for each failing part (every part when all pass), and
        the central-difference error against the step at the worst element. Returns a
        matplotlib Figure (no pyplot, no change to matplotlib's global state: a notebook's
        next plot is unaffected); saves it when ``path`` is given."""
        from matplotlib.figure import Figure
        groups = {}
        for e in self.worst:
            groups.setdefault(e.part, []).append(e)
        failing = [p.part for p in self.failing_parts if p.part in groups]
        shown = failing or list(groups) or [self.quantity]
        panels = len(shown) + (self._sweep is not None)
        fig = Figure(figsize=(5.2 * panels, 4.4))
        axes = fig.subplots(1, panels, squeeze=False)[0]
        for ax, part in zip(axes, shown):
            elements = sorted(groups.get(part, []), key=lambda e: e.where)
            if elements:
                xs = np.arange(len(elements))
                ratio = [max(min(e.score, 1e300), 1e-300) for e in elements]
                bad = [e.failing for e in elements]
                ax.semilogy(xs, ratio, ".", color="0.5", label="passes")
                if any(bad):
                    ax.semilogy(xs[bad], np.asarray(ratio)[bad], "o", color="C3",
                                label=_short(elements[bad.index(True)].classification))
                ax.axhline(1.0, color="C0", lw=1, label="tolerance")
                ax.set_xlabel("element (ranked subset, in order)" if len(elements) < self.size
                              else "element")
                ax.set_ylabel("|error| / tolerance")
                ax.legend(fontsize=8)
            status = next((("FAIL" if not p.ok else "ok") for p in self.parts
                           if p.part == part), "ok" if self.ok else "FAIL")
            ax.set_title(_wrap(f"{self.function} — {part}: {status}"), fontsize=9)
        if self._sweep is not None:
            ax = axes[-1]
            steps, errors, label = self._sweep()
            ax.loglog(steps, np.maximum(errors, 1e-300), "o-")
            ax.set_xlabel("step h")
            ax.set_ylabel("|central difference - reference|")
            ax.set_title(_wrap(f"gradient: error vs step at {label}"), fontsize=9)
        fig.suptitle(_wrap(self.verdict, 40 * panels + 40), fontsize=9)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


@dataclasses.dataclass
class Part:
    """One audited part of a report: its verdict and who is blamed."""
    part: str
    ok: bool
    verdict: str
    blame: str


def _sides(e) -> str:
    """The one-sided derivatives at a kink, in words ("unbounded" for a Dirac delta)."""
    fmt = lambda v: "unbounded" if v is None or not np.isfinite(v) else f"{v:.6g}"  # noqa: E731
    return f"[{fmt(e.left)}, {fmt(e.right)}]"


def _short(classification: str) -> str:
    return classification if len(classification) <= 28 else classification[:26] + "…"


def _wrap(text: str, width: int = 56) -> str:
    import textwrap
    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:4] + (["…"] if len(lines) > 4 else []))


def markdown_to_html(text: str) -> str:
    """The markdown the reports write (headings, bold, code, lists, tables) as HTML, for
    notebooks that render ``_repr_html_``."""
    import html
    import re

    def inline(t):
        t = html.escape(t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    out, in_list, table = [], False, []

    def flush_table():
        if table:
            rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                    if not re.fullmatch(r"\|?[-| ]+\|?", r.strip())]
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) +
                       "</tr>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r)
                                         + "</tr>" for r in body) + "</table>")
            table.clear()
    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("### "):
            out.append(f"<h3>{inline(line[4:])}</h3>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush_table()
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


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
