"""Robust regression: parameter error vs outlier fraction for MSE, MAE, Huber, log-cosh and
Barron's adaptive robust loss.

Linear regression data with one-sided gross outliers (lj.data.linear_regression); each loss
fits a linear model by Adam with a cosine schedule, all outlier fractions and seeds of one
loss in a single fit_many call (the data sets ride along as per-run loss arguments).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4)
LOSSES = {
    "mse": functools.partial(lj.mse),
    "mae": functools.partial(lj.mae),
    "huber (δ=1)": functools.partial(lj.huber, delta=1.0),
    "log_cosh": functools.partial(lj.log_cosh),
    "adaptive_robust (α=0, c=0.5)": functools.partial(lj.adaptive_robust, alpha=0.0, scale=0.5),
}


def _objective(loss, params, *, x, y):
    return loss(x @ params["w"] + params["b"], y)


def run(config):
    seeds = config.pick(3, 10)
    n, d = config.pick(200, 1000), 3
    steps = config.pick(600, 2000)
    keys = jax.random.split(jax.random.PRNGKey(config.seed), seeds)
    sets = [lj.data.linear_regression(k, n, d, noise=0.1, outlier_fraction=f, outlier_scale=10.0)
            for f in FRACTIONS for k in keys]
    x = jnp.stack([s.data["x"] for s in sets])
    y = jnp.stack([s.data["y"] for s in sets])
    truth = np.stack([np.r_[np.asarray(s.truth["weight"]), float(s.truth["bias"])]
                      for s in sets])
    p0 = {"w": jnp.zeros(d), "b": jnp.zeros(())}
    opt = functools.partial(lj.optim.make, "adam", schedule="cosine", decay_steps=steps)
    errors, curves = {}, {}
    for name, loss in LOSSES.items():
        sweep = lj.train.fit_many(functools.partial(_objective, loss), p0, None, opt, steps,
                                  hparams={"learning_rate": jnp.full(len(sets), 0.1)},
                                  loss_hparams={"x": x, "y": y})
        est = np.concatenate([np.asarray(sweep.params["w"]),
                              np.asarray(sweep.params["b"])[:, None]], axis=1)
        err = np.linalg.norm(est - truth, axis=1) / np.linalg.norm(truth, axis=1)
        errors[name] = err.reshape(len(FRACTIONS), seeds)
        curves[name] = (errors[name].mean(axis=1), errors[name].std(axis=1))
    fig, ax, save = figure(config, "parameter_error.png",
                           "Parameter error vs fraction of gross outliers",
                           "outlier fraction", "relative parameter error ‖θ̂ − θ‖ / ‖θ‖")
    for name, (mean, std) in curves.items():
        ax.errorbar(FRACTIONS, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.set_yscale("log")
    figures = [save()]
    i20 = FRACTIONS.index(0.2)
    mean20 = {name: float(curves[name][0][i20]) for name in LOSSES}
    huber_beats_mse = mean20["huber (δ=1)"] < mean20["mse"]
    between = mean20["mae"] < mean20["huber (δ=1)"] < mean20["mse"]
    robust_beat_mse = all(mean20[k] < mean20["mse"] for k in LOSSES if k != "mse")
    clean = {name: float(curves[name][0][0]) for name in LOSSES}
    rows = [[name] + [float(v) for v in curves[name][0]] for name in LOSSES]
    return Result(
        name="robust_regression", title="Robust regression",
        claim="MSE is sensitive to outliers; MAE is robust; Huber and smooth L1 sit between.",
        verdict="holds" if huber_beats_mse and robust_beat_mse and between else "does not hold",
        summary=(f"at 20% one-sided outliers the relative parameter error is "
                 f"{mean20['mse']:.3f} for MSE against "
                 + ", ".join(f"{mean20[k]:.3f} for {k}" for k in LOSSES if k != "mse")
                 + f" (mean of {seeds} seeds, n = {n}); without outliers all are within "
                 f"{min(clean.values()):.3f}–{max(clean.values()):.3f}. MSE's error grows "
                 f"linearly with the outlier mass; Huber and log-cosh, whose gradients are "
                 f"bounded, sit between (each outlier still pulls with force 1); MAE and the "
                 f"redescending adaptive loss (α = 0) stay near the clean error "
                 f"({'between' if between else 'NOT between'} holds at 20%)."),
        key_number=f"20% outliers: MSE {mean20['mse']:.3f} vs Huber "
                   f"{mean20['huber (δ=1)']:.3f}",
        metrics={"fractions": FRACTIONS, "mean_error": {k: v[0] for k, v in curves.items()},
                 "std_error": {k: v[1] for k, v in curves.items()}, "at_20pct": mean20,
                 "seeds": seeds, "n": n, "steps": steps,
                 "mae_huber_mse_ordered": between},
        tables=[markdown_table(["loss"] + [f"{int(100 * f)}% outliers" for f in FRACTIONS],
                               rows, fmt="{:.3f}")],
        figures=figures)
