"""Jitted training loops: ``fit`` (one ``lax.scan`` over the steps) and ``fit_many`` (the same
loop vmapped over a batch of hyperparameters, seeds or initial parameters).

    result = lj.train.fit(loss_fn, params, data, "adam", steps=500, batch_size=32)
    result.params, result.history.loss            # history stays on device until asked for
    sweep = lj.train.fit_many(loss_fn, params, data, "sgd", steps=200,
                              hparams={"learning_rate": jnp.logspace(-3, 0, 64)})

``loss_fn(params, batch, **loss_hparams) -> scalar`` (``loss_fn(params)`` when ``data`` is None);
``data`` is a pytree of arrays sharing their leading (example) axis.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lossjax import sharding as _sharding
from lossjax.optim import make

__all__ = ["FitResult", "History", "NonFiniteLoss", "fit", "fit_many"]


class History(NamedTuple):
    """Per-step records; arrays of shape (steps,) — (runs, steps) from ``fit_many``.

    ``loss`` is the loss at the parameters each step starts from (on that step's batch),
    ``grad_norm`` the global norm of the gradient there, ``update_norm`` the global norm of
    the update applied. Entries after a non-finite step are NaN.
    """
    loss: jax.Array
    grad_norm: jax.Array
    update_norm: jax.Array

    def numpy(self) -> dict:
        """The history as NumPy arrays (this is where it leaves the device)."""
        return {k: np.asarray(v) for k, v in self._asdict().items()}

    def __repr__(self):
        loss = np.asarray(self.loss)
        if loss.ndim == 2:
            last = _last_finite(loss)
            return (f"History({loss.shape[0]} runs × {loss.shape[1]} steps; final loss "
                    f"{_span(last)}; fields loss, grad_norm, update_norm)")
        g = np.asarray(self.grad_norm)
        return (f"History({loss.size} steps; loss {_num(loss[0] if loss.size else None)} → "
                f"{_num(_last_finite(loss))}, grad_norm {_num(g[0] if g.size else None)} → "
                f"{_num(_last_finite(g))})")


class FitResult(NamedTuple):
    """``params`` after training (before the first non-finite step, if any), the optimizer
    ``state``, the ``history`` and ``stopped_at``: the 0-based step whose loss, gradient or
    update was non-finite, or -1. ``fit_many`` stacks every field along a leading run axis and
    adds ``swept``: each swept scalar hyperparameter (optimizer and loss), one value per run.
    ``repr`` is a one-line summary; ``report()`` one line per run."""
    params: Any
    state: Any
    history: History
    stopped_at: jax.Array
    swept: Any = None          # fit_many: the swept scalar hyperparameters, one value per run

    @property
    def ok(self):
        """True when no step went non-finite (a NumPy bool array for ``fit_many``)."""
        ok = np.asarray(self.stopped_at) < 0
        return bool(ok) if ok.ndim == 0 else ok

    def run(self, i: int) -> "FitResult":
        """Run ``i`` of a ``fit_many`` result, as a single-run result."""
        return jax.tree_util.tree_map(lambda x: x[i], self)

    def report(self) -> str:
        """One line per run: its swept hyperparameters, steps, final loss, where it stopped if
        it did."""
        stopped = np.atleast_1d(np.asarray(self.stopped_at))
        loss = np.asarray(self.history.loss).reshape(len(stopped), -1)
        swept = {k: np.atleast_1d(np.asarray(v)) for k, v in (self.swept or {}).items()}
        lines = []
        for r, (at, row) in enumerate(zip(stopped, loss)):
            values = ", ".join(f"{k}={_num(v[r])}" for k, v in swept.items())
            prefix = (f"run {r}" + (f" ({values})" if values else "") + ": ") \
                if np.ndim(self.stopped_at) else ""
            if at < 0:
                lines.append(f"{prefix}{row.size} steps, final loss {row[-1]:.6g}")
            else:
                last = f"{row[at - 1]:.6g} at step {at - 1}" if at > 0 else "none"
                lines.append(f"{prefix}non-finite at step {at} of {row.size} (loss there "
                             f"{row[at]:.6g}; last finite loss {last})")
        return "\n".join(lines)


    def __repr__(self):
        stopped = np.atleast_1d(np.asarray(self.stopped_at))
        loss = np.asarray(self.history.loss)
        shapes = _shapes(self.params)
        if np.ndim(self.stopped_at):
            bad = int(np.sum(stopped >= 0))
            swept = ", ".join(self.swept or {}) or "seeds/keys"
            return (f"FitResult({len(stopped)} runs × {loss.shape[-1]} steps, swept: {swept}; "
                    f"final loss {_span(_last_finite(loss))}; "
                    f"{f'{bad} stopped non-finite' if bad else 'all finite'}; params {shapes} "
                    f"with a leading run axis)")
        state = "ok" if stopped[0] < 0 else f"non-finite at step {stopped[0]}"
        return (f"FitResult({loss.size} steps, final loss {_num(_last_finite(loss))}, {state}; "
                f"params {shapes})")


def _num(x):
    return "n/a" if x is None else f"{float(x):.4g}"


def _last_finite(loss):
    """The last finite loss of each run (a run stopped early holds NaN after its stop)."""
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 1:
        finite = loss[np.isfinite(loss)]
        return finite[-1] if finite.size else None
    return np.array([np.nan if (v := _last_finite(row)) is None else v for row in loss])


def _span(values):
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return "n/a"
    lo, hi = finite.min(), finite.max()
    return _num(lo) if lo == hi else f"{_num(lo)}–{_num(hi)}"


def _shapes(tree):
    """A pytree's arrays as dtype[shape] strings (what a repr of parameters should show)."""
    def short(x):
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return f"{jnp.dtype(x.dtype).name}{list(x.shape)}"
        return type(x).__name__

    def plain(t):
        if isinstance(t, dict):
            return all(plain(v) for v in t.values())
        if isinstance(t, (list, tuple)):
            return all(plain(v) for v in t)
        return hasattr(t, "shape") and hasattr(t, "dtype")
    if plain(tree) and len(jax.tree_util.tree_leaves(tree)) <= 8:
        return str(jax.tree_util.tree_map(short, tree)).replace("'", "")
    arrays = [x for x in jax.tree_util.tree_leaves(tree) if _is_trained(x)]
    return (f"{type(tree).__name__} with {len(arrays)} arrays, "
            f"{sum(int(np.size(x)) for x in arrays)} numbers")


class NonFiniteLoss(FloatingPointError):
    """Raised by ``fit`` when the loss, gradient or update becomes non-finite; ``.result``
    holds the run up to that point (params from before the offending step); ``.cause`` says
    why: "inputs" (the parameters, data or loss arguments already held NaN/inf), "start" (the
    inputs are finite but the loss or gradient is not, at the first step) or "diverged" (the
    optimiser went from finite values to non-finite ones)."""

    def __init__(self, message, result, cause=None):
        super().__init__(message)
        self.result = result
        self.cause = cause


def _nonfinite_inputs(**trees):
    """'params['w'] (3 of 10 entries)' for every floating leaf holding NaN/inf."""
    found = []
    for what, tree in trees.items():
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            a = np.asarray(x) if hasattr(x, "dtype") else None
            if a is None or not np.issubdtype(a.dtype, np.inexact):
                continue
            bad = int(np.size(a) - np.sum(np.isfinite(a)))
            if bad:
                found.append(f"{what}{jax.tree_util.keystr(path)} ({bad} of {a.size} "
                             f"entries)")
    return found


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return functools.reduce(jnp.logical_and, leaves, jnp.asarray(True))


def _leading_size(who, data):
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree_util.tree_leaves(data)}
    if not sizes:
        raise ValueError(f"{who}: `data` has no arrays.")
    if None in sizes or len(sizes) != 1:
        shapes = jax.tree_util.tree_map(lambda x: tuple(jnp.shape(x)), data)
        raise ValueError(f"{who}: every array in `data` must share its leading (example) axis; "
                         f"got shapes {shapes}.")
    return sizes.pop()


