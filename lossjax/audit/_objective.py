"""Audits of gradient-boosting objectives: a per-sample ``(grad, hess)`` callable written for
XGBoost, LightGBM, scikit-learn-style wrappers or CatBoost, in that framework's calling and
sign convention.

With ``loss=`` the objective's gradient and Hessian are audited against the loss (autodiff
and the float64 oracle, as :func:`lossjax.audit.check` does). Without one, the objective is
audited against itself: its Hessian must be the derivative of its gradient, and its gradient's
Jacobian must be (block-)diagonal, each sample's gradient depending on that sample's
prediction only; both from Richardson differences of the objective's own gradient.
"""
from __future__ import annotations

import numpy as np

from lossjax.audit import _oracle, _report as R
from lossjax.audit._diagnose import diagnose
from lossjax.audit._verdict import (KAPPA, Evidence, _counts, _elements, _verdict,
                                    element_names, failing_mask, user_tolerance,
                                    worst_relative)

CONVENTIONS = ("xgboost", "lightgbm", "sklearn", "catboost", "plain")


class _XGBoostData:
    """What an XGBoost objective reads from its DMatrix."""

    def __init__(self, labels, weights):
        self._labels, self._weights = labels, weights

    def get_label(self):
        return np.asarray(self._labels, np.float32)

    def get_weight(self):
        return np.asarray([], np.float32) if self._weights is None else \
            np.asarray(self._weights, np.float32)

    def get_base_margin(self):
        return np.asarray([], np.float32)

    def num_row(self):
        return len(self._labels)


class _LightGBMData:
    """What a LightGBM objective reads from its Dataset."""

    def __init__(self, labels, weights):
        self._labels, self._weights = labels, weights

    def get_label(self):
        return np.asarray(self._labels, np.float64)

    def get_weight(self):
        return None if self._weights is None else np.asarray(self._weights, np.float64)

    def get_init_score(self):
        return None

    def num_data(self):
        return len(self._labels)


def _as_layout(v, shape, convention, who, what):
    """An objective's output as an array shaped like the predictions. Flat multi-class outputs
    are sample-major for XGBoost and class-major for LightGBM (their 1-D layouts)."""
    v = np.asarray(v, np.float64)
    if v.shape == tuple(shape):
        return v
    if v.size != int(np.prod(shape)):
        raise ValueError(f"{who}: the objective's {what} has shape {v.shape}; expected "
                         f"{tuple(shape)} (one value per prediction).")
    if len(shape) == 2 and convention == "lightgbm":
        return v.reshape(shape[1], shape[0]).T
    return v.reshape(shape)


def _call_objective(obj, convention, predictions, labels, weights, who):
    """(grad, hess) of the loss in the plain sign convention, shaped like the predictions."""
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if convention == "xgboost":
        out = obj(p, _XGBoostData(y, weights))
    elif convention == "lightgbm":
        out = obj(p, _LightGBMData(y, weights))
    elif convention == "sklearn":
        out = obj(y, p) if weights is None else obj(y, p, np.asarray(weights))
    elif convention == "plain":
        out = obj(p, y)
    else:                                      # catboost: derivatives of the log-likelihood
        w = None if weights is None else list(np.asarray(weights, np.float64))
        if p.ndim == 2:
            if not hasattr(obj, "calc_ders_multi"):
                raise TypeError(f"{who}: a multi-class CatBoost objective needs "
                                f"calc_ders_multi(approx, target, weight).")
            grads, hesses = [], []
            for i in range(p.shape[0]):
                d1, d2 = obj.calc_ders_multi(list(p[i]), float(y[i]),
                                             1.0 if w is None else w[i])
                grads.append(-np.asarray(d1, np.float64))
                hesses.append(-np.diagonal(np.asarray(d2, np.float64)))
            return np.stack(grads), np.stack(hesses)
        if not hasattr(obj, "calc_ders_range"):
            raise TypeError(f"{who}: a CatBoost objective is an object with "
                            f"calc_ders_range(approxes, targets, weights).")
        ders = obj.calc_ders_range(list(p.astype(np.float64)), list(y.astype(np.float64)), w)
        ders = np.asarray(ders, np.float64).reshape(len(p), 2)
        return -ders[:, 0], -ders[:, 1]
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{who}: a {convention} objective returns (grad, hess); got "
                        f"{type(out).__name__}.")
    return (_as_layout(out[0], p.shape, convention, who, "gradient"),
            _as_layout(out[1], p.shape, convention, who, "Hessian"))


