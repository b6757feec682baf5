"""Optimizers: optax transformations by name, nonlinear conjugate gradient, and reference
update rules written from the papers for auditing them.

    tx = lj.optim.make("adam", learning_rate=1e-3, clip_norm=1.0)
    tx = lj.optim.make("cg", method="fletcher_reeves")       # line search: use lj.train.fit
    lj.optim.reference.audit("adamw", params).ok              # paper rule == optax, 100 steps
"""
from lossjax.optim import reference
from lossjax.optim._cg import METHODS, NonlinearCGState, nonlinear_cg, scale_by_nonlinear_cg
from lossjax.optim._make import NAMES, OPTIMIZERS, SCHEDULES, make, uses_linesearch

__all__ = ["METHODS", "NAMES", "OPTIMIZERS", "SCHEDULES", "NonlinearCGState", "make",
           "nonlinear_cg", "reference", "scale_by_nonlinear_cg", "uses_linesearch"]
