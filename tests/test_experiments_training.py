"""Quick configurations of the lab's training experiments, asserting their claims."""
from _experiments import quick
import pytest

pytestmark = pytest.mark.slow      # `make test-fast` leaves it out


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
