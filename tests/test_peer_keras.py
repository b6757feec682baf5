"""Keras 3's losses as peers (mape, msle, poisson, label smoothing, binary focal cross-entropy,
categorical hinge, circle), and PyTorch's gaussian_nll gradient convention.

Keras is not installed: its losses are written here from Keras 3's definitions
(keras/src/losses/losses.py, keras/src/backend/jax/nn.py), epsilon clipping included
(keras.backend.epsilon() = 1e-7), in torch float64, so that torch's autograd gives the
gradient Keras's own autodiff would. Keras averages each sample over the last axis, then the
batch ("sum_over_batch_size"); lossjax returns the elements, so Keras's value is our mean and
Keras's per-sample values are our elements averaged over the last axis.

Inputs are random floats away from kinks (where torch's backward takes one side and lossjax
the midpoint), with the clipped regions (targets or probabilities beyond eps) included.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

import lossjax as lj
from lossjax._compile import fast_jit

EPS = 1e-7                                   # keras.backend.epsilon()
SHAPE = (3, 6)
RNG = np.random.default_rng(7)
mape, msle, poisson, binary_focal_cross_entropy, categorical_hinge, circle = (
    lj.get(n) for n in ("mape", "msle", "poisson", "binary_focal_cross_entropy",
                        "categorical_hinge", "circle"))


def ours(loss, args, kwargs, wrt=None):
    """Our value, .grad and jax.grad w.r.t. the first argument (or the one at index ``wrt``)
    for the mean and for "none" (the gradient of the sum of the elements: the "sum"
    reduction's), and the Hessian diagonal of the sum for elementwise losses."""
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    out = _program(loss, static, wrt)(tuple(jnp.asarray(a) for a in args), arrays)
    return jax.tree_util.tree_map(np.asarray, out)


@functools.lru_cache(maxsize=None)
def _program(loss, static, wrt):
    """One compiled program per (loss, fixed hyperparameters, wrt), shared by calls on
    arrays of the same shapes."""
    i = 0 if wrt is None else wrt
    name = None if wrt is None else list(loss.__signature__.parameters)[wrt]

    def run(args, arrays):
        kw = {**arrays, **dict(static)}
        out = {}
        for red in ("mean", "none"):
            def total(x):
                moved = list(args)
                moved[i] = x
                return jnp.sum(loss(*moved, reduction=red, **kw))
            out[red] = (loss(*args, reduction=red, **kw),
                        loss.grad(*args, reduction=red, wrt=name, **kw), jax.grad(total)(args[i]))
        if loss.elementwise and wrt is None:
            out["hess"] = loss.hess_diag(*args, reduction="sum", **kw)
        return out
    return fast_jit(run)


def torch_routes(per_sample, args, averaged=True, hess=False):
    """Keras's mean and sum of ``per_sample(*tensors)`` (one value per sample) and their
    gradients w.r.t. ``args[0]`` by torch's autograd; with the diagonal of the Hessian of the
    sum (elementwise losses). ``averaged``: the per-sample values are means over the last
    axis, so Keras's "sum" (of per-sample values) times that axis' size is our sum."""
    x = [torch.tensor(np.asarray(a, np.float64)) for a in args]
    x[0].requires_grad_(True)
    values = per_sample(*x)
    size = np.shape(args[0])[-1] if averaged else 1
    out = {"per_sample": values.detach().numpy()}
    for red, total in (("mean", values.mean()), ("sum", values.sum() * size)):
        g, = torch.autograd.grad(total, x[0], create_graph=hess, retain_graph=True)
        out[red] = (total.detach().numpy(), g.detach().numpy())
        if hess and red == "sum":
            out["hess"] = torch.autograd.grad(g.sum(), x[0])[0].numpy()
    return out


def assert_close(got, want, what, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


def assert_matches_keras(got, want, what, rtol=1e-10):
    """Our mean, its .grad and jax.grad against Keras's; our elements averaged over the last
    axis (per-example losses: as they are) against Keras's per-sample values; the sum of our
    elements and its gradients against Keras's "sum" (scaled); the Hessian diagonal."""
    elements, hand, auto = got["none"]
    averaged = elements.ndim > want["per_sample"].ndim
    per_sample = elements.mean(-1) if averaged else elements
    routes = {"mean": got["mean"], "sum": (elements.sum(), hand, auto)}
    for red, (value, hand, auto) in routes.items():
        scale = max(1.0, np.max(np.abs(want[red][1])))
        assert_close(value, want[red][0], f"{what}: {red} value", rtol)
        assert_close(hand, want[red][1], f"{what}: {red} .grad", rtol, 1e-12 * scale)
        assert_close(auto, want[red][1], f"{what}: {red} jax.grad", rtol, 1e-12 * scale)
    assert_close(per_sample, want["per_sample"], f"{what}: elements", rtol)
    if "hess" in want:
        assert_close(got["hess"], want["hess"], f"{what}: hess_diag", rtol,
                     1e-12 * max(1.0, np.max(np.abs(want["hess"]))))


# -- Keras 3's definitions, in torch float64 -------------------------------------------------

def keras_mape(y_pred, y_true, eps=EPS):
    return 100 * torch.mean(torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true),
                                                                     min=eps)), -1)


