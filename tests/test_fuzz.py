"""Property-based fuzzing of the whole catalogue (hypothesis), driven by each loss's own
sampler (its declared domain: generic and edge inputs) and its declared properties
(``Loss.nonnegative``, ``Loss.perfect``).

For every draw, in float32 as users run it:
- value, autodiff gradients (every float argument) and the hand-derived ``.grad`` are finite;
- the per-element values are >= 0 where the loss declares it, and 0 at its perfect
  prediction where it has one;
- reductions: sum = sum of the elements = mean x ``count``; weights of ones and a mask of all
  True change nothing;
- permuting the batch permutes the elements and leaves the mean unchanged;
- vmap over two stacked inputs = a loop.

(jit = no jit is tests/test_loss_object.py's: an eager call compiles every primitive of the
loss on its own, which cost this file 40% of its time when each draw made one.)

The example budget per (loss, kind) is LOSSJAX_FUZZ_EXAMPLES (default 2, what `make test`
runs; `LOSSJAX_FUZZ_EXAMPLES=200 pytest tests/test_fuzz.py` for a long run, which also
switches from the fixed derandomised draws to fresh random ones). The number of examples that
ran is printed at the end of the session.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lossjax as lj
from lossjax._compile import fast_jit
from conftest import NAMES, mean_numerator

EXAMPLES = int(os.environ.get("LOSSJAX_FUZZ_EXAMPLES", "2"))
RTOL = 2e-5                # float32 sums in another order; eps is 1.2e-7
PERFECT_ATOL = 8 * float(jnp.finfo(jnp.float32).eps)


def _split(kwargs):
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    return arrays, tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))


def _permute(loss, args, kwargs, perm):
    """The batch arguments (and array keywords among them) reordered along axis 0."""
    names = list(loss._signature.parameters)
    n = np.shape(args[names.index(loss.batch_args[0])])[0]

    def take(name, x):
        return jnp.take(x, perm, axis=0) if loss._carries_batch(name, x, n) else x
    return (tuple(take(names[i], a) for i, a in enumerate(args)),
            {k: take(k, v) for k, v in kwargs.items()})


@functools.lru_cache(maxsize=None)
def _bundle(name, static):
    """Everything checked on one draw, in one compiled program per (loss, shapes)."""
    loss = lj.get(name)
    static = dict(static)

    def bundle(args, kwargs, permuted, permuted_kwargs, perfect):
        kw = {**kwargs, **static}
        f = lambda *a: loss(*a, **kw)                          # noqa: E731
        elements = loss(*args, reduction="none", **kw)
        floats = tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating))
        out = {
            "mean": f(*args), "sum": loss(*args, reduction="sum", **kw), "none": elements,
            "count": loss.count(*args, **kw),
            "ones": loss(*args, weights=jnp.ones(elements.shape, elements.dtype), **kw),
            "all_true": loss(*args, where=jnp.ones(elements.shape, bool), **kw),
            "autodiff": jax.grad(f, argnums=floats)(*args),
            "permuted_mean": loss(*permuted, **{**permuted_kwargs, **static}),
            "permuted_none": loss(*permuted, reduction="none", **{**permuted_kwargs, **static}),
            # vmap over the draw and its permutation, against the two separate means
            "vmapped": jax.vmap(lambda a, k: loss(*a, **{**k, **static}))(
                jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), args, permuted),
                jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), kwargs, permuted_kwargs)),
        }
        if loss.has_grad:
            out["analytic"] = loss.grad(*args, **kw)
        if perfect is not None:      # the perfect prediction's elements, in the same program
            out["perfect"] = loss(*perfect[0], reduction="none", **perfect[1], **static)
        return out
    return fast_jit(bundle)


@functools.lru_cache(maxsize=None)
def _elements(name, static):
    loss = lj.get(name)
    return jax.jit(lambda args, kwargs: loss(*args, reduction="none", **kwargs, **dict(static)))


def _close(got, want, scale, what):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=RTOL, atol=RTOL * scale, err_msg=what)


def check_draw(name, kind, seed):
    loss = lj.get(name)
    key = jax.random.PRNGKey(seed)
    s = loss.sample(key, jnp.float32, kind)
    kwargs, static = _split(s.kwargs)
    n = np.shape(s.args[list(loss._signature.parameters).index(loss.batch_args[0])])[0]
    perm = jax.random.permutation(jax.random.fold_in(key, 1), n)
    permuted, permuted_kwargs = _permute(loss, s.args, kwargs, perm)
    perfect = None
    if loss.perfect is not None:
        p = loss.perfect(s)
        p_kwargs, p_static = _split(p.kwargs)
        perfect = (p.args, p_kwargs) if p_static == static else None
    out = jax.device_get(_bundle(name, static)(s.args, kwargs, permuted, permuted_kwargs,
                                               perfect))
    where = f"{name} {kind} seed {seed}"

    for k, v in out.items():
        assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(v)), \
            f"{where}: {k} is not finite: {v}"
    elements = np.asarray(out["none"], np.float64)
    scale = max(1.0, float(np.max(np.abs(elements), initial=0.0)))
    if loss.nonnegative:
        assert np.all(elements >= 0), f"{where}: negative elements {elements[elements < 0]}"
    if loss.perfect is not None:
        zero = out["perfect"] if perfect is not None else \
            _elements(name, p_static)(p.args, p_kwargs)
        zero = np.asarray(zero, np.float64)
        assert np.max(np.abs(zero), initial=0.0) <= PERFECT_ATOL, f"{where}: perfect -> {zero}"

    count = float(out["count"])
    _close(out["sum"], elements.sum(), scale * elements.size, f"{where}: sum vs elements")
    _close(mean_numerator(name, elements, s.args, kwargs), float(out["mean"]) * count,
           scale * elements.size, f"{where}: sum = mean x count")
    if count == 0:
        assert float(out["mean"]) == 0.0
    _close(out["ones"], out["mean"], scale, f"{where}: weights of ones")
    _close(out["all_true"], out["mean"], scale, f"{where}: mask of all True")
    _close(out["permuted_mean"], out["mean"], scale, f"{where}: batch permutation")
    _close(np.sort(np.ravel(out["permuted_none"])), np.sort(elements.ravel()), scale,
           f"{where}: permuted elements")
    _close(out["vmapped"], [out["mean"], out["permuted_mean"]], scale, f"{where}: vmap = loop")


@pytest.mark.parametrize("kind", ["generic", "edge"])
@pytest.mark.parametrize("name", NAMES)
def test_fuzz_catalogue(name, kind, record_property):
    ran = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize="LOSSJAX_FUZZ_EXAMPLES" not in os.environ)
    @given(st.integers(0, 2 ** 31 - 1))
    def draws(seed):
        check_draw(name, kind, seed)
        ran.append(seed)

    draws()
    record_property("fuzz_examples", len(ran))
    assert ran


def test_declared_properties_are_declared_where_they_hold():
    """The declarations the fuzzing relies on: losses that can be negative say so."""
    can_be_negative = {"poisson_nll", "gaussian_nll", "poisson", "hinge_embedding",
                       "cosine_similarity", "minimax_generator", "hinge_generator",
                       "wasserstein_critic", "wasserstein_generator", "uncertainty_weighting"}
    assert {loss.name for loss in lj.catalog() if not loss.nonnegative} == can_be_negative
    assert len([loss for loss in lj.catalog() if loss.perfect is not None]) >= 30
    z = jnp.asarray([0.0, -50.0])
    assert float(lj.minimax_generator(z, reduction="sum")) < 0     # log(1 - sigmoid) <= 0
    # and each of them does go negative: on its own samples, or (uncertainty weighting) for a
    # task with no loss and a negative log-variance, 0 * e^1 + (-1) / 2
    for name in sorted(can_be_negative - {"uncertainty_weighting"}):
        loss = lj.get(name)
        lowest = min(float(jnp.min(loss(*s.args, reduction="none", **s.kwargs)))
                     for s in (loss.sample(jax.random.PRNGKey(0), jnp.float32, kind)
                               for kind in ("generic", "edge")))
        assert lowest < 0, name
    assert float(lj.uncertainty_weighting(jnp.zeros(1), -jnp.ones(1), reduction="sum")) == -0.5
