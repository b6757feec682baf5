"""Specificity: auditing the whole catalogue at its generic and edge samples, in float32 and
float64, raises no false alarm (every loss's .grad and .hess_diag are correct). The float32
edge audits run in the lab's analytic-vs-autodiff experiment test
(tests/test_experiments_audit.py), so they are not repeated here."""
from lossjax import audit


def test_whole_catalogue_audits_clean():
    rows = audit.catalog(dtypes=("float64",)) + audit.catalog(dtypes=("float32",),
                                                              kinds=("generic",))
    failures = [f"{r.loss} {r.dtype} {r.kind}: {r.verdict}" for r in rows if not r.ok]
    assert not failures, "\n".join(failures)
    assert len(rows) == 3 * len({r.loss for r in rows})
    # the kinks the catalogue declares are found (mae, quantile and hinge edge samples)
    kinked = {r.loss for r in rows if r.kinks}
    assert {"mae", "quantile", "hinge", "huber", "squared_hinge"} <= kinked
