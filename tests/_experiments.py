"""Running an experiment's quick configuration the way `lossjax lab` does (float32 JAX, the
suite's float64 switched off), with the checks every Result and every figure must pass."""
import json
import re
from pathlib import Path

import jax
import numpy as np
from matplotlib.colors import to_rgba

from lossjax.lab import VERDICTS, Config, Experiments, collect_figures

EXPERIMENTS = Experiments(Path(__file__).parents[1] / "experiments")
README = Path(__file__).parents[1] / "README.md"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def quick(name, tmp_path):
    with jax.enable_x64(False), collect_figures() as figures:
        result = EXPERIMENTS.module(name).run(Config(out=tmp_path))
    assert result.name == name and result.verdict in VERDICTS
    assert result.summary and result.key_number and result.claim
    json.dumps(result.to_dict())                                 # JSON-serialisable
    assert result.figures
    for file, caption in result.figures:
        assert caption and (tmp_path / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f for f, _ in result.figures) == sorted(f for f, _ in figures), \
        "every figure in the result is drawn through lossjax.lab.figure"
    for file, fig in figures:
        check_figure(f"{name}/{file}", fig)
    check_readme(result)
    return result


def readme_lab_rows():
    """The README's table of the lab's quick run: title -> (verdict, key number)."""
    text = README.read_text()
    start = text.index("<!-- lab table: quick -->")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ("experiment", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def check_readme(result):
    """The README's row for this experiment is this run's: the same verdict and key number,
    up to the run-to-run noise of a float32 training on another CPU (3 units in the last
    digit the README prints, or 5%); timings (a number followed by ×) are not compared."""
    rows = readme_lab_rows()
    assert result.title in rows, f"README's lab table has no row {result.title!r}"
    verdict, key = rows[result.title]
    assert verdict == result.verdict, (result.title, verdict, result.verdict)
    said, got = NUMBER.split(key), NUMBER.split(result.key_number)
    assert said == got, f"README: {key!r}\nreport: {result.key_number!r}"
    for m_readme, m_run, after in zip(NUMBER.finditer(key), NUMBER.finditer(result.key_number),
                                      said[1:]):
        if after.startswith("×"):
            continue
        text, a, b = m_readme.group(), float(m_readme.group()), float(m_run.group())
        digits = len(text.split("e")[0].split(".")[1]) if "." in text.split("e")[0] else 0
        unit = 10.0 ** (-digits) * (10.0 ** int(text.split("e")[1]) if "e" in text else 1.0)
        assert abs(a - b) <= max(3 * unit, 0.05 * abs(b)), \
            f"README: {key!r}\nreport: {result.key_number!r}"


def _colour(artist):
    for get in ("get_color", "get_facecolor", "get_edgecolor"):
        if hasattr(artist, get):
            c = np.asarray(to_rgba_array(getattr(artist, get)()))
            if c.size:
                return tuple(np.round(c[0], 3))
    return None


def to_rgba_array(c):
    try:
        return np.atleast_2d(to_rgba(c))
    except (ValueError, TypeError):
        return np.atleast_2d(np.asarray(c, float))


def _overlapping_lines_stay_visible(panel, ax):
    """Two labelled lines drawing (nearly) the same curve must differ in line style or marker:
    otherwise the one drawn last hides the other."""
    lines = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            xa, ya = (np.asarray(v, float) for v in a.get_data())
            xb, yb = (np.asarray(v, float) for v in b.get_data())
            if xa.shape != xb.shape or ya.shape != yb.shape or ya.size < 2:
                continue
            scale = max(np.nanmax(np.abs(ya)) if np.isfinite(ya).any() else 0.0, 1e-12)
            same = np.allclose(xa, xb, equal_nan=True) and np.nanmax(
                np.abs(ya - yb)) <= 0.01 * scale
            if same:
                assert (a.get_linestyle(), a.get_marker()) != (b.get_linestyle(),
                                                               b.get_marker()), (
                    f"{panel}: {a.get_label()!r} and {b.get_label()!r} draw the same curve "
                    f"with the same line style and marker: one hides the other")


def check_figure(where, fig):
    """What a reader needs from every figure of the lab:

    - a title (the figure's, or every panel's), and x and y labels on every panel that has
      axes;
    - a legend (or a colour bar) on every panel whose data are drawn in two or more colours,
      and no two labelled lines of a panel with the same colour, line style and marker
      (they could not be told apart);
    - panels of one figure that declare the same data source (lossjax.lab.source) drew it
      from the same array."""
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    colorbars = len(fig.axes) - len(axes)
    assert axes, f"{where}: no panel"
    sources = {}
    for k, ax in enumerate(axes):
        panel = f"{where} panel {k} ({ax.get_title()!r})"
        assert suptitle or ax.get_title(), f"{panel}: no title"
        if ax.axison:
            assert ax.get_xlabel() and ax.get_ylabel(), f"{panel}: an axis has no label"
        colours = set()
        for artist in list(ax.lines) + list(ax.collections) + list(ax.patches):
            if artist.get_label().startswith("_child") or not artist.get_visible():
                continue
            c = _colour(artist)
            if c is not None and c[3] > 0:
                colours.add(c[:3])
        coloured = len({c for c in colours if c not in {(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)}})
        has_legend = ax.get_legend() is not None or bool(fig.legends) or colorbars > 0
        if coloured >= 2:
            assert has_legend, f"{panel}: {coloured} colours but no legend or colour bar"
        styles = {}
        for line in ax.lines:
            label = line.get_label()
            if label.startswith("_"):
                continue
            style = (_colour(line), line.get_linestyle(), line.get_marker())
            assert style not in styles, (f"{panel}: lines {styles[style]!r} and {label!r} "
                                         f"share colour, line style and marker")
            styles[style] = label
        _overlapping_lines_stay_visible(panel, ax)
        for name, digest in getattr(ax, "_lossjax_sources", {}).items():
            sources.setdefault(name, set()).add(digest)
    for name, digests in sources.items():
        assert len(digests) == 1, f"{where}: panels claim to draw {name!r} from different data"
