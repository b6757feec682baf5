"""check / check_jacobian: a hand-derived derivative vs autodiff vs a numerical oracle.

Tolerance model, per element i of a derivative (never scaled by the number of elements):

    tol_i = kappa * eps(audited dtype) * (|d_i| + max_j |d_j|)  +  4 * s_i
            +  3 * oracle_error_i

where d is the oracle's derivative (one row of it for a Jacobian). ``kappa`` (default 16)
absorbs the few roundings of a typical derivative computation; ``max_j |d_j|`` stands for the
magnitude of the intermediate terms, whose rounding does not shrink with |d_i| (as in
sigmoid(z) - t near 0); s_i is the measured change of the derivatives when the input moves by
one ulp (the conditioning that large inputs cost). Comparisons between the hand-derived and
autodiff values (both in the audited dtype) leave out the oracle term.

Blame, element by element: the hand-derived value is wrong when it differs from the oracle
while autodiff agrees with it; autodiff is wrong (a custom derivative rule, or the function is
numerically unstable under autodiff) when it differs while the hand-derived value agrees;
an element whose one-sided derivatives differ is a kink, and passes when the chosen values
lie between them.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lossjax.audit import _oracle, _report as R

KAPPA = 16.0
MAX_EXHAUSTIVE = 10_000
FORWARD_PROBES = 4
LOCALISE = 256          # probe mode: elements given a per-element oracle when analytic != autodiff
KEEP = 50               # ranked elements kept in a report
CONDITIONING = 4.0      # weight of the measured sensitivity to one-ulp input perturbations
ORACLE_GOAL = 1e-9      # oracle accuracy sought, relative to the derivative's scale, before
                        # smaller steps or the complex step are tried (when the model is tighter)


class _Flat:
    """The audited pytree as a flat vector (float64 for the oracle) and back."""

    def __init__(self, tree, who):
        pairs, self.treedef = jax.tree_util.tree_flatten_with_path(tree)
        if not pairs:
            raise ValueError(f"{who}: the audited argument has no array leaves.")
        self.paths = [jax.tree_util.keystr(p) for p, _ in pairs]
        leaves = [jnp.asarray(v) for _, v in pairs]
        for path, leaf in zip(self.paths, leaves):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"{who}: the audited argument must hold floating-point arrays; "
                                f"leaf {path or '(root)'} is {leaf.dtype}{list(leaf.shape)}. "
                                f"Choose the differentiable argument with argnums=.")
        self.leaves = leaves
        self.shapes = [leaf.shape for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.n = int(self.offsets[-1])
        self.eps = max(float(jnp.finfo(d).eps) for d in self.dtypes)
        self.dtype = "/".join(sorted({str(d) for d in self.dtypes}))

    def ravel(self, tree, who, what) -> np.ndarray:
        leaves = jax.tree_util.tree_leaves(tree)
        structure = jax.tree_util.tree_structure(tree)
        if structure != self.treedef or [tuple(np.shape(v)) for v in leaves] != \
                [tuple(s) for s in self.shapes]:
            raise ValueError(
                f"{who}: {what} must have the structure and shapes of the audited argument "
                f"{[tuple(s) for s in self.shapes]}; got {[tuple(np.shape(v)) for v in leaves]}.")
        return np.concatenate([np.asarray(v, np.float64).ravel() for v in leaves])

    def unravel(self, x, dtypes=None):
        """Flat vector -> pytree; leaves keep x's dtype unless ``dtypes`` are given."""
        leaves = [x[o:o + s].reshape(shape) for o, s, shape in
                  zip(self.offsets[:-1], self.sizes, self.shapes)]
        if dtypes is not None:
            leaves = [leaf.astype(d) for leaf, d in zip(leaves, dtypes)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def locate(self, i):
        leaf = int(np.searchsorted(self.offsets, i, side="right") - 1)
        index = np.unravel_index(int(i - self.offsets[leaf]), self.shapes[leaf]) \
            if self.shapes[leaf] else ()
        return self.paths[leaf], tuple(int(k) for k in index)


def _select(args, argnums):
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def _replace(args, argnums, target):
    args = list(args)
    if isinstance(argnums, int):
        args[argnums] = target
    else:
        for i, t in zip(argnums, target):
            args[i] = t
    return tuple(args)


def _is_data(arg) -> bool:
    leaves = jax.tree_util.tree_leaves(arg)
    return bool(leaves) and all(isinstance(v, (jax.Array, np.ndarray, np.generic))
                                for v in leaves)


class _Key:
    """Hashable stand-in for a static argument (by value when hashable, else by identity)."""

    def __init__(self, value):
        self.value = value
        try:
            self._hash = hash(value)
            self._by_value = True
        except TypeError:
            self._hash, self._by_value = id(value), False

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if not isinstance(other, _Key):
            return False
        if self._by_value and other._by_value:
            return type(self.value) is type(other.value) and self.value == other.value
        return self.value is other.value


class _Bound:
    """``fn`` with its non-array arguments fixed and the audited argument replaceable.

    Hashable, so it can be a static argument of jitted kernels: auditing the same function
    with the same shapes again reuses every compiled kernel (a warm audit).
    """

    def __init__(self, fn, args, argnums, flat):
        self.fn, self.argnums, self.flat = fn, argnums, flat
        self.static = tuple((i, _Key(a)) for i, a in enumerate(args) if not _is_data(a))
        self._key = (_Key(fn), argnums, self.static, flat.treedef,
                     tuple(tuple(s) for s in flat.shapes))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Bound) and self._key == other._key

    @staticmethod
    def dynamic(args):
        return tuple(a if _is_data(a) else None for a in args)

    def call(self, target, dynamic):
        args = list(dynamic)
        for i, key in self.static:
            args[i] = key.value
        return self.fn(*_replace(args, self.argnums, target))

    def flat_call(self, x, dynamic):
        return self.call(self.flat.unravel(x), dynamic)


