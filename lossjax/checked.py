"""Checked mode: the argument *values* that trace-time checks cannot see, checked at run time
(``jax.experimental.checkify``), with the offending index in the message.

    safe = lj.checked(lj.cross_entropy)
    jax.jit(safe)(logits, labels)          # raises if a label is outside [0, C) and is not
                                           # ignore_index, or an input is NaN, ...
    jax.jit(jax.grad(safe))(logits, labels)
    safe.grad(logits, labels)              # the hand-derived gradient, checked the same way

What is checked: every floating argument and ``weights`` is free of NaN; ``weights`` are
>= 0; and each loss's declared :class:`lossjax._domain.Constraint` list (class indices in
range, probabilities in [0, 1], variances >= 0, labels in {-1, +1}, paddings in {0, 1}, ...).
The first failing check is reported, e.g.
``cross_entropy: `labels`[2] = 7 must be a class index in [0, 3) or `ignore_index` (1 of 8
entries)``.

Called on concrete arrays, a failure raises ``checkify.JaxRuntimeError`` directly. Called
under a transformation (``jit``, ``grad``), the error is raised from a host callback when the
compiled program runs, so JAX reports it as a ``JaxRuntimeError`` whose message ends with the
same text. Inside your own ``checkify.checkify``-transformed function, call
:func:`check_inputs` instead to get the error functionally.

Unchecked losses are untouched: checked mode costs nothing unless it is used.
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

try:
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:                      # a JAX without it: the tracer test alone decides
    _trace_state_clean = None

__all__ = ["Checked", "check_concrete", "check_inputs", "checked", "eager_checks"]


def _check(loss_name, name, ok, value, expected):
    """One checkify check: every entry of ``ok`` is True, else name the first failing entry."""
    ok = jnp.broadcast_to(ok, jnp.shape(value))
    if ok.ndim == 0:
        checkify.check(ok, f"{loss_name}: `{name}` = {{v}} must be {expected}",
                       v=jnp.asarray(value))
        return
    bad = ~ok
    flat = jnp.argmax(bad.ravel())
    index = jnp.unravel_index(flat, ok.shape)
    where = ", ".join(f"{{i{k}}}" for k in range(ok.ndim))
    checkify.check(
        ~jnp.any(bad),
        f"{loss_name}: `{name}`[{where}] = {{v}} must be {expected} ({{n}} of {ok.size} "
        f"entries)",
        v=jnp.ravel(value)[flat], n=jnp.sum(bad), **{f"i{k}": i for k, i in enumerate(index)})


def _is_float_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def check_inputs(loss, *args, weights=None, where=None, reduction="mean", **kwargs) -> None:
    """Emit the run-time checks of ``loss(*args, **kwargs)`` as ``checkify.check`` calls.

    Use inside a function you transform with ``checkify.checkify`` (the checks then become
    part of its returned error); :func:`checked` does that for you."""
    del where, reduction                     # a boolean mask and a string: checked at trace time
    bound = loss._bind(args, kwargs).arguments
    for name, value in bound.items():
        if _is_float_array(value):
            _check(loss.name, name, ~jnp.isnan(value), value, "a number, not NaN")
    if weights is not None and _is_float_array(jnp.asarray(weights)):
        w = jnp.asarray(weights)
        _check(loss.name, "weights", ~jnp.isnan(w), w, "a number, not NaN")
        _check(loss.name, "weights", w >= 0, w, ">= 0")
    for constraint in loss.constraints:
        ok = constraint.holds(bound)
        if ok is not None:
            expected = constraint.expected
            _check(loss.name, constraint.argument, ok, bound[constraint.argument],
                   expected(bound) if callable(expected) else expected)


def _checked_fn(loss, method, tree, static, dynamic):
    """``checkify.checkify`` of the loss's ``method`` on the dynamic leaves of ``tree``."""
    fn = loss if method == "__call__" else getattr(loss, method)

    def body(*arrays):
        leaves = dict(static)
        leaves.update(zip(dynamic, arrays))
        a, kw = jax.tree_util.tree_unflatten(tree, [leaves[i] for i in range(tree.num_leaves)])
        check_inputs(loss, *a, **kw)
        return fn(*a, **kw)
    return checkify.checkify(body)


@functools.lru_cache(maxsize=256)
def _compiled(loss, method, tree, static, dynamic):
    return jax.jit(_checked_fn(loss, method, tree, static, dynamic))