@functools.lru_cache(maxsize=None)
def _named(name):
    """``make(name)`` once per name, so that repeated fits by name share one compilation."""
    return make(name)


@functools.lru_cache(maxsize=None)
def _named_factory(name):
    return functools.partial(make, name)


def _optimizer(who, optimizer):
    if isinstance(optimizer, str):
        return _named(optimizer)
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    raise TypeError(f"{who}: `optimizer` must be an lj.optim name or an optax "
                    f"GradientTransformation, got {type(optimizer).__name__}.")


def _take_rows(x, idx, sharding):
    """``x[idx]`` along axis 0; with a batch ``sharding``, the minibatch stays split over the
    devices like the data set."""
    if sharding is None:
        return jnp.take(x, idx, axis=0)
    if _sharding.is_explicit(sharding.mesh, sharding.spec[0]):
        return x.at[idx].get(out_sharding=sharding)
    return jax.lax.with_sharding_constraint(jnp.take(x, idx, axis=0), sharding)


def _run(loss_fn, optimizer, steps, batch_size, batch_sharding, params, data, key,
         loss_kwargs):
    """The training loop for one run: a lax.scan over ``steps``. Pure; jitted and vmapped by
    the public functions. ``batch_sharding``: None, or how minibatches are split over a
    mesh."""
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)
    state = optimizer.init(params)
    full_batch = batch_size is None
    # A line search leaves the value and gradient at the accepted point in its state; on a
    # full batch they are the next step's value and gradient, so reuse them.
    reuse = (extra_args and full_batch
             and optax.tree_utils.tree_get(state, "value") is not None
             and optax.tree_utils.tree_get(state, "grad") is not None)
    n = None if data is None else jax.tree_util.tree_leaves(data)[0].shape[0]
    per_epoch = None if full_batch else n // batch_size

    def objective(p, batch):
        return loss_fn(p, **loss_kwargs) if data is None else loss_fn(p, batch, **loss_kwargs)

    def draw(i, order):
        if full_batch:
            return data, order
        epoch, pos = i // per_epoch, i % per_epoch
        order = jax.lax.cond(pos == 0,
                             lambda: jax.random.permutation(jax.random.fold_in(key, epoch), n),
                             lambda: order)
        idx = jax.lax.dynamic_slice_in_dim(order, pos * batch_size, batch_size)
        return jax.tree_util.tree_map(lambda x: _take_rows(x, idx, batch_sharding), data), order

    def step(carry, i):
        params, state, order, stopped_at = carry
        batch, order = draw(i, order)
        value_fn = functools.partial(objective, batch=batch)
        if reuse:
            value, grads = optax.value_and_grad_from_state(value_fn)(params, state=state)
        else:
            value, grads = jax.value_and_grad(value_fn)(params)
        if extra_args:
            updates, new_state = optimizer.update(grads, state, params, value=value,
                                                  grad=grads, value_fn=value_fn)
        else:
            updates, new_state = optimizer.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        running = stopped_at < 0
        bad = ~(jnp.isfinite(value) & _all_finite(grads) & _all_finite(new_params))
        stopped_at = jnp.where(running & bad, i.astype(stopped_at.dtype), stopped_at)
        keep = running & ~bad
        params, state = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old),
                                               (new_params, new_state), (params, state))
        nan = jnp.asarray(jnp.nan, jnp.result_type(value, jnp.float32))
        record = (jnp.where(running, value, nan).astype(nan.dtype),
                  jnp.where(running, optax.tree_utils.tree_norm(grads), nan).astype(nan.dtype),
                  jnp.where(keep, optax.tree_utils.tree_norm(updates), nan).astype(nan.dtype))
        return (params, state, order, stopped_at), record

    order = jnp.arange(n if n is not None else 1)
    carry = (params, state, order, jnp.asarray(-1, jnp.int32))
    (params, state, _, stopped_at), (loss, gnorm, unorm) = jax.lax.scan(
        step, carry, jnp.arange(steps))
    return FitResult(params, state, History(loss, gnorm, unorm), stopped_at)


