"""Gradient-boosting objectives, both ways: lj.audit.check_objective audits a per-sample
(grad, hess) callable in each framework's calling and sign convention, with and without the
loss; lj.objective exports catalogue losses as objectives that train XGBoost and LightGBM to
the same models as their built-in objectives."""
import numpy as np
import pytest

import lossjax as lj
from lossjax import audit
from lossjax.audit import _report as R

RNG = np.random.default_rng(0)
N = 40
MARGINS = RNG.normal(size=N)
BINARY = (RNG.random(N) < 0.4).astype(np.float64)
WEIGHTS = RNG.uniform(0.5, 2.0, N)
K = 3
SCORES = RNG.normal(size=(N, K))
CLASSES = RNG.integers(0, K, N)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# the same logistic objective written in each framework's convention (NumPy, as users do)
def logistic_xgboost(preds, dtrain):
    p, y = sigmoid(preds), dtrain.get_label()
    w = dtrain.get_weight()
    w = w if len(w) else np.ones_like(p)
    return w * (p - y), w * p * (1 - p)


def logistic_lightgbm(preds, train_data):
    p, y = sigmoid(preds), train_data.get_label()
    w = train_data.get_weight()
    w = np.ones_like(p) if w is None else w
    return w * (p - y), w * p * (1 - p)


def logistic_sklearn(y_true, y_pred):
    p = sigmoid(y_pred)
    return p - y_true, p * (1 - p)


def logistic_plain(predictions, labels):
    p = sigmoid(predictions)
    return p - labels, p * (1 - p)


class LogisticCatBoost:
    """CatBoost's convention: derivatives of the log-likelihood (the loss's, negated)."""

    def calc_ders_range(self, approxes, targets, weights):
        out = []
        for i, (a, t) in enumerate(zip(approxes, targets)):
            p = sigmoid(a)
            w = 1.0 if weights is None else weights[i]
            out.append((w * (t - p), -w * p * (1 - p)))
        return out


class LogisticCatBoostUnnegated(LogisticCatBoost):
    def calc_ders_range(self, approxes, targets, weights):
        return [(-d1, -d2) for d1, d2 in super().calc_ders_range(approxes, targets, weights)]


CONVENTIONS = {"xgboost": logistic_xgboost, "lightgbm": logistic_lightgbm,
               "sklearn": logistic_sklearn, "plain": logistic_plain,
               "catboost": LogisticCatBoost()}


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_a_right_objective_passes_in_every_convention(convention):
    obj = CONVENTIONS[convention]
    with_loss = audit.check_objective(obj, MARGINS, BINARY, convention=convention,
                                      loss=lj.binary_cross_entropy_with_logits)
    assert with_loss.ok, with_loss.verdict
    assert [p.part for p in with_loss.parts] == ["gradient", "Hessian diagonal"]
    alone = audit.check_objective(obj, MARGINS, BINARY, convention=convention)
    assert alone.ok, alone.verdict
    assert alone.probes[0].ok and "no loss given" in alone.notes[-1]
    if convention in ("xgboost", "lightgbm", "catboost"):
        weighted = audit.check_objective(obj, MARGINS, BINARY, convention=convention,
                                         weights=WEIGHTS,
                                         loss=lj.binary_cross_entropy_with_logits)
        assert weighted.ok, weighted.verdict
        assert "with sample weights" in weighted.notes[-1]


def test_catboost_sign_convention_mistakes_are_caught():
    obj = LogisticCatBoostUnnegated()
    r = audit.check_objective(obj, MARGINS, BINARY, convention="catboost",
                              loss=lj.binary_cross_entropy_with_logits)
    assert not r.ok and "sign flip" in r.verdict and "Hessian diagonal" in r.verdict
    alone = audit.check_objective(obj, MARGINS, BINARY, convention="catboost")
    assert any("is negative at 40 of 40" in n and "CatBoost's der2" in n for n in alone.notes)


def test_a_wrong_hessian_is_found_with_and_without_the_loss():
    def hess_off(preds, dtrain):           # a Hessian scaled by exp(0.7), a max_delta_step kept
        g, _ = logistic_plain(preds, dtrain.get_label())
        return g, sigmoid(preds) * (1 - sigmoid(preds)) * np.exp(0.7)
    r = audit.check_objective(hess_off, MARGINS, BINARY,
                              loss=lj.binary_cross_entropy_with_logits)
    assert not r.ok and r.parts[0].ok and not r.parts[1].ok
    assert "constant ratio 2.01375" in r.verdict
    alone = audit.check_objective(hess_off, MARGINS, BINARY)
    assert not alone.ok and alone.blame == "hand-derived"
    assert "constant ratio 2.01375" in alone.verdict
    assert alone.counts[R.HAND_WRONG] == N