def check_objective(obj, predictions, labels, *, loss=None, convention="xgboost", weights=None,
                    kappa=KAPPA, rtol=0.0, atol=0.0, name=None, **loss_kwargs) -> R.AuditReport:
    """Audit a gradient-boosting objective ``obj`` at ``predictions`` (raw margins: shape (n,),
    or (n, k) for k classes) and ``labels`` (n,).

    ``convention`` says how ``obj`` is called and what it returns:
    "xgboost" ``obj(preds, dtrain) -> (grad, hess)`` (``dtrain.get_label()``,
    ``get_weight()``); "lightgbm" ``obj(preds, train_data) -> (grad, hess)``; "sklearn"
    ``obj(y_true, y_pred[, weight]) -> (grad, hess)``; "catboost" an object with
    ``calc_ders_range(approxes, targets, weights)`` returning ``[(der1, der2)]`` (the
    derivatives of the log-likelihood: the loss's negated), or ``calc_ders_multi`` for
    classes; "plain" ``obj(predictions, labels) -> (grad, hess)``. Multi-class outputs may be
    (n, k) or flat (sample-major for XGBoost, class-major for LightGBM).

    ``loss``: a catalogue Loss (called with ``reduction="sum"`` and ``weights=``) or a JAX
    function ``loss(predictions, labels)`` returning per-sample losses (summed, times
    ``weights``) or their total. With it, the gradient and Hessian diagonal are audited
    against the loss (:func:`lossjax.audit.check`); without it, the Hessian against
    differences of the objective's own gradient, and that gradient for (block-)diagonality.
    ``loss_kwargs`` go to the loss (hyperparameters).
    """
    who = f"lj.audit.check_objective({name or getattr(obj, '__name__', type(obj).__name__)})"
    name = name or getattr(obj, "__name__", type(obj).__name__)
    if convention not in CONVENTIONS:
        raise ValueError(f"{who}: convention must be one of {', '.join(CONVENTIONS)}; got "
                         f"{convention!r}.")
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if not np.issubdtype(p.dtype, np.floating) or p.ndim not in (1, 2):
        raise ValueError(f"{who}: predictions must be a float array of shape (n,) or (n, k); "
                         f"got {p.dtype}{list(p.shape)}.")
    if y.shape[:1] != p.shape[:1] or y.ndim != 1:
        raise ValueError(f"{who}: labels must have shape ({p.shape[0]},), one per sample; got "
                         f"{list(y.shape)}.")
    w = None if weights is None else np.asarray(weights, np.float64)
    if w is not None and w.shape != (p.shape[0],):
        raise ValueError(f"{who}: weights must have shape ({p.shape[0]},); got {list(w.shape)}.")

    def derivatives(q):
        return _call_objective(obj, convention, q, y, w, who)
    if loss is not None:
        # the loss sees the labels and weights as the framework hands them to the objective
        # (XGBoost stores them in float32); classes as integers
        y_seen, w_seen = y, w
        if convention == "xgboost":
            data = _XGBoostData(y, w)
            y_seen = data.get_label().astype(np.float64)
            w_seen = None if w is None else data.get_weight().astype(np.float64)
        if p.ndim == 2:
            y_seen = np.rint(y_seen).astype(np.int64)
        return _against_loss(loss, derivatives, p, y_seen, w_seen, loss_kwargs, kappa, rtol,
                             atol, name)
    return _self_consistent(derivatives, p, kappa, rtol, atol, name, who, convention)


