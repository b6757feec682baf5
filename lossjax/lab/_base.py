"""What an experiment receives (Config) and returns (Result), and the figure helper."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import math
from pathlib import Path

VERDICTS = ("holds", "does not hold", "depends")


@dataclasses.dataclass(frozen=True)
class Config:
    """``full``: the longer configuration; ``seed``: every random number derives from it;
    ``out``: the folder the experiment writes its figures into."""
    full: bool = False
    seed: int = 0
    out: Path = Path(".")

    def key(self):
        """What identifies a result (with the code version): not the output folder."""
        return {"full": self.full, "seed": self.seed}

    def pick(self, quick, full):
        return full if self.full else quick

    @property
    def seeds(self) -> int:
        """How many seeds a trained-model comparison runs: 5 quick, 20 full."""
        return self.pick(5, 20)

    def keys(self, n=None, tag=0):
        """``n`` (default ``seeds``) PRNG keys derived from ``seed`` and ``tag``: one per
        seed of a vmapped run."""
        import jax
        base = jax.random.fold_in(jax.random.PRNGKey(self.seed), tag)
        return jax.random.split(base, self.seeds if n is None else n)


@dataclasses.dataclass
class Result:
    """One experiment's outcome. ``verdict`` on the claim is one of VERDICTS; ``summary`` is
    one line with the numbers behind it; ``key_number`` the headline figure for the summary
    table; ``metrics`` anything JSON-serialisable; ``tables`` markdown shown in the report;
    ``figures`` PNG file names inside the experiment's folder, with captions."""
    name: str
    title: str
    claim: str
    verdict: str
    summary: str
    key_number: str
    metrics: dict
    tables: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)     # [(file, caption)]

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"{self.name}: verdict must be one of {VERDICTS}, "
                             f"got {self.verdict!r}.")
        self.metrics = _plain(self.metrics)
        self.figures = [list(f) for f in self.figures]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def _plain(x):
    """NumPy/JAX scalars and arrays as plain Python (JSON) values; NaN/inf as strings."""
    import numpy as np
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if hasattr(x, "to_dict") and callable(x.to_dict):      # stats.Interval, stats.Check
        return _plain(x.to_dict())
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        arr = np.asarray(x)
        return _plain(arr.tolist()) if arr.ndim else _plain(arr.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return str(x)


_COLLECTOR = contextvars.ContextVar("lossjax_lab_figures", default=None)


@contextlib.contextmanager
def collect_figures():
    """Within the block, every figure an experiment saves through :func:`figure` is also
    appended, as ``(file, matplotlib Figure)``, to the yielded list (the figure test reads
    titles, labels, legends and drawn data from them)."""
    figures = []
    token = _COLLECTOR.set(figures)
    try:
        yield figures
    finally:
        _COLLECTOR.reset(token)


def fingerprint(array) -> str:
    """A short digest of an array's values (and shape), for :func:`source`."""
    import numpy as np
    a = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def source(ax, name, array):
    """Declare that panel ``ax`` draws data derived from ``array`` under the name ``name``
    (e.g. "held-out image"): panels of one figure declaring the same name must have been
    drawn from the same array, which the figure test checks."""
    sources = getattr(ax, "_lossjax_sources", {})
    sources[name] = fingerprint(array)
    ax._lossjax_sources = sources


def figure(config: Config, file: str, title: str, xlabel: str, ylabel: str, *, ncols=1,
           size=(6.0, 4.0)):
    """A matplotlib figure with its title and axis labels set; returns (fig, axes) and a
    ``save()`` that writes ``config.out/file`` and returns ``(file, title)`` for
    ``Result.figures``. The figure is a ``matplotlib.figure.Figure`` with its own Agg canvas,
    not a pyplot figure: nothing global changes (a notebook's backend stays as it is) and
    experiments may run in threads."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(size[0] * ncols, size[1]), dpi=90)     # laid out as saved
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    fig.suptitle(title)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)

    def save(legend=True):
        if legend:
            for ax in axes:
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(config.out) / file, dpi=90)
        collected = _COLLECTOR.get()
        if collected is not None:
            collected.append((file, fig))
        return (file, title)
    return fig, (axes if ncols > 1 else axes[0]), save


def markdown_table(header, rows, fmt="{:.4g}"):
    """Rows of cells (numbers formatted with ``fmt``) as a markdown table."""
    def cell(v):
        if isinstance(v, float):
            return fmt.format(v)
        return str(v).replace("|", "\\|")
    header = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
