"""Bad input raises at trace time with the argument, its shape/dtype and what was expected."""
import jax
import jax.numpy as jnp
import pytest

import lossjax as lj

F = jnp.ones((4,))
Z = jnp.zeros((4, 3))
LABELS = jnp.asarray([0, 1, 2, 1])


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile",
                                  "poisson_nll", "binary_cross_entropy",
                                  "binary_cross_entropy_with_logits", "focal_loss", "hinge",
                                  "squared_hinge"])
def test_n_versus_n_by_1_is_not_broadcast(name):
    with pytest.raises(ValueError, match=r"has shape \(4, 1\) but `\w+` has shape \(4,\); "
                                         r"they must match exactly"):
        lj.get(name)(F, F[:, None])


def test_shape_errors_raise_at_trace_time_under_jit():
    with pytest.raises(ValueError, match="must match exactly"):
        jax.jit(lambda p: lj.mse(p, F[:, None]))(F)


@pytest.mark.parametrize("bad", [jnp.ones(4, jnp.int32), jnp.ones(4, bool)])
def test_integer_or_boolean_predictions(bad):
    with pytest.raises(TypeError, match=r"mse: `predictions` must be a floating-point array, "
                                        r"got (int32|bool)\[4\]"):
        lj.mse(bad, F)
    with pytest.raises(TypeError, match="cross_entropy: `logits` must be a floating-point"):
        lj.cross_entropy(bad[:, None] * jnp.ones((1, 3), bad.dtype), LABELS)


def test_float_labels_where_integers_are_needed():
    with pytest.raises(TypeError, match=r"`labels` are floating \(float\d+\[4\]\).*probability "
                                        r"targets.*For class indices pass an integer array"):
        lj.cross_entropy(Z, LABELS.astype(jnp.float32))
    with pytest.raises(TypeError, match=r"nll: `labels` must hold integer class indices, "
                                        r"got float32\[4\]"):
        lj.nll(Z, LABELS.astype(jnp.float32))
    with pytest.raises(TypeError, match="softmax_focal_loss: `labels` must hold integer"):
        lj.softmax_focal_loss(Z, LABELS.astype(jnp.float32))


def test_label_shape():
    with pytest.raises(ValueError, match=r"integer `labels` must have the shape of `logits` "
                                         r"without the class axis 1, i.e. \(4,\); got \(4, 1\)"):
        lj.cross_entropy(Z, LABELS[:, None])


@pytest.mark.parametrize("call, message", [
    (lambda: lj.huber(F, F, delta=-1.0), r"huber: `delta` must lie in \(0, inf\], got -1.0"),
    (lambda: lj.huber(F, F, delta=0.0), r"`delta` must lie in \(0, inf\]"),
    (lambda: lj.smooth_l1(F, F, beta=-0.5), r"smooth_l1: `beta` must lie in \[0, inf\]"),
    (lambda: lj.quantile(F, F, tau=0.0), r"quantile: `tau` must lie in \(0, 1\), got 0.0"),
    (lambda: lj.quantile(F, F, tau=1.0), r"`tau` must lie in \(0, 1\), got 1.0"),
    (lambda: lj.quantile(F, F, tau=1.5), r"`tau` must lie in \(0, 1\)"),
    (lambda: lj.focal_loss(F, F, gamma=-1.0), r"focal_loss: `gamma` must lie in \[0, inf\]"),
    (lambda: lj.focal_loss(F, F, alpha=1.5), r"focal_loss: `alpha` must lie in \[0, 1\]"),
    (lambda: lj.softmax_focal_loss(Z, LABELS, gamma=-2.0), r"`gamma` must lie in \[0, inf\]"),
    (lambda: lj.cross_entropy(Z, LABELS, label_smoothing=1.2),
     r"`label_smoothing` must lie in \[0, 1\]"),
    (lambda: lj.huber(F, F, delta=float("nan")), r"`delta` must lie in"),
])
def test_hyperparameter_ranges(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, error, message", [
    (lambda: lj.cross_entropy(Z, LABELS, weight=jnp.ones(4)), ValueError,
     r"`weight` must have shape \(3,\), one weight per class, got \(4,\)"),
    (lambda: lj.binary_cross_entropy_with_logits(Z, Z, pos_weight=jnp.ones(4)), ValueError,
     r"`pos_weight` has shape \(4,\), which does not broadcast to the logits' shape \(4, 3\)"),
    (lambda: lj.gaussian_nll(F, F, jnp.ones(3)), ValueError,
     r"gaussian_nll: `var` has shape \(3,\); expected the predictions' shape \(4,\)"),
    (lambda: lj.cross_entropy(Z, LABELS, axis=2), ValueError,
     r"`axis`=2 is out of range for `logits` of shape \(4, 3\)"),
    (lambda: lj.softmax_focal_loss(jnp.zeros((4, 1)), jnp.zeros(4, jnp.int32)), ValueError,
     "needs at least 2 classes"),
    (lambda: lj.hinge(F, jnp.ones(4, bool)), TypeError, r"`labels` must be numbers in"),
    (lambda: lj.mse(F, F, weights=jnp.ones((4, 2))), ValueError,
     r"`weights` has shape \(4, 2\), which does not broadcast"),
    (lambda: lj.mse(F, F, 3.0), TypeError, r"mse: too many positional arguments"),
    (lambda: lj.mse(F, F, delta=1.0), TypeError, r"mse: got an unexpected keyword"),
])
def test_argument_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_unknown_loss_name_suggests_close_matches():
    with pytest.raises(KeyError, match="no loss named 'hubber'.*Did you mean huber"):
        lj.get("hubber")
