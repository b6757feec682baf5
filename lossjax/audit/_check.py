"""check: a hand-derived derivative of a scalar function vs autodiff vs a numerical oracle.

The pieces, one module per job: :mod:`._flat` (the audited pytree as a flat vector, compile
keys), :mod:`._verdict` (the error model, element classification, the verdict),
:mod:`._modes` (exhaustive and probe modes), :mod:`._hessian` (Hessian diagonals and
Hessian-vector products), :mod:`._jacobian` (check_jacobian), :mod:`._oracle` (finite
differences and the complex step).

Compiling dominates an audit of a small function, so the derivatives in the audited dtype come
from two compiled programs per (function, shapes): one for autodiff (the reverse-mode gradient
at the input and at one-ulp perturbations of it, forward-mode derivatives along random
directions) and one for the hand-derived derivatives (the gradient at the same points, the
Hessian diagonal); the float64 oracle is a third, shared by the float32 and float64 audits of
the same function.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from lossjax._compile import fast_jit
from lossjax._sampling import host_rng
from lossjax.audit import _oracle, _report as R
from lossjax.audit._flat import (_Bound, _Flat, _FlatCall, _Key, _call, _select, _to_float64,
                                 custom_rules)
from lossjax.audit._hessian import _hessian_diagonal, _hessian_rows, _hessian_vector
from lossjax.audit._modes import MAX_EXHAUSTIVE, _exhaustive, _magnitude, _probe_mode
from lossjax.audit._verdict import KAPPA, combine

FORWARD_PROBES = 4
PERTURBATIONS = 4       # one-ulp perturbations of the input that measure the conditioning
CONDITIONING = 4.0      # weight of the measured sensitivity to one-ulp input perturbations
HESSIAN_ROWS = 1024     # Hessian diagonals up to this size come with the other derivatives


def _perturbed(flat, key):
    """The audited input, then ``PERTURBATIONS`` copies moved by one ulp in random directions,
    stacked along a leading axis (leaf by leaf, in the audited dtypes)."""
    rng = host_rng(key)
    stacked = []
    for leaf in flat.leaves:
        x = np.asarray(leaf)
        up = rng.random((PERTURBATIONS,) + x.shape) < 0.5
        toward = np.where(up, np.asarray(np.inf, x.dtype), np.asarray(-np.inf, x.dtype))
        stacked.append(np.concatenate([x[None], np.nextafter(x[None], toward)]))
    return jax.tree_util.tree_unflatten(flat.treedef, stacked)


def _tangents(flat, key):
    """``FORWARD_PROBES`` random directions in the audited dtypes, stacked, and the same
    directions as float64 rows (rounded to those dtypes first)."""
    v = host_rng(key).standard_normal((FORWARD_PROBES, flat.n))
    leaves = [np.stack([row[o:o + s].reshape(shape) for row in v]).astype(d)
              for o, s, shape, d in zip(flat.offsets[:-1], flat.sizes, flat.shapes, flat.dtypes)]
    used = np.concatenate([leaf.reshape(FORWARD_PROBES, -1).astype(np.float64)
                           for leaf in leaves], axis=1)
    return jax.tree_util.tree_unflatten(flat.treedef, leaves), used


@fast_jit(static_argnums=(0, 1, 2, 3, 4))
def _derivatives_kernel(bound, grad, hess, forward, hess_rows, dynamic, points, tangents):
    """Everything the audit needs in the audited dtype, in one compiled program: autodiff's
    gradient at each of ``points`` (the input, then its perturbations), its forward-mode
    derivatives at the input along ``tangents`` (when ``forward``) and the diagonal of its
    Hessian (when ``hess_rows``, the input's size); the hand-derived gradient at the same
    points and Hessian diagonal at the input (``grad``/``hess``: keys of the functions, or of
    None)."""
    auto = jax.grad(lambda t: bound.call(t, dynamic))
    target = jax.tree_util.tree_map(lambda p: p[0], points)
    out = {"auto": jax.vmap(auto)(points)}
    if forward:
        out["jvp"] = jax.vmap(lambda t: jax.jvp(lambda x: bound.call(x, dynamic), (target,),
                                                (t,))[1])(tangents)
    if hess_rows:
        out["auto_hess"] = _hessian_rows(bound, target, dynamic, jnp.eye(
            hess_rows, dtype=bound.flat.dtypes[0]))
    if grad.value is not None:
        out["grad"] = jax.vmap(lambda t: grad.value(*bound.args(dynamic, t)))(points)
    if hess.value is not None:
        out["hess"] = hess.value(*bound.args(dynamic))
    return out


_TRACE_ERRORS = (TypeError, NotImplementedError, jax.errors.JAXTypeError)


def _derivatives(bound, grad, hess, dynamic, points, tangents, hess_rows, count):
    """What :func:`_derivatives_kernel` computes. Forward mode is left out for functions that
    have none (a custom_vjp), and the hand-derived derivatives are computed one call at a
    time when they cannot be traced or batched (NumPy code, Python control flow). The
    "jvp" entry is the reason when forward mode is unavailable."""
    hand, none = (_Key(grad), _Key(hess)), (_Key(None), _Key(None))
    attempts = list(dict.fromkeys([(hand, True), (hand, False), (none, True), (none, False)]))
    reason = None
    for i, ((grad_key, hess_key), forward) in enumerate(attempts):
        try:
            out = dict(_derivatives_kernel(bound, grad_key, hess_key, forward, hess_rows,
                                           dynamic, points, tangents))
            break
        except _TRACE_ERRORS as e:
            if i == len(attempts) - 1:
                raise
            if forward:         # the last such failure before a success is forward mode's
                reason = f"forward mode unavailable ({type(e).__name__}: {str(e)[:80]})"
    if "jvp" not in out:
        out["jvp"] = reason or "forward mode unavailable"
    args = bound.args(dynamic)
    if grad is not None and "grad" not in out:
        each = [_call(grad, bound.args(dynamic, jax.tree_util.tree_map(
            lambda p, i=i: p[i], points))) for i in range(count)]
        out["grad"] = jax.tree_util.tree_map(lambda *v: np.stack([np.asarray(x) for x in v]),
                                             *each)
    if hess is not None and "hess" not in out:
        out["hess"] = _call(hess, args)
    return out


def _forward_check(flat, r, jvp, used, kappa, sensitivity):
    """Forward mode (jvp) against reverse mode along the random directions. The tolerance
    includes the gradient's measured sensitivity to one-ulp input moves: where the gradient
    is a cancellation of larger terms (1e-15 from terms of 1), both modes round at the
    terms' scale, not the gradient's."""
    if isinstance(jvp, str):
        return R.ProbeCheck("forward mode vs reverse mode", 0.0, True, jvp)
    got = np.asarray(jvp, np.float64)
    want = used @ r
    # Both are autodiff in the same dtype: a wrong rule shows as an O(1) relative gap, while
    # saturated intermediates (logits of 1e4) legitimately cost digits, so the floor is
    # sqrt(eps) rather than eps.
    magnitude = np.abs(used) @ np.abs(r) + np.abs(want)
    tol = np.maximum(kappa * flat.eps, np.sqrt(flat.eps)) * magnitude + \
        np.abs(used) @ sensitivity + 1e-300
    worst = float(np.max(np.abs(got - want) / tol))
    return R.ProbeCheck("forward mode vs reverse mode", worst, worst <= 1.0,
                        f"{FORWARD_PROBES} random directions")


def _conditioning(flat, gradients):
    """How much each derivative element moves when the audited input moves by one ulp.

    Rounding inside a computation acts like perturbing its intermediates at their own
    magnitude; for a derivative computed from large inputs (logits of 1e4 in float32) that
    costs digits no matter how carefully it is written. The derivatives re-evaluated at a few
    random one-ulp perturbations of the input (rows 1.. of each of ``gradients``, row 0 being
    the input itself) measure that sensitivity, cross terms included.
    """
    deviation = np.zeros(flat.n)
    for g in gradients:
        with np.errstate(invalid="ignore"):
            gap = np.abs(g[1:] - g[0])
        deviation = np.fmax(deviation, np.max(np.where(np.isfinite(gap), gap, 0.0), axis=0))
    return deviation


def _rows(flat, tree, count, who, what):
    """A stacked pytree (leading axis ``count``) as a (count, n) float64 matrix."""
    return np.stack([flat.ravel(jax.tree_util.tree_map(lambda v, i=i: np.asarray(v)[i], tree),
                                who, what) for i in range(count)])


def check(fn, *args, grad=None, hess=None, hvp=None, argnums=0, mode="auto",
          max_exhaustive=MAX_EXHAUSTIVE, probes=16, kappa=KAPPA, rtol=0.0, atol=0.0,
          oracle="auto", key=None, name=None, memory=256 * 2 ** 20) -> R.AuditReport:
    """Audit the derivatives of a scalar function ``fn(*args)`` w.r.t. ``args[argnums]``.

    Args:
      fn: function of pytrees of arrays returning a scalar.
      grad: optional hand-derived gradient, called like ``fn`` (``grad(*args)``), returning the
        gradient w.r.t. ``args[argnums]`` (same pytree structure and shapes).
      hess: optional hand-derived Hessian diagonal, called like ``fn``, same structure.
      hvp: optional hand-derived Hessian-vector product, ``hvp(v, *args)`` with ``v`` shaped
        like ``args[argnums]``.
      argnums: int or tuple of ints: the differentiable argument(s).
      mode: "auto" (exhaustive up to ``max_exhaustive`` inputs, random probes beyond),
        "exhaustive" or "probe".
      max_exhaustive: the largest input size audited exhaustively in mode "auto".
      probes: number of random probe directions in probe mode.
      kappa: safety factor of the tolerance model (see :mod:`lossjax.audit._verdict`).
      rtol, atol: the user's allowance, added to the model's tolerance at every element
        (``atol + rtol * |oracle|``): accepts a deliberate approximation (an epsilon guard, a
        numerical derivative); the verdict then reads "approximately right" and states the
        worst relative error. Every report states the worst relative discrepancy.
      oracle: "auto" (Richardson central differences; the complex step, exact to rounding,
        where their error estimate misses the tolerance and the function is complex-safe),
        "complex" (complex step everywhere; an error if not complex-safe) or "richardson".
      key: PRNG key for the probes and perturbations (default PRNGKey(0)).
      name: the name reports use (default: ``fn.__name__``).
      memory: bytes of perturbed inputs held at once by the oracle.

    The audit runs with 64-bit types enabled (the oracle needs float64, whatever the global
    setting); the audited function still runs in the dtypes of its arguments.
    Returns an :class:`AuditReport`; ``bool(report)`` is ``report.ok``.
    """
    with _oracle.x64():
        return _check(fn, args, grad, hess, hvp, argnums, mode, max_exhaustive, probes, kappa,
                      rtol, atol, oracle, key, name, memory)


def _others(flat, args, argnums):
    """Float arguments shaped like a single audited array (targets), for residual regions."""
    if len(flat.shapes) != 1:
        return []
    chosen = set([argnums] if isinstance(argnums, int) else argnums)
    out = []
    for i, v in enumerate(args):
        if i not in chosen and hasattr(v, "shape") and tuple(np.shape(v)) == \
                tuple(flat.shapes[0]) and np.issubdtype(np.asarray(v).dtype, np.floating):
            out.append((f"args[{i}]", np.asarray(v, np.float64).ravel()))
    return out


def _check(fn, args, grad, hess, hvp, argnums, mode, max_exhaustive, probes, kappa, rtol, atol,
           oracle, key, name, memory) -> R.AuditReport:
    who = f"lj.audit.check({name or getattr(fn, '__name__', 'fn')})"
    name = name or getattr(fn, "__name__", repr(fn))
    if mode not in ("auto", "exhaustive", "probe"):
        raise ValueError(f"{who}: mode must be 'auto', 'exhaustive' or 'probe', got {mode!r}.")
    for label, v in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v >= 0):
            raise ValueError(f"{who}: {label} must be a finite number >= 0, got {v!r}.")
    if oracle not in ("auto", "complex", "richardson"):
        raise ValueError(f"{who}: oracle must be 'auto', 'complex' or 'richardson', got "
                         f"{oracle!r}.")
    key = jax.random.PRNGKey(0) if key is None else key
    k_oracle, k_forward, k_probe, k_hess = jax.random.split(key, 4)
    target = _select(args, argnums)
    flat = _Flat(target, who)
    bound, dynamic = _Bound(fn, args, argnums, flat), _Bound.dynamic(args)
    points = _perturbed(flat, k_forward)
    tangents, used = _tangents(flat, jax.random.fold_in(k_forward, 1))
    count = PERTURBATIONS + 1
    exhaustive = mode == "exhaustive" or (mode == "auto" and flat.n <= max_exhaustive)
    # the Hessian diagonal's autodiff in the same program while its rows are few
    hess_rows = flat.n if hess is not None and exhaustive and flat.n <= HESSIAN_ROWS else 0
    x = flat.ravel(target, who, "target")
    orc = _oracle.Oracle(_FlatCall(bound), x, _to_float64(dynamic), memory)
    if exhaustive:      # the oracle's kernels run while autodiff is prepared
        try:
            orc.prefetch(np.arange(flat.n))
        except Exception:                 # noqa: BLE001 - raised again where it is reported
            pass
    try:
        out = _derivatives(bound, grad, hess, dynamic, points, tangents, hess_rows, count)
    except TypeError as e:
        if "scalar-output" not in str(e):
            raise
        shape = jax.eval_shape(lambda t: bound.call(t, dynamic), target).shape
        raise ValueError(f"{who}: fn must return a scalar, got shape {shape}; use "
                         f"lj.audit.check_jacobian for vector outputs.") from None
    gradients = [_rows(flat, out["auto"], count, who, "autodiff")]
    r, a = gradients[0][0], None
    if grad is not None:
        gradients.append(_rows(flat, out["grad"], count, who, "grad(*args)"))
        a = gradients[-1][0]
    sensitivity = CONDITIONING * _conditioning(flat, gradients)
    forward = _forward_check(flat, r, out["jvp"], used, kappa, sensitivity)

    orc.magnitude = np.asarray(_magnitude(r, x), np.float64)
    scale_r = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
    tol_model = kappa * flat.eps * (np.abs(r) + scale_r) + sensitivity
    def custom():
        """Whether fn holds a custom derivative rule (None: fn cannot be traced); asked only
        when autodiff fails."""
        try:
            return bool(custom_rules(lambda t: bound.call(t, dynamic), target))
        except Exception:         # noqa: BLE001 - untraceable fn: unknown, say nothing
            return None
    if exhaustive:
        report = _exhaustive(flat, orc, a, r, tol_model, oracle, kappa, name, sensitivity,
                             k_oracle, who, rtol, atol, custom, _others(flat, args, argnums))
    else:
        report = _probe_mode(flat, orc, a, r, oracle, kappa, name, probes, k_probe,
                             sensitivity, k_oracle, who, rtol, atol, custom)
    report.probes.insert(0, forward)
    parts = [R.Part(report.quantity, report.ok, report.verdict, report.blame)]
    if not forward.ok:
        parts.append(R.Part("forward mode", False, "forward-mode and reverse-mode autodiff "
                            f"disagree (worst {forward.max_discrepancy:.3g} × tolerance along "
                            f"{FORWARD_PROBES} random directions): a custom_jvp rule, or a "
                            f"primitive's forward rule, is wrong", "autodiff"))
    if hess is not None:
        report.sub_reports.append(
            _hessian_diagonal(bound, args, dynamic, flat, orc, out["hess"], kappa, name,
                              exhaustive, k_hess, who, out.get("auto_hess"), rtol, atol))
    if hvp is not None:
        report.sub_reports.append(
            _hessian_vector(bound, args, dynamic, flat, hvp, kappa, name, k_hess, who))
    parts += [R.Part(sub.quantity, sub.ok, sub.verdict, sub.blame) for sub in report.sub_reports]
    return combine(report, parts)
