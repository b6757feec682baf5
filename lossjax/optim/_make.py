"""`lj.optim.make`: optax optimizers by name, with validated hyperparameters and one way to add
clipping, schedules and weight decay."""
from __future__ import annotations

import difflib
import math

import jax
import optax

from lossjax.optim._cg import METHODS, nonlinear_cg

# name -> (defaults, docs). Defaults follow Keras/PyTorch where they agree; adadelta's learning
# rate is 1.0 because Zeiler's rule has none (optax's default of None leaves the update
# unnegated, i.e. ascends the loss).
OPTIMIZERS = {
    "sgd": dict(learning_rate=0.01),
    "momentum": dict(learning_rate=0.01, momentum=0.9),
    "nesterov": dict(learning_rate=0.01, momentum=0.9),
    "adagrad": dict(learning_rate=0.01, initial_accumulator_value=0.1, eps=1e-7),
    "adadelta": dict(learning_rate=1.0, rho=0.9, eps=1e-6),
    "rmsprop": dict(learning_rate=0.001, decay=0.9, eps=1e-8, centered=False),
    "adam": dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-8),
    "adamw": dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4),
    "lbfgs": dict(learning_rate=None, memory_size=10, max_linesearch_steps=20, curv_rtol=0.9),
    "cg": dict(method="polak_ribiere", restart_every=None, max_linesearch_steps=30,
               curv_rtol=0.1),
}
NAMES = tuple(OPTIMIZERS)
LINESEARCH = ("lbfgs", "cg")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear", "exponential")
# Options every first-order optimizer accepts on top of its own hyperparameters.
COMMON = dict(clip_norm=None, weight_decay=0.0, schedule="constant", decay_steps=None,
              warmup_steps=0, decay_rate=0.1)

# Allowed interval per hyperparameter: (low, high, low_open, high_open).
_RANGES = {
    "learning_rate": (0, None, True, False), "momentum": (0, 1, False, True),
    "b1": (0, 1, False, True), "b2": (0, 1, False, True), "rho": (0, 1, False, True),
    "decay": (0, 1, False, True), "eps": (0, None, False, False),
    "initial_accumulator_value": (0, None, False, False),
    "weight_decay": (0, None, False, False), "clip_norm": (0, None, True, False),
    "curv_rtol": (0, 1, True, True), "decay_rate": (0, None, True, False),
}
_POSITIVE_INTS = ("memory_size", "max_linesearch_steps", "decay_steps", "restart_every")


def _check(name, key, value):
    who = f"lj.optim.make({name!r})"
    if key in _POSITIVE_INTS:
        if value is None and key in ("decay_steps", "restart_every"):
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{who}: `{key}` must be a positive int, got {value!r}.")
        return
    if key == "warmup_steps":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{who}: `warmup_steps` must be a non-negative int, got {value!r}.")
        return
    if key not in _RANGES or value is None or callable(value) or isinstance(value, jax.core.Tracer):
        return  # traced values (a vmapped sweep) are used as given; schedules are callables
    lo, hi, lo_open, hi_open = _RANGES[key]
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: `{key}` must be a number, got {value!r}.") from None
    bad = math.isnan(v) or (v <= lo if lo_open else v < lo) or (
        hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        interval = (f"{'(' if lo_open else '['}{lo}, {'inf' if hi is None else hi}"
                    f"{')' if hi_open or hi is None else ']'}")
        raise ValueError(f"{who}: `{key}` must lie in {interval}, got {value!r}.")


def _learning_rate(name, lr, schedule, decay_steps, warmup_steps, decay_rate):
    if schedule == "constant":
        return lr
    if callable(lr):
        raise ValueError(f"lj.optim.make({name!r}): `learning_rate` is already a schedule; "
                         f"drop `schedule={schedule!r}` or pass a number.")
    if decay_steps is None:
        raise ValueError(f"lj.optim.make({name!r}): `schedule={schedule!r}` needs "
                         f"`decay_steps` (a positive int, usually the number of training steps).")
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps)
    if schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps,
                                                  warmup_steps + decay_steps)
    if schedule == "linear":
        return optax.linear_schedule(lr, 0.0, decay_steps)
    return optax.exponential_decay(lr, decay_steps, decay_rate)


