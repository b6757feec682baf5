"""Your own loss in the lab: ``@lj.define_loss`` turns a terms function into a full ``lj.Loss``.

    @lj.define_loss(family="robust", formula=r"\\ell = \\log(1 + r^2 / c^2)",
                    references=["Black & Anandan 1996"], example=((8, 3), (8, 3)))
    def cauchy(predictions, targets, *, c=1.0):
        r = predictions - targets
        return lj.Terms(jnp.log1p((r / c) ** 2),
                        grad=lambda: 2 * r / (c * c + r * r),
                        hess=lambda: 2 * (c * c - r * r) / (c * c + r * r) ** 2)

    cauchy(pred, y, reduction="sum", weights=w)       # reductions, weights, where, bf16 ...
    cauchy.grad(pred, y); cauchy.with_analytic_vjp()  # the hand-derived gradient
    lossjax.testing.assert_loss(cauchy)               # the catalogue's properties, audited

The terms function is written exactly like a catalogue entry's (see ``lossjax.Terms``): it
returns the per-element values and, lazily, their derivatives w.r.t. the first argument.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _sampling
from lossjax._loss import _REGISTRY, Loss, Sample

_NO_GRAD = "no hand-derived gradient was given (the terms function's Terms.grad is None)."


def define_loss(fn: Optional[Callable] = None, *, family: str = "custom", formula: str = "",
                references=(), example=None, sampler=None, kinks=(), nonnegative: bool = False,
                perfect=None, constraints=(), grad_wrt=(), batch_args=None,
                register: bool = False):
    """Decorator: a function returning :class:`lossjax.Terms` becomes a :class:`lossjax.Loss`.

    The function takes the predictions first, then the other arguments, then keyword-only
    hyperparameters, and returns ``Terms(value, grad=..., hess=...)`` (``grad`` and ``hess``
    optional: without ``grad`` the loss still works, audits autodiff, and ``.grad`` says why
    it is missing). Everything else is inferred or optional:

    Args:
      family, formula, references: catalogue data (``formula`` in LaTeX).
      example: the arguments' shapes, for the default sampler: a tuple (positional) or a dict
        (by name) whose entries are either shapes (floating arguments, drawn standard normal)
        or example arrays, which set shape and domain: floating arrays are drawn uniformly
        between their minimum and maximum (so an example of positive variances stays
        positive), integer arrays between theirs, boolean arrays are kept. The ``"edge"``
        sample is the example arrays themselves (shape entries drawn with another seed).
      sampler: ``(key, dtype, kind) -> lj.Sample`` instead of ``example``; kind is
        ``"generic"`` or ``"edge"`` (your edge cases: zero residuals, saturated logits, kinks).
      kinks: ``lj.Kink`` declarations (where the derivative jumps and what ``.grad`` returns).
      nonnegative, perfect, constraints, grad_wrt, batch_args: as for catalogue entries.
      register: add the loss to ``lj.catalog()`` (then the CLI, the catalogue audit and the lab
        see it); off by default.

    Whether the loss is elementwise (value shaped like the predictions, no class axis) and
    whether it has a Hessian diagonal are read from one abstract evaluation of the terms
    function on the generic sample (``jax.eval_shape``: nothing is compiled).
    """
    def wrap(terms_fn):
        name = getattr(terms_fn, "__name__", "loss")
        if sampler is None and example is None:
            raise TypeError(f"define_loss({name}): give `example=` (the arguments' shapes or "
                            f"example arrays) or `sampler=` (key, dtype, kind) -> lj.Sample, "
                            f"so the loss can be sampled for tests and audits.")
        draw = sampler if sampler is not None else example_sampler(terms_fn, example)
        elementwise, has_grad, has_hess = _inspect(terms_fn, draw)
        obj = Loss(terms_fn, family=family, formula=formula, sampler=draw, kinks=kinks,
                   elementwise=elementwise, has_hess_diag=has_hess and elementwise,
                   references=references, grad_note=None if has_grad else _NO_GRAD,
                   grad_wrt=grad_wrt, batch_args=batch_args, nonnegative=nonnegative,
                   perfect=perfect, constraints=constraints)
        if register:
            if name in _REGISTRY:
                raise ValueError(f"define_loss: a loss named {name!r} is already in the "
                                 f"catalogue; rename the function or pass register=False.")
            _REGISTRY[name] = obj
        return obj

    return wrap if fn is None else wrap(fn)


def example_sampler(terms_fn, example):
    """The default sampler built from ``example`` (see :func:`define_loss`)."""
    params = [p for p in inspect.signature(terms_fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if isinstance(example, dict):
        unknown = [k for k in example if k not in [p.name for p in params]]
        if unknown:
            raise ValueError(f"define_loss({terms_fn.__name__}): `example` names {unknown}, "
                             f"which are not positional parameters of the function "
                             f"({[p.name for p in params]}).")
        entries = [example.get(p.name) for p in params]
    else:
        entries = list(example)
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    missing = [n for n, e in zip([p.name for p in params], entries) if e is None
               and n in required]
    if len(entries) < len(required) or missing:
        raise ValueError(f"define_loss({terms_fn.__name__}): `example` must give every "
                         f"required argument ({required}); got {len(entries)} entries.")
    entries = [_entry(terms_fn.__name__, p.name, e) for p, e in zip(params, entries)]

    def sample(key, dtype, kind):
        args = []
        for i, entry in enumerate(entries):
            if entry is None:
                break
            k = jax.random.fold_in(key, i + (1000 if kind == "edge" else 0))
            args.append(_draw(entry, k, dtype, kind))
        return Sample(tuple(args), {})
    return sample


def _entry(loss_name, arg, e):
    if isinstance(e, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in e):
        return ("shape", tuple(int(d) for d in e))
    if e is None:
        return None
    a = np.asarray(e)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"define_loss({loss_name}): `example` for `{arg}` must be a shape "
                        f"(tuple of ints) or a numeric array, got {type(e).__name__}.")
    return ("array", a)


def _draw(entry, key, dtype, kind):
    what, e = entry
    if what == "shape":
        return _sampling.normal(key, e, dtype)
    if kind == "edge" or e.dtype.kind == "b":
        return jnp.asarray(e.astype(dtype) if e.dtype.kind == "f" else e)
    lo, hi = e.min(), e.max()
    if e.dtype.kind in "iu":
        return _sampling.integers(key, e.shape, int(lo), int(hi) + 1).astype(e.dtype)
    if lo == hi:
        return jnp.asarray(e.astype(dtype))
    return _sampling.uniform(key, e.shape, dtype, float(lo), float(hi))


def _inspect(terms_fn, draw):
    """(elementwise, has grad, has hess) from the terms of the generic float32 sample."""
    args, kwargs = draw(jax.random.PRNGKey(0), jnp.dtype(jnp.float32), "generic")
    found = {}

    def probe(*a):
        terms = terms_fn(*a, **kwargs)
        found["elementwise"] = (terms.class_axis is None and terms.vjp is None
                                and jnp.shape(terms.value) == jnp.shape(a[0]))
        found["grad"] = terms.grad is not None or terms.vjp is not None
        found["hess"] = terms.hess is not None
        return terms.value
    jax.eval_shape(probe, *args)
    return found["elementwise"], found["grad"], found["hess"]
