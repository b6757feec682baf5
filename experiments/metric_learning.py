"""Metric learning: triplet (batch-hard, semi-hard, all), contrastive, softmax + center loss,
ArcFace, CosFace and SupCon learn a linear embedding of clustered data whose raw distances are
dominated by noise.

Data: lj.data.clustered_embeddings — 10 classes around unit-norm centres in 8 dimensions, plus
8 dimensions of pure noise 3× larger. Model: a linear map to 8 dimensions. Every loss is
trained on ``config.seeds`` seeds, each with its own data set and initial map (shared by every
loss of that seed, so comparisons are paired), all seeds of a loss in one ``fit_many`` call
(Adam, minibatches of 64). Measured on each seed's held-out set: recall@1 (is the nearest
other point of the same class?) and the ratio of the mean distance between class centroids to
the mean distance of points to their own centroid. ArcFace, CosFace and SupCon train cosine
similarities, so their embeddings are measured after L2 normalisation; the others by
Euclidean distance, as they train.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table, source, stats

CLASSES, DIM, NUISANCE, EMBED = 10, 8, 8, 8
BATCH = 64      # semi-hard and all-triplet mining cost B³ per step and seed
# the papers' values (Deng et al. 2019; Wang et al. 2018): above the scale 10 classes need,
# s ≥ (C − 1)/C · ln((C − 1) p / (1 − p)) ≈ 6 for p = 0.99 (Wang et al., NormFace, 2017)
ARC = {"scale": 64.0, "margin": 0.5}
COS = {"scale": 64.0, "margin": 0.35}
SUPCON_T = 0.1                         # Khosla et al.'s temperature
RAW, UNTRAINED = "raw inputs (16-d)", "random linear map (untrained)"
ARCFACE = f"ArcFace (s={ARC['scale']:g}, m={ARC['margin']:g})"


def _neighbours(emb):
    """Per row of ``emb`` (S, N, D): the index of its nearest other row (Euclidean)."""
    sq = np.sum(emb ** 2, axis=-1)
    d = sq[:, :, None] + sq[:, None, :] - 2 * emb @ np.swapaxes(emb, 1, 2)
    idx = np.arange(emb.shape[1])
    d[:, idx, idx] = np.inf
    return np.argmin(d, axis=-1)


def recall_at_1(emb, labels):
    """Per seed: the share of held-out points whose nearest other point has their class."""
    nearest = _neighbours(emb)
    return np.mean(np.take_along_axis(labels, nearest, axis=1) == labels, axis=1)


def separation_ratio(emb, labels):
    """Per seed: mean distance between class centroids / mean distance to the own centroid."""
    out = []
    for e, y in zip(emb, labels):
        cent = np.stack([e[y == c].mean(axis=0) for c in range(CLASSES)])
        intra = np.mean([np.linalg.norm(e[y == c] - cent[c], axis=1).mean()
                         for c in range(CLASSES)])
        inter = np.linalg.norm(cent[:, None] - cent[None], axis=-1)
        out.append(inter[~np.eye(CLASSES, dtype=bool)].mean() / intra)
    return np.asarray(out)


def _embed(p, x):
    return x @ p["w"]


def _triplet(strategy, p, b):
    return lj.mined_triplet(_embed(p, b["x"]), b["y"], strategy=strategy, margin=1.0)


def _contrastive(p, b):
    e = _embed(p, b["x"])
    i, j = jnp.triu_indices(e.shape[0], 1)              # every pair in the batch once
    same = (b["y"][i] == b["y"][j]).astype(e.dtype)
    # positives are 1 in 10: weight them up to balance the pair classes
    weights = jnp.where(same > 0, (CLASSES - 1.0), 1.0)
    return lj.contrastive(e[i], e[j], same, neg_margin=2.0, weights=weights)


def _softmax_center(p, b, lam=0.1):
    e = _embed(p, b["x"])
    logits = e @ p["head"] + p["head_bias"]
    return lj.cross_entropy(logits, b["y"]) + lam * lj.center_loss(e, b["y"], p["centers"])


def _arcface(p, b):
    return lj.arcface(lj.cosine_logits(_embed(p, b["x"]), p["classes"]), b["y"], **ARC)


def _cosface(p, b):
    return lj.cosface(lj.cosine_logits(_embed(p, b["x"]), p["classes"]), b["y"], **COS)


def _supcon(p, b):
    return lj.supcon(_embed(p, b["x"]), b["y"], temperature=SUPCON_T,
                     base_temperature=SUPCON_T)


# name: (loss, extra parameters it trains, measured on the unit sphere)
LOSSES = {
    "triplet, batch-hard": (functools.partial(_triplet, "batch_hard"), (), False),
    "triplet, semi-hard": (functools.partial(_triplet, "semi_hard"), (), False),
    "triplet, all": (functools.partial(_triplet, "all"), (), False),
    "contrastive": (_contrastive, (), False),
    "softmax + center loss": (_softmax_center, ("head", "head_bias", "centers"), False),
    ARCFACE: (_arcface, ("classes",), True),
    f"CosFace (s={COS['scale']:g}, m={COS['margin']:g})": (_cosface, ("classes",), True),
    f"SupCon (τ={SUPCON_T:g})": (_supcon, (), True),
}


def _objective(loss, p, batch, *, x, y):
    """``loss`` on the rows ``batch`` (a minibatch of indices) of one seed's data set, which
    rides along as per-run loss arguments."""
    return loss(p, {"x": x[batch], "y": y[batch]})


def _initial(key):
    """One seed's initial parameters: the map every loss starts from, and the heads."""
    kw, kh, kc = jax.random.split(key, 3)
    return {"w": jax.random.normal(kw, (DIM + NUISANCE, EMBED)) / np.sqrt(DIM + NUISANCE),
            "head": 0.1 * jax.random.normal(kh, (EMBED, CLASSES)),
            "head_bias": jnp.zeros(CLASSES), "centers": jnp.zeros((CLASSES, EMBED)),
            "classes": jax.random.normal(kc, (CLASSES, EMBED))}


