"""The Loss object: a pure loss function together with its hand-derived derivatives.

A loss is written once, as a *terms function*: it checks its arguments and returns a
:class:`Terms` holding the per-element loss values and (lazily) their derivatives with
respect to the predictions. :class:`Loss` adds what every loss shares: the reduction keywords,
float16/bfloat16 handling, the analytic ``.grad`` and ``.hess_diag`` of the *reduced* value,
``.with_analytic_vjp()``, samplers and catalogue data.

Calling a Loss runs plain JAX code, so ``jax.grad(lj.mse)`` is autodiff; ``lj.mse.grad`` is the
hand-derived gradient. The two are independent routes to the same number, which is what the
tests and the audit compare.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, reduce as _reduce
from lossjax.checked import check_concrete


class Terms(NamedTuple):
    """What a terms function returns.

    value:      per-element loss values (the *elements* that reductions act on).
    grad:       () -> d value_i / d predictions, shaped like the predictions (for a loss over a
                class axis, row i holds the derivative of value_i w.r.t. its logits); None
                when no closed form exists (the Loss then says why in ``grad_note``).
    hess:       () -> second derivatives matching ``grad`` (diagonal), or None.
    class_axis: axis of the predictions that each element reduces over; None if elementwise.
    mask:       elements that count (False for ignored labels), or None.
    normalizer: per-element weights for the mean's denominator (see lossjax.reduce), or None.
    partials:   {argument name: () -> d value_i / d that argument}, shaped like ``grad``'s
                result or broadcastable to it, for ``.grad(..., wrt=name)``.
    vjp, jvp:   for losses where an input entry feeds several elements (softmax Dice):
                vjp(c) -> sum_i c_i d value_i / d predictions (c shaped like ``value``) and
                jvp(tangent) -> d value_i along ``tangent``; they replace ``grad`` and
                ``class_axis``.
    partial_vjps: {argument name: vjp(c)} likewise for other arguments.
    mean_scale: per-element factors applied by ``reduction="mean"`` only (PyTorch's CTC mean
                divides each sequence's loss by its target length), or None.
    """
    value: Any
    grad: Optional[Callable[[], Any]]
    hess: Optional[Callable[[], Any]] = None
    class_axis: Optional[int] = None
    mask: Any = None
    normalizer: Any = None
    partials: Optional[dict] = None
    vjp: Optional[Callable[[Any], Any]] = None
    jvp: Optional[Callable[[Any], Any]] = None
    partial_vjps: Optional[dict] = None
    mean_scale: Any = None


class Sample(NamedTuple):
    """Valid arguments for a loss: ``loss(*sample.args, **sample.kwargs)``."""
    args: tuple
    kwargs: dict


@dataclasses.dataclass(frozen=True)
class Kink:
    """A place where a loss is not (twice) differentiable.

    where:       the condition, in words.
    subgradient: what ``.grad`` (order 1) or ``.hess_diag`` (order 2) returns there.
    locate:      (*args, **hyperparameters) -> boolean array shaped like ``argument``.
    order:       1 if the first derivative jumps there, 2 if only the second does.
    argument:    the argument the kink is in (None: the predictions).
    """
    where: str
    subgradient: str
    locate: Callable[..., Any]
    order: int = 1
    argument: Optional[str] = None


_REDUCTION_PARAMS = [
    inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
    inspect.Parameter("weights", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("where", inspect.Parameter.KEYWORD_ONLY, default=None),
]

_REGISTRY: dict[str, "Loss"] = {}


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _upcast(x):
    """float16/bfloat16 arrays are computed in float32; everything else as given."""
    if _is_array(x) and jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        return jnp.asarray(x, jnp.float32)
    return x


class Loss:
    """A pure loss with hand-derived derivatives. See the module docstring."""

    def __init__(self, terms_fn, *, family: str, formula: str, sampler, kinks=(),
                 elementwise: bool, has_hess_diag: Optional[bool] = None, references=(),
                 grad_note: Optional[str] = None, grad_wrt=(), forward_mode: bool = True,
                 batch_args: Optional[tuple] = None, nonnegative: bool = False,
                 perfect: Optional[Callable[[Sample], Sample]] = None, constraints=(),
                 _analytic_vjp: bool = False):
        self._terms_fn = terms_fn
        self.name = terms_fn.__name__
        self.family = family
        self.formula = formula
        self.kinks = tuple(kinks)
        self.elementwise = elementwise
        self.grad_note = grad_note
        self.grad_wrt = tuple(grad_wrt)   # other arguments with a hand-derived .grad(wrt=...)
        # False for losses built on a jax.custom_vjp (reverse mode only: jax.grad and .grad
        # work, jax.jvp / jacfwd / hessian do not)
        self.forward_mode = forward_mode
        self.has_grad = grad_note is None
        self.has_hess_diag = (elementwise and self.has_grad) if has_hess_diag is None \
            else has_hess_diag
        self.references = tuple(references)
        # declared properties, which the fuzz tests check on the sampler's domain: the loss is
        # >= 0 everywhere there, and ``perfect(sample)`` returns arguments (a perfect
        # prediction for the sample's targets) at which every element is 0
        self.nonnegative = nonnegative
        self.perfect = perfect
        # run-time conditions on argument values (lossjax._domain.Constraint): lj.checked
        # checks them inside jit
        self.constraints = tuple(constraints)
        self._sampler = sampler
        self._analytic_vjp = _analytic_vjp
        self._signature = inspect.signature(terms_fn)
        # arguments whose axis 0 is the batch (example) axis: what lossjax.sharding shards
        # over a device mesh; default: the required arguments
        self.batch_args = tuple(batch_args) if batch_args is not None else tuple(
            p.name for p in self._signature.parameters.values()
            if p.default is inspect.Parameter.empty)
        self.__signature__ = self._signature.replace(
            parameters=list(self._signature.parameters.values()) + _REDUCTION_PARAMS)
        self.__name__ = self.__qualname__ = self.name
        self.__module__ = terms_fn.__module__
        self.__doc__ = terms_fn.__doc__
        self.__wrapped__ = terms_fn

    def __repr__(self):
        suffix = ", analytic VJP" if self._analytic_vjp else ""
        return f"<lossjax.Loss {self.name} ({self.family}){suffix}>"

    # -- evaluation -------------------------------------------------------------------------

    def _bind(self, args, kwargs) -> inspect.BoundArguments:
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}: {e}. Signature: {self.name}{self.__signature__}") from None
        bound.apply_defaults()
        return bound

    def _terms(self, bound, reduction, weights, where):
        """Check everything, compute in float32 for half-precision inputs, return
        (terms, prepared weights, prepared mask, output dtype)."""
        _reduce.check_reduction(self.name, reduction)
        first = next(iter(self._signature.parameters))
        predictions = _checks.floating(self.name, first, bound.arguments[first])
        out_dtype = predictions.dtype
        arguments = {k: _upcast(v) for k, v in {**bound.arguments, first: predictions}.items()}
        positional = [arguments[p.name] for p in self._signature.parameters.values()
                      if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keywords = {p.name: arguments[p.name] for p in self._signature.parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY}
        terms = self._terms_fn(*positional, **keywords)
        weights, where = _reduce.prepare(self.name, terms.value.shape, terms.value.dtype,
                                         weights, where, terms.mask)
        return terms, weights, where, out_dtype

    def _value(self, bound, reduction, weights, where):
        return _reduced(*self._terms(bound, reduction, weights, where), reduction)

    def __call__(self, *args, reduction="mean", weights=None, where=None, **kwargs):
        bound = self._bind(args, kwargs)
        if self._analytic_vjp:
            out = _with_analytic_derivative(self, bound, reduction, weights, where)
        else:
            out = self._value(bound, reduction, weights, where)
        # after the call: its shape/dtype errors come first
        _check_if_concrete(self, args, kwargs, reduction, weights, where)
        return out

    def _derivative(self, which, args, kwargs, reduction, weights, where, wrt=None):
        out = self._derivative_unchecked(which, args, kwargs, reduction, weights, where, wrt)
        _check_if_concrete(self, args, kwargs, reduction, weights, where)
        return out

    def _derivative_unchecked(self, which, args, kwargs, reduction, weights, where, wrt):
        if which == "grad" and not self.has_grad:
            raise NotImplementedError(f"{self.name} has no hand-derived gradient: "
                                      f"{self.grad_note} Use jax.grad(lj.{self.name}).")
        bound = self._bind(args, kwargs)
        terms, w, m, out_dtype = self._terms(bound, reduction, weights, where)
        coef = _reduce.coefficients(terms.value, reduction, w, m, terms.normalizer,
                                     mean_scale=terms.mean_scale)
        first = next(iter(self._signature.parameters))
        if which == "grad":     # losses whose inputs feed several elements: a hand-made VJP
            vjps = {first: terms.vjp, **(terms.partial_vjps or {})}
            name = first if wrt is None else wrt
            if vjps.get(name) is not None:
                dtype = out_dtype if name == first else jnp.asarray(bound.arguments[name]).dtype
                return vjps[name](coef).astype(dtype)
        if terms.class_axis is not None:
            coef = jnp.expand_dims(coef, terms.class_axis)
        if wrt is not None and wrt != first:
            partial = (terms.partials or {}).get(wrt)
            if partial is None or which != "grad":
                known = ", ".join([first, *(terms.partials or {}), *(terms.partial_vjps or {})])
                raise ValueError(f"{self.name}.{which}: no hand-derived derivative w.r.t. "
                                 f"`{wrt}`; available: {known}.")
            target = jnp.asarray(bound.arguments[wrt])
            dtype = target.dtype if jnp.issubdtype(target.dtype, jnp.floating) else out_dtype
            return _sum_to_shape(coef * partial(), target.shape).astype(dtype)
        derivative = getattr(terms, which)
        if derivative is None:
            raise NotImplementedError(
                f"{self.name} has no hand-derived Hessian diagonal (it is not an elementwise "
                f"loss); use jax.hessian(lj.{self.name}) instead.")
        return (coef * derivative()).astype(out_dtype)

    def grad(self, *args, reduction="mean", weights=None, where=None, wrt=None, **kwargs):
        """Hand-derived gradient of the reduced value w.r.t. the predictions (first argument),
        or w.r.t. the argument named ``wrt`` where the loss provides it (e.g. the fake logits
        of a GAN loss, or alpha and scale of the adaptive robust loss).

        Same arguments as the loss. With ``reduction="none"`` it is the gradient of the sum of
        the per-element values (for elementwise losses: each element's own derivative).
        At a kink it returns the subgradient listed in ``.kinks``.
        """
        return self._derivative("grad", args, kwargs, reduction, weights, where, wrt)

    def hess_diag(self, *args, reduction="mean", weights=None, where=None, **kwargs):
        """Hand-derived diagonal of the Hessian of the reduced value w.r.t. the predictions."""
        return self._derivative("hess", args, kwargs, reduction, weights, where)

    def count(self, *args, weights=None, where=None, **kwargs):
        """The denominator of ``reduction="mean"``: the number of elements that count (those
        not masked by ``where`` or an ignored label), weighted by ``weights`` and, for
        class-weighted cross_entropy / nll, by the targets' class weights. So
        ``loss(..., reduction="sum") == loss(...) * loss.count(...)`` (0 for a fully masked
        batch), and means over microbatches or shards combine as sum(means x counts) /
        sum(counts). (ctc's mean divides each sequence's loss by its target length first, as
        PyTorch's does: there mean x count is the sum of those quotients.)"""
        bound = self._bind(args, kwargs)
        terms, w, m, _ = self._terms(bound, "mean", weights, where)
        return _reduce.count(terms.value, w, m, terms.normalizer)

    def with_analytic_vjp(self) -> "Loss":
        """The same loss, whose derivatives w.r.t. the predictions use the hand-derived ``.grad``.

        Implemented with ``jax.custom_jvp`` and a tangent rule that is linear in the analytic
        derivative: reverse mode (``jax.grad``, ``jax.vjp``) transposes it into exactly the
        analytic vector-Jacobian product, and forward mode, ``jax.jacfwd`` and ``jax.hessian``
        keep working (a ``custom_vjp`` would break them). Derivatives w.r.t. other float
        arguments (targets, variances, weights, traced hyperparameters) use autodiff.
        """
        if not self.has_grad:
            raise NotImplementedError(f"{self.name} has no hand-derived gradient: "
                                      f"{self.grad_note}")
        return Loss(self._terms_fn, family=self.family, formula=self.formula,
                    sampler=self._sampler, kinks=self.kinks, elementwise=self.elementwise,
                    has_hess_diag=self.has_hess_diag, references=self.references,
                    grad_wrt=self.grad_wrt, forward_mode=self.forward_mode,
                    batch_args=self.batch_args, nonnegative=self.nonnegative,
                    perfect=self.perfect, constraints=self.constraints, _analytic_vjp=True)

    # -- sampling ---------------------------------------------------------------------------

    def _carries_batch(self, name, value, n) -> bool:
        """Whether argument ``name`` = ``value`` holds the batch: a batch argument whose axis 0
        is the batch size ``n`` (a scalar or row broadcast over the batch does not)."""
        return name in self.batch_args and np.ndim(value) > 0 and np.shape(value)[0] == n

    def sample(self, key, dtype=jnp.float32, kind: str = "generic",
               batch: Optional[int] = None) -> Sample:
        """Valid arguments: ``kind="generic"`` (random, well inside the domain) or ``"edge"``
        (zero residuals, saturated logits, probabilities of exactly 0 and 1, kinks...).

        ``batch``: the number of examples (axis 0 of the ``batch_args``), made by stacking
        samples drawn from keys folded out of ``key``; the other arguments are the first
        draw's."""
        if kind not in ("generic", "edge"):
            raise ValueError(f"{self.name}.sample: `kind` must be 'generic' or 'edge', got {kind!r}.")
        first = self._sampler(key, jnp.dtype(dtype), kind)
        if batch is None:
            return first
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"{self.name}.sample: `batch` must be a positive int, got {batch!r}.")
        names = list(self._signature.parameters)
        n = np.shape(first.args[names.index(self.batch_args[0])])[0]
        draws = [first] + [self._sampler(jax.random.fold_in(key, i), jnp.dtype(dtype), kind)
                           for i in range(1, -(-batch // n))]

        def stack(name, values):
            if self._carries_batch(name, values[0], n):
                return jnp.concatenate(values, axis=0)[:batch]
            return values[0]
        args = tuple(stack(names[i], [d.args[i] for d in draws]) for i in range(len(first.args)))
        kwargs = {k: stack(k, [d.kwargs[k] for d in draws]) for k in first.kwargs}
        return Sample(args, kwargs)


def _with_analytic_derivative(loss: Loss, bound, reduction, weights, where):
    """Evaluate ``loss`` through a custom_jvp whose predictions-tangent is analytic."""
    inputs = {**bound.arguments, "__weights": weights, "__where": where}
    names = [k for k, v in inputs.items() if _is_array(v)]
    static = {k: v for k, v in inputs.items() if k not in names}
    first = next(iter(loss._signature.parameters))

    def rebuild(arrays):
        everything = {**static, **dict(zip(names, arrays))}
        weights_, where_ = everything.pop("__weights"), everything.pop("__where")
        b = inspect.BoundArguments(loss._signature, everything)
        return b, weights_, where_

    def value(*arrays):
        b, w, m = rebuild(arrays)
        return loss._value(b, reduction, w, m)

    f = jax.custom_jvp(value)

    def tangent_rule(primals, tangents):
        b, w, m = rebuild(primals)
        prepared = loss._terms(b, reduction, w, m)      # traced once for value and tangent
        out = _reduced(*prepared, reduction)
        tangent_out = jnp.zeros_like(out)
        for i, (name, t) in enumerate(zip(names, tangents)):
            if name == first and not isinstance(t, jax.custom_derivatives.SymbolicZero):
                tangent_out = tangent_out + _analytic_tangent(*prepared, reduction, t)
        others = [i for i, (n, t) in enumerate(zip(names, tangents))
                  if n != first and not isinstance(t, jax.custom_derivatives.SymbolicZero)
                  and jnp.issubdtype(primals[i].dtype, jnp.inexact)]
        if others:
            def of_others(*vals):
                arrays = list(primals)
                for i, v in zip(others, vals):
                    arrays[i] = v
                return value(*arrays)
            _, t_other = jax.jvp(of_others, [primals[i] for i in others],
                                 [tangents[i] for i in others])
            tangent_out = tangent_out + t_other
        return out, tangent_out

    f.defjvp(tangent_rule, symbolic_zeros=True)
    return f(*[inputs[n] for n in names])


def _reduced(terms, weights, where, out_dtype, reduction):
    """The reduced value, in the predictions' dtype."""
    return _reduce.reduce(terms.value, reduction, weights, where, terms.normalizer,
                          terms.mean_scale).astype(out_dtype)


def _analytic_tangent(terms, weights, where, out_dtype, reduction, tangent):
    """sum_k d(value_i)/d(pred_ik) * tangent_ik, reduced like the value: linear in tangent."""
    tangent = _upcast(tangent).astype(terms.value.dtype)
    if terms.jvp is not None:
        directional = terms.jvp(tangent)
    else:
        directional = terms.grad() * tangent
        if terms.class_axis is not None:
            directional = jnp.sum(directional, axis=terms.class_axis)
    return _reduced(terms._replace(value=directional), weights, where, out_dtype, reduction)


def _sum_to_shape(x, shape):
    """Sum ``x`` over the axes that broadcasting added to an array of ``shape``."""
    x = jnp.sum(x, axis=tuple(range(x.ndim - len(shape))))
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


def loss(*, family: str, formula: str, sampler, kinks=(), elementwise: bool,
         has_hess_diag: Optional[bool] = None, references=(), grad_note=None, grad_wrt=(),
         forward_mode: bool = True, batch_args: Optional[tuple] = None,
         nonnegative: bool = False, perfect: Optional[Callable[[Sample], Sample]] = None,
         constraints=()):
    """Decorator: turn a terms function into a registered :class:`Loss`."""
    def wrap(terms_fn) -> Loss:
        obj = Loss(terms_fn, family=family, formula=formula, sampler=sampler, kinks=kinks,
                   elementwise=elementwise, has_hess_diag=has_hess_diag, references=references,
                   grad_note=grad_note, grad_wrt=grad_wrt, forward_mode=forward_mode,
                   batch_args=batch_args, nonnegative=nonnegative, perfect=perfect,
                   constraints=constraints)
        if obj.name in _REGISTRY:
            raise RuntimeError(f"a loss named {obj.name!r} is already registered")
        _REGISTRY[obj.name] = obj
        return obj
    return wrap


# the catalogue's order of families (a family not listed, such as a user's own, comes last)
FAMILIES = ("regression", "classification", "metric", "segmentation", "sequence", "robust",
            "adversarial", "composite", "large_vocab")


def catalog() -> list[Loss]:
    """Every loss in the catalogue, family by family (in :data:`FAMILIES` order), in the order
    each family's modules define them."""
    rank = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(_REGISTRY.values(), key=lambda loss: rank.get(loss.family, len(rank)))


def get(name: str) -> Loss:
    """The catalogue entry called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no loss named {name!r} in the catalogue.{hint} "
                       f"Known: {', '.join(_REGISTRY)}.") from None


def _check_if_concrete(loss, args, kwargs, reduction, weights, where):
    """An eager call (every argument concrete) checks the argument values as lj.checked does;
    under jit/grad/vmap nothing is added (see lossjax.checked.check_concrete)."""
    check_concrete(loss, args, {**kwargs, "reduction": reduction, "weights": weights,
                                "where": where})
