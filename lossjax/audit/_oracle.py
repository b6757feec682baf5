"""Numerical oracles: complex step and Richardson-extrapolated finite differences, in float64.

All perturbed evaluations are batched: one jitted, vmapped call evaluates the function at
``x ± h d`` for a chunk of directions ``d`` (unit vectors in exhaustive mode, random probes
otherwise). Nothing loops over elements in Python; only chunks of directions do, to bound
memory.

From the same seven evaluations per direction (``f(x)`` and ``x ± h, ± h/2, ± h/4``) come:
the central difference extrapolated twice (error O(h^6)) with an error estimate, the
one-sided derivatives extrapolated twice (O(h^3)) used to detect kinks, and the second
directional derivative (for Hessian diagonals).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lossjax._compile import fast_jit
from lossjax._sampling import host_rng
from lossjax.audit._flat import one_hot_rows

EPS64 = float(np.finfo(np.float64).eps)
BASE_STEP = 2.0 ** -5          # times max(1, log1p|x_i|); refined where the estimate is poor
REFINE = 2.0 ** -6             # each refinement level divides the step by 64
COMPLEX_STEP = 1e-20
_MULTIPLIERS = (1.0, 0.5, 0.25, -0.25, -0.5, -1.0)


def x64():
    """Context in which float64 exists, whatever the user's global setting."""
    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        return enable(True)
    try:  # older JAX
        from jax.experimental import enable_x64
        return enable_x64()
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


@dataclasses.dataclass
class Estimates:
    """Per-direction derivative estimates; arrays of shape (directions, outputs)."""
    value: np.ndarray          # best first-derivative estimate
    error: np.ndarray          # its estimated absolute error
    left: np.ndarray           # one-sided (backward) derivative, extrapolated
    right: np.ndarray          # one-sided (forward) derivative, extrapolated
    left_raw: np.ndarray       # first-order backward difference at the smallest step
    right_raw: np.ndarray
    side_error: np.ndarray     # error estimate of left/right
    second: np.ndarray         # second directional derivative
    second_error: np.ndarray
    second_left: np.ndarray    # one-sided second differences (first order)
    second_right: np.ndarray
    second_jump: np.ndarray    # their gap does not shrink with the step: a jump in f''
    noise: np.ndarray          # rounding part of ``error``: smaller steps cannot beat it
    step: np.ndarray           # base step used, per direction


def _richardson(values, f0, h, magnitude):
    """Estimates from f at x + m h d for m in _MULTIPLIERS; values (..., 6, m), h (..., 1).
    Host arithmetic (NumPy, float64): the compiled kernels only evaluate f.

    ``magnitude`` is the size of the terms f is computed from (sum |x_i df/dx_i|): when they
    cancel, rounding is relative to them, not to |f|."""
    F = [values[..., k, :] for k in range(6)]
    scale = np.max(np.abs(values), axis=-2) + np.abs(f0) + magnitude
    rounding = 2 * EPS64 * scale        # a few roundings of each evaluation of f
    d1, d2, d3 = (F[0] - F[5]) / (2 * h), (F[1] - F[4]) / h, (F[2] - F[3]) / (h / 2)
    r1a, r1b = (4 * d2 - d1) / 3, (4 * d3 - d2) / 3
    central = (16 * r1b - r1a) / 15
    central_err = np.abs(central - r1b) + rounding / h * 4

    def one_sided(G0, G1, G2, sign):
        p1, p2, p3 = sign * (G0 - f0) / h, sign * (G1 - f0) / (h / 2), sign * (G2 - f0) / (h / 4)
        q1a, q1b = 2 * p2 - p1, 2 * p3 - p2
        q2 = (4 * q1b - q1a) / 3
        return q2, np.abs(q2 - q1b), p3

    right, right_err, right_raw = one_sided(F[0], F[1], F[2], 1.0)
    left, left_err, left_raw = one_sided(F[5], F[4], F[3], -1.0)
    side_err = right_err + left_err + rounding / h * 16

    s1 = (F[0] - 2 * f0 + F[5]) / h ** 2
    s2 = (F[1] - 2 * f0 + F[4]) / (h / 2) ** 2
    s3 = (F[2] - 2 * f0 + F[3]) / (h / 4) ** 2
    t1a, t1b = (4 * s2 - s1) / 3, (4 * s3 - s2) / 3
    second = (16 * t1b - t1a) / 15
    second_err = np.abs(second - t1b) + rounding / h ** 2 * 64

    # One-sided second differences over [x, x + h/2] and [x, x + h]: for a smooth f their
    # left/right gap halves with the step; across a jump in f'' it stays.
    def sided(G_quarter, G_half, G_full):
        small = (G_half - 2 * G_quarter + f0) / (h / 4) ** 2
        big = (G_full - 2 * G_half + f0) / (h / 2) ** 2
        return small, big
    right2, right2_big = sided(F[2], F[1], F[0])
    left2, left2_big = sided(F[3], F[4], F[5])
    noise = rounding / h ** 2 * 256
    gap_small, gap_big = np.abs(right2 - left2), np.abs(right2_big - left2_big)
    jump = (gap_small > 0.75 * gap_big) & (gap_small > noise)
    return (central, central_err, left, right, left_raw, right_raw, side_err, second, second_err,
            left2, right2, jump, rounding / h * 4)