def keras_msle(y_pred, y_true, eps=EPS):
    first = torch.log(torch.clamp(y_pred, min=eps) + 1)
    second = torch.log(torch.clamp(y_true, min=eps) + 1)
    return torch.mean((first - second) ** 2, -1)


def keras_poisson(y_pred, y_true, eps=EPS):
    return torch.mean(y_pred - y_true * torch.log(y_pred + eps), -1)


def smooth(y_true, label_smoothing):
    return y_true * (1 - label_smoothing) + 0.5 * label_smoothing


def keras_bce_elements(y_pred, y_true, from_logits=False, eps=EPS):
    """keras.ops.binary_crossentropy (JAX backend): log-sigmoids, or probabilities clipped
    to [eps, 1 - eps]."""
    if from_logits:
        return -y_true * F.logsigmoid(y_pred) - (1 - y_true) * F.logsigmoid(-y_pred)
    p = torch.clamp(y_pred, eps, 1 - eps)
    return -(y_true * torch.log(p) + (1 - y_true) * torch.log(1 - p))


def keras_binary_crossentropy(y_pred, y_true, from_logits=False, label_smoothing=0.0):
    y_true = smooth(y_true, label_smoothing)
    return torch.mean(keras_bce_elements(y_pred, y_true, from_logits), -1)


def keras_binary_focal(y_pred, y_true, apply_class_balancing=False, alpha=0.25, gamma=2.0,
                       from_logits=False, label_smoothing=0.0, eps=EPS):
    y_true = smooth(y_true, label_smoothing)
    if from_logits:
        y_pred = torch.sigmoid(y_pred)
    bce = keras_bce_elements(y_pred, y_true, eps=eps)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    out = (1 - p_t) ** gamma * bce
    if apply_class_balancing:
        out = (y_true * alpha + (1 - y_true) * (1 - alpha)) * out
    return torch.mean(out, -1)


def keras_categorical_hinge(y_pred, y_true):
    pos = torch.sum(y_true * y_pred, -1)
    neg = torch.max((1 - y_true) * y_pred, -1).values
    return torch.clamp(neg - pos + 1, min=0)


def keras_circle(y_pred, y_true, gamma=80.0, margin=0.4, remove_diagonal=True, detach=False):
    """keras.losses.circle on L2-normalised rows, one value per anchor; anchors with no
    positive or no negative are left out (Keras gives them softplus(-inf) = 0, whose torch
    gradient is NaN): returns (values of the others, their indices)."""
    distances = torch.clamp(1 - y_pred @ y_pred.T, min=0)
    positive = y_true[:, None] == y_true[None, :]
    negative = ~positive
    if remove_diagonal:
        positive = positive & ~torch.eye(len(y_true), dtype=torch.bool)
    pos_weights = torch.clamp((margin + distances) * positive, min=0)
    neg_weights = torch.clamp((1 + margin - distances) * negative, min=0)
    if detach:           # the paper's reference implementation and pytorch-metric-learning
        pos_weights, neg_weights = pos_weights.detach(), neg_weights.detach()
    pos = -gamma * pos_weights * (margin - distances)
    neg = gamma * neg_weights * (1 - margin - distances)
    keep = torch.nonzero(positive.any(1) & negative.any(1))[:, 0]
    inf = torch.tensor(-np.inf, dtype=y_pred.dtype)
    p_loss = torch.logsumexp(torch.where(positive, pos, inf)[keep], 1)
    n_loss = torch.logsumexp(torch.where(negative, neg, inf)[keep], 1)
    z = p_loss + n_loss                 # softplus, exactly (torch's is linear beyond 20)
    return torch.logaddexp(z, torch.zeros_like(z)), keep.numpy()