def _against_loss(loss, derivatives, p, y, w, loss_kwargs, kappa, rtol, atol, name):
    import jax.numpy as jnp
    from lossjax._loss import Loss
    from lossjax.audit._check import check

    with _oracle.x64():
        labels = jnp.asarray(y)
        weights = None if w is None else jnp.asarray(w)

        def total(q, labels):
            if isinstance(loss, Loss):
                extra = {} if weights is None else {"weights": weights}
                return loss(q, labels, reduction="sum", **extra, **loss_kwargs)
            out = loss(q, labels, **loss_kwargs)
            if jnp.ndim(out) == 0:
                if weights is not None:
                    raise ValueError(f"lj.audit.check_objective({name}): with weights, the "
                                     f"loss must return per-sample values (shape "
                                     f"({p.shape[0]},)), not a scalar.")
                return out
            out = jnp.reshape(out, (p.shape[0], -1)).sum(axis=1)
            return jnp.sum(out if weights is None else weights * out)

        def grad(q, labels):
            return derivatives(np.asarray(q))[0].astype(np.asarray(q).dtype)

        def hess(q, labels):
            return derivatives(np.asarray(q))[1].astype(np.asarray(q).dtype)
        report = check(total, jnp.asarray(p), labels, grad=grad, hess=hess, kappa=kappa,
                       rtol=rtol, atol=atol, name=name)
        report.notes.append(f"objective audited against the loss "
                            f"{getattr(loss, 'name', getattr(loss, '__name__', 'fn'))}"
                            + (" with sample weights" if w is not None else ""))
        return report