class _FlatCall:
    """The oracle's view: a flat vector and the dynamic arguments -> the output
    (``output="value"``), the raveled output (``"ravel"``, Jacobians) or the raveled
    autodiff gradient (``"grad"``, Hessian-vector products)."""

    def __init__(self, bound, output="value"):
        self.bound, self.output = bound, output

    def __hash__(self):
        return hash((self.bound, self.output))

    def __eq__(self, other):
        return isinstance(other, _FlatCall) and (self.bound, self.output) == \
            (other.bound, other.output)

    def __call__(self, x, dynamic):
        if self.output == "grad":
            g = jax.grad(lambda v: self.bound.flat_call(v, dynamic))(x)
            return g
        out = self.bound.flat_call(x, dynamic)
        return jnp.ravel(out) if self.output == "ravel" else out


@functools.partial(jax.jit, static_argnums=0)
def _compiled_call(fn_key, args):
    return fn_key.value(*args)


def _call(fn, args):
    """fn(*args), compiled once per function and shapes when every argument is an array (one
    compilation instead of one per primitive in eager mode); eager otherwise."""
    if all(_is_data(a) for a in args):
        try:
            return _compiled_call(_Key(fn), tuple(args))
        except jax.errors.JAXTypeError:      # not traceable (Python control flow on values)
            pass
    return fn(*args)


@functools.partial(jax.jit, static_argnums=0)
def _grad_kernel(bound, target, dynamic):
    return jax.grad(lambda t: bound.call(t, dynamic))(target)


@functools.partial(jax.jit, static_argnums=0)
def _jvp_kernel(bound, target, dynamic, tangents):
    """Forward-mode derivatives along a batch of tangents (leading axis)."""
    return jax.vmap(lambda t: jax.jvp(lambda x: bound.call(x, dynamic), (target,), (t,))[1])(
        tangents)


@functools.partial(jax.jit, static_argnums=0)
def _hessian_diagonal_kernel(bound, target, dynamic, rows):
    grad = jax.grad(lambda t: bound.call(t, dynamic))

    def one(row):
        hv = jax.jvp(grad, (target,), (bound.flat.unravel(row, bound.flat.dtypes),))[1]
        return jnp.dot(jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(hv)]),
                       row)
    return jax.vmap(one)(rows)


def _to_float64(tree):
    return jax.tree_util.tree_map(
        lambda v: jnp.asarray(v, jnp.float64)
        if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating) else v, tree)


def _conditioning(derivatives, target, flat, key, count=4):
    """How much each derivative element moves when the audited input moves by one ulp.

    Rounding inside a computation acts like perturbing its intermediates at their own
    magnitude; for a derivative computed from large inputs (logits of 1e4 in float32) that
    costs digits no matter how carefully it is written. Re-evaluating the derivatives at
    ``count`` random one-ulp perturbations of the input measures that sensitivity, cross terms
    included, for the price of a few gradient evaluations.
    """
    leaves = jax.tree_util.tree_leaves(target)
    base = [flat.ravel(d(target), "", "") for d in derivatives]
    deviation = np.zeros(flat.n)
    for k in jax.random.split(key, count):
        keys = jax.random.split(k, len(leaves))
        moved = [jnp.nextafter(v, jnp.where(jax.random.bernoulli(kk, 0.5, v.shape),
                                            jnp.asarray(jnp.inf, v.dtype),
                                            jnp.asarray(-jnp.inf, v.dtype)))
                 for kk, v in zip(keys, leaves)]
        tree = jax.tree_util.tree_unflatten(flat.treedef, moved)
        for d, b in zip(derivatives, base):
            with np.errstate(invalid="ignore"):
                gap = np.abs(flat.ravel(d(tree), "", "") - b)
            deviation = np.fmax(deviation, np.where(np.isfinite(gap), gap, 0.0))
    return deviation


def _magnitude(derivative, x):
    """sum |x_i df/dx_i|: the size of what f is computed from, to first order. When those
    terms cancel (f - r with large scores), rounding is relative to them, not to |f|."""
    with np.errstate(invalid="ignore"):
        terms = np.abs(derivative) * np.abs(x)
    return float(np.sum(terms[np.isfinite(terms)]))


def _z_for(probes, miss=0.01):
    """z with P(|N(0,1)| < z)^probes = miss: a discrepancy of norm >= tol/z is caught with
    probability >= 1 - miss by ``probes`` Gaussian probes."""
    target = miss ** (1.0 / probes)
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < target else (lo, mid)
    return lo


