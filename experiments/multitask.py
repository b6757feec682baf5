"""Multi-task losses as weighted sums: fixed weights vs uncertainty weighting.

Two regression tasks share a hidden layer: task A has unit-scale targets, task B the same
kind of targets scaled by 100 (its MSE is 10⁴× larger). Compared: equal fixed weights, a sweep
of fixed weights w_A, and uncertainty weighting (Kendall, Gal & Cipolla 2018) with learnable
log-variances, each on ``config.seeds`` seeds (own data and initialisation), all in one
fit_many call. Measured: each task's held-out MSE relative to its target variance, and the
worse of the two, as means with 95% t intervals; the verdict rests on paired differences.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table, stats

SCALE_B = 100.0


def _seed(key, n, width=16):
    """One seed's data set (n examples: x, task A's and task B's targets) and initial
    parameters, carved from a single draw of standard normals (one random-number kernel to
    compile instead of six)."""
    shapes = [(n, 4), (n, 2), (4,), (4,), (4, width), (width, 2)]
    z = jax.random.normal(key, (sum(math.prod(s) for s in shapes),))
    parts = jnp.split(z, np.cumsum([math.prod(s) for s in shapes])[:-1])
    x, noise, wa, wb, w1, w2 = (v.reshape(s) for v, s in zip(parts, shapes))
    data = {"x": x, "ya": jnp.sin(x @ wa) + 0.1 * noise[:, 0],
            "yb": SCALE_B * (jnp.tanh(x @ wb) + 0.1 * noise[:, 1])}
    p0 = {"w1": w1 / 2, "b1": jnp.zeros(width), "w2": w2 / np.sqrt(width), "b2": jnp.zeros(2)}
    return data, p0


def _heads(p, x):
    out = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return out[:, 0], out[:, 1]


def _task_losses(p, batch):
    a, b = _heads(p, batch["x"])
    return jnp.stack([lj.mse(a, batch["ya"]), lj.mse(b, batch["yb"])])


def _weighted(p, *, w_a, learned, **batch):
    """Fixed weights w_A, 1 − w_A, or (``learned`` = 1) uncertainty weighting with the
    learnable log-variances; in a fixed-weight run those get a zero gradient and stay put."""
    losses = _task_losses(p, batch)
    fixed = w_a * losses[0] + (1.0 - w_a) * losses[1]
    uncertainty = lj.uncertainty_weighting(losses, p["log_vars"], reduction="sum")
    return jnp.where(learned > 0, uncertainty, fixed)


def _relative_errors(p, test):
    a, b = _heads(p, test["x"])
    return jnp.stack([jnp.mean((a - test["ya"]) ** 2) / jnp.var(test["ya"]),
                      jnp.mean((b - test["yb"]) ** 2) / jnp.var(test["yb"])])


@functools.partial(jax.jit, static_argnums=(1, 2))
def _per_seed(keys, n, copies):
    """Each seed's training and held-out data and initial parameters, repeated ``copies``
    times along a leading run axis (copy-major, then seed). Each log-variance starts at its
    optimum for the initial losses, s = log(2c·L(θ0)): from 0, Adam would need thousands of
    steps to walk s_B up to log(10⁴)."""
    data, p0 = jax.vmap(lambda k: _seed(k, n + 2048))(keys)
    train = {k: v[:, :n] for k, v in data.items()}
    test = {k: v[:, n:] for k, v in data.items()}
    p0 = {**p0, "log_vars": jnp.log(jax.vmap(_task_losses)(p0, train))}
    return jax.tree_util.tree_map(lambda v: jnp.tile(v, (copies,) + (1,) * (v.ndim - 1)),
                                  (train, test, p0))


_evaluate = jax.jit(jax.vmap(_relative_errors))


def run(config):
    seeds = config.seeds
    n = config.pick(512, 4096)
    steps = config.pick(1500, 5000)
    tx = lj.optim.make("adam", learning_rate=0.01, schedule="cosine", decay_steps=steps)
    weights = np.unique(np.concatenate([[0.5], 1 - np.logspace(-5, np.log10(0.5), config.pick(
        12, 25))]))
    w = len(weights)
    # one fit_many call: runs are the w fixed weights, then uncertainty weighting, each over
    # every seed (its own data and initialisation riding along)
    train, test, p0 = _per_seed(config.keys(), n, w + 1)
    configs = {"w_a": np.r_[weights, 0.5].astype(np.float32),      # (w_A unused when learned)
               "learned": (np.arange(w + 1) == w).astype(np.float32)}
    trained = lj.train.fit_many(_weighted, p0, None, tx, steps, batched_params=True,
                                loss_hparams={**train, **{k: np.repeat(v, seeds)
                                                          for k, v in configs.items()}})
    errors = np.asarray(_evaluate(trained.params, test)).reshape(w + 1, seeds, 2)
    fixed, unc_err = errors[:w], errors[w]           # (weights, seeds, tasks), (seeds, tasks)
    learned = np.exp(np.asarray(trained.params["log_vars"][w * seeds:], np.float64))
    # the weight uncertainty weighting settles at: w_A / w_B = σ_B² / σ_A²
    implied_w_b = learned[:, 0] / learned.sum(axis=1)
    worse, unc_worse = fixed.max(axis=2), unc_err.max(axis=1)
    i_equal = int(np.argmin(np.abs(weights - 0.5)))
    i_best = int(np.argmin(worse.mean(axis=1)))        # tuned on held-out data: an oracle
    iv = {"equal": [stats.interval(v) for v in (*fixed[i_equal].T, worse[i_equal])],
          "best": [stats.interval(v) for v in (*fixed[i_best].T, worse[i_best])],
          "uncertainty": [stats.interval(v) for v in (*unc_err.T, unc_worse)]}
    checks = [
        stats.claim("fixed weights need tuning: the best fixed weight beats equal weights on "
                    "the worse task", stats.difference(worse[i_equal], worse[i_best])),
        stats.claim("uncertainty weighting, untuned, beats equal weights on the worse task",
                    stats.difference(worse[i_equal], unc_worse)),
        stats.claim("uncertainty weighting's worse-task error is within 2× of the best fixed "
                    "weight's", stats.difference(2 * worse[i_best], unc_worse)),
    ]
    verdict, sentences = stats.decide(checks)
    w_b = stats.interval(implied_w_b)
    variances = [stats.interval(v) for v in learned.T]

    fig, ax, save = figure(config, "weights.png",
                           f"Held-out error per task vs task B's fixed weight w_B = 1 − w_A\n"
                           f"(mean and 95% interval over {seeds} seeds)",
                           "w_B = 1 − w_A (log scale)", "MSE / target variance (log scale)",
                           size=(7.5, 4.8))
    for task, (name, marker) in enumerate((("task A (unit scale)", "o"),
                                           ("task B (targets ×100)", "s"))):
        line = stats.band(ax, 1 - weights, stats.intervals(fixed[:, :, task]),
                          label=f"{name}, fixed weights", marker=marker, ms=3)
        u = iv["uncertainty"][task]
        ax.errorbar(w_b.mean, u.mean, xerr=[[w_b.mean - w_b.low], [w_b.high - w_b.mean]],
                    yerr=[[u.mean - u.low], [u.high - u.mean]], color=line.get_color(),
                    marker="D", ms=7, mfc="white", capsize=3, ls="none",
                    label=f"{name.split(' (')[0]}, uncertainty weighting (at the w_B its "
                          f"learned σ² imply)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    figures = [save()]
    rows = [["equal weights (w_A = 0.5)", *(i.fmt() for i in iv["equal"])],
            [f"best fixed weight (w_A = {weights[i_best]:.6f})", *(i.fmt() for i in iv["best"])],
            ["uncertainty weighting (learned)", *(i.fmt() for i in iv["uncertainty"])]]
    return Result(
        name="multitask", title="Multi-task weighting",
        claim="Multi-task losses are weighted sums of task losses; fixed weights need tuning, "
              "uncertainty weighting learns them.",
        verdict=verdict,
        summary=(f"over {seeds} seeds (own data and initialisation each; mean and 95% t "
                 f"interval), with task B's targets 100× larger, equal weights leave task A at "
                 f"{iv['equal'][0].fmt()} of its variance (task B {iv['equal'][1].fmt()}); the "
                 f"best of {w} fixed weights by mean worse-task error on the held-out data "
                 f"(w_A = {weights[i_best]:.5f}) reaches {iv['best'][0].fmt()} / "
                 f"{iv['best'][1].fmt()}; uncertainty weighting, untuned, "
                 f"{iv['uncertainty'][0].fmt()} / {iv['uncertainty'][1].fmt()}, having learned "
                 f"σ² = {variances[0].fmt('{:.3g}')}, {variances[1].fmt('{:.3g}')} (implied "
                 f"w_B = {w_b.fmt('{:.2e}')}). " + "; ".join(sentences)
                 + f" — {stats.robustness(checks)}. The log-variances start at log L_k(θ0), "
                 f"their optimum for the initial losses: from 0, Adam at this step size lags "
                 f"far behind the 10⁴ ratio of the losses."),
        key_number=f"worse task: equal {iv['equal'][2].fmt()}, best fixed "
                   f"{iv['best'][2].fmt()}, uncertainty {iv['uncertainty'][2].fmt()}",
        metrics={"weights": weights, "seeds": seeds, "n": n, "steps": steps,
                 "fixed_errors": {f"{wa:.8f}": {"task_a": stats.interval(e[:, 0]),
                                                "task_b": stats.interval(e[:, 1]),
                                                "worse": stats.interval(e.max(axis=1))}
                                  for wa, e in zip(weights, fixed)},
                 "equal_weights": dict(zip(("task_a", "task_b", "worse"), iv["equal"])),
                 "best_fixed": dict(zip(("task_a", "task_b", "worse"), iv["best"])),
                 "uncertainty": dict(zip(("task_a", "task_b", "worse"), iv["uncertainty"])),
                 "best_fixed_weight": weights[i_best], "learned_variances": variances,
                 "implied_w_b": w_b, "checks": checks},
        tables=[markdown_table(["weighting", "task A MSE / var", "task B MSE / var", "worse"],
                               rows)],
        figures=figures)