def _run(loss, method, args, kwargs):
    """``loss.<method>(*args, **kwargs)`` with ``loss``'s checks, raising on the first failure:
    at once for concrete arrays (compiled once per signature), from a host callback when the
    caller's program runs under a transformation."""
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = tuple(i for i, x in enumerate(leaves)
                    if isinstance(x, (jax.Array, np.ndarray, np.generic)))
    static = tuple((i, x) for i, x in enumerate(leaves) if i not in dynamic)
    arrays = [leaves[i] for i in dynamic]
    if any(isinstance(x, jax.core.Tracer) for x in arrays):
        error, out = _checked_fn(loss, method, tree, static, dynamic)(*arrays)
        jax.debug.callback(lambda e: e.throw(), error)
        return out
    try:
        fn = _compiled(loss, method, tree, static, dynamic)
    except TypeError:                    # an unhashable static argument: not cached
        fn = _checked_fn(loss, method, tree, static, dynamic)
    error, out = fn(*arrays)
    error.throw()
    return out


@functools.lru_cache(maxsize=512)
def _inputs_only(loss, tree, static, dynamic):
    """The checks of ``loss`` on the dynamic leaves of ``tree``, compiled (no loss value)."""
    def body(*arrays):
        leaves = dict(static)
        leaves.update(zip(dynamic, arrays))
        a, kw = jax.tree_util.tree_unflatten(tree, [leaves[i] for i in range(tree.num_leaves)])
        check_inputs(loss, *a, **kw)
    return jax.jit(checkify.checkify(body))


_EAGER = {"on": True}


class _Restore:
    def __init__(self, previous):
        self.previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _EAGER["on"] = self.previous


def eager_checks(enabled: bool) -> _Restore:
    """Turn the value checks of eager calls on (the default) or off for this process; as a
    context manager (``with lj.eager_checks(False): ...``) only for the block."""
    previous, _EAGER["on"] = _EAGER["on"], bool(enabled)
    return _Restore(previous)


def check_concrete(loss, args, kwargs) -> None:
    """The checks of :func:`checked` for a call whose arguments are all concrete (an eager
    call, the notebook case), raising the same one-line error. Nothing happens when any
    argument is a tracer (under ``jit``, ``grad``, ``vmap``) or inside a trace: the compiled
    program is unchanged. Python lists and tuples of numbers are checked as arrays."""
    if not _EAGER["on"] or not _top_level():
        return
    args = tuple(_as_array(a) for a in args)
    kwargs = {k: _as_array(v) for k, v in kwargs.items()}
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = tuple(i for i, x in enumerate(leaves)
                    if isinstance(x, (jax.Array, np.ndarray, np.generic)))
    arrays = [leaves[i] for i in dynamic]
    if not arrays or any(isinstance(x, jax.core.Tracer) for x in arrays):
        return
    static = tuple((i, x) for i, x in enumerate(leaves) if i not in dynamic)
    try:
        fn = _inputs_only(loss, tree, static, dynamic)
    except TypeError:                    # an unhashable static argument: not cached
        fn = _inputs_only.__wrapped__(loss, tree, static, dynamic)
    error, _ = fn(*arrays)
    error.throw()


def _top_level() -> bool:
    """Not inside a trace (jit, grad, vmap, make_jaxpr), where even constant arguments become
    part of a program."""
    return True if _trace_state_clean is None else _trace_state_clean()


def _as_array(x):
    if isinstance(x, (list, tuple)) and x and all(
            isinstance(v, (bool, int, float, np.number)) for v in x):
        return np.asarray(x)
    return x


class Checked:
    """A loss whose calls (and ``.grad`` / ``.hess_diag``) check argument values at run time.
    Made by :func:`checked`; composes with ``jax.jit``, ``jax.grad`` and ``jax.vmap``."""

    def __init__(self, loss):
        self.loss = loss
        self.name = loss.name
        self.__name__ = self.__qualname__ = f"checked_{loss.name}"
        self.__signature__ = inspect.signature(loss)
        self.__doc__ = loss.__doc__

    def __repr__(self):
        return f"<lossjax.checked {self.loss.name}>"

    def __call__(self, *args, **kwargs):
        return _run(self.loss, "__call__", args, kwargs)

    def grad(self, *args, **kwargs):
        return _run(self.loss, "grad", args, kwargs)

    def hess_diag(self, *args, **kwargs):
        return _run(self.loss, "hess_diag", args, kwargs)


def checked(loss) -> Checked:
    """``loss`` in checked mode (see the module docstring). ``loss`` is a catalogue entry
    (``lj.cross_entropy``) or its name."""
    from lossjax._loss import Loss, get
    if isinstance(loss, str):
        loss = get(loss)
    if not isinstance(loss, Loss):
        raise TypeError(f"lj.checked: expected a lossjax Loss or its name, got "
                        f"{type(loss).__name__}.")
    return Checked(loss)