def _classify(a, r, o, oe, tol_model, left=None, right=None, hull_slack=None, side_err=None,
              tol_kink=None):
    """Element classifications (object array) for flat arrays; ``a`` may be None.

    ``tol_kink`` (default ``tol_model``) is the tolerance for calling the one-sided
    derivatives different; it must not include the measured ulp-sensitivity, which is itself
    large at a kink (a one-ulp move flips the side)."""
    tol = tol_model + 3 * oe
    labels = np.full(r.shape, R.PASS, dtype=object)
    finite_o = np.isfinite(o)
    ro_ok = np.abs(r - o) <= tol
    if a is not None:
        ao_ok = np.abs(a - o) <= tol
        ar_ok = np.abs(a - r) <= 2 * tol_model
        labels[ro_ok & ~ao_ok] = R.HAND_WRONG
        labels[~ro_ok & ao_ok] = R.AUTODIFF_WRONG
        # Hand-derived and autodiff agree but the oracle, confident, does not: autodiff is
        # using the hand-derived rule (custom_vjp) or both share a mistake.
        confident = oe <= 0.1 * np.abs(a - o)
        labels[~ro_ok & ~ao_ok & ar_ok & confident] = R.SHARED_WRONG
        labels[~ro_ok & ~ao_ok & ar_ok & ~confident] = R.UNSTABLE
        labels[~ro_ok & ~ao_ok & ~ar_ok] = R.ALL_DISAGREE
    else:
        bad = ~ro_ok
        confident = oe <= 0.1 * np.abs(r - o)
        labels[bad & ~confident] = R.UNSTABLE
        labels[bad & confident] = R.AUTODIFF_WRONG
    labels[~finite_o] = R.UNSTABLE
    if left is not None:
        tol_kink = tol_model if tol_kink is None else tol_kink
        kink = np.isfinite(left) & np.isfinite(right) & \
            (np.abs(right - left) > 2 * tol_kink + 10 * side_err)
        lo = np.minimum(left, right) - hull_slack - tol_kink
        hi = np.maximum(left, right) + hull_slack + tol_kink
        chosen = a if a is not None else r
        inside = (chosen >= lo) & (chosen <= hi)
        labels[kink & inside] = R.KINK
        labels[kink & ~inside] = R.NOT_SUBGRADIENT if a is not None else R.AUTODIFF_WRONG
    return labels


def _hull_slack(est):
    """Allowance around the one-sided derivatives at a kink: their error estimates plus the
    curvature of each smooth side over one step (the central second difference is spurious
    across a kink, the one-sided ones are not)."""
    curvature = np.maximum(np.abs(est.second_left), np.abs(est.second_right))
    step = est.step if est.step.ndim == 2 else est.step[:, None]
    out = 4 * est.side_error + step * curvature
    return out[:, 0] if out.shape[1] == 1 and est.value.shape[1] == 1 else out


def _elements(flat, labels, a, r, o, oe, tol, left=None, right=None, index=None, outputs=None):
    """Element records, worst first (by error / tolerance), and the kinks."""
    index = np.arange(r.size) if index is None else np.asarray(index)
    chosen = a if a is not None else r
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(np.isfinite(chosen), np.abs(chosen - o) / np.maximum(tol, 1e-300), np.inf)
    score = np.where(np.isnan(score), np.inf, score)
    failing = np.array([lab not in (R.PASS, R.KINK, R.SKIPPED) for lab in labels])
    order = np.lexsort((-score, ~failing))

    def record(k):
        path, idx = flat.locate(index[k])
        return R.Element(
            path=path, index=idx, classification=str(labels[k]),
            autodiff=float(r[k]), oracle=float(o[k]), oracle_error=float(oe[k]),
            tolerance=float(tol[k]), analytic=None if a is None else float(a[k]),
            left=None if left is None else float(left[k]),
            right=None if right is None else float(right[k]),
            output=None if outputs is None else tuple(outputs[k]))

    worst = [record(k) for k in order[:KEEP]]
    kinks = [record(k) for k in np.nonzero(labels == R.KINK)[0][:1000]]
    return worst, kinks


def _counts(labels):
    names = [R.PASS, R.KINK, R.SKIPPED, R.HAND_WRONG, R.NOT_SUBGRADIENT, R.ALL_DISAGREE,
             R.SHARED_WRONG,
             R.AUTODIFF_WRONG, R.UNSTABLE]
    return {n: int(np.sum(labels == n)) for n in names if n == R.PASS or np.any(labels == n)}


