"""ArcFace, CosFace, SupCon, lifted structured and multi-similarity losses against independent
float64 PyTorch re-implementations of their reference semantics (InsightFace's margin heads,
HobbitLong's SupConLoss, pytorch-metric-learning's LiftedStructureLoss, the multi-similarity
authors' code): values under each reduction, and our .grad and jax.grad against torch's
backward, for the default and a non-default setting."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossjax as lj
from conftest import compiled
from lossjax.losses.metric_pairs import _mining_check

KEY = jax.random.PRNGKey(0)


def ours(loss, args, kwargs):
    """Values under each reduction, .grad and jax.grad of the mean: one program."""
    def run(*a, **k):
        out = {r: loss(*a, reduction=r, **k) for r in ("mean", "sum", "none")}
        out["grad"] = loss.grad(*a, **k)
        out["auto"] = jax.grad(lambda q: loss(q, *a[1:], **k))(a[0])
        return out
    return compiled(run, *args, **kwargs)


def torch_route(fn, x, *rest):
    """fn's value at x (float64) and its gradient by backward."""
    t = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    value = fn(t, *rest)
    value.backward()
    return value.detach().numpy(), t.grad.numpy()


def assert_same(got, want, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


def check_against(loss, args, kwargs, reference, rtol=1e-10, atol=1e-12, skip=None):
    """ours vs reference(x, reduction) -> torch scalar or vector, for every reduction, and
    the gradient of the mean by all three routes, except at entries ``skip`` (where the
    reference's gradient is not finite)."""
    got = ours(loss, args, kwargs)
    value, grad = torch_route(lambda t: reference(t, "mean"), args[0])
    assert_same(got["mean"], value, rtol, atol)
    keep = np.ones(grad.shape, bool) if skip is None else ~skip
    np.testing.assert_array_equal(np.isfinite(grad), keep)
    for route in ("grad", "auto"):
        assert np.all(np.isfinite(got[route]))
        assert_same(got[route][keep], grad[keep], rtol, atol)
    with torch.no_grad():
        x = torch.tensor(np.asarray(args[0]))
        assert_same(got["sum"], reference(x, "sum").numpy(), rtol, atol)
        assert_same(got["none"], reference(x, "none").numpy(), rtol, atol)


# -- ArcFace / CosFace: InsightFace's heads, then F.cross_entropy ------------------------------

def insightface_logits(cos, labels, scale, margin, easy_margin, kind):
    onehot = F.one_hot(labels.clamp(min=0), cos.shape[-1]).to(cos.dtype)
    if kind == "cosface":
        target = cos - margin
    else:
        sine = torch.sqrt((1.0 - cos ** 2).clamp(0, 1))
        phi = cos * math.cos(margin) - sine * math.sin(margin)
        if easy_margin:
            target = torch.where(cos > 0, phi, cos)
        else:
            th, mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin
            target = torch.where(cos > th, phi, cos - mm)
    return scale * (onehot * target + (1 - onehot) * cos)


def margin_reference(labels, kind, scale, margin, easy_margin=False):
    labels = torch.tensor(np.asarray(labels), dtype=torch.long)

    def reference(cos, reduction):
        logits = insightface_logits(cos, labels, scale, margin, easy_margin, kind)
        return F.cross_entropy(logits, labels, ignore_index=-100, reduction=reduction)
    return reference


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_margin_softmax_matches_insightface_heads(name):
    loss = lj.get(name)
    (cos, labels), _ = loss.sample(KEY, jnp.float64)            # one label ignored
    defaults = {"arcface": (64.0, 0.5), "cosface": (64.0, 0.35)}[name]
    check_against(loss, (cos, labels), {}, margin_reference(labels, name, *defaults))
    other = {"scale": 30.0, "margin": 0.3}
    if name == "arcface":                     # cosines on both sides of 0, easy_margin's switch
        other["easy_margin"] = True
    check_against(loss, (cos, labels), other,
                  margin_reference(labels, name, 30.0, 0.3, other.get("easy_margin", False)))
    # the edge rows: the fallback (target cosine -1 < cos(pi - m)), ties, cosines +-1. The
    # reference's backward is NaN at every cosine of +-1 (it takes the sine of every entry,
    # then multiplies the unused ones' infinite derivative by 0); lossjax's is finite there
    # (at a target cosine of 1 see the next test)
    (cos, labels), _ = loss.sample(KEY, jnp.float64, "edge")
    skip = (np.abs(np.asarray(cos)) == 1) & (name == "arcface")
    check_against(loss, (cos, labels), {}, margin_reference(labels, name, *defaults), skip=skip)


def test_arcface_at_a_target_cosine_of_one_uses_cos_m():
    """d cos(theta + m) / d cos(theta) -> +inf as theta -> 0: the reference's backward is not
    finite there; lossjax's .grad and autodiff use the declared finite value cos m."""
    cos = jnp.asarray([[1.0, 0.5, 0.0, -0.5]])
    labels = jnp.asarray([0])
    s, m = 4.0, 0.5
    value, g, auto = compiled(lambda c, y: (
        lj.arcface(c, y, scale=s, margin=m), lj.arcface.grad(c, y, scale=s, margin=m),
        jax.grad(lambda q: lj.arcface(q, y, scale=s, margin=m))(c)), cos, labels)
    logits = s * np.asarray([math.cos(m), 0.5, 0.0, -0.5])
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert_same(value, -np.log(p[0]))
    want = s * (p - [1, 0, 0, 0]) * [math.cos(m), 1, 1, 1]
    assert_same(g[0], want)
    assert_same(auto[0], want)
    reference = margin_reference(labels, "arcface", s, m)
    _, torch_grad = torch_route(lambda t: reference(t, "mean"), cos)
    assert not np.isfinite(torch_grad[0, 0])


def test_cosface_is_cross_entropy_on_shifted_scaled_cosines_and_cosine_logits():
    (cos, labels), kw = lj.cosface.sample(KEY, jnp.float64)
    e, w = (jax.random.normal(k, shape, jnp.float64)
            for k, shape in zip(jax.random.split(KEY), [(6, 3), (5, 3)]))
    shifted, direct, logits = compiled(lambda c, y, e, w: (
        lj.cross_entropy(30.0 * (c - 0.4 * jax.nn.one_hot(y, 5)), y), lj.cosface(c, y, **kw),
        lj.cosine_logits(e, w)), cos, labels, e, w)
    assert kw == {"scale": 30.0, "margin": 0.4}
    assert_same(direct, shifted)
    te, tw = torch.tensor(np.asarray(e)), torch.tensor(np.asarray(w))
    assert_same(logits, (F.normalize(te) @ F.normalize(tw).T).numpy())


# -- SupCon: HobbitLong's SupConLoss ----------------------------------------------------------

def hobbitlong_supcon(features, labels, temperature, base_temperature, per_anchor=False):
    """SupConLoss(contrast_mode='all') on features [bsz, n_views, D] (already normalised)."""
    bsz, views = features.shape[:2]
    mask = (labels[:, None] == labels[None, :]).double()
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    mask = mask.repeat(views, views)
    not_self = 1 - torch.eye(bsz * views, dtype=torch.float64)
    mask = mask * not_self
    exp_logits = torch.exp(logits) * not_self
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-9)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss if per_anchor else loss.view(views, bsz).mean()


