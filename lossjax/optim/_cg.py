"""Nonlinear conjugate gradient on optax's zoom line search.

optax ships L-BFGS but no nonlinear CG; this is the missing direction rule, written as an optax
transformation so that it chains with ``optax.scale_by_zoom_linesearch`` exactly as
``optax.lbfgs`` chains its own direction with the line search.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

METHODS = ("polak_ribiere", "fletcher_reeves", "hestenes_stiefel")


class NonlinearCGState(NamedTuple):
    count: jax.Array            # completed iterations
    prev_grad: optax.Updates    # gradient at the previous iterate
    prev_direction: optax.Updates  # previous search direction (before the line-search step)


_vdot = optax.tree_utils.tree_vdot


def scale_by_nonlinear_cg(method: str = "polak_ribiere", restart_every: int | None = None,
                          curvature_step: bool = True) -> optax.GradientTransformationExtraArgs:
    r"""Search direction of nonlinear conjugate gradient: :math:`d_k = -g_k + \beta_k d_{k-1}`.

    ``method`` chooses :math:`\beta_k` (with :math:`y_k = g_k - g_{k-1}`):

    - ``"fletcher_reeves"``: :math:`g_k^\top g_k / g_{k-1}^\top g_{k-1}` (Fletcher & Reeves 1964);
    - ``"polak_ribiere"``: :math:`\max(0, g_k^\top y_k / g_{k-1}^\top g_{k-1})`, the PR+ rule of
      Gilbert & Nocedal (1992) that restarts automatically when the plain rule turns negative;
    - ``"hestenes_stiefel"``: :math:`g_k^\top y_k / d_{k-1}^\top y_k` (Hestenes & Stiefel 1952).

    The direction restarts at steepest descent on the first step, every ``restart_every``
    steps (if given), when a denominator vanishes, and whenever :math:`d_k` is not a descent
    direction (:math:`g_k^\top d_k \ge 0`, possible after an inexact line search).

    With ``curvature_step`` and a ``value_fn`` passed to ``update``, the direction is scaled by
    the minimiser of the local quadratic model along it, :math:`-g^\top d / d^\top H d`, from
    one Hessian–vector product, so that a line search starting at step 1 starts at the exact
    line minimiser of a quadratic. CG's finite termination on quadratics needs exact line
    searches; a Wolfe search alone stops at the first acceptable step. Where the curvature is
    not positive the direction is left unscaled.
    """
    if method not in METHODS:
        raise ValueError(f"nonlinear_cg: `method` must be one of {METHODS}, got {method!r}.")

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return NonlinearCGState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None, *, value_fn=None, **extra_args):
        del extra_args
        g, g_prev, d_prev = grads, state.prev_grad, state.prev_direction
        y = jax.tree_util.tree_map(jnp.subtract, g, g_prev)
        if method == "fletcher_reeves":
            num, den = _vdot(g, g), _vdot(g_prev, g_prev)
        elif method == "polak_ribiere":
            num, den = _vdot(g, y), _vdot(g_prev, g_prev)
        else:
            num, den = _vdot(g, y), _vdot(d_prev, y)
        restart = (state.count == 0) | (den == 0)
        if restart_every is not None:
            restart |= state.count % restart_every == 0
        beta = jnp.where(restart, 0.0, num / jnp.where(den == 0, 1.0, den))
        if method == "polak_ribiere":
            beta = jnp.maximum(beta, 0.0)
        d = jax.tree_util.tree_map(lambda gi, di: -gi + (beta * di).astype(gi.dtype), g, d_prev)
        descent = _vdot(g, d) < 0
        d = jax.tree_util.tree_map(lambda di, gi: jnp.where(descent, di, -gi), d, g)
        new_state = NonlinearCGState(state.count + 1, g, d)
        if curvature_step and value_fn is not None and params is not None:
            hd = jax.jvp(jax.grad(value_fn), (params,), (d,))[1]
            curvature, slope = _vdot(d, hd), _vdot(g, d)
            step = jnp.where((curvature > 0) & jnp.isfinite(curvature),
                             -slope / jnp.where(curvature > 0, curvature, 1.0), 1.0)
            d = jax.tree_util.tree_map(lambda di: (step * di).astype(di.dtype), d)
        return d, new_state

    return optax.GradientTransformationExtraArgs(init, update)


def nonlinear_cg(method: str = "polak_ribiere", *, restart_every: int | None = None,
                 max_linesearch_steps: int = 30, curv_rtol: float = 0.1,
                 slope_rtol: float = 1e-4, curvature_step: bool = True
                 ) -> optax.GradientTransformationExtraArgs:
    """Nonlinear CG with a strong-Wolfe zoom line search (``optax.scale_by_zoom_linesearch``).

    ``curv_rtol`` = 0.1 is the curvature constant Nocedal & Wright recommend for CG (c2 < 1/2
    is what makes Fletcher–Reeves directions descent directions). Like ``optax.lbfgs``, its
    ``update`` needs ``value``, ``grad`` and ``value_fn`` keyword arguments; ``lj.train.fit``
    supplies them, and ``optax.value_and_grad_from_state`` reuses the line search's last value.
    """
    return optax.chain(
        scale_by_nonlinear_cg(method, restart_every, curvature_step),
        optax.scale_by_zoom_linesearch(
            max_linesearch_steps=max_linesearch_steps, slope_rtol=slope_rtol,
            curv_rtol=curv_rtol, initial_guess_strategy="one" if curvature_step else "keep"))