def _verdict(labels, has_analytic, quantity, probe_checks=(), scope=None):
    """(verdict, blame, ok). With a hand-derived derivative, that derivative is what is
    audited: autodiff's own inaccuracies are reported as notes, not failures. ``scope``
    says what a pass covered (default: every element)."""
    n = labels.size
    count = lambda *names: int(sum(np.sum(labels == x) for x in names))  # noqa: E731
    failed = [p for p in probe_checks if not p.ok]
    hand_probes = [p for p in failed if p.what.startswith("hand-derived")]
    auto_probes = [p for p in failed if not p.what.startswith("hand-derived")]
    hand, shared = count(R.HAND_WRONG, R.NOT_SUBGRADIENT, R.ALL_DISAGREE), count(R.SHARED_WRONG)
    auto, unstable, kinks = count(R.AUTODIFF_WRONG), count(R.UNSTABLE), count(R.KINK)
    kink_note = f" ({kinks} kink{'s' if kinks != 1 else ''} classified)" if kinks else ""
    if has_analytic and (hand or hand_probes):
        where = f" at {hand + shared} of {n} elements" if hand + shared else \
            " along random probes"
        return (f"hand-derived {quantity} is wrong{where}: it differs from the oracle while "
                f"autodiff agrees"), "hand-derived", False
    if has_analytic and shared:
        return (f"hand-derived {quantity} is wrong at {shared} of {n} elements: it agrees with "
                f"autodiff but both differ from the oracle, beyond its error estimate (autodiff "
                f"uses the hand-derived rule through custom_vjp/custom_jvp, or both share the "
                f"mistake)"), "hand-derived", False
    if not has_analytic and (auto or auto_probes):
        what = f"at {auto} of {n} elements" if auto else \
            "; ".join(p.what for p in auto_probes)
        return (f"autodiff disagrees with the oracle {what}: the function is not "
                f"differentiable there or its derivative rule is wrong"), "autodiff", False
    if unstable:
        return (f"inconclusive at {unstable} of {n} elements: the oracle's estimate is too "
                f"uncertain there to judge (numerically unstable function or a "
                f"non-differentiable point the oracle cannot resolve)"), "unstable", False
    agree = "hand-derived, autodiff and oracle agree" if has_analytic else \
        "autodiff and oracle agree"
    scope = scope or f"at all {n} elements"
    verdict = f"{agree} {scope}{kink_note}" if not auto else \
        f"hand-derived {quantity} and oracle agree {scope}{kink_note}"
    if auto or auto_probes:
        verdict += (f"; note: autodiff is less accurate than the hand-derived {quantity}"
                    + (f" at {auto} elements" if auto else "")
                    + ("; " + "; ".join(f"{p.what} differ" for p in auto_probes)
                       if auto_probes else ""))
    return verdict, "none", True


def _forward_probes(bound, target, dynamic, flat, r, key, eps, kappa):
    """Forward mode (jvp) against reverse mode along random directions."""
    v = np.asarray(jax.random.normal(key, (FORWARD_PROBES, flat.n)))
    tangents = jax.tree_util.tree_map(
        lambda *leaves: jnp.stack(leaves), *[flat.unravel(jnp.asarray(vi), flat.dtypes) for vi in v])
    try:
        got = np.asarray(_jvp_kernel(bound, target, dynamic, tangents), np.float64)
    except (TypeError, NotImplementedError) as e:
        return R.ProbeCheck("forward mode vs reverse mode", 0.0, True,
                            f"forward mode unavailable ({type(e).__name__}: {str(e)[:80]})")
    # the tangent is rounded to the audited dtype: use that rounded tangent for the reference
    v_used = np.stack([flat.ravel(flat.unravel(jnp.asarray(vi), flat.dtypes), "", "") for vi in v])
    want = v_used @ r
    # Both are autodiff in the same dtype: a wrong rule shows as an O(1) relative gap, while
    # saturated intermediates (logits of 1e4) legitimately cost digits, so the floor is
    # sqrt(eps) rather than eps.
    magnitude = np.abs(v_used) @ np.abs(r) + np.abs(want)
    tol = np.maximum(kappa * eps, np.sqrt(eps)) * magnitude + 1e-300
    worst = float(np.max(np.abs(got - want) / tol))
    return R.ProbeCheck("forward mode vs reverse mode", worst, worst <= 1.0,
                        f"{FORWARD_PROBES} random directions")