def _doubt(est):
    """How far the one-sided derivatives are apart beyond their own error estimates."""
    return np.maximum(np.abs(est.right - est.left) - 10 * est.side_error, 0.0)


def _settle(est):
    """Where the second derivative jumps (f'' differs left and right, the first derivative
    is continuous), central Richardson extrapolation is invalid (the error has odd powers of
    h); the two one-sided derivatives, each extrapolated on its smooth side, are not."""
    jump = est.second_jump & (np.abs(est.right - est.left) <= 10 * est.side_error + 1e-300)
    if np.any(jump):
        est.value = np.where(jump, (est.left + est.right) / 2, est.value)
        est.error = np.where(jump, est.side_error + np.abs(est.right - est.left) / 2, est.error)
    return est


@fast_jit(static_argnums=0)
def _fd_kernel(f, x, extra, directions, steps):
    """f(x), and f at x + m h d (m in _MULTIPLIERS) along a chunk of directions d: one
    compiled program per chunk shape."""
    f0 = jnp.atleast_1d(jnp.asarray(f(x, extra), jnp.float64))

    def along(d, h):
        d = d.astype(x.dtype)
        pts = x[None, :] + (h * jnp.asarray(_MULTIPLIERS))[:, None] * d[None, :]
        return jax.vmap(lambda p: jnp.atleast_1d(f(p, extra)))(pts)
    return f0, jax.vmap(along)(directions, steps)


@fast_jit(static_argnums=0)
def _cs_kernel(f, x, extra, directions):
    """Complex-step derivatives along a chunk of directions."""
    def along(d):
        out = f(jax.lax.complex(x, COMPLEX_STEP * d.astype(x.dtype)), extra)
        return jnp.imag(jnp.atleast_1d(out)) / COMPLEX_STEP
    return jax.vmap(along)(directions)


@functools.lru_cache(maxsize=16)
def _unit_rows(start, count, n):
    """Unit vectors e_start .. e_{start+count-1} as int8 rows, on the device: an exhaustive
    audit's chunks, built and transferred once per size."""
    rows = np.zeros((count, n), np.int8)
    rows[np.arange(count), start + np.arange(count)] = 1
    return jnp.asarray(rows)


