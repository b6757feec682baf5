"""The losses lossjax takes from optax, against optax itself (run here, float64): values under
every reduction optax has, optax's gradient (jax.grad) against our hand-derived ``.grad`` and
against jax.grad of ours, for default and non-default hyperparameters. Where lossjax differs
on purpose (zero vectors, zero targets, an empty set of positive pairs) the test states the
documented behaviour instead."""
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lossjax as lj
from conftest import compiled

RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return jnp.asarray(scale * RNG.standard_normal(shape))


class Case(NamedTuple):
    """``loss(x, *rest, **kwargs)`` against ``peer(x, reduction)``; gradients compared under
    ``grad_reduction``."""
    loss: lj.Loss
    x: jax.Array
    rest: tuple
    kwargs: dict
    peer: Callable
    reductions: tuple
    grad_reduction: str


def case(loss, x, *rest, peer, reductions=("none", "sum", "mean"), grad_reduction="mean",
         **kwargs):
    return Case(loss, x, rest, kwargs, peer, reductions, grad_reduction)


def reduced(fn):
    """optax's per-element ``fn(x)`` under our reduction names."""
    return lambda x, reduction: {"none": fn, "sum": lambda q: jnp.sum(fn(q)),
                                 "mean": lambda q: jnp.mean(fn(q))}[reduction](x)


def assert_matches_optax(*cases, rtol=1e-10, atol=1e-12):
    """Per case: our value vs optax's under each reduction, and optax's gradient vs our .grad
    and vs jax.grad of ours (for reduction="none", gradients of the sum), in one compiled
    program."""
    def run(xs):
        out = []
        for c, x in zip(cases, xs):
            out += [(c.loss(x, *c.rest, reduction=r, **c.kwargs), c.peer(x, r))
                     for r in c.reductions]
            r = c.grad_reduction
            peer_grad = jax.grad(lambda q: jnp.sum(c.peer(q, r)))(x)
            ours = lambda q: jnp.sum(c.loss(q, *c.rest, reduction=r, **c.kwargs))  # noqa: E731
            out += [(c.loss.grad(x, *c.rest, reduction=r, **c.kwargs), peer_grad),
                    (jax.grad(ours)(x), peer_grad)]
        return out
    results = jax.device_get(jax.jit(run)([c.x for c in cases]))
    labels = [f"{c.loss.name} {c.kwargs} {what}" for c in cases
              for what in [*c.reductions, f"{c.grad_reduction} .grad",
                           f"{c.grad_reduction} jax.grad"]]
    for label, (got, want) in zip(labels, results):
        assert np.all(np.isfinite(got)), label
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=label)


def hessian_diagonal(fn, x):
    n = x.size
    return jnp.diagonal(jax.hessian(fn)(x).reshape(n, n)).reshape(x.shape)


# -- classification ---------------------------------------------------------------------------

def test_poly_loss_cross_entropy_matches_optax():
    z = normal(6, 5, scale=2.0).at[0, :2].set(jnp.asarray([1e4, -1e4]))
    soft = jax.nn.softmax(normal(6, 5))
    labels = jnp.asarray([0, 4, 2, 1, 3, 2])
    hard = jax.nn.one_hot(labels, 5, dtype=z.dtype)
    poly = optax.losses.poly_loss_cross_entropy
    assert_matches_optax(
        case(lj.poly_loss_cross_entropy, z, soft, peer=reduced(lambda q: poly(q, soft))),
        case(lj.poly_loss_cross_entropy, z, soft, epsilon=-1.0, grad_reduction="sum",
             peer=reduced(lambda q: poly(q, soft, epsilon=-1.0))),
        case(lj.poly_loss_cross_entropy, z, labels, epsilon=0.5,    # integer labels = one-hot
             grad_reduction="none", peer=reduced(lambda q: poly(q, hard, epsilon=0.5))),
        # the class axis first
        case(lj.poly_loss_cross_entropy, z.T, soft.T, axis=0,
             peer=reduced(lambda q: poly(q.T, soft))))
    hess, want = compiled(lambda q, t: (
        lj.poly_loss_cross_entropy.hess_diag(q, t, epsilon=0.5, reduction="sum"),
        hessian_diagonal(lambda u: jnp.sum(poly(u, t, epsilon=0.5)), q)), z[1:], soft[1:])
    np.testing.assert_allclose(hess, want, rtol=1e-9, atol=1e-13)
    with pytest.raises(ValueError, match=r"`epsilon` must lie in \[-1, inf\]"):
        lj.poly_loss_cross_entropy(z, soft, epsilon=-2.0)


