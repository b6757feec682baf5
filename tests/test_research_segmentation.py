"""Focal Tversky, generalised Dice, Lovász-Softmax, Lovász hinge, generalized and symmetric
cross-entropy against their peers: optax's multiclass_generalized_dice_loss (values and
jax.grad), float64 PyTorch re-implementations of the reference code (bermanmaxim/LovaszSoftmax,
the GCE and SCE authors' losses; gradients by backward), Keras's GCE formula and the papers'
formulas in NumPy float64. Each: values under each reduction where the peer has them, and our
.grad and jax.grad against the peer's gradient, for the default and a non-default setting."""
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from jax.experimental import checkify

import lossjax as lj
from conftest import compiled

KEY = jax.random.PRNGKey(0)
FOCAL_TVERSKY = lj.get("focal_tversky")
GENERALIZED_DICE = lj.get("multiclass_generalized_dice")
REDUCTIONS = ("mean", "sum", "none")


def ours(loss, args, kwargs, settings):
    """For each hyperparameter setting: values under each reduction, .grad and jax.grad of
    the mean, all in one compiled program."""
    def run(*a, **k):
        out = []
        for extra in settings:
            kw = {**k, **extra}
            row = {r: loss(*a, reduction=r, **kw) for r in REDUCTIONS}
            row["grad"] = loss.grad(*a, **kw)
            row["auto"] = jax.grad(lambda q: loss(q, *a[1:], **kw))(a[0])
            out.append(row)
        return out
    return compiled(run, *args, **kwargs)


def torch_route(fn, x):
    """fn's value at x (float64) and its gradient by backward."""
    t = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    value = fn(t)
    value.backward()
    return value.detach().numpy(), t.grad.numpy()


