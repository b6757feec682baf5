"""Hamming loss cannot be trained with gradients: its gradient is zero almost everywhere.

A linear per-position classifier on token sequences from a linear teacher, trained by
gradient descent on (a) the Hamming loss itself, (b) its softmax relaxation soft_hamming
(the expected Hamming loss), (c) cross-entropy for reference. Measured: the Hamming error on held-out data and the gradient norm seen in training.
"""
import jax
import jax.numpy as jnp

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table


def _model(p, x):
    return x @ p["w"].T + p["b"]


def run(config):
    key = jax.random.PRNGKey(config.seed)
    k_train, k_test, k_init = jax.random.split(key, 3)
    n = config.pick(64, 512)
    steps = config.pick(300, 2000)
    train = lj.data.sequences(k_train, n, 12, 8, num_classes=6, noise=0.3)
    test = lj.data.sequences(k_test, 256, 12, 8, num_classes=6)
    # the held-out set must come from the same teacher: label it with the training teacher
    test_y = jnp.argmax(test.data["x"] @ train.truth["teacher"].T, axis=-1)
    p0 = {"w": 0.1 * jax.random.normal(k_init, (6, 8)), "b": jnp.zeros(6)}

    def make_loss(loss):
        def f(p, batch):
            return loss(_model(p, batch["x"]), batch["y"])
        return f

    losses = {"hamming": lj.hamming, "soft_hamming": lj.soft_hamming,
              "cross_entropy": lj.cross_entropy}
    data = {"x": train.data["x"], "y": train.data["y"]}
    rows, curves, metrics = [], {}, {}
    test_error0 = float(lj.hamming(_model(p0, test.data["x"]), test_y))
    for name, loss in losses.items():
        result = lj.train.fit(make_loss(loss), p0, data,
                              lj.optim.make("adam", learning_rate=0.05), steps)
        h = result.history.numpy()
        err = float(lj.hamming(_model(result.params, test.data["x"]), test_y))
        moved = float(jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(
            jax.tree_util.tree_leaves(result.params), jax.tree_util.tree_leaves(p0)))))
        metrics[name] = {"test_hamming_error": err, "max_grad_norm": float(h["grad_norm"].max()),
                         "parameter_change": moved, "train_loss_first": float(h["loss"][0]),
                         "train_loss_last": float(h["loss"][-1])}
        rows.append([name, float(h["grad_norm"].max()), moved, test_error0, err])
        curves[name] = h
    fig, axes, save = figure(config, "training.png", "Training on the Hamming metric",
                             "step", "", ncols=2)
    for name, h in curves.items():
        axes[0].plot(h["loss"], label=name)
        axes[1].plot(h["grad_norm"], label=name)
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("gradient norm")
    figures = [save()]
    ham, soft = metrics["hamming"], metrics["soft_hamming"]
    holds = (ham["max_grad_norm"] == 0.0 and ham["parameter_change"] == 0.0
             and soft["test_hamming_error"] < 0.5 * test_error0)
    return Result(
        name="hamming", title="Hamming loss",
        claim="Hamming loss cannot be trained with gradients directly; a smooth relaxation can.",
        verdict="holds" if holds else "does not hold",
        summary=(f"gradient descent on the Hamming loss sees a gradient of norm "
                 f"{ham['max_grad_norm']:g} at every step and leaves the parameters unchanged "
                 f"(moved {ham['parameter_change']:g}): held-out Hamming error stays at "
                 f"{ham['test_hamming_error']:.3f}. soft_hamming brings it from "
                 f"{test_error0:.3f} to {soft['test_hamming_error']:.3f} (cross-entropy: "
                 f"{metrics['cross_entropy']['test_hamming_error']:.3f})."),
        key_number=f"Hamming error: hamming {ham['test_hamming_error']:.3f}, soft_hamming "
                   f"{soft['test_hamming_error']:.3f}",
        metrics={"initial_test_error": test_error0, **metrics},
        tables=[markdown_table(["trained on", "max gradient norm", "parameter change",
                                "held-out Hamming error before", "after"], rows)],
        figures=figures)