def test_perceptron_and_multiclass_hinge_match_optax_ties_included():
    scores = jnp.asarray([[0.0, 1.5, -2.0], [0.0, -0.5, 3.0], [1.0, -1.0, 0.25]])
    signs = jnp.asarray([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    # rows: a 2-way tie with the label, a 3-way tie, no tie, the label's margin exactly 1
    z = jnp.concatenate([normal(4, 4, scale=2.0), jnp.asarray(
        [[2.0, 2.0, 0.0, -1.0], [1.0, 1.0, 1.0, 0.0], [0.5, 3.0, -1.0, 0.0],
         [1.0, 0.0, -2.0, -1.0]])])
    labels = jnp.asarray([0, 1, 2, 3, 1, 2, 0, 0])
    assert_matches_optax(
        case(lj.perceptron, scores, signs, peer=reduced(
            lambda q: optax.losses.perceptron_loss(q, signs))),
        case(lj.multiclass_perceptron, z, labels, grad_reduction="sum", peer=reduced(
            lambda q: optax.losses.multiclass_perceptron_loss(q, labels))),
        case(lj.multiclass_hinge, z, labels, grad_reduction="none", peer=reduced(
            lambda q: optax.losses.multiclass_hinge_loss(q, labels))))
    # the tie rule: 1/k of the max's derivative to each of k tied classes
    g = compiled(lj.multiclass_perceptron.grad, z[5:6], labels[5:6], reduction="sum")
    np.testing.assert_allclose(g, [[1 / 3, 1 / 3, -2 / 3, 0.0]])


def test_sparsemax_losses_match_optax():
    scores = jnp.asarray([1.0, -1.0, 1.0, -1.0, 0.0, 0.5, -0.5, 2.0, -3.0, 0.25])
    flags = jnp.asarray([1, 1, 0, 0, 1, 0, 1, 1, 0, 0])
    # rows: random; two classes on the threshold; one on it; uniform; saturated
    z = jnp.concatenate([normal(4, 4, scale=1.5), jnp.asarray(
        [[1.0, 0.0, 0.0, -1.0], [1.0, 0.5, 0.25, -1.0], [0.25, 0.25, 0.25, 0.25],
         [1e4, 0.0, 0.0, -1e4]])])
    labels = jnp.asarray([0, 1, 2, 3, 0, 2, 1, 3])
    assert_matches_optax(
        case(lj.sparsemax, scores, flags, peer=reduced(
            lambda q: optax.losses.sparsemax_loss(q, flags))),
        case(lj.sparsemax, scores, flags.astype(jnp.float64), grad_reduction="none",
             peer=reduced(lambda q: optax.losses.sparsemax_loss(q, flags))),
        case(lj.multiclass_sparsemax, z, labels, grad_reduction="sum", peer=reduced(
            lambda q: optax.losses.multiclass_sparsemax_loss(q, labels))))
    grad, projection, hess = compiled(lambda q, s: (
        lj.multiclass_sparsemax.grad(q, labels, reduction="sum"),
        jax.vmap(optax.projections.projection_simplex)(q),
        lj.sparsemax.hess_diag(s, flags, reduction="none")), z, scores)
    # the gradient is p - e_y, p the projection onto the simplex
    np.testing.assert_allclose(grad, projection - np.eye(4)[labels], atol=1e-12)
    # binary: second derivative 1/2 inside |z| < 1, 1/4 on its edge, 0 outside
    np.testing.assert_allclose(hess, [0.25] * 4 + [0.5] * 3 + [0.0] * 2 + [0.5])


def _sparsemax_max(s):
    """max over the simplex of <p, s> + (1 - |p|^2) / 2, from optax's projection."""
    p = optax.projections.projection_simplex(s)
    return jnp.dot(p, s) + 0.5 * (1 - jnp.dot(p, p))


def test_fenchel_young_builds_cross_entropy_and_the_sparsemax_loss():
    z = normal(5, 4, scale=2.0)
    soft = jax.nn.softmax(normal(5, 4))
    labels = jnp.asarray([0, 3, 1, 2, 2])
    hard = jax.nn.one_hot(labels, 4, dtype=z.dtype)
    log_loss = lj.fenchel_young(jax.nn.logsumexp)
    log_loss_closed = lj.fenchel_young(jax.nn.logsumexp, argmax_fun=jax.nn.softmax,
                                       name="softmax_fy")
    sparse = lj.fenchel_young(_sparsemax_max)
    sparse_closed = lj.fenchel_young(_sparsemax_max,
                                     argmax_fun=optax.projections.projection_simplex)
    assert isinstance(log_loss, lj.Loss) and log_loss.name == "fenchel_young_logsumexp"
    assert log_loss_closed.name == "softmax_fy"
    assert all(f.name not in [loss.name for loss in lj.catalog()]
               for f in (log_loss, log_loss_closed, sparse))
    optax_fy = optax.losses.make_fenchel_young_loss(jax.nn.logsumexp)
    assert_matches_optax(*[case(f, z, t, peer=reduced(lambda q, t=t: optax_fy(q, t)))
                           for f, t in ((log_loss, soft), (log_loss_closed, hard))])

    def routes(q):
        return [(f(q, t, reduction=r), g(q, t2, reduction=r), f.grad(q, t, reduction=r),
                 g.grad(q, t2, reduction=r))
                for f, g, t, t2 in ((log_loss, lj.cross_entropy, soft, soft),
                                    (log_loss_closed, lj.cross_entropy, hard, labels),
                                    (sparse, lj.multiclass_sparsemax, hard, labels),
                                    (sparse_closed, lj.multiclass_sparsemax, hard, labels))
                for r in ("none", "sum")]
    for ours, same, ours_grad, same_grad in compiled(routes, z):
        np.testing.assert_allclose(ours, same, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours_grad, same_grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="`targets` has shape"):
        log_loss(z, soft[:, :3])


def test_ranking_softmax_matches_optax_with_where_and_weights():
    scores = normal(5, 4, scale=2.0)
    labels = jnp.asarray([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0], [3.0, 1.0, 0.0, 0.0],
                          [1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]])
    item_where = jnp.asarray([[True, True, False, True], [True] * 4, [False, True, True, True],
                              [False] * 4, [True, False, True, True]])
    item_weights = jnp.asarray(RNG.uniform(0.5, 2.0, (5, 4)))
    fns = {"none": None, "sum": jnp.sum, "mean": jnp.mean}

    def peer(**options):
        return lambda q, r: optax.losses.ranking_softmax_loss(q, labels, reduce_fn=fns[r],
                                                              **options)
    assert_matches_optax(
        case(lj.ranking_softmax, scores, labels, peer=peer()),
        case(lj.ranking_softmax, scores, labels, item_where=item_where, grad_reduction="sum",
             peer=peer(where=item_where)),
        case(lj.ranking_softmax, scores, labels, item_where=item_where, item_weights=item_weights,
             peer=peer(where=item_where, weights=item_weights)))
    # optax's docstring example: 1.408
    assert float(lj.ranking_softmax(jnp.asarray([2.0, 1.0, 3.0]), jnp.asarray([1.0, 0, 0]))) \
        == pytest.approx(np.log(np.exp(2) + np.exp(1) + np.exp(3)) - 2)


# -- divergences ------------------------------------------------------------------------------

def test_generalized_kl_divergence_matches_optax_and_has_finite_gradients_at_zero_targets():
    log_q = normal(5, 4)
    t = jnp.asarray(RNG.uniform(0.1, 2.0, (5, 4))).at[0, 1].set(0.0).at[3, 2].set(0.0)
    assert lj.convex_kl_divergence is lj.generalized_kl_divergence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # optax deprecated the name
        convex = optax.losses.convex_kl_divergence(log_q, t)
    np.testing.assert_allclose(convex, optax.losses.generalized_kl_divergence(log_q, t))
    assert_matches_optax(
        case(lj.generalized_kl_divergence, log_q, t, peer=reduced(
            lambda q: optax.losses.generalized_kl_divergence(q, t))),
        case(lj.generalized_kl_divergence, log_q.T, t.T, axis=0, grad_reduction="sum",
             peer=reduced(lambda q: optax.losses.generalized_kl_divergence(q, t.T, axis=0))))

    # w.r.t. the targets: optax's gradient is log t - log q where t > 0 and NaN at t = 0;
    # ours is the same where t > 0 and -1 (d/dt of t log(t/q) taken as 0) at t = 0
    def routes(lq, tt):
        return (jax.grad(lambda u: lj.generalized_kl_divergence(lq, u, reduction="sum"))(tt),
                jax.grad(lambda u: jnp.sum(optax.losses.generalized_kl_divergence(lq, u)))(tt),
                lj.generalized_kl_divergence.hess_diag(lq, tt, reduction="sum"),
                hessian_diagonal(lambda u: jnp.sum(
                    optax.losses.generalized_kl_divergence(u, tt)), lq))
    ours, theirs, hess, want_hess = compiled(routes, log_q, t)
    positive = np.asarray(t) > 0
    np.testing.assert_allclose(ours[positive], theirs[positive], rtol=1e-12)
    np.testing.assert_array_equal(ours[~positive], -1.0)
    assert np.all(np.isnan(theirs[~positive]))
    np.testing.assert_allclose(hess, want_hess, rtol=1e-12)


def test_l2_loss_matches_optax():
    p, t = normal(6, 5), normal(6, 5)
    assert_matches_optax(case(lj.l2_loss, p, t, peer=reduced(
        lambda q: optax.losses.l2_loss(q, t))))
    hess, want = compiled(lambda q: (
        lj.l2_loss.hess_diag(q, t, reduction="mean"),
        hessian_diagonal(lambda u: jnp.mean(optax.losses.l2_loss(u, t)), q)), p)
    np.testing.assert_allclose(hess, want, rtol=1e-12)
    # optax's targets=None is zeros
    np.testing.assert_allclose(lj.l2_loss(p, jnp.zeros_like(p), reduction="none"),
                               optax.losses.l2_loss(p))


def test_cosine_similarity_and_distance_match_optax():
    a, b = normal(6, 4), normal(6, 4)
    short = a.at[1].multiply(0.05).at[4].multiply(0.1)      # squared norms below epsilon
    sim, dist = optax.losses.cosine_similarity, optax.losses.cosine_distance
    assert_matches_optax(
        case(lj.cosine_similarity, a, b, peer=reduced(lambda q: sim(q, b))),
        case(lj.cosine_similarity, short, b, epsilon=0.1, grad_reduction="sum",
             peer=reduced(lambda q: sim(q, b, epsilon=0.1))),
        case(lj.cosine_similarity, a.T, b.T, axis=0, grad_reduction="none",
             peer=reduced(lambda q: sim(q, b.T, axis=0))),
        case(lj.cosine_distance, a, b, peer=reduced(lambda q: dist(q, b))),
        case(lj.cosine_distance, short, b, epsilon=0.1, grad_reduction="sum",
             peer=reduced(lambda q: dist(q, b, epsilon=0.1))))

    def wrt_targets(q, u):         # the targets' gradient, short targets included
        return [(lj.cosine_similarity.grad(q, u, epsilon=0.1, wrt="targets"),
                 jax.grad(lambda v: jnp.mean(sim(q, v, epsilon=0.1)))(u)),
                (lj.cosine_distance.grad(q, u, wrt="targets"),
                 jax.grad(lambda v: jnp.mean(dist(q, v)))(u))]
    for got, want in compiled(wrt_targets, b, short):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_cosine_at_zero_vectors_is_finite_where_optax_is_nan():
    a = jnp.asarray([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    b = jnp.asarray([[1.0, 1.0, 0.0], [2.0, 4.0, 4.0]])
    assert np.isnan(optax.losses.cosine_similarity(a, b)[0])

    def routes(q):
        return [(loss(q, b, reduction="none", **kw), loss.grad(q, b, reduction="sum", **kw),
                 jax.grad(lambda u: loss(u, b, reduction="sum", **kw))(q))
                for loss in (lj.cosine_similarity, lj.cosine_distance)
                for kw in ({}, {"epsilon": 0.25})]
    (sim, g_sim, auto_sim), (sim_eps, g_eps, _), (dist, g_dist, _), (dist_eps, _, _) = \
        compiled(routes, a)
    # epsilon = 0: the zero vector's cosine is 0 with gradient 0; parallel vectors give 1
    np.testing.assert_allclose(sim, [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(dist, [1.0, 0.0], atol=1e-15)
    assert np.all(g_sim[0] == 0) and np.all(auto_sim[0] == 0)
    np.testing.assert_allclose(g_sim[1], 0.0, atol=1e-15)           # a maximum of cos
    np.testing.assert_allclose(g_dist, -g_sim, atol=1e-15)
    # epsilon = 1/4: the clipped norm 1/2: d cos/d a = b / (|b| / 2) there, as optax's
    np.testing.assert_allclose(sim_eps, [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(g_eps[0], 2 * b[0] / jnp.linalg.norm(b[0]), rtol=1e-14)
    np.testing.assert_allclose(g_eps[0], jax.grad(lambda u: optax.losses.cosine_similarity(
        u, b[0], epsilon=0.25))(a[0]), rtol=1e-14)
    np.testing.assert_allclose(dist_eps, 1 - sim_eps, atol=1e-15)


# -- NT-Xent, optax's labelled form ---------------------------------------------------------

def test_ntxent_with_labels_matches_optax():
    e = normal(6, 3)
    labels = jnp.asarray([0, 0, 1, 1, 1, 2])     # anchor 5 has no positive
    assert_matches_optax(*[
        case(lj.ntxent, e, labels, temperature=tau, reductions=("mean",),
             peer=lambda q, r, tau=tau: optax.losses.ntxent(q, labels, tau))
        for tau in (0.07, 0.5)], rtol=1e-9)

    def routes(q, z2):
        n = q.shape[0]
        paired = jnp.concatenate([q, z2])
        both = jnp.concatenate([jnp.arange(n), jnp.arange(n)])
        return (lj.ntxent(q, labels, reduction="sum"), lj.ntxent(q, labels),
                lj.ntxent.count(q, labels),
                lj.ntxent(q, z2, temperature=0.3, reduction="none"),
                lj.ntxent(paired, both, temperature=0.3, reduction="none"),
                optax.losses.ntxent(paired, both, 0.3))
    total, mean, pairs, paired, labelled, optax_paired = compiled(routes, e, normal(6, 3))
    assert pairs == 2 + 6                        # ordered positive pairs
    np.testing.assert_allclose(total, mean * pairs, rtol=1e-12)
    # the paired form is the labelled one on [z1; z2], one positive per anchor
    np.testing.assert_allclose(paired, labelled, rtol=1e-12)
    np.testing.assert_allclose(np.mean(paired), optax_paired, rtol=1e-9)


def test_ntxent_with_labels_edge_cases_and_its_hand_derived_gradient():
    e = normal(5, 3).at[2].set(0.0)                   # a zero vector
    labels = jnp.asarray([3, 1, 3, 1, 3])
    weights = jnp.asarray(RNG.uniform(0.5, 2.0, 5))
    where = jnp.asarray([True, False, True, True, True])
    variants = [dict(weights=weights), dict(where=where, reduction="sum"),
                dict(reduction="none")]
    no_pair = jnp.arange(5)                           # every anchor alone in its class
    one_class = jnp.zeros(5, jnp.int32)               # no negatives anywhere

    def routes(q):
        grads = [(lj.ntxent.grad(q, labels, temperature=0.2, **v),
                  jax.grad(lambda u: jnp.sum(lj.ntxent(u, labels, temperature=0.2, **v)))(q))
                 for v in variants]
        jvps = [jax.jvp(lambda u: f(u, labels, temperature=0.2), (q,), (jnp.ones_like(q),))[1]
                for f in (lj.ntxent.with_analytic_vjp(), lj.ntxent)]
        specials = [(lj.ntxent(q, y), jax.grad(lambda u: lj.ntxent(u, y))(q),
                     lj.ntxent.grad(q, y), optax.losses.ntxent(q, y))
                    for y in (no_pair, one_class)]
        return grads, jvps, specials
    grads, (jvp_analytic, jvp_auto), (none, single) = compiled(routes, e)
    for got, want in grads:
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(jvp_analytic, jvp_auto, rtol=1e-10)
    # no positive pair: mean 0 with zero gradients (optax: NaN, 0 / 0); one class: every
    # pair's loss is log(e^s / e^s) = 0 (as optax)
    assert np.isnan(none[3]) and abs(single[3]) < 1e-12
    for value, auto, analytic, _ in (none, single):
        assert value == 0.0 and np.all(auto == 0) and np.all(analytic == 0)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(5,\)"):
        lj.ntxent(e, labels[:4])
    with pytest.raises(ValueError, match="no hand-derived derivative w.r.t. `z2`"):
        lj.ntxent.grad(e, labels, wrt="z2")
    with pytest.raises(TypeError, match="`z2` must be the second views"):
        lj.ntxent(e, labels > 1)
