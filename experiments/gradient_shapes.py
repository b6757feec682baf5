"""The shape of each loss's derivative w.r.t. the prediction: what the texts say about it.

Regression: MSE's gradient grows linearly with the error, MAE's is ±1, Huber / smooth L1 sit
between (linear near 0, bounded beyond δ), log-cosh is tanh. Classification: binary CE's
derivative w.r.t. the probability is -t/y + (1-t)/(1-y) (unbounded), w.r.t. the logit σ(z) - t
(bounded); focal loss multiplies CE by (1 - p_t)^γ, which down-weights easy examples.
All curves use the hand-derived ``.grad`` and are checked against jax.grad and the stated
formulas.
"""
import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
# smooth_l1 with β = 1 is huber with δ = 1 exactly: a wide solid line under a dashed one
# keeps both visible
STYLE = {"huber (δ=1)": {"lw": 4, "alpha": 0.6}, "smooth_l1 (β=1)": {"ls": "--"}}
LABEL = {"smooth_l1 (β=1)": "smooth_l1 (β=1), equal to huber (δ=1)"}


def _elementwise_grad(loss, pred, target, **kw):
    """d loss_i / d pred_i: the gradient of the summed loss (elementwise losses)."""
    return np.asarray(loss.grad(pred, target, reduction="sum", **kw)), np.asarray(
        jax.grad(lambda p: loss(p, target, reduction="sum", **kw))(pred))


