"""Segmentation of small foregrounds: Dice, Tversky, BCE and Dice + BCE.

Noisy images with one small disc each (2% and 0.5% of the pixels; lj.data.segmentation_masks);
the model is one 5×5 convolution + bias producing per-pixel logits — enough to find a disc,
so the loss decides how. IoU of the thresholded prediction (0.5) on held-out images.
"""
import jax
import jax.numpy as jnp
import numpy as np

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table

FOREGROUNDS = (0.02, 0.005)


def _logits(p, images):
    x = images[:, None, :, :]
    out = jax.lax.conv_general_dilated(x, p["kernel"][None, None], (1, 1), "SAME")
    return out[:, 0] + p["bias"]


def _bce(p, b):
    return lj.binary_cross_entropy_with_logits(_logits(p, b["image"]), b["mask"])


def _dice(p, b):
    return lj.dice(_logits(p, b["image"]), b["mask"], activation="sigmoid")


def _tversky(p, b):
    return lj.tversky(_logits(p, b["image"]), b["mask"], alpha=0.3, beta=0.7,
                      activation="sigmoid")


def _dice_bce(p, b):
    return _dice(p, b) + _bce(p, b)


LOSSES = {"BCE": _bce, "Dice": _dice, "Tversky (α=0.3, β=0.7)": _tversky, "Dice + BCE": _dice_bce}


def _iou(p, test):
    pred = np.asarray(_logits(p, test["image"]) > 0)
    mask = np.asarray(test["mask"]) > 0.5
    inter = np.sum(pred & mask, axis=(1, 2))
    union = np.sum(pred | mask, axis=(1, 2))
    per_image = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(per_image.mean()), float(pred.mean())


def run(config):
    n = config.pick(48, 256)
    steps = config.pick(400, 1500)
    size = (32, 32)
    p0 = {"kernel": jnp.zeros((5, 5)), "bias": jnp.zeros(())}
    tx = lj.optim.make("adam", learning_rate=0.05, schedule="cosine", decay_steps=steps)
    results, rows, examples = {}, [], {}
    for fg in FOREGROUNDS:
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), int(fg * 1e4))
        ds = lj.data.segmentation_masks(key, 2 * n, size, foreground=fg, contrast=1.5,
                                        noise=1.0)
        train = {k: v[:n] for k, v in ds.data.items()}
        test = {k: v[n:] for k, v in ds.data.items()}
        results[fg] = {}
        for name, loss in LOSSES.items():
            params = lj.train.fit(loss, p0, train, tx, steps).params
            iou, share = _iou(params, test)
            results[fg][name] = {"iou": iou, "predicted_foreground": share}
            rows.append([f"{fg:.1%}", name, iou, share, float(np.mean(test["mask"]))])
            if fg == FOREGROUNDS[0]:
                examples[name] = np.asarray(jax.nn.sigmoid(_logits(params, test["image"][:1])))[0]
        examples["_image"] = np.asarray(test["image"][0])
        examples["_mask"] = np.asarray(test["mask"][0])
    fig, axes, save = figure(config, "iou.png", "Held-out IoU (threshold 0.5) by loss",
                             "loss", "IoU", ncols=1)
    names = list(LOSSES)
    xs = np.arange(len(names))
    for j, fg in enumerate(FOREGROUNDS):
        axes.bar(xs + (j - 0.5) * 0.4, [results[fg][k]["iou"] for k in names], 0.4,
                 label=f"foreground {fg:.1%}")
    axes.set_xticks(xs, names, fontsize=8)
    figures = [save()]
    fig, axes, save = figure(config, "examples.png",
                             f"A held-out image (foreground {FOREGROUNDS[0]:.0%}): predicted "
                             f"probabilities", "column", "row", ncols=len(names) + 2, size=(2.6, 2.8))
    panels = [("image", examples["_image"]), ("mask", examples["_mask"])] + [
        (k, examples[k]) for k in names]
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="gray" if title == "image" else "viridis",
                  vmin=None if title == "image" else 0, vmax=None if title == "image" else 1)
        ax.set_title(title, fontsize=8)
        ax.grid(False)
    figures.append(save(legend=False))
    small = results[FOREGROUNDS[-1]]
    dice_like = max(small["Dice"]["iou"], small["Tversky (α=0.3, β=0.7)"]["iou"])
    holds = dice_like > small["BCE"]["iou"]
    best = {fg: max(results[fg], key=lambda k: results[fg][k]["iou"]) for fg in FOREGROUNDS}
    return Result(
        name="segmentation", title="Segmentation with small foregrounds",
        claim="Dice suits segmentation with small foregrounds; Dice + CE combinations work well.",
        verdict="holds" if holds else "does not hold",
        summary=(f"held-out IoU at {FOREGROUNDS[-1]:.1%} foreground: BCE "
                 f"{small['BCE']['iou']:.3f}, Dice {small['Dice']['iou']:.3f}, Tversky "
                 f"{small['Tversky (α=0.3, β=0.7)']['iou']:.3f}, Dice + BCE "
                 f"{small['Dice + BCE']['iou']:.3f}; at {FOREGROUNDS[0]:.0%}: "
                 + ", ".join(f"{k} {v['iou']:.3f}" for k, v in results[FOREGROUNDS[0]].items())
                 + f". Best: {best[FOREGROUNDS[0]]} at {FOREGROUNDS[0]:.0%}, "
                 f"{best[FOREGROUNDS[-1]]} at {FOREGROUNDS[-1]:.1%}. BCE's per-pixel average "
                 f"is dominated by background: thresholded at 0.5 it predicts "
                 f"{small['BCE']['predicted_foreground']:.2%} foreground pixels."),
        key_number=f"IoU at {FOREGROUNDS[-1]:.1%}: Dice {small['Dice']['iou']:.2f} vs BCE "
                   f"{small['BCE']['iou']:.2f}",
        metrics={"results": {str(k): v for k, v in results.items()}, "n_train": n,
                 "steps": steps},
        tables=[markdown_table(["foreground", "loss", "IoU", "predicted foreground share",
                                "true foreground share"], rows, fmt="{:.4f}")],
        figures=figures)
