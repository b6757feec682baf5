"""The lab: a generic runner for experiments that each put one claim to the test.

An experiment is a module with ``run(config: Config) -> Result``; a folder of them (the
repository's ``experiments/``, or your own) is run with::

    lossjax lab [NAME ...] [--experiments DIR] [--full] [--out DIR] [--device gpu] [--force]
    from lossjax.lab import run_lab; run_lab(["robust_regression"], out="results")
    from lossjax.lab import run; run("gan", Config(out=tmp))        # one, in memory

Results are atomic and resumable, and ``REPORT.md`` is built from what is stored (see
:mod:`lossjax.lab._runner`); :func:`figure` and :func:`markdown_table` help an experiment
produce what the report shows, :func:`paired_best` times two functions fairly;
:mod:`lossjax.lab.stats` gives per-seed means with 95% intervals and verdicts decided on them
(``Config.seeds``: 5 quick, 20 full).
"""
from lossjax.lab import stats
from lossjax.lab._base import (
    VERDICTS, Config, Result, collect_figures, figure, fingerprint, markdown_table, source)
from lossjax.lab._runner import (
    DEFAULT_FOLDER, Experiments, LabError, library_version, load, run_lab)
from lossjax.lab._timing import analytic_speed, paired_best, run_times

__all__ = ["DEFAULT_FOLDER", "VERDICTS", "Config", "Experiments", "LabError", "Result",
           "analytic_speed", "collect_figures", "figure", "fingerprint", "library_version", "load",
           "markdown_table", "paired_best", "run", "run_lab", "run_times", "source", "stats"]


def run(name: str, config: Config | None = None, experiments=DEFAULT_FOLDER) -> Result:
    """Run one experiment of the folder ``experiments`` in memory (figures go to
    ``config.out``); nothing is stored."""
    folder = experiments if isinstance(experiments, Experiments) else Experiments(experiments)
    return folder.module(name).run(config or Config())
