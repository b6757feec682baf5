"""Quick configurations of the lab's training experiments, asserting their claims."""
from _experiments import quick


def test_metric_learning(tmp_path):
    r = quick("metric_learning", tmp_path)
    raw = r.metrics["raw inputs (16-d)"]["recall@1"]
    for name in ("triplet, batch-hard", "triplet, semi-hard", "triplet, all", "contrastive",
                 "softmax + center loss"):
        assert r.metrics[name]["recall@1"] > raw + 0.2, name
        assert r.metrics[name]["separation"] > r.metrics["raw inputs (16-d)"]["separation"]


def test_segmentation(tmp_path):
    r = quick("segmentation", tmp_path)
    small = r.metrics["results"]["0.005"]
    assert small["Dice"]["iou"] > small["BCE"]["iou"]


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