# -- regression ------------------------------------------------------------------------------

def test_mape_msle_poisson_match_keras():
    shape = (4, 5)
    y = RNG.normal(size=shape) * 2
    y[0, :3] = [0.0, 5e-8, -3e-8]                       # below eps: divided by eps
    p = y + RNG.normal(size=shape)
    assert_matches_keras(ours(mape, (p, y), {"eps": np.asarray(EPS)}),
                         torch_routes(keras_mape, (p, y)), "mape")
    y[1, 0] = 4e-3
    assert_matches_keras(ours(mape, (p, y), {"eps": np.asarray(1e-2)}),
                         torch_routes(lambda a, b: keras_mape(a, b, 1e-2), (p, y)), "mape eps")

    p, y = RNG.uniform(0.1, 3, shape), RNG.uniform(0.1, 3, shape)
    p[0, :3], y[0, 2:4] = [-0.5, 0.0, 5e-8], [-1.0, 0.0]      # floored at eps
    assert_matches_keras(ours(msle, (p, y), {"eps": np.asarray(EPS)}),
                         torch_routes(keras_msle, (p, y), hess=True), "msle")
    assert_matches_keras(ours(msle, (p, y), {"eps": np.asarray(0.2)}),
                         torch_routes(lambda a, b: keras_msle(a, b, 0.2), (p, y), hess=True),
                         "msle eps")

    rates, counts = RNG.uniform(0.1, 4, shape), RNG.poisson(2.0, shape).astype(np.float64)
    rates[0, :3], counts[0, :3] = [0.0, 0.0, 1e-9], [0.0, 3.0, 2.0]   # zero rates: finite
    got = ours(poisson, (rates, counts), {})
    assert_matches_keras(got, torch_routes(keras_poisson, (rates, counts), hess=True),
                         "poisson")
    assert got["none"][1][0, 1] == 1 - 3.0 / EPS
    # PyTorch's poisson_nll_loss on rates, with Keras's eps; our poisson_nll likewise
    r = torch.tensor(rates, requires_grad=True)
    F.poisson_nll_loss(r, torch.tensor(counts), log_input=False, eps=EPS).backward()
    nll = fast_jit(lambda r, c: lj.poisson_nll(r, c, log_input=False, eps=EPS))(rates, counts)
    assert_close(got["mean"][0], nll, "poisson_nll on rates")
    assert_close(got["mean"][1], r.grad.numpy(), "poisson vs torch", atol=1e-9)


def test_gaussian_nll_gradient_is_pytorchs_straight_through_clamp():
    """torch clamps var under no_grad: below eps the gradient w.r.t. var is the unclamped
    formula's at the clamped value, as if the clamp were the identity (not the value's own
    derivative, 0). Ours, .grad(wrt="var") and jax.grad alike, for every reduction, a shared
    variance over the last axis, full=True and another eps."""
    shape = (3, 4)
    mean, target = RNG.normal(size=shape), RNG.normal(size=shape)
    var = RNG.uniform(0.2, 2.0, shape)
    var[0] = [0.0, 1e-9, 5e-7, 1e-6]                     # below and at eps = 1e-6
    shared = np.asarray([[0.0], [3e-3], [1.5]])
    for v, kwargs in ((var, {}), (shared, {"full": True, "eps": 1e-2})):
        for wrt in (0, 2):
            got = ours(lj.gaussian_nll, (mean, target, v), kwargs, wrt=wrt)
            elements, hand, auto = got["none"]
            got["sum"] = (elements.sum(), hand, auto)
            for red in ("mean", "sum", "none"):
                x = [torch.tensor(a, requires_grad=True) for a in (mean, target, v)]
                value = F.gaussian_nll_loss(x[0], x[1], x[2], reduction=red, **kwargs)
                value.sum().backward()
                what = f"gaussian_nll {kwargs} {red} w.r.t. {wrt}"
                assert_close(got[red][0], value.detach().numpy(), what)
                assert_close(got[red][1], x[wrt].grad.numpy(), what + " .grad")
                assert_close(got[red][2], x[wrt].grad.numpy(), what + " jax.grad")
            if wrt == 2:      # the variances at or below eps get a gradient; the value is flat
                assert np.all(hand[0] != 0)
    analytic_vjp = lj.gaussian_nll.with_analytic_vjp()
    g = fast_jit(jax.grad(lambda w: analytic_vjp(mean, target, w)))(jnp.asarray(var))
    x = torch.tensor(var, requires_grad=True)
    F.gaussian_nll_loss(torch.tensor(mean), torch.tensor(target), x).backward()
    assert_close(g, x.grad.numpy(), "with_analytic_vjp w.r.t. var")


