"""Label noise: cross-entropy, label smoothing, MAE, generalized cross-entropy (GCE) and
symmetric cross-entropy (SCE) trained on noisy labels, tested on clean ones.

Data: ten classes N(c_k, I) in 16 dimensions, centres at distance 4 from the origin, labels
uniform (the model of lj.data.imbalanced_multiclass at ratio 1, drawn with NumPy); every seed
draws its own training set of 200 examples, its own label noise and its own initialisation,
shared by every loss (comparisons are paired); one clean test set of 2000 examples. Noise:
symmetric (a label becomes a uniformly drawn *other* class with probability r) or asymmetric
(class c becomes c + 1 mod 10 with probability r); one uniform draw per example decides the
flips at every rate, so the examples flipped at 20% are among those flipped at 40%.
Asymmetric noise at r = 0.5 makes the flip as frequent as the true label, and above it the
majority: a consistent classifier then learns the flip, and no loss can be expected to resist
it; the claim concerns r < 0.5.

Model: a 16-32-10 ReLU MLP, full-batch gradient descent with one learning rate for all losses
(as the GCE and SCE papers compare them). MAE is ‖softmax(z) − one_hot(y)‖₁ = 2(1 − p_y)
(lj.mae summed over the classes, averaged over examples), the MAE of Ghosh et al. (2017) —
twice GCE at q = 1. GCE: q = 0.7; SCE: α = 0.1, β = 1, A = −4 (the papers' CIFAR-10
settings); label smoothing ε = 0.1. Every loss, noise kind, rate and seed is one run of a
single ``fit_many`` call (a per-run index picks the loss) of 15 steps, called 20 times in a
row: plain gradient descent has no optimizer state, so continuing from the parameters is
exactly one run of 300 steps, with the clean test accuracy recorded every 15 steps. "Trains
fast" is judged at step 30 (10% of the steps), "robust" on the final accuracy.
"""
import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table, stats

CLASSES, DIM, HIDDEN, SEPARATION = 10, 16, 32, 8.0
N_TRAIN, N_TEST = 200, 2000
STEPS, CHUNK, EARLY, LEARNING_RATE = 300, 15, 30, 0.5    # EARLY: 10% of STEPS
Q, ALPHA, BETA, A = 0.7, 0.1, 1.0, -4.0           # GCE's q; SCE's α, β and log 0 = A
MARGIN = 0.05           # "trains fast": clean accuracy after 10% of the steps ≥ CE's − MARGIN
LOSSES = {
    "CE": lambda z, y: lj.cross_entropy(z, y),
    "CE + label smoothing 0.1": lambda z, y: lj.cross_entropy(z, y, label_smoothing=0.1),
    "MAE": lambda z, y: lj.mae(jax.nn.softmax(z), jax.nn.one_hot(y, CLASSES, dtype=z.dtype),
                               reduction="sum") / z.shape[0],
    "GCE (q=0.7)": lambda z, y: lj.generalized_cross_entropy(z, y, q=Q),
    "SCE (α=0.1, β=1)": lambda z, y: lj.symmetric_cross_entropy(z, y, alpha=ALPHA, beta=BETA,
                                                               log_zero=A),
}
STYLE = {"CE": ("-", "o"), "CE + label smoothing 0.1": (":", "v"), "MAE": ("--", "s"),
         "GCE (q=0.7)": ("-.", "^"), "SCE (α=0.1, β=1)": ((0, (5, 1, 1, 1, 1, 1)), "D")}
KINDS = ("symmetric", "asymmetric")


def _mlp(p, x):
    return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def _objective(p, *, x, y, loss):
    """The loss picked by the run's index ``loss`` (vmapped: every branch is evaluated on the
    same logits and one is selected, so the shared network runs once)."""
    return jax.lax.switch(loss, list(LOSSES.values()), _mlp(p, x), y)


def _init(rng):
    return {"w1": rng.normal(size=(DIM, HIDDEN)) / np.sqrt(DIM), "b1": np.zeros(HIDDEN),
            "w2": rng.normal(size=(HIDDEN, CLASSES)) / np.sqrt(HIDDEN), "b2": np.zeros(CLASSES)}


