"""Large-vocabulary losses: the fused linear cross-entropy of language models.

``cross_entropy(hidden @ weight + bias, labels)`` materialises an N×V logits matrix and its
gradient. ``linear_cross_entropy`` never does: the forward pass walks the vocabulary in blocks
with an online logsumexp (keeping per token only the running maximum, the scaled sum, the label
logit and the logit sum for label smoothing), tokens in blocks; a ``jax.custom_vjp`` keeps only
the per-token logsumexp and recomputes each block's logits in the backward pass, producing the
gradients for hidden, weight and bias block by block. Matmuls accumulate in float32
(``preferred_element_type``) whatever the input dtype.

Correct for N and V that the blocks do not divide: tokens are padded (and masked), and the
last vocabulary block is slid back to end at V with the columns already seen masked out, so no
padded column ever enters the logsumexp and the weight matrix is never copied.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Sample, Terms, loss
from lossjax.losses._common import explicit_sharding

TOKEN_BLOCK = 1024
VOCAB_BLOCK = 4096


@dataclasses.dataclass(frozen=True)
class _Options:
    """Static hyperparameters of one call; hashable, so they select a compiled kernel."""
    n: int          # tokens (on this device)
    v: int          # vocabulary (this device's slice)
    t: int          # token block (≤ n)
    b: int          # vocabulary block (≤ v)
    eps: float      # label smoothing
    cap: float | None   # logit soft cap
    z: float        # z-loss weight
    v_all: int      # the whole vocabulary (label smoothing spreads ε over it)

    @property
    def n_tok(self):
        return -(-self.n // self.t)

    @property
    def n_voc(self):
        return -(-self.v // self.b)


def _vocab_block(weight, bias, j, o):
    """Block j of the vocabulary: (first column, weight columns, bias, column ids, mask of the
    columns this block owns)."""
    start = jnp.minimum(j * o.b, o.v - o.b)          # the last block slides back to end at V
    w = jax.lax.dynamic_slice_in_dim(weight, start, o.b, axis=1)
    b = jax.lax.dynamic_slice_in_dim(bias, start, o.b)
    cols = start + jnp.arange(o.b)
    return start, w, b, cols, cols >= j * o.b        # columns of earlier blocks: masked


def _acc(x):
    """Accumulation dtype: float32 for float32/bfloat16/float16 inputs, float64 for float64."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _logits(h, w, b, o):
    """Block logits, accumulated in float32 (or float64): u = h w + b and, with a soft cap c,
    z = c tanh(u / c)."""
    u = jnp.dot(h, w, preferred_element_type=_acc(h)) + b.astype(_acc(h))
    if o.cap is None:
        return u, u
    return u, o.cap * jnp.tanh(u / o.cap)


def _token_blocks(x, o, fill=0):
    pad = o.n_tok * o.t - o.n
    if pad:
        widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
        x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape((o.n_tok, o.t) + x.shape[1:])


@functools.partial(jax.jit, static_argnums=4)      # one compilation per shape and options
def _statistics(hidden, weight, bias, labels, o):
    """Per token, over this vocabulary: the maximum logit m, Σ exp(z − m), the label's logit
    (0 when the label is not in this vocabulary) and Σ z; one token block at a time."""
    def token_block(_, blk):
        h, y = blk

        def vocab_step(carry, j):
            m, s, zy, zsum = carry
            _, w, b, cols, ok = _vocab_block(weight, bias, j, o)
            _, z = _logits(h, w, b, o)
            zm = jnp.where(ok, z, -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(zm, axis=1))
            s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(zm - m_new[:, None]), axis=1)
            zy = zy + jnp.sum(jnp.where(ok & (cols == y[:, None]), z, 0.0), axis=1)
            zsum = zsum + jnp.sum(jnp.where(ok, z, 0.0), axis=1)
            return (m_new, s, zy, zsum), None
        acc = _acc(hidden)
        zeros = jnp.zeros(o.t, acc)
        init = (jnp.full(o.t, -jnp.inf, acc), zeros, zeros, zeros)
        stats, _ = jax.lax.scan(vocab_step, init, jnp.arange(o.n_voc))
        return None, stats
    _, stats = jax.lax.scan(
        token_block, None, (_token_blocks(hidden, o), _token_blocks(labels, o)))
    return tuple(x.reshape(-1)[:o.n] for x in stats)