def test_supcon_matches_hobbitlong_on_two_views():
    rng = np.random.default_rng(0)
    labels = np.asarray([0, 1, 0, 2])                 # class 2 once, but with two views
    views = rng.standard_normal((4, 2, 3))
    flat = np.concatenate([views[:, 0], views[:, 1]])    # views along axis 0
    flat_labels = jnp.asarray(np.tile(labels, 2))
    t_labels = torch.tensor(labels)

    for kw in ({}, {"temperature": 0.2, "base_temperature": 0.1}):
        tau, base = kw.get("temperature", 0.07), kw.get("base_temperature", 0.07)
        got = ours(lj.supcon, (jnp.asarray(flat), flat_labels), kw)
        value, grad = torch_route(lambda f: hobbitlong_supcon(F.normalize(f, dim=-1), t_labels,
                                                              tau, base), views)
        # HobbitLong adds 1e-9 to the log's denominator (sum over the batch >= e^-2/tau here)
        assert_same(got["mean"], value, rtol=1e-7, atol=0)
        flat_grad = np.concatenate([grad[:, 0], grad[:, 1]])
        for route in ("grad", "auto"):
            assert_same(got[route], flat_grad, rtol=1e-6, atol=1e-9)
        assert_same(got["sum"], got["mean"] * 8, rtol=1e-12)