class _Model:
    """A model given as parameters (an equinox module, a flax.nnx module, any pytree with
    non-array leaves): its floating-point arrays are what is trained; every other leaf
    (activation functions, sizes, integer counters, RNG keys) is held fixed, as a constant of
    the compiled program. Hashable by the structure and the fixed leaves' identities, so that
    training the same model again reuses the compilation."""

    def __init__(self, params):
        leaves, self.treedef = jax.tree_util.tree_flatten(params)
        self.trained = tuple(_is_trained(x) for x in leaves)
        self.fixed = tuple(None if t else x for x, t in zip(leaves, self.trained))
        self.arrays = [x for x, t in zip(leaves, self.trained) if t]

    def build(self, arrays):
        it = iter(arrays)
        return jax.tree_util.tree_unflatten(
            self.treedef, [next(it) if t else x for x, t in zip(self.fixed, self.trained)])

    def _key(self):
        return (self.treedef, self.trained, tuple(
            x if _hashable(x) else id(x) for x in self.fixed))

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Model) and self.treedef == other.treedef and \
            self.trained == other.trained and all(
                a is b or (_hashable(a) and _hashable(b) and a == b)
                for a, b in zip(self.fixed, other.fixed))


def _is_trained(x):
    return hasattr(x, "dtype") and hasattr(x, "shape") and \
        jnp.issubdtype(jnp.asarray(x).dtype if not hasattr(x, "aval") else x.dtype, jnp.inexact)


