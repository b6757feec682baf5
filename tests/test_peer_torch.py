"""PyTorch's margin losses and triplet losses (torch.nn.functional, float64) as peers: values
for every reduction and gradients (torch's .backward() against both our hand-derived .grad
and jax.grad of our loss), at default and non-default hyperparameters.

The inputs are random floats, which never sit on a hinge, where PyTorch's backward takes one
side and lossjax the midpoint of the two (its documented convention); that convention is
tested at exact ties against PyTorch's one-sided gradients just off them.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossjax as lj
from conftest import compiled

REDUCTIONS = ("mean", "sum", "none")
RNG = np.random.default_rng(0)
triplet_margin_with_distance = lj.get("triplet_margin_with_distance")


def ours(loss, args, kwargs, wrt=()):
    """For each reduction: value, .grad and jax.grad w.r.t. the first argument (of the sum of
    the elements for "none", as torch's .backward() of their sum), then .grad(wrt=name) and
    jax.grad for each name in ``wrt``; one compiled program."""
    names = list(inspect.signature(loss).parameters)

    def run(*a, **k):
        out = {}
        for red in REDUCTIONS:
            def total(*moved):
                return jnp.sum(loss(*moved, reduction=red, **k))
            indices = [0] + [names.index(w) for w in wrt]
            auto = jax.grad(total, argnums=indices)(*a)
            hand = [loss.grad(*a, reduction=red, **k)]
            hand += [loss.grad(*a, reduction=red, wrt=w, **k) for w in wrt]
            out[red] = (loss(*a, reduction=red, **k), hand, list(auto))
        return out
    return compiled(run, *args, **kwargs)


def theirs(fn, args, kwargs, grad_args=(0,)):
    """For each reduction: torch's value and its gradients w.r.t. ``grad_args`` (float64)."""
    out = {}
    for red in REDUCTIONS:
        tensors = [torch.tensor(np.asarray(a)) for a in args]
        for i in grad_args:
            tensors[i].requires_grad_(True)
        value = fn(*tensors, reduction=red, **kwargs)
        value.sum().backward()
        out[red] = (value.detach().numpy(), [tensors[i].grad.numpy() for i in grad_args])
    return out


def assert_same(got, want, what):
    for red in REDUCTIONS:
        value, hand, auto = got[red]
        want_value, want_grads = want[red]
        np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-14,
                                   err_msg=f"{what} {red}: value")
        for i, g in enumerate(want_grads):
            np.testing.assert_allclose(hand[i], g, rtol=1e-10, atol=1e-14,
                                       err_msg=f"{what} {red}: .grad of argument {i}")
            np.testing.assert_allclose(auto[i], g, rtol=1e-10, atol=1e-14,
                                       err_msg=f"{what} {red}: jax.grad of argument {i}")


def compare(loss, torch_fn, args, kwargs=None, torch_kwargs=None, wrt=(), grad_args=(0,),
            what=""):
    kwargs = kwargs or {}
    got = ours(loss, [jnp.asarray(a) for a in args], kwargs, wrt)
    want = theirs(torch_fn, args, kwargs if torch_kwargs is None else torch_kwargs, grad_args)
    assert_same(got, want, f"{loss.name} {what}")


def signs(shape):
    return np.where(RNG.random(shape) < 0.5, 1.0, -1.0)


def t(x):
    return None if x is None else torch.tensor(np.asarray(x))


def test_hyperparameters_carry_pytorchs_names():
    """Every hyperparameter of these entries is PyTorch's argument of the same name, except
    ``axis`` (lossjax's class axis) and the reduction keywords every Loss has."""
    pairs = [(lj.soft_margin, F.soft_margin_loss),
             (lj.multilabel_soft_margin, F.multilabel_soft_margin_loss),
             (lj.multilabel_margin, F.multilabel_margin_loss),
             (lj.multi_margin, F.multi_margin_loss),
             (lj.hinge_embedding, F.hinge_embedding_loss),
             (lj.triplet_margin, F.triplet_margin_loss),
             (triplet_margin_with_distance, F.triplet_margin_with_distance_loss)]
    for loss, peer in pairs:
        params = inspect.signature(loss).parameters
        hyper = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        extra = hyper - {"axis", "reduction", "weights", "where"}
        assert extra <= set(inspect.signature(peer).parameters), (loss.name, extra)