def test_supcon_masks_anchors_without_positives_where_hobbitlong_gives_nan():
    (z, labels), kw = lj.supcon.sample(KEY, jnp.float64)        # class 3 appears once
    with torch.no_grad():
        per_anchor = hobbitlong_supcon(F.normalize(torch.tensor(np.asarray(z)))[:, None],
                                       torch.tensor(np.asarray(labels)), **kw,
                                       per_anchor=True).numpy()
    lonely = np.asarray(labels) == 3
    assert np.isnan(per_anchor[lonely]).all() and np.isfinite(per_anchor[~lonely]).all()
    (none, mean), count = compiled(lambda z, y: (
        (lj.supcon(z, y, reduction="none", **kw), lj.supcon(z, y, **kw)),
        lj.supcon.count(z, y, **kw)), z, labels)
    # HobbitLong's 1e-9 in the log's denominator, whose sum is 0.04 here: 2.5e-8 apart
    assert_same(none[~lonely], per_anchor[~lonely], rtol=1e-7, atol=1e-7)
    assert none[lonely] == 0 and count == 7
    assert_same(mean, per_anchor[~lonely].mean(), rtol=1e-7, atol=1e-7)


def test_zero_rows_in_float32_give_finite_values_and_gradients():
    """A zero row has similarity 0 with every row (F.normalize's convention); its gradient,
    of order 1e8 (1 / normalize's eps), is finite and agrees with autodiff."""
    # supcon at a temperature where HobbitLong's 1e-9 in the log is negligible (at the edge
    # sample's 0.05, an anchor opposite to its positive has a sum of e^-40 there)
    supcon_kw = {"temperature": 0.5, "base_temperature": 0.07}
    for loss, kw in ((lj.multi_similarity, {}), (lj.supcon, supcon_kw)):
        (z, labels), _ = loss.sample(KEY, jnp.float32, "edge")
        z = z.at[-1].set(0.0)
        value, g, auto = compiled(lambda z, y: (
            loss(z, y, reduction="none", **kw), loss.grad(z, y, **kw),
            jax.grad(lambda q: loss(q, y, **kw))(z)), z, labels)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, auto, rtol=1e-4, atol=1e-4 * np.abs(auto).max())
    # supcon's (the last) values against HobbitLong: the zero row's anchor has a positive,
    # anchor 4 none
    with torch.no_grad():
        want = hobbitlong_supcon(F.normalize(torch.tensor(np.asarray(z, np.float64)))[:, None],
                                 torch.tensor(np.asarray(labels)), **kw, per_anchor=True)
    keep = np.isfinite(want.numpy())
    assert keep.sum() == 5
    assert_same(value[keep], want.numpy()[keep], rtol=1e-5, atol=1e-5)


# -- lifted structured: pytorch-metric-learning's LiftedStructureLoss --------------------------

def pml_lifted_structure(labels, neg_margin):
    """LiftedStructureLoss(neg_margin, pos_margin=0): per ordered positive pair, the log-sum-exp
    over the negatives of both members, squared hinge, halved; "none" gives the unordered
    pairs i < j as an (N, N) array (both orders are equal)."""
    labels = np.asarray(labels)
    n = len(labels)
    pairs = [(a, p) for a in range(n) for p in range(n) if a != p and labels[a] == labels[p]]

    def reference(e, reduction):
        d = torch.sqrt(((e[:, None] - e[None]) ** 2).sum(-1) + torch.eye(n)) * (1 - torch.eye(n))
        losses = []
        for a, p in pairs:
            negatives = torch.tensor(labels != labels[a])
            terms = torch.cat([neg_margin - d[a, negatives], neg_margin - d[p, negatives]])
            losses.append(torch.relu(torch.logsumexp(terms, 0) + d[a, p]) ** 2 / 2)
        losses = torch.stack(losses)
        if reduction == "none":
            out = torch.zeros(n, n, dtype=torch.float64)
            for (a, p), v in zip(pairs, losses):
                if a < p:
                    out[a, p] = v
            return out
        # each unordered pair twice: the sum over them is half the sum over ordered pairs
        return losses.mean() if reduction == "mean" else losses.sum() / 2
    return reference


def test_lifted_structured_matches_pytorch_metric_learning():
    (e, labels), kw = lj.lifted_structured.sample(KEY, jnp.float64)
    for margin in (kw["margin"], 0.5):
        check_against(lj.lifted_structured, (e, labels), {"margin": margin},
                      pml_lifted_structure(labels, margin))
    # the elements are the unordered positive pairs, so the mean is the paper's
    # J = sum_P max(0, J_ij)^2 / (2 |P|)
    same = np.asarray(labels)[:, None] == np.asarray(labels)[None, :]
    assert compiled(lj.lifted_structured.count, e, labels) == np.triu(same, 1).sum() == 7
    # duplicates (zero distances) give the reference's value
    (e, labels), kw = lj.lifted_structured.sample(KEY, jnp.float64, "edge")
    reference = pml_lifted_structure(labels, kw["margin"])
    with torch.no_grad():
        want = reference(torch.tensor(np.asarray(e)), "mean").numpy()
    assert_same(compiled(lj.lifted_structured, e, labels, **kw), want)