def check(fn, *args, **options) -> R.AuditReport:
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
      probes: number of random probe directions in probe mode.
      kappa: safety factor of the tolerance model (see the module docstring).
      oracle: "auto" (Richardson central differences; the complex step, exact to rounding,
        where their error estimate misses the tolerance and the function is complex-safe),
        "complex" (complex step everywhere; an error if not complex-safe) or "richardson".
      key: PRNG key for the probes (default PRNGKey(0)).
      memory: bytes of perturbed inputs held at once by the oracle.

    The audit runs with 64-bit types enabled (the oracle needs float64, whatever the global
    setting); the audited function still runs in the dtypes of its arguments.
    Returns an :class:`AuditReport`; ``bool(report)`` is ``report.ok``.
    """
    with _oracle.x64():
        return _check(fn, *args, **options)


def _check(fn, *args, grad=None, hess=None, hvp=None, argnums=0, mode="auto",
           max_exhaustive=MAX_EXHAUSTIVE, probes=16, kappa=KAPPA, oracle="auto", key=None,
           name=None, memory=256 * 2 ** 20) -> R.AuditReport:
    who = f"lj.audit.check({name or getattr(fn, '__name__', 'fn')})"
    name = name or getattr(fn, "__name__", repr(fn))
    key = jax.random.PRNGKey(0) if key is None else key
    k_oracle, k_forward, k_probe, k_hess = jax.random.split(key, 4)
    target = _select(args, argnums)
    flat = _Flat(target, who)
    bound, dynamic = _Bound(fn, args, argnums, flat), _Bound.dynamic(args)
    out = jax.eval_shape(lambda *a: fn(*a), *args) if all(_is_data(a) for a in args) \
        else fn(*args)
    if jnp.ndim(out) != 0:
        raise ValueError(f"{who}: fn must return a scalar, got shape {jnp.shape(out)}; use "
                         f"lj.audit.check_jacobian for vector outputs.")
    autodiff = functools.partial(_grad_kernel, bound, dynamic=dynamic)
    r = flat.ravel(autodiff(target), who, "autodiff")
    a = None if grad is None else flat.ravel(_call(grad, args), who, "grad(*args)")
    derivatives = [autodiff] + ([] if grad is None else
                                [lambda t: _call(grad, _replace(args, argnums, t))])
    sensitivity = CONDITIONING * _conditioning(derivatives, target, flat, k_forward)
    exhaustive = mode == "exhaustive" or (mode == "auto" and flat.n <= max_exhaustive)
    if mode not in ("auto", "exhaustive", "probe"):
        raise ValueError(f"{who}: mode must be 'auto', 'exhaustive' or 'probe', got {mode!r}.")
    if oracle not in ("auto", "complex", "richardson"):
        raise ValueError(f"{who}: oracle must be 'auto', 'complex' or 'richardson', got {oracle!r}.")

    forward = _forward_probes(bound, target, dynamic, flat, r, k_forward, flat.eps, kappa)
    with _oracle.x64():
        x = flat.ravel(target, who, "target")
        orc = _oracle.Oracle(_FlatCall(bound), x, _to_float64(dynamic), memory,
                             magnitude=_magnitude(r, x))
        scale_r = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
        tol_model = kappa * flat.eps * (np.abs(r) + scale_r) + sensitivity
        if exhaustive:
            report = _exhaustive(flat, orc, a, r, tol_model, oracle, kappa, name, sensitivity,
                                 k_oracle, who)
        else:
            report = _probe_mode(flat, orc, a, r, oracle, kappa, name, probes, k_probe,
                                 sensitivity, k_oracle, who)
        report.probes.insert(0, forward)
        if not forward.ok and report.ok:
            if a is None:
                report.ok, report.blame = False, "autodiff"
                report.verdict = "forward-mode and reverse-mode autodiff disagree"
            else:
                report.verdict += "; note: forward-mode and reverse-mode autodiff differ"
        if hess is not None:
            report.sub_reports.append(
                _hessian_diagonal(bound, args, dynamic, flat, orc, hess, kappa, name,
                                  exhaustive, k_hess, who))
        if hvp is not None:
            report.sub_reports.append(
                _hessian_vector(bound, args, dynamic, flat, hvp, kappa, name, k_hess, who))
        for sub in report.sub_reports:
            if not sub.ok and report.ok:
                report.ok, report.blame = False, sub.blame
                report.verdict = f"{report.verdict}; but {sub.quantity}: {sub.verdict}"
    return report


def _complex_where_needed(orc, oracle, index, o, oe, target, key, who):
    """Replace finite-difference estimates that missed ``target`` by complex-step ones
    (exact to rounding) where the function is complex-safe. Returns the oracle's name."""
    poor = np.ones(len(index), bool) if oracle == "complex" else \
        ~(oe <= target) | ~np.isfinite(o)
    if oracle == "richardson" or not poor.any():
        return "Richardson central differences"
    if not orc.detect_complex_safe(key):
        if oracle == "complex":
            raise ValueError(f"{who}: oracle='complex' but the function is not complex-safe "
                             f"(it rejects complex input or its complex step disagrees with "
                             f"finite differences); use oracle='auto'.")
        return "Richardson central differences (complex step not usable: not complex-safe)"
    o[poor] = orc.complex_step(index=np.asarray(index)[poor])[:, 0]
    oe[poor] = 4 * _oracle.EPS64 * np.abs(o[poor])
    if poor.all():
        return "complex step"
    return f"Richardson central differences; complex step at {int(poor.sum())} elements"


def _oracle_target(tol_model, r):
    scale = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
    return np.maximum(tol_model, ORACLE_GOAL * scale) / 3


def _exhaustive(flat, orc, a, r, tol_model, oracle, kappa, name, sensitivity, key, who):
    index = np.arange(flat.n)
    target = _oracle_target(tol_model, r)[:, None]
    est = orc.refined(index, target=target)
    o, oe = est.value[:, 0].copy(), est.error[:, 0].copy()
    method = _complex_where_needed(orc, oracle, index, o, oe, target[:, 0], key, who)
    scale_o = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    tol_base = kappa * flat.eps * (np.abs(o) + scale_o)
    tol_model = tol_base + sensitivity
    sides = (est.left[:, 0], est.right[:, 0], _hull_slack(est), est.side_error[:, 0])
    labels = _classify(a, r, o, oe, tol_model, *sides, tol_kink=tol_base)
    # An infinite input (alpha = -inf) cannot be perturbed: its derivative is a limit.
    labels[~np.isfinite(np.asarray(orc.x))] = R.SKIPPED
    tol = tol_model + 3 * oe
    worst, kinks = _elements(flat, labels, a, r, o, oe, tol, sides[0], sides[1])
    verdict, blame, ok = _verdict(labels, a is not None, "gradient")
    median_rel = float(np.median(tol / np.maximum(np.abs(o), 1e-300))) if flat.n else 0.0
    detection = (f"every element checked; an element is flagged when off by more than its "
                 f"tolerance (median {np.median(tol):.2g} absolute, {median_rel:.2g} relative "
                 f"to its own value)")
    report = R.AuditReport(name, "gradient", "exhaustive", flat.n, flat.dtype, method, kappa,
                           verdict, blame, ok, detection, _counts(labels), worst, kinks, [])
    report._sweep = _sweeper(orc, worst, flat, o)
    return report


