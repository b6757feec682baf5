"""Robust regression: parameter error vs outlier fraction for MSE, MAE, Huber, log-cosh and
Barron's adaptive robust loss.

Linear regression data with one-sided gross outliers (lj.data.linear_regression); each loss
fits a linear model by Adam with a cosine schedule, all outlier fractions and seeds of one
loss in a single fit_many call (the data sets ride along as per-run loss arguments). Means and
95% t intervals over ``config.seeds`` data sets; comparisons are paired (every loss sees the
same data sets). Smooth L1 with β = 1 is Huber with δ = 1 exactly, so one curve stands for both.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table, stats

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
    seeds = config.seeds
    n, d = config.pick(200, 1000), 3
    steps = config.pick(600, 2000)
    keys = config.keys()
    sets = [lj.data.linear_regression(k, n, d, noise=0.1, outlier_fraction=f, outlier_scale=10.0)
            for f in FRACTIONS for k in keys]
    x = jnp.stack([s.data["x"] for s in sets])
    y = jnp.stack([s.data["y"] for s in sets])
    truth = np.stack([np.r_[np.asarray(s.truth["weight"]), float(s.truth["bias"])]
                      for s in sets])
    p0 = {"w": jnp.zeros(d), "b": jnp.zeros(())}
    opt = functools.partial(lj.optim.make, "adam", schedule="cosine", decay_steps=steps)
    errors = {}
    for name, loss in LOSSES.items():
        sweep = lj.train.fit_many(functools.partial(_objective, loss), p0, None, opt, steps,
                                  hparams={"learning_rate": jnp.full(len(sets), 0.1)},
                                  loss_hparams={"x": x, "y": y})
        est = np.concatenate([np.asarray(sweep.params["w"]),
                              np.asarray(sweep.params["b"])[:, None]], axis=1)
        err = np.linalg.norm(est - truth, axis=1) / np.linalg.norm(truth, axis=1)
        errors[name] = err.reshape(len(FRACTIONS), seeds)
    iv = {name: [stats.interval(row) for row in e] for name, e in errors.items()}
    fig, ax, save = figure(config, "parameter_error.png",
                           f"Parameter error vs outlier fraction (mean, 95% interval, "
                           f"{seeds} seeds)",
                           "outlier fraction", "relative parameter error ‖θ̂ − θ‖ / ‖θ‖",
                           size=(7, 4.5))
    for k, name in enumerate(LOSSES):
        stats.errorbar(ax, np.asarray(FRACTIONS) + (k - 2) * 0.004, iv[name], marker="os^vD"[k],
                       label=name)
    ax.set_yscale("log")
    # an interval reaching 0 runs off the bottom of the log axis
    ax.set_ylim(bottom=0.3 * min(i.mean for row in iv.values() for i in row))
    figures = [save()]
    i20 = FRACTIONS.index(0.2)
    at20 = {name: errors[name][i20] for name in LOSSES}
    mean20 = {name: iv[name][i20].mean for name in LOSSES}
    checks = [stats.claim(f"{name} beats MSE at 20% outliers",
                          stats.difference(at20[name], at20["mse"]), "less")
              for name in LOSSES if name != "mse"]
    checks.append(stats.claim("MAE beats Huber at 20% outliers (Huber sits between)",
                              stats.difference(at20["mae"], at20["huber (δ=1)"]), "less"))
    verdict, sentences = stats.decide(checks)
    clean = {name: iv[name][0].mean for name in LOSSES}
    rows = [[name] + [i.fmt() for i in iv[name]] for name in LOSSES]
    return Result(
        name="robust_regression", title="Robust regression",
        claim="MSE is sensitive to outliers; MAE is robust; Huber and smooth L1 sit between.",
        verdict=verdict,
        summary=(f"at 20% one-sided outliers the relative parameter error is "
                 f"{iv['mse'][i20].fmt()} for MSE against "
                 + ", ".join(f"{iv[k][i20].fmt()} for {k}" for k in LOSSES if k != "mse")
                 + f" (mean and 95% t interval over {seeds} seeds, n = {n}); without outliers "
                 f"the means are within {min(clean.values()):.3f}–{max(clean.values()):.3f}. "
                 f"MSE's error grows with the outlier mass; Huber and log-cosh, whose gradients "
                 f"are bounded, sit between (each outlier still pulls with force 1); MAE and "
                 f"the redescending adaptive loss (α = 0) stay near the clean error. "
                 + "; ".join(sentences) + f" — {stats.robustness(checks)}."),
        key_number=f"20% outliers: MSE {iv['mse'][i20].fmt()} vs Huber "
                   f"{iv['huber (δ=1)'][i20].fmt()}",
        metrics={"fractions": FRACTIONS, "error": iv, "at_20pct": mean20, "checks": checks,
                 "seeds": seeds, "n": n, "steps": steps},
        tables=[markdown_table(["loss"] + [f"{int(100 * f)}% outliers" for f in FRACTIONS],
                               rows)],
        figures=figures)