def make(name: str, **hparams) -> optax.GradientTransformationExtraArgs:
    """An optax optimizer by name: ``lj.optim.make("adam", learning_rate=1e-3, clip_norm=1.0)``.

    Names: sgd, momentum (heavy ball), nesterov, adagrad, adadelta, rmsprop, adam, adamw, lbfgs
    (optax's, zoom line search) and cg (nonlinear conjugate gradient; ``method`` one of
    polak_ribiere, fletcher_reeves, hestenes_stiefel). ``lj.optim.OPTIMIZERS[name]`` lists each
    one's hyperparameters and defaults.

    First-order optimizers also take, composed through ``optax.chain`` in this order:
    ``clip_norm`` (clip the gradient's global norm), ``weight_decay`` (an L2 term λ·θ added to
    the gradient — for adamw it is the decoupled decay of Loshchilov & Hutter instead),
    ``schedule`` ("constant", "cosine", "warmup_cosine", "linear", "exponential", with
    ``decay_steps``, ``warmup_steps``, ``decay_rate``); ``learning_rate`` may also be any optax
    schedule. lbfgs and cg choose their step by line search: their ``update`` needs
    ``value``, ``grad`` and ``value_fn`` keyword arguments (``lj.train.fit`` passes them).

    Hyperparameters may be traced (``lj.train.fit_many`` sweeps them under vmap); concrete
    values are range-checked here.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        close = difflib.get_close_matches(str(name), NAMES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"lj.optim.make: unknown optimizer {name!r}.{hint} "
                         f"Known: {', '.join(NAMES)}.")
    allowed = dict(OPTIMIZERS[name])
    if name not in LINESEARCH:
        allowed = {**COMMON, **allowed}
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        if name in LINESEARCH and set(unknown) & set(COMMON):
            raise ValueError(
                f"lj.optim.make({name!r}): {', '.join(unknown)} not supported — a line search "
                f"needs the true loss and gradient; add an L2 term to the loss instead of "
                f"weight decay, and do not clip or schedule a line-search method.")
        raise TypeError(f"lj.optim.make({name!r}): unknown hyperparameter(s) "
                        f"{', '.join(unknown)}. Accepted: {', '.join(sorted(allowed))}.")
    h = {**allowed, **hparams}
    for key, value in h.items():
        _check(name, key, value)

    if name == "lbfgs":
        return optax.lbfgs(
            learning_rate=h["learning_rate"], memory_size=h["memory_size"],
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=h["max_linesearch_steps"], curv_rtol=h["curv_rtol"],
                initial_guess_strategy="one"))
    if name == "cg":
        if h["method"] not in METHODS:
            raise ValueError(f"lj.optim.make('cg'): `method` must be one of {METHODS}, "
                             f"got {h['method']!r}.")
        return nonlinear_cg(h["method"], restart_every=h["restart_every"],
                            max_linesearch_steps=h["max_linesearch_steps"],
                            curv_rtol=h["curv_rtol"])

    if h["schedule"] not in SCHEDULES:
        raise ValueError(f"lj.optim.make({name!r}): `schedule` must be one of {SCHEDULES}, "
                         f"got {h['schedule']!r}.")
    lr = _learning_rate(name, h["learning_rate"], h["schedule"], h["decay_steps"],
                        h["warmup_steps"], h["decay_rate"])
    if name == "sgd":
        core = optax.sgd(lr)
    elif name in ("momentum", "nesterov"):
        core = optax.sgd(lr, momentum=h["momentum"], nesterov=name == "nesterov")
    elif name == "adagrad":
        core = optax.adagrad(lr, initial_accumulator_value=h["initial_accumulator_value"],
                             eps=h["eps"])
    elif name == "adadelta":
        core = optax.adadelta(lr, rho=h["rho"], eps=h["eps"])
    elif name == "rmsprop":
        core = optax.rmsprop(lr, decay=h["decay"], eps=h["eps"], centered=h["centered"])
    elif name == "adam":
        core = optax.adam(lr, b1=h["b1"], b2=h["b2"], eps=h["eps"])
    else:
        core = optax.adamw(lr, b1=h["b1"], b2=h["b2"], eps=h["eps"],
                           weight_decay=h["weight_decay"])
    parts = []
    if h["clip_norm"] is not None:
        parts.append(optax.clip_by_global_norm(h["clip_norm"]))
    if name != "adamw" and not _is_zero(h["weight_decay"]):
        parts.append(optax.add_decayed_weights(h["weight_decay"]))
    return optax.chain(*parts, core) if parts else core


def _is_zero(value):
    return not isinstance(value, jax.core.Tracer) and not callable(value) and value == 0


def uses_linesearch(name: str) -> bool:
    """Whether ``make(name)`` picks its step by line search (needs value_fn in ``update``)."""
    return name in LINESEARCH