def _hashable(x):
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return False
    try:
        hash(x)
        return True
    except TypeError:
        return False


class _OnModel:
    """``loss_fn`` called on the model rebuilt from its trained arrays."""

    def __init__(self, loss_fn, model):
        self.loss_fn, self.model = loss_fn, model

    def __call__(self, arrays, *args, **kwargs):
        return self.loss_fn(self.model.build(arrays), *args, **kwargs)

    def __hash__(self):
        return hash((self.loss_fn, self.model))

    def __eq__(self, other):
        return isinstance(other, _OnModel) and self.loss_fn == other.loss_fn and \
            self.model == other.model


def _as_arrays(who, loss_fn, params, param_specs):
    """(loss_fn, params, model): unchanged when every leaf of ``params`` is a floating-point
    array; otherwise the trained arrays, the loss on them and the model that rebuilds them."""
    leaves = jax.tree_util.tree_leaves(params)
    if all(_is_trained(x) for x in leaves):
        return loss_fn, params, None
    model = _Model(params)
    if not model.arrays:
        raise ValueError(f"{who}: `params` has no floating-point arrays to train (its leaves: "
                         f"{sorted({type(x).__name__ for x in leaves})}).")
    if param_specs is not None:
        raise ValueError(f"{who}: `param_specs` need `params` whose leaves are all floating-"
                         f"point arrays; this model has fixed leaves "
                         f"({sorted({type(x).__name__ for x in leaves if not _is_trained(x)})}).")
    return _OnModel(loss_fn, model), model.arrays, model


def _rebuilt(result, model):
    return result if model is None else result._replace(params=model.build(result.params))


_STATIC = ("loss_fn", "optimizer", "steps", "batch_size", "batch_sharding")
_fit_jit = jax.jit(_run, static_argnames=_STATIC)


def _check_common(who, loss_fn, data, steps, batch_size):
    if not callable(loss_fn):
        raise TypeError(f"{who}: `loss_fn` must be callable, got {type(loss_fn).__name__}.")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{who}: `steps` must be a positive int, got {steps!r}.")
    if data is None:
        if batch_size is not None:
            raise ValueError(f"{who}: `batch_size` needs `data`; got data=None.")
        return
    n = _leading_size(who, data)
    if batch_size is not None:
        if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                or not 1 <= batch_size <= n):
            raise ValueError(f"{who}: `batch_size` must be an int in [1, {n}] (the number of "
                             f"examples in `data`), got {batch_size!r}.")


_SCALAR_CHECKED: set = set()     # (loss_fn, argument signature) already traced and found scalar