# -- binary classification -----------------------------------------------------------------

def test_label_smoothing_matches_keras():
    """Values, gradients and Hessian diagonals with label smoothing (traced hyperparameters:
    one compiled program per loss serves every setting)."""
    probs = RNG.uniform(0.02, 0.98, SHAPE)
    logits = RNG.normal(size=SHAPE) * 3
    hard = (RNG.uniform(size=SHAPE) < 0.5).astype(np.float64)
    soft = RNG.uniform(size=SHAPE)
    for t, ls in ((hard, 0.2), (soft, 0.1)):
        assert_matches_keras(
            ours(lj.binary_cross_entropy, (probs, t), {"label_smoothing": np.asarray(ls)}),
            torch_routes(lambda a, b: keras_binary_crossentropy(a, b, False, ls), (probs, t),
                         hess=True), f"binary_cross_entropy ls={ls}")
        assert_matches_keras(
            ours(lj.binary_cross_entropy_with_logits, (logits, t),
                 {"label_smoothing": np.asarray(ls)}),
            torch_routes(lambda a, b: keras_binary_crossentropy(a, b, True, ls), (logits, t),
                         hess=True), f"binary_cross_entropy_with_logits ls={ls}")
        for gamma in (2.0, 0.5):
            assert_matches_keras(
                ours(lj.focal_loss, (logits, t), {"label_smoothing": np.asarray(ls),
                                                  "alpha": np.asarray(0.25),
                                                  "gamma": np.asarray(gamma)}),
                torch_routes(lambda a, b: keras_binary_focal(
                    a, b, True, 0.25, gamma, from_logits=True, label_smoothing=ls),
                    (logits, t), hess=True), f"focal_loss ls={ls} gamma={gamma}")
    # with pos_weight (PyTorch's, no Keras peer): smoothing is feeding smoothed targets
    pw = np.linspace(0.5, 3.0, SHAPE[-1])
    x = torch.tensor(logits, requires_grad=True)
    want = F.binary_cross_entropy_with_logits(x, torch.tensor(smooth(hard, 0.2)),
                                              pos_weight=torch.tensor(pw))
    want.backward()
    got = ours(lj.binary_cross_entropy_with_logits, (logits, hard),
               {"label_smoothing": np.asarray(0.2), "pos_weight": pw})
    assert_close(got["mean"][0], want.detach().numpy(), "pos_weight value")
    assert_close(got["mean"][1], x.grad.numpy(), "pos_weight .grad")
    assert_close(got["mean"][2], x.grad.numpy(), "pos_weight jax.grad")
    # saturated logits: Keras takes sigmoid(z) clipped to [eps, 1 - eps], lossjax the exact
    # value (optax's sigmoid_focal_loss on the smoothed targets); they agree inside the clip
    logits[0] = [30.0, -30.0, 40.0, -25.0, 2.0, -1.0]
    hard[0] = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    kwargs = {"label_smoothing": np.asarray(0.1), "alpha": np.asarray(0.25),
              "gamma": np.asarray(2.0)}
    exact = ours(lj.focal_loss, (logits, hard), kwargs)["none"][0]
    assert_close(exact, fast_jit(optax.losses.sigmoid_focal_loss)(
        logits, smooth(hard, 0.1), alpha=0.25), "focal_loss vs optax")
    clipped = keras_binary_focal(torch.tensor(logits)[..., None], torch.tensor(hard)[..., None],
                                 True, 0.25, 2.0, from_logits=True, label_smoothing=0.1)
    assert np.all(exact[0, :4] > clipped.numpy()[0, :4] + 1)       # Keras saturates
    assert_close(exact[1:], clipped.numpy()[1:], "inside the clip")