def test_soft_margin():
    z, y = RNG.normal(size=(6, 5)) * 3, signs((6, 5))
    compare(lj.soft_margin, F.soft_margin_loss, (z, y))
    # finite where PyTorch's log(1 + exp(-yz)) overflows: the value is -yz, the slope -y
    z = np.asarray([1e4, -1e4, 800.0, -800.0])
    y = np.asarray([-1.0, 1.0, -1.0, 1.0])
    value, grad = compiled(lambda a, b: (lj.soft_margin(a, b, reduction="none"),
                                         lj.soft_margin.grad(a, b, reduction="none")),
                           jnp.asarray(z), jnp.asarray(y))
    assert np.all(np.isinf(F.soft_margin_loss(t(z), t(y), reduction="none").numpy()))
    np.testing.assert_allclose(value, -y * z, rtol=1e-15)
    np.testing.assert_allclose(grad, -y, rtol=1e-15)


def test_multilabel_soft_margin():
    z = RNG.normal(size=(6, 4)) * 2
    targets = (RNG.random((6, 4)) < 0.4).astype(np.float64)
    w = np.asarray([0.5, 1.0, 2.0, 0.25])
    compare(lj.multilabel_soft_margin, F.multilabel_soft_margin_loss, (z, targets))
    compare(lj.multilabel_soft_margin, F.multilabel_soft_margin_loss, (z, targets),
            {"weight": jnp.asarray(w)}, {"weight": t(w)}, what="weight")
    # classes along axis 0: the transposed problem (PyTorch's class axis is the last one)
    got = ours(lj.multilabel_soft_margin, (jnp.asarray(z.T), jnp.asarray(targets.T)),
               {"weight": jnp.asarray(w), "axis": 0})
    want = theirs(F.multilabel_soft_margin_loss, (z, targets), {"weight": t(w)})
    for red in REDUCTIONS:
        got[red] = (got[red][0], [g.T for g in got[red][1]], [g.T for g in got[red][2]])
    assert_same(got, want, "multilabel_soft_margin axis=0")


def test_multilabel_margin():
    z = RNG.normal(size=(5, 4))
    labels = np.asarray([[3, 0, -1, 1],     # classes 3 and 0; entries after -1 do not count
                         [1, 1, -1, -1],    # a class listed twice counts twice (PyTorch)
                         [-1, 2, 2, 2],     # an empty list
                         [0, 1, 2, 3],      # every class listed
                         [2, -1, 0, 0]])
    compare(lj.multilabel_margin, F.multilabel_margin_loss, (z, labels))
    got = ours(lj.multilabel_margin, (jnp.asarray(z.T), jnp.asarray(labels.T)), {"axis": 0})
    want = theirs(F.multilabel_margin_loss, (z, labels), {})
    for red in REDUCTIONS:
        got[red] = (got[red][0], [g.T for g in got[red][1]], [g.T for g in got[red][2]])
    assert_same(got, want, "multilabel_margin axis=0")


def midpoint_of_torch(torch_fn, x, direction, *rest, h=1e-6, **kwargs):
    """The midpoint of PyTorch's gradients (of the sum) just either side of ``x`` along
    ``direction``: the one-sided derivatives at a hinge."""
    grads = []
    for s in (h, -h):
        xt = torch.tensor(x + s * direction, requires_grad=True)
        torch_fn(xt, *rest, reduction="sum", **kwargs).backward()
        grads.append(xt.grad.numpy())
    return (grads[0] + grads[1]) / 2