def _signature(tree):
    """The structure, shapes and dtypes of a pytree; other leaves by value (or identity)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)

    def key(x):
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return ("array", tuple(x.shape), str(x.dtype))
        try:
            hash(x)
            return ("value", x)
        except TypeError:
            return ("id", id(x))
    return treedef, tuple(key(x) for x in leaves)


def _check_scalar(who, loss_fn, params, data, loss_kwargs):
    """loss_fn must return a float scalar: traced once per signature, like the compiled loop
    (a check per call would trace the loss again on every call)."""
    args = (params,) if data is None else (params, data)
    try:
        signature = (loss_fn, _signature((args, loss_kwargs)))
        hash(signature)
    except TypeError:                                    # an unhashable loss_fn: check always
        signature = None
    if signature is not None and signature in _SCALAR_CHECKED:
        return
    out = jax.eval_shape(lambda *a: loss_fn(*a, **loss_kwargs), *args)
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype,
                                                                           jnp.floating):
        got = out if not hasattr(out, "shape") else f"{out.dtype}{list(out.shape)}"
        raise ValueError(f"{who}: `loss_fn` must return a floating-point scalar, got {got}. "
                         f"Reduce it (e.g. reduction='mean').")
    if signature is not None:
        _SCALAR_CHECKED.add(signature)


def _on_mesh(who, mesh, batch_axis, param_specs, params, data, batch_size):
    """Data split along its example axis over ``batch_axis``, parameters replicated (or as
    ``param_specs`` say); returns (params, data, minibatch sharding)."""
    if mesh is None:
        if batch_axis is not None or param_specs is not None:
            raise ValueError(f"{who}: `batch_axis`/`param_specs` need `mesh`.")
        return params, data, None
    if data is None:
        raise ValueError(f"{who}: `mesh` splits `data` over devices; got data=None.")
    sharding = _sharding.batch_sharding(mesh, batch_axis)
    axis = sharding.spec[0]
    devices = _sharding.axis_size(mesh, axis)
    if batch_size is not None and batch_size % devices:
        raise ValueError(f"{who}: `batch_size` = {batch_size} must be divisible by the {devices} "
                         f"devices of mesh axis {axis!r}.")
    data = _sharding.shard_batch(data, mesh, axis, who=who, what="data")
    params = _sharding.place_params(params, mesh, param_specs, who=who)
    return params, data, sharding


def fit(loss_fn: Callable, params, data, optimizer, steps: int, *, batch_size: int | None = None,
        key=None, loss_kwargs: dict | None = None, on_nonfinite: str = "raise", mesh=None,
        batch_axis=None, param_specs=None) -> FitResult:
    """Train ``params`` for ``steps`` steps in one jitted ``lax.scan``.

    - ``optimizer``: an ``lj.optim`` name (default hyperparameters) or any optax
      transformation; line-search methods (lbfgs, cg) get ``value``, ``grad`` and
      ``value_fn`` — the loss on the step's batch.
    - ``batch_size``: draw minibatches on device, each epoch a fresh permutation from ``key``
      (the last ``n % batch_size`` examples of each permutation are skipped); None = the
      full batch every step.
    - ``loss_kwargs``: extra keyword arguments of ``loss_fn`` (arrays are traced).
    - ``on_nonfinite``: when the loss, gradient or new parameters are NaN/inf at some step,
      the loop freezes the parameters from before that step; "raise" (default) then raises
      :class:`NonFiniteLoss` naming the step (the partial result is ``err.result``), "stop"
      returns the result with ``result.stopped_at`` set.
    - ``mesh``: a ``jax.sharding.Mesh``: data-parallel training. ``data`` is split along its
      example axis over the mesh axis ``batch_axis`` (default: the mesh's first axis; the
      number of examples and ``batch_size`` must be divisible by its size), minibatches stay
      split the same way, ``params`` are replicated, or placed as ``param_specs`` says (a
      pytree prefix of ``params`` with ``PartitionSpec`` leaves, for large weights). GSPMD
      inserts the gradient all-reduce. Same history as on one device, to round-off.

    Compiled once per (loss_fn, optimizer, steps, batch_size) and input shapes: reuse the same
    function and transformation objects to reuse the compilation.
    """
    who = "lj.train.fit"
    loss_kwargs = dict(loss_kwargs or {})
    if on_nonfinite not in ("raise", "stop"):
        raise ValueError(f"{who}: `on_nonfinite` must be 'raise' or 'stop', got {on_nonfinite!r}.")
    optimizer = _optimizer(who, optimizer)
    _check_common(who, loss_fn, data, steps, batch_size)
    loss_fn, params, model = _as_arrays(who, loss_fn, params, param_specs)
    _check_scalar(who, loss_fn, params, data, loss_kwargs)
    key = jax.random.PRNGKey(0) if key is None else key
    params, data, batch_sharding = _on_mesh(who, mesh, batch_axis, param_specs, params, data,
                                            batch_size)
    result = _fit_jit(loss_fn=loss_fn, optimizer=optimizer, steps=int(steps),
                      batch_size=batch_size, batch_sharding=batch_sharding, params=params,
                      data=data, key=key, loss_kwargs=loss_kwargs)
    result = _rebuilt(result, model)
    if on_nonfinite == "raise" and not result.ok:
        at = int(result.stopped_at)
        inputs = _nonfinite_inputs(params=params, data=data, loss_kwargs=loss_kwargs)
        if inputs:
            cause, why = "inputs", (f"The inputs were already non-finite: {', '.join(inputs)}; "
                                    f"the optimiser never saw a finite loss.")
        elif at == 0:
            cause, why = "start", ("The inputs are finite but the loss or its gradient is not "
                                   "at the initial parameters (e.g. log 0): check the loss "
                                   "function and the initialisation.")
        else:
            cause, why = "diverged", (
                f"The optimiser diverged: the loss was finite for steps 0-{at - 1}. The "
                f"parameters in err.result.params are those before step {at}; lower the "
                f"learning rate or clip the gradient (lj.optim.make(..., clip_norm=...)).")
        raise NonFiniteLoss(f"{who}: the loss, gradient or update is {result.report()}. {why}",
                            result, cause)
    return result


def _as_sweep(who, what, values):
    """A dict of swept values with Python lists/tuples of numbers as arrays."""
    out = {}
    for name, v in (values or {}).items():
        if isinstance(v, (list, tuple)):
            try:
                v = jnp.asarray(np.asarray(v, dtype=np.result_type(*v) if v else np.float32))
            except (TypeError, ValueError):
                raise TypeError(f"{who}: `{what}['{name}']` must be an array or a list of "
                                f"numbers (one per run), got {v!r}.") from None
            if v.dtype == jnp.float64 and not jax.config.jax_enable_x64:
                v = v.astype(jnp.float32)
        out[name] = v
    return out


def _runs(who, named):
    """The common number of runs of the batched inputs, checked."""
    sizes = {}
    for what, tree in named.items():
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if jnp.ndim(x) == 0:
                raise ValueError(f"{who}: `{what}{jax.tree_util.keystr(path)}` is a scalar; "
                                 f"swept values need a leading run axis.")
            sizes[f"{what}{jax.tree_util.keystr(path)}"] = jnp.shape(x)[0]
    if not sizes:
        raise ValueError(f"{who}: nothing to sweep; give `hparams`, `loss_hparams`, `keys` or "
                         f"`batched_params=True` (or call lj.train.fit).")
    if len(set(sizes.values())) != 1:
        listing = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(f"{who}: swept inputs disagree on the number of runs ({listing}).")
    return next(iter(sizes.values()))


@functools.partial(jax.jit, static_argnames=("loss_fn", "factory", "steps", "batch_size",
                                             "batch_sharding", "params_axis"))
def _fit_many_jit(loss_fn, factory, steps, batch_size, batch_sharding, params_axis, params,
                  data, keys, hparams, loss_hparams):
    def one(params, key, hp, loss_hp):
        return _run(loss_fn, factory(**hp), steps, batch_size, batch_sharding, params, data,
                    key, loss_hp)
    return jax.vmap(one, in_axes=(params_axis, 0, 0, 0))(params, keys, hparams, loss_hparams)


def fit_many(loss_fn: Callable, params, data, optimizer, steps: int, *,
             hparams: dict | None = None, loss_hparams: dict | None = None, keys=None,
             batched_params: bool = False, batch_size: int | None = None, mesh=None,
             batch_axis=None, param_specs=None) -> FitResult:
    """``fit`` vmapped over runs: one compiled call trains every run of a sweep.

    - ``optimizer``: an ``lj.optim`` name, a factory ``(**hparams) -> transformation``
      (e.g. ``functools.partial(lj.optim.make, "momentum", momentum=0.9)``), or a fixed
      transformation when no optimizer hyperparameter is swept.
    - ``hparams``: optimizer hyperparameters, each an array (or a Python list) with one value
      per run.
    - ``loss_hparams``: keyword arguments of ``loss_fn``, one value per run (e.g. focal γ, or
      per-run data sets with a leading run axis).
    - ``keys``: one PRNG key per run (minibatch order); ``batched_params=True``: ``params``
      carry a leading run axis (e.g. one initialisation per seed).

    - ``mesh``, ``batch_axis``, ``param_specs``: data-parallel, as in ``fit`` (the run axis is
      not split; ``param_specs`` describe one run's parameters).

    Every run equals ``fit`` with that run's values. A run that goes non-finite stops there
    (``result.stopped_at[run]``) while the others go on; nothing is raised.
    """
    who = "lj.train.fit_many"
    hparams = _as_sweep(who, "hparams", hparams)
    loss_hparams = _as_sweep(who, "loss_hparams", loss_hparams)
    loss_fn, params, model = _as_arrays(who, loss_fn, params, param_specs)
    batched = {"hparams": hparams, "loss_hparams": loss_hparams}
    if keys is not None:
        batched["keys"] = jax.random.key_data(keys) if jnp.issubdtype(
            jnp.asarray(keys).dtype, jax.dtypes.prng_key) else keys
    if batched_params:
        batched["params"] = params
    runs = _runs(who, batched)
    if isinstance(optimizer, str):
        _named(optimizer)  # an unknown name fails here, not under vmap
        factory = _named_factory(optimizer)
    elif hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        if hparams:
            raise ValueError(f"{who}: `hparams` need an optimizer factory or name, not a fixed "
                             f"transformation; e.g. functools.partial(lj.optim.make, 'sgd').")
        factory = _Fixed(optimizer)
    elif callable(optimizer):
        factory = optimizer
    else:
        raise TypeError(f"{who}: `optimizer` must be an lj.optim name, a factory or an optax "
                        f"GradientTransformation, got {type(optimizer).__name__}.")
    one_params = jax.tree_util.tree_map(lambda x: x[0], params) if batched_params else params
    _check_common(who, loss_fn, data, steps, batch_size)
    _check_scalar(who, loss_fn, one_params, data,
                  jax.tree_util.tree_map(lambda x: x[0], loss_hparams))
    if keys is None:
        keys = jax.random.split(jax.random.PRNGKey(0), runs)
    if param_specs is not None and batched_params:
        param_specs = jax.tree_util.tree_map(
            lambda spec: None if spec is None else jax.sharding.PartitionSpec(None, *spec),
            param_specs, is_leaf=lambda x: x is None or isinstance(x, jax.sharding.PartitionSpec))
    params, data, batch_sharding = _on_mesh(who, mesh, batch_axis, param_specs, params, data,
                                            batch_size)
    result = _fit_many_jit(loss_fn=loss_fn, factory=factory, steps=int(steps),
                           batch_size=batch_size, batch_sharding=batch_sharding,
                           params_axis=0 if batched_params else None,
                           params=params, data=data, keys=keys, hparams=hparams,
                           loss_hparams=loss_hparams)
    swept = {k: v for k, v in {**hparams, **loss_hparams}.items()
             if not isinstance(v, dict) and jnp.ndim(v) == 1}
    return _rebuilt(result, model)._replace(swept=swept)


class _Fixed:
    """A factory that ignores its (empty) hyperparameters; hashable by the transformation."""

    def __init__(self, transformation):
        self.transformation = transformation

    def __call__(self):
        return self.transformation

    def __hash__(self):
        return hash(self.transformation)

    def __eq__(self, other):
        return isinstance(other, _Fixed) and other.transformation is self.transformation
