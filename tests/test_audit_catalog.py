"""Specificity: auditing the whole catalogue at its generic and edge samples, in float32 and
float64, raises no false alarm (every loss's .grad and .hess_diag are correct). Here: float64,
generic and edge samples; the float32 edge audits (the harder float32 case: saturated logits,
exact 0/1 probabilities) run in the lab's analytic-vs-autodiff experiment test
(tests/test_experiments_audit.py), the float32 generic ones in `make lab --full` and
`lossjax audit`, to keep `make test` within its time budget."""
from lossjax import audit
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_whole_catalogue_audits_clean():
    rows = audit.catalog(dtypes=("float64",))
    failures = [f"{r.loss} {r.dtype} {r.kind}: {r.verdict}" for r in rows if not r.ok]
    assert not failures, "\n".join(failures)
    assert len(rows) == 2 * len({r.loss for r in rows})
    # the kinks the catalogue declares are found (mae, quantile and hinge edge samples)
    kinked = {r.loss for r in rows if r.kinks}
    assert {"mae", "quantile", "hinge", "huber", "squared_hinge"} <= kinked