class Oracle:
    """Finite-difference and complex-step derivatives of ``f(x, extra): R^n -> R^m`` at ``x``.

    ``magnitude`` (sum |x_i df/dx_i|, per output) sizes the rounding noise of f when its terms
    cancel; ``outputs`` is m, the size of f's output. ``f`` must be hashable (it is a static
    argument of the compiled kernels, so a second audit of the same function with the same
    shapes reuses them) and take a flat float64 (or
    complex128) vector plus ``extra``, a pytree of the other arguments. Build it and call every
    method inside :func:`x64`. ``memory`` bounds the perturbed inputs held at once (bytes).
    """

    def __init__(self, f, x, extra=(), memory=256 * 2 ** 20, magnitude=0.0, outputs=1):
        self.f = f
        self.extra = extra
        self.magnitude = np.asarray(magnitude, np.float64)
        self.x = np.asarray(x, np.float64)
        self.n = self.x.size
        self.f0 = None          # f(x), from the first finite-difference call
        self.m = int(outputs)   # the size of f's output
        per_direction = 8 * (self.n + self.m) * (len(_MULTIPLIERS) + 1)
        # A power of two up to 1024 directions a call: larger chunks measured slower (cache).
        fit = max(1, min(memory // per_direction, 1024))
        self.chunk = int(min(2 ** int(np.log2(fit)), 2 ** int(np.ceil(np.log2(max(self.n, 1))))))
        # Step scale grows like log|x| (as numdifftools): a logit of 1e4 still varies the
        # function on a scale of 1, so a step proportional to |x| would be far too coarse.
        self.scale = np.maximum(np.log1p(np.abs(self.x)), 1.0)
        self.complex_safe = None

    def _finite_differences(self, directions, steps):
        f0, values = _fd_kernel(self.f, self.x, self.extra, directions, steps)
        if self.f0 is None:
            self.f0 = f0            # read (and waited for) when the values are
        return values

    def _complex(self, directions):
        return _cs_kernel(self.f, self.x, self.extra, directions)

    def _chunks(self, count):
        for start in range(0, count, self.chunk):
            yield start, min(start + self.chunk, count)

    def _directions(self, index=None, vectors=None, lo=0, hi=0):
        """A chunk of directions, padded to the chunk size (one compiled shape)."""
        if vectors is not None:
            d = np.asarray(vectors[lo:hi])
            return jnp.asarray(np.pad(d, ((0, self.chunk - d.shape[0]), (0, 0)))), hi - lo
        # Dense int8 rows, cast inside the kernels: measured 3x faster than building each unit
        # vector inside the kernel, and 8x less memory than float64 rows.
        d = np.zeros(self.chunk, np.int64)
        d[:hi - lo] = np.asarray(index[lo:hi])
        if hi - lo == self.chunk and d[0] + self.chunk <= self.n and \
                np.array_equal(d, np.arange(d[0], d[0] + self.chunk)):
            return _unit_rows(int(d[0]), self.chunk, self.n), hi - lo   # exhaustive: cached
        return one_hot_rows(d, self.n), hi - lo

    # -- public -------------------------------------------------------------------------------

    def prefetch(self, index):
        """Start the base-step evaluations along unit vectors ``index`` now (JAX runs them
        asynchronously): the first :meth:`finite_differences` call along the same ``index``
        then only collects them. The audit calls this before computing autodiff, so that
        the oracle's kernels run while the rest of the audit is prepared."""
        index = np.asarray(index)
        self._prefetched = (index, self._dispatch(index, None, BASE_STEP))

    def _dispatch(self, index, vectors, relative_step):
        count = len(index) if vectors is None else vectors.shape[0]
        if vectors is None:
            steps_all = relative_step * np.asarray(self.scale)[np.asarray(index)]
        else:
            # per-element perturbation about relative_step * the typical scale of x
            rms = np.linalg.norm(np.asarray(vectors), axis=1) / np.sqrt(self.n)
            steps_all = relative_step * float(np.median(np.asarray(self.scale))) / \
                np.where(rms > 0, rms, 1.0)
        pending = []   # dispatch every chunk before reading any: JAX runs them asynchronously
        for lo, hi in self._chunks(count):
            d, used = self._directions(index, vectors, lo, hi)
            steps = np.zeros((self.chunk, 1))
            steps[:used, 0] = steps_all[lo:hi]
            pending.append((self._finite_differences(d, jnp.asarray(steps)), used))
        return steps_all, pending

    def finite_differences(self, index=None, vectors=None, relative_step=BASE_STEP):
        """Richardson estimates along unit vectors ``index`` or along rows of ``vectors``."""
        ready = getattr(self, "_prefetched", None)
        if ready is not None and vectors is None and relative_step == BASE_STEP and \
                np.array_equal(ready[0], np.asarray(index)):
            self._prefetched = None
            steps_all, pending = ready[1]
        else:
            steps_all, pending = self._dispatch(index, vectors, relative_step)
        values = np.concatenate([np.asarray(out)[:used] for out, used in pending])
        with np.errstate(all="ignore"):       # inf/NaN evaluations are judged later
            fields = _richardson(values, np.asarray(self.f0),
                                 np.asarray(steps_all)[:, None], self.magnitude)
        return Estimates(*fields, step=np.asarray(steps_all))

    def refined(self, index, target, levels=4, second_target=None, doubt_target=None):
        """Estimates along unit vectors ``index``. Directions whose error exceeds ``target``
        (shape (n, m)), whose one-sided derivatives disagree by more than ``doubt_target``
        (default ``target``; a kink, or just curvature at this step) or whose second
        derivative's error exceeds ``second_target`` are re-estimated with steps 64, 64^2, 64^3 and 64^4 times smaller; per direction the
        estimate with the smaller error plus one-sided gap is kept. A true kink keeps its gap
        at every step."""
        index = np.asarray(index)
        doubt_target = target if doubt_target is None else doubt_target
        est = _settle(self.finite_differences(index=index))
        step = BASE_STEP
        for _ in range(levels):
            doubt = _doubt(est)
            # Only truncation error shrinks with the step; rounding noise grows.
            poor_mask = (est.error > np.maximum(target[index], 4 * est.noise)) | \
                (doubt > doubt_target[index])
            if second_target is not None:
                poor_mask |= est.second_error > second_target[index]
            poor = np.nonzero(np.any(poor_mask, axis=1))[0]
            if poor.size == 0:
                break
            step *= REFINE
            finer = _settle(self.finite_differences(index=index[poor], relative_step=step))
            # Judge by the error estimate alone (at a true kink the one-sided gap stays at
            # every step, so preferring a small gap would keep a coarse step that hides the
            # kink), unless the finer estimate contradicts the coarser one beyond its error
            # estimate: then the coarser step was too large to see the function's scale
            # (a feature of width 1e-8), and its error estimate cannot be trusted.
            contradicted = np.abs(finer.value - est.value[poor]) > 3 * est.error[poor]
            better = np.all((finer.error < est.error[poor]) | contradicted, axis=1)
            if second_target is not None:   # a Hessian audit: judge by the second derivative
                better = np.all(finer.second_error < est.second_error[poor], axis=1) & (
                    np.all(finer.error + _doubt(finer) <= 4 * (est.error[poor] + doubt[poor]),
                           axis=1) | np.all(_doubt(est)[poor] > 0, axis=1))
            chosen = poor[better]
            for field in dataclasses.fields(Estimates):
                getattr(est, field.name)[chosen] = getattr(finer, field.name)[better]
        return est

    def complex_step(self, index=None, vectors=None):
        count = len(index) if vectors is None else vectors.shape[0]
        pending = []
        for lo, hi in self._chunks(count):
            d, used = self._directions(index, vectors, lo, hi)
            pending.append((self._complex(d), used))
        return np.concatenate([np.asarray(out)[:used] for out, used in pending])

    def detect_complex_safe(self, key):
        """Complex step is usable when f accepts complex input, its real part is f, and two
        random directional derivatives agree with the finite-difference estimate."""
        try:
            probes = host_rng(key).standard_normal((2, self.n))
            with warnings.catch_warnings():   # a function that drops the imaginary part
                warnings.simplefilter("ignore")   # fails the comparison below
                cs = self.complex_step(vectors=probes)
                real = np.asarray(self.f(jnp.asarray(self.x, jnp.complex128), self.extra))
        except Exception:  # noqa: BLE001 - any failure means "not complex-safe"
            self.complex_safe = False
            return False
        fd = self.finite_differences(vectors=probes)
        f0 = np.asarray(self.f0)
        ok = np.all(np.isfinite(cs)) and np.allclose(np.real(real).ravel(), f0, rtol=1e-12,
                                                      atol=1e-300)
        ok = ok and np.all(np.abs(cs - fd.value) <= 10 * fd.error + 1e-9 * (np.abs(fd.value) + 1e-300))
        self.complex_safe = bool(ok)
        return self.complex_safe

    def sweep(self, direction_index, steps):
        """Central differences along one unit vector for a range of steps (for plots)."""
        d = one_hot_rows([direction_index], self.n, np.float64)[0]
        out = []
        for h in steps:
            fp = np.asarray(jnp.atleast_1d(self.f(self.x + h * d, self.extra)))
            fm = np.asarray(jnp.atleast_1d(self.f(self.x - h * d, self.extra)))
            out.append((fp - fm) / (2 * h))
        return np.asarray(out)
