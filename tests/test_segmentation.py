"""Dice, Tversky and Jaccard against NumPy formulas; empty masks; class weights; jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj

KEY = jax.random.PRNGKey(0)
LOGITS = jax.random.normal(KEY, (2, 5, 4, 3), jnp.float64)
LABELS = jax.random.randint(jax.random.PRNGKey(1), (2, 5, 4), 0, 3)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_overlap(p, t, kind, smooth=1.0, alpha=0.5, beta=0.5):
    axes = tuple(range(1, p.ndim - 1))
    i, ps, ts = (p * t).sum(axes), p.sum(axes), t.sum(axes)
    if kind == "dice":
        return 1 - (2 * i + smooth) / (ps + ts + smooth)
    if kind == "jaccard":
        return 1 - (i + smooth) / (ps + ts - i + smooth)
    fp, fn = (p * (1 - t)).sum(axes), ((1 - p) * t).sum(axes)
    return 1 - (i + smooth) / (i + alpha * fp + beta * fn + smooth)


@pytest.mark.parametrize("kind", ["dice", "tversky", "jaccard"])
def test_softmax_multiclass_matches_numpy(kind):
    p = np_softmax(np.asarray(LOGITS))
    t = np.eye(3)[np.asarray(LABELS)]
    got = lj.get(kind)(LOGITS, LABELS, activation="softmax", class_axis=-1, reduction="none")
    np.testing.assert_allclose(got, np_overlap(p, t, kind), rtol=1e-12)
    assert got.shape == (2, 3)


def test_tversky_weights_false_negatives():
    p = 1 / (1 + np.exp(-np.asarray(LOGITS)))
    t = np.eye(3)[np.asarray(LABELS)]
    got = lj.tversky(LOGITS, t, alpha=0.3, beta=0.7, activation="sigmoid", class_axis=-1,
                     reduction="none")
    np.testing.assert_allclose(got, np_overlap(p, t, "tversky", alpha=0.3, beta=0.7),
                               rtol=1e-12)
    np.testing.assert_allclose(lj.tversky(LOGITS, t, alpha=1.0, beta=1.0, activation="sigmoid",
                                          class_axis=-1),
                               lj.jaccard(LOGITS, t, activation="sigmoid", class_axis=-1),
                               rtol=1e-12)


def test_binary_masks_and_empty_cases():
    p = jnp.asarray([[0.0, 0.0, 0.0], [0.2, 0.7, 0.0]])
    t = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for name in ("dice", "tversky", "jaccard"):
        loss = lj.get(name)
        per = loss(p, t, reduction="none")
        assert per[0] == 0.0                         # empty prediction of an empty target
        per0 = loss(p, t, smooth=0.0, reduction="none")
        assert per0[0] == 0.0 and np.all(np.isfinite(np.asarray(loss.grad(p, t, smooth=0.0))))
        np.testing.assert_allclose(per[1], np_overlap(np.asarray(p)[1:, :, None],
                                                      np.asarray(t)[1:, :, None], name)[0, 0],
                                   rtol=1e-12)


def test_class_weights_are_element_weights():
    w = jnp.asarray([0.2, 1.0, 3.0])
    per = lj.dice(LOGITS, LABELS, activation="softmax", class_axis=-1, reduction="none")
    np.testing.assert_allclose(
        lj.dice(LOGITS, LABELS, activation="softmax", class_axis=-1, weights=w),
        float(jnp.sum(per * w) / jnp.sum(jnp.broadcast_to(w, per.shape))), rtol=1e-12)


def test_jittable_with_probabilities():
    p = jax.nn.softmax(LOGITS, axis=-1)
    t = jax.nn.one_hot(LABELS, 3, dtype=p.dtype)
    f = jax.jit(lambda a, b: lj.dice(a, b, class_axis=-1))
    np.testing.assert_allclose(f(p, t), lj.dice(p, t, class_axis=-1), rtol=1e-14)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation='softmax' needs the classes on the last"):
        lj.dice(LOGITS, LABELS, activation="softmax")
    with pytest.raises(TypeError, match="integer `targets`.*are class labels"):
        lj.dice(LOGITS, LABELS, class_axis=-1)
    with pytest.raises(ValueError, match="`activation` must be None, 'sigmoid' or 'softmax'"):
        lj.dice(LOGITS, LABELS, activation="relu", class_axis=-1)
    with pytest.raises(ValueError, match="`beta` must lie in"):
        lj.tversky(LOGITS, LABELS, activation="softmax", class_axis=-1, beta=-1.0)
