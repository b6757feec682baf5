"""Quick configurations of more of the lab's experiments on the textbook claims, each
asserting its claim-level outcome."""
import numpy as np

from _experiments import quick
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_numerical_stability(tmp_path):
    r = quick("numerical_stability", tmp_path)
    assert r.metrics["stable_all_finite"] and r.metrics["naive_nonfinite_cases"] >= 6
    assert r.verdict == "holds"


def test_hamming(tmp_path):
    r = quick("hamming", tmp_path)
    m = r.metrics
    ham, soft = m["hamming"], m["soft_hamming"]
    # deterministic: the Hamming loss's gradient is 0, so no seed moves and the held-out
    # error is the initialisation's on every seed
    assert m["hamming_gradient_zero"] and ham["max_grad_norm"] == 0.0
    assert ham["parameter_change"] == [0.0] * m["seeds"]
    assert ham["test_hamming_error"]["per_seed"] == m["initial_test_error"]["per_seed"]
    # trained: soft_hamming's interval lies wholly below training on hamming's and below half
    # the initial error, with every seed agreeing
    assert len(soft["test_hamming_error"]["per_seed"]) == m["seeds"] >= 5
    assert soft["test_hamming_error"]["high"] < 0.5 * m["initial_test_error"]["low"]
    assert [(c["outcome"], c["seeds_agree"]) for c in m["checks"]] == [
        ("supported", m["seeds"])] * 2
    assert r.verdict == "holds"


def test_multitask(tmp_path):
    r = quick("multitask", tmp_path)
    m = r.metrics
    equal, unc = m["equal_weights"]["worse"], m["uncertainty"]["worse"]
    assert len(unc["per_seed"]) == len(equal["per_seed"]) == m["seeds"] >= 5
    # equal weights leave task A (a 10⁴× smaller loss) undertrained; uncertainty weighting
    # does not: on every seed and on intervals
    assert all(e > u for e, u in zip(equal["per_seed"], unc["per_seed"]))
    assert unc["high"] < equal["low"]
    assert [c["outcome"] for c in m["checks"]] == ["supported"] * 3 and r.verdict == "holds"
    # at its optimum σ_k² ∝ L_k: task B's targets are 100× larger, so σ_B² / σ_A² is ~10⁴
    # (times the ratio of the tasks' relative errors) and the implied w_B ~1e-4
    variances = m["learned_variances"]
    ratio = np.asarray(variances[1]["per_seed"]) / variances[0]["per_seed"]
    assert np.all((1e3 < ratio) & (ratio < 1e5))
    assert 1e-5 < m["implied_w_b"]["mean"] < 1e-3
