"""Quick configurations of the lab's adversarial and optimizer experiments, asserting their claims."""
import numpy as np
import pytest
from _experiments import quick

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def _per_seed(interval):
    return np.asarray(interval["per_seed"])


def test_gan(tmp_path):
    r = quick("gan", tmp_path)
    m, seeds = r.metrics, r.metrics["seeds"]
    assert max(_per_seed(m["mean_D_on_fakes"])) < 0.1            # the discriminator is ahead
    sat = {k: _per_seed(v) for k, v in m["saturation_grad_norm"].items()}
    assert all(v.shape == (seeds,) for v in sat.values())
    # with mean reductions ∇W = ∇NS + ∇minimax (σ(f) + σ(−f) = 1), so by the triangle
    # inequality the Wasserstein and non-saturating norms differ by at most the minimax norm
    mm, ns, w = sat["minimax"], sat["non-saturating"], sat["Wasserstein (−D)"]
    assert np.all(np.abs(w - ns) <= mm + 1e-3 * ns)
    controlled, from_scratch = m["checks"][:2], m["checks"][2]
    for check in controlled:                  # saturation against that D, in every seed
        assert check["outcome"] == "supported" and check["seeds_agree"] == seeds, check
    assert r.verdict == ("holds" if from_scratch["outcome"] == "supported" else "depends")
    for run in m["runs"].values():
        covered = _per_seed(run["modes_covered"])
        assert covered.shape == (seeds,) and np.all((covered >= 0) & (covered <= 8))


def test_optimizers(tmp_path):
    r = quick("optimizers", tmp_path)
    m, seeds = r.metrics, r.metrics["seeds"]
    for check in m["checks"]:
        assert check["outcome"] == "supported" and check["seeds_agree"] == seeds, check
    assert r.verdict == "holds"
    # gradient descent on a quadratic diverges exactly for lr > 2/L: the first diverging rate
    # of the log grid lies within one grid step above 2/L, in every instance
    sweep = m["lr_sweep"]
    lrs, two_over_l = np.asarray(sweep["lrs"]), 2 / sweep["L"]
    diverged = np.asarray(sweep["diverged"])                     # (rates, instances)
    assert diverged[lrs > two_over_l].all() and not diverged[lrs < two_over_l].any()
    first = np.asarray(sweep["first_diverging_lr"], float)
    assert np.all((first > two_over_l) & (first <= two_over_l * lrs[1] / lrs[0]))
    # lr 0.038 on curvature 50: y ← (1 − 0.038·50) y = −0.9 y flips sign at every step
    assert np.all(np.asarray(m["momentum"]["gradient descent"]["steep_sign_flip_share"]) == 1)
    # θ ← θ(1 − 0.01 θ²) explodes from |θ| > √200 ≈ 14.1: every plain run goes non-finite
    assert np.all(np.asarray(m["plain_quartic_nonfinite_at"]) >= 0)
    assert m["clipped_quartic_finite"]
    # CG ends in 6 steps on a 6-dimensional quadratic in exact arithmetic; float32 needs more
    cg = np.asarray(m["steps_to_gap"]["quadratic (cond 100)"]["cg"])
    assert np.all((cg > 0) & (cg <= 12))
