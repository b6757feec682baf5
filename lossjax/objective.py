"""Catalogue losses as custom objectives for gradient boosting.

    booster = xgboost.train(params, dtrain, obj=lj.objective(lj.poisson_nll))
    model = lightgbm.train({"objective": lj.objective(lj.huber, "lightgbm", delta=0.5)}, data)

The objective returns, per prediction, the gradient and the Hessian diagonal of the loss summed
over samples (``loss.grad`` and ``loss.hess_diag`` with ``reduction="sum"``, times the sample
weights when the dataset has them), computed in float64 by one compiled program per shape:
NumPy in, NumPy out.
"""
from __future__ import annotations

import numpy as np

FRAMEWORKS = ("xgboost", "lightgbm", "sklearn", "catboost", "plain")


def objective(loss, framework="xgboost", **hyper):
    """``loss`` (a catalogue Loss with ``.grad`` and ``.hess_diag``) as a custom objective in
    ``framework``'s calling and sign convention:

    - "xgboost": ``obj(preds, dtrain) -> (grad, hess)`` (``xgboost.train(obj=...)``);
    - "lightgbm": ``obj(preds, train_data) -> (grad, hess)`` (``params["objective"]``);
    - "sklearn": ``obj(y_true, y_pred[, weight]) -> (grad, hess)`` (``XGBRegressor`` /
      ``LGBMRegressor(objective=...)``);
    - "catboost": an object with ``calc_ders_range`` (and ``calc_ders_multi`` for classes)
      returning the negated derivatives CatBoost expects;
    - "plain": ``obj(predictions, labels) -> (grad, hess)``.

    ``hyper`` are the loss's hyperparameters (``delta=``, ``gamma=``...). Multi-class losses
    (predictions (n, k), integer labels) return (n, k) arrays.
    """
    from lossjax._loss import Loss
    if not isinstance(loss, Loss):
        raise TypeError(f"lj.objective: loss must be a catalogue Loss (lj.get(name)); got "
                        f"{type(loss).__name__}.")
    if framework not in FRAMEWORKS:
        raise ValueError(f"lj.objective({loss.name}): framework must be one of "
                         f"{', '.join(FRAMEWORKS)}; got {framework!r}.")
    if not (loss.has_grad and loss.has_hess_diag):
        missing = "hand-derived gradient" if not loss.has_grad else "Hessian diagonal"
        raise ValueError(f"lj.objective({loss.name}): {loss.name} has no {missing}; an "
                         f"objective needs both.")
    derivatives = _Derivatives(loss, hyper)
    if framework == "xgboost":
        def obj(preds, dtrain):
            w = dtrain.get_weight()
            return derivatives(preds, dtrain.get_label(), w if w is not None and len(w) else None)
    elif framework == "lightgbm":
        def obj(preds, train_data):
            return derivatives(preds, train_data.get_label(), train_data.get_weight())
    elif framework == "sklearn":
        def obj(y_true, y_pred, weight=None):
            return derivatives(y_pred, y_true, weight)
    elif framework == "plain":
        def obj(predictions, labels):
            return derivatives(predictions, labels, None)
    else:
        return _CatBoostObjective(derivatives)
    obj.__name__ = f"{loss.name}_{framework}_objective"
    obj.__doc__ = f"{loss.name} ({loss.formula}) as a {framework} objective."
    return obj


class _Derivatives:
    """(grad, hess) of the summed, weighted loss in float64, one compiled program per shape."""

    def __init__(self, loss, hyper):
        self.loss, self.hyper = loss, hyper
        self._compiled = {}

    def _program(self, weighted):
        import jax
        if weighted not in self._compiled:
            loss, hyper = self.loss, self.hyper

            def both(p, y, w):
                extra = {"weights": w} if weighted else {}
                return (loss.grad(p, y, reduction="sum", **extra, **hyper),
                        loss.hess_diag(p, y, reduction="sum", **extra, **hyper))
            self._compiled[weighted] = jax.jit(both)
        return self._compiled[weighted]

    def __call__(self, preds, labels, weights):
        from lossjax.audit._oracle import x64
        preds = np.asarray(preds, np.float64)
        labels = np.asarray(labels)
        if preds.ndim == 2:                   # classes: integer labels
            labels = np.rint(labels).astype(np.int64) if labels.dtype.kind == "f" else labels
        else:
            labels = labels.astype(np.float64)
        with x64():
            w = None if weights is None else np.asarray(weights, np.float64)
            g, h = self._program(w is not None)(preds, labels, w)
            return np.asarray(g, np.float64), np.asarray(h, np.float64)


class _CatBoostObjective:
    """CatBoost's custom-objective interface: derivatives of the log-likelihood, i.e. the
    loss's gradient and Hessian negated."""

    def __init__(self, derivatives):
        self._derivatives = derivatives

    def calc_ders_range(self, approxes, targets, weights):
        g, h = self._derivatives(np.asarray(approxes), np.asarray(targets),
                                 None if weights is None else np.asarray(weights))
        return list(zip((-g).tolist(), (-h).tolist()))

    def calc_ders_multi(self, approx, target, weight):
        g, h = self._derivatives(np.asarray(approx)[None], np.asarray([target]),
                                 np.asarray([weight]))
        return list(-g[0]), np.diag(-h[0]).tolist()
