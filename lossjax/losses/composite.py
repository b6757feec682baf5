"""Composite losses: weighted multi-task sums, and uncertainty weighting (Kendall et al. 2018).

``weighted_sum`` combines catalogue losses over several tasks; its ``.grad`` is composed from
the members' hand-derived ``.grad``. ``uncertainty_weighting`` is a catalogue loss over the
vector of task losses and learnable log-variances.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lossjax import _checks, _sampling
from lossjax._loss import Loss, Sample, Terms, loss


def _task(name, value):
    """A task's call: (args...) or (args..., {kwargs})."""
    if not isinstance(value, tuple) or not value:
        raise TypeError(f"weighted_sum: task {name!r} must be given as a tuple of the loss's "
                        f"arguments, e.g. {name}=(predictions, targets) or "
                        f"{name}=(predictions, targets, {{'delta': 0.5}}); got "
                        f"{type(value).__name__}.")
    if isinstance(value[-1], dict):
        return value[:-1], value[-1]
    return value, {}


class WeightedSum:
    """``sum_k w_k L_k(task_k)`` over named tasks (multi-task learning).

        total = lj.weighted_sum(seg=(lj.dice, 1.0), cls=(lj.cross_entropy, 0.5))
        total(seg=(probs, masks), cls=(logits, labels))          # scalar
        total.grad(seg=(probs, masks), cls=(logits, labels))     # {task: d total / d predictions}
        total.parts(seg=..., cls=...)                            # {task: L_k}

    Each member is a catalogue Loss (any reduction keywords go in the task's kwargs dict).
    The gradient of task k's predictions is ``w_k * L_k.grad(...)``: the members' hand-derived
    gradients, composed. Weights may be traced (a vmapped sweep over task weights).
    """

    def __init__(self, **members):
        if not members:
            raise ValueError("weighted_sum: give at least one task, e.g. "
                             "weighted_sum(main=(lj.mse, 1.0)).")
        for name, member in members.items():
            if not (isinstance(member, tuple) and len(member) == 2 and
                    isinstance(member[0], Loss)):
                raise TypeError(f"weighted_sum: task {name!r} must be (loss, weight) with a "
                                f"lossjax Loss, got {member!r}.")
        self.members = members

    def _check_tasks(self, tasks):
        missing, extra = set(self.members) - set(tasks), set(tasks) - set(self.members)
        if missing or extra:
            raise ValueError(f"weighted_sum: tasks {sorted(self.members)} expected; missing "
                             f"{sorted(missing)}, unexpected {sorted(extra)}.")
        return {name: _task(name, tasks[name]) for name in self.members}

    def parts(self, **tasks):
        calls = self._check_tasks(tasks)
        return {name: self.members[name][0](*args, **kwargs)
                for name, (args, kwargs) in calls.items()}

    def __call__(self, **tasks):
        parts = self.parts(**tasks)
        return sum(self.members[name][1] * value for name, value in parts.items())

    def grad(self, **tasks):
        calls = self._check_tasks(tasks)
        return {name: self.members[name][1] * self.members[name][0].grad(*args, **kwargs)
                for name, (args, kwargs) in calls.items()}


def weighted_sum(**members) -> WeightedSum:
    """A multi-task loss ``sum_k w_k L_k``: ``weighted_sum(name=(loss, weight), ...)``."""
    return WeightedSum(**members)


def _uncertainty_sample(key, dtype, kind):
    k1, k2 = jax.random.split(key)
    if kind == "generic":
        return Sample((_sampling.uniform(k1, (5,), dtype, 0.05, 3.0),
                       _sampling.normal(k2, (5,), dtype)), {})
    half = jnp.finfo(dtype).bits <= 16     # keep e^{-s} L inside float16's range
    big = 4.0 if half else 30.0
    losses = jnp.asarray([0.0, 1.0, 100.0 if half else 1e3, 0.5, 2.0], dtype)
    log_vars = jnp.asarray([0.0, big, -big, -3.0, 0.0], dtype)
    return Sample((losses, log_vars), {"factor": 0.5})


@loss(family="composite", elementwise=True, grad_wrt=("log_vars",),
      formula=r"\ell_k = c\,e^{-s_k} L_k + \tfrac12 s_k",
      sampler=_uncertainty_sample,
      references=["Kendall, Gal, Cipolla, Multi-Task Learning Using Uncertainty to Weigh "
                  "Losses for Scene Geometry and Semantics, CVPR 2018."])
def uncertainty_weighting(losses, log_vars, *, factor=0.5):
    r"""Homoscedastic-uncertainty task weighting: each task loss :math:`L_k` is scaled by
    :math:`c\,e^{-s_k}` and regularised by :math:`s_k/2`, with learnable log-variances
    :math:`s_k = \log\sigma_k^2` (eq. 7 of the paper with ``factor=0.5``, the Gaussian
    likelihood of a regression task; ``factor=1`` is their classification form).

    Args:
      losses: the task losses, shape (K,) (or any shape), each a scalar of its task.
      log_vars: learnable log-variances, same shape.
      factor: c > 0, a scalar or per-task array.

    Use ``reduction="sum"`` for the total objective. ``.grad`` is w.r.t. the task losses
    (:math:`c e^{-s}`: what reaches each task's network), ``.grad(..., wrt="log_vars")`` w.r.t.
    the log-variances (:math:`-c e^{-s} L + 1/2`, zero at the optimum :math:`s = \log 2cL`).
    """
    name = "uncertainty_weighting"
    s = _checks.floating(name, "log_vars", log_vars)
    _checks.same_shape(name, "losses", losses, "log_vars", s)
    _checks.in_range(name, "factor", factor, lo=0, lo_open=True)
    s = s.astype(losses.dtype)
    scale = factor * jnp.exp(-s)
    return Terms(scale * losses + 0.5 * s, grad=lambda: scale,
                 hess=lambda: jnp.zeros_like(losses),
                 partials={"log_vars": lambda: -scale * losses + 0.5})