def _loss_from(m, s, zy, zsum, valid, o):
    """Per-token losses (0 where not valid) and logsumexps from the statistics."""
    lse = m + jnp.log(s)
    value = lse - (1 - o.eps) * zy - (o.eps / o.v_all) * zsum + o.z * lse ** 2
    return jnp.where(valid, value, 0.0), lse


@functools.partial(jax.jit, static_argnums=5)
def _forward(hidden, weight, bias, labels, valid, o):
    return _loss_from(*_statistics(hidden, weight, bias, labels, o), valid, o)


@functools.partial(jax.jit, static_argnums=7)
def _backward(hidden, weight, bias, labels, valid, lse, cotangent, o):
    """Σ_t c_t ∂ℓ_t/∂(hidden, weight, bias) in the accumulation dtype, recomputing each
    block's logits.

    ∂ℓ/∂z_k = p_k (1 + 2 z_loss·lse) − (1 − ε)[k = y] − ε/V, p = softmax(z); with a soft cap,
    ∂z/∂u = 1 − (z/c)².
    """
    acc = _acc(hidden)
    c = jnp.where(valid, cotangent, 0.0).astype(acc)

    def token_block(carry, blk):
        g_w, g_b = carry
        h, y, lse_t, c_t = blk
        scale = 1 + 2 * o.z * lse_t

        def vocab_step(carry, j):
            g_h, g_w, g_b = carry
            start, w, b, cols, ok = _vocab_block(weight, bias, j, o)
            _, z = _logits(h, w, b, o)
            p = jnp.exp(z - lse_t[:, None])
            dz = p * scale[:, None] - (1 - o.eps) * (cols == y[:, None]) - o.eps / o.v_all
            if o.cap is not None:
                dz = dz * (1 - (z / o.cap) ** 2)
            g = jnp.where(ok, dz * c_t[:, None], 0.0)
            g_h = g_h + jnp.dot(g.astype(w.dtype), w.T, preferred_element_type=acc)
            dw = jnp.dot(h.T, g.astype(h.dtype), preferred_element_type=acc)
            g_w = jax.lax.dynamic_update_slice_in_dim(
                g_w, jax.lax.dynamic_slice_in_dim(g_w, start, o.b, axis=1) + dw, start, axis=1)
            g_b = jax.lax.dynamic_update_slice_in_dim(
                g_b, jax.lax.dynamic_slice_in_dim(g_b, start, o.b) + jnp.sum(g, axis=0), start,
                axis=0)
            return (g_h, g_w, g_b), None
        init = (jnp.zeros((o.t, h.shape[1]), acc), g_w, g_b)
        (g_h, g_w, g_b), _ = jax.lax.scan(vocab_step, init, jnp.arange(o.n_voc))
        return (g_w, g_b), g_h
    init = (jnp.zeros(weight.shape, acc), jnp.zeros(bias.shape, acc))
    blocks = (_token_blocks(hidden, o), _token_blocks(labels, o), _token_blocks(lse, o),
              _token_blocks(c, o))
    (g_w, g_b), g_h = jax.lax.scan(token_block, init, blocks)
    return g_h.reshape(-1, hidden.shape[1])[:o.n], g_w, g_b


@dataclasses.dataclass(frozen=True)
class _Parallel:
    """Tokens split over mesh axis ``tok``, the vocabulary over ``voc`` (either may be None:
    not split); ``local``: the options of one device's part."""
    mesh: object
    tok: str | None
    voc: str | None
    local: _Options

    def specs(self):
        """PartitionSpecs of hidden, weight, bias, a per-token array."""
        return (P(self.tok, None), P(None, self.voc), P(self.voc), P(self.tok))

    def combine(self, x, over, how=jax.lax.psum):
        axis = self.tok if over == "tokens" else self.voc
        return x if axis is None else how(x, axis)

    def offset(self):
        """First vocabulary id of this device's slice."""
        return 0 if self.voc is None else jax.lax.axis_index(self.voc) * self.local.v