def _sweeper(orc, worst, flat, o):
    if not worst:
        return None
    e = worst[0]
    leaf = flat.paths.index(e.path)
    i = int(flat.offsets[leaf] + (np.ravel_multi_index(e.index, flat.shapes[leaf])
                                  if e.index else 0))

    def sweep():
        steps = np.logspace(-1, -13, 25) * max(1.0, abs(float(orc.x[i])))
        with _oracle.x64():
            estimates = orc.sweep(i, steps)[:, 0]
        return steps, np.abs(estimates - o[i]), e.where
    return sweep


def _probe_mode(flat, orc, a, r, oracle, kappa, name, probes, key, sensitivity, key_cs, who):
    v = jax.random.normal(key, (probes, flat.n), jnp.float64)
    est = orc.finite_differences(vectors=v)
    o_v, oe_v = est.value[:, 0].copy(), est.error[:, 0].copy()
    vn = np.asarray(v)
    target = flat.eps * (np.abs(vn) @ np.abs(r))
    method = "Richardson central differences"
    if oracle == "complex" or (oracle == "auto" and np.any(~(oe_v <= target))):
        if orc.detect_complex_safe(key_cs):
            o_v = orc.complex_step(vectors=v)[:, 0]
            oe_v = 4 * _oracle.EPS64 * (np.abs(o_v) + np.abs(vn) @ np.abs(r))
            method = "complex step"
        elif oracle == "complex":
            raise ValueError(f"{who}: oracle='complex' but the function is not complex-safe; "
                             f"use oracle='auto'.")
    r_v = vn @ r
    tol_v = kappa * flat.eps * (np.abs(vn) @ np.abs(r) + np.abs(o_v)) + 3 * oe_v + \
        np.abs(vn) @ sensitivity
    checks = [R.ProbeCheck("autodiff vs oracle along random probes",
                           float(np.max(np.abs(r_v - o_v) / tol_v)),
                           bool(np.all(np.abs(r_v - o_v) <= tol_v)), f"{probes} probes")]
    if a is not None:
        a_v = vn @ a
        checks.append(R.ProbeCheck("hand-derived vs oracle along random probes",
                                   float(np.max(np.abs(a_v - o_v) / tol_v)),
                                   bool(np.all(np.abs(a_v - o_v) <= tol_v)), f"{probes} probes"))
    # Elementwise: hand-derived vs autodiff everywhere (cheap), oracle where they differ.
    scale_r = np.max(np.abs(r[np.isfinite(r)]), initial=0.0)
    tol_model = kappa * flat.eps * (np.abs(r) + scale_r) + sensitivity
    labels = np.array([], dtype=object)
    worst, kinks = [], []
    if a is not None:
        gap = np.where(np.isfinite(a - r), np.abs(a - r) / (2 * tol_model + 1e-300), np.inf)
        suspicious = np.nonzero(gap > 1)[0]
        suspicious = suspicious[np.argsort(-gap[suspicious])][:LOCALISE]
        if suspicious.size:
            e = orc.refined(suspicious, target=np.broadcast_to(
                tol_model[:, None] / 3, (flat.n, 1)))
            o, oe = e.value[:, 0].copy(), e.error[:, 0].copy()
            tm = tol_model[suspicious]
            _complex_where_needed(orc, oracle, suspicious, o, oe, tm / 3, key_cs, who)
            labels = _classify(a[suspicious], r[suspicious], o, oe, tm, e.left[:, 0],
                               e.right[:, 0], _hull_slack(e), e.side_error[:, 0],
                               tol_kink=tm - sensitivity[suspicious])
            worst, kinks = _elements(flat, labels, a[suspicious], r[suspicious], o, oe,
                                     tm + 3 * oe, e.left[:, 0], e.right[:, 0], index=suspicious)
    scope = f"along {probes} random probes" + \
        (" and elementwise (hand-derived vs autodiff)" if a is not None else "")
    verdict, blame, ok = _verdict(labels, a is not None, "gradient", checks, scope=scope)
    z = _z_for(probes)
    threshold = float(np.median(tol_v)) / z / math.sqrt(flat.n)
    gnorm = float(np.linalg.norm(r))
    detection = (f"{probes} Gaussian probes catch an autodiff/oracle discrepancy vector of "
                 f"norm >= {threshold * math.sqrt(flat.n):.2g} ({threshold * math.sqrt(flat.n) / max(gnorm, 1e-300):.2g} "
                 f"of the gradient's norm) with probability >= 99%"
                 + ("; hand-derived vs autodiff compared at every element (tolerance median "
                    f"{np.median(2 * tol_model):.2g}), the oracle localising up to {LOCALISE} "
                    f"disagreeing elements" if a is not None else ""))
    counts = {"probes": probes, **(_counts(labels) if labels.size else {})}
    return R.AuditReport(name, "gradient", "random probes", flat.n, flat.dtype, method, kappa,
                         verdict, blame, ok, detection, counts, worst, kinks, checks)