def test_multi_margin():
    z = RNG.normal(size=(6, 5))
    labels = RNG.integers(0, 5, 6)
    w = np.asarray([0.5, 1.0, 2.0, 1.5, 0.25])
    compare(lj.multi_margin, F.multi_margin_loss, (z, labels))
    # the weighted mean divides by the number of examples, as PyTorch's
    compare(lj.multi_margin, F.multi_margin_loss, (z, labels),
            {"p": 2, "margin": 0.5, "weight": jnp.asarray(w)},
            {"p": 2, "margin": 0.5, "weight": t(w)}, what="p=2 margin weight")
    compare(lj.multi_margin, F.multi_margin_loss, (z, labels),
            {"margin": 1.5, "weight": jnp.asarray(w)}, {"margin": 1.5, "weight": t(w)},
            what="p=1 margin weight")
    # on the hinge (margin - z_y + z_i == 0): the midpoint of the one-sided gradients,
    # where PyTorch takes the inactive side
    z_tie = np.asarray([[1.0, 0.0, 0.0, -1.0], [0.5, 2.0, -0.5, 1.0]])
    y_tie = np.asarray([0, 1])
    grad = compiled(lambda a, b: lj.multi_margin.grad(a, b, reduction="sum"),
                    jnp.asarray(z_tie), jnp.asarray(y_tie))
    others = 1.0 - np.eye(4)[y_tie]         # moves every margin m - z_y + z_i across 0
    np.testing.assert_allclose(
        grad, midpoint_of_torch(F.multi_margin_loss, z_tie, others, t(y_tie)), atol=1e-12)
    at_tie = torch.tensor(z_tie, requires_grad=True)
    F.multi_margin_loss(at_tie, t(y_tie), reduction="sum").backward()
    np.testing.assert_allclose(at_tie.grad.numpy()[0], [0, 0, 0, 0])
    np.testing.assert_allclose(grad[0], [-0.25, 0.125, 0.125, 0])


def test_multi_margin_out_of_range_labels_count_nothing():
    """PyTorch raises; lossjax drops such examples from the value and the mean's count
    (lj.checked raises)."""
    z = RNG.normal(size=(4, 3))
    labels = np.asarray([0, 7, 2, -1])
    valid = np.asarray([True, False, True, False])
    value, grad = compiled(lambda a, b: (lj.multi_margin(a, b), lj.multi_margin.grad(a, b)),
                           jnp.asarray(z), jnp.asarray(labels))
    xt = torch.tensor(z[valid], requires_grad=True)
    want = F.multi_margin_loss(xt, t(labels[valid]))
    want.backward()
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad[valid], xt.grad.numpy(), rtol=1e-10)
    assert np.all(grad[~valid] == 0)


def test_hinge_embedding():
    x = RNG.uniform(-0.5, 3.0, (6, 5))
    y = signs((6, 5))
    y[0, :2] = 0.0       # neither +1 nor -1: both terms apply, as in PyTorch
    compare(lj.hinge_embedding, F.hinge_embedding_loss, (x, y))
    compare(lj.hinge_embedding, F.hinge_embedding_loss, (x, y), {"margin": 2.0},
            {"margin": 2.0}, what="margin=2")
    # on the hinge x == margin with y == -1: -1/2, the midpoint (PyTorch takes -1)
    x_tie, y_tie = np.asarray([1.0, 1.0, 0.5]), np.asarray([-1.0, 1.0, -1.0])
    grad = compiled(lambda a, b: lj.hinge_embedding.grad(a, b, reduction="sum"),
                    jnp.asarray(x_tie), jnp.asarray(y_tie))
    np.testing.assert_allclose(grad, [-0.5, 1.0, -1.0])
    np.testing.assert_allclose(
        grad, midpoint_of_torch(F.hinge_embedding_loss, x_tie, np.ones(3), t(y_tie)))


def triplets(n=6, d=4):
    a = RNG.normal(size=(n, d))
    return a, a + 0.7 * RNG.normal(size=(n, d)), RNG.normal(size=(n, d))


def test_triplet_margin_p_and_swap():
    a, p, n = triplets()
    both = dict(wrt=("positive", "negative"), grad_args=(0, 1, 2))
    compare(lj.triplet_margin, F.triplet_margin_loss, (a, p, n), **both)
    settings = {"p": 3.0, "margin": 0.5, "swap": True}
    compare(lj.triplet_margin, F.triplet_margin_loss, (a, p, n), settings, settings,
            what="p=3 swap", **both)


def l1_jax(x1, x2):
    return jnp.sum(jnp.abs(x1 - x2), axis=-1)


def l1_torch(x1, x2):
    return (x1 - x2).abs().sum(-1)


def cosine_torch(x1, x2):
    return 1.0 - F.cosine_similarity(x1, x2)


