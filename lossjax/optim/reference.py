"""Update rules written from the papers in plain jax.numpy, one function per rule.

Each returns an ``(init, update)`` pair in optax's protocol (``update(grads, state, params)``
returns the additive update and the new state), so that ``lj.audit.check_update`` can run it
side by side with the optax transformation that ``lj.optim.make`` builds:

    lj.audit.check_update(lj.optim.reference.adam(1e-3), lj.optim.make("adam", learning_rate=1e-3),
                          params, steps=100)

They are deliberately written without optax and without tree utilities beyond ``tree_map``:
an independent second implementation is what makes the audit meaningful. Where a paper and
optax differ in a convention (where ε sits, whether the learning rate multiplies the decay),
the rule follows optax's convention and the docstring says what the paper writes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Rule", "sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam",
           "adamw", "adam_l2", "RULES", "audit"]


class Rule(NamedTuple):
    init: Callable
    update: Callable


def _map(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def _zeros(params):
    return _map(jnp.zeros_like, params)


def sgd(learning_rate: float) -> Rule:
    """θ ← θ − η g (Robbins & Monro 1951)."""
    return Rule(lambda params: (), lambda g, state, params=None: (
        _map(lambda gi: -learning_rate * gi, g), state))


def momentum(learning_rate: float, momentum: float = 0.9) -> Rule:
    """Heavy ball (Polyak 1964): v ← μ v + g; θ ← θ − η v."""
    def update(g, v, params=None):
        v = _map(lambda vi, gi: momentum * vi + gi, v, g)
        return _map(lambda vi: -learning_rate * vi, v), v
    return Rule(_zeros, update)


def nesterov(learning_rate: float, momentum: float = 0.9) -> Rule:
    """Nesterov momentum (Nesterov 1983; Sutskever et al. 2013) in the form that needs the
    gradient at θ only: v ← μ v + g; θ ← θ − η (g + μ v). It equals Sutskever's look-ahead
    form under the change of variables θ̃ = θ − η μ v."""
    def update(g, v, params=None):
        v = _map(lambda vi, gi: momentum * vi + gi, v, g)
        return _map(lambda vi, gi: -learning_rate * (gi + momentum * vi), v, g), v
    return Rule(_zeros, update)


def adagrad(learning_rate: float, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> Rule:
    """Adagrad (Duchi, Hazan & Singer 2011): G ← G + g²; θ ← θ − η g / √(G + ε).

    The paper writes g / (√G + ε) with G starting at 0; optax starts G at 0.1 and puts ε
    inside the root, and so does this rule."""
    def update(g, acc, params=None):
        acc = _map(lambda a, gi: a + gi * gi, acc, g)
        return _map(lambda a, gi: -learning_rate * gi / jnp.sqrt(a + eps), acc, g), acc
    return Rule(lambda p: _map(lambda x: jnp.full_like(x, initial_accumulator_value), p), update)


def adadelta(learning_rate: float = 1.0, rho: float = 0.9, eps: float = 1e-6) -> Rule:
    """Adadelta (Zeiler 2012, Algorithm 1): E[g²] ← ρE[g²] + (1−ρ)g²;
    Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g; E[Δ²] ← ρE[Δ²] + (1−ρ)Δ²; θ ← θ − η Δ (η = 1 in the
    paper)."""
    def update(g, state, params=None):
        eg, ex = state
        eg = _map(lambda e, gi: rho * e + (1 - rho) * gi * gi, eg, g)
        delta = _map(lambda e_g, e_x, gi: jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps) * gi,
                     eg, ex, g)
        ex = _map(lambda e, d: rho * e + (1 - rho) * d * d, ex, delta)
        return _map(lambda d: -learning_rate * d, delta), (eg, ex)
    return Rule(lambda p: (_zeros(p), _zeros(p)), update)


def rmsprop(learning_rate: float, decay: float = 0.9, eps: float = 1e-8) -> Rule:
    """RMSProp (Tieleman & Hinton 2012, lecture 6e): E[g²] ← βE[g²] + (1−β)g²;
    θ ← θ − η g / √(E[g²] + ε)."""
    def update(g, ms, params=None):
        ms = _map(lambda m, gi: decay * m + (1 - decay) * gi * gi, ms, g)
        return _map(lambda m, gi: -learning_rate * gi / jnp.sqrt(m + eps), ms, g), ms
    return Rule(_zeros, update)


def _adam_direction(b1, b2, eps):
    """Kingma & Ba (2015), Algorithm 1: m̂/(√v̂ + ε) with bias-corrected moments."""
    def init(params):
        return (jnp.zeros([], jnp.int32), _zeros(params), _zeros(params))

    def step(g, state):
        t, m, v = state
        t = t + 1
        m = _map(lambda mi, gi: b1 * mi + (1 - b1) * gi, m, g)
        v = _map(lambda vi, gi: b2 * vi + (1 - b2) * gi * gi, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        direction = _map(lambda mi, vi: (mi / c1) / (jnp.sqrt(vi / c2) + eps), m, v)
        return direction, (t, m, v)
    return init, step


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Rule:
    """Adam with bias correction (Kingma & Ba 2015, Algorithm 1)."""
    init, step = _adam_direction(b1, b2, eps)

    def update(g, state, params=None):
        direction, state = step(g, state)
        return _map(lambda d: -learning_rate * d, direction), state
    return Rule(init, update)


def adamw(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4) -> Rule:
    """AdamW (Loshchilov & Hutter 2019, Algorithm 2): the decay acts on θ directly, outside
    the adaptive scaling: θ ← θ − η (m̂/(√v̂ + ε) + λ θ). The paper's schedule multiplier η_t
    multiplies both terms; here it is the learning rate, as in optax."""
    init, step = _adam_direction(b1, b2, eps)

    def update(g, state, params):
        direction, state = step(g, state)
        return _map(lambda d, p: -learning_rate * (d + weight_decay * p), direction, params), state
    return Rule(init, update)


def adam_l2(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: float = 1e-4) -> Rule:
    """Adam on the loss plus (λ/2)‖θ‖²: the L2 gradient λθ enters the moments and is rescaled
    by 1/√v̂, so large-gradient weights are decayed less — the coupling AdamW removes."""
    init, step = _adam_direction(b1, b2, eps)

    def update(g, state, params):
        g = _map(lambda gi, p: gi + weight_decay * p, g, params)
        direction, state = step(g, state)
        return _map(lambda d: -learning_rate * d, direction), state
    return Rule(init, update)


# Reference rule -> the lj.optim.make optimizer it is audited against. The keyword names are
# shared, so the same hyperparameters build both (adam_l2 is make("adam", weight_decay=λ)).
RULES = {"sgd": (sgd, "sgd"), "momentum": (momentum, "momentum"),
         "nesterov": (nesterov, "nesterov"), "adagrad": (adagrad, "adagrad"),
         "adadelta": (adadelta, "adadelta"), "rmsprop": (rmsprop, "rmsprop"),
         "adam": (adam, "adam"), "adamw": (adamw, "adamw"), "adam_l2": (adam_l2, "adam")}


def audit(rule: str, params, *, steps: int = 100, key=None, **hparams):
    """``lj.audit.check_update`` of the reference rule ``rule`` against ``lj.optim.make`` with
    the same hyperparameters (``lj.optim.OPTIMIZERS`` defaults for those not given; adam_l2
    defaults to λ = 1e-4). Returns the :class:`lossjax.audit.UpdateAudit`."""
    import inspect

    from lossjax.audit import check_update
    from lossjax.optim._make import OPTIMIZERS, make
    if rule not in RULES:
        raise ValueError(f"lj.optim.reference.audit: unknown rule {rule!r}; "
                         f"known: {', '.join(RULES)}.")
    factory, name = RULES[rule]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise TypeError(f"lj.optim.reference.audit({rule!r}): unknown hyperparameter(s) "
                        f"{', '.join(unknown)}. Accepted: {', '.join(accepted)}.")
    defaults = {k: v for k, v in OPTIMIZERS[name].items() if k in accepted}
    if rule == "adam_l2":
        defaults["weight_decay"] = 1e-4
    h = {**defaults, **hparams}
    return check_update(factory(**h), make(name, **h), params, steps, key=key)