def test_binary_focal_cross_entropy_matches_keras():
    p = RNG.uniform(0.02, 0.98, SHAPE)
    t = (RNG.uniform(size=SHAPE) < 0.4).astype(np.float64)
    p[0] = [0.0, 1.0, 1e-9, 1 - 1e-9, 0.0, 1.0]             # beyond the clip, both sides
    t[0] = [1.0, 0.0, 1.0, 0.0, 0.5, 0.25]
    t[1, :2] = [0.3, 0.9]
    settings = [{"gamma": 2.0}, {"gamma": 0.0}, {"gamma": 0.5},
                {"gamma": 3.0, "alpha": 0.4, "label_smoothing": 0.1}]
    for balance in (False, True):
        for setting in settings:
            kwargs = {"apply_class_balancing": balance,
                      **{k: np.asarray(v) for k, v in setting.items()}}
            got = ours(binary_focal_cross_entropy, (p, t), kwargs)
            assert_matches_keras(
                got, torch_routes(lambda a, b: keras_binary_focal(
                    a, b, apply_class_balancing=balance, **setting), (p, t), hess=True),
                f"binary_focal_cross_entropy {setting} balanced={balance}")
            if setting == {"gamma": 0.0} and not balance:
                focal0 = got["none"][0]
    # gamma = 0 without balancing is Keras's binary_crossentropy (clipped probabilities);
    # ours (PyTorch's) agrees inside the clip, and is larger beyond it (log clamp at -100)
    keras = keras_bce_elements(torch.tensor(p), torch.tensor(t)).numpy()
    assert_close(focal0, keras, "gamma = 0 is Keras's bce")
    torch_style = ours(lj.binary_cross_entropy, (p, t),
                       {"label_smoothing": np.asarray(0.0)})["none"][0]
    assert_close(torch_style[1:], keras[1:], "inside the clip")
    assert_close(torch_style[0, :2], [100.0, 100.0], "PyTorch's clamp")
    assert_close(keras[0, :2], [-np.log(EPS)] * 2, "Keras's clip", rtol=1e-6)
    # a hard prediction on its hard target: the loss is 0, its minimum; the gradient there
    # is 0 for every gamma (Keras's autodiff: +-inf for gamma < 1)
    p[0], t[0] = [0.0, 1.0, 0.0, 1.0, 0.5, 0.5], [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    for gamma in (0.5, 1.0, 2.0):
        got = ours(binary_focal_cross_entropy, (p, t),
                   {"apply_class_balancing": False, "gamma": np.asarray(gamma)})
        for route in got["none"]:
            assert np.all(route[0, :4] == 0)
        assert np.all(np.isfinite(got["hess"]))


# -- multi-class -------------------------------------------------------------------------------

def test_categorical_hinge_matches_keras():
    scores = RNG.normal(size=(6, 4)) * 2
    labels = RNG.integers(0, 4, 6)
    scores[0] = [-0.5, -1.0, -2.0, -3.0]             # every other score negative: neg = 0
    labels[0] = 0
    one_hot = np.eye(4)[labels]
    soft = RNG.dirichlet(np.ones(4), 6)
    for targets in (one_hot, soft):
        assert_matches_keras(ours(categorical_hinge, (scores, targets), {}),
                             torch_routes(keras_categorical_hinge, (scores, targets),
                                          averaged=False),
                             "categorical_hinge")
    assert_close(categorical_hinge(scores, one_hot, reduction="none")[0], 1.5, "neg = 0")
    # integer labels are one-hot targets; an ignored one is left out of the mean; the class
    # axis can be anywhere
    ignored = labels.copy()
    ignored[1] = -100
    keep = np.arange(6) != 1
    want = keras_categorical_hinge(torch.tensor(scores[keep]), torch.tensor(one_hot[keep]))
    got = ours(categorical_hinge, (scores.T, ignored), {"axis": 0})
    assert_close(got["mean"][0], want.mean().numpy(), "integer labels, axis 0")
    x = torch.tensor(scores, requires_grad=True)
    keras_categorical_hinge(x, torch.tensor(one_hot * keep[:, None])).sum().backward()
    assert_close(got["none"][1].T, x.grad.numpy() * keep[:, None], "integer labels .grad")
    assert_close(got["none"][2].T, x.grad.numpy() * keep[:, None], "integer labels jax.grad")


# -- similarity ------------------------------------------------------------------------------

def test_circle_matches_keras():
    """On embeddings normalised first (what Keras expects, with a UnitNormalization layer in
    front): values per anchor, the mean, and the gradient through the normalisation; Keras's
    defaults, other hyperparameters, and the paper's detached weights."""
    e = RNG.normal(size=(8, 3))
    labels = np.asarray([0, 0, 1, 1, 2, 2, 0, 1])
    settings = [(80.0, 0.4, True, False), (16.0, 0.25, False, False), (80.0, 0.4, True, True)]
    for gamma, margin, remove_diagonal, detach in settings:
        got = ours(circle, (e, labels), {"gamma": np.asarray(gamma), "margin": np.asarray(margin),
                                         "remove_diagonal": remove_diagonal,
                                         "detach_weights": detach})
        x = torch.tensor(e, requires_grad=True)
        values, keep = keras_circle(F.normalize(x, dim=1), torch.tensor(labels), gamma, margin,
                                    remove_diagonal, detach)
        assert len(keep) == 8
        what = f"circle gamma={gamma} margin={margin} diagonal removed={remove_diagonal} " \
               f"detached={detach}"
        assert_close(got["none"][0], values.detach().numpy(), what + " elements")
        values.mean().backward()
        assert_close(got["mean"][0], values.mean().detach().numpy(), what + " mean")
        assert_close(got["mean"][1], x.grad.numpy(), what + " .grad", atol=1e-11)
        assert_close(got["mean"][2], x.grad.numpy(), what + " jax.grad", atol=1e-11)
    # unit rows: Keras's dot products are the cosines, no normalisation needed
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    values, _ = keras_circle(torch.tensor(unit), torch.tensor(labels))
    got = ours(circle, (unit, labels), {"gamma": np.asarray(80.0), "margin": np.asarray(0.4),
                                        "remove_diagonal": True, "detach_weights": False})
    assert_close(got["none"][0], values.numpy(), "unit rows")


def test_circle_anchors_without_a_positive_or_negative():
    """Keras gives them 0 and averages over the anchors whose loss is > 0; here they are
    masked: 0, no gradient, left out of the mean. A batch of one class has no valid anchor:
    mean 0, gradient 0."""
    e = RNG.normal(size=(6, 3))
    labels = np.asarray([0, 0, 1, 1, 2, 3])             # anchors 4 and 5: no positive
    got = ours(circle, (e, labels), {"gamma": np.asarray(80.0), "margin": np.asarray(0.4),
                                     "remove_diagonal": True, "detach_weights": False})
    x = torch.tensor(e, requires_grad=True)
    values, keep = keras_circle(F.normalize(x, dim=1), torch.tensor(labels))
    assert list(keep) == [0, 1, 2, 3]
    none = np.asarray(got["none"][0])
    assert np.all(none[4:] == 0) and np.all(none[:4] > 0)
    keras_mean = values.sum() / np.count_nonzero(none > 0)
    keras_mean.backward()
    assert_close(got["mean"][0], keras_mean.detach().numpy(), "mean over valid anchors")
    assert_close(got["mean"][1], x.grad.numpy(), ".grad", atol=1e-11)
    assert_close(got["mean"][2], x.grad.numpy(), "jax.grad", atol=1e-11)
    assert_close(got["mean"][0] * 4, none.sum(), "the mean counts the 4 valid anchors")
    one_class = ours(circle, (e, np.zeros(6, np.int64)),
                     {"gamma": np.asarray(80.0), "margin": np.asarray(0.4),
                      "remove_diagonal": True, "detach_weights": False})
    for red in ("mean", "none"):
        value, hand, auto = one_class[red]
        assert np.all(value == 0) and np.all(hand == 0) and np.all(auto == 0)