@pytest.mark.parametrize("ours_fn, torch_fn, settings", [
    (None, None, {}),
    ("euclidean", None, {"margin": 0.5, "swap": True}),
    ("cosine", cosine_torch, {"margin": 0.75, "swap": True}),
    (l1_jax, l1_torch, {"margin": 2.0}),            # a user's callable: autodiff through it
], ids=["default", "euclidean-swap", "cosine-swap", "callable"])
def test_triplet_margin_with_distance(ours_fn, torch_fn, settings):
    a, p, n = triplets()
    compare(triplet_margin_with_distance, F.triplet_margin_with_distance_loss, (a, p, n),
            {"distance_function": ours_fn, **settings},
            {"distance_function": torch_fn, **settings},
            wrt=("positive", "negative"), grad_args=(0, 1, 2))
    # with_analytic_vjp: reverse mode is .grad's VJP (for a callable, jax.vjp through it),
    # forward mode its JVP
    analytic = triplet_margin_with_distance.with_analytic_vjp()
    tangent = jnp.asarray(RNG.normal(size=a.shape))

    def routes(a, p, n):
        def f(loss):
            return lambda q: loss(q, p, n, distance_function=ours_fn, **settings)
        return (jax.grad(f(analytic))(a), jax.jvp(f(analytic), (a,), (tangent,))[1],
                jax.jvp(f(triplet_margin_with_distance), (a,), (tangent,))[1])
    grad, jvp, jvp_autodiff = compiled(routes, *(jnp.asarray(x) for x in (a, p, n)))
    want = theirs(F.triplet_margin_with_distance_loss, (a, p, n),
                  {"distance_function": torch_fn, **settings})["mean"][1][0]
    np.testing.assert_allclose(grad, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(jvp, jvp_autodiff, rtol=1e-10, atol=1e-14)


def test_triplet_margin_with_distance_defaults_equal_triplet_margin():
    def both(a, p, n):
        return [(triplet_margin_with_distance(a, p, n, swap=swap, reduction="none"),
                 lj.triplet_margin(a, p, n, swap=swap, reduction="none"))
                for swap in (False, True)]
    for got, want in compiled(both, *(jnp.asarray(x) for x in triplets())):
        np.testing.assert_allclose(got, want, rtol=1e-15)


def test_triplet_margin_with_distance_errors():
    a, p, n = (jnp.asarray(x) for x in triplets())
    with pytest.raises(ValueError, match=r"`distance_function` must be None \(Euclidean\), "
                                         r"'euclidean', 'cosine' or a callable"):
        triplet_margin_with_distance(a, p, n, distance_function="manhattan")
    with pytest.raises(ValueError, match=r"one floating distance per row, shape \(6,\).*"
                                         r"got float64\[6,4\]"):
        triplet_margin_with_distance(a, p, n, distance_function=lambda x, y: x - y)
    with pytest.raises(ValueError, match=r"`margin` must lie in \(0, inf\]"):
        triplet_margin_with_distance(a, p, n, margin=0.0)


def test_checked_mode_rejects_what_pytorch_rejects():
    z = jnp.zeros((2, 3))
    bad = [("multilabel_margin", (z, jnp.asarray([[0, 3, -1], [1, -1, 0]])),
            r"`labels`\[0, 1\] = 3 must be a class index in \[0, 3\) or -1"),
           ("multilabel_margin", (z, jnp.asarray([[0, -2, -1], [1, -1, 0]])), r"\[0, 1\] = -2"),
           ("multi_margin", (z, jnp.asarray([0, 3])), r"`labels`\[1\] = 3 must be a class index"),
           ("soft_margin", (z, jnp.asarray([[1.0, 0.0, 1.0], [1.0, 1.0, -1.0]])),
            r"`labels`\[0, 1\] = 0.0 must be -1 or \+1"),
           ("hinge_embedding", (z, jnp.asarray([[1.0, 1.0, 1.0], [1.0, 2.0, -1.0]])),
            r"`labels`\[1, 1\] = 2.0 must be -1 or \+1"),
           ("multilabel_soft_margin", (z, jnp.asarray([[1.0, 0.0, 1.5], [0.0, 1.0, 0.0]])),
            r"`targets`\[0, 2\] = 1.5 must be in \[0, 1\]")]
    for name, args, message in bad:
        with pytest.raises(Exception, match=message):
            lj.checked(name)(*args)