def test_a_batch_coupled_gradient_is_not_per_sample():
    def normalised(preds, labels):                # divides by the batch's mean probability
        p = sigmoid(preds)
        return (p - labels) / p.mean(), p * (1 - p) / p.mean()
    r = audit.check_objective(normalised, MARGINS, BINARY, convention="plain")
    assert not r.ok and not r.probes[0].ok
    assert r.verdict.startswith("the objective's gradient is not per-sample")


def test_an_objective_with_a_kink_passes_with_the_kink_classified():
    def mae(preds, labels):
        return np.sign(preds - labels), np.zeros_like(preds)
    at = MARGINS.copy()
    at[:3] = BINARY[:3]                                  # exactly on the kink
    r = audit.check_objective(mae, at, BINARY, convention="plain")
    assert r.ok, r.verdict
    assert r.counts.get(R.KINK, 0) >= 3
    assert audit.check_objective(mae, at, BINARY, convention="plain", loss=lj.mae).ok


def softmax_xgboost(preds, dtrain, factor=1.0, flat=False):
    y = dtrain.get_label().astype(int)
    p = softmax(preds)
    g = p - np.eye(preds.shape[1])[y]
    h = factor * p * (1 - p)
    return (g.ravel(), h.ravel()) if flat else (g, h)


def softmax_lightgbm_flat(preds, train_data):
    y = train_data.get_label().astype(int)
    p = softmax(preds)
    g, h = p - np.eye(preds.shape[1])[y], p * (1 - p)
    return g.T.ravel(), h.T.ravel()                       # LightGBM's class-major 1-D layout


def test_multiclass_layouts():
    for obj, convention in ((softmax_xgboost, "xgboost"),
                            (lambda p, d: softmax_xgboost(p, d, flat=True), "xgboost"),
                            (softmax_lightgbm_flat, "lightgbm")):
        r = audit.check_objective(obj, SCORES, CLASSES, convention=convention,
                                  loss=lj.cross_entropy)
        assert r.ok, (convention, r.verdict)
        assert audit.check_objective(obj, SCORES, CLASSES, convention=convention).ok
    # XGBoost's own softprob doubles the Hessian: against the loss that is "a factor 2"
    doubled = audit.check_objective(lambda p, d: softmax_xgboost(p, d, factor=2.0), SCORES,
                                    CLASSES, loss=lj.cross_entropy)
    assert not doubled.ok and "a factor 2" in doubled.verdict
    with pytest.raises(ValueError, match="objective's gradient has shape"):
        audit.check_objective(lambda p, d: (p[:, 0], p[:, 0]), SCORES, CLASSES)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="convention must be one of"):
        audit.check_objective(logistic_plain, MARGINS, BINARY, convention="keras")
    with pytest.raises(ValueError, match="labels must have shape \\(40,\\)"):
        audit.check_objective(logistic_plain, MARGINS, BINARY[:5], convention="plain")
    with pytest.raises(ValueError, match="weights must have shape \\(40,\\)"):
        audit.check_objective(logistic_xgboost, MARGINS, BINARY, weights=WEIGHTS[:3])
    with pytest.raises(ValueError, match="ctc has no hand-derived gradient"):
        lj.objective(lj.ctc)
    with pytest.raises(ValueError, match="framework must be one of"):
        lj.objective(lj.mse, "keras")


# -- exported objectives -----------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["xgboost", "lightgbm", "sklearn", "catboost", "plain"])
@pytest.mark.parametrize("name, hyper, labels", [
    ("binary_cross_entropy_with_logits", {}, BINARY),
    ("huber", {"delta": 0.5}, RNG.normal(size=N)),
    ("poisson_nll", {}, RNG.poisson(2.0, N).astype(np.float64)),
])
def test_exported_objectives_audit_clean_against_their_loss(framework, name, hyper, labels):
    loss = lj.get(name)
    obj = lj.objective(loss, framework, **hyper)
    weights = None if framework in ("sklearn", "plain") else WEIGHTS
    r = audit.check_objective(obj, MARGINS, labels, convention=framework, loss=loss,
                              weights=weights, **hyper)
    assert r.ok, r.verdict
    g, h = (obj(labels, MARGINS) if framework == "sklearn" else
            obj(MARGINS, labels) if framework == "plain" else (None, None))
    if g is not None:       # NumPy in, NumPy out, the loss's own derivatives
        assert isinstance(g, np.ndarray) and g.dtype == np.float64
        np.testing.assert_allclose(g, loss.grad(MARGINS, labels, reduction="sum", **hyper),
                                   rtol=1e-12)
        np.testing.assert_allclose(h, loss.hess_diag(MARGINS, labels, reduction="sum",
                                                     **hyper), rtol=1e-12)