def assert_same(got, want, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


def assert_gradients(row, want, rtol=1e-10, atol=1e-12):
    for route in ("grad", "auto"):
        assert_same(row[route], want, rtol, atol)


def host_rng(seed):
    """Test data drawn on the host (jax.random would compile a program per shape)."""
    return np.random.default_rng(seed)


def np_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# -- focal Tversky (Abraham & Khan 2019) ------------------------------------------------------

def focal_tversky_formula(p, t, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0):
    """The paper's index (its alpha, on false negatives, is our beta) and exponent 1 /
    gamma_paper = gamma; NumPy or torch arrays (N, H, W, C)."""
    tp = (p * t).sum((1, 2))
    fn = ((1 - p) * t).sum((1, 2))
    fp = (p * (1 - t)).sum((1, 2))
    ti = (tp + smooth) / (tp + beta * fn + alpha * fp + smooth)
    return (1 - ti) ** gamma


def test_focal_tversky_matches_the_papers_formula_and_torch():
    rng = host_rng(1)
    logits = jnp.asarray(rng.standard_normal((2, 5, 4, 3)))
    labels = jnp.asarray(rng.integers(0, 3, (2, 5, 4)))
    settings = [{}, {"alpha": 0.5, "beta": 0.25, "gamma": 2.0, "smooth": 0.5}]
    rows = ours(FOCAL_TVERSKY, (logits, labels), {"activation": "softmax", "class_axis": -1},
                settings)
    t = np.eye(3)[np.asarray(labels)]
    for row, extra in zip(rows, settings):
        per = focal_tversky_formula(np_softmax(np.asarray(logits)), t, **extra)
        assert row["none"].shape == (2, 3)
        assert_same(row["none"], per)
        assert_same(row["sum"], per.sum())
        value, grad = torch_route(lambda z: focal_tversky_formula(
            torch.softmax(z, -1), torch.tensor(t), **extra).mean(), logits)
        assert_same(row["mean"], value)
        assert_gradients(row, grad)


def test_focal_tversky_gamma_one_is_tversky_and_the_perfect_overlap_convention():
    p = jnp.asarray([[1.0, 0.0, 1.0, 0.0], [0.5, 0.25, 0.0, 0.0]])
    t = jnp.asarray([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])

    def run(p, t):
        out = {}
        for gamma in (0.75, 1.0, 2.0):
            out[str(gamma)] = (
                FOCAL_TVERSKY(p, t, gamma=gamma, reduction="none"),
                FOCAL_TVERSKY.grad(p, t, gamma=gamma, reduction="sum"),
                jax.grad(lambda q: FOCAL_TVERSKY(q, t, gamma=gamma, reduction="sum"))(p))
        out["tversky"] = (lj.tversky(p, t, alpha=0.3, beta=0.7, reduction="none"),
                          lj.tversky.grad(p, t, alpha=0.3, beta=0.7, reduction="sum"))
        return out
    out = compiled(run, p, t)
    tv_value, tv_grad = out["tversky"]
    assert_same(out["1.0"][0], tv_value)
    assert_same(out["1.0"][1], tv_grad)
    # row 0 overlaps perfectly (TI = 1, loss 0): for gamma < 1 the derivative is unbounded
    # and both routes take 0; gamma > 1 has derivative 0 there; gamma = 1 is Tversky's
    for gamma in (0.75, 2.0):
        value, analytic, auto = out[str(gamma)]
        assert value[0] == 0.0
        np.testing.assert_array_equal(analytic[0], 0.0)
        np.testing.assert_array_equal(auto[0], 0.0)
        assert_same(analytic[1], auto[1])
        assert_same(value[1], tv_value[1] ** gamma)
    assert np.any(out["1.0"][1][0] != 0)             # gamma = 1: Tversky's, not 0


def test_focal_tversky_bad_exponent():
    with pytest.raises(ValueError, match="`gamma` must lie in \\(0, inf\\]"):
        FOCAL_TVERSKY(jnp.ones((1, 2)), jnp.ones((1, 2)), gamma=0.0)


# -- generalised Dice (optax multiclass_generalized_dice_loss) -------------------------------

def test_multiclass_generalized_dice_matches_optax_values_and_gradients():
    rng = host_rng(4)
    logits = jnp.asarray(2 * rng.standard_normal((2, 4, 3, 4)))
    labels = rng.integers(0, 4, (2, 4, 3))
    onehot = jnp.asarray(np.eye(4)[labels])
    labels = jnp.asarray(labels)
    settings = [{}, {"smooth": 0.25, "ignore_background": True}]
    rows = ours(GENERALIZED_DICE, (logits, labels), {}, settings)

    @jax.jit
    def peer(z, t):
        return [(jax.value_and_grad(lambda x: optax.losses.multiclass_generalized_dice_loss(
            x, t, **extra))(z), GENERALIZED_DICE(z, t, **extra)) for extra in settings]

    for row, ((value, grad), with_masks), extra in zip(rows, peer(logits, onehot), settings):
        classes = 3 if extra.get("ignore_background") else 4
        assert_same(row["mean"], value)
        assert_same(with_masks, value)            # one-hot masks = their integer labels
        assert_same(row["sum"], value * 2 * classes)
        assert row["none"].shape == (2, 4)
        assert_gradients(row, grad)


def test_generalized_dice_weights_are_sudres_inverse_squared_frequencies():
    p = jnp.asarray([[[0.75, 0.25], [0.5, 0.5], [0.0, 1.0], [1.0, 0.0]]])
    t = jnp.asarray([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    got = compiled(lambda a, b: GENERALIZED_DICE(a, b, activation=None, reduction="none"), p, t)
    u = 1 / (np.asarray([3.0, 1.0]) ** 2 + 1e-7)
    w = 2 * u / u.sum()
    pn, tn = np.asarray(p)[0], np.asarray(t)[0]
    dice = 1 - ((pn * tn).sum(0) + 1) / ((pn.sum(0) + tn.sum(0)) / 2 + 1)
    assert_same(got[0], w * dice)


# -- Lovász-Softmax and Lovász hinge: torch re-implementations of bermanmaxim/LovaszSoftmax ----

def t_lovasz_grad(gt_sorted):
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def t_softmax_flat(probas, labels, classes):
    losses = []
    for c in (range(probas.shape[1]) if isinstance(classes, str) else classes):
        fg = (labels == c).double()
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, dim=0, descending=True, stable=True)
        losses.append(torch.dot(errors_sorted, t_lovasz_grad(fg[perm])))
    return torch.stack(losses).mean()


def t_lovasz_softmax(probas, labels, classes="present", per_image=False, ignore=-100):
    """probas (B, C, H, W), labels (B, H, W) (numpy)."""
    labels = torch.tensor(np.asarray(labels))

    def flat(p, y):
        p = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        y = y.reshape(-1)
        return p[y != ignore], y[y != ignore]
    if per_image:
        return torch.stack([t_softmax_flat(*flat(p[None], y[None]), classes)
                            for p, y in zip(probas, labels)]).mean()
    return t_softmax_flat(*flat(probas, labels), classes)


def t_lovasz_hinge(logits, labels, per_image=True, ignore=-100):
    labels = torch.tensor(np.asarray(labels))

    def flat(z, y):
        z, y = z.reshape(-1), y.reshape(-1)
        z, y = z[y != ignore], y[y != ignore].double()
        errors = 1.0 - z * (2 * y - 1)
        errors_sorted, perm = torch.sort(errors, descending=True, stable=True)
        return torch.dot(F.relu(errors_sorted), t_lovasz_grad(y[perm]))
    if per_image:
        return torch.stack([flat(z, y) for z, y in zip(logits, labels)]).mean()
    return flat(logits, labels)


def test_lovasz_softmax_matches_the_reference_code():
    probas, labels = lj.lovasz_softmax.sample(KEY, jnp.float64).args     # no ties
    labels = np.array(labels)
    labels[0, 0, 0] = -100
    settings = [{}, {"per_image": True, "classes": "all"}, {"classes": (0, 2)}]
    rows = ours(lj.lovasz_softmax, (probas, labels), {}, settings)
    for row, extra in zip(rows, settings):
        reference = dict(per_image=extra.get("per_image", False),
                         classes=extra.get("classes", "present"))
        value, grad = torch_route(lambda p: t_lovasz_softmax(p, labels, **reference), probas)
        assert_same(row["mean"], value)
        assert_gradients(row, grad)
        assert row["none"].shape == ((2,) if reference["per_image"] else (3,))
    # the elements are the classes, each the reference's loss of that class alone (0 where
    # not selected), and the sum runs over the present ones
    with torch.no_grad():
        per_class = [float(t_lovasz_softmax(torch.tensor(np.asarray(probas)), labels,
                                            classes=[c])) for c in range(3)]
    assert_same(rows[2]["none"], np.asarray(per_class) * [1, 0, 1])
    present = [np.any(np.asarray(labels) == c) for c in range(3)]
    assert_same(rows[0]["sum"], np.dot(per_class, present))


def test_lovasz_softmax_of_hard_predictions_is_one_minus_iou():
    """The Lovász extension agrees with the set function on 0/1 errors: one-hot predictions
    give 1 - IoU of each class."""
    rng = host_rng(7)
    labels = rng.integers(0, 4, (2, 4, 5))
    predicted = np.where(rng.random(labels.shape) < 0.3,
                         (labels + 1) % 4, labels)
    probas = np.moveaxis(np.eye(4)[predicted], -1, 1)
    got = compiled(lambda p, y: lj.lovasz_softmax(p, y, classes="all", reduction="none"),
                   jnp.asarray(probas), jnp.asarray(labels))
    inter = np.asarray([np.sum((labels == c) & (predicted == c)) for c in range(4)])
    union = np.asarray([np.sum((labels == c) | (predicted == c)) for c in range(4)])
    assert_same(got, 1 - inter / union)


def reordered(x, pixels, perm, back=False):
    """x (N, [C,] H, W) with image 0's pixels (flat indices) ``pixels`` permuted by ``perm``
    (``back``: the inverse move, for gradients)."""
    x = np.array(x)
    flat = x.reshape(*x.shape[:-2], -1)
    src, dst = [pixels[k] for k in perm], list(pixels)
    if back:
        src, dst = dst, src
    flat[0, ..., dst] = flat[0, ..., src].copy()
    return flat.reshape(x.shape)


def test_lovasz_ties_get_the_average_over_their_orders():
    """At tied errors the reference's gradient depends on its sort order; ours is the mean of
    the reference's over all orders of the tie: pairs of a foreground and a background pixel
    in the edge samples (pixels 0 and 1 of image 0 in Lovász-Softmax, 2 and 3 in the hinge),
    and a tie of two foreground pixels and a background one. Ours does not depend on the
    order of the pixels in the input."""
    probas, labels = lj.lovasz_softmax.sample(KEY, jnp.float64, "edge").args
    logits, hinge_labels = lj.lovasz_hinge.sample(KEY, jnp.float64, "edge").args
    logits = np.array(logits)
    logits[0, 0, 0] = 1.25                          # off the hinge's kink (torch's relu' = 0)
    # image 0: errors 0.5 (foreground), 0.5 (background), 0.5 (foreground), 3, 2, -2
    triple, triple_labels = logits.copy(), np.array(hinge_labels)
    triple[0], triple_labels[0] = [[0.5, -0.5, 0.5], [2.0, -1.0, 3.0]], [[1, 0, 1], [0, 1, 1]]
    shuffled = [reordered(x, [0, 1, 2, 3, 4, 5], [4, 2, 0, 5, 1, 3])
                for x in (triple, triple_labels)]
    got = compiled(lambda p, y, z, h, z3, h3, zs, hs: (
        lj.lovasz_softmax.grad(p, y, per_image=True), lj.lovasz_hinge.grad(z, h),
        lj.lovasz_hinge.grad(z3, h3), lj.lovasz_hinge.grad(zs, hs)),
        probas, labels, logits, hinge_labels, triple, triple_labels, *shuffled)
    cases = [(lambda p, y: t_lovasz_softmax(p, y, per_image=True), probas, labels, [0, 1]),
             (t_lovasz_hinge, logits, hinge_labels, [2, 3]),
             (t_lovasz_hinge, triple, triple_labels, [0, 1, 2])]
    for (reference, x, y, pixels), mine in zip(cases, got):
        orders = []
        for perm in itertools.permutations(range(len(pixels))):
            _, g = torch_route(lambda t: reference(t, reordered(y, pixels, perm)),
                               reordered(x, pixels, perm))
            orders.append(reordered(g, pixels, perm, back=True))
        assert not np.allclose(orders[0], orders[-1])     # the tie is a kink
        assert_same(mine, np.mean(orders, axis=0))
    assert_same(reordered(got[3], [0, 1, 2, 3, 4, 5], [4, 2, 0, 5, 1, 3], back=True), got[2])


def jaccard_increments(errors, fg, order):
    """The Lovász gradient for one order of the pixels: increments of the Jaccard loss
    (f + b) / (G + b) of the first k pixels, sorted stably by decreasing error."""
    g, previous, f, b = np.zeros(len(errors)), 0.0, 0, 0
    for i in sorted(order, key=lambda i: -errors[i]):
        f, b = f + fg[i], b + 1 - fg[i]
        g[i] = (f + b) / (fg.sum() + b) - previous
        previous += g[i]
    return g


def test_lovasz_tie_convention_is_the_mean_over_all_orders():
    """Rows of six pixels with errors drawn from four values (ties of every size, mixed
    labels, empty foregrounds): the hinge's gradient is -s times the mean over all 720 orders
    of the Lovász gradient (all errors > 0: no hinge kink)."""
    rng = host_rng(9)
    errors = rng.choice([0.25, 0.5, 1.0, 2.0], (12, 6))
    labels = rng.integers(0, 2, (12, 6))
    labels[0] = 0
    signs = 2 * labels - 1
    got = compiled(lambda z, y: lj.lovasz_hinge.grad(z, y, reduction="sum"),
                   jnp.asarray((1 - errors) * signs), jnp.asarray(labels))
    orders = list(itertools.permutations(range(6)))
    for row in range(12):
        mean = np.mean([jaccard_increments(errors[row], labels[row], o) for o in orders], 0)
        assert_same(got[row], -signs[row] * mean)


def test_lovasz_hinge_matches_the_reference_code():
    logits, labels = lj.lovasz_hinge.sample(KEY, jnp.float64).args        # no ties
    labels = np.array(labels)
    labels[1, 0, 0], labels[2] = -100, 0                    # an ignored pixel, no foreground
    settings = [{}, {"per_image": False}]
    rows = ours(lj.lovasz_hinge, (logits, labels), {}, settings)
    for row, extra in zip(rows, settings):
        value, grad = torch_route(lambda z: t_lovasz_hinge(z, labels, **extra), logits)
        assert_same(row["mean"], value)
        assert_gradients(row, grad)
    with torch.no_grad():
        per_image = [float(t_lovasz_hinge(torch.tensor(np.asarray(logits[i:i + 1])),
                                          labels[i:i + 1])) for i in range(3)]
    assert_same(rows[0]["none"], per_image)
    assert rows[1]["none"].shape == ()


def test_lovasz_hinge_kink_and_saturated_logits():
    """On the hinge (error exactly 0) the gradient is half the Lovász weight; saturated
    logits give exact values and finite gradients in float32."""
    z = jnp.asarray([[[1.0, -3.0, 0.5, 2.0]]])
    y = jnp.asarray([[[1, 0, 1, 0]]])
    s = jnp.asarray([[[1e4, -1e4, -1e4, 1e4]]], jnp.float32)
    grad, value, saturated_grad = compiled(
        lambda z, s, y: (lj.lovasz_hinge.grad(z, y), lj.lovasz_hinge(s, y),
                         lj.lovasz_hinge.grad(s, y)), z, s, y)
    step = np.zeros(z.shape)
    step[0, 0, 0] = 1e-3
    _, below = torch_route(lambda t: t_lovasz_hinge(t, y), z - step)
    _, above = torch_route(lambda t: t_lovasz_hinge(t, y), z + step)
    assert below[0, 0, 0] != above[0, 0, 0]
    assert_same(grad, (below + above) / 2)
    # errors 1 - 1e4 (twice), and 1 + 1e4 tied on a foreground and a background pixel,
    # whose Jaccard loss (f + b) / (G + b) is 2/3
    assert float(value) == pytest.approx((1e4 + 1) * 2 / 3, rel=1e-7)
    assert np.all(np.isfinite(saturated_grad))


def test_lovasz_checked_labels_and_bad_arguments():
    """Label values are checked by lj.checked (here its checks alone, without the loss)."""
    def errors(loss, *args):
        err, _ = jax.jit(checkify.checkify(lambda *a: lj.check_inputs(loss, *a)))(*args)
        return err.get()
    p = jnp.full((1, 2, 3), 0.5)
    assert re.search(r"lovasz_softmax: `labels`\[0, 1\] = 2 must be a class index in "
                     r"\[0, 2\) or `ignore_index`", errors(lj.lovasz_softmax, p,
                                                          jnp.asarray([[0, 2, 1]])))
    assert re.search(r"lovasz_hinge: `labels`\[0, 2\] = 3 must be 0 or 1",
                     errors(lj.lovasz_hinge, jnp.zeros((1, 3)), jnp.asarray([[0, 1, 3]])))
    assert errors(lj.lovasz_hinge, jnp.zeros((1, 3)), jnp.asarray([[0, 1, -100]])) is None
    with pytest.raises(ValueError, match="`classes` must be 'present', 'all' or a sequence"):
        lj.lovasz_softmax(p, jnp.asarray([[0, 1, 1]]), classes="some")
    with pytest.raises(ValueError, match=r"`labels` must have the shape of `probas` without"):
        lj.lovasz_softmax(p, jnp.asarray([0, 1]))


# -- generalized cross-entropy (Zhang & Sabuncu 2018) and symmetric cross-entropy (Wang et al.
#    2019): the authors' losses in torch, Keras's GCE formula in NumPy ------------------------

def t_gce(logits, labels, q):
    p = torch.softmax(logits, dim=1)
    p_y = torch.gather(p, 1, torch.tensor(np.asarray(labels))[:, None])[:, 0]
    return (1 - p_y ** q) / q


def t_sce(logits, labels, alpha, beta, log_zero):
    labels = torch.tensor(np.asarray(labels))
    ce = F.cross_entropy(logits, labels, reduction="none")
    pred = torch.clamp(torch.softmax(logits, dim=1), min=1e-7, max=1.0)
    one_hot = torch.clamp(F.one_hot(labels, logits.shape[1]).double(), min=np.exp(log_zero),
                          max=1.0)
    return alpha * ce - beta * torch.sum(pred * torch.log(one_hot), dim=1)


def keras_gce(probabilities, labels, q):
    """keras.losses.categorical_generalized_cross_entropy: probabilities, integer labels."""
    p = np.take_along_axis(probabilities, np.asarray(labels)[:, None], axis=-1)[:, 0]
    return (1 - p ** q) / q


@pytest.mark.parametrize("name", ["generalized_cross_entropy", "symmetric_cross_entropy"])
def test_noise_robust_losses_match_the_authors_code(name):
    rng = host_rng(13)
    logits = jnp.asarray(2 * rng.standard_normal((7, 5)))           # every p_k > 1e-7
    labels = jnp.asarray(rng.integers(0, 5, 7))
    # the papers' settings, the defaults first (GCE's q = 0.7; SCE's CIFAR-10 alpha, beta
    # and A = -4), then another (SCE: CIFAR-100's, with the authors' code's A = log 1e-4)
    if name == "generalized_cross_entropy":
        settings = [{"q": 0.7}, {"q": 0.2}]
        reference = lambda z, extra: t_gce(z, labels, extra["q"])          # noqa: E731
    else:
        settings = [{"alpha": 0.1, "beta": 1.0, "log_zero": -4.0},
                    {"alpha": 6.0, "beta": 0.1, "log_zero": float(np.log(1e-4))}]
        reference = lambda z, extra: t_sce(z, labels, **extra)             # noqa: E731
    rows = ours(lj.get(name), (logits, labels), {}, [{}] + settings)
    assert_same(rows[0]["mean"], rows[1]["mean"])
    for row, extra in zip(rows[1:], settings):
        value, grad = torch_route(lambda z: reference(z, extra).mean(), logits)
        assert_same(row["mean"], value)
        assert_gradients(row, grad)
        with torch.no_grad():
            per = reference(torch.tensor(np.asarray(logits)), extra).numpy()
        assert_same(row["none"], per)
        assert_same(row["sum"], per.sum())
        if name == "generalized_cross_entropy":      # Keras's loss of the probabilities
            assert_same(row["none"], keras_gce(np_softmax(np.asarray(logits)), labels,
                                               extra["q"]))


def test_noise_robust_limits_ignored_labels_and_saturated_logits():
    rng = host_rng(14)
    z = jnp.asarray(rng.standard_normal((6, 4)))
    y = jnp.asarray([0, 3, -100, 1, 2, 2])
    saturated = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], jnp.float32)
    wrong = jnp.asarray([1, 0])                 # confidently wrong

    def run(z, y, s, w):
        ce = lj.cross_entropy(z, y, reduction="none")
        return {
            "ce": ce, "count": lj.generalized_cross_entropy.count(z, y),
            "gce_small_q": lj.generalized_cross_entropy(z, y, q=1e-6, reduction="none"),
            "gce_q1": lj.generalized_cross_entropy(z, y, q=1.0, reduction="none"),
            "p_y": jnp.exp(-ce),
            "sce_ce_only": lj.symmetric_cross_entropy(z, y, alpha=1.0, beta=0.0,
                                                      reduction="none"),
            "gce_saturated": lj.generalized_cross_entropy(s, w, reduction="none"),
            "gce_saturated_grad": lj.generalized_cross_entropy.grad(s, w),
            "sce_saturated": lj.symmetric_cross_entropy(s, w, reduction="none"),
            "sce_saturated_grad": lj.symmetric_cross_entropy.grad(s, w),
        }
    out = compiled(run, z, y, saturated, wrong)
    keep = np.asarray(y) != -100
    assert out["count"] == 5
    assert_same(out["gce_small_q"][keep], out["ce"][keep], rtol=1e-5)   # q -> 0: CE
    assert_same(out["gce_q1"][keep], 1 - out["p_y"][keep])              # q = 1: 1 - p_y
    assert_same(out["sce_ce_only"], out["ce"])
    assert_same(out["gce_saturated"], [1 / 0.7] * 2, rtol=1e-7)
    np.testing.assert_array_equal(out["gce_saturated_grad"], 0.0)       # damped by p_y^q = 0
    # CE 2e4 (alpha 0.1) plus RCE -A (1 - p_y) = 4
    assert_same(out["sce_saturated"], [0.1 * 2e4 + 4.0] * 2, rtol=1e-7)
    assert np.all(np.isfinite(out["sce_saturated_grad"]))
    with pytest.raises(ValueError, match=r"`q` must lie in \(0, 1\]"):
        lj.generalized_cross_entropy(z, y, q=0.0)
    with pytest.raises(ValueError, match=r"`log_zero` must lie in \[-inf, 0\]"):
        lj.symmetric_cross_entropy(z, y, log_zero=1.0)
