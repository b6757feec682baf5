"""Specificity: auditing the whole catalogue at its generic and edge samples raises no false
alarm (every loss's .grad and .hess_diag are correct). Here: float64, generic and edge
samples, then the lab's analytic-vs-autodiff experiment, which audits the float32 edge
samples (the harder float32 case: saturated logits, exact 0/1 probabilities) — in the same
process, so that its float64 oracle kernels are the ones compiled for the float64 audits.
The float32 generic audits run in `make lab --full` and `lossjax audit`, to keep `make test`
within its time budget."""
import re

import pytest

import lossjax as lj
from _experiments import quick
from lossjax import audit

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_whole_catalogue_audits_clean_and_the_lab_experiment_agrees(tmp_path):
    rows = audit.catalog(dtypes=("float64",))
    failures = [f"{r.loss} {r.dtype} {r.kind}: {r.verdict}" for r in rows if not r.ok]
    assert not failures, "\n".join(failures)
    assert len(rows) == 2 * len({r.loss for r in rows}) == 2 * len(lj.catalog())
    # the kinks the catalogue declares are found (mae, quantile and hinge edge samples)
    kinked = {r.loss for r in rows if r.kinks}
    assert {"mae", "quantile", "hinge", "huber", "squared_hinge"} <= kinked
    # the table's kink column counts the gradient's kinks as its verdict does
    for line in audit.to_markdown(rows).splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        gradient, every = (int(v) for v in cells[5].split(" / "))
        said = re.search(r"\((\d+) kinks? classified\)", cells[6])
        assert gradient == (int(said.group(1)) if said else 0) <= every, line

    r = quick("analytic_vs_autodiff", tmp_path)
    assert r.metrics["failed"] == [] and r.metrics["audits"] == len(lj.catalog())
    assert set(r.metrics["time_ratio"]) >= {"huber", "cross_entropy", "dice", "mined_triplet"}