def _forward_parallel(hidden, weight, bias, labels, valid, par):
    def local(h, w, b, y, ok):
        m, s, zy, zsum = _statistics(h, w, b, y - par.offset(), par.local)
        m_all = par.combine(m, "vocab", jax.lax.pmax)      # logsumexp across the slices
        s = par.combine(s * jnp.exp(m - m_all), "vocab")
        zy, zsum = par.combine(zy, "vocab"), par.combine(zsum, "vocab")
        return _loss_from(m_all, s, zy, zsum, ok, par.local)
    h, w, b, t = par.specs()
    return jax.shard_map(local, mesh=par.mesh, in_specs=(h, w, b, t, t), check_vma=False,
                         out_specs=(t, t))(hidden, weight, bias, labels, valid)


def _backward_parallel(hidden, weight, bias, labels, valid, lse, cotangent, par):
    def local(h, w, b, y, ok, lse_, c):
        g_h, g_w, g_b = _backward(h, w, b, y - par.offset(), ok, lse_, c, par.local)
        return (par.combine(g_h, "vocab"), par.combine(g_w, "tokens"),
                par.combine(g_b, "tokens"))
    h, w, b, t = par.specs()
    return jax.shard_map(local, mesh=par.mesh, in_specs=(h, w, b, t, t, t, t), check_vma=False,
                         out_specs=(h, w, b))(hidden, weight, bias, labels, valid, lse,
                                              cotangent)


def _run_forward(hidden, weight, bias, labels, valid, o, par):
    if par is None:
        return _forward(hidden, weight, bias, labels, valid, o)
    return _forward_parallel(hidden, weight, bias, labels, valid, par)