def run(config):
    n = config.pick(401, 2001)
    r = jnp.linspace(-5.0, 5.0, n)
    zero = jnp.zeros(n)
    regression = {"mse": (lj.mse, {}), "mae": (lj.mae, {}), "huber (δ=1)": (lj.huber, {"delta": 1.0}),
                  "smooth_l1 (β=1)": (lj.smooth_l1, {"beta": 1.0}), "log_cosh": (lj.log_cosh, {})}
    stated = {"mse": 2 * r, "mae": jnp.sign(r), "huber (δ=1)": jnp.clip(r, -1, 1),
              "smooth_l1 (β=1)": jnp.clip(r, -1, 1), "log_cosh": jnp.tanh(r)}
    rows, worst_autodiff, worst_stated = [], 0.0, 0.0
    fig, axes, save = figure(config, "regression_gradients.png",
                             "Derivative of regression losses w.r.t. the prediction "
                             "(smooth_l1 with β = 1 coincides with huber with δ = 1)",
                             "residual (prediction − target)", "dℓ/dprediction", ncols=2)
    for name, (loss, kw) in regression.items():
        hand, auto = _elementwise_grad(loss, r, zero, **kw)
        ref = np.asarray(stated[name])
        off_kink = np.abs(np.asarray(r)) > 1e-6
        err_auto = float(np.max(np.abs(hand - auto)))
        err_stated = float(np.max(np.abs(hand - ref)[off_kink]))
        worst_autodiff, worst_stated = max(worst_autodiff, err_auto), max(worst_stated,
                                                                          err_stated)
        at = {v: float(hand[np.argmin(np.abs(np.asarray(r) - v))]) for v in (0.5, 1.0, 5.0)}
        rows.append([name, at[0.5], at[1.0], at[5.0], at[5.0] / at[1.0], err_stated, err_auto])
        for ax in axes:
            ax.plot(r, hand, **STYLE.get(name, {}), label=LABEL.get(name, name))
    axes[1].set_ylim(-1.5, 1.5)
    axes[1].set_title("zoom: the bounded ones")
    figures = [save()]
    mse_growth = rows[0][4]                               # g(5)/g(1) for MSE: 5 if linear
    bounded = all(abs(row[3]) <= 1.0 + 1e-6 for row in rows[1:])

    # binary cross-entropy: w.r.t. the probability and w.r.t. the logit, target t = 1
    p = jnp.linspace(1e-3, 1 - 1e-3, n)
    t1 = jnp.ones(n)
    g_prob, _ = _elementwise_grad(lj.binary_cross_entropy, p, t1)
    z = jnp.linspace(-8.0, 8.0, n)
    g_logit, _ = _elementwise_grad(lj.binary_cross_entropy_with_logits, z, t1)
    err_prob = float(np.max(np.abs(g_prob - np.asarray(-1 / p))))
    err_logit = float(np.max(np.abs(g_logit - np.asarray(jax.nn.sigmoid(z) - 1))))
    fig, axes, save = figure(config, "bce_gradients.png",
                             "Binary cross-entropy gradient, target t = 1", "", "dℓ/d·", ncols=2)
    axes[0].semilogy(p, np.abs(g_prob), label="|dℓ/dy| = 1/y")
    axes[0].set_xlabel("predicted probability y")
    axes[1].plot(z, g_logit, label="dℓ/dz = σ(z) − 1")
    axes[1].set_xlabel("logit z")
    figures.append(save())

    # focal loss: modulating weight and gradient vs p_t, and γ = 0 is cross-entropy
    zt = jnp.linspace(-4.0, 6.0, n)
    pt = jax.nn.sigmoid(zt)
    ce = np.asarray(lj.binary_cross_entropy_with_logits(zt, t1, reduction="none"))
    focal_rows = []
    fig, axes, save = figure(config, "focal.png", "Focal loss: weight and gradient vs p_t",
                             "p_t (probability of the true class)", "", ncols=2)
    for g in GAMMAS:
        fl = np.asarray(lj.focal_loss(zt, t1, gamma=g, reduction="none"))
        weight = np.where(ce > 0, fl / np.maximum(ce, 1e-30), 1.0)
        grad, _ = _elementwise_grad(lj.focal_loss, zt, t1, gamma=g)
        i9 = int(np.argmin(np.abs(np.asarray(pt) - 0.9)))
        i1 = int(np.argmin(np.abs(np.asarray(pt) - 0.1)))
        focal_rows.append([g, float(weight[i9]), float((1 - pt[i9]) ** g),
                           float(abs(grad[i9]) / abs(grad[i1]))])
        axes[0].plot(pt, weight, label=f"γ = {g}")
        axes[1].semilogy(pt, np.abs(grad), label=f"γ = {g}")
    axes[0].set_ylabel("focal / CE = (1 − p_t)^γ")
    axes[1].set_ylabel("|dℓ/dz|")
    figures.append(save())
    gamma0 = float(np.max(np.abs(np.asarray(lj.focal_loss(zt, t1, gamma=0.0, reduction="none"))
                                 - ce)))
    weight_err = max(abs(row[1] - row[2]) for row in focal_rows)
    easy_ratio = {row[0]: row[3] for row in focal_rows}

    holds = (abs(mse_growth - 5) < 1e-3 and bounded and worst_stated < 1e-4
             and err_prob < 1e-2 and err_logit < 1e-5 and gamma0 < 1e-6 and weight_err < 1e-3
             and easy_ratio[2.0] < easy_ratio[0.0])
    tables = [
        markdown_table(["loss", "g(0.5)", "g(1)", "g(5)", "g(5)/g(1)", "max |g − stated|",
                        "max |g − jax.grad|"], rows),
        markdown_table(["γ", "weight at p_t = 0.9", "(1 − 0.9)^γ",
                        "|grad| at p_t = 0.9 / at p_t = 0.1"], focal_rows)]
    return Result(
        name="gradient_shapes", title="Gradient shapes",
        claim="MSE's gradient grows linearly with the error, MAE's is constant ±1, Huber and "
              "smooth L1 sit between; BCE's gradient w.r.t. the probability is −t/y + "
              "(1−t)/(1−y) and w.r.t. the logit σ(z) − t; focal loss down-weights easy "
              "examples by (1 − p_t)^γ and γ = 0 recovers CE.",
        verdict="holds" if holds else "does not hold",
        summary=(f"MSE's derivative at residual 5 is {mse_growth:.4f}× its value at 1 "
                 f"(linear: 5); MAE, Huber, smooth L1 and log-cosh stay within ±1 (at residual "
                 f"5: {', '.join(f'{row[0]} {row[3]:.3f}' for row in rows[1:])}); every curve "
                 f"matches its stated formula to {worst_stated:.1e} and jax.grad to "
                 f"{worst_autodiff:.1e}. BCE w.r.t. the probability is −1/y (reaching "
                 f"{float(np.max(np.abs(g_prob))):.0f} at y = 1e-3, error {err_prob:.1e}); "
                 f"w.r.t. the logit σ(z) − 1, bounded by 1 (error {err_logit:.1e}). Focal with "
                 f"γ = 0 equals CE to {gamma0:.1e}; the easy/hard gradient ratio (p_t = 0.9 vs "
                 f"0.1) falls from {easy_ratio[0.0]:.3f} at γ = 0 to {easy_ratio[2.0]:.2e} at "
                 f"γ = 2 and {easy_ratio[5.0]:.1e} at γ = 5."),
        key_number=f"MSE g(5)/g(1) = {mse_growth:.3f}; focal easy/hard ratio γ=2: "
                   f"{easy_ratio[2.0]:.1e}",
        metrics={"regression": {row[0]: {"g(0.5)": row[1], "g(1)": row[2], "g(5)": row[3],
                                         "stated_error": row[5], "autodiff_error": row[6]}
                                for row in rows},
                 "mse_growth_5_over_1": mse_growth, "bounded": bounded,
                 "bce_probability_error": err_prob, "bce_logit_error": err_logit,
                 "focal_gamma0_vs_ce": gamma0, "focal_weight_error": weight_err,
                 "focal_easy_over_hard": easy_ratio},
        tables=tables, figures=figures)
