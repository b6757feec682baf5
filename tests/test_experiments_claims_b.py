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
    assert m["hamming"]["max_grad_norm"] == 0.0 and m["hamming"]["parameter_change"] == 0.0
    assert m["soft_hamming"]["test_hamming_error"] < 0.5 * m["initial_test_error"]


def test_multitask(tmp_path):
    r = quick("multitask", tmp_path)
    m = r.metrics
    equal = m["fixed_errors"][int(np.argmin(np.abs(np.asarray(m["weights"]) - 0.5)))]
    assert max(m["uncertainty_errors"]) < max(equal)
