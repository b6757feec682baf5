"""linear_cross_entropy against a dense float64 reference: every option, odd shapes, the
gradients for hidden, weight and bias, arbitrary cotangents, half precision, and the absence
of any N×V buffer in the compiled computation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from conftest import compiled

LCE = lj.linear_cross_entropy


def dense(h, w, b, y, *, label_smoothing=0.0, logit_softcap=None, z_loss=0.0,
          ignore_index=-100, reduction="mean"):
    """The same loss, written densely (N×V logits) in plain jax.numpy."""
    u = jnp.dot(h, w, preferred_element_type=jnp.promote_types(h.dtype, jnp.float32)) + b
    z = logit_softcap * jnp.tanh(u / logit_softcap) if logit_softcap else u
    lse = jax.nn.logsumexp(z, axis=1)
    v = w.shape[1]
    valid = (y != ignore_index) & (y >= 0) & (y < v)
    ys = jnp.where(valid, y, 0)
    eps = label_smoothing
    per = lse - (1 - eps) * jnp.take_along_axis(z, ys[:, None], 1)[:, 0] \
        - eps / v * jnp.sum(z, axis=1) + z_loss * lse ** 2
    per = jnp.where(valid, per, 0.0)
    if reduction == "none":
        return per
    return jnp.sum(per) / jnp.maximum(jnp.sum(valid), 1)


def _inputs(n, d, v, seed=0, dtype=jnp.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(scale * rng.normal(size=(n, d)), dtype)
    w = jnp.asarray(rng.normal(size=(d, v)) / np.sqrt(d), dtype)
    b = jnp.asarray(0.1 * rng.normal(size=v), dtype)
    y = rng.integers(0, v, n)
    y[::4] = -100                                            # some ignored tokens
    return h, w, b, jnp.asarray(y)


OPTIONS = [{}, {"label_smoothing": 0.1}, {"logit_softcap": 1.5}, {"z_loss": 1e-2},
           {"label_smoothing": 0.3, "logit_softcap": 2.0, "z_loss": 0.1}]
SHAPES = [(7, 5, 11, 3, 4), (13, 4, 9, 5, 2), (9, 3, 17, 4, 17), (6, 2, 5, 64, 64),
          (1, 3, 7, 1, 3)]


# every option alone on one shape, and all options together on every odd shape
CASES = [(SHAPES[0], o) for o in OPTIONS[:-1]] + [(s, OPTIONS[-1]) for s in SHAPES]


@pytest.mark.parametrize("shape, opts", CASES,
                         ids=["x".join(map(str, s)) + "-" + (",".join(o) or "plain")
                              for s, o in CASES])
def test_value_and_gradients_match_dense_float64(shape, opts):
    n, d, v, tb, vb = shape
    h, w, b, y = _inputs(n, d, v, seed=n * v)
    kw = dict(token_block=tb, vocab_block=vb, **opts)

    def routes(h, w, b, y):
        """The loss, its autodiff gradients and its hand-derived ones, and the dense
        reference's value and gradients: one compiled program."""
        ours = jax.value_and_grad(lambda h, w, b: LCE(h, w, y, bias=b, **kw), (0, 1, 2))
        ref = jax.value_and_grad(lambda h, w, b: dense(h, w, b, y, **opts), (0, 1, 2))
        hand = [LCE.grad(h, w, y, bias=b, **kw)] + [LCE.grad(h, w, y, bias=b, wrt=wrt, **kw)
                                                     for wrt in ("weight", "bias")]
        return ours(h, w, b), ref(h, w, b), hand
    (value, grads), (want, ref), hand = compiled(routes, h, w, b, y)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)
    # the hand-derived .grad, w.r.t. each argument
    for g, r in zip(hand, ref):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)


def test_reduction_none_under_an_arbitrary_cotangent():
    h, w, b, y = _inputs(11, 4, 13)
    kw = dict(bias=b, token_block=4, vocab_block=5, label_smoothing=0.1, logit_softcap=3.0)
    opts = {k: kw[k] for k in ("label_smoothing", "logit_softcap")}
    out, vjp = jax.vjp(lambda h, w: LCE(h, w, y, reduction="none", **kw), h, w)
    ref_out, ref_vjp = jax.vjp(lambda h, w: dense(h, w, b, y, reduction="none", **opts), h, w)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    c = jnp.asarray(np.random.default_rng(1).normal(size=11))
    for g, r in zip(vjp(c), ref_vjp(c)):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)
    # sum and weighted means come from the same per-token values
    wts = jnp.linspace(0.5, 2.0, 11)
    np.testing.assert_allclose(LCE(h, w, y, weights=wts, **kw),
                               jnp.sum(wts * ref_out) / jnp.sum(jnp.where(y != -100, wts, 0)),
                               rtol=1e-12)


