"""The lab's analytic-vs-autodiff experiment: its audit (float32, edge samples) is clean.
The rest of the catalogue audit runs in test_audit_catalog; timings are reported, not tested."""
import lossjax as lj
from _experiments import quick
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_analytic_vs_autodiff(tmp_path):
    r = quick("analytic_vs_autodiff", tmp_path)
    assert r.metrics["failed"] == [] and r.metrics["audits"] == len(lj.catalog())
    assert set(r.metrics["time_ratio"]) >= {"huber", "cross_entropy", "dice", "mined_triplet"}
