"""Quick configurations of the lab's training experiments, asserting their claims."""
from _experiments import quick
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


def test_metric_learning(tmp_path):
    r = quick("metric_learning", tmp_path)
    m = r.metrics
    emb = m["embeddings"]
    raw = emb.pop("raw inputs (16-d)")
    emb.pop("random linear map (untrained)")
    assert len(emb) == 8 and {k.split(" (")[0] for k in emb} >= {"ArcFace", "CosFace", "SupCon"}
    # the raw distances are dominated by 8 noise dimensions of std 3 (squared distance ~144
    # against ~2 between class centres): the nearest neighbour's class is close to chance, 0.1
    assert raw["recall@1"]["high"] < 0.3
    for name, row in emb.items():
        assert len(row["recall@1"]["per_seed"]) == m["seeds"] == 5, name
        # every loss's interval lies wholly above the raw inputs'
        assert row["recall@1"]["low"] > raw["recall@1"]["high"], name
        assert row["separation"]["low"] > raw["separation"]["high"], name
        # a random map puts half its squared weight on the noise dimensions; a learned one
        # ignores them
        assert m["nuisance_weight_share"][name]["high"] < 0.1, name
    assert [c["outcome"] for c in m["checks"]] == ["supported"] * 8 and r.verdict == "holds"


def test_segmentation(tmp_path):
    r = quick("segmentation", tmp_path)
    m = r.metrics
    for name, row in m["iou"].items():
        assert set(row) == {"0.02", "0.005"}, name
        for v in row.values():
            assert len(v["per_seed"]) == m["seeds"] == 5 and 0 <= v["low"] <= v["high"] <= 1
    # a disc of the requested area, clipped where it crosses the border
    for fg, share in m["true_foreground"].items():
        assert 0.7 * float(fg) < share < 1.3 * float(fg), fg
    checks = {c["what"]: c for c in m["checks"]}
    # Dice's IoU at 0.5% beats BCE's in the paired difference (same images and initial kernel)
    dice = checks["Dice beats BCE at 0.5% foreground (IoU)"]
    assert dice["outcome"] == "supported" and dice["difference"]["low"] > 0
    # BCE's mean over pixels is ruled by the background: with a prior of 1 in 200 the model's
    # probability rarely reaches 0.5, so it marks fewer pixels than the true foreground
    assert m["predicted_foreground"]["BCE"]["0.005"]["high"] < m["true_foreground"]["0.005"]


def test_label_noise(tmp_path):
    r = quick("label_noise", tmp_path)
    m = r.metrics
    final, fits = m["final_accuracy"], m["flipped_labels_predicted"]
    # every loss of a seed starts from the same parameters
    assert len({c["clean 0"][0] for c in m["curves"].values()}) == 1
    # the share of flipped labels is the rate (1000 draws per rate: 0.05 is over 3 s.d.)
    for condition, share in m["flipped_fraction"].items():
        assert abs(share - float(condition.split()[1])) < 0.05, condition
    # ten well-separated classes: every loss ends far above chance (0.1) on clean labels
    for name, row in final.items():
        assert row["clean 0"]["low"] > 0.5, name
    # CE's gradient never vanishes on a wrong label: the network ends up predicting the flipped
    # labels of its training set, and its clean test accuracy falls
    assert fits["CE"]["symmetric 0.4"]["low"] > 0.9
    assert final["CE"]["symmetric 0.4"]["high"] < final["CE"]["clean 0"]["low"]
    # MAE's and GCE's gradients carry a factor p_y (p_y^q), small where the network disagrees
    # with a label: they fit fewer of the flipped labels, and GCE ends above CE
    for name in ("MAE", "GCE (q=0.7)"):
        assert fits[name]["symmetric 0.4"]["high"] < fits["CE"]["symmetric 0.4"]["low"], name
    checks = {c["what"]: c for c in m["checks"]}
    assert checks["GCE beats CE at 40% symmetric noise (final accuracy)"]["outcome"] == "supported"
    # at initialisation (p ≈ uniform) MAE's gradient is 2/K = 0.2 times CE's: CE is ahead early
    early = next(c for w, c in checks.items() if w.startswith("CE is ahead of MAE"))
    assert early["seeds_agree"] >= early["seeds"] - 1