def _self_consistent(derivatives, p, kappa, rtol, atol, name, who, convention):
    """The Hessian against Richardson differences of the objective's gradient, and the
    gradient's Jacobian for (block-)diagonality."""
    x = p.astype(np.float64)
    shape = x.shape
    classes = shape[1] if x.ndim == 2 else 1
    X = x.reshape(shape[0], classes)
    scale_x = np.maximum(1.0, np.abs(X))
    g0, h0 = derivatives(x)
    g0 = g0.reshape(X.shape)
    h_hand = h0.reshape(X.shape)
    eps = float(np.finfo(p.dtype).eps)
    eps_out = max(eps, float(np.finfo(np.float64).eps))

    def along(direction, h):
        vals = []
        for m in _oracle._MULTIPLIERS:
            g, _ = derivatives((X + m * h * direction).reshape(shape).astype(p.dtype))
            vals.append(np.asarray(g, np.float64).reshape(-1))
        return np.stack(vals)                                     # (6, n * classes)

    def estimate(direction):
        """J @ direction with an error estimate: the best of three step sizes."""
        best = None
        for h in (2.0 ** -5, 2.0 ** -11, 2.0 ** -17):
            vals = along(direction, h)
            (central, err, left, right, _, _, side_err, *_rest) = _oracle._richardson(
                vals[None], g0.reshape(1, -1), np.asarray([[h]]), np.abs(g0).reshape(1, -1))
            now = [central[0], err[0], left[0], right[0], side_err[0]]
            if best is None:
                best = now
            else:
                better = now[1] < best[1]
                best = [np.where(better, v, b) for v, b in zip(now, best)]
        # a jump in the gradient itself (a kink of the loss): at the smallest step the
        # differences across x no longer shrink when the step halves
        across_quarter, across_half = np.abs(vals[2] - vals[3]), np.abs(vals[1] - vals[4])
        noise = 64 * eps_out * (np.abs(g0).reshape(-1) + np.max(np.abs(vals), axis=0))
        best.append((across_quarter > 0.75 * across_half) & (across_quarter > noise))
        return best
    # the diagonal blocks: class c of every sample moved at once (separable objectives)
    block = np.zeros((X.shape[0], classes, classes))
    block_err = np.zeros_like(block)
    left_d, right_d, side_d = np.zeros(X.shape), np.zeros(X.shape), np.zeros(X.shape)
    discontinuous = np.zeros(X.shape, bool)
    for c in range(classes):
        d = np.zeros(X.shape)
        d[:, c] = scale_x[:, c]
        central, err, left, right, side, cut = (v.reshape(X.shape) for v in estimate(d))
        side_d[:, c] = side[:, c] / scale_x[:, c]
        discontinuous[:, c] = cut[:, c]
        block[:, :, c] = central / scale_x[:, c:c + 1]
        block_err[:, :, c] = err / scale_x[:, c:c + 1]
        left_d[:, c], right_d[:, c] = left[:, c] / scale_x[:, c], right[:, c] / scale_x[:, c]
    o = np.diagonal(block, axis1=1, axis2=2).copy()
    oe = np.diagonal(block_err, axis1=1, axis2=2).copy()
    # separability: random signs over every prediction at once
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=X.shape) * scale_x
    measured, m_err, _, _, _, cut = estimate(signs)
    m_err = np.where(cut, np.inf, m_err)          # no derivative across a jump
    predicted = np.einsum("ncd,nd->nc", block, signs).reshape(-1)
    sep_scale = np.einsum("ncd,nd->nc", np.abs(block), np.abs(signs)).reshape(-1)
    sep_tol = kappa * eps * (sep_scale + np.abs(predicted)) + 3 * (
        m_err + np.einsum("ncd,nd->nc", block_err, np.abs(signs)).reshape(-1)) + 1e-300
    sep_worst = float(np.max(np.abs(measured - predicted) / sep_tol))
    separable = sep_worst <= 1.0
    # the Hessian diagonal against the derivative of the gradient
    o, oe, h_flat = o.reshape(-1), oe.reshape(-1), h_hand.reshape(-1)
    scale = np.max(np.abs(o[np.isfinite(o)]), initial=0.0)
    tol_model = kappa * eps * (np.abs(o) + scale) + user_tolerance(o, rtol, atol)
    tol = tol_model + 3 * oe
    labels = np.full(o.shape, R.PASS, dtype=object)
    labels[np.abs(h_flat - o) > tol] = R.HAND_WRONG
    labels[~np.isfinite(o)] = R.UNSTABLE
    lo, hi = np.minimum(left_d, right_d).reshape(-1), np.maximum(left_d, right_d).reshape(-1)
    jump = (np.abs(hi - lo) > 2 * tol_model + 10 * side_d.reshape(-1) +
            np.sqrt(eps_out) * (np.abs(lo) + np.abs(hi))) | discontinuous.reshape(-1)
    labels[jump] = R.KINK      # the gradient jumps (|r| at 0): its derivative is a Dirac delta
    left_e, right_e = np.where(jump, -np.inf, lo), np.where(jump, np.inf, hi)

    class _View:           # element naming for the report: (sample, class)
        paths = [""]
        shapes = [shape]
        offsets = [0, int(np.prod(shape))]

        @staticmethod
        def locate(i):
            return "", tuple(int(k) for k in np.unravel_index(int(i), shape))
    worst, kinks = _elements(_View, labels, h_flat, h_flat, o, oe, tol, left_e, right_e,
                             part="Hessian vs derivative of the gradient")
    checks = [R.ProbeCheck("gradient's Jacobian is (block-)diagonal: each sample's gradient "
                           "depends on its own prediction only", sep_worst, separable,
                           "random ± moves of every prediction at once")]
    failing = failing_mask(labels)
    evidence = Evidence(h_flat, h_flat, o, tol, element_names(_View), left_e, right_e,
                        diagnoses=diagnose(h_flat, o, tol, failing, _View, x.reshape(-1)))
    verdict, blame, ok, notes = _verdict(labels, True, "Hessian", checks, evidence=evidence)
    if not separable:
        ok, blame = False, "hand-derived"
        verdict = (f"the objective's gradient is not per-sample: moving all predictions at "
                   f"once changes it by {sep_worst:.3g} × tolerance more than the per-sample "
                   f"derivatives predict (a batch-coupled gradient, or a Hessian that is not "
                   f"its derivative); " + verdict)
    negative = int(np.sum(h_flat < 0))
    if negative:
        notes.append(f"the Hessian is negative at {negative} of {h_flat.size} predictions: "
                     f"XGBoost and LightGBM take Newton steps -G/H and need H > 0 "
                     + ("(CatBoost's der2 is the negated Hessian: is the convention right?)"
                        if convention == "catboost" else "(clip it, as their built-in "
                                                         "objectives do)"))
    notes.append("no loss given: the Hessian is audited as the derivative of the objective's "
                 "own gradient (the gradient itself cannot be checked without the loss)")
    return R.AuditReport(name, "objective Hessian", "exhaustive", h_flat.size,
                         str(p.dtype), "Richardson differences of the objective's gradient",
                         kappa, verdict, blame, ok,
                         f"every prediction's Hessian checked; tolerance median "
                         f"{np.median(tol):.2g}", _counts(labels), worst, kinks, checks,
                         rtol=rtol, atol=atol, worst_relative=worst_relative(h_flat, o, labels),
                         diagnoses=evidence.diagnoses, notes=notes)