def _unit(emb):
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-8)


def run(config):
    n_train = config.pick(200, 1000)
    n_test = 500
    steps = config.pick(300, 1500)
    seeds = config.seeds
    sets, inits, orders = [], [], []
    for key in config.keys():
        k_data, k_init, k_order = jax.random.split(key, 3)
        sets.append(lj.data.clustered_embeddings(k_data, n_train + n_test, DIM, CLASSES,
                                                 spread=0.35, nuisance=NUISANCE,
                                                 nuisance_scale=3.0).data)
        inits.append(_initial(k_init))
        orders.append(k_order)
    x = jnp.stack([s["x"][:n_train] for s in sets])
    y = jnp.stack([s["y"][:n_train] for s in sets])
    test_x = np.stack([np.asarray(s["x"][n_train:]) for s in sets])
    test_y = np.stack([np.asarray(s["y"][n_train:]) for s in sets])
    p0 = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *inits)
    tx = lj.optim.make("adam", learning_rate=0.02, schedule="cosine", decay_steps=steps)

    embeddings = {RAW: test_x, UNTRAINED: np.asarray(_embed({"w": p0["w"]}, test_x))}
    weights = {}
    for name, (loss, heads, angular) in LOSSES.items():
        params = lj.train.fit_many(functools.partial(_objective, loss),
                                   {k: p0[k] for k in ("w", *heads)}, jnp.arange(n_train),
                                   tx, steps, batch_size=BATCH, batched_params=True,
                                   keys=jnp.stack(orders), loss_hparams={"x": x, "y": y}).params
        emb = np.asarray(_embed(params, test_x))
        embeddings[name] = _unit(emb) if angular else emb
        weights[name] = np.asarray(params["w"])
    recall = {k: recall_at_1(e, test_y) for k, e in embeddings.items()}
    separation = {k: separation_ratio(e, test_y) for k, e in embeddings.items()}
    iv = {k: {"recall@1": stats.interval(recall[k]), "separation": stats.interval(separation[k])}
          for k in embeddings}
    # the share of the map's squared weight on the noise dimensions (1/2 for a random map)
    nuisance = {k: stats.interval(np.sum(w[:, DIM:] ** 2, axis=(1, 2))
                                  / np.sum(w ** 2, axis=(1, 2))) for k, w in weights.items()}
    checks = [stats.claim(f"{k} beats the raw inputs (recall@1)",
                          stats.difference(recall[k], recall[RAW])) for k in LOSSES]
    verdict, sentences = stats.decide(checks)

    shown = 0                            # the seed whose embeddings the PCA panels show
    panels = [RAW, "triplet, batch-hard", "softmax + center loss", ARCFACE]
    fig, axes, save = figure(config, "embeddings.png",
                             f"Held-out embeddings of seed {shown}, first two principal "
                             f"components (colour: class)", "PC 1", "PC 2", ncols=len(panels),
                             size=(3.4, 3.6))
    for ax, name in zip(axes, panels):
        emb = embeddings[name][shown]
        centred = emb - emb.mean(axis=0)
        pcs = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        ax.scatter(pcs[:, 0], pcs[:, 1], c=test_y[shown], cmap="tab10", s=5)
        ax.set_title(f"{name}\nrecall@1 {recall[name][shown]:.2f}", fontsize=9)
        source(ax, "held-out set", test_x[shown])
    figures = [save(legend=False)]

    names = list(embeddings)
    fig, axes, save = figure(config, "recall.png",
                             f"Held-out recall@1 and centroid separation (mean and 95% "
                             f"interval over {seeds} seeds)", "embedding", "recall@1", ncols=2,
                             size=(6.0, 4.8))
    baseline = [k for k in names if k not in LOSSES]
    for ax, metric in zip(axes, ("recall@1", "separation")):
        stats.bar(ax, np.arange(len(baseline)), [iv[k][metric] for k in baseline], 0.7,
                  color="0.6", label="no training")
        stats.bar(ax, np.arange(len(baseline), len(names)), [iv[k][metric] for k in LOSSES],
                  0.7, color="C0", label="trained")
        ax.set_xticks(np.arange(len(names)), names, rotation=70, ha="right", fontsize=7)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("recall@1 (chance 0.1)", fontsize=9)
    axes[1].set_ylabel("inter / intra centroid distance")
    axes[1].set_title("separation ratio", fontsize=9)
    figures.append(save())

    means = {k: iv[k]["recall@1"].mean for k in LOSSES}
    low, high = min(means, key=means.get), max(means, key=means.get)
    best_sep = max(LOSSES, key=lambda k: iv[k]["separation"].mean)
    r = {k: iv[k]["recall@1"].fmt("{:.2f}") for k in embeddings}
    rows = [[k, iv[k]["recall@1"].fmt(), iv[k]["separation"].fmt(),
             nuisance[k].fmt() if k in nuisance else "—"] for k in names]
    return Result(
        name="metric_learning", title="Metric learning",
        claim="Triplet, contrastive, center, ArcFace/CosFace and SupCon losses learn "
              "discriminative embeddings.",
        verdict=verdict,
        summary=(f"over {seeds} seeds (each its own data set and initial map; mean and 95% t "
                 f"interval), held-out recall@1 is {r[RAW]} on the raw inputs and "
                 f"{r[UNTRAINED]} for the untrained linear map; the learned embeddings reach "
                 + ", ".join(f"{r[k]} ({k})" for k in LOSSES)
                 + f". The centroid-distance / spread ratio goes from "
                 f"{iv[RAW]['separation'].fmt('{:.2f}')} (raw) to "
                 f"{iv[best_sep]['separation'].fmt('{:.2f}')} ({best_sep}); the noise "
                 f"dimensions' share of the map's squared weight (1/2 at random) ends between "
                 f"{min(v.mean for v in nuisance.values()):.3f} and "
                 f"{max(v.mean for v in nuisance.values()):.3f}. " + "; ".join(sentences)
                 + f" — {stats.robustness(checks)}."),
        key_number=f"recall@1 raw {r[RAW]} → {len(LOSSES)} losses' means "
                   f"{means[low]:.2f}–{means[high]:.2f}",
        metrics={"embeddings": iv, "nuisance_weight_share": nuisance, "checks": checks,
                 "seeds": seeds, "n_train": n_train, "n_test": n_test, "steps": steps,
                 "batch_size": BATCH, "pca_seed": shown},
        tables=[markdown_table(["embedding", "recall@1", "inter/intra distance ratio",
                                "noise share of squared weight"], rows)],
        figures=figures)
