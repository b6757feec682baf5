"""lossjax.lab.stats: Student-t intervals over seeds, paired differences, verdicts decided on
the intervals. Expected values from the t table (t_{0.975, 4} = 2.776445,
t_{0.975, 19} = 2.093024) and arithmetic."""
import math

import numpy as np
import pytest

from lossjax.lab import stats


def test_interval_is_the_student_t_interval():
    i = stats.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert i.mean == 3.0 and i.n == 5 and i.level == 0.95
    assert i.low == pytest.approx(3.0 - half, rel=1e-6)
    assert i.high == pytest.approx(3.0 + half, rel=1e-6)
    assert i.to_dict()["per_seed"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    v = np.arange(20.0)
    j = stats.interval(v)
    assert j.high - j.mean == pytest.approx(2.093024 * v.std(ddof=1) / math.sqrt(20), rel=1e-6)
    assert stats.interval([2.0, 2.0, 2.0]).fmt("{:.1f}") == "2.0 [2.0, 2.0]"


def test_interval_rejects_what_is_not_per_seed_numbers():
    with pytest.raises(ValueError, match="at least 2"):
        stats.interval([1.0])
    with pytest.raises(ValueError, match="must be finite"):
        stats.interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="`level`"):
        stats.interval([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="pair up"):
        stats.difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_verdicts_are_decided_on_the_intervals():
    up = stats.claim("a beats b", stats.difference([3.0, 4.0, 5.0, 4.0, 5.0], [1.0] * 5))
    flat = stats.claim("c beats b", stats.difference([1.5, 0.5, 1.2, 0.8, 1.1], [1.0] * 5))
    down = stats.claim("d beats b", stats.difference([0.0, 0.1, 0.2, 0.1, 0.0], [1.0] * 5))
    assert (up.outcome, flat.outcome, down.outcome) == ("supported", "undecided",
                                                         "contradicted")
    assert (up.agree, flat.agree, down.agree) == (5, 3, 0)
    assert stats.decide([up])[0] == "holds"
    verdict, sentences = stats.decide([up, flat])
    assert verdict == "depends" and "interval includes 0" in sentences[1]
    assert "3/5 seeds agree" in sentences[1]
    assert stats.decide([up, flat, down])[0] == "does not hold"
    # the side of the claim: "less" turns the same difference around
    assert stats.claim("d is below b", down.diff, "less").outcome == "supported"
    assert "c beats b" in stats.robustness([up, flat]) and "3/5" in stats.robustness([up, flat])
    with pytest.raises(ValueError, match="no checks"):
        stats.decide([])


def test_results_serialise_intervals_with_their_seeds():
    from lossjax.lab import Result
    # two seeds: t_{0.975, 1} = 12.7, the interval 1.5 ± 6.35 includes 0
    c = stats.claim("a beats b", stats.difference([2.0, 3.0], [1.0, 1.0]))
    r = Result(name="x", title="X", claim="c", verdict="holds", summary="s", key_number="k",
               metrics={"acc": stats.interval([0.5, 0.7]), "checks": [c]})
    assert r.metrics["acc"]["per_seed"] == [0.5, 0.7]
    assert r.metrics["checks"][0]["outcome"] == "undecided"
    assert r.metrics["checks"][0]["difference"]["per_seed"] == [1.0, 2.0]


def test_geometric_interval_is_the_t_interval_of_log10_drawn_back():
    v = [1.0, 10.0, 100.0, 1000.0, 10000.0]                  # log10: 0..4, as above
    g = stats.geometric_interval(v)
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert g.mean == pytest.approx(100.0) and g.values == tuple(v)
    assert g.low == pytest.approx(10 ** (2 - half)) and g.high == pytest.approx(10 ** (2 + half))
    with pytest.raises(ValueError, match="must be > 0"):
        stats.geometric_interval([1.0, 0.0])