# -- multi-similarity: the authors' code (msight-tech/research-ms-loss) ---------------------

def ms_authors(labels, alpha, beta, base, epsilon):
    """The authors' MultiSimilarityLoss on normalised features, the anchor excluded by index;
    anchors without pairs are skipped (the authors' code needs every anchor to have both).
    Returns the sum over anchors (their loss is it divided by the batch size)."""
    labels = np.asarray(labels)

    def reference(z, reduction):
        u = F.normalize(z, dim=-1)
        sim = u @ u.T
        out = []
        for i in range(len(labels)):
            pos = torch.tensor((labels == labels[i]) & (np.arange(len(labels)) != i))
            neg = torch.tensor(labels != labels[i])
            if not pos.any() or not neg.any():
                out.append(torch.zeros((), dtype=torch.float64))
                continue
            pos_pair, neg_pair = sim[i][pos], sim[i][neg]
            kept_neg = neg_pair[neg_pair + epsilon > pos_pair.min()]
            kept_pos = pos_pair[pos_pair - epsilon < neg_pair.max()]
            if len(kept_neg) < 1 or len(kept_pos) < 1:
                out.append(torch.zeros((), dtype=torch.float64))
                continue
            out.append(torch.log(1 + torch.exp(-alpha * (kept_pos - base)).sum()) / alpha
                       + torch.log(1 + torch.exp(beta * (kept_neg - base)).sum()) / beta)
        out = torch.stack(out)
        return out if reduction == "none" else out.sum()
    return reference


def test_multi_similarity_matches_the_authors_code():
    for kind in ("generic", "edge"):
        (z, labels), _ = lj.multi_similarity.sample(KEY, jnp.float64, kind)
        valid = 7                                    # class 3 appears once: masked
        reference = ms_authors(labels, 2.0, 50.0, 0.5, 0.1)
        got = ours(lj.multi_similarity, (z, labels), {})
        value, grad = torch_route(lambda t: reference(t, "sum"), z)
        # the edge's last row is zero: F.normalize divides it by 1e-12, lossjax by 1e-8
        grad[np.all(np.asarray(z) == 0, axis=1)] *= 1e-12 / 1e-8
        assert_same(got["sum"], value)
        assert_same(got["mean"], value / valid)
        for route in ("grad", "auto"):
            assert_same(got[route], grad / valid)
        with torch.no_grad():
            assert_same(got["none"], reference(torch.tensor(np.asarray(z)), "none").numpy())
    # a non-default setting, on a draw whose similarities clear its mining thresholds
    other = {"alpha": 1.0, "beta": 40.0, "base": 0.4, "epsilon": 0.2}
    z, labels = next((z, labels) for seed in range(50)
                     for (z, labels), _ in [lj.multi_similarity.sample(
                         jax.random.PRNGKey(seed), jnp.float64)]
                     if _mining_check(z, np.asarray(labels), 0.2)[0] > 0.02)
    got = ours(lj.multi_similarity, (z, labels), other)
    value, grad = torch_route(lambda t: ms_authors(labels, 1.0, 40.0, 0.4, 0.2)(t, "sum"), z)
    assert_same(got["sum"], value)
    for route in ("grad", "auto"):
        assert_same(got[route], grad / 7)


def test_perfect_separation_mines_nothing_and_errors_name_the_argument():
    s = lj.multi_similarity.sample(KEY, jnp.float64)
    perfect = lj.multi_similarity.perfect(s)
    assert compiled(lj.multi_similarity, *perfect.args, reduction="sum") == 0.0
    e = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"supcon: `labels` must have shape \(4,\)"):
        lj.supcon(e, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        lj.lifted_structured(jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32))
    with pytest.raises(ValueError, match=r"arcface: `margin` must lie in \[0, 3.14"):
        lj.arcface(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), margin=-0.1)
    with pytest.raises(TypeError, match="cosface: `labels` must hold integer class indices"):
        lj.cosface(jnp.zeros((2, 3)), jnp.zeros(2))