def _draw(seed, seeds):
    """The examples (``seeds`` training sets of N_TRAIN, then the test set), and per seed the
    initial parameters, the uniform draws that decide the label flips and the offsets of the
    symmetric flips. NumPy: compiling JAX's random bits for a few draws costs seconds on CPU."""
    rng = np.random.default_rng([seed, 1])
    centres = rng.normal(size=(CLASSES, DIM))
    centres *= SEPARATION / 2 / np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(0, CLASSES, seeds * N_TRAIN + N_TEST).astype(np.int32)
    x = (centres[y] + rng.normal(size=(len(y), DIM))).astype(np.float32)
    per_seed = [np.random.default_rng([seed, 2, s]) for s in range(seeds)]
    inits = [_init(r) for r in per_seed]
    params = {k: np.stack([p[k] for p in inits]).astype(np.float32) for k in inits[0]}
    u = np.stack([r.uniform(size=N_TRAIN) for r in per_seed])
    offset = np.stack([r.integers(1, CLASSES, N_TRAIN) for r in per_seed])
    return x, y, params, u, offset


def _noisy(y, u, offset, kind, rate):
    """Labels ``y`` with the examples whose uniform draw ``u`` < ``rate`` flipped."""
    other = (y + (offset if kind == "symmetric" else 1)) % CLASSES
    return np.where(u < rate, other, y).astype(np.int32)


@jax.jit
def _accuracy(params, x, y):
    """Per run: the accuracy on one shared set (x, y)."""
    return jax.vmap(lambda p: jnp.mean(jnp.argmax(_mlp(p, x), -1) == y))(params)


@jax.jit
def _memorised(params, x, noisy, clean):
    """Per run: the share of its flipped training examples on which it predicts the flipped
    label (NaN-free: 0 where nothing is flipped)."""
    def one(p, x, noisy, clean):
        flipped = noisy != clean
        hits = (jnp.argmax(_mlp(p, x), -1) == noisy) & flipped
        return jnp.sum(hits) / jnp.maximum(jnp.sum(flipped), 1)
    return jax.vmap(one)(params, x, noisy, clean)


