"""Multi-task losses as weighted sums: fixed weights vs uncertainty weighting.

Two regression tasks share a hidden layer: task A has unit-scale targets, task B the same
kind of targets scaled by 100 (its MSE is 10⁴× larger). Compared: equal fixed weights, a sweep
of fixed weights w_A (in one fit_many call), and uncertainty weighting (Kendall, Gal & Cipolla
2018) with learnable log-variances. Measured: each task's held-out MSE relative to its target
variance, and the worse of the two.
"""
import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table

SCALE_B = 100.0


def _data(key, n):
    kx, ka, kb, kn = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, 4))
    wa = jax.random.normal(ka, (4,))
    wb = jax.random.normal(kb, (4,))
    noise = 0.1 * jax.random.normal(kn, (n, 2))
    ya = jnp.sin(x @ wa) + noise[:, 0]
    yb = SCALE_B * (jnp.tanh(x @ wb) + noise[:, 1])
    return {"x": x, "ya": ya, "yb": yb}


def _init(key, width=16):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (4, width)) / 2, "b1": jnp.zeros(width),
            "w2": jax.random.normal(k2, (width, 2)) / np.sqrt(width), "b2": jnp.zeros(2),
            "log_vars": jnp.zeros(2)}


def _heads(p, x):
    out = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return out[:, 0], out[:, 1]


def _task_losses(p, batch):
    a, b = _heads(p, batch["x"])
    return jnp.stack([lj.mse(a, batch["ya"]), lj.mse(b, batch["yb"])])


def _fixed(p, batch, w_a):
    losses = _task_losses(p, batch)
    return w_a * losses[0] + (1.0 - w_a) * losses[1]


def _uncertainty(p, batch):
    return lj.uncertainty_weighting(_task_losses(p, batch), p["log_vars"], reduction="sum")


def _relative_errors(p, test):
    a, b = _heads(p, test["x"])
    return (float(jnp.mean((a - test["ya"]) ** 2) / jnp.var(test["ya"])),
            float(jnp.mean((b - test["yb"]) ** 2) / jnp.var(test["yb"])))


def run(config):
    key = jax.random.PRNGKey(config.seed)
    k_data, k_init = jax.random.split(key)
    n = config.pick(512, 4096)
    steps = config.pick(1500, 5000)
    data = _data(k_data, n + 2048)
    train = {k: v[:n] for k, v in data.items()}
    test = {k: v[n:] for k, v in data.items()}
    p0 = _init(k_init)
    tx = lj.optim.make("adam", learning_rate=0.01, schedule="cosine", decay_steps=steps)
    weights = np.unique(np.concatenate([[0.5], 1 - np.logspace(-5, np.log10(0.5), config.pick(
        12, 25))]))
    sweep = lj.train.fit_many(_fixed, p0, train, tx, steps,
                              loss_hparams={"w_a": jnp.asarray(weights, jnp.float32)})
    fixed = [_relative_errors(sweep.run(i).params, test) for i in range(len(weights))]
    # start each log-variance at its optimum for the initial losses, s = log(2c·L(θ0)):
    # from 0 Adam would need thousands of steps to walk s_B up to log(10⁴)
    p0_unc = {**p0, "log_vars": jnp.log(_task_losses(p0, train))}
    unc = lj.train.fit(_uncertainty, p0_unc, train, tx, steps)
    unc_err = _relative_errors(unc.params, test)
    learned = np.exp(np.asarray(unc.params["log_vars"], np.float64))
    i_equal = int(np.argmin(np.abs(weights - 0.5)))
    worst = [max(e) for e in fixed]
    i_best = int(np.argmin(worst))
    equal_err, best_err = fixed[i_equal], fixed[i_best]
    # the relative weight uncertainty weighting settles at: w_A / w_B = σ_B² / σ_A²
    implied_w_a = learned[1] / (learned[0] + learned[1])

    fig, ax, save = figure(config, "weights.png",
                           "Held-out error per task vs fixed weight w_A (w_B = 1 − w_A)",
                           "fixed weight of task A, 1 − w_A (log scale)",
                           "MSE / target variance")
    ax.loglog(1 - weights, [e[0] for e in fixed], "o-", ms=3, label="task A (unit scale)")
    ax.loglog(1 - weights, [e[1] for e in fixed], "s-", ms=3, label="task B (scale 100)")
    ax.axhline(unc_err[0], color="C0", ls="--", label="task A, uncertainty weighting")
    ax.axhline(unc_err[1], color="C1", ls="--", label="task B, uncertainty weighting")
    ax.axvline(1 - implied_w_a, color="k", ls=":", label="weight implied by learned σ²")
    figures = [save()]
    unc_worst = max(unc_err)
    within = unc_worst <= 2.0 * worst[i_best]
    beats_equal = unc_worst < max(equal_err)
    rows = [["equal weights (w_A = 0.5)", *equal_err, max(equal_err)],
            [f"best fixed weight (w_A = {weights[i_best]:.6f})", *best_err, worst[i_best]],
            ["uncertainty weighting (learned)", *unc_err, unc_worst]]
    return Result(
        name="multitask", title="Multi-task weighting",
        claim="Multi-task losses are weighted sums of task losses; fixed weights need tuning, "
              "uncertainty weighting learns them.",
        verdict="holds" if within and beats_equal else "depends",
        summary=(f"with task B's targets 100× larger, equal weights leave task A at "
                 f"{equal_err[0]:.3f} of its variance (task B {equal_err[1]:.3f}); the best of "
                 f"{len(weights)} fixed weights (w_A = {weights[i_best]:.5f}) reaches "
                 f"{best_err[0]:.3f} / {best_err[1]:.3f}; uncertainty weighting, untuned, "
                 f"{unc_err[0]:.3f} / {unc_err[1]:.3f}, having learned σ² = "
                 f"{learned[0]:.3g}, {learned[1]:.3g} (implied w_A = {implied_w_a:.5f}). The "
                 f"log-variances start at log L_k(θ0), their optimum for the initial losses: "
                 f"from 0, Adam at this step size lags far behind the 10⁴ ratio of the losses."),
        key_number=f"worse task: equal {max(equal_err):.3f}, best fixed {worst[i_best]:.3f}, "
                   f"uncertainty {unc_worst:.3f}",
        metrics={"weights": weights, "fixed_errors": fixed, "uncertainty_errors": unc_err,
                 "learned_variances": learned, "implied_w_a": implied_w_a,
                 "best_fixed_weight": weights[i_best]},
        tables=[markdown_table(["weighting", "task A MSE / var", "task B MSE / var", "worse"],
                               rows, fmt="{:.4f}")],
        figures=figures)