def _hessian_diagonal(bound, args, dynamic, flat, orc, hess, kappa, name, exhaustive, key,
                      who):
    """Hand-derived Hessian diagonal vs forward-over-reverse autodiff vs second differences."""
    h_hand = flat.ravel(_call(hess, args), who, "hess(*args)")
    index = np.arange(flat.n) if exhaustive else np.sort(np.asarray(
        jax.random.choice(key, flat.n, (min(flat.n, LOCALISE),), replace=False)))
    target = _select(args, bound.argnums)
    auto = []
    for lo in range(0, len(index), orc.chunk):
        idx = index[lo:lo + orc.chunk]
        rows = jax.nn.one_hot(jnp.asarray(idx), flat.n, dtype=flat.dtypes[0])
        auto.append(np.asarray(_hessian_diagonal_kernel(bound, target, dynamic, rows),
                               np.float64))
    auto = np.concatenate(auto)
    scale_auto = np.max(np.abs(auto[np.isfinite(auto)]), initial=0.0)
    second_target = np.zeros((flat.n, 1))
    second_target[index, 0] = kappa * flat.eps * (np.abs(auto) + scale_auto) / 3
    est = orc.refined(index, target=np.full((flat.n, 1), np.inf), second_target=second_target)
    o, oe = est.second[:, 0], est.second_error[:, 0]
    scale = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    tol_model = kappa * flat.eps * (np.abs(o) + scale)
    hand = h_hand[index]
    labels = _classify(hand, auto, o, oe, tol_model)
    # A jump in the second derivative (huber at |r| = delta): the one-sided second
    # differences disagree by an amount that does not shrink with the step. Such an element
    # passes when the hand-derived value lies between the one-sided values.
    left, right = est.second_left[:, 0], est.second_right[:, 0]
    jump = est.second_jump[:, 0] & (np.abs(right - left) > 2 * tol_model)
    lo, hi = np.minimum(left, right) - tol_model, np.maximum(left, right) + tol_model
    labels[jump & (hand >= lo) & (hand <= hi)] = R.KINK
    labels[jump & ~((hand >= lo) & (hand <= hi))] = R.NOT_SUBGRADIENT
    # Where the gradient itself jumps the second derivative is a Dirac delta: any finite
    # value (the hand-derived one is usually the almost-everywhere value) is a kink choice.
    gap = np.abs(est.right[:, 0] - est.left[:, 0])
    gradient_kink = gap - 10 * est.side_error[:, 0] > \
        np.sqrt(_oracle.EPS64) * (np.abs(est.left[:, 0]) + np.abs(est.right[:, 0]))
    labels[gradient_kink] = R.KINK
    left = np.where(gradient_kink, -np.inf, left)
    right = np.where(gradient_kink, np.inf, right)
    tol = tol_model + 3 * oe
    worst, kinks = _elements(flat, labels, hand, auto, o, oe, tol, left, right, index=index)
    verdict, blame, ok = _verdict(labels, True, "Hessian diagonal")
    detection = (f"{'every' if exhaustive else len(index)} diagonal element"
                 f"{'' if exhaustive else 's (random sample)'} checked; tolerance median "
                 f"{np.median(tol):.2g}")
    return R.AuditReport(name, "Hessian diagonal", "exhaustive" if exhaustive else
                         "sampled elements", len(index), flat.dtype,
                         "Richardson second differences", kappa, verdict, blame, ok, detection,
                         _counts(labels), worst, kinks, [])


def _hessian_vector(bound, args, dynamic, flat, hvp, kappa, name, key, who, probes=4):
    """Hand-derived Hessian-vector products vs forward-over-reverse vs differences of the
    float64 autodiff gradient along the same vectors; symmetry u.Hv = v.Hu."""
    target = _select(args, bound.argnums)
    grad = jax.grad(lambda t: bound.call(t, dynamic))
    vs = np.asarray(jax.random.normal(key, (probes, flat.n)))
    trees = [flat.unravel(jnp.asarray(v), flat.dtypes) for v in vs]
    hand = np.stack([flat.ravel(hvp(t, *args), who, "hvp(v, *args)") for t in trees])
    auto = np.stack([flat.ravel(jax.jvp(grad, (target,), (t,))[1], who, "jvp")
                     for t in trees])
    vs = np.stack([flat.ravel(t, who, "v") for t in trees])
    orc = _oracle.Oracle(_FlatCall(bound, "grad"), flat.ravel(target, who, "target"),
                         _to_float64(dynamic))
    est = orc.finite_differences(vectors=jnp.asarray(vs))
    o, oe = est.value, est.error
    scale = np.max(np.abs(o), axis=1, keepdims=True)
    tol = kappa * flat.eps * (np.abs(o) + scale) + 3 * oe
    hand_ok = np.abs(hand - o) <= tol
    auto_ok = np.abs(auto - o) <= tol
    checks = [R.ProbeCheck("hand-derived HVP vs oracle", float(np.max(np.abs(hand - o) / tol)),
                           bool(np.all(hand_ok | ~auto_ok)), f"{probes} random vectors"),
              R.ProbeCheck("autodiff HVP vs oracle", float(np.max(np.abs(auto - o) / tol)),
                           bool(np.all(auto_ok)), "forward-over-reverse")]
    u_hv = np.sum(vs[1:] * hand[:-1], axis=1)
    v_hu = np.sum(vs[:-1] * hand[1:], axis=1)
    sym_tol = kappa * flat.eps * (np.abs(vs[1:]) * np.abs(hand[:-1])).sum(1) + \
        (np.abs(vs[1:]) * 3 * oe[:-1]).sum(1) + (np.abs(vs[:-1]) * 3 * oe[1:]).sum(1)
    checks.append(R.ProbeCheck("hand-derived HVP symmetry u.Hv = v.Hu",
                               float(np.max(np.abs(u_hv - v_hu) / sym_tol)),
                               bool(np.all(np.abs(u_hv - v_hu) <= sym_tol)), ""))
    labels = np.where(hand_ok, R.PASS, np.where(auto_ok, R.HAND_WRONG, R.UNSTABLE)).ravel()
    verdict, blame, ok = _verdict(labels.astype(object), True, "Hessian-vector product", checks)
    return R.AuditReport(name, "Hessian-vector product", "random probes", flat.n, flat.dtype,
                         "central differences of the float64 autodiff gradient", kappa, verdict,
                         blame, ok, f"{probes} random vectors, every component compared",
                         _counts(labels.astype(object)), [], [], checks)