def run(config):
    seeds = config.seeds
    rates = config.pick((0.2, 0.4, 0.6), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    clean, sym40, asym40 = ("clean", 0.0), ("symmetric", 0.4), ("asymmetric", 0.4)
    conditions = [clean] + [(k, r) for k in KINDS for r in rates]
    names = list(LOSSES)
    n_loss, n_cond = len(names), len(conditions)
    x_all, y_all, params, u, offset = _draw(config.seed, seeds)
    x = x_all[:seeds * N_TRAIN].reshape(seeds, N_TRAIN, DIM)
    y = y_all[:seeds * N_TRAIN].reshape(seeds, N_TRAIN)
    x_test, y_test = x_all[seeds * N_TRAIN:], y_all[seeds * N_TRAIN:]
    labels = np.stack([_noisy(y, u, offset, kind, rate) for kind, rate in conditions])
    flipped = np.mean(labels != y, axis=-1)                              # (conditions, seeds)

    # runs: loss-major, then condition, then seed. NumPy until the training call: eager JAX
    # operations would each compile.
    runs = n_loss * n_cond * seeds
    per_run = {"x": np.broadcast_to(x, (n_loss * n_cond,) + x.shape).reshape(runs, N_TRAIN, DIM),
               "y": np.broadcast_to(labels, (n_loss,) + labels.shape).reshape(runs, N_TRAIN),
               "loss": np.repeat(np.arange(n_loss, dtype=np.int32), n_cond * seeds)}
    params = {k: np.tile(v, (n_loss * n_cond,) + (1,) * (v.ndim - 1)) for k, v in params.items()}
    tx = lj.optim.make("sgd", learning_rate=LEARNING_RATE)
    steps = np.arange(0, STEPS + 1, CHUNK)
    acc = [np.asarray(_accuracy(params, x_test, y_test))]
    for _ in steps[1:]:
        params = jax.device_get(lj.train.fit_many(_objective, params, None, tx, CHUNK,
                                                  batched_params=True,
                                                  loss_hparams=per_run).params)
        acc.append(np.asarray(_accuracy(params, x_test, y_test)))
    shape = (n_loss, n_cond, seeds)
    acc = np.stack(acc).reshape((len(steps),) + shape)                 # (steps, *shape)
    memorised = np.asarray(_memorised(params, per_run["x"], per_run["y"],
                                      np.tile(y, (n_loss * n_cond, 1)))).reshape(shape)
    at = {c: i for i, c in enumerate(conditions)}
    idx = {n: i for i, n in enumerate(names)}
    early_at = int(np.searchsorted(steps, EARLY))

    def per_seed(n, c, when=-1):
        return acc[when, idx[n], at[c]]

    def cond(kind, rate):
        return clean if rate == 0 else (kind, rate)

    final = {n: {c: stats.interval(per_seed(n, c)) for c in conditions} for n in names}
    early = {n: {c: stats.interval(per_seed(n, c, early_at)) for c in conditions}
             for n in names}
    fits = {n: {c: stats.interval(memorised[idx[n], at[c]]) for c in conditions[1:]}
            for n in names}

    ce, mae, gce, sce = "CE", "MAE", "GCE (q=0.7)", "SCE (α=0.1, β=1)"
    short = {gce: "GCE", sce: "SCE", mae: "MAE"}
    when = f"after {EARLY} of {STEPS} steps"
    checks = [stats.claim(f"{short[n]} beats CE at 40% {c[0]} noise (final accuracy)",
                          stats.difference(per_seed(n, c), per_seed(ce, c)))
              for n in (mae, gce, sce) for c in (sym40, asym40)]
    checks.append(stats.claim(f"CE is ahead of MAE {when} on clean labels",
                              stats.difference(per_seed(ce, clean, early_at),
                                               per_seed(mae, clean, early_at))))
    checks += [stats.claim(f"{short[n]} is at most {MARGIN} behind CE {when} on clean labels "
                           f"({short[n]} − CE + {MARGIN})",
                           stats.difference(per_seed(n, clean, early_at) + MARGIN,
                                            per_seed(ce, clean, early_at)))
               for n in (gce, sce)]
    verdict, sentences = stats.decide(checks)

    fig, axes, save = figure(config, "accuracy_vs_noise.png",
                             f"Clean test accuracy after {STEPS} steps on noisy labels (mean "
                             f"and 95% interval over {seeds} seeds)", "noise rate r",
                             "clean test accuracy", ncols=2, size=(6, 4.5))
    xs = np.array((0.0,) + rates)
    dodge = 0.006 * (np.arange(n_loss) - (n_loss - 1) / 2)
    for ax, kind in zip(axes, KINDS):
        for j, n in enumerate(names):
            ls, marker = STYLE[n]
            stats.errorbar(ax, xs + dodge[j], [final[n][cond(kind, r)] for r in xs], label=n,
                           linestyle=ls, marker=marker, markersize=4)
        ax.axhline(1 / CLASSES, color="black", linewidth=0.8, label=f"chance (1/{CLASSES})")
        if kind == "asymmetric" and max(rates) >= 0.5:
            ax.axvspan(0.5 - 0.02, max(rates) + 0.03, color="0.85", zorder=0,
                       label="r ≥ 0.5: the flip ties or wins")
        ax.set_title(f"{kind} noise")
        ax.set_ylim(0, 1)
    figures = [save()]

    fig, axes, save = figure(config, "training_speed.png",
                             f"Clean test accuracy during training (mean and 95% interval "
                             f"over {seeds} seeds)", "gradient-descent step",
                             "clean test accuracy", ncols=2, size=(6, 4.5))
    for ax, c in zip(axes, (clean, sym40)):
        for n in names:
            ls, marker = STYLE[n]
            stats.band(ax, steps, stats.intervals(acc[:, idx[n], at[c]]), label=n,
                       linestyle=ls, marker=marker, markersize=3)
        ax.axvline(EARLY, color="0.4", linewidth=0.8, linestyle=":",
                   label=f"early checkpoint ({EARLY} steps)")
        ax.set_title("clean labels" if c == clean else "40% symmetric noise")
        ax.set_ylim(0, 1)
    figures.append(save())

    def f2(iv):
        return iv.fmt("{:.2f}")

    best = 1 + int(np.argmax(acc[1:, idx[ce], at[sym40]].mean(axis=-1)))
    drop = stats.difference(per_seed(ce, sym40, best), per_seed(ce, sym40))
    if drop.low > 0:
        peak = stats.interval(per_seed(ce, sym40, best))
        ce_course = (f"CE peaked at step {steps[best]} ({f2(peak)}) and lost "
                     f"{drop.fmt('{:.2f}')} by step {STEPS}")
    else:
        ce_course = (f"CE's best checkpoint (step {steps[best]}) is not significantly above "
                     f"its final accuracy (difference {drop.fmt('{:.2f}')})")
    top = max(rates)
    ranked = sorted(names, key=lambda n: -final[n][sym40].mean)
    summary = (
        f"{seeds} seeds (training set, label noise and initialisation), means with 95% t "
        f"intervals. 'Robust' means a higher final clean test accuracy than CE at 40% noise of "
        f"either kind, 'trains fast' a clean-label test accuracy {when} ({EARLY / STEPS:.0%}) "
        f"at most {MARGIN} below CE's; GCE and SCE 'get both' when both hold. At "
        f"initialisation (p ≈ uniform) the gradients with respect to the logits are CE's "
        f"times {2 / CLASSES:.2f} for MAE (2 p_y), {CLASSES ** -Q:.2f} for GCE (p_y^q) and "
        f"{ALPHA - BETA * A / CLASSES:.2f} for SCE (α − βA p_y), under one learning rate for "
        f"all. Clean labels, "
        f"{when}: CE {f2(early[ce][clean])}, MAE {f2(early[mae][clean])}, GCE "
        f"{f2(early[gce][clean])}, SCE {f2(early[sce][clean])}; after {STEPS}: CE "
        f"{f2(final[ce][clean])}, MAE {f2(final[mae][clean])}. At 40% symmetric noise "
        f"({flipped[at[sym40]].mean():.0%} of the labels flipped) the final accuracies rank "
        + ", ".join(f"{n} {f2(final[n][sym40])}" for n in ranked)
        + f"; {ce_course}, by which time it predicts the flipped label on "
        f"{f2(fits[ce][sym40])} of its flipped training examples (MAE {f2(fits[mae][sym40])}, "
        f"GCE {f2(fits[gce][sym40])}, SCE {f2(fits[sce][sym40])}). At 40% asymmetric noise: "
        + ", ".join(f"{n} {f2(final[n][asym40])}" for n in (ce, mae, gce, sce))
        + f". At {top:.0%} asymmetric noise the flip is each class's majority label, so a "
        f"consistent classifier would learn it; observed: CE "
        f"{f2(final[ce][('asymmetric', top)])}, MAE {f2(final[mae][('asymmetric', top)])}, GCE "
        f"{f2(final[gce][('asymmetric', top)])}; no check uses r ≥ 0.5. "
        + "; ".join(sentences) + f" — {stats.robustness(checks)}.")
    if verdict == "depends":
        summary += " The verdict is 'depends' because these intervals include 0: " + "; ".join(
            c.what for c in checks if c.outcome == "undecided") + "."
    return Result(
        name="label_noise", title="Label noise",
        claim="MAE-like losses are robust to noisy labels but train slowly; generalized "
              "cross-entropy (GCE) and symmetric cross-entropy (SCE) get both.",
        verdict=verdict, summary=summary,
        key_number=f"40% sym. noise accuracy: CE {f2(final[ce][sym40])}, MAE "
                   f"{f2(final[mae][sym40])}, GCE {f2(final[gce][sym40])}, SCE "
                   f"{f2(final[sce][sym40])}",
        metrics={"final_accuracy": {n: {f"{k} {r:g}": final[n][(k, r)] for k, r in conditions}
                                    for n in names},
                 "early_accuracy": {n: {f"{k} {r:g}": early[n][(k, r)] for k, r in conditions}
                                    for n in names},
                 "flipped_labels_predicted": {n: {f"{k} {r:g}": fits[n][(k, r)]
                                                  for k, r in conditions[1:]} for n in names},
                 "curves": {n: {f"{k} {r:g}": acc[:, idx[n], at[(k, r)]].mean(axis=-1)
                                for k, r in conditions} for n in names},
                 "checkpoints": steps, "early_step": EARLY, "margin": MARGIN, "checks": checks,
                 "chance": 1 / CLASSES,
                 "flipped_fraction": {f"{k} {r:g}": flipped[at[(k, r)]].mean()
                                      for k, r in conditions},
                 "seeds": seeds, "n_train": N_TRAIN, "n_test": N_TEST, "steps": STEPS},
        tables=[markdown_table(["noise", "rate"] + names,
                               [[kind if r else "none", f"{r:.0%}"]
                                + [final[n][cond(kind, r)].fmt() for n in names]
                                for kind in KINDS for r in xs if r or kind == KINDS[0]]),
                markdown_table(["loss", f"clean, step {EARLY}", f"clean, step {STEPS}",
                                f"40% sym., step {EARLY}", f"40% sym., step {STEPS}",
                                "40% sym.: flipped labels predicted"],
                               [[n, early[n][clean].fmt(), final[n][clean].fmt(),
                                 early[n][sym40].fmt(), final[n][sym40].fmt(),
                                 fits[n][sym40].fmt()] for n in names])],
        figures=figures)
