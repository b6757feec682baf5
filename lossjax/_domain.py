"""What a loss's argument *values* must satisfy: the part of the domain that trace-time checks
cannot see (shapes and dtypes are checked when tracing; values only exist at run time).

Each loss declares its :class:`Constraint` list; ``lj.checked`` turns them into
``checkify`` checks that name the offending index. Unchecked calls never evaluate them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Constraint:
    """argument: the argument whose entries are checked.
    expected:  what a valid entry is, in words (completes "must be ..."), or a function of the
               bound arguments giving those words (to state sizes known at trace time).
    holds:     bound arguments (a dict with every argument and hyperparameter) -> boolean
               array shaped like the argument, True where the entry is valid; or None when the
               constraint does not apply to this call (e.g. probability targets, not labels).
    """
    argument: str
    expected: Any
    holds: Callable[[dict], Optional[Any]]


def _array(a, name):
    x = a.get(name)
    return None if x is None or not hasattr(x, "shape") else jnp.asarray(x)


def class_index(labels: str = "labels", scores: str = "logits", *, axis: Optional[str] = "axis",
                ignore: Optional[str] = "ignore_index", classes_axis: int = -1,
                negative_ignored: bool = False) -> Constraint:
    """Integer labels in [0, C) (C: the size of ``scores``' class axis) or the ignore index.
    Float labels (probability targets) are not class indices: the constraint is skipped."""
    def classes(a):
        return _array(a, scores).shape[a[axis] if axis and axis in a else classes_axis]

    def holds(a):
        y, z = _array(a, labels), _array(a, scores)
        if y is None or z is None or not jnp.issubdtype(y.dtype, jnp.integer):
            return None
        c = classes(a)
        ok = (y >= 0) & (y < c)
        if ignore is not None and ignore in a:
            ok = ok | (y == a[ignore])
        if negative_ignored:
            ok = ok | (y < 0)
        return ok
    ignored = " or `ignore_index`" if ignore else " (negative: ignored)" if negative_ignored else ""
    return Constraint(labels, lambda a: f"a class index in [0, {classes(a)}){ignored}", holds)


def _entrywise(name, expected, valid, *, floats_only=False, when=None) -> Constraint:
    """``valid(x)`` on every entry of argument ``name``; skipped when the argument is absent,
    not an array (or, with ``floats_only``, not floating), or ``when(bound)`` is False."""
    def holds(a):
        x = _array(a, name)
        if x is None or (floats_only and not jnp.issubdtype(x.dtype, jnp.floating)) or \
                (when is not None and not when(a)):
            return None
        return valid(x)
    return Constraint(name, expected, holds)


def unit_interval(name: str, *, when: Optional[Callable[[dict], bool]] = None) -> Constraint:
    """Entries in [0, 1] (probabilities, soft targets, masks); integer labels are skipped."""
    return _entrywise(name, "in [0, 1]", lambda x: (x >= 0) & (x <= 1), floats_only=True,
                      when=when)


def nonnegative(name: str, *, when: Optional[Callable[[dict], bool]] = None) -> Constraint:
    return _entrywise(name, ">= 0", lambda x: x >= 0, when=when)


def nonpositive(name: str, what: str, *, when: Optional[Callable[[dict], bool]] = None):
    return _entrywise(name, f"<= 0 ({what})", lambda x: x <= 0, when=when)


def positive(name: str) -> Constraint:
    return _entrywise(name, "> 0", lambda x: x > 0)


def signs(name: str) -> Constraint:
    return _entrywise(name, "-1 or +1", lambda x: (x == 1) | (x == -1))


def flags(name: str) -> Constraint:
    """Padding indicators: exactly 0 or 1."""
    return _entrywise(name, "0 or 1", lambda x: (x == 0) | (x == 1))