def check_jacobian(fn, *args, **options) -> R.AuditReport:
    """Audit the Jacobian of a vector-valued ``fn(*args)`` w.r.t. ``args[argnums]``.

    ``jac`` (optional) is called like ``fn`` and returns the Jacobian as ``jax.jacrev`` does:
    for each leaf of the argument an array of shape ``output.shape + leaf.shape``. Every entry
    is compared (reverse and forward mode, Richardson oracle per input direction). Options:
    ``argnums``, ``kappa``, ``name``, ``memory`` as for :func:`check`.
    """
    with _oracle.x64():
        return _check_jacobian(fn, *args, **options)


def _check_jacobian(fn, *args, jac=None, argnums=0, kappa=KAPPA, name=None,
                    memory=256 * 2 ** 20) -> R.AuditReport:
    who = f"lj.audit.check_jacobian({name or getattr(fn, '__name__', 'fn')})"
    name = name or getattr(fn, "__name__", repr(fn))
    target = _select(args, argnums)
    flat = _Flat(target, who)
    bound, dynamic = _Bound(fn, args, argnums, flat), _Bound.dynamic(args)
    g = lambda t: bound.call(t, dynamic)  # noqa: E731
    out_shape = jnp.shape(g(target))
    m = int(np.prod(out_shape, dtype=int))

    def as_matrix(tree, what):
        leaves = jax.tree_util.tree_leaves(tree)
        if jax.tree_util.tree_structure(tree) != flat.treedef:
            raise ValueError(f"{who}: {what} must have the structure of the audited argument.")
        mats = []
        for leaf, shape in zip(leaves, flat.shapes):
            if tuple(np.shape(leaf)) != tuple(out_shape) + tuple(shape):
                raise ValueError(f"{who}: {what} leaf has shape {np.shape(leaf)}, expected "
                                 f"{tuple(out_shape) + tuple(shape)} (output + input shape).")
            mats.append(np.asarray(leaf, np.float64).reshape(m, -1))
        return np.concatenate(mats, axis=1)

    rev = as_matrix(jax.jacrev(g)(target), "jacrev")
    fwd = as_matrix(jax.jacfwd(g)(target), "jacfwd")
    a = None if jac is None else as_matrix(jac(*args), "jac(*args)")
    x = flat.ravel(target, who, "target")
    orc = _oracle.Oracle(_FlatCall(bound, "ravel"), x, _to_float64(dynamic), memory,
                         magnitude=np.max(np.abs(rev) @ np.abs(x), initial=0.0))
    scale_r = np.max(np.abs(rev), axis=1, keepdims=True)
    tol_model = kappa * flat.eps * (np.abs(rev) + scale_r)
    est = orc.refined(np.arange(flat.n), target=(tol_model / 3).T)
    o, oe = est.value.T, est.error.T
    scale_o = np.max(np.abs(o), axis=1, keepdims=True)
    tol_model = kappa * flat.eps * (np.abs(o) + scale_o)
    slack = _hull_slack(est).T
    labels = _classify(None if a is None else a.ravel(), rev.ravel(), o.ravel(), oe.ravel(),
                       tol_model.ravel(), est.left.T.ravel(), est.right.T.ravel(), slack.ravel(),
                       est.side_error.T.ravel())
    outs = [tuple(int(k) for k in np.unravel_index(i, out_shape)) if out_shape else ()
            for i in range(m)]
    pairs = [(outs[i], j) for i in range(m) for j in range(flat.n)]
    tol = (tol_model + 3 * oe).ravel()
    worst, kinks = _elements(flat, labels, None if a is None else a.ravel(), rev.ravel(),
                             o.ravel(), oe.ravel(), tol, est.left.T.ravel(), est.right.T.ravel(),
                             index=np.array([p[1] for p in pairs]),
                             outputs=[p[0] for p in pairs])
    fwd_gap = float(np.max(np.abs(fwd - rev) / (2 * tol_model + 1e-300), initial=0.0))
    checks = [R.ProbeCheck("forward mode (jacfwd) vs reverse mode (jacrev)", fwd_gap,
                           fwd_gap <= 1.0, "every entry")]
    verdict, blame, ok = _verdict(labels, a is not None, "Jacobian", checks)
    return R.AuditReport(name, "Jacobian", "exhaustive", flat.n * m, flat.dtype,
                         "Richardson central differences", kappa, verdict, blame, ok,
                         f"every entry checked; tolerance median {np.median(tol):.2g}",
                         _counts(labels), worst, kinks, checks)
