"""Segmentation of small foregrounds: Dice, Tversky, BCE and Dice + BCE.

Noisy images with one small disc each (2% and 0.5% of the pixels; lj.data.segmentation_masks);
the model is one 5×5 convolution + bias producing per-pixel logits — enough to find a disc,
so the loss decides how. IoU of the thresholded prediction (0.5) on held-out images. Every
loss is trained on ``config.seeds`` seeds per foreground, each seed with its own images and
initial kernel (the same for every loss: comparisons are paired), all foregrounds and seeds of
a loss in one ``fit_many`` call.
"""
import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table, source, stats

FOREGROUNDS = (0.02, 0.005)
SIZE = (32, 32)


def _patches(images, k=5):
    """The k×k neighbourhood of every pixel (zero padding): (n, H, W, k²). Computed once per
    data set, so that training evaluates the convolution as one product per run (vmapped over
    runs with one kernel each, XLA's CPU convolution would be a slow grouped one)."""
    h, w = images.shape[1:]
    padded = jnp.pad(images, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    return jnp.stack([padded[:, i:i + h, j:j + w] for i in range(k) for j in range(k)], -1)


def _logits(p, patches):
    """The 5×5 cross-correlation ("same" size) + bias, from ``_patches`` of the images."""
    return patches @ p["kernel"].reshape(-1) + p["bias"]


def _bce(p, *, patches, mask):
    return lj.binary_cross_entropy_with_logits(_logits(p, patches), mask)


def _dice(p, *, patches, mask):
    return lj.dice(_logits(p, patches), mask, activation="sigmoid")


def _tversky(p, *, patches, mask):
    return lj.tversky(_logits(p, patches), mask, alpha=0.3, beta=0.7, activation="sigmoid")


def _dice_bce(p, *, patches, mask):
    logits = _logits(p, patches)
    return (lj.dice(logits, mask, activation="sigmoid")
            + lj.binary_cross_entropy_with_logits(logits, mask))


BCE, DICE, TVERSKY, DICE_BCE = "BCE", "Dice", "Tversky (α=0.3, β=0.7)", "Dice + BCE"
LOSSES = {BCE: _bce, DICE: _dice, TVERSKY: _tversky, DICE_BCE: _dice_bce}


def _iou(logits, masks):
    """Per run: mean IoU over the images of the prediction ``logits > 0``, and the share of
    pixels predicted foreground. ``logits``, ``masks``: (runs, n, H, W)."""
    pred, mask = logits > 0, masks > 0.5
    inter = np.sum(pred & mask, axis=(2, 3))
    union = np.sum(pred | mask, axis=(2, 3))
    per_image = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return per_image.mean(axis=1), pred.mean(axis=(1, 2, 3))


def _side(diff):
    if diff.low > 0:
        return "above Dice"
    return "below Dice" if diff.high < 0 else "the interval includes 0"


def run(config):
    n = config.pick(48, 256)
    steps = config.pick(400, 1500)
    seeds = config.seeds
    k_data, k_init = jax.vmap(jax.random.split, out_axes=1)(config.keys())
    images, masks = [], []
    for fg in FOREGROUNDS:                              # runs: foreground-major, then seed
        for key in k_data:
            ds = lj.data.segmentation_masks(jax.random.fold_in(key, int(fg * 1e4)), 2 * n, SIZE,
                                            foreground=fg, contrast=1.5, noise=1.0)
            images.append(ds.data["image"])
            masks.append(ds.data["mask"])
    images, masks = jnp.stack(images), jnp.stack(masks)
    # one initial kernel per seed, the same at both foregrounds
    kernels = jax.vmap(lambda k: 0.05 * jax.random.normal(k, (5, 5)))(k_init)
    p0 = {"kernel": jnp.tile(kernels, (len(FOREGROUNDS), 1, 1)), "bias": jnp.zeros(len(images))}
    train = {"patches": jax.vmap(_patches)(images[:, :n]), "mask": masks[:, :n]}
    test_patches = jax.vmap(_patches)(images[:, n:])
    test_images, test_masks = np.asarray(images[:, n:]), np.asarray(masks[:, n:])
    tx = lj.optim.make("adam", learning_rate=0.05, schedule="cosine", decay_steps=steps)
    iou, share, test_logits = {}, {}, {}
    for name, loss in LOSSES.items():
        params = lj.train.fit_many(loss, p0, None, tx, steps, batched_params=True,
                                   loss_hparams=train).params
        logits = np.asarray(jax.vmap(_logits)(params, test_patches))
        i, s = _iou(logits, test_masks)
        iou[name], share[name] = (v.reshape(len(FOREGROUNDS), seeds) for v in (i, s))
        test_logits[name] = logits.reshape(len(FOREGROUNDS), seeds, *logits.shape[1:])
    iv = {name: {fg: stats.interval(iou[name][j]) for j, fg in enumerate(FOREGROUNDS)}
          for name in LOSSES}
    share_iv = {name: {fg: stats.interval(share[name][j]) for j, fg in enumerate(FOREGROUNDS)}
                for name in LOSSES}
    true_share = test_masks.reshape(len(FOREGROUNDS), -1).mean(axis=1)

    def beats(a, b, fg):
        j = FOREGROUNDS.index(fg)
        return stats.claim(f"{a} beats {b} at {fg:.1%} foreground (IoU)",
                           stats.difference(iou[a][j], iou[b][j]))

    small, large = FOREGROUNDS[-1], FOREGROUNDS[0]
    checks = [beats(DICE, BCE, small), beats(DICE, BCE, large), beats(DICE_BCE, BCE, small),
              beats(DICE_BCE, BCE, large)]
    verdict, sentences = stats.decide(checks)
    combo = {fg: stats.difference(iou[DICE_BCE][j], iou[DICE][j])
             for j, fg in enumerate(FOREGROUNDS)}

    names = list(LOSSES)
    fig, ax, save = figure(config, "iou.png",
                           f"Held-out IoU (threshold 0.5): mean and 95% interval, {seeds} seeds",
                           "loss", "IoU", size=(7.0, 4.2))
    xs = np.arange(len(names))
    for j, fg in enumerate(FOREGROUNDS):
        stats.bar(ax, xs + (j - 0.5) * 0.4, [iv[k][fg] for k in names], 0.4,
                  label=f"foreground {fg:.1%}")
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_ylim(0, 1)
    figures = [save()]

    shown_fg, shown_seed = large, 0        # the held-out image the examples figure shows
    shown_j = FOREGROUNDS.index(shown_fg)
    run_i = shown_j * seeds + shown_seed
    image, mask = test_images[run_i, 0], test_masks[run_i, 0]
    fig, axes, save = figure(config, "examples.png",
                             f"Held-out image 0 of seed {shown_seed} (foreground "
                             f"{shown_fg:.1%}): predicted probabilities", "column", "row",
                             ncols=len(names) + 2, size=(2.4, 2.8))
    shown_logits = {k: test_logits[k][shown_j, shown_seed, 0] for k in names}
    panels = [("image", image), ("true mask", mask)] + [
        (f"{k}\nIoU {_iou(v[None, None], mask[None, None])[0][0]:.2f}", jax.nn.sigmoid(v))
        for k, v in shown_logits.items()]
    for k, (ax, (title, img)) in enumerate(zip(axes, panels)):
        im = ax.imshow(np.asarray(img), cmap="gray" if k == 0 else "viridis",
                       vmin=None if k == 0 else 0, vmax=None if k == 0 else 1)
        ax.set_title(title, fontsize=8)
        ax.grid(False)
        source(ax, "held-out image", image)
    fig.colorbar(im, cax=axes[-1].inset_axes([1.05, 0.0, 0.06, 1.0]), label="probability")
    figures.append(save(legend=False))

    def at(name, fg, spec="{:.2f}"):
        return iv[name][fg].fmt(spec)

    rows = [[f"{fg:.1%}", name, at(name, fg, "{:.3f}"), share_iv[name][fg].fmt("{:.4f}"),
             f"{true_share[j]:.4f}"] for j, fg in enumerate(FOREGROUNDS) for name in LOSSES]
    best = {fg: max(LOSSES, key=lambda k: iv[k][fg].mean) for fg in FOREGROUNDS}
    return Result(
        name="segmentation", title="Segmentation with small foregrounds",
        claim="Dice suits segmentation with small foregrounds; Dice + CE combinations work well.",
        verdict=verdict,
        summary=(f"over {seeds} seeds per foreground (each its own images and initial kernel; "
                 f"mean and 95% t interval), held-out IoU at {small:.1%} foreground: "
                 + ", ".join(f"{k} {at(k, small)}" for k in LOSSES)
                 + f"; at {large:.1%}: " + ", ".join(f"{k} {at(k, large)}" for k in LOSSES)
                 + f". Best mean: {best[large]} at {large:.1%}, {best[small]} at {small:.1%}. "
                 f"BCE's per-pixel average is dominated by background: thresholded at 0.5 it "
                 f"predicts {share_iv[BCE][small].fmt('{:.4f}')} of the pixels foreground at "
                 f"{small:.1%} (truth {true_share[-1]:.4f}). The verdict rests on Dice and Dice "
                 f"+ BCE against BCE at both foregrounds (Tversky is reported, not claimed): "
                 + "; ".join(sentences) + f" — {stats.robustness(checks)}. Dice + BCE minus "
                 f"Dice (not claimed): " + ", ".join(
                     f"{combo[fg].fmt('{:+.3f}')} at {fg:.1%} ({_side(combo[fg])})"
                     for fg in FOREGROUNDS) + "."),
        key_number=f"IoU at {small:.1%}: Dice {at(DICE, small)}, Dice + BCE "
                   f"{at(DICE_BCE, small)}, BCE {at(BCE, small)}",
        metrics={"iou": {name: {str(fg): v for fg, v in row.items()} for name, row in iv.items()},
                 "predicted_foreground": {name: {str(fg): v for fg, v in row.items()}
                                          for name, row in share_iv.items()},
                 "true_foreground": {str(fg): true_share[j] for j, fg in enumerate(FOREGROUNDS)},
                 "checks": checks, "dice_bce_minus_dice": {str(k): v for k, v in combo.items()},
                 "seeds": seeds, "n_train": n, "steps": steps,
                 "examples": {"foreground": shown_fg, "seed": shown_seed, "image": 0}},
        tables=[markdown_table(["foreground", "loss", "IoU", "predicted foreground share",
                                "true foreground share"], rows)],
        figures=figures)