def test_exported_multiclass_objective():
    obj = lj.objective(lj.cross_entropy, "xgboost")
    r = audit.check_objective(obj, SCORES, CLASSES, loss=lj.cross_entropy)
    assert r.ok, r.verdict
    catboost = lj.objective(lj.cross_entropy, "catboost")
    der1, der2 = catboost.calc_ders_multi(list(SCORES[0]), float(CLASSES[0]), 1.0)
    p = softmax(SCORES[:1])[0]
    np.testing.assert_allclose(der1, np.eye(K)[CLASSES[0]] - p, rtol=1e-12)
    np.testing.assert_allclose(np.diag(der2), -p * (1 - p), rtol=1e-12)


# -- training with exported objectives ---------------------------------------------------------

def _regression_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    signal = x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3]
    return x, {
        "logistic": (rng.random(300) < sigmoid(2 * signal)).astype(np.float64),
        "squared": signal + 0.3 * rng.normal(size=300),
        "poisson": rng.poisson(np.exp(0.5 * signal)).astype(np.float64)}


# (built-in objective, catalogue loss, extra parameters that make the built-in's Newton steps
# the plain ones: XGBoost's and LightGBM's squared error is r^2 / 2 where ours is r^2, so the
# L2 penalty that would not scale with it is off; their Poisson Hessians carry exp(0.7))
XGB_CASES = {"logistic": ("binary:logistic", "binary_cross_entropy_with_logits", {}),
             "squared": ("reg:squarederror", "mse", {"lambda": 0.0}),
             "poisson": ("count:poisson", "poisson_nll", {"max_delta_step": 0.0})}
LGB_CASES = {"logistic": ("binary", "binary_cross_entropy_with_logits", {}),
             "squared": ("regression", "mse", {}),
             "poisson": ("poisson", "poisson_nll", {"poisson_max_delta_step": 1e-12})}  # > 0


@pytest.mark.parametrize("case", list(XGB_CASES))
def test_xgboost_trains_the_same_model_with_the_exported_objective(case):
    xgb = pytest.importorskip("xgboost")
    x, labels = _regression_data()
    y = labels[case]
    builtin, name, extra = XGB_CASES[case]
    params = {"max_depth": 3, "eta": 0.3, "min_child_weight": 0.0, "tree_method": "exact",
              "nthread": 1, **extra}
    margin = np.zeros(len(y))

    def train(**kw):
        data = xgb.DMatrix(x, label=y, base_margin=margin)
        booster = xgb.train(params | kw.pop("params", {}), data, num_boost_round=12, **kw)
        return booster.predict(xgb.DMatrix(x, base_margin=margin), output_margin=True)
    ours = train(obj=lj.objective(lj.get(name), "xgboost"))
    theirs = train(params={"objective": builtin})
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.std(ours) > 0.1                                    # it learned something


@pytest.mark.parametrize("case", list(LGB_CASES))
def test_lightgbm_trains_the_same_model_with_the_exported_objective(case):
    lgb = pytest.importorskip("lightgbm")
    x, labels = _regression_data()
    y = labels[case]
    builtin, name, extra = LGB_CASES[case]
    params = {"num_leaves": 7, "learning_rate": 0.3, "min_data_in_leaf": 5, "verbose": -1,
              "num_threads": 1, "deterministic": True, "boost_from_average": False, **extra}

    def train(objective):
        booster = lgb.train(params | {"objective": objective}, lgb.Dataset(x, label=y),
                            num_boost_round=12)
        return booster.predict(x, raw_score=True)
    ours = train(lj.objective(lj.get(name), "lightgbm"))
    theirs = train(builtin)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.std(ours) > 0.1


def test_exported_multiclass_objective_trains_both_frameworks():
    """(n, k) margins in, (n, k) gradients out: both frameworks' multi-class layouts."""
    xgb, lgb = pytest.importorskip("xgboost"), pytest.importorskip("lightgbm")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(300, 3)), axis=1)
    majority = np.bincount(y).max() / len(y)
    data = xgb.DMatrix(x, label=y)
    booster = xgb.train({"num_class": 3, "max_depth": 3, "eta": 0.3, "nthread": 1,
                         "disable_default_eval_metric": 1}, data, 12,
                        obj=lj.objective(lj.cross_entropy))
    margins = booster.predict(data, output_margin=True)
    assert margins.shape == (300, 3) and (margins.argmax(1) == y).mean() > majority + 0.3
    model = lgb.train({"objective": lj.objective(lj.cross_entropy, "lightgbm"), "num_class": 3,
                       "verbose": -1, "num_threads": 1, "num_leaves": 7},
                      lgb.Dataset(x, label=y), 12)
    margins = model.predict(x, raw_score=True)
    assert margins.shape == (300, 3) and (margins.argmax(1) == y).mean() > majority + 0.3
