"""Quick configurations of the lab's adversarial and optimizer experiments, asserting their claims."""
from _experiments import quick
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_gan(tmp_path):
    r = quick("gan", tmp_path)
    sat = r.metrics["saturation_grad_norm"]
    assert sat["minimax"] < sat["non-saturating"] / 5
    assert r.metrics["mean_D_on_fakes"] < 0.05                   # the discriminator is ahead


def test_optimizers(tmp_path):
    r = quick("optimizers", tmp_path)
    assert all(r.metrics["claims"].values()), r.metrics["claims"]
    cg_steps = r.metrics["steps_to_gap"]["cg"][0]
    assert int(cg_steps) <= 12                                   # 6-dimensional quadratic
