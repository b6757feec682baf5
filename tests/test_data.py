"""lj.data: pure functions of a key and sizes, with the properties their docstrings promise."""
import jax
import numpy as np
import pytest

import lossjax as lj

K = jax.random.PRNGKey(0)
CASES = [
    (lj.data.linear_regression, (200, 3), {"outlier_fraction": 0.2}),
    (lj.data.imbalanced_binary, (330,), {"ratio": 10}),
    (lj.data.imbalanced_multiclass, (500, 2, 4), {"ratio": 100}),
    (lj.data.clustered_embeddings, (100, 4, 5), {"nuisance": 2}),
    (lj.data.segmentation_masks, (8, (16, 20)), {}),
    (lj.data.sequences, (10, 12, 5), {"min_length": 4}),
    (lj.data.gaussian_mixture_2d, (400,), {}),
]


@pytest.mark.parametrize("fn, args, kwargs", CASES, ids=[c[0].__name__ for c in CASES])
def test_pure_function_of_key_with_a_shared_example_axis(fn, args, kwargs):
    a, b = fn(K, *args, **kwargs), fn(K, *args, **kwargs)
    c = fn(jax.random.PRNGKey(1), *args, **kwargs)
    for name in a.data:
        np.testing.assert_array_equal(a.data[name], b.data[name])
        assert a.data[name].shape[0] == args[0]
    assert any(not np.array_equal(a.data[k], c.data[k]) for k in a.data)
    # typed keys work too
    fn(jax.random.key(0), *args, **kwargs)


def test_linear_regression_outliers():
    ds = lj.data.linear_regression(K, 500, 2, noise=0.1, outlier_fraction=0.2,
                                   outlier_scale=10.0)
    x, y, out = ds.data["x"], ds.data["y"], np.asarray(ds.data["outlier"])
    assert out.sum() == 100                                   # exactly round(0.2 · 500)
    residual = np.asarray(y - x @ ds.truth["weight"] - ds.truth["bias"])
    assert 0.08 < residual[~out].std() < 0.12                 # the stated noise
    assert residual[out].min() > 10.0 - 4 * 0.1               # shifted up by ≥ scale
    clean = lj.data.linear_regression(K, 500, 2)
    assert not np.asarray(clean.data["outlier"]).any()


def test_imbalance_ratios():
    ds = lj.data.imbalanced_binary(K, 1100, ratio=10)
    assert int(ds.data["y"].sum()) == 100 and ds.truth["positive_fraction"] == 100 / 1100
    ds = lj.data.imbalanced_binary(K, 101, ratio=100)
    assert int(ds.data["y"].sum()) == 1
    ds = lj.data.imbalanced_multiclass(K, 1000, 2, 3, ratio=100)
    sizes = np.bincount(np.asarray(ds.data["y"]), minlength=3)
    np.testing.assert_array_equal(sizes, ds.truth["class_sizes"])
    assert sizes.sum() == 1000 and sizes[0] / sizes[-1] == pytest.approx(100, rel=0.15)
    assert sizes[1] / sizes[2] == pytest.approx(10, rel=0.15)           # geometric


def test_clusters_sit_at_their_centres():
    ds = lj.data.clustered_embeddings(K, 1000, 6, 5, spread=0.1, nuisance=3)
    x, y = np.asarray(ds.data["x"]), np.asarray(ds.data["y"])
    assert x.shape == (1000, 9) and np.bincount(y).tolist() == [200] * 5
    np.testing.assert_allclose(np.linalg.norm(ds.truth["centers"], axis=1), 1.0, rtol=1e-6)
    dist = np.linalg.norm(x[:, :6] - np.asarray(ds.truth["centers"])[y], axis=1)
    assert dist.mean() == pytest.approx(0.1 * np.sqrt(6), rel=0.1)
    assert x[:, 6:].std() == pytest.approx(3.0, rel=0.1)


def test_segmentation_foreground_is_small_and_visible():
    ds = lj.data.segmentation_masks(K, 64, (32, 32), foreground=0.02, contrast=2.0, noise=0.5)
    mask, image = np.asarray(ds.data["mask"]), np.asarray(ds.data["image"])
    per_image = mask.mean(axis=(1, 2))
    assert np.all(per_image > 0) and 0.01 < per_image.mean() < 0.03
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert image[mask == 1].mean() == pytest.approx(2.0, abs=0.1)
    assert image[mask == 0].mean() == pytest.approx(0.0, abs=0.05)
    tiny = lj.data.segmentation_masks(K, 4, (8, 8), foreground=1e-4)    # still one pixel
    assert np.all(np.asarray(tiny.data["mask"]).sum(axis=(1, 2)) >= 1)


def test_sequences_follow_their_teacher():
    ds = lj.data.sequences(K, 20, 10, 4, num_classes=3, min_length=3)
    x, y = np.asarray(ds.data["x"]), np.asarray(ds.data["y"])
    where = np.asarray(ds.data["where"])
    teacher_labels = np.argmax(x @ np.asarray(ds.truth["teacher"]).T, axis=-1)
    np.testing.assert_array_equal(y[where], teacher_labels[where])
    assert np.all(y[~where] == -100)
    lengths = np.asarray(ds.data["lengths"])
    assert lengths.min() >= 3 and lengths.max() <= 10
    np.testing.assert_array_equal(where.sum(axis=1), lengths)


def test_gaussian_mixture_covers_every_mode():
    ds = lj.data.gaussian_mixture_2d(K, 2000, modes=8, radius=2.0, std=0.05)
    x, mode = np.asarray(ds.data["x"]), np.asarray(ds.data["mode"])
    assert np.bincount(mode, minlength=8).min() > 150
    np.testing.assert_allclose(np.linalg.norm(ds.truth["centers"], axis=1), 2.0, rtol=1e-6)
    assert np.linalg.norm(x - np.asarray(ds.truth["centers"])[mode], axis=1).max() < 6 * 0.05 * 2


@pytest.mark.parametrize("call, match", [
    (lambda: lj.data.linear_regression(K, 0), "`n` must be an int ≥ 1, got 0"),
    (lambda: lj.data.linear_regression(K, 10, outlier_fraction=1.0), "outlier_fraction"),
    (lambda: lj.data.linear_regression(0, 10), "`key` must be a PRNG key"),
    (lambda: lj.data.imbalanced_binary(K, 10, ratio=0.5), "`ratio` must lie in"),
    (lambda: lj.data.imbalanced_multiclass(K, 3, 2, 5), "`n` must be an int ≥ 5"),
    (lambda: lj.data.segmentation_masks(K, 2, (32,)), "`size` must be"),
    (lambda: lj.data.segmentation_masks(K, 2, foreground=0.0), "foreground"),
    (lambda: lj.data.sequences(K, 2, 5, min_length=6), "min_length"),
    (lambda: lj.data.gaussian_mixture_2d(K, 5, std="wide"), "`std` must be a number"),
])
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