def test_fully_ignored_batch_gives_zero_and_zero_gradients():
    h, w, b, _ = _inputs(5, 3, 7)
    y = jnp.full(5, -100)
    value, grads = jax.value_and_grad(lambda h, w: LCE(h, w, y, bias=b), (0, 1))(h, w)
    assert value == 0.0 and all(float(jnp.max(jnp.abs(g))) == 0.0 for g in grads)


def test_saturated_logits_stay_finite_and_exact():
    h, w, b, y = _inputs(8, 4, 9, scale=300.0)               # logits of several hundred
    value, g = jax.value_and_grad(lambda h: LCE(h, w, y, bias=b, vocab_block=4))(h)
    np.testing.assert_allclose(value, dense(h, w, b, y), rtol=1e-12)
    np.testing.assert_allclose(g, jax.grad(lambda h: dense(h, w, b, y))(h), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_low_precision_error_no_worse_than_dense_in_the_same_dtype(dtype):
    """Errors against the float64 value and gradients: the fused loss (float32 accumulation)
    is at least as accurate as the dense computation in the same dtype, up to a small slack."""
    h64, w64, b64, y = _inputs(64, 16, 300, seed=5, scale=3.0)
    ref = jax.value_and_grad(lambda h, w: dense(h, w, b64, y), (0, 1))(h64, w64)
    h, w, b = (x.astype(dtype) for x in (h64, w64, b64))
    fused = jax.value_and_grad(lambda h, w: LCE(h, w, y, bias=b, token_block=16,
                                                vocab_block=128), (0, 1))(h, w)
    plain = jax.value_and_grad(lambda h, w: dense(h, w, b, y), (0, 1))(h, w)
    assert fused[0].dtype == jnp.dtype(dtype) and fused[1][1].dtype == jnp.dtype(dtype)

    def errors(out):
        (v, (gh, gw)), (rv, (rh, rw)) = out, ref
        return [abs(float(v) - float(rv)) / abs(float(rv)),
                float(jnp.max(jnp.abs(gh.astype(jnp.float64) - rh)) / jnp.max(jnp.abs(rh))),
                float(jnp.max(jnp.abs(gw.astype(jnp.float64) - rw)) / jnp.max(jnp.abs(rw)))]
    slack = {"float32": 1e-6, "bfloat16": 1e-2}[dtype]
    for e_fused, e_dense in zip(errors(fused), errors(plain)):
        assert e_fused <= e_dense + slack, (errors(fused), errors(plain))


def _temp_bytes(f, *args):
    compiled = jax.jit(jax.value_and_grad(f, (0, 1))).lower(*args).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_no_logits_sized_buffer_is_compiled():
    """XLA's memory analysis of value+grad: the dense version needs temporaries of at least
    the N×V logits; the fused one stays far below (blocks of 128×512 here)."""
    n, d, v = 1024, 16, 8192
    h, w, b, y = _inputs(n, d, v, dtype=jnp.float32)
    logits_bytes = n * v * 4
    dense_temp = _temp_bytes(lambda h, w: dense(h, w, b, y), h, w)
    fused_temp = _temp_bytes(lambda h, w: LCE(h, w, y, bias=b, token_block=128,
                                              vocab_block=512), h, w)
    assert dense_temp >= logits_bytes
    assert fused_temp < logits_bytes / 8, (fused_temp, logits_bytes)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight": jnp.ones((4, 9))}, r"`weight` must be \(D, V\) with D = 3"),
    ({"labels": jnp.zeros(4, jnp.int32)}, r"`labels` must have shape \(5,\)"),
    ({"labels": jnp.zeros(5)}, "integer class indices"),
    ({"bias": jnp.ones(8)}, r"`bias` must have shape \(9,\)"),
    ({"vocab_block": 0}, "`vocab_block` must be a positive int"),
    ({"logit_softcap": 0.0}, "logit_softcap"),
    ({"label_smoothing": 1.5}, "label_smoothing"),
])
def test_bad_input(kwargs, match):
    args = {"hidden": jnp.ones((5, 3)), "weight": jnp.ones((3, 9)),
            "labels": jnp.zeros(5, jnp.int32), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        LCE(args.pop("hidden"), args.pop("weight"), args.pop("labels"), **args)