def _run_backward(hidden, weight, bias, labels, valid, lse, cotangent, o, par):
    if par is None:
        grads = _backward(hidden, weight, bias, labels, valid, lse, cotangent, o)
    else:
        grads = _backward_parallel(hidden, weight, bias, labels, valid, lse, cotangent, par)
    return tuple(g.astype(x.dtype) for g, x in zip(grads, (hidden, weight, bias)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _fused(hidden, weight, bias, labels, valid, o, par):
    return _run_forward(hidden, weight, bias, labels, valid, o, par)[0]


def _fused_fwd(hidden, weight, bias, labels, valid, o, par):
    value, lse = _run_forward(hidden, weight, bias, labels, valid, o, par)
    return value, (hidden, weight, bias, labels, valid, lse)


def _fused_bwd(o, par, residuals, cotangent):
    hidden, weight, bias, labels, valid, lse = residuals
    g_h, g_w, g_b = _run_backward(hidden, weight, bias, labels, valid, lse, cotangent, o, par)
    zero_labels = np.zeros(labels.shape, jax.dtypes.float0)
    zero_valid = np.zeros(valid.shape, jax.dtypes.float0)
    return g_h, g_w, g_b, zero_labels, zero_valid


_fused.defvjp(_fused_fwd, _fused_bwd)


def _sample(key, dtype, kind):
    """Odd shapes with blocks that divide neither N nor V; edge: saturated logits, soft cap,
    z-loss, smoothing and an ignored token."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n, d, v = 7, 5, 11
    hidden = _sampling.normal(k1, (n, d), dtype)
    weight = _sampling.normal(k2, (d, v), dtype, 1 / np.sqrt(d))
    bias = _sampling.normal(k3, (v,), dtype, 0.1)
    labels = _sampling.integers(k4, (n,), 0, v)
    kwargs = {"bias": bias, "token_block": 3, "vocab_block": 4}
    if kind == "edge":
        hidden = hidden * 12.0                  # logits of tens: a saturated softmax
        labels = labels.at[2].set(-100)
        kwargs.update(label_smoothing=0.1, logit_softcap=30.0, z_loss=1e-3)
    return Sample((hidden, weight, labels), kwargs)


@loss(constraints=[_domain.class_index(scores="weight", axis=None)],
      nonnegative=True, family="large_vocab", elementwise=False, has_hess_diag=False,
      formula=r"\ell_t = \operatorname{lse}(z_t) - (1-\varepsilon) z_{t,y_t} - "
              r"\tfrac{\varepsilon}{V}\textstyle\sum_k z_{tk} + \lambda_z \operatorname{lse}"
              r"(z_t)^2,\; z_t = c\tanh((h_t W + b)/c)",
      sampler=_sample, grad_wrt=("weight", "bias"), forward_mode=False,
      batch_args=("hidden", "labels"),
      references=["Wijmans et al., Cut Your Losses in Large-Vocabulary Language Models "
                  "(Cut Cross-Entropy), ICLR 2025.",
                  "Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, 2024.",
                  "Chowdhery et al., PaLM (z-loss), 2022; Gemma 2 (logit soft-capping), 2024."])
def linear_cross_entropy(hidden, weight, labels, *, bias=None, ignore_index=-100,
                         label_smoothing=0.0, logit_softcap=None, z_loss=0.0,
                         token_block=TOKEN_BLOCK, vocab_block=VOCAB_BLOCK, mesh=None,
                         token_axis=None, vocab_axis=None):
    r"""Cross-entropy of ``hidden @ weight + bias`` against ``labels`` without materialising
    the N×V logits or their gradient.

    Args:
      hidden: (N, D) final hidden states; weight: (D, V) output projection; labels: (N,)
        integer token ids (``ignore_index`` and out-of-range ids contribute 0 and are left out
        of the mean); bias: optional (V,).
      label_smoothing: ε in [0, 1], PyTorch's convention (ε spread uniformly over V classes).
      logit_softcap: c > 0: logits c·tanh(u/c) (Gemma 2); its derivative is in the backward.
      z_loss: λ ≥ 0 adds λ·logsumexp² per token (PaLM).
      token_block, vocab_block: block sizes (any positive ints; they need not divide N or V).

    Per-token gradient w.r.t. the logits: p·(1 + 2λ lse) − (1 − ε) e_y − ε/V, times
    1 − (z/c)² under a soft cap. ``.grad`` is w.r.t. ``hidden``; ``.grad(..., wrt="weight")``
    and ``wrt="bias"`` likewise; ``jax.grad`` runs the same block-wise backward (a
    ``jax.custom_vjp``, so reverse mode only: ``jax.jvp``/``jacfwd`` are not supported).
    Peak memory: O(token_block × vocab_block) beyond the inputs and the gradients.
    """
    name = "linear_cross_entropy"
    hidden = _checks.floating(name, "hidden", hidden)
    weight = _checks.floating(name, "weight", weight)
    if hidden.ndim != 2:
        raise ValueError(f"{name}: `hidden` must be (N, D), got {_checks.describe(hidden)}.")
    if weight.ndim != 2 or weight.shape[0] != hidden.shape[1]:
        raise ValueError(f"{name}: `weight` must be (D, V) with D = {hidden.shape[1]} (the "
                         f"width of `hidden`), got {_checks.describe(weight)}.")
    n, v = hidden.shape[0], weight.shape[1]
    if bias is None:
        bias = jnp.zeros(v, weight.dtype)
    bias = _checks.floating(name, "bias", bias)
    if bias.shape != (v,):
        raise ValueError(f"{name}: `bias` must have shape ({v},), got {_checks.describe(bias)}.")
    for arg, value in (("token_block", token_block), ("vocab_block", vocab_block)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: `{arg}` must be a positive int, got {value!r}.")
    if logit_softcap is not None:
        if isinstance(logit_softcap, jax.core.Tracer):
            raise TypeError(f"{name}: `logit_softcap` must be a Python number (it selects the "
                            f"compiled kernel), not a traced value.")
        _checks.in_range(name, "logit_softcap", logit_softcap, lo=0, lo_open=True)
        logit_softcap = float(logit_softcap)
    for arg, value, hi in (("label_smoothing", label_smoothing, 1), ("z_loss", z_loss, None)):
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{name}: `{arg}` must be a Python number, not a traced value.")
        _checks.in_range(name, arg, value, lo=0, hi=hi)
    safe, valid = _labels(name, labels, n, v, ignore_index)
    common = jnp.result_type(hidden, weight, bias)     # mixed precision: compute in the widest
    hidden, weight, bias = hidden.astype(common), weight.astype(common), bias.astype(common)
    o = _Options(n=n, v=v, t=max(1, min(int(token_block), n)),
                 b=max(1, min(int(vocab_block), v)), eps=float(label_smoothing),
                 cap=logit_softcap, z=float(z_loss), v_all=v)
    par = _parallel(name, mesh, token_axis, vocab_axis, hidden, weight, o,
                    int(token_block), int(vocab_block))
    value = _fused(hidden, weight, bias, safe, valid, o, par)

    def backward(c):
        lse = _run_forward(hidden, weight, bias, safe, valid, o, par)[1]
        return _run_backward(hidden, weight, bias, safe, valid, lse, c, o, par)

    ones = jnp.ones(n, value.dtype)
    return Terms(value, grad=None, mask=valid,
                 vjp=lambda c: backward(c)[0],
                 jvp=lambda t: jnp.sum(backward(ones)[0] * t, axis=-1),
                 partial_vjps={"weight": lambda c: backward(c)[1],
                               "bias": lambda c: backward(c)[2]})


def _labels(name, labels, n, v, ignore_index):
    labels = _checks.integer_labels(name, "labels", labels)
    if labels.shape != (n,):
        raise ValueError(f"{name}: `labels` must have shape ({n},), one token id per row of "
                         f"`hidden`, got {_checks.describe(labels)}.")
    valid = (labels != ignore_index) & (labels >= 0) & (labels < v)
    return jnp.where(valid, labels, 0), valid


def _parallel(name, mesh, token_axis, vocab_axis, hidden, weight, o, token_block, vocab_block):
    """How the call is split over devices: None (one device, or GSPMD's choice), or a
    _Parallel from ``mesh`` and the axes, or from the shardings in the arrays' types under an
    explicit mesh."""
    if mesh is None:
        if token_axis is not None or vocab_axis is not None:
            raise ValueError(f"{name}: `token_axis`/`vocab_axis` need `mesh`.")
        h, w = explicit_sharding(hidden), explicit_sharding(weight)
        if h is None and w is None:
            return None
        mesh = (h or w).mesh
        token_axis = None if h is None else h.spec[0]
        vocab_axis = None if w is None else w.spec[1]
        if (h is not None and h.spec[1] is not None) or (w is not None and w.spec[0] is not None):
            raise ValueError(f"{name}: under an explicit mesh, `hidden` may be split over tokens "
                             f"(axis 0) and `weight` over the vocabulary (axis 1) only; got "
                             f"hidden {h and h.spec}, weight {w and w.spec}.")
    elif not isinstance(mesh, (jax.sharding.Mesh, jax.sharding.AbstractMesh)):
        raise TypeError(f"{name}: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    sizes = {}
    for arg, axis, length, what in (("token_axis", token_axis, o.n, "tokens N"),
                                    ("vocab_axis", vocab_axis, o.v, "vocabulary V")):
        if axis is None:
            sizes[arg] = 1
            continue
        if not isinstance(axis, str) or axis not in mesh.axis_names:
            raise ValueError(f"{name}: `{arg}` must be one of the mesh axes "
                             f"{tuple(mesh.axis_names)} or None, got {axis!r}.")
        sizes[arg] = mesh.shape[axis]
        if length % sizes[arg]:
            raise ValueError(f"{name}: the {what} = {length} is not divisible by the "
                             f"{sizes[arg]} devices of mesh axis {axis!r} (`{arg}`); pad it.")
    if token_axis is not None and token_axis == vocab_axis:
        raise ValueError(f"{name}: `token_axis` and `vocab_axis` must be different mesh axes.")
    n, v = o.n // sizes["token_axis"], o.v // sizes["vocab_axis"]
    local = dataclasses.replace(o, n=n, v=v, t=min(token_block, n), b=min(vocab_block, v))
    return _Parallel(mesh, token_axis, vocab_axis, local)
